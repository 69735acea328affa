//! Test cases a rule version carries: a payload (or, on the server, a stored event), the
//! package or plan it is about, the access the script is shown, and the decision expected.
//! The same format in `DIR/<event_type>.cases.json` (`porteiro rules test DIR`, for CI in the
//! seller's own repository) and in `saveRule(cases:)`, which refuses a version whose cases fail.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{CurrentAccess, RuleEngine};
use crate::domain::{Decision, EntitlementStatus, Target};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// A webhook body as Hotmart sends it (v2 JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// A stored event of the app (its `webhookEvent` id), read by the server when it saves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<i32>,
    /// What the event is about (default: a monthly plan with 3 days of grace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<CaseTarget>,
    /// The access the script is shown (default: none yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<CaseAccess>,
    pub expect: Expect,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseTarget {
    /// `package` or `plan`
    pub kind: String,
    #[serde(default)]
    pub access_days: Option<i32>,
    #[serde(default)]
    pub period_days: Option<i32>,
    #[serde(default)]
    pub grace_days: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseAccess {
    /// ACTIVE, SUSPENDED, REVOKED or EXPIRED
    pub status: String,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expect {
    /// grant, revoke, suspend or ignore
    pub action: String,
    /// For grant and revoke: the end or the time expected (none: any).
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

/// Reads a cases file or argument: a JSON array of cases.
pub fn parse(text: &str) -> Result<Vec<Case>, String> {
    serde_json::from_str(text).map_err(|e| format!("cases are not a JSON array of cases: {e}"))
}

fn target(t: Option<&CaseTarget>) -> Result<Target, String> {
    match t {
        None => Ok(Target::plan(1, "case plan", 30, 3)),
        Some(t) if t.kind == "package" => Ok(Target::package(1, "case package", t.access_days)),
        Some(t) if t.kind == "plan" => Ok(Target::plan(
            1,
            "case plan",
            t.period_days.unwrap_or(30),
            t.grace_days.unwrap_or(3),
        )),
        Some(t) => Err(format!("target kind {:?} is neither package nor plan", t.kind)),
    }
}

/// Runs every case against `source` (each with its payload resolved). Returns how many passed,
/// or every failure, one per line, naming the case.
pub fn run(engine: &RuleEngine, event_type: &str, source: &str, cases: &[Case]) -> Result<usize, String> {
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let label = format!("case {} {:?}", i + 1, c.name);
        match run_one(engine, event_type, source, c) {
            Ok(()) => {}
            Err(e) => failures.push(format!("{label}: {e}")),
        }
    }
    if failures.is_empty() {
        Ok(cases.len())
    } else {
        Err(failures.join("\n"))
    }
}

fn run_one(engine: &RuleEngine, event_type: &str, source: &str, c: &Case) -> Result<(), String> {
    let payload = c
        .payload
        .as_ref()
        .ok_or("it has no payload (give one, or the id of a stored event)")?;
    let body = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
    let ev = crate::hotmart::parse_event(crate::hotmart::Format::V2, &body, Utc::now())
        .map_err(|e| format!("its payload cannot be read: {e}"))?;
    if ev.kind.as_str() != event_type {
        return Err(format!("its payload is a {} event, not {event_type}", ev.kind.as_str()));
    }
    let target = target(c.target.as_ref())?;
    let access = match &c.access {
        None => None,
        Some(a) => Some(CurrentAccess {
            status: EntitlementStatus::parse(&a.status).map_err(|_| {
                format!(
                    "access status {:?} is not ACTIVE, SUSPENDED, REVOKED or EXPIRED",
                    a.status
                )
            })?,
            expires_at: a.expires_at,
        }),
    };
    let d = engine
        .decide(source, &ev, &target, access.as_ref())
        .map_err(|e| format!("the script failed: {e}"))?;
    let action = d.action();
    let at = match &d {
        Decision::Grant { until: t } | Decision::Revoke { at: t } => *t,
        _ => None,
    };
    if action != c.expect.action || (c.expect.at.is_some() && at != c.expect.at) {
        let want = match c.expect.at {
            Some(t) => format!("{} {}", c.expect.action, crate::domain::timestamp(t)),
            None => c.expect.action.clone(),
        };
        return Err(format!("expected {want}, the script decided {}", d.label()));
    }
    Ok(())
}

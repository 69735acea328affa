//! What a producer's app asks with an API key: a buyer's access, a yes/no for one target, and
//! both for many buyers at once. Everything is read through the access cache, which every
//! access-changing commit invalidates, so a revocation is visible to the next check.
use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::api_keys::{ACCESS_READ, AppKey};
use super::buyers::{self, AccessView};
use crate::domain::{Email, EntitlementStatus, SubscriptionState, TargetKind};
use crate::pipeline::access_cache;
use crate::{AppError, AppResult, AppState};

/// The most buyers one lookup may name: enough for a page of members, small enough to answer
/// in one round trip.
pub const LOOKUP_MAX: usize = 500;

/// Who the app is asking about.
#[derive(Debug, Clone)]
pub enum Who {
    Email(String),
    SubscriberCode(String),
}

impl Who {
    /// Exactly one of the two, from an API's optional parameters.
    pub fn from_params(email: Option<String>, subscriber_code: Option<String>) -> AppResult<Who> {
        // A parameter given empty is given: it is checked (and refused), not taken as absent.
        match (email, subscriber_code) {
            (Some(e), None) => Ok(Who::Email(e)),
            (None, Some(c)) => Ok(Who::SubscriberCode(c)),
            (None, None) => Err(AppError::bad("give email or subscriberCode")),
            (Some(_), Some(_)) => Err(AppError::bad("give email or subscriberCode, not both")),
        }
    }
}

/// One buyer's access as the app sees it. `email` is `None` for a subscriber code nobody holds.
#[derive(Debug, Clone)]
pub struct BuyerAccess {
    pub email: Option<String>,
    pub subscriber_code: Option<String>,
    pub known: bool,
    pub access: Vec<AccessView>,
}

/// The answer to "may this buyer open this package or plan now".
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub active: bool,
    /// ACTIVE, SUSPENDED, EXPIRED, REVOKED, or NONE when nothing was ever held.
    pub status: &'static str,
    /// While active, when it ends (`None`: no end); otherwise when it ended, if it had an end.
    pub expires_at: Option<DateTime<Utc>>,
    /// The subscription state of the entitlement the verdict stands on.
    pub state: SubscriptionState,
}

fn email(raw: &str) -> AppResult<Email> {
    buyers::parse_email(raw)
}

/// A subscriber code as stored: trimmed, upper-case, printable, short.
fn clean_code(raw: &str) -> Result<String, String> {
    let code = raw.trim().to_ascii_uppercase();
    if code.is_empty() || code.len() > 64 || code.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{raw:?} is not a Hotmart subscriber code"));
    }
    Ok(code)
}

/// The e-mail behind a subscriber code, if anyone holds it.
async fn email_of_code(state: &AppState, app_id: i32, code: &str) -> AppResult<Option<Email>> {
    let code = clean_code(code).map_err(|m| AppError::InvalidFields(vec![("subscriberCode".into(), m)]))?;
    Ok(buyers::find_by_subscriber_code(&state.db, app_id, &code)
        .await?
        .and_then(|b| Email::parse(&b.email).ok()))
}

/// Everything the buyer holds, active or not. Someone never seen holds nothing; that is an
/// answer, not an error.
pub async fn of(state: &AppState, key: &AppKey, who: Who) -> AppResult<BuyerAccess> {
    key.require(ACCESS_READ)?;
    let (email, code) = match who {
        Who::Email(e) => (Some(email(&e)?), None),
        Who::SubscriberCode(c) => (
            email_of_code(state, key.app_id, &c).await?,
            Some(c.trim().to_ascii_uppercase()),
        ),
    };
    let Some(email) = email else {
        return Ok(BuyerAccess {
            email: None,
            subscriber_code: code,
            known: false,
            access: Vec::new(),
        });
    };
    let held = access_cache::holdings(&state.access, &state.db, key.app_id, std::slice::from_ref(&email)).await?;
    let h = held.get(email.as_str());
    Ok(BuyerAccess {
        email: Some(email.as_str().to_string()),
        subscriber_code: code,
        known: h.is_some_and(|h| h.buyer.is_some()),
        access: h.map(|h| h.views(super::now())).unwrap_or_default(),
    })
}

/// The status of a target the buyer never held.
const NONE: &str = "NONE";

/// The verdict for one target, from every entitlement the buyer holds to it: active if any is;
/// then the latest end among the active ones (no end wins). When none is active, the most
/// telling status (suspended, then expired, then revoked) and when it ended.
pub fn verdict(access: &[AccessView], target: (TargetKind, i32)) -> Verdict {
    let rows: Vec<&AccessView> = access
        .iter()
        .filter(|a| a.entitlement.target_kind == target.0.as_str() && a.entitlement.target_id == target.1)
        .collect();
    let active: Vec<&&AccessView> = rows.iter().filter(|a| a.active).collect();
    // The active entitlement that lasts longest (no end first) is the one it stands on.
    if let Some(best) = active
        .iter()
        .max_by_key(|a| (a.entitlement.expires_at.is_none(), a.entitlement.expires_at))
    {
        return Verdict {
            active: true,
            status: EntitlementStatus::Active.as_str(),
            expires_at: best.entitlement.expires_at,
            state: best.state(),
        };
    }
    let rank = |s: EntitlementStatus| match s {
        EntitlementStatus::Suspended => 3,
        EntitlementStatus::Expired => 2,
        EntitlementStatus::Revoked => 1,
        EntitlementStatus::Active => 4,
    };
    match rows.iter().max_by_key(|a| (rank(a.status), a.entitlement.expires_at)) {
        Some(best) => Verdict {
            active: false,
            status: best.status.as_str(),
            expires_at: best.entitlement.expires_at,
            state: best.state(),
        },
        None => Verdict {
            active: false,
            status: NONE,
            expires_at: None,
            state: SubscriptionState::default(),
        },
    }
}

/// The hot path: may the buyer open this target now.
pub async fn check(state: &AppState, key: &AppKey, who: Who, target: (TargetKind, i32)) -> AppResult<Verdict> {
    let held = of(state, key, who).await?;
    let v = verdict(&held.access, target);
    // A mistyped id (or another app's) would deny everyone in silence: say so instead. A buyer
    // who holds the target proves it exists, so the hot path asks nothing more.
    if v.status == NONE && !target_exists(state, key.app_id, target).await? {
        return Err(AppError::NotFound(format!(
            "{} {} does not exist in this app",
            target.0.as_str(),
            target.1
        )));
    }
    Ok(v)
}

/// A package or plan as an app names it: its id, or the key an admin gave it. An id is taken
/// as given (the check's 404 comes later, and only for a buyer who never held it); a key that
/// names nothing, or names the other kind, is a 404 now.
pub async fn resolve(state: &AppState, app_id: i32, kind: TargetKind, raw: &str) -> AppResult<(TargetKind, i32)> {
    let raw = raw.trim();
    if !raw.is_empty() && raw.len() <= 9 && raw.bytes().all(|b| b.is_ascii_digit()) {
        return Ok((kind, raw.parse().unwrap_or(0)));
    }
    let cache = (app_id, state.hot.catalog_generation(app_id), raw.to_string());
    let found = match state.hot.target_keys.get(&cache) {
        Some(found) => found,
        None => {
            let found = super::catalog::resolve_key(&state.db, app_id, raw).await?;
            state.hot.target_keys.insert(cache, found);
            found
        }
    };
    match found {
        Some((k, id)) if k == kind => Ok((k, id)),
        _ => Err(AppError::NotFound(format!(
            "no {} has the id or key {raw:?} in this app",
            kind.as_str()
        ))),
    }
}

/// Whether the app has this package or plan, through the process's cache.
async fn target_exists(state: &AppState, app_id: i32, (kind, id): (TargetKind, i32)) -> AppResult<bool> {
    let key = (app_id, state.hot.catalog_generation(app_id), kind, id);
    if let Some(found) = state.hot.target_exists.get(&key) {
        return Ok(found);
    }
    let found = super::catalog::target(&state.db, app_id, kind, id).await?.is_some();
    state.hot.target_exists.insert(key, found);
    Ok(found)
}

/// Several buyers at once, by e-mail and by subscriber code, in the order asked. Invalid entries
/// are all named in one error, so a caller fixes them in one go.
pub async fn lookup(
    state: &AppState,
    key: &AppKey,
    emails: &[String],
    codes: &[String],
) -> AppResult<Vec<BuyerAccess>> {
    key.require(ACCESS_READ)?;
    if emails.len() + codes.len() > LOOKUP_MAX {
        return Err(AppError::bad(format!(
            "ask about at most {LOOKUP_MAX} buyers per lookup (got {})",
            emails.len() + codes.len()
        )));
    }
    let mut bad = Vec::new();
    let mut parsed = Vec::with_capacity(emails.len());
    for (i, raw) in emails.iter().enumerate() {
        match Email::parse(raw) {
            Ok(e) => parsed.push(e),
            Err(m) => bad.push((format!("emails[{i}]"), m)),
        }
    }
    let mut clean = Vec::with_capacity(codes.len());
    for (i, c) in codes.iter().enumerate() {
        match clean_code(c) {
            Ok(c) => clean.push(c),
            Err(m) => bad.push((format!("subscriberCodes[{i}]"), m)),
        }
    }
    if !bad.is_empty() {
        return Err(AppError::InvalidFields(bad));
    }
    let holders = buyers::emails_by_subscriber_codes(&state.db, key.app_id, &clean).await?;
    let by_code: Vec<(String, Option<Email>)> = clean
        .into_iter()
        .map(|c| {
            let e = holders.get(&c).and_then(|e| Email::parse(e).ok());
            (c, e)
        })
        .collect();
    let mut wanted: Vec<Email> = parsed.clone();
    wanted.extend(by_code.iter().filter_map(|(_, e)| e.clone()));
    wanted.sort();
    wanted.dedup();
    let held: HashMap<String, _> = access_cache::holdings(&state.access, &state.db, key.app_id, &wanted).await?;
    let now = super::now();
    let answer = |email: Option<&Email>, code: Option<String>| {
        let h = email.and_then(|e| held.get(e.as_str()));
        BuyerAccess {
            email: email.map(|e| e.as_str().to_string()),
            subscriber_code: code,
            known: h.is_some_and(|h| h.buyer.is_some()),
            access: h.map(|h| h.views(now)).unwrap_or_default(),
        }
    };
    let mut out: Vec<BuyerAccess> = parsed.iter().map(|e| answer(Some(e), None)).collect();
    out.extend(by_code.into_iter().map(|(c, e)| answer(e.as_ref(), Some(c))));
    Ok(out)
}

/// The app's packages and plans, as an app needs them to ask about access: packages first, then
/// plans, each by id.
pub async fn targets(state: &AppState, key: &AppKey) -> AppResult<Vec<crate::domain::Target>> {
    key.require(ACCESS_READ)?;
    let mut out: Vec<crate::domain::Target> = super::catalog::list_packages(&state.db, key.app_id)
        .await?
        .into_iter()
        .map(|p| crate::domain::Target::package(p.row.id, &p.row.name, p.row.access_days).with_key(p.row.key))
        .collect();
    out.sort_by_key(|t| t.id);
    let mut plans: Vec<crate::domain::Target> = super::catalog::list_plans(&state.db, key.app_id)
        .await?
        .into_iter()
        .map(|p| {
            crate::domain::Target::plan(p.row.id, &p.row.name, p.row.period_days, p.row.grace_days).with_key(p.row.key)
        })
        .collect();
    plans.sort_by_key(|t| t.id);
    out.extend(plans);
    Ok(out)
}

//! Reconciliation: pull sales and subscriptions from Hotmart's REST API for a window, turn them
//! into the domain events the webhook would have produced (deterministic ids, so a rerun adds
//! nothing), and run them through the same rules and order-safe apply path. A dry run only
//! reports the drift.
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use entity::{entitlement, reconciliation_run as run};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{audit, catalog, entitlements, inbox, integration, processor};
use crate::domain::{EntitlementStatus, EventKind, Fact, PaymentEvent, fact_of, project};
use crate::hotmart::{Format, snapshot};
use crate::{AppError, AppResult, AppState};

const MAX_SPAN_DAYS: i64 = 5 * 366;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriftKind {
    /// Paid, but holds no access here.
    MissingAccess,
    /// Holds access Hotmart says was refunded, charged back or cancelled.
    UnexpectedAccess,
    /// Both agree on access, not on until when.
    ExpiryMismatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub kind: DriftKind,
    pub email: String,
    pub source: String,
    pub target: String,
    pub before_status: Option<String>,
    pub before_expires_at: Option<DateTime<Utc>>,
    pub after_status: String,
    pub after_expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub sales_seen: usize,
    pub subscriptions_seen: usize,
    pub events_found: usize,
    pub events_new: usize,
    pub events_known: usize,
    /// Hotmart product ids with sales but no package or plan linked here.
    pub unmapped_products: Vec<String>,
    /// Subscription charges whose subscription Hotmart did not return: left out, never treated
    /// as one-off sales.
    #[serde(default)]
    pub unresolved_subscription_sales: Vec<String>,
    pub drift: Vec<Drift>,
    pub applied: bool,
}

pub use crate::hotmart::snapshot::{Progress, Silent};

#[derive(Debug, Clone)]
pub struct Request {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub dry_run: bool,
    pub trigger: &'static str,
    pub actor: String,
}

pub fn validate(since: DateTime<Utc>, until: DateTime<Utc>) -> AppResult<()> {
    let mut errors = Vec::new();
    if since >= until {
        errors.push(("since".to_string(), "since must be before until".to_string()));
    }
    if until - since > Duration::days(MAX_SPAN_DAYS) {
        errors.push((
            "until".to_string(),
            format!("a reconciliation covers at most {MAX_SPAN_DAYS} days; split it"),
        ));
    }
    if until > Utc::now() + Duration::days(1) {
        errors.push(("until".to_string(), "until is in the future".to_string()));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::InvalidFields(errors))
    }
}

/// Runs one reconciliation and records it. A failure talking to Hotmart is recorded on the run
/// (status `failed`) and returned as the run, so panels can show it.
pub async fn reconcile(state: &AppState, app_id: i32, req: Request, progress: &dyn Progress) -> AppResult<run::Model> {
    validate(req.since, req.until)?;
    let creds = integration::credentials(state, app_id).await?;
    let started = run::ActiveModel {
        app_id: Set(app_id),
        trigger: Set(req.trigger.into()),
        since: Set(req.since),
        until: Set(req.until),
        dry_run: Set(req.dry_run),
        status: Set("running".into()),
        started_at: Set(super::now()),
        ..Default::default()
    }
    .insert(&state.db)
    .await?;
    let outcome = execute(state, app_id, &creds, &req, progress).await;
    let mut am: run::ActiveModel = started.into();
    am.finished_at = Set(Some(super::now()));
    match &outcome {
        Ok(report) => {
            am.status = Set("succeeded".into());
            am.report = Set(Some(serde_json::to_string(report).map_err(AppError::internal)?));
        }
        Err(e) => {
            e.log();
            am.status = Set("failed".into());
            am.error = Set(Some(e.public_message()));
        }
    }
    let saved = am.update(&state.db).await?;
    crate::telemetry::reconciliation(if outcome.is_ok() { "succeeded" } else { "failed" });
    if let Ok(report) = &outcome
        && report.applied
    {
        audit::record(
            &state.db,
            audit::Entry {
                app_id,
                actor: &req.actor,
                action: "reconcile.apply",
                target: format!("reconciliation_run:{}", saved.id),
                before: None,
                after: Some(json!({"eventsNew": report.events_new, "drift": report.drift.len()})),
                reason: "",
            },
        )
        .await?;
    }
    Ok(saved)
}

/// Latest time already known for each transaction and subscription of the app's histories.
async fn latest_known(
    db: &impl ConnectionTrait,
    app_id: i32,
    events: &[PaymentEvent],
) -> AppResult<HashMap<String, DateTime<Utc>>> {
    use entity::access_fact as af;
    let mut keys: Vec<String> = events.iter().filter_map(|e| e.transaction.clone()).collect();
    keys.sort();
    keys.dedup();
    let mut out: HashMap<String, DateTime<Utc>> = HashMap::new();
    for chunk in keys.chunks(500) {
        let rows = af::Entity::find()
            .filter(af::Column::AppId.eq(app_id))
            .filter(af::Column::Transaction.is_in(chunk.to_vec()))
            .all(db)
            .await?;
        for r in rows {
            if let Some(t) = r.transaction {
                let e = out.entry(format!("txn:{t}")).or_insert(r.occurred_at);
                *e = (*e).max(r.occurred_at);
            }
        }
    }
    let mut sources: Vec<String> = events
        .iter()
        .filter(|e| e.transaction.is_none())
        .filter_map(PaymentEvent::source_key)
        .collect();
    sources.sort();
    sources.dedup();
    for chunk in sources.chunks(500) {
        let rows = af::Entity::find()
            .filter(af::Column::AppId.eq(app_id))
            .filter(af::Column::Source.is_in(chunk.to_vec()))
            .all(db)
            .await?;
        for r in rows {
            let e = out.entry(r.source.clone()).or_insert(r.occurred_at);
            *e = (*e).max(r.occurred_at);
        }
    }
    Ok(out)
}

/// A status seen only through REST says what is true *now*: it is dated no earlier than the
/// latest fact already known of its transaction (or, for a subscription's end, of its
/// subscription), so it cannot sort before the webhook history it updates.
fn date_after_known(events: &mut [PaymentEvent], known: &HashMap<String, DateTime<Utc>>) {
    for ev in events.iter_mut() {
        if ev.kind == EventKind::PurchaseApproved {
            continue;
        }
        let key = match (&ev.transaction, ev.source_key()) {
            (Some(t), _) => format!("txn:{t}"),
            (None, Some(s)) => s,
            (None, None) => continue,
        };
        if let Some(t) = known.get(&key).filter(|t| **t > ev.occurred_at) {
            ev.occurred_at = *t;
        }
    }
}

async fn execute(
    state: &AppState,
    app_id: i32,
    creds: &crate::hotmart::api::Credentials,
    req: &Request,
    progress: &dyn Progress,
) -> AppResult<Report> {
    let snap = snapshot::fetch(&state.hotmart, creds, req.since, req.until, progress).await?;
    let events = snap.events;
    let mut report = Report {
        sales_seen: snap.sales_seen,
        subscriptions_seen: snap.subscriptions_seen,
        events_found: events.len(),
        unresolved_subscription_sales: snap.unresolved_subscription_sales,
        ..Report::default()
    };
    let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let known = inbox::known_ids(&state.db, app_id, &ids).await?;
    let mut fresh: Vec<PaymentEvent> = events.into_iter().filter(|e| !known.contains(&e.event_id)).collect();
    report.events_known = known.len();
    report.events_new = fresh.len();
    let latest = latest_known(&state.db, app_id, &fresh).await?;
    date_after_known(&mut fresh, &latest);

    progress.stage("comparing");
    // What each source's access would become once the new facts join its history.
    let mut by_source: BTreeMap<String, Vec<Fact>> = BTreeMap::new();
    let mut unmapped = std::collections::BTreeSet::new();
    for ev in &fresh {
        let eval = processor::evaluate_event(state, &state.db, app_id, ev.clone()).await?;
        if eval.status == "unmapped"
            && let Some(p) = &ev.product_id
        {
            unmapped.insert(p.clone());
        }
        let (Some(decision), Some(target), Some(source)) = (eval.decision, eval.target, ev.source_key()) else {
            continue;
        };
        if let Some(f) = fact_of(ev, &target, &decision, 0, eval.rule_version) {
            by_source.entry(source).or_default().push(f);
        }
    }
    report.unmapped_products = unmapped.into_iter().collect();
    let now = super::now();
    for (source, new_facts) in by_source {
        let mut all = entitlements::facts(&state.db, app_id, &source).await?;
        all.extend(new_facts);
        let Some(after) = project(&all) else { continue };
        let before = current(&state.db, app_id, &source).await?;
        let after_status = after.status.effective(after.expires_at, now);
        let before_status = before
            .as_ref()
            .map(|b| EntitlementStatus::parse(&b.status).effective(b.expires_at, now));
        let was_active = before_status == Some(EntitlementStatus::Active);
        let is_active = after_status == EntitlementStatus::Active;
        let kind = match (was_active, is_active) {
            (false, true) => Some(DriftKind::MissingAccess),
            (true, false) => Some(DriftKind::UnexpectedAccess),
            (true, true) if before.as_ref().and_then(|b| b.expires_at) != after.expires_at => {
                Some(DriftKind::ExpiryMismatch)
            }
            _ => None,
        };
        if let Some(kind) = kind {
            let target = catalog::target(&state.db, app_id, after.target.0, after.target.1)
                .await?
                .map(|t| t.name)
                .unwrap_or_default();
            report.drift.push(Drift {
                kind,
                email: after.holder.clone().unwrap_or_default(),
                source,
                target,
                before_status: before_status.map(|s| s.as_str().to_string()),
                before_expires_at: before.and_then(|b| b.expires_at),
                after_status: after_status.as_str().to_string(),
                after_expires_at: after.expires_at,
            });
        }
    }

    if !req.dry_run {
        progress.stage("applying");
        for (i, ev) in fresh.iter().enumerate() {
            let raw = serde_json::to_vec(ev).map_err(AppError::internal)?;
            inbox::insert(
                &state.db,
                inbox::RecordInput {
                    app_id,
                    origin: inbox::ORIGIN_RECONCILE,
                    event_id: ev.event_id.clone(),
                    event_type: ev.kind.as_str().to_string(),
                    format: Format::Api.as_str(),
                    raw,
                    headers: json!({}),
                    occurred_at: Some(ev.occurred_at),
                    is_test: ev.is_test,
                },
            )
            .await?;
            progress.count(i as u64 + 1);
        }
        processor::drain(state).await?;
        report.applied = true;
    }
    Ok(report)
}

/// The entitlement a source currently gives (one row per source).
async fn current(db: &impl ConnectionTrait, app_id: i32, source: &str) -> AppResult<Option<entitlement::Model>> {
    Ok(entitlement::Entity::find()
        .filter(entitlement::Column::AppId.eq(app_id))
        .filter(entitlement::Column::Source.eq(source))
        .one(db)
        .await?)
}

pub async fn runs(db: &impl ConnectionTrait, app_id: i32, first: u64) -> AppResult<Vec<run::Model>> {
    Ok(run::Entity::find()
        .filter(run::Column::AppId.eq(app_id))
        .order_by_desc(run::Column::Id)
        .limit(first)
        .all(db)
        .await?)
}

pub fn report_of(r: &run::Model) -> Option<Report> {
    r.report.as_deref().and_then(|s| serde_json::from_str(s).ok())
}

/// Periodic reconciliation: for every app whose interval has elapsed since its last scheduled run,
/// reconcile the recent past (twice the interval, at least a day, so a missed run heals too).
pub async fn run_due(state: &AppState) -> AppResult<usize> {
    use entity::hotmart_integration as hi;
    let due: Vec<hi::Model> = hi::Entity::find()
        .filter(hi::Column::ReconcileEveryMinutes.is_not_null())
        .all(&state.db)
        .await?;
    let mut ran = 0;
    for integ in due {
        let Some(minutes) = integ.reconcile_every_minutes else {
            continue;
        };
        let last = run::Entity::find()
            .filter(run::Column::AppId.eq(integ.app_id))
            .filter(run::Column::Trigger.eq("schedule"))
            .order_by_desc(run::Column::Id)
            .one(&state.db)
            .await?;
        let now = super::now();
        let interval = Duration::minutes(minutes as i64);
        if last.as_ref().is_some_and(|l| l.started_at + interval > now) {
            continue;
        }
        let span = (interval * 2).max(Duration::days(1));
        let req = Request {
            since: now - span,
            until: now,
            dry_run: false,
            trigger: "schedule",
            actor: "scheduler".into(),
        };
        match reconcile(state, integ.app_id, req, &Silent).await {
            Ok(r) if r.status == "failed" => {
                tracing::warn!(app_id = integ.app_id, error = ?r.error, "scheduled reconciliation failed")
            }
            Ok(_) => ran += 1,
            Err(e) => e.log(),
        }
    }
    Ok(ran)
}

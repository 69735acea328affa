//! The worker step: take one pending inbox row, understand it, ask the rules, apply the decision
//! and mark the row, all in one transaction. The loop and the tests both drain with it.
use chrono::{DateTime, Utc};
use entity::webhook_event as we;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};

use sea_orm::sea_query::{LockBehavior, LockType};

use super::{buyers, catalog, entitlements, inbox};
use crate::domain::{Decision, EntitlementStatus, PaymentEvent, Target};
use crate::hotmart::{self, Format};
use crate::rules::CurrentAccess;
use crate::{AppResult, AppState};

/// What processing one delivery concluded, before anything is written.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub event: Option<PaymentEvent>,
    pub target: Option<Target>,
    pub decision: Option<Decision>,
    pub rule_version: Option<i32>,
    /// processed | ignored | unmapped | failed | test
    pub status: &'static str,
    pub error: Option<String>,
}

impl Evaluation {
    fn stop(event: Option<PaymentEvent>, status: &'static str, why: impl Into<String>) -> Self {
        Evaluation {
            event,
            target: None,
            decision: None,
            rule_version: None,
            status,
            error: Some(why.into()),
        }
    }
}

/// Parses, maps and runs the rules for one body. Reads only; `simulateWebhook` uses it as is.
pub async fn evaluate(
    state: &AppState,
    db: &impl ConnectionTrait,
    app_id: i32,
    format: Format,
    raw: &[u8],
    received_at: DateTime<Utc>,
) -> AppResult<Evaluation> {
    match hotmart::parse_event(format, raw, received_at) {
        Ok(ev) => evaluate_event(state, db, app_id, ev).await,
        Err(e) => Ok(Evaluation::stop(
            None,
            "failed",
            format!("cannot read the payload: {e}"),
        )),
    }
}

/// Maps an understood event and runs the rules on it. Reads only.
pub async fn evaluate_event(
    state: &AppState,
    db: &impl ConnectionTrait,
    app_id: i32,
    ev: PaymentEvent,
) -> AppResult<Evaluation> {
    if ev.is_test {
        return Ok(Evaluation::stop(
            Some(ev),
            "test",
            "Hotmart test event: recorded, never grants access",
        ));
    }
    if !ev.kind.concerns_access() {
        let why = format!("{} does not change access", ev.kind.as_str());
        return Ok(Evaluation::stop(Some(ev), "ignored", why));
    }
    let Some(_) = ev
        .buyer_email
        .as_deref()
        .and_then(|e| crate::domain::Email::parse(e).ok())
    else {
        let why = format!("{} carries no valid buyer e-mail", ev.kind.as_str());
        return Ok(Evaluation::stop(Some(ev), "failed", why));
    };
    // A purchase event is about one transaction; without a readable one it could grant
    // without ever counting as a copy. Fail closed, with the reason.
    if ev.kind.as_str().starts_with("PURCHASE_") && ev.transaction.is_none() {
        let why = format!("{} carries no readable transaction", ev.kind.as_str());
        return Ok(Evaluation::stop(Some(ev), "failed", why));
    }
    let Some(source) = ev.source_key() else {
        return Ok(Evaluation::stop(
            Some(ev),
            "failed",
            "event has neither a transaction nor a subscriber code",
        ));
    };
    let Some(target) = catalog::resolve(db, app_id, ev.product_id.as_deref(), ev.plan_id.as_deref()).await? else {
        let why = format!(
            "Hotmart product {} is not linked to any package or plan; link it, then replay this event",
            ev.product_id.as_deref().unwrap_or("(none)")
        );
        return Ok(Evaluation::stop(Some(ev), "unmapped", why));
    };
    let Some(script) = super::rules::active(db, app_id, ev.kind.as_str()).await? else {
        let why = format!("no rule for {}", ev.kind.as_str());
        return Ok(Evaluation::stop(Some(ev), "ignored", why));
    };
    let current = current_access(db, app_id, &source).await?;
    match state.rules.decide(&script.source, &ev, &target, current.as_ref()) {
        Ok(decision) => {
            let status = if matches!(decision, Decision::Ignore { .. }) {
                "ignored"
            } else {
                "processed"
            };
            let error = match &decision {
                Decision::Ignore { reason } => Some(reason.clone()),
                _ => None,
            };
            Ok(Evaluation {
                event: Some(ev),
                target: Some(target),
                decision: Some(decision),
                rule_version: Some(script.version),
                status,
                error,
            })
        }
        Err(e) => Ok(Evaluation {
            error: Some(format!("rule {} v{} failed: {e}", ev.kind.as_str(), script.version)),
            event: Some(ev),
            target: Some(target),
            decision: None,
            rule_version: Some(script.version),
            status: "failed",
        }),
    }
}

/// What the event's source gives now (whoever holds it), as the rule script sees it.
async fn current_access(db: &impl ConnectionTrait, app_id: i32, source: &str) -> AppResult<Option<CurrentAccess>> {
    let row = entitlements::row_of(db, app_id, source).await?;
    Ok(row.map(|r| CurrentAccess {
        status: EntitlementStatus::parse(&r.status).effective(r.expires_at, super::now()),
        expires_at: r.expires_at,
    }))
}

/// Processes the oldest pending event. `Ok(None)` when the inbox is empty.
pub async fn process_one(state: &AppState) -> AppResult<Option<i32>> {
    process_next(state, None).await
}

/// Processes one given event if it is still pending (a reconciliation applying its own events;
/// the worker may have taken it already, which is as good).
pub async fn process_row(state: &AppState, id: i32) -> AppResult<Option<i32>> {
    process_next(state, Some(id)).await
}

async fn process_next(state: &AppState, only: Option<i32>) -> AppResult<Option<i32>> {
    let txn = crate::db::write_txn(&state.db).await?;
    let mut q = we::Entity::find()
        .filter(we::Column::Status.eq(inbox::PENDING))
        .order_by_asc(we::Column::Id);
    if let Some(id) = only {
        q = q.filter(we::Column::Id.eq(id));
    }
    if txn.get_database_backend() == DbBackend::Postgres {
        q = q.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let Some(row) = q.one(&txn).await? else {
        txn.commit().await?;
        return Ok(None);
    };
    let (id, attempts) = (row.id, row.attempts);
    let started = std::time::Instant::now();
    match apply_row(state, &txn, row).await {
        Ok(status) => {
            txn.commit().await?;
            crate::telemetry::event_processed(status, started.elapsed().as_secs_f64());
            Ok(Some(id))
        }
        Err(e) => {
            let _ = txn.rollback().await;
            note_failure(state, id, attempts, &e).await?;
            Err(e)
        }
    }
}

/// Tries before an event that keeps failing to apply is set aside as `failed` (replayable), so
/// one bad row cannot stall the inbox; transient errors get retried until then.
const MAX_ATTEMPTS: i32 = 5;

async fn note_failure(state: &AppState, id: i32, attempts: i32, e: &crate::AppError) -> AppResult<()> {
    e.log();
    let attempts = attempts + 1;
    let mut am = we::ActiveModel {
        id: Set(id),
        attempts: Set(attempts),
        ..Default::default()
    };
    if attempts >= MAX_ATTEMPTS {
        am.status = Set("failed".into());
        am.error = Set(Some(format!(
            "could not be applied after {attempts} attempts ({}); replay it once fixed",
            e.code()
        )));
    }
    am.update(&state.db).await?;
    Ok(())
}

/// Evaluates one claimed row and writes its outcome, inside the caller's transaction.
async fn apply_row(state: &AppState, txn: &DatabaseTransaction, row: we::Model) -> AppResult<&'static str> {
    let eval = evaluate(
        state,
        txn,
        row.app_id,
        Format::parse(&row.format),
        &row.raw_body,
        row.received_at,
    )
    .await?;
    let ev = eval.event.as_ref();
    let source = ev.and_then(PaymentEvent::source_key);
    let fact = match (ev, &eval.target, &eval.decision, &source, eval.status) {
        (Some(ev), Some(target), Some(d), Some(s), "processed") => {
            crate::domain::fact_of(ev, target, d, row.id, eval.rule_version).map(|f| (s.clone(), f))
        }
        _ => None,
    };
    let email = ev
        .and_then(|e| e.buyer_email.as_deref())
        .and_then(|e| crate::domain::Email::parse(e).ok());
    let (app_id, row_id) = (row.app_id, row.id);
    let attempts = row.attempts + 1;
    let mut am: we::ActiveModel = row.into();
    am.status = Set(eval.status.into());
    am.error = Set(eval.error.clone());
    am.decision = Set(eval
        .decision
        .as_ref()
        .map(|d| serde_json::to_string(d).unwrap_or_default()));
    am.rule_version = Set(eval.rule_version);
    am.email = Set(email.as_ref().map(|e| e.as_str().to_string()));
    am.source_key = Set(source.clone());
    am.target_kind = Set(eval.target.as_ref().map(|t| t.kind.as_str().to_string()));
    am.target_id = Set(eval.target.as_ref().map(|t| t.id));
    am.transaction = Set(ev.and_then(|e| e.transaction.clone()));
    if let Some(e) = ev {
        am.occurred_at = Set(Some(e.occurred_at));
        // A delivery stored unreadable and read after an upgrade gets its real type.
        am.event_type = Set(e.kind.as_str().to_string());
    }
    am.attempts = Set(attempts);
    am.processed_at = Set(Some(super::now()));
    am.update(txn).await?;

    if let (Some(email), Some(_)) = (&email, &fact) {
        buyers::upsert(txn, app_id, email, ev.and_then(|e| e.buyer_name.as_deref())).await?;
    }
    // Whatever the old or the new outcome, every source this event touches is recomputed (a
    // replay that turns a decision into `ignore` must undo what it did).
    let touched =
        entitlements::set_event_fact(txn, app_id, row_id, fact.as_ref().map(|(s, f)| (s.as_str(), f))).await?;
    for s in &touched {
        entitlements::lock_source(txn, app_id, s).await?;
    }
    for s in &touched {
        entitlements::recompute(txn, app_id, s, "rules").await?;
    }
    Ok(eval.status)
}

/// Processes until the inbox is empty. Returns how many events were handled.
pub async fn drain(state: &AppState) -> AppResult<usize> {
    let mut n = 0;
    while process_one(state).await?.is_some() {
        n += 1;
    }
    Ok(n)
}

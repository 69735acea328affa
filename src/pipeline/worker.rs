//! The worker step: take pending inbox rows, understand them, ask the rules, apply the decisions
//! and mark the rows, a batch per transaction. The loop and the tests both drain with it.
use chrono::{DateTime, Utc};
use entity::webhook_event as we;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use sea_orm::sea_query::{LockBehavior, LockType};

use super::access_cache::Changed;
use std::collections::BTreeSet;

use super::Pipeline;
use super::ledger::{Ledger, Outcome};
use super::{history, scripts, targets};
use crate::AppResult;
use crate::domain::{Decision, PaymentEvent, Target};
use crate::hotmart::{self, Format};
use crate::rules::CurrentAccess;
use entity::status::InboxStatus;

/// What processing one delivery concluded, before anything is written.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub event: Option<PaymentEvent>,
    pub target: Option<Target>,
    pub decision: Option<Decision>,
    pub rule_version: Option<i32>,
    /// processed | ignored | unmapped | failed | test
    pub status: InboxStatus,
    pub error: Option<String>,
    /// The source's access the rules were shown (`Some` only when the rules were asked), so a
    /// decision made before the write lock can be checked inside it.
    pub seen: Option<Option<CurrentAccess>>,
    /// The pseudonym of the erased buyer whose source this event is about: the stored row is
    /// scrubbed like theirs.
    pub erased: Option<String>,
    /// The shadow version's decision, when one is set and the rules were asked.
    pub shadow: Option<Shadowed>,
}

/// What the version in shadow decided on the same event and access, beside the active one.
#[derive(Debug, Clone)]
pub struct Shadowed {
    pub version: i32,
    /// Its decision, or why it reached none (the script failed).
    pub decision: Result<Decision, String>,
}

impl Evaluation {
    fn stop(event: Option<PaymentEvent>, status: InboxStatus, why: impl Into<String>) -> Self {
        Evaluation {
            event,
            target: None,
            decision: None,
            rule_version: None,
            status,
            error: Some(why.into()),
            seen: None,
            erased: None,
            shadow: None,
        }
    }
}

/// Parses, maps and runs the rules for one body. Reads only; `simulateWebhook` uses it as is.
pub async fn evaluate(
    state: &Pipeline,
    db: &impl ConnectionTrait,
    app_id: i32,
    format: Format,
    raw: &[u8],
    received_at: DateTime<Utc>,
) -> AppResult<Evaluation> {
    if raw.is_empty() {
        return Ok(Evaluation::stop(None, InboxStatus::Failed, EMPTIED));
    }
    match hotmart::parse_event(format, raw, received_at) {
        Ok(ev) => evaluate_event(state, db, app_id, ev).await,
        Err(e) => Ok(unreadable(e)),
    }
}

/// An understood, mapped event with its script: all the rules need but the source's access.
struct Ready {
    ev: PaymentEvent,
    target: Target,
    script: crate::rules::ActiveScript,
    source: String,
    /// The event's product links to nothing now; `target` is where the source's access sits.
    /// Such an event may take access away, never give it.
    unlinked: bool,
    /// The version in shadow, decided beside `script` and never applied.
    shadow: Option<crate::rules::ActiveScript>,
}

enum Stage {
    /// Settled without asking the rules (a test event, an unmapped product…).
    Done(Evaluation),
    Ready(Ready),
}

/// Checks and maps an understood event and finds its script (the active one, or the
/// `candidate` a backtest tries). Reads only (cached).
async fn prepare(
    state: &Pipeline,
    db: &impl ConnectionTrait,
    app_id: i32,
    ev: PaymentEvent,
    candidate: Option<&crate::rules::ActiveScript>,
) -> AppResult<Stage> {
    let done = |e| Ok(Stage::Done(e));
    // A source whose buyer was erased on request: nothing about it is applied or kept in clear
    // again (a redelivery or a renewal would bring the person back), whatever the event's type.
    if let Some(source) = ev.source_key()
        && let Some(pseudonym) = history::erased(&state.hot, db, app_id, &source).await?
    {
        let mut e = Evaluation::stop(
            Some(ev),
            InboxStatus::Ignored,
            "the buyer of this purchase was erased on request (LGPD): its events are not applied; a new purchase is a new buyer",
        );
        e.erased = Some(pseudonym);
        return done(e);
    }
    if ev.is_test {
        return done(Evaluation::stop(
            Some(ev),
            InboxStatus::Test,
            "Hotmart test event: recorded, never grants access",
        ));
    }
    if !ev.kind.concerns_access() {
        let why = format!("{} does not change access", ev.kind.as_str());
        return done(Evaluation::stop(Some(ev), InboxStatus::Ignored, why));
    }
    let Some(_) = ev
        .buyer_email
        .as_deref()
        .and_then(|e| crate::domain::Email::parse(e).ok())
    else {
        let why = format!("{} carries no valid buyer e-mail", ev.kind.as_str());
        return done(Evaluation::stop(Some(ev), InboxStatus::Failed, why));
    };
    // A purchase event is about one transaction; without a readable one it could grant
    // without ever counting as a copy. Fail closed, with the reason.
    if ev.kind.as_str().starts_with("PURCHASE_") && ev.transaction.is_none() {
        let why = format!("{} carries no readable transaction", ev.kind.as_str());
        return done(Evaluation::stop(Some(ev), InboxStatus::Failed, why));
    }
    let Some(source) = ev.source_key() else {
        return done(Evaluation::stop(
            Some(ev),
            InboxStatus::Failed,
            "event has neither a transaction nor a subscriber code",
        ));
    };
    let linked =
        targets::resolve_cached(&state.hot, db, app_id, ev.product_id.as_deref(), ev.plan_id.as_deref()).await?;
    // A source that already exists keeps hearing of its facts when its product was unlinked
    // since (a catalogue reorganised): what it was granted stays answerable to refunds.
    let (target, unlinked) = match linked {
        Some(t) => (t, false),
        None => match existing_target(db, app_id, &source).await? {
            Some(t) => (t, true),
            None => {
                let why = format!(
                    "Hotmart product {} is not linked to any package or plan; link it, then replay this event",
                    ev.product_id.as_deref().unwrap_or("(none)")
                );
                return done(Evaluation::stop(Some(ev), InboxStatus::Unmapped, why));
            }
        },
    };
    let (script, shadow) = match candidate {
        // A backtest tries its candidate alone.
        Some(c) => (Some(c.clone()), None),
        None => (
            scripts::active_cached(&state.hot, db, app_id, ev.kind.as_str()).await?,
            scripts::shadow_cached(&state.hot, db, app_id, ev.kind.as_str()).await?,
        ),
    };
    let Some(script) = script else {
        let why = format!("no rule for {}", ev.kind.as_str());
        return done(Evaluation::stop(Some(ev), InboxStatus::Ignored, why));
    };
    Ok(Stage::Ready(Ready {
        ev,
        target,
        script,
        source,
        unlinked,
        shadow,
    }))
}

/// The package or plan a source's access sits on now, if the source has any.
async fn existing_target(db: &impl ConnectionTrait, app_id: i32, source: &str) -> AppResult<Option<Target>> {
    let Some(row) = history::row_of(db, app_id, source).await? else {
        return Ok(None);
    };
    let Some(kind) = crate::domain::TargetKind::parse(&row.target_kind) else {
        return Ok(None);
    };
    targets::target(db, app_id, kind, row.target_id).await
}

/// Runs the script (CPU work with a time budget: callers keep it off the request threads).
fn decide(rules: &crate::rules::RuleEngine, r: Ready, current: Option<CurrentAccess>) -> Evaluation {
    let Ready {
        ev,
        target,
        script,
        unlinked,
        shadow,
        ..
    } = r;
    let shadow = shadow.map(|s| Shadowed {
        version: s.version,
        decision: rules
            .decide(&s.source, &ev, &target, current.as_ref())
            .map_err(|e| format!("rule {} v{} failed: {e}", ev.kind.as_str(), s.version)),
    });
    let mut eval = decide_active(rules, ev, target, script, unlinked, current);
    eval.shadow = shadow;
    eval
}

fn decide_active(
    rules: &crate::rules::RuleEngine,
    ev: PaymentEvent,
    target: Target,
    script: crate::rules::ActiveScript,
    unlinked: bool,
    current: Option<CurrentAccess>,
) -> Evaluation {
    match rules.decide(&script.source, &ev, &target, current.as_ref()) {
        Ok(Decision::Grant { .. }) if unlinked => Evaluation {
            error: Some(format!(
                "Hotmart product {} is no longer linked to any package or plan, so this event cannot give access; link it, then replay this event",
                ev.product_id.as_deref().unwrap_or("(none)")
            )),
            event: Some(ev),
            target: None,
            decision: None,
            rule_version: Some(script.version),
            status: InboxStatus::Unmapped,
            seen: Some(current),
            erased: None,
            shadow: None,
        },
        Ok(decision) => {
            let status = if matches!(decision, Decision::Ignore { .. }) {
                InboxStatus::Ignored
            } else {
                InboxStatus::Processed
            };
            let error = match &decision {
                Decision::Ignore { reason } => Some(reason.clone()),
                _ => None,
            };
            Evaluation {
                event: Some(ev),
                target: Some(target),
                decision: Some(decision),
                rule_version: Some(script.version),
                status,
                error,
                seen: Some(current),
                erased: None,
                shadow: None,
            }
        }
        Err(e) => Evaluation {
            error: Some(format!("rule {} v{} failed: {e}", ev.kind.as_str(), script.version)),
            event: Some(ev),
            target: Some(target),
            decision: None,
            rule_version: Some(script.version),
            status: InboxStatus::Failed,
            seen: Some(current),
            erased: None,
            shadow: None,
        },
    }
}

async fn decide_blocking(state: &Pipeline, r: Ready, current: Option<CurrentAccess>) -> AppResult<Evaluation> {
    let rules = state.rules.clone();
    blocking(move || decide(&rules, r, current)).await
}

/// Maps an understood event and runs the rules on it. Reads only.
pub async fn evaluate_event(
    state: &Pipeline,
    db: &impl ConnectionTrait,
    app_id: i32,
    ev: PaymentEvent,
) -> AppResult<Evaluation> {
    match prepare(state, db, app_id, ev, None).await? {
        Stage::Done(e) => Ok(e),
        Stage::Ready(r) => {
            let current = history::row_of(db, app_id, &r.source).await?.map(|e| access_of(&e));
            decide_blocking(state, r, current).await
        }
    }
}

/// What an entitlement gives now, as a rule script sees it.
fn access_of(r: &entity::entitlement::Model) -> CurrentAccess {
    CurrentAccess {
        status: r.status.effective(r.expires_at, chrono::Utc::now()),
        expires_at: r.expires_at,
    }
}

/// Evaluates a claimed row again inside the batch's transaction, against the ledger's view.
async fn reevaluate(
    state: &Pipeline,
    txn: &crate::db::WriteTxn,
    ledger: &mut Ledger,
    row: &we::Model,
) -> AppResult<Evaluation> {
    if row.raw_body.is_empty() {
        return Ok(Evaluation::stop(None, InboxStatus::Failed, EMPTIED));
    }
    let ev = match hotmart::parse_event(row.format, &row.raw_body, row.received_at) {
        Ok(ev) => ev,
        Err(e) => return Ok(unreadable(e)),
    };
    match prepare(state, txn, row.app_id, ev, None).await? {
        Stage::Done(e) => Ok(e),
        Stage::Ready(r) => {
            let current = ledger.current_access(txn, row.app_id, &r.source).await?;
            decide_blocking(state, r, current).await
        }
    }
}

/// What the retention left: an event that cannot be decided again.
const EMPTIED: &str = "its body was emptied by the retention (PORTEIRO_EVENT_BODY_RETENTION_DAYS): it cannot be decided again; what it decided stands";

fn unreadable(e: impl std::fmt::Display) -> Evaluation {
    Evaluation::stop(None, InboxStatus::Failed, format!("cannot read the payload: {e}"))
}

/// Processes one given event alone if it is still pending (a reconciliation applying its own
/// events; a failed batch retried event by event). The worker may have taken it already, which
/// is as good.
pub async fn process_row(state: &Pipeline, id: i32) -> AppResult<Option<i32>> {
    let txn = crate::db::write_txn(&state.db).await?;
    let mut q = we::Entity::find()
        .filter(we::Column::Status.eq(InboxStatus::Pending))
        .filter(we::Column::Id.eq(id));
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
        Ok((status, changed)) => {
            txn.commit().await?;
            state.access_changed(&changed);
            crate::telemetry::event_processed(status.as_str(), started.elapsed().as_secs_f64());
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

async fn note_failure(state: &Pipeline, id: i32, attempts: i32, e: &crate::AppError) -> AppResult<()> {
    e.log();
    let attempts = attempts + 1;
    let mut am = we::ActiveModel {
        id: Set(id),
        attempts: Set(attempts),
        ..Default::default()
    };
    if attempts >= MAX_ATTEMPTS {
        am.status = Set(InboxStatus::Failed);
        am.error = Set(Some(format!(
            "could not be applied after {attempts} attempts ({}); replay it once fixed",
            e.code()
        )));
    }
    am.update(&state.db).await?;
    Ok(())
}

/// Evaluates one claimed row and writes its outcome, inside the caller's transaction.
async fn apply_row(state: &Pipeline, txn: &crate::db::WriteTxn, row: we::Model) -> AppResult<(InboxStatus, Changed)> {
    let eval = evaluate(state, txn, row.app_id, row.format, &row.raw_body, row.received_at).await?;
    let mut ledger = Ledger::default();
    let out = write_outcome(txn, &mut ledger, row, eval).await?;
    ledger.flush(txn).await?;
    Ok(out)
}

/// Writes what an evaluation concluded: the inbox row, the event's fact, and every source it
/// touches recomputed.
async fn write_outcome(
    txn: &crate::db::WriteTxn,
    ledger: &mut Ledger,
    row: we::Model,
    eval: Evaluation,
) -> AppResult<(InboxStatus, Changed)> {
    let ev = eval.event.as_ref();
    let source = ev.and_then(PaymentEvent::source_key);
    let fact = fact_of(&eval, row.id);
    let mut email = ev
        .and_then(|e| e.buyer_email.as_deref())
        .and_then(|e| crate::domain::Email::parse(e).ok());
    let (app_id, row_id) = (row.app_id, row.id);
    if let (Some(pseudonym), Some(real)) = (&eval.erased, &email) {
        // Stored like the erased buyer's other events: under the pseudonym, scrubbed.
        let body = hotmart::personal::scrub(row.format, &row.raw_body, real.as_str(), pseudonym);
        we::ActiveModel {
            id: Set(row_id),
            raw_body: Set(body),
            ..Default::default()
        }
        .update(txn)
        .await?;
        email = crate::domain::Email::parse(pseudonym).ok();
    }
    if let (Some(sh), Some(ev)) = (&eval.shadow, ev) {
        let (active_key, active) = super::shadow::compared(eval.decision.as_ref(), eval.error.as_deref());
        let (shadow_key, shadow) = match &sh.decision {
            Ok(d) => super::shadow::compared(Some(d), None),
            Err(e) => super::shadow::compared(None, Some(e)),
        };
        ledger.shadowed(super::shadow::Note {
            app_id,
            event_type: ev.kind.as_str().to_string(),
            version: sh.version,
            event_row: row_id,
            agree: active_key == shadow_key,
            active,
            shadow,
        });
    }
    ledger.outcome(Outcome {
        id: row_id,
        status: eval.status,
        error: eval.error.clone(),
        decision: eval
            .decision
            .as_ref()
            .map(|d| serde_json::to_string(d).unwrap_or_default()),
        rule_version: eval.rule_version,
        email: email.as_ref().map(|e| e.as_str().to_string()),
        source_key: source.clone(),
        target_kind: eval.target.as_ref().map(|t| t.kind.as_str().to_string()),
        target_id: eval.target.as_ref().map(|t| t.id),
        transaction: ev.and_then(|e| e.transaction.clone()),
        occurred_at: ev.map(|e| e.occurred_at),
        // A delivery stored unreadable and read after an upgrade gets its real type.
        event_type: ev.map(|e| e.kind.as_str().to_string()),
        attempts: row.attempts + 1,
        processed_at: chrono::Utc::now(),
    });

    if let (Some(email), Some(_)) = (&email, &fact) {
        ledger
            .upsert_buyer(txn, app_id, email, ev.and_then(|e| e.buyer_name.as_deref()))
            .await?;
    }
    // A body the retention emptied cannot be read again (only a requeue that forgot to skip it
    // gets here): what it decided stands, untouched.
    if row.raw_body.is_empty() {
        return Ok((eval.status, Changed::default()));
    }
    // Whatever the old or the new outcome, every source this event touches is recomputed (a
    // replay that turns a decision into `ignore` must undo what it did).
    let touched = ledger
        .set_event_fact(txn, app_id, row_id, fact.as_ref().map(|(s, f)| (s.as_str(), f)))
        .await?;
    ledger
        .lock(txn, touched.iter().map(|s| (app_id, s.clone())).collect())
        .await?;
    let mut changed = Changed::default();
    for s in &touched {
        changed.extend(ledger.recompute(txn, app_id, s, "rules").await?);
    }
    Ok((eval.status, changed))
}

/// The fact an evaluation adds to its source's history (none unless it was processed).
fn fact_of(eval: &Evaluation, row_id: i32) -> Option<(String, crate::domain::Fact)> {
    match (&eval.event, &eval.target, &eval.decision, eval.status) {
        (Some(ev), Some(target), Some(d), InboxStatus::Processed) => {
            let source = ev.source_key()?;
            crate::domain::fact_of(ev, target, d, row_id, eval.rule_version).map(|f| (source, f))
        }
        _ => None,
    }
}

/// What processing `row` again under `candidate` would do, computed in a dry `ledger` (one
/// that is never written): the same parsing, mapping, rules and recomputation as the worker's
/// replay after an activation, the source's access as that replay would show it to the rules.
/// Returns the evaluation and every source it touched, before or now.
pub(super) async fn redecide_dry(
    state: &Pipeline,
    db: &impl ConnectionTrait,
    ledger: &mut Ledger,
    row: &we::Model,
    candidate: &crate::rules::ActiveScript,
) -> AppResult<(Evaluation, BTreeSet<String>)> {
    let eval = if row.raw_body.is_empty() {
        Evaluation::stop(None, InboxStatus::Failed, EMPTIED)
    } else {
        match hotmart::parse_event(row.format, &row.raw_body, row.received_at) {
            Err(e) => unreadable(e),
            Ok(ev) => match prepare(state, db, row.app_id, ev, Some(candidate)).await? {
                Stage::Done(e) => e,
                Stage::Ready(r) => {
                    let current = ledger.current_access(db, row.app_id, &r.source).await?;
                    // Inline: a backtest is a background job deciding thousands of events
                    // (a trip to the blocking pool for each cost it most of its time).
                    decide(&state.rules, r, current)
                }
            },
        }
    };
    if row.raw_body.is_empty() {
        return Ok((eval, BTreeSet::new()));
    }
    let fact = fact_of(&eval, row.id);
    let touched = ledger
        .set_event_fact(db, row.app_id, row.id, fact.as_ref().map(|(s, f)| (s.as_str(), f)))
        .await?;
    for s in &touched {
        // Nothing is written, so no cache has anything to forget.
        let _unwritten = ledger.recompute(db, row.app_id, s, "rules").await?;
    }
    Ok((eval, touched))
}

/// Events claimed and applied together, in one transaction.
pub const BATCH: u64 = 64;

/// Pending rows with what the rules concluded for each, in inbox order, not yet claimed.
type Prepared = Vec<(we::Model, Evaluation)>;

/// Reads up to `limit` of the oldest pending events but those in `skip` (the batch being
/// applied meanwhile, or rows already decided), and parses, maps and decides them, outside the write lock, against what
/// each source holds at that moment. The CPU work (parsing, the rules) runs on a blocking
/// thread, so a batch applying concurrently on the same runtime is not held up by it.
async fn prepare_batch(state: &Pipeline, skip: &[i32], limit: usize) -> AppResult<Prepared> {
    let mut q = we::Entity::find().filter(we::Column::Status.eq(InboxStatus::Pending));
    if !skip.is_empty() {
        q = q.filter(we::Column::Id.is_not_in(skip.to_vec()));
    }
    let rows = q
        .order_by_asc(we::Column::Id)
        .limit(limit as u64)
        .all(&state.db)
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let parsed = blocking(move || {
        rows.into_iter()
            .map(|row| {
                let ev = hotmart::parse_event(row.format, &row.raw_body, row.received_at).map_err(|e| e.to_string());
                (row, ev)
            })
            .collect::<Vec<_>>()
    })
    .await?;
    let mut staged = Vec::with_capacity(parsed.len());
    for (row, ev) in parsed {
        let stage = match ev {
            _ if row.raw_body.is_empty() => Stage::Done(Evaluation::stop(None, InboxStatus::Failed, EMPTIED)),
            Ok(ev) => prepare(state, &state.db, row.app_id, ev, None).await?,
            Err(e) => Stage::Done(unreadable(e)),
        };
        staged.push((row, stage));
    }
    // What every source the rules are about to be shown gives now: one query per app.
    let sources: BTreeSet<(i32, String)> = staged
        .iter()
        .filter_map(|(row, s)| match s {
            Stage::Ready(r) => Some((row.app_id, r.source.clone())),
            Stage::Done(_) => None,
        })
        .collect();
    let current = history::rows_of(&state.db, &sources).await?;
    // Every decision of the batch in one trip to a blocking thread.
    let rules = state.rules.clone();
    blocking(move || {
        staged
            .into_iter()
            .map(|(row, stage)| {
                let eval = match stage {
                    Stage::Done(e) => e,
                    Stage::Ready(r) => {
                        let cur = current.get(&(row.app_id, r.source.clone())).map(access_of);
                        decide(&rules, r, cur)
                    }
                };
                (row, eval)
            })
            .collect()
    })
    .await
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> AppResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::AppError::Internal(anyhow::anyhow!("event evaluation panicked: {e}")))
}

/// What applying a batch did: how many events it settled, and those it left for the next batch
/// (it yielded to waiting webhooks), with their evaluations.
struct Applied {
    settled: usize,
    left: Prepared,
}

/// Applies a prepared batch in one transaction. If the batch fails, its rows are retried one at
/// a time, so one bad row is set aside alone.
async fn apply_prepared(state: &Pipeline, prepared: Prepared) -> AppResult<Applied> {
    let ids: Vec<i32> = prepared.iter().map(|(r, _)| r.id).collect();
    let started = std::time::Instant::now();
    match apply_batch(state, prepared).await {
        Ok((statuses, left)) => {
            let per_event = started.elapsed().as_secs_f64() / statuses.len().max(1) as f64;
            for status in &statuses {
                crate::telemetry::event_processed(status.as_str(), per_event);
            }
            Ok(Applied {
                settled: statuses.len(),
                left,
            })
        }
        Err(e) => {
            e.log();
            tracing::warn!(
                events = ids.len(),
                "a batch failed; processing its events one at a time"
            );
            let mut settled = 0;
            for id in ids {
                if process_row(state, id).await?.is_some() {
                    settled += 1;
                }
            }
            Ok(Applied {
                settled,
                left: Vec::new(),
            })
        }
    }
}

/// Processes until the inbox is empty or `go` says stop (checked between batches). Returns how
/// many events were handled.
///
/// A pipeline of two: while one batch is applied under the write lock, the next one (the oldest
/// pending events but those being applied) is read, parsed and decided beside it, on the other
/// core. Its decisions may then be stale: inside the transaction each row's source is re-read,
/// and a row whose source is no longer what the rules were shown (the batch before it, an
/// earlier event of its own batch, or another worker changed it) is evaluated again there. So
/// per-source order and the rules' view are exactly those of one event at a time.
pub async fn drain_while(state: &Pipeline, go: impl Fn() -> bool) -> AppResult<usize> {
    let mut n = 0;
    let mut batch = prepare_batch(state, &[], batch_size(state)).await?;
    while !batch.is_empty() {
        let ids: Vec<i32> = batch.iter().map(|(r, _)| r.id).collect();
        // While webhooks come in, no second batch is prepared beside the first: ingest gets the
        // other core.
        let lean = state.ingest.busy();
        let (applied, next) = tokio::join!(apply_prepared(state, batch), async {
            if go() && !lean {
                prepare_batch(state, &ids, BATCH as usize).await
            } else {
                Ok(Vec::new())
            }
        });
        let Applied { settled, mut left } = applied?;
        n += settled;
        if !go() {
            break;
        }
        // What a yielding batch left is applied next, decided already, in inbox order with
        // the rest.
        left.extend(next?);
        let size = batch_size(state);
        if lean && left.len() < size {
            let held: Vec<i32> = left.iter().map(|(r, _)| r.id).collect();
            left.extend(prepare_batch(state, &held, size - left.len()).await?);
        }
        // At most the batch size wanted now (16 if webhooks just started coming in, though a
        // batch prepared before may carry more). Rows cut off are still pending: a later batch
        // reads them again.
        left.sort_by_key(|(r, _)| r.id);
        left.truncate(size);
        batch = left;
    }
    Ok(n)
}

/// Events per batch while webhooks come in, on SQLite: a batch holds the write lock every
/// waiting webhook needs until it commits, and most of that time is its final flush, which the
/// yield cannot cut short.
const BATCH_WHILE_BUSY: usize = 16;

fn batch_size(state: &Pipeline) -> usize {
    if state.db.get_database_backend() == DbBackend::Sqlite && state.ingest.busy() {
        BATCH_WHILE_BUSY
    } else {
        BATCH as usize
    }
}

/// Processes until the inbox is empty. Returns how many events were handled.
pub async fn drain(state: &Pipeline) -> AppResult<usize> {
    drain_while(state, || true).await
}

/// Applies a batch: claims the rows still pending, then per row in inbox order re-reads its
/// source and, when that is not what the rules were shown, evaluates it again. Returns each
/// applied row's status, and the rows left for the next batch when it yielded to ingest.
async fn apply_batch(state: &Pipeline, prepared: Prepared) -> AppResult<(Vec<InboxStatus>, Prepared)> {
    let started = std::time::Instant::now();
    let txn = crate::db::write_txn(&state.db).await?;
    let waited = started.elapsed();
    let ids: Vec<i32> = prepared.iter().map(|(r, _)| r.id).collect();
    let mut q = we::Entity::find()
        .select_only()
        .column(we::Column::Id)
        .filter(we::Column::Id.is_in(ids))
        .filter(we::Column::Status.eq(InboxStatus::Pending));
    if txn.get_database_backend() == DbBackend::Postgres {
        q = q.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let claimed: std::collections::HashSet<i32> = q.into_tuple::<i32>().all(&txn).await?.into_iter().collect();
    let prepared: Vec<_> = prepared.into_iter().filter(|(r, _)| claimed.contains(&r.id)).collect();
    let claimed_at = started.elapsed();
    // Every source of the batch locked up front in one order, so two processes' batches that
    // share sources cannot deadlock, then everything the batch reads, in a few queries.
    let sources: BTreeSet<(i32, String)> = prepared
        .iter()
        .filter_map(|(r, e)| Some((r.app_id, e.event.as_ref()?.source_key()?)))
        .collect();
    let emails: BTreeSet<(i32, String)> = prepared
        .iter()
        .filter_map(|(r, e)| {
            let email = crate::domain::Email::parse(e.event.as_ref()?.buyer_email.as_deref()?).ok()?;
            Some((r.app_id, email.as_str().to_string()))
        })
        .collect();
    let mut ledger = Ledger::default();
    let rows: Vec<i32> = prepared.iter().map(|(r, _)| r.id).collect();
    ledger.preload(&txn, &sources, &emails, &rows).await?;
    let preloaded_at = started.elapsed();
    let mut statuses = Vec::with_capacity(prepared.len());
    let mut changed = Changed::default();
    let yield_after = std::time::Duration::from_millis(state.settings.worker_yield_ms);
    let mut rest = prepared.into_iter();
    let mut left = Vec::new();
    while let Some((row, mut eval)) = rest.next() {
        // Webhooks wait for the gate this batch holds, and are answered only after their commit:
        // past a few milliseconds of holding it, let them in. The rest goes to the next batch.
        if !statuses.is_empty() && started.elapsed() - waited >= yield_after && txn.ingest_waiting() {
            crate::telemetry::worker_yield();
            left.push((row, eval));
            left.extend(rest);
            break;
        }
        let source = eval.event.as_ref().and_then(PaymentEvent::source_key);
        let stale = match (&eval.seen, source) {
            (Some(seen), Some(source)) => ledger.current_access(&txn, row.app_id, &source).await? != *seen,
            _ => false,
        };
        if stale {
            eval = reevaluate(state, &txn, &mut ledger, &row).await?;
        }
        let (status, c) = write_outcome(&txn, &mut ledger, row, eval).await?;
        statuses.push(status);
        changed.extend(c);
    }
    // Connections re-plan every statement (`force_custom_plan`, for the batch's `IN (…)` reads,
    // whose generic plans were chosen against stale statistics). The writes are keyed inserts
    // and updates, and their foreign-key checks, that one generic plan serves as well: re-planning
    // them was a tenth of the server's time (measured: the worker 0.24-0.26x raw -> 0.31-0.34x).
    let looped_at = started.elapsed();
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL plan_cache_mode = auto").await?;
    }
    ledger.flush(&txn).await?;
    let before_commit = started.elapsed();
    txn.commit().await?;
    state.access_changed(&changed);
    tracing::debug!(
        batch = statuses.len(),
        left = left.len(),
        waited_ms = waited.as_secs_f64() * 1e3,
        applied_ms = (before_commit - waited).as_secs_f64() * 1e3,
        claim_ms = (claimed_at - waited).as_secs_f64() * 1e3,
        preload_ms = (preloaded_at - claimed_at).as_secs_f64() * 1e3,
        loop_ms = (looped_at - preloaded_at).as_secs_f64() * 1e3,
        flush_ms = (before_commit - looped_at).as_secs_f64() * 1e3,
        total_ms = started.elapsed().as_secs_f64() * 1e3,
        "worker batch committed"
    );
    Ok((statuses, left))
}

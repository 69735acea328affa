//! Reconciliation: pull sales and subscriptions from Hotmart's REST API for a window, turn them
//! into the domain events the webhook would have produced (deterministic ids, so a rerun adds
//! nothing), and run them through the same rules and order-safe apply path. A dry run only
//! reports the drift.
use std::collections::{BTreeMap, HashMap};

use tokio::sync::watch;

use chrono::{DateTime, Duration, Utc};
use entity::reconciliation_run as run;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminWrite, Change, catalog, integration};
use crate::audit;
use crate::domain::{EntitlementStatus, EventKind, Fact, PaymentEvent, fact_of, project};
use crate::hotmart::{Format, snapshot};
use crate::pipeline::{history, inbox, worker as processor};
use crate::{AppError, AppResult, AppState};
use entity::status::{InboxStatus, RunStage, RunStatus};

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

/// How often a running job proves it is alive; a run silent for [`STALE_AFTER`] was orphaned.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);
const STALE_AFTER: Duration = Duration::seconds(60);
/// Events written per transaction when a run applies what it found.
const INSERT_BATCH: usize = 500;

pub use crate::jobs::Stop;

/// Progress written to the run row (stage and count), at most once per heartbeat, plus the
/// caller's own progress (the CLI's bar).
struct RowProgress<'a> {
    latest: std::sync::Mutex<(RunStage, u64)>,
    inner: &'a dyn Progress,
}

impl Progress for RowProgress<'_> {
    fn stage(&self, stage: RunStage) {
        *self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = (stage, 0);
        self.inner.stage(stage);
    }
    fn count(&self, n: u64) {
        self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner).1 = n;
        self.inner.count(n);
    }
}

async fn beat(db: &impl ConnectionTrait, run_id: i32, stage: RunStage, progress: u64) -> AppResult<()> {
    run::Entity::update_many()
        .col_expr(run::Column::HeartbeatAt, sea_orm::sea_query::Expr::value(super::now()))
        .col_expr(run::Column::Stage, sea_orm::sea_query::Expr::value(stage))
        .col_expr(run::Column::Progress, sea_orm::sea_query::Expr::value(progress as i64))
        .filter(run::Column::Id.eq(run_id))
        .filter(run::Column::Status.eq(RunStatus::Running))
        .exec(db)
        .await?;
    Ok(())
}

async fn begin(
    state: &AppState,
    app_id: i32,
    req: &Request,
) -> AppResult<(run::Model, crate::hotmart::api::Credentials)> {
    validate(req.since, req.until)?;
    let creds = integration::credentials(state, app_id).await?;
    let now = super::now();
    let started = run::ActiveModel {
        app_id: Set(app_id),
        trigger: Set(req.trigger.into()),
        since: Set(req.since),
        until: Set(req.until),
        dry_run: Set(req.dry_run),
        status: Set(RunStatus::Running),
        started_at: Set(now),
        stage: Set(Some(RunStage::Starting)),
        progress: Set(0),
        heartbeat_at: Set(Some(now)),
        ..Default::default()
    }
    .insert(&state.db)
    .await?;
    Ok((started, creds))
}

/// Runs a started job to its end and records how it ended: succeeded, failed (Hotmart or the
/// database said no) or cancelled. The row is written whatever happens to `stop`.
async fn run_job(
    state: &AppState,
    started: run::Model,
    creds: crate::hotmart::api::Credentials,
    req: Request,
    progress: &dyn Progress,
    mut stop: watch::Receiver<Option<Stop>>,
) -> AppResult<run::Model> {
    let (run_id, app_id) = (started.id, started.app_id);
    let rows = RowProgress {
        latest: std::sync::Mutex::new((RunStage::Starting, 0)),
        inner: progress,
    };
    let work = execute(state, app_id, run_id, &creds, &req, &rows);
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(HEARTBEAT);
    let outcome: Result<Report, Result<Stop, AppError>> = loop {
        tokio::select! {
            r = &mut work => break r.map_err(Err),
            _ = ticker.tick() => {
                let (stage, n) = *rows.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Err(e) = beat(&state.db, run_id, stage, n).await {
                    e.log();
                }
            }
            changed = stop.changed() => {
                match (changed, *stop.borrow()) {
                    (Ok(()), Some(why)) => break Err(Ok(why)),
                    (Err(_), _) => break Err(Ok(Stop::Shutdown)),
                    _ => {}
                }
            }
        }
    };
    let (stage, n) = *rows.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut am: run::ActiveModel = started.into();
    am.finished_at = Set(Some(super::now()));
    am.heartbeat_at = Set(Some(super::now()));
    am.progress = Set(n as i64);
    let label = match &outcome {
        Ok(report) => {
            am.status = Set(RunStatus::Succeeded);
            am.stage = Set(Some(RunStage::Done));
            am.report = Set(Some(serde_json::to_string(report).map_err(AppError::internal)?));
            RunStatus::Succeeded
        }
        Err(Ok(why)) => {
            am.status = Set(RunStatus::Cancelled);
            am.stage = Set(Some(stage));
            am.error = Set(Some(match why {
                Stop::Cancelled => "cancelled by an admin; what was applied stays (a rerun adds the rest)".into(),
                Stop::Shutdown => {
                    "the service stopped while it ran; what was applied stays (a rerun adds the rest)".into()
                }
            }));
            RunStatus::Cancelled
        }
        Err(Err(e)) => {
            e.log();
            am.status = Set(RunStatus::Failed);
            am.stage = Set(Some(stage));
            am.error = Set(Some(e.public_message()));
            RunStatus::Failed
        }
    };
    // The run's end and its audit row commit together: whoever waits for the status (the
    // `wait` of the mutation) finds the audit row too.
    let txn = crate::db::write_txn(&state.db).await?;
    let saved = am.update(&txn).await?;
    if let Ok(report) = &outcome
        && report.applied
    {
        audit::record(
            &txn,
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
    #[allow(clippy::disallowed_methods)] // a run's end and its summary, audited here
    txn.commit().await?;
    crate::telemetry::reconciliation(label.as_str());
    Ok(saved)
}

/// Runs one reconciliation in the caller's task (the CLI, the scheduler) and records it. A
/// failure talking to Hotmart is recorded on the run (status `failed`) and returned as the run.
pub async fn reconcile(state: &AppState, app_id: i32, req: Request, progress: &dyn Progress) -> AppResult<run::Model> {
    let (started, creds) = begin(state, app_id, &req).await?;
    let stop = state.runs.register(started.id);
    let out = run_job(state, started.clone(), creds, req, progress, stop).await;
    state.runs.forget(started.id);
    out
}

/// Starts a reconciliation as a background job and returns its run at once (`running`). The
/// job lives on if the request that started it goes away; `reconciliationRuns` shows its stage
/// and progress; `cancel` stops it.
pub async fn start(state: &AppState, app_id: i32, req: Request) -> AppResult<run::Model> {
    let (started, creds) = begin(state, app_id, &req).await?;
    let stop = state.runs.register(started.id);
    let (st, row) = (state.clone(), started.clone());
    tokio::spawn(async move {
        let id = row.id;
        // A panic inside the job must still finish its row.
        let job = tokio::spawn({
            let st = st.clone();
            async move { run_job(&st, row, creds, req, &Silent, stop).await }
        });
        match job.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => e.log(),
            Err(e) => {
                tracing::error!(run = id, error = %e, "reconciliation job crashed");
                let _ = finish_orphan(&st.db, id, RunStatus::Failed, "the job crashed; see the service log").await;
            }
        }
        st.runs.forget(id);
    });
    Ok(started)
}

/// Waits until a run is no longer `running` (or `timeout` passes) and returns it.
pub async fn wait(state: &AppState, app_id: i32, run_id: i32, timeout: std::time::Duration) -> AppResult<run::Model> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let r = get(&state.db, app_id, run_id).await?;
        if r.status != RunStatus::Running || tokio::time::Instant::now() >= deadline {
            return Ok(r);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub async fn get(db: &impl ConnectionTrait, app_id: i32, run_id: i32) -> AppResult<run::Model> {
    run::Entity::find_by_id(run_id)
        .filter(run::Column::AppId.eq(app_id))
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found(format!("reconciliation run {run_id} not found")))
}

/// Asks a running job to stop. A run whose job is in another process is stopped by that
/// process's heartbeat check: here it is only marked, and `cancelled` if it has gone silent.
pub async fn cancel(state: &AppState, who: &crate::auth::Principal, run_id: i32) -> AppResult<run::Model> {
    who.require_admin()?;
    let r = get(&state.db, who.app_id, run_id).await?;
    if r.status != RunStatus::Running {
        return Err(AppError::Conflict(format!(
            "reconciliation run {run_id} is already {}",
            r.status
        )));
    }
    let txn = AdminWrite::begin(state, who).await?;
    if !state.runs.stop(run_id, Stop::Cancelled) {
        finish_orphan(&txn, run_id, RunStatus::Cancelled, "cancelled by an admin").await?;
    }
    txn.commit(
        Change::new("reconcile.cancel", format!("reconciliation_run:{run_id}")),
        [],
    )
    .await?;
    wait(state, who.app_id, run_id, std::time::Duration::from_secs(10)).await
}

async fn finish_orphan(db: &impl ConnectionTrait, run_id: i32, status: RunStatus, why: &str) -> AppResult<()> {
    run::Entity::update_many()
        .col_expr(run::Column::Status, sea_orm::sea_query::Expr::value(status))
        .col_expr(run::Column::Error, sea_orm::sea_query::Expr::value(why.to_string()))
        .col_expr(run::Column::FinishedAt, sea_orm::sea_query::Expr::value(super::now()))
        .filter(run::Column::Id.eq(run_id))
        .filter(run::Column::Status.eq(RunStatus::Running))
        .exec(db)
        .await?;
    Ok(())
}

/// Finishes as failed every run whose job stopped beating (its process died): no run stays
/// `running` forever. Called at start-up and by the scheduler.
pub async fn sweep_orphans(db: &impl ConnectionTrait) -> AppResult<u64> {
    let cutoff = super::now() - STALE_AFTER;
    let res = run::Entity::update_many()
        .col_expr(run::Column::Status, sea_orm::sea_query::Expr::value(RunStatus::Failed))
        .col_expr(
            run::Column::Error,
            sea_orm::sea_query::Expr::value(
                "interrupted: the process running it stopped; a rerun adds what is missing",
            ),
        )
        .col_expr(run::Column::FinishedAt, sea_orm::sea_query::Expr::value(super::now()))
        .filter(run::Column::Status.eq(RunStatus::Running))
        .filter(
            sea_orm::Condition::any()
                .add(run::Column::HeartbeatAt.lt(cutoff))
                .add(run::Column::HeartbeatAt.is_null()),
        )
        .exec(db)
        .await?;
    Ok(res.rows_affected)
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
    run_id: i32,
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

    progress.stage(RunStage::Comparing);
    // What each source's access would become once the new facts join its history.
    let mut by_source: BTreeMap<String, Vec<Fact>> = BTreeMap::new();
    let mut unmapped = std::collections::BTreeSet::new();
    for ev in &fresh {
        let eval = processor::evaluate_event(state, &state.db, app_id, ev.clone()).await?;
        if eval.status == InboxStatus::Unmapped
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
        let mut all = history::facts(&state.db, app_id, &source).await?;
        all.extend(new_facts);
        let Some(after) = project(&all) else { continue };
        let before = history::row_of(&state.db, app_id, &source).await?;
        let after_status = after.status.effective(after.expires_at, now);
        let before_status = before.as_ref().map(|b| b.status.effective(b.expires_at, now));
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
        // Written in batches (one transaction each), then only this run's events are processed:
        // other apps' inboxes are the worker's business.
        progress.stage(RunStage::Storing);
        let mut ids = Vec::with_capacity(fresh.len());
        for (n, chunk) in fresh.chunks(INSERT_BATCH).enumerate() {
            let txn = crate::db::write_txn(&state.db).await?;
            for ev in chunk {
                let raw = serde_json::to_vec(ev).map_err(AppError::internal)?;
                let rec = inbox::insert(
                    &txn,
                    inbox::RecordInput {
                        app_id,
                        origin: inbox::ORIGIN_RECONCILE,
                        event_id: ev.event_id.clone(),
                        event_type: ev.kind.as_str().to_string(),
                        format: Format::Api,
                        raw,
                        headers: json!({"reconciliationRun": run_id}),
                        occurred_at: Some(ev.occurred_at),
                        is_test: ev.is_test,
                        unreadable: None,
                    },
                )
                .await?;
                if let inbox::Recorded::New(id) = rec {
                    ids.push(id);
                }
            }
            #[allow(clippy::disallowed_methods)]
            // found events are facts from Hotmart; the run is audited when it ends
            txn.commit().await?;
            progress.count(((n + 1) * INSERT_BATCH).min(fresh.len()) as u64);
        }
        progress.stage(RunStage::Applying);
        for (i, id) in ids.iter().enumerate() {
            processor::process_row(state, *id).await?;
            progress.count(i as u64 + 1);
        }
        report.applied = true;
    }
    Ok(report)
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
            Ok(r) if r.status == RunStatus::Failed => {
                tracing::warn!(app_id = integ.app_id, error = ?r.error, "scheduled reconciliation failed");
            }
            Ok(_) => ran += 1,
            Err(e) => e.log(),
        }
    }
    Ok(ran)
}

//! Backtests of rule versions as background jobs: started by an admin, they run the candidate
//! over the stored events of its type ([`crate::pipeline::backtest`]) and keep the report on
//! their row, listed per version. Like reconciliation: stage, progress, heartbeat, cancel.
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, Utc};
use entity::rule_backtest as bt;
use entity::status::RunStatus;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use tokio::sync::watch;

use super::{AdminWrite, Change};
use crate::auth::Principal;
use crate::jobs::Stop;
use crate::pipeline::backtest;
pub use crate::pipeline::backtest::{AccessState, ChangeKind, Report, Window};
use crate::rules::ActiveScript;
use crate::{AppError, AppResult, AppState};

const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);
const STALE_AFTER: Duration = Duration::seconds(60);

/// The script of a saved version (0: the shipped default).
pub async fn script(db: &impl ConnectionTrait, app_id: i32, event_type: &str, version: i32) -> AppResult<ActiveScript> {
    if version == 0 {
        return crate::rules::default_script(event_type)
            .map(|s| ActiveScript {
                version: 0,
                source: s.to_string(),
            })
            .ok_or_else(|| AppError::not_found(format!("{event_type} has no rule")));
    }
    let row = entity::rule_script::Entity::find()
        .filter(entity::rule_script::Column::AppId.eq(app_id))
        .filter(entity::rule_script::Column::EventType.eq(event_type))
        .filter(entity::rule_script::Column::Version.eq(version))
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found(format!("{event_type} has no version {version}")))?;
    Ok(ActiveScript {
        version: row.version,
        source: row.source,
    })
}

/// Counts written to the row by the heartbeat, and the stop signal.
struct Tracker {
    total: AtomicU64,
    evaluated: AtomicU64,
    stop: watch::Receiver<Option<Stop>>,
}

impl backtest::Progress for Tracker {
    fn total(&self, n: u64) {
        self.total.store(n, Ordering::Relaxed);
    }
    fn evaluated(&self, n: u64) {
        self.evaluated.store(n, Ordering::Relaxed);
    }
    fn cancelled(&self) -> bool {
        self.stop.borrow().is_some()
    }
}

/// Starts a backtest of `version` of `event_type`'s rule as a background job and returns its
/// row at once (`running`). Reads only: nothing it computes is applied.
pub async fn start(
    state: &AppState,
    who: &Principal,
    event_type: &str,
    version: i32,
    window: Window,
) -> AppResult<bt::Model> {
    who.require_admin()?;
    super::rules::check_event_type(event_type)?;
    if let (Some(a), Some(b)) = (window.since, window.until)
        && a >= b
    {
        return Err(AppError::InvalidFields(vec![(
            "until".into(),
            "the window's end must come after its start".into(),
        )]));
    }
    let candidate = script(&state.db, who.app_id, event_type, version).await?;
    let now = super::now();
    let txn = AdminWrite::begin(state, who).await?;
    let row = bt::ActiveModel {
        app_id: Set(who.app_id),
        event_type: Set(event_type.into()),
        version: Set(version),
        since: Set(window.since),
        until: Set(window.until),
        status: Set(RunStatus::Running),
        stage: Set(Some("counting".into())),
        progress: Set(0),
        total: Set(0),
        created_by: Set(who.actor()),
        started_at: Set(now),
        heartbeat_at: Set(Some(now)),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    txn.commit(
        Change::new("rule.backtest", format!("rule:{event_type}")).after(serde_json::json!({
            "backtest": row.id, "version": version,
        })),
        [],
    )
    .await?;
    let stop = state.backtests.register(row.id);
    let (st, started) = (state.clone(), row.clone());
    tokio::spawn(async move {
        let id = started.id;
        let job = tokio::spawn({
            let st = st.clone();
            async move { run_job(&st, started, candidate, window, stop).await }
        });
        match job.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                e.log();
                let _ = finish(&st.db, id, RunStatus::Failed, None, Some(e.public_message())).await;
            }
            Err(e) => {
                tracing::error!(backtest = id, error = %e, "backtest job crashed");
                let _ = finish(
                    &st.db,
                    id,
                    RunStatus::Failed,
                    None,
                    Some("the job crashed; see the service log".into()),
                )
                .await;
            }
        }
        st.backtests.forget(id);
    });
    Ok(row)
}

async fn run_job(
    state: &AppState,
    row: bt::Model,
    candidate: ActiveScript,
    window: Window,
    stop: watch::Receiver<Option<Stop>>,
) -> AppResult<()> {
    let tracker = Tracker {
        total: AtomicU64::new(0),
        evaluated: AtomicU64::new(0),
        stop: stop.clone(),
    };
    let event_type = row.event_type.clone();
    let work = backtest::run(&state.pipeline, row.app_id, &event_type, &candidate, &window, &tracker);
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(HEARTBEAT);
    let report = loop {
        tokio::select! {
            r = &mut work => break r?,
            _ = ticker.tick() => {
                let (n, total) = (tracker.evaluated.load(Ordering::Relaxed), tracker.total.load(Ordering::Relaxed));
                bt::Entity::update_many()
                    .col_expr(bt::Column::HeartbeatAt, Expr::value(super::now()))
                    .col_expr(bt::Column::Stage, Expr::value(if total > 0 { "evaluating" } else { "counting" }))
                    .col_expr(bt::Column::Progress, Expr::value(n as i64))
                    .col_expr(bt::Column::Total, Expr::value(total as i64))
                    .filter(bt::Column::Id.eq(row.id))
                    .filter(bt::Column::Status.eq(RunStatus::Running))
                    .exec(&state.db)
                    .await?;
            }
        }
    };
    let (n, total) = (
        tracker.evaluated.load(Ordering::Relaxed),
        tracker.total.load(Ordering::Relaxed),
    );
    let mut am: bt::ActiveModel = row.into();
    am.progress = Set(n as i64);
    am.total = Set(total as i64);
    am.finished_at = Set(Some(super::now()));
    am.heartbeat_at = Set(Some(super::now()));
    match report {
        Some(report) => {
            am.status = Set(RunStatus::Succeeded);
            am.stage = Set(Some("done".into()));
            am.report = Set(Some(serde_json::to_string(&report).map_err(AppError::internal)?));
        }
        None => {
            am.status = Set(RunStatus::Cancelled);
            am.error = Set(Some(match *stop.borrow() {
                Some(Stop::Shutdown) => "the service stopped while it ran; start it again".into(),
                _ => "cancelled by an admin".into(),
            }));
        }
    }
    am.update(&state.db).await?;
    Ok(())
}

async fn finish(
    db: &impl ConnectionTrait,
    id: i32,
    status: RunStatus,
    report: Option<String>,
    error: Option<String>,
) -> AppResult<()> {
    bt::Entity::update_many()
        .col_expr(bt::Column::Status, Expr::value(status))
        .col_expr(bt::Column::Report, Expr::value(report))
        .col_expr(bt::Column::Error, Expr::value(error))
        .col_expr(bt::Column::FinishedAt, Expr::value(super::now()))
        .filter(bt::Column::Id.eq(id))
        .filter(bt::Column::Status.eq(RunStatus::Running))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn get(db: &impl ConnectionTrait, app_id: i32, id: i32) -> AppResult<bt::Model> {
    bt::Entity::find_by_id(id)
        .filter(bt::Column::AppId.eq(app_id))
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found(format!("backtest {id} not found")))
}

/// Backtests of an event type's rule (of one version, when given), newest first.
pub async fn list(
    db: &impl ConnectionTrait,
    app_id: i32,
    event_type: &str,
    version: Option<i32>,
    first: u64,
) -> AppResult<Vec<bt::Model>> {
    let mut q = bt::Entity::find()
        .filter(bt::Column::AppId.eq(app_id))
        .filter(bt::Column::EventType.eq(event_type));
    if let Some(v) = version {
        q = q.filter(bt::Column::Version.eq(v));
    }
    Ok(q.order_by_desc(bt::Column::Id).limit(first).all(db).await?)
}

/// Waits until a backtest is no longer `running` (or `timeout` passes) and returns it.
pub async fn wait(state: &AppState, app_id: i32, id: i32, timeout: std::time::Duration) -> AppResult<bt::Model> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let r = get(&state.db, app_id, id).await?;
        if r.status != RunStatus::Running || tokio::time::Instant::now() >= deadline {
            return Ok(r);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub fn report_of(r: &bt::Model) -> Option<Report> {
    serde_json::from_str(r.report.as_deref()?).ok()
}

/// Stops a running backtest. One whose job is in another process that went silent is
/// finished as cancelled here.
pub async fn cancel(state: &AppState, who: &Principal, id: i32) -> AppResult<bt::Model> {
    who.require_admin()?;
    let r = get(&state.db, who.app_id, id).await?;
    if r.status != RunStatus::Running {
        return Err(AppError::Conflict(format!("backtest {id} is already {}", r.status)));
    }
    let txn = AdminWrite::begin(state, who).await?;
    if !state.backtests.stop(id, Stop::Cancelled) {
        finish(
            &txn,
            id,
            RunStatus::Cancelled,
            None,
            Some("cancelled by an admin".into()),
        )
        .await?;
    }
    txn.commit(
        Change::new("rule.backtest_cancel", format!("rule:{}", r.event_type)),
        [],
    )
    .await?;
    wait(state, who.app_id, id, std::time::Duration::from_secs(10)).await
}

/// Finishes as failed every backtest whose job stopped beating (its process died).
pub async fn sweep_orphans(db: &impl ConnectionTrait) -> AppResult<u64> {
    let cutoff: DateTime<Utc> = super::now() - STALE_AFTER;
    let r = bt::Entity::update_many()
        .col_expr(bt::Column::Status, Expr::value(RunStatus::Failed))
        .col_expr(
            bt::Column::Error,
            Expr::value("the process running it stopped; start it again"),
        )
        .col_expr(bt::Column::FinishedAt, Expr::value(super::now()))
        .filter(bt::Column::Status.eq(RunStatus::Running))
        .filter(bt::Column::HeartbeatAt.lt(cutoff))
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

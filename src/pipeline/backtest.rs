//! What activating a rule version would do, computed without writing anything: the stored
//! events an activation sends back to the queue are decided again by the candidate, through
//! the worker's own parsing, mapping, rules and ledger (a dry one), in the order the worker
//! would take them, and every source they touch is compared with what it gives now.
//!
//! Sources are independent (a source's access folds its own history), so the history streams
//! a few hundred sources at a time and memory stays bounded whatever its size.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use entity::status::{EntitlementStatus, InboxStatus};
use entity::webhook_event as we;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect};
use serde::{Deserialize, Serialize};

use super::Pipeline;
use super::ledger::Ledger;
use super::worker::{Evaluation, redecide_dry};
use crate::AppResult;
use crate::domain::Decision;
use crate::rules::ActiveScript;

/// Sources read and decided together.
const SOURCES_PER_CHUNK: usize = 500;
/// Source changes a report lists (the counts cover them all).
pub const MAX_LISTED: usize = 10_000;

/// The events an activation of `event_type`'s rule sends back to the queue: those its scripts
/// decided (processed or ignored), not Hotmart's tests, their body still stored (an emptied
/// body cannot be decided again: what it decided stands).
pub fn redecided_on_activation(app_id: i32, event_type: &str) -> Condition {
    Condition::all()
        .add(we::Column::AppId.eq(app_id))
        .add(we::Column::EventType.eq(event_type))
        .add(we::Column::Status.is_in([InboxStatus::Processed, InboxStatus::Ignored]))
        .add(we::Column::IsTest.eq(false))
        .add(Expr::cust("length(raw_body) > 0"))
}

/// Which stored events to try the candidate on: all that an activation re-decides, or those
/// received in a window.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// A source's access at one side of the comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessState {
    pub email: String,
    pub target_kind: String,
    pub target_id: i32,
    /// As of the backtest: an end that passed reads EXPIRED.
    pub status: EntitlementStatus,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeKind {
    /// Had no active access, would have it.
    Gained,
    /// Has active access, would not.
    Lost,
    /// Would be suspended (a dispute), not before.
    Suspended,
    /// Active either way, its end moved.
    EndMoved,
    /// Anything else: a revoked row that would read expired, another holder…
    Changed,
}

/// One event the candidate decided, as stored and as it would be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDecision {
    /// The inbox row.
    pub id: i32,
    pub event_id: String,
    pub event_type: String,
    pub received_at: DateTime<Utc>,
    pub before: String,
    pub after: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceChange {
    pub source: String,
    pub kind: ChangeKind,
    pub before: Option<AccessState>,
    pub after: Option<AccessState>,
    /// How far the end moves when both sides have one (seconds; later is positive).
    pub end_moved_by_seconds: Option<i64>,
    /// The source's events the candidate decided, in the order it decided them.
    pub events: Vec<EventDecision>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionCount {
    pub from: String,
    pub to: String,
    pub count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub events_evaluated: u64,
    pub decisions_changed: u64,
    /// Changed decisions by kind: grant, revoke, suspend, ignore, or the status an event would
    /// end in without a decision (unmapped, failed).
    pub decision_changes: Vec<DecisionCount>,
    pub sources_touched: u64,
    pub gained: u64,
    pub lost: u64,
    pub suspended: u64,
    pub end_moved: u64,
    pub changed: u64,
    /// Every source whose access would change, up to [`MAX_LISTED`].
    pub changes: Vec<SourceChange>,
    pub truncated: bool,
}

/// What the run reports as it goes.
pub trait Progress: Send + Sync {
    fn total(&self, n: u64);
    fn evaluated(&self, n: u64);
    /// Asked between chunks: `true` stops the run.
    fn cancelled(&self) -> bool;
}

/// An evaluation's decision as a short kind and as a full label (an ignore without its
/// reason, so rewording one is not a change).
fn decided(status: InboxStatus, decision: Option<&Decision>) -> (&'static str, String) {
    match decision {
        Some(Decision::Ignore { .. }) => ("ignore", "ignore".into()),
        Some(d) => (d.action(), d.label()),
        None => (status.as_str(), status.as_str().to_string()),
    }
}

fn kind_of(before: Option<&AccessState>, after: Option<&AccessState>) -> Option<(ChangeKind, Option<i64>)> {
    if before == after {
        return None;
    }
    let active = |s: Option<&AccessState>| s.is_some_and(|s| s.status == EntitlementStatus::Active);
    let suspended = |s: Option<&AccessState>| s.is_some_and(|s| s.status == EntitlementStatus::Suspended);
    let moved = match (before.and_then(|b| b.expires_at), after.and_then(|a| a.expires_at)) {
        (Some(b), Some(a)) if a != b => Some((a - b).num_seconds()),
        _ => None,
    };
    let kind = if suspended(after) && !suspended(before) {
        ChangeKind::Suspended
    } else if active(after) && !active(before) {
        ChangeKind::Gained
    } else if active(before) && !active(after) {
        ChangeKind::Lost
    } else if active(before)
        && active(after)
        && before.map(|b| (&b.email, &b.target_kind, b.target_id))
            == after.map(|a| (&a.email, &a.target_kind, a.target_id))
    {
        ChangeKind::EndMoved
    } else {
        ChangeKind::Changed
    };
    Some((kind, moved))
}

async fn state_of(
    db: &impl ConnectionTrait,
    ledger: &mut Ledger,
    app_id: i32,
    source: &str,
    now: DateTime<Utc>,
) -> AppResult<Option<AccessState>> {
    Ok(ledger
        .entitlement(db, app_id, source)
        .await?
        .map(|(row, email)| AccessState {
            email,
            target_kind: row.target_kind.clone(),
            target_id: row.target_id,
            status: row.status.effective(row.expires_at, now),
            expires_at: row.expires_at,
        }))
}

fn filtered(app_id: i32, event_type: &str, window: &Window) -> Condition {
    let mut c = redecided_on_activation(app_id, event_type);
    if let Some(t) = window.since {
        c = c.add(we::Column::ReceivedAt.gte(t));
    }
    if let Some(t) = window.until {
        c = c.add(we::Column::ReceivedAt.lt(t));
    }
    c
}

/// Runs `candidate` over the stored events of `event_type` and reports what activating it
/// would change. Reads only.
pub async fn run(
    state: &Pipeline,
    app_id: i32,
    event_type: &str,
    candidate: &ActiveScript,
    window: &Window,
    progress: &dyn Progress,
) -> AppResult<Option<Report>> {
    run_in_chunks(
        state,
        app_id,
        event_type,
        candidate,
        window,
        progress,
        SOURCES_PER_CHUNK,
    )
    .await
}

/// [`run`] with another number of sources decided together (tests: that chunking changes
/// nothing).
#[doc(hidden)]
pub async fn run_in_chunks(
    state: &Pipeline,
    app_id: i32,
    event_type: &str,
    candidate: &ActiveScript,
    window: &Window,
    progress: &dyn Progress,
    sources_per_chunk: usize,
) -> AppResult<Option<Report>> {
    let db = &state.db;
    let now = Utc::now();
    let cond = || filtered(app_id, event_type, window);
    progress.total(we::Entity::find().filter(cond()).count(db).await?);
    // Every event's id and source first (small, read by index), sorted by source; then a
    // chunk of sources at a time, its events read by id: all of a source's events are decided
    // in one ledger, in inbox order. Events that name no source each stand alone.
    let mut keys: Vec<(Option<String>, i32)> = we::Entity::find()
        .select_only()
        .column(we::Column::SourceKey)
        .column(we::Column::Id)
        .filter(cond())
        .into_tuple()
        .all(db)
        .await?;
    keys.sort();
    // Up to SOURCES_PER_CHUNK sources (or as many source-less events) a chunk, whole.
    let mut chunks: Vec<Vec<i32>> = Vec::new();
    let mut start = 0;
    while start < keys.len() {
        let mut end = start;
        let mut sources = 0;
        while end < keys.len() && sources < sources_per_chunk.max(1) {
            let first = end;
            end += 1;
            if keys[first].0.is_some() {
                while end < keys.len() && keys[end].0 == keys[first].0 {
                    end += 1;
                }
            }
            sources += 1;
        }
        let mut ids: Vec<i32> = keys[start..end].iter().map(|(_, id)| *id).collect();
        ids.sort_unstable();
        chunks.push(ids);
        start = end;
    }
    drop(keys);
    let mut report = Report::default();
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    // The next chunk's events are read while this one is decided.
    // Chunks are read ahead (their events, and everything their sources hold), a few at a time
    // beside the one being decided: on PostgreSQL reading is most of a chunk's time.
    let mut queued = chunks.into_iter();
    let read = |ids: Vec<i32>| {
        let db = db.clone();
        tokio::spawn(async move { read_chunk(&db, app_id, &ids, now).await })
    };
    let mut ahead = Ahead(queued.by_ref().take(READ_AHEAD).map(read).collect());
    while let Some(reading) = ahead.0.pop_front() {
        if progress.cancelled() {
            return Ok(None);
        }
        let chunk = reading.await.map_err(crate::AppError::internal)??;
        if let Some(ids) = queued.next() {
            ahead.0.push_back(read(ids));
        }
        evaluate_chunk(state, app_id, candidate, chunk, now, &mut report, &mut counts).await?;
        progress.evaluated(report.events_evaluated);
    }
    report.decision_changes = counts
        .into_iter()
        .map(|((from, to), count)| DecisionCount { from, to, count })
        .collect();
    report.changes.sort_by(|a, b| a.source.cmp(&b.source));
    Ok(Some(report))
}

/// Chunks read at once beside the one being decided.
const READ_AHEAD: usize = 3;

/// Reads in flight; those left when the run stops early are stopped with it.
struct Ahead(std::collections::VecDeque<tokio::task::JoinHandle<AppResult<Chunk>>>);

impl Drop for Ahead {
    fn drop(&mut self) {
        for r in &self.0 {
            r.abort();
        }
    }
}

/// Stored events by id, in inbox order.
async fn rows_by_id(db: &impl ConnectionTrait, ids: &[i32]) -> AppResult<Vec<we::Model>> {
    let mut rows = Vec::with_capacity(ids.len());
    for part in ids.chunks(1_000) {
        rows.extend(
            we::Entity::find()
                .filter(we::Column::Id.is_in(part.to_vec()))
                .all(db)
                .await?,
        );
    }
    rows.sort_by_key(|r| r.id);
    Ok(rows)
}

/// A chunk read and ready to decide: its events in inbox order, a dry ledger holding what its
/// sources hold, and each source's access now.
struct Chunk {
    rows: Vec<we::Model>,
    ledger: Ledger,
    before: HashMap<String, Option<AccessState>>,
    read_ms: f64,
}

async fn read_chunk(
    db: &sea_orm::DatabaseConnection,
    app_id: i32,
    ids: &[i32],
    now: DateTime<Utc>,
) -> AppResult<Chunk> {
    let t0 = std::time::Instant::now();
    let rows = rows_by_id(db, ids).await?;
    let mut ledger = Ledger::dry();
    let keys: BTreeSet<(i32, String)> = rows
        .iter()
        .filter_map(|r| Some((app_id, r.source_key.clone()?)))
        .collect();
    ledger.preload(db, &keys, &BTreeSet::new(), ids).await?;
    // What each source gives now, read before anything is decided again.
    let mut before = HashMap::new();
    for (_, s) in &keys {
        before.insert(s.clone(), state_of(db, &mut ledger, app_id, s, now).await?);
    }
    Ok(Chunk {
        rows,
        ledger,
        before,
        read_ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}

async fn evaluate_chunk(
    state: &Pipeline,
    app_id: i32,
    candidate: &ActiveScript,
    chunk: Chunk,
    now: DateTime<Utc>,
    report: &mut Report,
    counts: &mut BTreeMap<(String, String), u64>,
) -> AppResult<()> {
    let db = &state.db;
    let Chunk {
        rows,
        mut ledger,
        before,
        read_ms,
    } = chunk;
    let t0 = std::time::Instant::now();
    let mut events: HashMap<String, Vec<EventDecision>> = HashMap::new();
    let mut touched_all: BTreeSet<String> = BTreeSet::new();
    for (i, row) in rows.into_iter().enumerate() {
        // The rules run inline (a background job's CPU work, each call within the rules'
        // budget): let other tasks in now and then.
        if i % 64 == 63 {
            tokio::task::yield_now().await;
        }
        let old: Option<Decision> = row.decision.as_deref().and_then(|d| serde_json::from_str(d).ok());
        let (old_kind, old_label) = decided(row.status, old.as_ref());
        let (eval, touched): (Evaluation, _) = redecide_dry(state, db, &mut ledger, &row, candidate).await?;
        report.events_evaluated += 1;
        let (new_kind, new_label) = decided(eval.status, eval.decision.as_ref());
        if (old_kind, &old_label) != (new_kind, &new_label) || old != eval.decision {
            report.decisions_changed += 1;
            *counts.entry((old_kind.to_string(), new_kind.to_string())).or_default() += 1;
        }
        let decision = EventDecision {
            id: row.id,
            event_id: row.event_id.clone(),
            event_type: row.event_type.clone(),
            received_at: row.received_at,
            before: old_label,
            after: new_label,
        };
        for s in &touched {
            events.entry(s.clone()).or_default().push(decision.clone());
        }
        touched_all.extend(touched);
    }
    let decided = t0.elapsed();
    for s in touched_all {
        report.sources_touched += 1;
        let b = match before.get(&s) {
            Some(b) => b.clone(),
            // Touched only through the ledger (never named by a row here): as stored now.
            None => state_of(db, &mut Ledger::dry(), app_id, &s, now).await?,
        };
        let a = state_of(db, &mut ledger, app_id, &s, now).await?;
        let Some((kind, moved)) = kind_of(b.as_ref(), a.as_ref()) else {
            continue;
        };
        match kind {
            ChangeKind::Gained => report.gained += 1,
            ChangeKind::Lost => report.lost += 1,
            ChangeKind::Suspended => report.suspended += 1,
            ChangeKind::EndMoved => report.end_moved += 1,
            ChangeKind::Changed => report.changed += 1,
        }
        if report.changes.len() >= MAX_LISTED {
            report.truncated = true;
            continue;
        }
        report.changes.push(SourceChange {
            events: events.remove(&s).unwrap_or_default(),
            source: s,
            kind,
            before: b,
            after: a,
            end_moved_by_seconds: moved,
        });
    }
    tracing::debug!(
        events = report.events_evaluated,
        read_ms,
        decide_ms = decided.as_secs_f64() * 1e3,
        compare_ms = (t0.elapsed() - decided).as_secs_f64() * 1e3,
        "backtest chunk"
    );
    Ok(())
}

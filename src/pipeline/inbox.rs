//! The webhook inbox: deliveries stored as received (the Hottok and, unless kept, the buyer's
//! document, phones, address and IP masked), keyed by the provider's event id.
use chrono::{DateTime, Utc};
use entity::status::{Format, InboxStatus};
use entity::webhook_event as we;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, QueryTrait, Set,
    TryInsertResult,
};

use crate::{AppError, AppResult};

pub const PROVIDER: &str = "hotmart";
pub const ORIGIN_WEBHOOK: &str = "webhook";
pub const ORIGIN_RECONCILE: &str = "reconcile";

#[derive(Debug, Clone)]
pub struct RecordInput {
    pub app_id: i32,
    pub origin: &'static str,
    pub event_id: String,
    pub event_type: String,
    pub format: Format,
    pub raw: Vec<u8>,
    pub headers: serde_json::Value,
    pub occurred_at: Option<DateTime<Utc>>,
    pub is_test: bool,
    /// Stored as `failed` with this reason instead of queued (a delivery we cannot read).
    pub unreadable: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New(i32),
    Duplicate,
}

/// How many deliveries may wait for the writers (and be in flight over HTTP); past that, 503 at
/// once rather than memory and ever longer waits.
pub const INGEST_QUEUE: usize = 1024;
/// The most deliveries committed together.
const GROUP_MAX: usize = 256;
/// "Last heard from Hotmart" is refreshed at most this often per app (test events always), so
/// the hot integration row is not written once per webhook.
const TOUCH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

struct Job {
    input: RecordInput,
    reply: tokio::sync::oneshot::Sender<Result<Recorded, String>>,
}

/// Writers for the inbox: deliveries queue up while a commit is on its way and the next commit
/// takes them all, so one durable commit (one fsync) serves many webhooks. Each request is
/// answered only after its group committed; a failed group answers every request in it with an
/// error (503), and nothing of it was acknowledged.
///
/// SQLite has one writer (it has one write lock anyway); PostgreSQL has several, whose commits
/// overlap. Which copy of an event is "new" is decided by the insert itself (`ON CONFLICT DO
/// NOTHING RETURNING`): PostgreSQL makes a second inserter of the same key wait for the first
/// one's commit and then skip, so exactly one group ever gets the row back.
pub struct Ingest {
    tx: flume::Sender<Job>,
    /// (app, event id) of deliveries stored lately (in this process).
    recent: Recent,
    /// When the last delivery came in, in milliseconds since [`EPOCH`] plus one (0: never).
    last_delivery: std::sync::atomic::AtomicU64,
    /// A count of the backlog for `/metrics` is running ([`measure_backlog`]).
    counting_backlog: std::sync::atomic::AtomicBool,
    /// Why the latest group could not be stored (`None` once one is): readiness.
    failing: Failing,
}

type Failing = std::sync::Arc<std::sync::Mutex<Option<String>>>;

/// Event ids remembered for the redelivery shortcut, and for how long: from half of each (one
/// generation) to all of it (two).
const RECENT_IDS: usize = 200_000;
const RECENT_FOR: std::time::Duration = std::time::Duration::from_secs(3600);

/// The event ids stored lately, exactly, in two generations: new ids go into the current one,
/// which becomes the previous one (the previous one is forgotten) once it holds half the ids or
/// is half the time old. Every id held is an event on disk, so a hit is always a right answer;
/// the limits only bound the memory.
///
/// A moka cache did this before, at about 650 bytes an id: under a flood of new ids its 200,000
/// entries took 127 MiB of the server's memory (measured: RSS peak 313 MiB with it, 186 MiB
/// with 1,000 entries). A plain set holds the key and little more.
struct Recent {
    generations: std::sync::Mutex<Generations>,
    per_generation: usize,
    every: std::time::Duration,
}

/// Per app, the event ids of one generation (by app first, so a lookup borrows the id instead
/// of building a key on the ack path).
type Ids = std::collections::HashMap<i32, std::collections::HashSet<Box<str>>>;

struct Generations {
    current: Ids,
    /// How many ids `current` holds, over all apps.
    held: usize,
    previous: Ids,
    since: std::time::Instant,
}

impl Recent {
    fn new(ids: usize, remembered_for: std::time::Duration) -> Recent {
        Recent {
            generations: std::sync::Mutex::new(Generations {
                current: Default::default(),
                held: 0,
                previous: Default::default(),
                since: std::time::Instant::now(),
            }),
            per_generation: (ids / 2).max(1),
            every: remembered_for / 2,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn contains(&self, app_id: i32, id: &str) -> bool {
        let g = self.lock();
        [&g.current, &g.previous]
            .iter()
            .any(|ids| ids.get(&app_id).is_some_and(|s| s.contains(id)))
    }

    fn insert(&self, app_id: i32, id: &str) {
        let mut g = self.lock();
        let age = g.since.elapsed();
        let mut forgotten = Vec::new();
        if g.held >= self.per_generation || age >= self.every {
            let old = std::mem::take(&mut g.current);
            // Quiet for a whole period: what the current generation holds is as old as the limit.
            let (keep, also_forgotten) = if age >= self.every * 2 {
                (Ids::default(), Some(old))
            } else {
                (old, None)
            };
            forgotten.push(std::mem::replace(&mut g.previous, keep));
            forgotten.extend(also_forgotten);
            g.held = 0;
            g.since = std::time::Instant::now();
        }
        if g.current.entry(app_id).or_default().insert(id.into()) {
            g.held += 1;
        }
        // Freeing up to 100,000 ids takes milliseconds: not while every webhook's ack waits
        // for this lock.
        drop(g);
        drop(forgotten);
    }
}

static EPOCH: std::sync::LazyLock<std::time::Instant> = std::sync::LazyLock::new(std::time::Instant::now);

/// How long after a delivery ingest counts as busy (see [`Ingest::busy`]).
const BUSY_FOR: std::time::Duration = std::time::Duration::from_millis(250);

impl Ingest {
    /// Stores a delivery (through the group-committing writer) and answers once it is on disk. A
    /// known event id changes nothing, however many copies race in.
    pub async fn record(&self, input: RecordInput) -> AppResult<Recorded> {
        // Redeliveries are common (retry storms, Hotmart resending what timed out): one stored in
        // the last hour is answered from memory, without touching the database. Any other copy goes
        // to the writer, whose insert decides against the unique index (so a new event costs no
        // read before its write, and copies racing in on several writers cannot both be new).
        if self.recent.contains(input.app_id, &input.event_id) {
            return Ok(Recorded::Duplicate);
        }
        let (app_id, event_id) = (input.app_id, input.event_id.clone());
        let r = self.submit(input).await?;
        // Only once it is on disk: a hit must never answer for an event that is not stored.
        self.recent.insert(app_id, &event_id);
        Ok(r)
    }

    pub fn start(db: sea_orm::DatabaseConnection) -> Ingest {
        let (tx, rx) = flume::bounded(INGEST_QUEUE);
        let writers = match db.get_database_backend() {
            sea_orm::DbBackend::Sqlite => 1,
            _ => 4,
        };
        let touched = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let failing = Failing::default();
        for _ in 0..writers {
            tokio::spawn(writer(db.clone(), rx.clone(), touched.clone(), failing.clone()));
        }
        drop(db);
        Ingest {
            last_delivery: Default::default(),
            counting_backlog: Default::default(),
            failing,
            tx,
            recent: Recent::new(RECENT_IDS, RECENT_FOR),
        }
    }

    async fn submit(&self, input: RecordInput) -> AppResult<Recorded> {
        let now = EPOCH.elapsed().as_millis() as u64 + 1;
        self.last_delivery.store(now, std::sync::atomic::Ordering::Relaxed);
        let unavailable = |why: &str| AppError::Unavailable(sea_orm::DbErr::Custom(why.to_string()));
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx.try_send(Job { input, reply }).map_err(|e| match e {
            flume::TrySendError::Full(_) => unavailable("the ingest queue is full"),
            flume::TrySendError::Disconnected(_) => unavailable("the ingest writer stopped"),
        })?;
        match answer.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(why)) => Err(unavailable(&why)),
            Err(_) => Err(unavailable("the ingest writer stopped")),
        }
    }

    /// Why webhooks cannot be stored now, if the latest group failed for want of storage (disk
    /// full, read-only, database down). A write that commits (`probe` it, at most what the
    /// caller's pace allows) or the next stored group clears it.
    pub async fn cannot_store(&self, db: &sea_orm::DatabaseConnection) -> Option<String> {
        let why = self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        match crate::db::probe_write(db).await {
            Ok(()) => {
                *self.failing.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                None
            }
            Err(e) => {
                crate::db::note_write_failure(&e.to_string());
                Some(why)
            }
        }
    }

    /// Whether webhooks came in during the last [`BUSY_FOR`]: the worker then keeps to small
    /// batches, one at a time, since every webhook is answered only after its commit and waits
    /// for the write lock (SQLite) and the CPU (two cores) the worker holds.
    pub fn busy(&self) -> bool {
        let last = self.last_delivery.load(std::sync::atomic::Ordering::Relaxed);
        let now = EPOCH.elapsed().as_millis() as u64 + 1;
        last != 0 && now.saturating_sub(last) < BUSY_FOR.as_millis() as u64
    }
}

type Touched = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<i32, std::time::Instant>>>;

async fn writer(db: sea_orm::DatabaseConnection, rx: flume::Receiver<Job>, touched: Touched, failing: Failing) {
    while let Ok(first) = rx.recv_async().await {
        // Whatever is waiting, up to GROUP_MAX, goes into one commit.
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        let inputs: Vec<&RecordInput> = group.iter().map(|j| &j.input).collect();
        match write_group(&db, &inputs).await {
            Ok(outs) => {
                *failing.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                touch(&db, &touched, &inputs, &outs).await;
                for (j, out) in group.into_iter().zip(outs) {
                    let _ = j.reply.send(Ok(out));
                }
            }
            Err(e) => {
                e.log();
                if let AppError::Unavailable(db_err) = &e {
                    crate::db::note_write_failure(&db_err.to_string());
                    *failing.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(db_err.to_string());
                }
                let why = format!("the group could not be stored ({})", e.code());
                for j in group {
                    let _ = j.reply.send(Err(why.clone()));
                }
            }
        }
    }
}

/// Refreshes "last heard from Hotmart" after a commit, outside it: it is a convenience for the
/// admin, not part of what was acknowledged, so a failure here is logged and nothing more.
async fn touch(db: &sea_orm::DatabaseConnection, touched: &Touched, inputs: &[&RecordInput], outs: &[Recorded]) {
    let mut due: std::collections::BTreeMap<i32, bool> = std::collections::BTreeMap::new();
    {
        let mut last = touched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        for (i, out) in inputs.iter().zip(outs) {
            if i.origin != ORIGIN_WEBHOOK || !matches!(out, Recorded::New(_)) {
                continue;
            }
            let stale = last
                .get(&i.app_id)
                .is_none_or(|t| now.duration_since(*t) >= TOUCH_EVERY);
            if stale || i.is_test {
                last.insert(i.app_id, now);
                *due.entry(i.app_id).or_default() |= i.is_test;
            }
        }
    }
    for (app_id, is_test) in due {
        if let Err(e) = touch_received(db, app_id, is_test).await {
            e.log();
        }
    }
}

/// One transaction for a group, whatever its size: a single insert committed by itself, or (on
/// PostgreSQL, past [`crate::db::statement_bytes`]) several in one transaction. Rows go in sorted by key, so
/// two PostgreSQL writers inserting overlapping groups wait on each other in the same order
/// instead of deadlocking.
async fn write_group(db: &sea_orm::DatabaseConnection, inputs: &[&RecordInput]) -> AppResult<Vec<Recorded>> {
    use sea_orm::sea_query::{OnConflict, Query};
    use std::collections::{BTreeMap, HashMap};
    // A copy of an event earlier in the same group is a duplicate: only the first is inserted.
    let mut first: BTreeMap<(i32, &str), usize> = BTreeMap::new();
    for (n, i) in inputs.iter().enumerate() {
        first.entry((i.app_id, i.event_id.as_str())).or_insert(n);
    }
    let backend = db.get_database_backend();
    let rows: Vec<&RecordInput> = first.values().map(|n| inputs[*n]).collect();
    // The same row mapping as a single insert, asked to return only what decides "new".
    let statements: Vec<sea_orm::Statement> =
        crate::db::runs(&rows, GROUP_MAX, crate::db::statement_bytes(backend), |i| {
            i.raw.len() + i.event_id.len() + 200
        })
        .into_iter()
        .map(|chunk| {
            let mut stmt = we::Entity::insert_many(chunk.iter().map(|i| active_model((*i).clone())))
                .on_conflict(
                    OnConflict::columns([we::Column::AppId, we::Column::Provider, we::Column::EventId])
                        .do_nothing()
                        .to_owned(),
                )
                .into_query();
            stmt.returning(Query::returning().columns([we::Column::Id, we::Column::AppId, we::Column::EventId]));
            backend.build(&stmt)
        })
        .collect();
    let started = std::time::Instant::now();
    // How long the group waited for SQLite's write gate (another group, or a worker batch),
    // apart from its own write: under load the wait is most of an ack's time.
    let (returned, waited) = match <[sea_orm::Statement; 1]>::try_from(statements) {
        // One statement is its own transaction: durable when it returns, all or nothing, and
        // one trip to the database instead of three (BEGIN, INSERT, COMMIT).
        Ok([only]) => {
            let _gate = crate::db::urgent_gate(db).await;
            let waited = started.elapsed();
            (db.query_all_raw(only).await?, waited)
        }
        Err(statements) => {
            let txn = crate::db::write_txn_urgent(db).await?;
            let waited = started.elapsed();
            let mut returned = Vec::new();
            for stmt in statements {
                returned.extend(txn.query_all_raw(stmt).await?);
            }
            txn.commit().await?;
            (returned, waited)
        }
    };
    let mut ids: HashMap<(i32, String), i32> = HashMap::new();
    for r in returned {
        let (id, app_id, event_id): (i32, i32, String) = (
            r.try_get("", "id")?,
            r.try_get("", "app_id")?,
            r.try_get("", "event_id")?,
        );
        ids.insert((app_id, event_id), id);
    }
    let took = started.elapsed();
    crate::telemetry::ingest_group(inputs.len(), waited.as_secs_f64(), (took - waited).as_secs_f64());
    tracing::debug!(
        group = inputs.len(),
        waited_ms = waited.as_secs_f64() * 1e3,
        total_ms = took.as_secs_f64() * 1e3,
        "inbox group committed"
    );
    Ok(inputs
        .iter()
        .enumerate()
        .map(|(n, i)| {
            let is_first = first.get(&(i.app_id, i.event_id.as_str())) == Some(&n);
            match ids.get(&(i.app_id, i.event_id.clone())) {
                Some(id) if is_first => Recorded::New(*id),
                _ => Recorded::Duplicate,
            }
        })
        .collect())
}

fn active_model(input: RecordInput) -> we::ActiveModel {
    we::ActiveModel {
        app_id: Set(input.app_id),
        provider: Set(PROVIDER.into()),
        origin: Set(input.origin.into()),
        event_id: Set(input.event_id),
        event_type: Set(input.event_type),
        format: Set(input.format),
        raw_body: Set(input.raw),
        headers: Set(input.headers.to_string()),
        received_at: Set(chrono::Utc::now()),
        occurred_at: Set(input.occurred_at),
        status: Set(if input.unreadable.is_some() {
            InboxStatus::Failed
        } else {
            InboxStatus::Pending
        }),
        error: Set(input.unreadable),
        is_test: Set(input.is_test),
        attempts: Set(0),
        ..Default::default()
    }
}

/// Inserts unless the event id is known; the caller owns the transaction.
pub async fn insert(db: &impl ConnectionTrait, input: RecordInput) -> AppResult<Recorded> {
    let am = active_model(input);
    let res = we::Entity::insert(am)
        .on_conflict_do_nothing_on([we::Column::AppId, we::Column::Provider, we::Column::EventId])
        .exec(db)
        .await?;
    Ok(match res {
        TryInsertResult::Inserted(r) => Recorded::New(r.last_insert_id),
        TryInsertResult::Conflicted | TryInsertResult::Empty => Recorded::Duplicate,
    })
}

/// Which of these event ids the app already has.
pub async fn known_ids(
    db: &impl ConnectionTrait,
    app_id: i32,
    ids: &[String],
) -> AppResult<std::collections::HashSet<String>> {
    let mut out = std::collections::HashSet::new();
    for chunk in ids.chunks(500) {
        let rows = we::Entity::find()
            .select_only()
            .column(we::Column::EventId)
            .filter(we::Column::AppId.eq(app_id))
            // The unique index is (app, provider, event id): without the provider the lookup
            // scans every event of the app.
            .filter(we::Column::Provider.eq(PROVIDER))
            .filter(we::Column::EventId.is_in(chunk.to_vec()))
            .into_tuple::<String>()
            .all(db)
            .await?;
        out.extend(rows);
    }
    Ok(out)
}

/// How long a `/metrics` scrape waits for the backlog count.
pub const BACKLOG_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Counts the pending rows into the backlog gauge, waiting for the count up to [`BACKLOG_WAIT`].
/// One count runs at a time in a process: one that outlasts the wait (a backlog of millions, a
/// database that hangs) goes on and sets the gauge when it ends, for the next scrape, and the
/// scrapes meanwhile start no other. A count that fails leaves the gauge as it was.
pub async fn measure_backlog(ingest: &std::sync::Arc<Ingest>, db: &sea_orm::DatabaseConnection) {
    use std::sync::atomic::Ordering;
    let ingest = ingest.clone();
    if ingest.counting_backlog.swap(true, Ordering::AcqRel) {
        return;
    }
    let db = db.clone();
    let count = tokio::spawn(async move {
        if let Ok(n) = pending_count(&db).await {
            crate::telemetry::inbox_pending(n);
        }
        ingest.counting_backlog.store(false, Ordering::Release);
    });
    let _ = tokio::time::timeout(BACKLOG_WAIT, count).await;
}

pub async fn pending_count(db: &impl ConnectionTrait) -> AppResult<u64> {
    use sea_orm::PaginatorTrait;
    Ok(we::Entity::find()
        .filter(we::Column::Status.eq(InboxStatus::Pending))
        .count(db)
        .await?)
}

/// "Last heard from Hotmart" (and, for a test event, "last test event").
async fn touch_received(db: &impl ConnectionTrait, app_id: i32, is_test: bool) -> AppResult<()> {
    use entity::hotmart_integration as hi;
    use sea_orm::sea_query::Expr;
    let now = chrono::Utc::now();
    let mut q = hi::Entity::update_many().col_expr(hi::Column::LastWebhookAt, Expr::value(now));
    if is_test {
        q = q.col_expr(hi::Column::LastTestEventAt, Expr::value(now));
    }
    q.filter(hi::Column::AppId.eq(app_id)).exec(db).await?;
    Ok(())
}

/// Sends one event back to the queue (a replay), in the caller's transaction.
pub async fn requeue(db: &impl ConnectionTrait, row: we::Model) -> AppResult<we::Model> {
    let mut am: we::ActiveModel = row.into();
    am.status = Set(InboxStatus::Pending);
    am.error = Set(None);
    Ok(am.update(db).await?)
}

#[cfg(test)]
mod recent_tests {
    use super::Recent;
    use std::time::Duration;

    #[test]
    fn an_id_is_remembered_for_a_generation_at_least_and_two_at_most() {
        let r = Recent::new(4, Duration::from_secs(3600));
        let id = |n: usize| format!("ev-{n}");
        r.insert(1, &id(0));
        assert!(r.contains(1, &id(0)));
        assert!(!r.contains(2, "ev-0"), "the app is part of the key");
        assert!(!r.contains(1, &id(1)));
        // Two per generation: ev-0 and ev-1 fill the first, ev-2 and ev-3 the second.
        for n in 1..4 {
            r.insert(1, &id(n));
        }
        assert!((0..4).all(|n| r.contains(1, &id(n))), "two generations are held");
        r.insert(1, &id(4));
        assert!(
            !r.contains(1, &id(0)) && !r.contains(1, &id(1)),
            "the oldest generation is forgotten"
        );
        assert!((2..5).all(|n| r.contains(1, &id(n))));
    }

    #[test]
    fn a_generation_is_full_with_the_ids_of_all_apps() {
        let r = Recent::new(4, Duration::from_secs(3600));
        r.insert(1, "a");
        r.insert(1, "a"); // a copy takes no room
        r.insert(2, "b");
        r.insert(1, "c");
        r.insert(2, "d");
        assert!(r.contains(1, "a") && r.contains(2, "b") && r.contains(1, "c") && r.contains(2, "d"));
        r.insert(3, "e");
        assert!(
            !r.contains(1, "a") && !r.contains(2, "b"),
            "the first generation held two ids"
        );
        assert!(r.contains(1, "c") && r.contains(2, "d") && r.contains(3, "e"));
    }

    #[test]
    fn ids_are_forgotten_with_time() {
        // Wide margins: a loaded machine only makes the sleeps longer, and the first must stay
        // under the limit.
        let r = Recent::new(1000, Duration::from_secs(2));
        r.insert(1, "old");
        std::thread::sleep(Duration::from_millis(1100));
        r.insert(1, "newer");
        assert!(
            r.contains(1, "old"),
            "half the time old: moved to the previous generation"
        );
        std::thread::sleep(Duration::from_millis(2100));
        r.insert(1, "new");
        assert!(!r.contains(1, "old"), "older than the limit");
        assert!(!r.contains(1, "newer"), "a whole quiet period: forgotten too");
        assert!(r.contains(1, "new"));
    }
}

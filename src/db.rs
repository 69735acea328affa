//! Connecting, migrating, and the write-transaction rule for SQLite.
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use std::sync::Arc;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

/// Connects with SQLite's `synchronous=FULL`: a commit is on disk before we answer 2xx, so a
/// power cut or an OS crash cannot roll back an acknowledged webhook.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    connect_with(url, true).await
}

/// `durable: false` is the documented opt-in to `synchronous=NORMAL` (faster commits; the last
/// ones before an OS crash or power cut may be lost, and Hotmart does not resend what we
/// acknowledged).
pub async fn connect_with(url: &str, durable: bool) -> Result<DatabaseConnection, DbErr> {
    connect_pool(url, durable, None).await
}

/// [`connect_with`] with the pool's size (`PORTEIRO_DB_MAX_CONNECTIONS`; default 8 on SQLite,
/// 16 on PostgreSQL).
pub async fn connect_pool(url: &str, durable: bool, max: Option<u32>) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url.to_string());
    opts.sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5));
    if url.starts_with("sqlite:") {
        // WAL lets readers run beside the one writer; busy_timeout makes writers queue for the
        // lock (with BEGIN IMMEDIATE below) instead of failing with SQLITE_BUSY.
        // A connection whose transaction outlived an error (SQLITE_FULL, an I/O error, a lock
        // timeout) must never be reused: the next request's writes would go into that dead
        // transaction, be acknowledged, and never reach the disk. When a connection comes back
        // to the pool, a ROLLBACK that succeeds means such a transaction was open: it is closed.
        // This runs on release (in the task that returns the connection, which every reuse
        // waits for) rather than on acquire, where it was one more trip to the connection's
        // thread on every query's critical path; the ping sqlx adds on acquire is off for the
        // same reason (the database is in process: there is no server or network to lose).
        opts.test_before_acquire(false);
        let file = std::sync::Arc::new(sqlite_file(url));
        opts.map_sqlx_sqlite_pool_opts(move |o| {
            let file = file.clone();
            // A connection opened while the database's filesystem was read-only opened it
            // read-only, and SQLite never undoes that: once a write has found the database
            // read-only, each connection older than that is replaced as soon as the file takes
            // writes again (without a restart).
            o.before_acquire(move |_conn, meta| {
                let file = file.clone();
                Box::pin(async move {
                    let seen = READ_ONLY_SEEN.load(Ordering::Relaxed);
                    if seen == 0 || clock_ms().saturating_sub(meta.age.as_millis() as u64) > seen {
                        return Ok(true);
                    }
                    let healed = file
                        .as_ref()
                        .as_deref()
                        .is_some_and(|f| std::fs::OpenOptions::new().write(true).open(f).is_ok());
                    Ok(!healed)
                })
            })
            .after_release(|conn, _meta| {
                Box::pin(async move {
                    use sea_orm::sqlx::Executor;
                    match conn.execute("ROLLBACK").await {
                        Ok(_) => {
                            tracing::warn!("discarded a SQLite connection left inside a failed transaction");
                            Ok(false)
                        }
                        Err(_) => Ok(true),
                    }
                })
            })
        });
        opts.max_connections(max.unwrap_or(8))
            .min_connections(1)
            .map_sqlx_sqlite_opts(move |o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(if durable {
                        SqliteSynchronous::Full
                    } else {
                        SqliteSynchronous::Normal
                    })
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true)
                    // What a row held before it was rewritten or deleted (an erased buyer's
                    // e-mail, a masked CPF) is zeroed in the file, not left in free space.
                    .pragma("secure_delete", "ON")
                    // Checkpoints run beside the writers ([`spawn_checkpointer`]); this is only
                    // the backstop should they fall behind.
                    .pragma("wal_autocheckpoint", WAL_BACKSTOP_PAGES.to_string())
            });
    } else {
        // sqlx pings a connection on every acquire by default: a network round trip before
        // every query and transaction. Only a connection idle long enough for the server, a
        // proxy or a firewall to have dropped it is pinged; a connection that broke anyway
        // fails its statement, which answers 503 (ingest) or is retried (worker), and is not
        // returned to the pool.
        opts.max_connections(max.unwrap_or(16))
            .min_connections(1)
            .test_before_acquire_if_idle_for(Duration::from_secs(30))
            // sqlx prepares every statement, and after five runs PostgreSQL switches a prepared
            // statement to a generic plan, chosen without the parameters' values and against
            // statistics of tables that were small when last analysed. For the worker's
            // `source IN (…64 values)` reads that plan scanned the table, so each batch cost grew
            // with the tables: 8,000 events drained at half the rate of 4,000. Planning each
            // run costs far less than that.
            .map_sqlx_postgres_opts(|o| o.options([("plan_cache_mode", "force_custom_plan")]));
    }
    Database::connect(opts).await
}

/// After an erasure: SQLite's WAL still holds the pages as they were before it, until a
/// checkpoint writes them back and the file is truncated. Tried for a few seconds (readers in
/// flight hold it back); the regular checkpoints finish the job otherwise. PostgreSQL keeps old
/// row versions until its vacuum (autovacuum, or `VACUUM` by the operator).
pub async fn forget_freed(db: &DatabaseConnection) {
    if db.get_database_backend() != DbBackend::Sqlite {
        return;
    }
    for _ in 0..50 {
        match db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA wal_checkpoint(TRUNCATE)",
            ))
            .await
        {
            Ok(Some(row)) if row.try_get_by_index::<i32>(0).unwrap_or(1) == 0 => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => {
                tracing::warn!(error = %e, "the WAL could not be truncated after an erasure");
                return;
            }
        }
    }
    tracing::warn!("the WAL stayed busy; the next checkpoints write the erasure back");
}

/// When a write last found SQLite read-only, in [`clock_ms`]; 0: never.
static READ_ONLY_SEEN: AtomicU64 = AtomicU64::new(0);

fn clock_ms() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    START.elapsed().as_millis() as u64 + 1
}

/// The database file of a SQLite URL (`None` in memory or for another database).
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    use sea_orm::sqlx::sqlite::SqliteConnectOptions;
    // sqlx reads any other string as a file name.
    if !url.starts_with("sqlite:") {
        return None;
    }
    let opts: SqliteConnectOptions = url.parse().ok()?;
    let file = opts.get_filename();
    (!file.as_os_str().is_empty() && file != std::path::Path::new(":memory:")).then(|| file.to_path_buf())
}

/// Notes a failed write. SQLite's "read-only" (a filesystem remounted read-only, a file whose
/// permissions changed) marks every connection open now for replacement once it heals.
pub fn note_write_failure(error: &str) {
    let e = error.to_ascii_lowercase();
    if e.contains("readonly database") || e.contains("unable to open database file") {
        READ_ONLY_SEEN.store(clock_ms(), Ordering::Relaxed);
    }
}

/// A write that commits (a row of `app` rewritten as it is): whether the database takes writes
/// now. Readiness asks it while ingest's latest commits failed.
pub async fn probe_write(db: &DatabaseConnection) -> Result<(), DbErr> {
    let txn = write_txn(db).await?;
    txn.execute_unprepared("UPDATE app SET id = id WHERE id = (SELECT MIN(id) FROM app)")
        .await?;
    #[allow(clippy::disallowed_methods)] // the database layer's own write
    txn.commit().await
}

/// WAL pages after which a commit checkpoints by itself (64 MiB of 4 KiB pages).
const WAL_BACKSTOP_PAGES: u32 = 16_384;

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// How often [`maintain`] runs.
pub fn maintenance_period(backend: DbBackend) -> Duration {
    match backend {
        DbBackend::Sqlite => CHECKPOINT_EVERY,
        _ => ANALYZE_EVERY,
    }
}

/// Keeps the database fit while it takes writes (a job of `app::start_maintenance`). SQLite:
/// the WAL is checkpointed every [`CHECKPOINT_EVERY`]. PostgreSQL: the hot tables are analysed
/// as soon as they have doubled ([`analyze_grown`]); the `first` round also says which tables
/// this user may not analyse.
///
/// By default SQLite checkpoints inside the commit that grows the WAL past 1,000 pages, while
/// that writer holds the write lock: under a flood that was every fifth of a second or so, some
/// 20 ms each, and every webhook waiting for the lock waited for the checkpoint too (it showed
/// as the ack p99). A PASSIVE checkpoint on another connection needs no write lock, so writers
/// go on committing beside it.
pub async fn maintain(db: &DatabaseConnection, first: bool) -> Result<(), DbErr> {
    match db.get_database_backend() {
        DbBackend::Sqlite => db
            .execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)")
            .await
            .map(|_| ()),
        DbBackend::Postgres => {
            if first && let Err(e) = note_unanalysable(db).await {
                tracing::debug!(error = %e, "could not check which tables may be analysed");
            }
            analyze_grown(db).await.map(|_| ())
        }
        _ => Ok(()),
    }
}

/// Whether the connected user may analyse table `c`: its owner's or the database owner's role
/// (a superuser holds every role). Anyone else's ANALYZE only warns and leaves the statistics as
/// they were, so the table would come back, and warn, every round.
const MAY_ANALYZE: &str = "(pg_has_role(c.relowner, 'USAGE') OR pg_has_role((SELECT datdba FROM pg_database \
     WHERE datname = current_database()), 'USAGE'))";

/// The hot tables the connected user may not analyse (they are left to autovacuum), said once at
/// start so an operator knows.
async fn note_unanalysable(db: &DatabaseConnection) -> Result<(), DbErr> {
    let list = hot_table_list();
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT c.relname::text AS t FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace \
                 AND c.relname IN ({list}) AND NOT {MAY_ANALYZE}"
            ),
        ))
        .await?;
    if !rows.is_empty() {
        let tables: Vec<String> = rows.iter().filter_map(|r| r.try_get("", "t").ok()).collect();
        tracing::info!(
            tables = tables.join(","),
            "the database user owns neither these tables nor the database: their statistics are left to autovacuum"
        );
    }
    Ok(())
}

fn hot_table_list() -> String {
    HOT_TABLES
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(",")
}

/// How often PostgreSQL's tables are looked at for [`analyze_grown`].
const ANALYZE_EVERY: Duration = Duration::from_secs(5);

/// Tables that grow with every webhook and that the worker reads by key. Not the inbox: its
/// batch read has an index of its own that needs no statistics, and analysing its bodies took
/// 234 ms a time (four times in a flood benchmark); nor the logs, which the worker only appends to.
const HOT_TABLES: &[&str] = &["access_fact", "entitlement", "buyer", "buyer_subscriber_code"];

/// Analyses (PostgreSQL) each hot table that changed at least 1,000 rows and at least as many as
/// it had when last analysed: it has (about) doubled, and that the connected user may analyse
/// ([`MAY_ANALYZE`]). Returns the tables analysed.
///
/// Autovacuum looks at tables once a minute. A store's first flood (a launch) grows them from
/// nothing to tens of thousands of rows inside that minute, and until then the planner works
/// from statistics of a table of a few dozen rows: it read a batch's 64 sources through
/// `app_id = 1` alone and filtered the whole table (4-6 ms a query, the largest part of the
/// database's time in the flood benchmark). Analysing on doubling costs a few analyses over a
/// table's life; autovacuum's own thresholds go on taking care of the rest.
pub async fn analyze_grown(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    let list = hot_table_list();
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT s.relname::text AS t FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
                 WHERE s.schemaname = current_schema() AND s.relname IN ({list}) \
                 AND s.n_mod_since_analyze >= 1000 AND 2 * s.n_mod_since_analyze >= s.n_live_tup AND {MAY_ANALYZE}"
            ),
        ))
        .await?;
    let mut done = Vec::new();
    for r in rows {
        let table: String = r.try_get("", "t")?;
        // Only names from HOT_TABLES come back, so quoting them is enough.
        db.execute_unprepared(&format!("ANALYZE \"{table}\"")).await?;
        tracing::debug!(table, "analysed a table that doubled");
        done.push(table);
    }
    Ok(done)
}

pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    let unknown = unknown_migrations(db).await?;
    if !unknown.is_empty() {
        if serves_newer(db).await? {
            // A rolling upgrade: a newer instance migrated, and everything it added since this
            // binary's last migration only expands the schema, which this binary still serves.
            tracing::warn!(
                newer = unknown.join(","),
                "this database was migrated by a newer Porteiro whose changes this version still serves \
                 (a rolling upgrade); upgrade this instance soon"
            );
            return Ok(());
        }
        return Err(newer_error(&unknown));
    }
    for (name, what) in pending_rewrites(db).await? {
        tracing::warn!(migration = %name, "this migration rewrites stored data: {what}");
    }
    Migrator::up(db, None).await?;
    record_floor(db).await
}

/// The pending migrations that rewrite stored data, and what they rewrite (said before they run).
pub async fn pending_rewrites(db: &DatabaseConnection) -> anyhow::Result<Vec<(String, &'static str)>> {
    Ok(Migrator::get_pending_migrations(db)
        .await?
        .iter()
        .filter_map(|m| migration::rewrites_data(m.name()).map(|what| (m.name().to_string(), what)))
        .collect())
}

/// Refuses a database that a newer Porteiro migrated: this binary would run against tables it
/// does not know (and `migrate down` could not undo what it never wrote). `serve` is more lenient
/// during a rolling upgrade (see [`migrate`]); `migrate` is not.
pub async fn refuse_newer_schema(db: &DatabaseConnection) -> anyhow::Result<()> {
    let unknown = unknown_migrations(db).await?;
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(newer_error(&unknown))
    }
}

/// The applied migrations this binary does not know, in order.
pub async fn unknown_migrations(db: &DatabaseConnection) -> anyhow::Result<Vec<String>> {
    let known: std::collections::HashSet<String> =
        Migrator::migrations().iter().map(|m| m.name().to_string()).collect();
    let mut unknown: Vec<String> = applied_migrations(db)
        .await?
        .into_iter()
        .filter(|v| !known.contains(v))
        .collect();
    unknown.sort();
    Ok(unknown)
}

async fn applied_migrations(db: &DatabaseConnection) -> anyhow::Result<Vec<String>> {
    use sea_orm::sea_query::{Alias, Query};
    let table = "seaql_migrations";
    if !migration::SchemaManager::new(db).has_table(table).await? {
        return Ok(Vec::new());
    }
    let query = Query::select()
        .column(Alias::new("version"))
        .from(Alias::new(table))
        .to_owned();
    let mut out = Vec::new();
    for row in db.query_all_raw(db.get_database_backend().build(&query)).await? {
        out.push(row.try_get::<String>("", "version")?);
    }
    Ok(out)
}

/// Whether this binary may serve a database a newer one migrated: every migration it knows is
/// applied, and the schema floor (the last migration that broke older binaries) is one it knows.
pub async fn serves_newer(db: &DatabaseConnection) -> anyhow::Result<bool> {
    if !migration::SchemaManager::new(db).has_table("schema_floor").await? {
        return Ok(false);
    }
    let Some(floor) = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT serves_from FROM schema_floor WHERE id = 1",
        ))
        .await?
        .map(|r| r.try_get::<String>("", "serves_from"))
        .transpose()?
    else {
        return Ok(false);
    };
    let applied: std::collections::HashSet<String> = applied_migrations(db).await?.into_iter().collect();
    let known: Vec<String> = Migrator::migrations().iter().map(|m| m.name().to_string()).collect();
    Ok(known.contains(&floor) && known.iter().all(|k| applied.contains(k)))
}

/// Writes the schema floor after migrating: the last applied migration that older binaries
/// cannot serve (every one not declared [`migration::expands_only`]).
pub async fn record_floor(db: &DatabaseConnection) -> anyhow::Result<()> {
    let Some(floor) = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_string())
        .rfind(|n| !migration::expands_only(n))
    else {
        return Ok(());
    };
    use sea_orm::sea_query::{Alias, OnConflict, Query};
    let q = Query::insert()
        .into_table(Alias::new("schema_floor"))
        .columns([Alias::new("id"), Alias::new("serves_from")])
        .values_panic([1.into(), floor.into()])
        .on_conflict(
            OnConflict::column(Alias::new("id"))
                .update_column(Alias::new("serves_from"))
                .to_owned(),
        )
        .to_owned();
    db.execute_raw(db.get_database_backend().build(&q)).await?;
    Ok(())
}

fn newer_error(unknown: &[String]) -> anyhow::Error {
    anyhow::anyhow!(
        "this database was migrated by a newer Porteiro than this one ({}; this binary knows up to {}): \
         run that version or a newer one, or restore the backup taken before the upgrade",
        unknown.join(", "),
        Migrator::migrations()
            .last()
            .map(|m| m.name().to_string())
            .unwrap_or_default()
    )
}

/// A write transaction. On SQLite it also holds the process's write gate for its database file:
/// writers queue on a fair async lock instead of SQLite's busy handler, which sleeps in steps of
/// up to 100 ms and lets a busy worker starve the inbox writer. PostgreSQL needs no gate.
pub struct WriteTxn {
    txn: DatabaseTransaction,
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
    gate: Option<Arc<Gate>>,
}

impl WriteTxn {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }

    /// Whether an inbox writer is waiting for this transaction's gate (SQLite): a long
    /// transaction should end soon, since a webhook is answered only after its commit.
    pub fn ingest_waiting(&self) -> bool {
        self.gate
            .as_ref()
            .is_some_and(|g| g.urgent.load(std::sync::atomic::Ordering::SeqCst) > 0)
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

/// Implements [`ConnectionTrait`] for a type by handing every call to one of its fields (a
/// write transaction, and what wraps one).
#[macro_export]
macro_rules! delegate_connection {
    ($t:ty, $field:ident) => {
        #[async_trait::async_trait]
        impl sea_orm::ConnectionTrait for $t {
            fn get_database_backend(&self) -> sea_orm::DbBackend {
                self.$field.get_database_backend()
            }
            async fn execute_raw(&self, stmt: sea_orm::Statement) -> Result<sea_orm::ExecResult, sea_orm::DbErr> {
                self.$field.execute_raw(stmt).await
            }
            async fn execute_unprepared(&self, sql: &str) -> Result<sea_orm::ExecResult, sea_orm::DbErr> {
                self.$field.execute_unprepared(sql).await
            }
            async fn query_one_raw(
                &self,
                stmt: sea_orm::Statement,
            ) -> Result<Option<sea_orm::QueryResult>, sea_orm::DbErr> {
                self.$field.query_one_raw(stmt).await
            }
            async fn query_all_raw(
                &self,
                stmt: sea_orm::Statement,
            ) -> Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr> {
                self.$field.query_all_raw(stmt).await
            }
        }
    };
}

delegate_connection!(WriteTxn, txn);

/// The write lock of one SQLite file in this process. Ingest goes first: a webhook waits for
/// its commit before it is answered, while the worker's batches can always come a little later.
#[derive(Default)]
struct Gate {
    lock: Arc<tokio::sync::Mutex<()>>,
    urgent: std::sync::atomic::AtomicUsize,
}

type Gates = std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, Arc<Gate>>>;
static GATES: std::sync::LazyLock<Gates> = std::sync::LazyLock::new(Default::default);

fn gate(db: &DatabaseConnection) -> Option<Arc<Gate>> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return None;
    }
    let file = db
        .get_sqlite_connection_pool()
        .connect_options()
        .get_filename()
        .to_path_buf();
    let mut gates = GATES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    Some(gates.entry(file).or_default().clone())
}

/// Every write goes through here. On SQLite a DEFERRED transaction that later writes fails at once
/// with SQLITE_BUSY when another writer got there first; IMMEDIATE takes the write lock up front
/// (after the gate, so another process is the only one it can wait for). PostgreSQL ignores it.
pub async fn write_txn(db: &DatabaseConnection) -> Result<WriteTxn, DbErr> {
    begin(db, false).await
}

/// [`write_txn`] for the inbox writers: ahead of every other writer waiting for the gate.
pub async fn write_txn_urgent(db: &DatabaseConnection) -> Result<WriteTxn, DbErr> {
    begin(db, true).await
}

/// The write gate alone, for the inbox writers, ahead of every other writer: for a write that
/// is one statement, committed by itself (no BEGIN and COMMIT, two fewer trips to the
/// database). `None` on PostgreSQL, which needs no gate.
pub async fn urgent_gate(db: &DatabaseConnection) -> Option<tokio::sync::OwnedMutexGuard<()>> {
    let g = gate(db)?;
    Some(take_gate(&g, true).await)
}

async fn take_gate(g: &Arc<Gate>, urgent: bool) -> tokio::sync::OwnedMutexGuard<()> {
    use std::sync::atomic::Ordering;
    if urgent {
        g.urgent.fetch_add(1, Ordering::SeqCst);
        let guard = g.lock.clone().lock_owned().await;
        g.urgent.fetch_sub(1, Ordering::SeqCst);
        return guard;
    }
    loop {
        let guard = g.lock.clone().lock_owned().await;
        if g.urgent.load(Ordering::SeqCst) == 0 {
            return guard;
        }
        drop(guard);
        tokio::task::yield_now().await;
    }
}

async fn begin(db: &DatabaseConnection, urgent: bool) -> Result<WriteTxn, DbErr> {
    let shared = gate(db);
    let gate = match &shared {
        Some(g) => Some(take_gate(g, urgent).await),
        None => None,
    };
    let txn = if db.get_database_backend() == DbBackend::Sqlite {
        db.begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?
    } else {
        db.begin().await?
    };
    Ok(WriteTxn {
        txn,
        _gate: gate,
        gate: shared,
    })
}

/// The most bound data one multi-row statement carries. sqlx leaves Nagle's algorithm on for
/// PostgreSQL over TCP: a message larger than what the socket's initial send buffer takes at once
/// (`net.ipv4.tcp_wmem`, 16 KiB by default) sends its tail only after the server's delayed ACK of
/// the head, 40 ms later. Measured: a 64-row outbox insert took 47 ms, 2 of them in the server.
/// SQLite runs in process: no limit.
pub fn statement_bytes(backend: DbBackend) -> usize {
    match backend {
        DbBackend::Postgres => 8 * 1024,
        _ => usize::MAX,
    }
}

/// Splits rows into runs of at most `max_rows` whose sizes add up to at most `max_bytes` (a
/// single larger row is a run of its own).
pub fn runs<T>(rows: &[T], max_rows: usize, max_bytes: usize, size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, r) in rows.iter().enumerate() {
        let n = size(r);
        if i > start && (i - start >= max_rows || bytes.saturating_add(n) > max_bytes) {
            out.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(n);
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection given back inside an open transaction (what an error mid-transaction can
    /// leave) is never handed out again: its writes would join that transaction and be lost.
    #[tokio::test]
    async fn a_connection_returned_inside_a_transaction_is_not_reused() {
        use sea_orm::sqlx::Executor;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = connect(&url).await.unwrap();
        db.execute_unprepared("CREATE TABLE t (x INTEGER)").await.unwrap();
        let pool = db.get_sqlite_connection_pool();
        {
            let mut conn = pool.acquire().await.unwrap();
            conn.execute("BEGIN IMMEDIATE").await.unwrap();
            conn.execute("INSERT INTO t VALUES (1)").await.unwrap();
        }
        // The connection goes back to the pool in a task of its own.
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Every connection the pool can hand out at once must be outside any transaction.
        let mut held = Vec::new();
        for _ in 0..8 {
            let mut conn = pool.acquire().await.unwrap();
            conn.execute("BEGIN")
                .await
                .expect("a pooled connection was inside a transaction");
            conn.execute("ROLLBACK").await.unwrap();
            held.push(conn);
        }
        drop(held);
        let n: i64 = sea_orm::sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "the abandoned transaction's write must not be committed");
    }

    #[test]
    fn runs_respect_both_the_row_and_the_byte_limit() {
        let rows: Vec<usize> = vec![10_000; 10];
        let r = runs(&rows, 100, 32_000, |n| *n);
        assert_eq!(r.iter().map(|r| r.len()).collect::<Vec<_>>(), [3, 3, 3, 1]);
        let r = runs(&rows, 2, usize::MAX, |n| *n);
        assert_eq!(r.len(), 5);
        // A row larger than the limit still goes, alone.
        let r = runs(&[1, 64_000, 1], 100, 32_000, |n| *n);
        assert_eq!(r.iter().map(|r| r.len()).collect::<Vec<_>>(), [1, 1, 1]);
        assert!(runs(&Vec::<usize>::new(), 10, 1, |n| *n).is_empty());
    }
}

/// Cursor pagination shared by every list: `after` is the last id seen.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub first: u64,
    pub after: Option<i32>,
}

impl Page {
    pub const MAX: u64 = 200;

    pub fn new(first: Option<i32>, after: Option<&str>) -> crate::AppResult<Self> {
        let first = first.unwrap_or(50);
        if !(1..=Self::MAX as i32).contains(&first) {
            return Err(crate::AppError::bad(format!(
                "first must be between 1 and {}",
                Self::MAX
            )));
        }
        let after = match after {
            None | Some("") => None,
            Some(c) => Some(
                c.parse::<i32>()
                    .map_err(|_| crate::AppError::bad("after is not a cursor from this list"))?,
            ),
        };
        Ok(Page {
            first: first as u64,
            after,
        })
    }
}

/// A page of rows and whether more follow.
#[derive(Debug, Clone)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub has_next: bool,
}

impl<T> Paged<T> {
    /// Takes `first + 1` rows fetched by the caller and trims the probe row.
    pub fn from_probe(mut rows: Vec<T>, first: u64) -> Self {
        let has_next = rows.len() as u64 > first;
        rows.truncate(first as usize);
        Paged { items: rows, has_next }
    }
}

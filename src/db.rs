//! Connecting, migrating, and the write-transaction rule for SQLite.
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
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
    let mut opts = ConnectOptions::new(url.to_string());
    opts.sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5));
    if url.starts_with("sqlite:") {
        // WAL lets readers run beside the one writer; busy_timeout makes writers queue for the
        // lock (with BEGIN IMMEDIATE below) instead of failing with SQLITE_BUSY.
        // A connection whose transaction outlived an error (SQLITE_FULL, an I/O error, a lock
        // timeout) must never be reused: the next request's writes would go into that dead
        // transaction, be acknowledged, and never reach the disk. Before every reuse, a
        // ROLLBACK that succeeds means such a transaction was open: the connection is closed.
        opts.map_sqlx_sqlite_before_acquire(|conn, _meta| {
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
        });
        opts.max_connections(8)
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
            });
    } else {
        opts.max_connections(16).min_connections(1);
    }
    Database::connect(opts).await
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Every write goes through here. On SQLite a DEFERRED transaction that later writes fails at once
/// with SQLITE_BUSY when another writer got there first; IMMEDIATE takes the write lock up front
/// and waits politely (busy_timeout). PostgreSQL ignores the option.
pub async fn write_txn(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    if db.get_database_backend() == DbBackend::Sqlite {
        db.begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await
    } else {
        db.begin().await
    }
}

pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

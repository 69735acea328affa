//! Indexes for the admin screens' filters and pages, so a page costs the same at the first and
//! the ten-thousandth and a filter reads only what it shows: events by app and status, type,
//! e-mail or date (newest first), a transaction's events (a buyer search), audit rows by app and target, and on PostgreSQL buyers by
//! e-mail in byte order, which makes an e-mail prefix a range whatever the database's collation
//! (SQLite compares bytes already, and `uq_buyer_app_email` serves it).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEXES: &[(&str, &str, &str)] = &[
    ("idx_webhook_event_app_id", "webhook_event", "app_id, id"),
    ("idx_webhook_event_app_status_id", "webhook_event", "app_id, status, id"),
    (
        "idx_webhook_event_app_type_id",
        "webhook_event",
        "app_id, event_type, id",
    ),
    ("idx_webhook_event_app_email_id", "webhook_event", "app_id, email, id"),
    ("idx_webhook_event_app_received", "webhook_event", "app_id, received_at"),
    (
        "idx_webhook_event_app_transaction",
        "webhook_event",
        "app_id, \"transaction\"",
    ),
    ("idx_audit_log_app_id", "audit_log", "app_id, id"),
    ("idx_audit_log_app_target_id", "audit_log", "app_id, target, id"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for (name, table, cols) in INDEXES {
            db.execute_unprepared(&format!("CREATE INDEX {name} ON {table} ({cols})"))
                .await?;
        }
        if m.get_database_backend() == sea_orm::DbBackend::Postgres {
            db.execute_unprepared("CREATE INDEX idx_buyer_app_email_bytes ON buyer (app_id, (email COLLATE \"C\"))")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if m.get_database_backend() == sea_orm::DbBackend::Postgres {
            db.execute_unprepared("DROP INDEX IF EXISTS idx_buyer_app_email_bytes")
                .await?;
        }
        for (name, ..) in INDEXES.iter().rev() {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}")).await?;
        }
        Ok(())
    }
}

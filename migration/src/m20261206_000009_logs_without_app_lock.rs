//! PostgreSQL only: the four append-only logs (inbox, access history, audit, notification outbox)
//! stop checking `app_id` against `app` with a foreign key.
//!
//! Such a check takes a `FOR KEY SHARE` lock on the parent row. Every log row of an app names
//! the same parent, so every ingest writer and the worker lock that one `app` row, for every
//! row they write; when several transactions hold it at once PostgreSQL records them in a
//! MultiXact and rewrites the row's lock state. Measured on the pipeline bench (8,000 events,
//! same machine, alternating runs): webhook ingest 4,913 and 5,109/s with the checks, 6,428
//! and 6,074/s without (0.52–0.53× → 0.63–0.66× raw single-row inserts); the worker 2,576–2,780
//! events/s → 2,985–3,092/s.
//!
//! What is given up: the database no longer refuses a log row naming an app that does not
//! exist, and deleting an app would no longer cascade to its logs. Porteiro writes `app_id`
//! only from the app it has just looked up, and has no way to delete an app; whoever adds one
//! deletes its logs in the same transaction. Buyers, entitlements and every other table keep
//! their keys. SQLite keeps these too: its check is an index lookup that locks nothing, and
//! dropping a constraint there means rebuilding the table.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum App {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum WebhookEvent {
    Table,
    AppId,
}

#[derive(DeriveIden)]
enum AccessFact {
    Table,
    AppId,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    AppId,
}

#[derive(DeriveIden)]
enum Notification {
    Table,
    AppId,
}

/// Each log's constraint name and table (the names the earlier migrations gave them).
fn keys() -> [(&'static str, DynIden, DynIden); 4] {
    [
        (
            "fk_webhook_event_app",
            WebhookEvent::Table.into_iden(),
            WebhookEvent::AppId.into_iden(),
        ),
        (
            "fk_access_fact_app",
            AccessFact::Table.into_iden(),
            AccessFact::AppId.into_iden(),
        ),
        (
            "fk_audit_log_app",
            AuditLog::Table.into_iden(),
            AuditLog::AppId.into_iden(),
        ),
        (
            "fk_notification_app",
            Notification::Table.into_iden(),
            Notification::AppId.into_iden(),
        ),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        for (name, table, _) in keys() {
            m.drop_foreign_key(ForeignKey::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        for (name, table, col) in keys() {
            m.create_foreign_key(
                ForeignKey::create()
                    .name(name)
                    .from(table, col)
                    .to(App::Table, App::Id)
                    .on_delete(ForeignKeyAction::Cascade)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

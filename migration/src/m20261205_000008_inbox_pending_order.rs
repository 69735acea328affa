//! The worker reads the oldest pending inbox rows (`status = 'pending' ORDER BY id LIMIT n`).
//! With an index on `status` alone, PostgreSQL either walks the primary key past every
//! processed row or sorts every pending one, so each read grows with the inbox (measured with
//! 4,000 processed rows ahead: 7 ms, against 0.1 ms with this index). An index on (status, id)
//! reads the batch in order directly. (SQLite's index on `status` already ends with the rowid.)
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookEvent {
    Table,
    Id,
    Status,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("idx_webhook_event_status_id")
                .table(WebhookEvent::Table)
                .col(WebhookEvent::Status)
                .col(WebhookEvent::Id)
                .to_owned(),
        )
        .await?;
        // Every query the old index served starts with the status: the new one serves them.
        m.drop_index(
            Index::drop()
                .name("idx_webhook_event_status")
                .table(WebhookEvent::Table)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("idx_webhook_event_status")
                .table(WebhookEvent::Table)
                .col(WebhookEvent::Status)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("idx_webhook_event_status_id")
                .table(WebhookEvent::Table)
                .to_owned(),
        )
        .await
    }
}

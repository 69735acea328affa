//! The inbox's index on (app_id, source_key) goes: nothing reads the inbox by source any more
//! (a source's history is read from `access_fact` since the access-history migration), and it
//! was one more random-order index entry per webhook, moved again when the worker set the
//! row's source, under SQLite's single write lock.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookEvent {
    Table,
    AppId,
    SourceKey,
}

const NAME: &str = "idx_webhook_event_source";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name(NAME).table(WebhookEvent::Table).to_owned())
            .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name(NAME)
                .table(WebhookEvent::Table)
                .col(WebhookEvent::AppId)
                .col(WebhookEvent::SourceKey)
                .to_owned(),
        )
        .await
    }
}

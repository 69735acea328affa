//! Access changes counted per app, day and kind, for the console's overview. The overview
//! counted the outbox's rows, so every change of every app wrote one, even for apps with no
//! notification endpoint, whose rows nobody would ever receive: under SQLite's single write lock
//! that row was the largest write of a worker batch. The outbox now holds only what an endpoint
//! can receive, and the counts live here: one small upsert per batch. Existing outbox rows are
//! counted in, so the overview's history carries over.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AccessChangeTally {
    Table,
    AppId,
    Day,
    Kind,
    N,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AccessChangeTally::Table)
                .col(ColumnDef::new(AccessChangeTally::AppId).integer().not_null())
                // `YYYY-MM-DD`, UTC: the same text on both databases.
                .col(ColumnDef::new(AccessChangeTally::Day).string_len(10).not_null())
                .col(ColumnDef::new(AccessChangeTally::Kind).string_len(40).not_null())
                .col(ColumnDef::new(AccessChangeTally::N).big_integer().not_null())
                .primary_key(
                    Index::create()
                        .col(AccessChangeTally::AppId)
                        .col(AccessChangeTally::Day)
                        .col(AccessChangeTally::Kind),
                )
                .to_owned(),
        )
        .await?;
        let day = match m.get_database_backend() {
            sea_orm::DbBackend::Postgres => "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
            _ => "substr(created_at, 1, 10)",
        };
        m.get_connection()
            .execute_unprepared(&format!(
                "INSERT INTO access_change_tally (app_id, day, kind, n) \
                 SELECT app_id, {day}, event_type, COUNT(*) FROM notification \
                 WHERE entitlement_id IS NOT NULL GROUP BY app_id, {day}, event_type"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(AccessChangeTally::Table).to_owned())
            .await
    }
}

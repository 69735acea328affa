//! App API keys may expire: a key made for a trial, or the old key of a rotation, which keeps
//! working until the new one is deployed everywhere and then stops by itself.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ApiKey {
    Table,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(ApiKey::Table)
                .add_column(timestamp_with_time_zone_null(ApiKey::ExpiresAt))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(ApiKey::Table)
                .drop_column(ApiKey::ExpiresAt)
                .to_owned(),
        )
        .await
    }
}

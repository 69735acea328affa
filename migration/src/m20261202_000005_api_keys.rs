//! App API keys: the narrow credential a producer's app uses to ask about access. Only a hash of
//! the secret is stored; `key_id` is the public part that finds the row.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ApiKey {
    Table,
    Id,
    AppId,
    Name,
    KeyId,
    SecretHash,
    Scopes,
    CreatedBy,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum App {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ApiKey::Table)
                .col(pk_auto(ApiKey::Id))
                .col(integer(ApiKey::AppId))
                .col(string(ApiKey::Name))
                .col(string(ApiKey::KeyId))
                .col(string(ApiKey::SecretHash))
                .col(string(ApiKey::Scopes))
                .col(string(ApiKey::CreatedBy))
                .col(timestamp_with_time_zone(ApiKey::CreatedAt))
                .col(timestamp_with_time_zone_null(ApiKey::LastUsedAt))
                .col(timestamp_with_time_zone_null(ApiKey::RevokedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_api_key_app")
                        .from(ApiKey::Table, ApiKey::AppId)
                        .to(App::Table, App::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_api_key_key_id")
                .table(ApiKey::Table)
                .col(ApiKey::KeyId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_api_key_app")
                .table(ApiKey::Table)
                .col(ApiKey::AppId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ApiKey::Table).to_owned()).await
    }
}

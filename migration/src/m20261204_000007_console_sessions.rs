//! The browser console's sign-in: one-time login links (from `porteiro login`) and the sessions
//! they open. Only SHA-256 hashes of the tokens are stored.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ConsoleToken {
    Table,
    Id,
    Kind,
    TokenHash,
    AppId,
    Role,
    Subject,
    CreatedAt,
    ExpiresAt,
    UsedAt,
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
                .table(ConsoleToken::Table)
                .col(pk_auto(ConsoleToken::Id))
                .col(string(ConsoleToken::Kind))
                .col(string(ConsoleToken::TokenHash))
                .col(integer(ConsoleToken::AppId))
                .col(string(ConsoleToken::Role))
                .col(string(ConsoleToken::Subject))
                .col(timestamp_with_time_zone(ConsoleToken::CreatedAt))
                .col(timestamp_with_time_zone(ConsoleToken::ExpiresAt))
                .col(timestamp_with_time_zone_null(ConsoleToken::UsedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_console_token_app")
                        .from(ConsoleToken::Table, ConsoleToken::AppId)
                        .to(App::Table, App::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_console_token_hash")
                .table(ConsoleToken::Table)
                .col(ConsoleToken::TokenHash)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ConsoleToken::Table).to_owned()).await
    }
}

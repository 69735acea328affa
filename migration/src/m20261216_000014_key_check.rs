//! A value sealed under the master key, so a start with the wrong key (a database restored
//! without its `master.key`, a mistyped `PORTEIRO_MASTER_KEY`) refuses at once instead of
//! serving with Hotmart credentials it cannot read.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum KeyCheck {
    Table,
    Id,
    KeyId,
    Sealed,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(KeyCheck::Table)
                .col(integer(KeyCheck::Id).primary_key())
                .col(string(KeyCheck::KeyId))
                .col(text(KeyCheck::Sealed))
                .col(timestamp_with_time_zone(KeyCheck::CreatedAt))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(KeyCheck::Table).to_owned()).await
    }
}

//! Buyers erased on request (LGPD): the sources whose holder was erased, so a later delivery of
//! one of their events (a redelivery, a renewal of the same subscription) is not applied and
//! cannot bring the person back. Only the pseudonym that replaced them is kept.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ErasedSource {
    Table,
    Id,
    AppId,
    Source,
    Pseudonym,
    ErasedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ErasedSource::Table)
                .col(pk_auto(ErasedSource::Id))
                .col(integer(ErasedSource::AppId))
                .col(string(ErasedSource::Source))
                .col(string(ErasedSource::Pseudonym))
                .col(timestamp_with_time_zone(ErasedSource::ErasedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_erased_source")
                .table(ErasedSource::Table)
                .col(ErasedSource::AppId)
                .col(ErasedSource::Source)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ErasedSource::Table).to_owned()).await
    }
}

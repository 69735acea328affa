//! Several instances on one PostgreSQL: the leases that make a scheduled job run once per period
//! across the fleet, and the schema floor that lets an older binary keep serving during a rolling
//! upgrade (until a migration that breaks it).
//!
//! Expand only: an instance of the previous version ignores both tables.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum JobLease {
    Table,
    Name,
    Holder,
    LeaseUntil,
    LastRunAt,
    Runs,
}

#[derive(DeriveIden, Clone, Copy)]
enum SchemaFloor {
    Table,
    Id,
    ServesFrom,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(JobLease::Table)
                .col(string(JobLease::Name).primary_key())
                .col(string_null(JobLease::Holder))
                .col(timestamp_with_time_zone_null(JobLease::LeaseUntil))
                .col(timestamp_with_time_zone_null(JobLease::LastRunAt))
                .col(big_integer(JobLease::Runs).default(0))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(SchemaFloor::Table)
                .col(integer(SchemaFloor::Id).primary_key())
                .col(string(SchemaFloor::ServesFrom))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(SchemaFloor::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(JobLease::Table).to_owned()).await
    }
}

//! Reconciliations run as background jobs: what stage a run is at, how far it got, and a
//! heartbeat, so a run whose process died is finished as failed instead of `running` forever.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ReconciliationRun {
    Table,
    Stage,
    Progress,
    HeartbeatAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(ReconciliationRun::Table)
                .add_column(string_null(ReconciliationRun::Stage))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(ReconciliationRun::Table)
                .add_column(big_integer(ReconciliationRun::Progress).default(0))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(ReconciliationRun::Table)
                .add_column(timestamp_with_time_zone_null(ReconciliationRun::HeartbeatAt))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            ReconciliationRun::HeartbeatAt,
            ReconciliationRun::Progress,
            ReconciliationRun::Stage,
        ] {
            m.alter_table(
                Table::alter()
                    .table(ReconciliationRun::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum App {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum HotmartIntegration {
    Table,
    ReconcileEveryMinutes,
}

#[derive(DeriveIden, Clone, Copy)]
enum ReconciliationRun {
    Table,
    Id,
    AppId,
    Trigger,
    Since,
    Until,
    DryRun,
    Status,
    Report,
    Error,
    StartedAt,
    FinishedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(HotmartIntegration::Table)
                .add_column(integer_null(HotmartIntegration::ReconcileEveryMinutes))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ReconciliationRun::Table)
                .col(pk_auto(ReconciliationRun::Id))
                .col(integer(ReconciliationRun::AppId))
                .col(string(ReconciliationRun::Trigger))
                .col(timestamp_with_time_zone(ReconciliationRun::Since))
                .col(timestamp_with_time_zone(ReconciliationRun::Until))
                .col(boolean(ReconciliationRun::DryRun))
                .col(string(ReconciliationRun::Status))
                .col(text_null(ReconciliationRun::Report))
                .col(text_null(ReconciliationRun::Error))
                .col(timestamp_with_time_zone(ReconciliationRun::StartedAt))
                .col(timestamp_with_time_zone_null(ReconciliationRun::FinishedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_reconciliation_run_app")
                        .from(ReconciliationRun::Table, ReconciliationRun::AppId)
                        .to(App::Table, App::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_reconciliation_run_app")
                .table(ReconciliationRun::Table)
                .col(ReconciliationRun::AppId)
                .col(ReconciliationRun::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ReconciliationRun::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(HotmartIntegration::Table)
                .drop_column(HotmartIntegration::ReconcileEveryMinutes)
                .to_owned(),
        )
        .await
    }
}

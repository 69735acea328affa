//! The integration remembers when a delivery was last refused and why (a missing or wrong
//! Hottok, no Hottok saved yet), so the console can say "it arrived, but…" instead of waiting.
//! Never the refused bodies.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum HotmartIntegration {
    Table,
    LastRejectedAt,
    LastRejectedReason,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            timestamp_with_time_zone_null(HotmartIntegration::LastRejectedAt),
            string_null(HotmartIntegration::LastRejectedReason),
        ] {
            let mut col = col;
            m.alter_table(
                Table::alter()
                    .table(HotmartIntegration::Table)
                    .add_column(&mut col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            HotmartIntegration::LastRejectedAt,
            HotmartIntegration::LastRejectedReason,
        ] {
            m.alter_table(
                Table::alter()
                    .table(HotmartIntegration::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

//! A payment fact keeps the date its charge was approved (`paid_at`) when the event reporting it
//! came later (a PURCHASE_COMPLETE whose approval was lost), so the charge covers from its
//! approval whichever event reported it. Disputes now outlive a lapsed cover.
//!
//! Rewrites data: the stored completions and disputes go back to the queue, so the worker
//! re-decides them (filling `paid_at`) and recomputes their sources under these semantics on the
//! first start.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::timestamp_with_time_zone_null;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AccessFact {
    Table,
    PaidAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(AccessFact::Table)
                .add_column(timestamp_with_time_zone_null(AccessFact::PaidAt))
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(
                "UPDATE webhook_event SET status = 'pending', attempts = 0 \
                 WHERE status = 'processed' AND event_type IN ('PURCHASE_COMPLETE', 'PURCHASE_PROTEST')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(AccessFact::Table)
                .drop_column(AccessFact::PaidAt)
                .to_owned(),
        )
        .await
    }
}

//! What the apps' API needs from the store:
//! - `entitlement.term`: how a live entitlement ends (renews, cancelled, delayed, fixed), so an
//!   app reads a subscription's state instead of parsing `reason`. Rows written before it get
//!   the term their last decisive fact implies; a replay recomputes it exactly.
//! - `notification.seq`: the changes feed's cursor, assigned once a notification is committed,
//!   in the order they are assigned, so a reader never skips one that committed late.
//! - `product_package.key` / `subscription_plan.key`: a slug the admin sets, unique per app,
//!   that apps use instead of ids that differ between installations.
//! - entitlements by target and buyer, for the holder lists (covering what their filter reads).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Entitlement {
    Table,
    Term,
}

#[derive(DeriveIden, Clone, Copy)]
enum Notification {
    Table,
    Seq,
}

#[derive(DeriveIden, Clone, Copy)]
enum Key {
    Key,
}

const TARGETS: [&str; 2] = ["product_package", "subscription_plan"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        m.alter_table(
            Table::alter()
                .table(Entitlement::Table)
                .add_column(string(Entitlement::Term).default("fixed"))
                .to_owned(),
        )
        .await?;
        // A plan's row renews unless its last decisive fact ended it that way.
        db.execute_unprepared(
            "UPDATE entitlement SET term = CASE \
               WHEN reason LIKE 'SUBSCRIPTION_CANCELLATION%' THEN 'cancelled' \
               WHEN reason LIKE 'PURCHASE_DELAYED%' THEN 'delayed' \
               WHEN target_kind = 'plan' AND source LIKE 'sub:%' THEN 'renews' \
               ELSE 'fixed' END",
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Notification::Table)
                .add_column(big_integer_null(Notification::Seq))
                .to_owned(),
        )
        .await?;
        // What was already fanned out is in commit order by id (one fan-out at a time).
        db.execute_unprepared(
            "UPDATE notification SET seq = id WHERE fanned_out = TRUE AND entitlement_id IS NOT NULL",
        )
        .await?;
        db.execute_unprepared("CREATE INDEX idx_notification_app_seq ON notification (app_id, seq)")
            .await?;
        // The next cursor starts after the highest, whichever app it belongs to.
        db.execute_unprepared("CREATE INDEX idx_notification_seq ON notification (seq)")
            .await?;
        for t in TARGETS {
            m.alter_table(
                Table::alter()
                    .table(Alias::new(t))
                    .add_column(string_null(Key::Key))
                    .to_owned(),
            )
            .await?;
            db.execute_unprepared(&format!("CREATE UNIQUE INDEX uq_{t}_key ON {t} (app_id, key)"))
                .await?;
        }
        db.execute_unprepared(
            "CREATE INDEX idx_entitlement_holders ON entitlement \
             (app_id, target_kind, target_id, buyer_id, status, expires_at)",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_entitlement_target")
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared("CREATE INDEX idx_entitlement_target ON entitlement (app_id, target_kind, target_id)")
            .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_entitlement_holders")
            .await?;
        for t in TARGETS {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS uq_{t}_key"))
                .await?;
            m.alter_table(Table::alter().table(Alias::new(t)).drop_column(Key::Key).to_owned())
                .await?;
        }
        db.execute_unprepared("DROP INDEX IF EXISTS idx_notification_app_seq")
            .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_notification_seq")
            .await?;
        m.alter_table(
            Table::alter()
                .table(Notification::Table)
                .drop_column(Notification::Seq)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Entitlement::Table)
                .drop_column(Entitlement::Term)
                .to_owned(),
        )
        .await
    }
}

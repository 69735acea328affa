//! The access history: one table of facts per source (payments, cancellations, disputes, refunds,
//! admin decisions), entitlements keyed by source (one holder each), and the plan's period and
//! grace. Existing data is recomputed: admin decisions become facts, decided inbox rows go back to
//! the queue so the worker rebuilds every Hotmart source's history under the new semantics.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum App {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum SubscriptionPlan {
    Table,
    PeriodDays,
    GraceDays,
}

#[derive(DeriveIden, Clone, Copy)]
enum Entitlement {
    Table,
    AppId,
    BuyerId,
    TargetKind,
    TargetId,
    Source,
}

#[derive(DeriveIden, Clone, Copy)]
enum AccessFact {
    Table,
    Id,
    AppId,
    Source,
    Effect,
    EventType,
    FactKey,
    Transaction,
    OccurredAt,
    Until,
    Email,
    TargetKind,
    TargetId,
    WebhookEventId,
    RuleVersion,
    Actor,
    Reason,
    CreatedAt,
}

/// Admin decisions recorded before facts existed, so the rebuild cannot undo them.
const ADMIN_FACTS: &str = "
INSERT INTO access_fact (app_id, source, effect, event_type, fact_key, \"transaction\", occurred_at, \
    until, email, target_kind, target_id, webhook_event_id, rule_version, actor, reason, created_at)
SELECT e.app_id, e.source,
    CASE WHEN e.status = 'REVOKED' THEN 'admin_revoke' ELSE 'admin_grant' END,
    CASE WHEN e.status = 'REVOKED' THEN 'ADMIN_REVOKE' ELSE 'ADMIN_GRANT' END,
    'admin:migrated:' || CAST(e.id AS TEXT), NULL,
    COALESCE(e.revoked_at, e.granted_at, e.created_at),
    CASE WHEN e.status = 'REVOKED' THEN NULL ELSE e.expires_at END,
    b.email, e.target_kind, e.target_id, NULL, NULL, 'migration', e.reason, e.updated_at
FROM entitlement e JOIN buyer b ON b.id = e.buyer_id
WHERE e.source LIKE 'manual:%'
   OR (e.status = 'REVOKED' AND (e.reason LIKE 'manual revoke:%' OR e.reason LIKE 'subscription cancelled by support%'))";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        m.alter_table(
            Table::alter()
                .table(SubscriptionPlan::Table)
                .add_column(integer(SubscriptionPlan::PeriodDays).default(30))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(SubscriptionPlan::Table)
                .add_column(integer(SubscriptionPlan::GraceDays).default(3))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AccessFact::Table)
                .col(pk_auto(AccessFact::Id))
                .col(integer(AccessFact::AppId))
                .col(string(AccessFact::Source))
                .col(string(AccessFact::Effect))
                .col(string(AccessFact::EventType))
                .col(string(AccessFact::FactKey))
                .col(string_null(AccessFact::Transaction))
                .col(timestamp_with_time_zone(AccessFact::OccurredAt))
                .col(timestamp_with_time_zone_null(AccessFact::Until))
                .col(string_null(AccessFact::Email))
                .col(string(AccessFact::TargetKind))
                .col(integer(AccessFact::TargetId))
                .col(integer_null(AccessFact::WebhookEventId))
                .col(integer_null(AccessFact::RuleVersion))
                .col(string(AccessFact::Actor))
                .col(text(AccessFact::Reason).default(""))
                .col(timestamp_with_time_zone(AccessFact::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_access_fact_app")
                        .from(AccessFact::Table, AccessFact::AppId)
                        .to(App::Table, App::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_access_fact_source")
                .table(AccessFact::Table)
                .col(AccessFact::AppId)
                .col(AccessFact::Source)
                .to_owned(),
        )
        .await?;
        // One fact per inbox event: applied exactly once is a property of the schema too.
        m.create_index(
            Index::create()
                .name("uq_access_fact_event")
                .table(AccessFact::Table)
                .col(AccessFact::WebhookEventId)
                .unique()
                .to_owned(),
        )
        .await?;

        // Manual grants had one shared source per buyer; each becomes its own source.
        db.execute_unprepared(
            "UPDATE entitlement SET source = 'manual:' || target_kind || ':' || CAST(target_id AS TEXT) \
             || ':' || CAST(buyer_id AS TEXT) WHERE source = 'manual'",
        )
        .await?;
        db.execute_unprepared(ADMIN_FACTS).await?;
        // One row per source from now on: keep the newest where a switch or an e-mail change left two.
        db.execute_unprepared(
            "DELETE FROM entitlement WHERE id NOT IN (SELECT MAX(id) FROM entitlement GROUP BY app_id, source)",
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("uq_entitlement_source")
                .table(Entitlement::Table)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_entitlement_by_source")
                .table(Entitlement::Table)
                .col(Entitlement::AppId)
                .col(Entitlement::Source)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_entitlement_buyer")
                .table(Entitlement::Table)
                .col(Entitlement::AppId)
                .col(Entitlement::BuyerId)
                .to_owned(),
        )
        .await?;
        // Rebuild every Hotmart source's history: the worker re-decides each decided event.
        db.execute_unprepared(
            "UPDATE webhook_event SET status = 'pending', attempts = 0 \
             WHERE status IN ('processed', 'ignored') AND source_key IS NOT NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("idx_entitlement_buyer")
                .table(Entitlement::Table)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("uq_entitlement_by_source")
                .table(Entitlement::Table)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_entitlement_source")
                .table(Entitlement::Table)
                .col(Entitlement::AppId)
                .col(Entitlement::BuyerId)
                .col(Entitlement::TargetKind)
                .col(Entitlement::TargetId)
                .col(Entitlement::Source)
                .unique()
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(AccessFact::Table).to_owned()).await?;
        for col in [SubscriptionPlan::GraceDays, SubscriptionPlan::PeriodDays] {
            m.alter_table(
                Table::alter()
                    .table(SubscriptionPlan::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

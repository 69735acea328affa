//! Trying a rule version before it decides anything:
//! - backtests: a candidate script run over the stored events of its type without writing
//!   anything, kept with its report (who would gain or lose access). A job like
//!   reconciliation: stage, progress, heartbeat, cancel.
//! - shadow runs: a version marked `shadow` is decided beside the active one on every live
//!   event, nothing applied; agreements are counted in `rollup` (family `shadow`) and
//!   disagreements sampled in `rule_shadow_sample`.
//! - rule tests: a version's test cases (JSON), run when it is saved.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum RuleBacktest {
    Table,
    Id,
    AppId,
    EventType,
    Version,
    Since,
    Until,
    Status,
    Stage,
    Progress,
    Total,
    Report,
    Error,
    CreatedBy,
    StartedAt,
    FinishedAt,
    HeartbeatAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum RuleScript {
    Table,
    Shadow,
    Cases,
}

#[derive(DeriveIden, Clone, Copy)]
enum RuleShadowSample {
    Table,
    Id,
    AppId,
    EventType,
    Version,
    WebhookEventId,
    Active,
    Shadow,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RuleBacktest::Table)
                .col(pk_auto(RuleBacktest::Id))
                .col(integer(RuleBacktest::AppId))
                .col(string_len(RuleBacktest::EventType, 64))
                .col(integer(RuleBacktest::Version))
                .col(timestamp_with_time_zone_null(RuleBacktest::Since))
                .col(timestamp_with_time_zone_null(RuleBacktest::Until))
                .col(string_len(RuleBacktest::Status, 16))
                .col(string_len_null(RuleBacktest::Stage, 32))
                .col(big_integer(RuleBacktest::Progress).default(0))
                .col(big_integer(RuleBacktest::Total).default(0))
                .col(text_null(RuleBacktest::Report))
                .col(text_null(RuleBacktest::Error))
                .col(string_len(RuleBacktest::CreatedBy, 200))
                .col(timestamp_with_time_zone(RuleBacktest::StartedAt))
                .col(timestamp_with_time_zone_null(RuleBacktest::FinishedAt))
                .col(timestamp_with_time_zone_null(RuleBacktest::HeartbeatAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_rule_backtest_app_type_version")
                .table(RuleBacktest::Table)
                .col(RuleBacktest::AppId)
                .col(RuleBacktest::EventType)
                .col(RuleBacktest::Version)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(RuleScript::Table)
                .add_column(boolean(RuleScript::Shadow).default(false))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(RuleScript::Table)
                .add_column(text_null(RuleScript::Cases))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(RuleShadowSample::Table)
                .col(pk_auto(RuleShadowSample::Id))
                .col(integer(RuleShadowSample::AppId))
                .col(string_len(RuleShadowSample::EventType, 64))
                .col(integer(RuleShadowSample::Version))
                .col(integer(RuleShadowSample::WebhookEventId))
                // The two decisions (or why there was none), as the event log shows them.
                .col(text(RuleShadowSample::Active))
                .col(text(RuleShadowSample::Shadow))
                .col(timestamp_with_time_zone(RuleShadowSample::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_rule_shadow_sample_version")
                .table(RuleShadowSample::Table)
                .col(RuleShadowSample::AppId)
                .col(RuleShadowSample::EventType)
                .col(RuleShadowSample::Version)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(RuleShadowSample::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(RuleScript::Table)
                .drop_column(RuleScript::Shadow)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(RuleScript::Table)
                .drop_column(RuleScript::Cases)
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared("DELETE FROM rollup WHERE family = 'shadow'")
            .await?;
        m.drop_table(Table::drop().table(RuleBacktest::Table).to_owned()).await
    }
}

//! Explicit, reversible schema migrations. Never derived from the current entities, so old
//! migrations keep meaning what they meant when they shipped.
pub use sea_orm_migration::prelude::*;

mod m20261130_000001_initial;
mod m20261130_000002_reconciliation;
mod m20261201_000003_access_history;
mod m20261201_000004_reconciliation_jobs;
mod m20261202_000005_api_keys;
mod m20261203_000006_notifications;
mod m20261204_000007_console_sessions;
mod m20261205_000008_inbox_pending_order;
mod m20261206_000009_logs_without_app_lock;
mod m20261207_000010_inbox_pending_partial;
mod m20261214_000011_access_change_tally;
mod m20261214_000012_drop_inbox_source_index;
mod m20261215_000013_fact_paid_at;
mod m20261216_000014_key_check;
mod m20261217_000015_erased_source;
mod m20261218_000016_rejected_reason;
mod m20261219_000017_rollups;
mod m20261219_000018_admin_indexes;
mod m20261220_000019_changes_by_hour;
mod m20261221_000020_rule_backtests;
mod m20261222_000021_key_expiry;
mod m20261223_000022_app_api_depth;
mod m20261224_000023_fleet;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261130_000001_initial::Migration),
            Box::new(m20261130_000002_reconciliation::Migration),
            Box::new(m20261201_000003_access_history::Migration),
            Box::new(m20261201_000004_reconciliation_jobs::Migration),
            Box::new(m20261202_000005_api_keys::Migration),
            Box::new(m20261203_000006_notifications::Migration),
            Box::new(m20261204_000007_console_sessions::Migration),
            Box::new(m20261205_000008_inbox_pending_order::Migration),
            Box::new(m20261206_000009_logs_without_app_lock::Migration),
            Box::new(m20261207_000010_inbox_pending_partial::Migration),
            Box::new(m20261214_000011_access_change_tally::Migration),
            Box::new(m20261214_000012_drop_inbox_source_index::Migration),
            Box::new(m20261215_000013_fact_paid_at::Migration),
            Box::new(m20261216_000014_key_check::Migration),
            Box::new(m20261217_000015_erased_source::Migration),
            Box::new(m20261218_000016_rejected_reason::Migration),
            Box::new(m20261219_000017_rollups::Migration),
            Box::new(m20261219_000018_admin_indexes::Migration),
            Box::new(m20261220_000019_changes_by_hour::Migration),
            Box::new(m20261221_000020_rule_backtests::Migration),
            Box::new(m20261222_000021_key_expiry::Migration),
            Box::new(m20261223_000022_app_api_depth::Migration),
            Box::new(m20261224_000023_fleet::Migration),
        ]
    }
}

/// Whether a migration only expands the schema (new tables, nullable columns, indexes) in a way
/// the previous release still serves: during a rolling upgrade, instances of that release keep
/// serving beside the new ones. Every migration before the first one listed here broke older
/// binaries; a migration that drops or renames what the previous release reads (a contract) is
/// not listed, and moves the schema floor to itself.
pub fn expands_only(name: &str) -> bool {
    matches!(name, "m20261224_000023_fleet")
}

/// What a migration rewrites in the data already stored, said before it runs (`None`: it only
/// adds tables, columns or indexes). A rollback (`migrate down`) does not give the old data back:
/// the backup taken before the upgrade does.
pub fn rewrites_data(name: &str) -> Option<&'static str> {
    match name {
        "m20261201_000003_access_history" => Some(
            "admin decisions become facts and every decided event goes back to the queue, so the \
             worker rebuilds each buyer's access on the first start",
        ),
        "m20261203_000006_notifications" => Some("access ends already passed are marked as announced"),
        "m20261215_000013_fact_paid_at" => Some(
            "stored purchase completions and disputes go back to the queue, so the worker decides \
             them again on the first start",
        ),
        _ => None,
    }
}

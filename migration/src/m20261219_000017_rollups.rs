//! Counters for the admin screens, so the overview costs the same at 10 and at 10 million rows:
//! - `inbox`: webhook events by hour received (`YYYY-MM-DDTHH`, UTC) and status;
//! - `inbox_status`: webhook events by status (the backlog, failed, unmapped);
//! - `holders`: live entitlements (ACTIVE or SUSPENDED whose end the timer has not yet passed)
//!   by target and status.
//!
//! Triggers keep them, in the transaction of the write itself, whichever code path writes
//! (the worker, a bulk replay, a prune, a migration). On PostgreSQL they only append to
//! `rollup_delta`, so two writers never wait for each other's counter rows; a job folds the
//! deltas into `rollup` every few seconds, and readers add what is not folded yet. On SQLite,
//! where writers take turns anyway, they upsert `rollup` directly. The migration counts what
//! exists.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Rollup {
    Table,
    AppId,
    Family,
    Bucket,
    N,
}

#[derive(DeriveIden)]
enum RollupDelta {
    Table,
    Id,
    AppId,
    Family,
    Bucket,
    N,
}

/// What a row of each table counts as, in SQL over `r` (`NEW` or `OLD`).
fn inbox_hour(backend: sea_orm::DbBackend, r: &str) -> String {
    match backend {
        sea_orm::DbBackend::Postgres => {
            format!("to_char({r}.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24') || '|' || {r}.status")
        }
        _ => format!("replace(substr({r}.received_at, 1, 13), ' ', 'T') || '|' || {r}.status"),
    }
}

/// The two deltas an event row adds (`sign` "") or takes away ("-"), on PostgreSQL.
fn inbox_deltas(r: &str, sign: &str) -> String {
    format!(
        "INSERT INTO rollup_delta (app_id, family, bucket, n) VALUES \
         ({r}.app_id, 'inbox', {}, {sign}1), ({r}.app_id, 'inbox_status', {r}.status, {sign}1);",
        inbox_hour(sea_orm::DbBackend::Postgres, r)
    )
}

fn holder_bucket(r: &str) -> String {
    format!("{r}.target_kind || ':' || {r}.target_id || '|' || {r}.status")
}

fn holder_counts(r: &str) -> String {
    format!("{r}.status IN ('ACTIVE', 'SUSPENDED') AND NOT {r}.expiry_noted")
}

const SQLITE_TRIGGERS: &[&str] = &[
    "webhook_event_rollup_insert",
    "webhook_event_rollup_update",
    "webhook_event_rollup_delete",
    "entitlement_rollup_insert",
    "entitlement_rollup_update",
    "entitlement_rollup_delete",
];

fn sqlite_triggers() -> Vec<String> {
    // One writer at a time on SQLite: the counters are upserted in place (cheaper than a
    // delta row and its index), and nothing waits for anyone's counter row.
    let upsert = |app: String, family: &str, bucket: String, n: &str| {
        format!(
            "INSERT INTO rollup (app_id, family, bucket, n) VALUES ({app}, '{family}', {bucket}, {n}) \
             ON CONFLICT (app_id, family, bucket) DO UPDATE SET n = n + excluded.n;"
        )
    };
    let inbox = |r: &str, sign: &str| {
        let n = format!("{sign}1");
        format!(
            "{} {}",
            upsert(
                format!("{r}.app_id"),
                "inbox",
                inbox_hour(sea_orm::DbBackend::Sqlite, r),
                &n
            ),
            upsert(format!("{r}.app_id"), "inbox_status", format!("{r}.status"), &n)
        )
    };
    let holders = |r: &str, sign: &str| {
        format!(
            "INSERT INTO rollup (app_id, family, bucket, n) SELECT {r}.app_id, 'holders', {}, {sign}1 WHERE {} \
             ON CONFLICT (app_id, family, bucket) DO UPDATE SET n = n + excluded.n;",
            holder_bucket(r),
            holder_counts(r)
        )
    };
    vec![
        format!(
            "CREATE TRIGGER webhook_event_rollup_insert AFTER INSERT ON webhook_event BEGIN {} END",
            inbox("NEW", "")
        ),
        format!(
            "CREATE TRIGGER webhook_event_rollup_update AFTER UPDATE OF status ON webhook_event \
             WHEN OLD.status IS NOT NEW.status BEGIN {} {} END",
            inbox("OLD", "-"),
            inbox("NEW", "")
        ),
        format!(
            "CREATE TRIGGER webhook_event_rollup_delete AFTER DELETE ON webhook_event BEGIN {} END",
            inbox("OLD", "-")
        ),
        format!(
            "CREATE TRIGGER entitlement_rollup_insert AFTER INSERT ON entitlement BEGIN {} END",
            holders("NEW", "")
        ),
        format!(
            "CREATE TRIGGER entitlement_rollup_update AFTER UPDATE ON entitlement \
             WHEN OLD.status IS NOT NEW.status OR OLD.expiry_noted IS NOT NEW.expiry_noted \
             OR OLD.target_kind IS NOT NEW.target_kind OR OLD.target_id IS NOT NEW.target_id BEGIN {} {} END",
            holders("OLD", "-"),
            holders("NEW", "")
        ),
        format!(
            "CREATE TRIGGER entitlement_rollup_delete AFTER DELETE ON entitlement BEGIN {} END",
            holders("OLD", "-")
        ),
    ]
}

fn postgres_triggers() -> Vec<String> {
    let inbox = inbox_deltas;
    let holders = |r: &str, sign: &str| {
        format!(
            "IF {} THEN INSERT INTO rollup_delta (app_id, family, bucket, n) VALUES ({r}.app_id, 'holders', {}, {sign}1); END IF;",
            holder_counts(r),
            holder_bucket(r)
        )
    };
    vec![
        format!(
            "CREATE FUNCTION webhook_event_rollup() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF TG_OP = 'UPDATE' AND OLD.status IS NOT DISTINCT FROM NEW.status THEN RETURN NULL; END IF; \
             IF TG_OP IN ('UPDATE', 'DELETE') THEN {} END IF; \
             IF TG_OP IN ('INSERT', 'UPDATE') THEN {} END IF; \
             RETURN NULL; END $$",
            inbox("OLD", "-"),
            inbox("NEW", "")
        ),
        "CREATE TRIGGER webhook_event_rollup AFTER INSERT OR DELETE OR UPDATE OF status ON webhook_event \
         FOR EACH ROW EXECUTE FUNCTION webhook_event_rollup()"
            .into(),
        format!(
            "CREATE FUNCTION entitlement_rollup() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF TG_OP = 'UPDATE' AND (OLD.status, OLD.expiry_noted, OLD.target_kind, OLD.target_id) \
                IS NOT DISTINCT FROM (NEW.status, NEW.expiry_noted, NEW.target_kind, NEW.target_id) THEN RETURN NULL; END IF; \
             IF TG_OP IN ('UPDATE', 'DELETE') THEN {} END IF; \
             IF TG_OP IN ('INSERT', 'UPDATE') THEN {} END IF; \
             RETURN NULL; END $$",
            holders("OLD", "-"),
            holders("NEW", "")
        ),
        "CREATE TRIGGER entitlement_rollup AFTER INSERT OR DELETE OR UPDATE ON entitlement \
         FOR EACH ROW EXECUTE FUNCTION entitlement_rollup()"
            .into(),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Rollup::Table)
                .col(ColumnDef::new(Rollup::AppId).integer().not_null())
                .col(ColumnDef::new(Rollup::Family).string_len(20).not_null())
                .col(ColumnDef::new(Rollup::Bucket).string_len(120).not_null())
                .col(ColumnDef::new(Rollup::N).big_integer().not_null())
                .primary_key(
                    Index::create()
                        .col(Rollup::AppId)
                        .col(Rollup::Family)
                        .col(Rollup::Bucket),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(RollupDelta::Table)
                .col(
                    ColumnDef::new(RollupDelta::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(RollupDelta::AppId).integer().not_null())
                .col(ColumnDef::new(RollupDelta::Family).string_len(20).not_null())
                .col(ColumnDef::new(RollupDelta::Bucket).string_len(120).not_null())
                .col(ColumnDef::new(RollupDelta::N).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_rollup_delta_app_family")
                .table(RollupDelta::Table)
                .col(RollupDelta::AppId)
                .col(RollupDelta::Family)
                .to_owned(),
        )
        .await?;
        let backend = m.get_database_backend();
        let db = m.get_connection();
        // What exists now, counted once (the triggers count every write after this).
        let hour = inbox_hour(backend, "w");
        for sql in [
            format!(
                "INSERT INTO rollup (app_id, family, bucket, n) SELECT w.app_id, 'inbox', {hour}, COUNT(*) \
                 FROM webhook_event w GROUP BY w.app_id, {hour}"
            ),
            "INSERT INTO rollup (app_id, family, bucket, n) SELECT w.app_id, 'inbox_status', w.status, COUNT(*) \
             FROM webhook_event w GROUP BY w.app_id, w.status"
                .into(),
            format!(
                "INSERT INTO rollup (app_id, family, bucket, n) SELECT e.app_id, 'holders', {b}, COUNT(*) \
                 FROM entitlement e WHERE {c} GROUP BY e.app_id, {b}",
                b = holder_bucket("e"),
                c = holder_counts("e")
            ),
        ] {
            db.execute_unprepared(&sql).await?;
        }
        let triggers = match backend {
            sea_orm::DbBackend::Postgres => postgres_triggers(),
            _ => sqlite_triggers(),
        };
        for sql in triggers {
            db.execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        match m.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                for sql in [
                    "DROP TRIGGER IF EXISTS webhook_event_rollup ON webhook_event",
                    "DROP TRIGGER IF EXISTS entitlement_rollup ON entitlement",
                    "DROP FUNCTION IF EXISTS webhook_event_rollup()",
                    "DROP FUNCTION IF EXISTS entitlement_rollup()",
                ] {
                    db.execute_unprepared(sql).await?;
                }
            }
            _ => {
                for t in SQLITE_TRIGGERS {
                    db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {t}")).await?;
                }
            }
        }
        m.drop_table(Table::drop().table(RollupDelta::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(Rollup::Table).to_owned()).await
    }
}

//! The console's first screen: what arrived lately and what it did. Read from counters the
//! database keeps as it writes (migration 17's triggers), so it costs the same at any size.
use chrono::{DateTime, TimeDelta, Utc};
use entity::status::InboxStatus;
use sea_orm::{ActiveEnum, ConnectionTrait, DbBackend, Statement};

use crate::AppResult;
use crate::domain::TargetKind;

#[derive(Debug, Clone)]
pub struct Bucket {
    /// `YYYY-MM-DDTHH` (UTC) for hours, `YYYY-MM-DD` for days.
    pub at: String,
    pub kind: String,
    pub count: i64,
}

#[derive(Debug, Clone)]
pub struct Overview {
    /// Webhook events of the last 24 hours, by hour received and status.
    pub events_per_hour: Vec<Bucket>,
    /// Access granted, revoked and expired per hour (UTC) over the last 15 days: enough for a
    /// reader to draw 14 days in its own time zone.
    pub changes_per_hour: Vec<Bucket>,
    /// The same per day (UTC), for callers that do not draw.
    pub changes_per_day: Vec<Bucket>,
    pub backlog: i64,
    pub failed: i64,
    pub unmapped: i64,
    /// Every package and plan with its live holders.
    pub holders: Vec<Holders>,
}

/// A family's counts by bucket: folded rows plus deltas not folded yet, from `since` on.
async fn rollup(db: &impl ConnectionTrait, app_id: i32, family: &str, since: &str) -> AppResult<Vec<(String, i64)>> {
    let backend = db.get_database_backend();
    let p = |i: usize| match backend {
        DbBackend::Postgres => format!("${i}"),
        _ => "?".to_string(),
    };
    let sql = format!(
        "SELECT bucket, CAST(SUM(n) AS BIGINT) AS n FROM (\
         SELECT bucket, n FROM rollup WHERE app_id = {} AND family = {} AND bucket >= {} \
         UNION ALL SELECT bucket, n FROM rollup_delta WHERE app_id = {} AND family = {} AND bucket >= {}\
         ) t GROUP BY bucket HAVING SUM(n) <> 0 ORDER BY bucket",
        p(1),
        p(2),
        p(3),
        p(4),
        p(5),
        p(6)
    );
    let values: Vec<sea_orm::Value> = vec![
        app_id.into(),
        family.into(),
        since.into(),
        app_id.into(),
        family.into(),
        since.into(),
    ];
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push((r.try_get::<String>("", "bucket")?, r.try_get::<i64>("", "n")?));
    }
    Ok(out)
}

/// Live holders of one package or plan (ACTIVE or SUSPENDED, their end not yet passed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holders {
    pub kind: TargetKind,
    pub id: i32,
    pub name: String,
    pub active: i64,
    pub suspended: i64,
}

pub async fn of(db: &impl ConnectionTrait, app_id: i32, now: DateTime<Utc>) -> AppResult<Overview> {
    let since = (now - TimeDelta::hours(23)).format("%Y-%m-%dT%H").to_string();
    let events_per_hour = rollup(db, app_id, "inbox", &since)
        .await?
        .into_iter()
        .filter_map(|(bucket, count)| {
            let (at, kind) = bucket.split_once('|')?;
            Some(Bucket {
                at: at.to_string(),
                kind: kind.to_string(),
                count,
            })
        })
        .collect();
    let statuses: std::collections::HashMap<String, i64> =
        rollup(db, app_id, "inbox_status", "").await?.into_iter().collect();
    let status = |s: InboxStatus| statuses.get(s.to_value().as_str()).copied().unwrap_or(0);
    let since = (now - TimeDelta::days(15)).format("%Y-%m-%dT%H").to_string();
    let changes_per_hour: Vec<Bucket> = rollup(db, app_id, "changes", &since)
        .await?
        .into_iter()
        .filter_map(|(bucket, count)| {
            let (at, kind) = bucket.split_once('|')?;
            ["access.granted", "access.revoked", "access.expired"]
                .contains(&kind)
                .then(|| Bucket {
                    at: at.to_string(),
                    kind: kind.to_string(),
                    count,
                })
        })
        .collect();
    let day = (now - TimeDelta::days(14)).format("%Y-%m-%d").to_string();
    let mut by_day: std::collections::BTreeMap<(String, String), i64> = Default::default();
    for b in &changes_per_hour {
        if let Some(d) = b.at.get(..10).filter(|d| *d >= day.as_str()) {
            *by_day.entry((d.to_string(), b.kind.clone())).or_default() += b.count;
        }
    }
    Ok(Overview {
        events_per_hour,
        changes_per_day: by_day
            .into_iter()
            .map(|((at, kind), count)| Bucket { at, kind, count })
            .collect(),
        changes_per_hour,
        backlog: status(InboxStatus::Pending),
        failed: status(InboxStatus::Failed),
        unmapped: status(InboxStatus::Unmapped),
        holders: holders(db, app_id).await?,
    })
}

/// Every package and plan of the app with its live holders (none: zero), by name.
pub async fn holders(db: &impl ConnectionTrait, app_id: i32) -> AppResult<Vec<Holders>> {
    let mut by_target: std::collections::HashMap<(TargetKind, i32), Holders> = Default::default();
    for t in super::catalog::all_targets(db, app_id).await? {
        by_target.insert(
            (t.0, t.1),
            Holders {
                kind: t.0,
                id: t.1,
                name: t.2,
                active: 0,
                suspended: 0,
            },
        );
    }
    for (bucket, n) in rollup(db, app_id, "holders", "").await? {
        // `plan:3|ACTIVE`
        let Some((target, status)) = bucket.split_once('|') else {
            continue;
        };
        let Some((kind, id)) = target.split_once(':') else {
            continue;
        };
        let (Some(kind), Ok(id)) = (TargetKind::parse(kind), id.parse::<i32>()) else {
            continue;
        };
        // A deleted target's rows are revoked with it; anything left is not shown.
        if let Some(h) = by_target.get_mut(&(kind, id)) {
            match status {
                "ACTIVE" => h.active += n,
                _ => h.suspended += n,
            }
        }
    }
    let mut out: Vec<Holders> = by_target.into_values().collect();
    out.sort_by(|a, b| b.active.cmp(&a.active).then_with(|| a.name.cmp(&b.name)));
    Ok(out)
}

/// Folds the triggers' deltas into the counters (a job, every few seconds): readers then add
/// fewer rows. One statement on PostgreSQL, so a delta committed meanwhile is either moved
/// whole or left for the next round; under SQLite's write lock nothing commits meanwhile.
pub async fn fold(db: &sea_orm::DatabaseConnection) -> AppResult<u64> {
    const BATCH: i64 = 50_000;
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let r = db
                .execute_unprepared(&format!(
                    "WITH moved AS (DELETE FROM rollup_delta WHERE id IN \
                       (SELECT id FROM rollup_delta ORDER BY id LIMIT {BATCH}) RETURNING app_id, family, bucket, n) \
                     INSERT INTO rollup (app_id, family, bucket, n) \
                     SELECT app_id, family, bucket, SUM(n) FROM moved GROUP BY app_id, family, bucket \
                     ORDER BY app_id, family, bucket \
                     ON CONFLICT (app_id, family, bucket) DO UPDATE SET n = rollup.n + excluded.n"
                ))
                .await?;
            // A queue table: what a big fold deleted is swept now rather than read past by the
            // next overviews until autovacuum comes (outside a transaction, as VACUUM must be).
            if r.rows_affected() > 0 {
                let left = db
                    .query_one_raw(Statement::from_string(
                        DbBackend::Postgres,
                        "SELECT COUNT(*) AS n FROM rollup_delta",
                    ))
                    .await?
                    .map(|r| r.try_get::<i64>("", "n"))
                    .transpose()?
                    .unwrap_or(0);
                // Autovacuum still comes if this may not run (a role without the right).
                if left < BATCH
                    && let Err(e) = db.execute_unprepared("VACUUM rollup_delta").await
                {
                    tracing::debug!(error = %e, "VACUUM rollup_delta");
                }
            }
            Ok(r.rows_affected())
        }
        _ => {
            let last: Option<i64> = db
                .query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    format!("SELECT id FROM rollup_delta ORDER BY id LIMIT 1 OFFSET {}", BATCH - 1),
                ))
                .await?
                .map(|r| r.try_get("", "id"))
                .transpose()?;
            let any: Option<i64> = db
                .query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT MAX(id) AS id FROM rollup_delta",
                ))
                .await?
                .and_then(|r| r.try_get("", "id").ok());
            let Some(upto) = last.or(any) else {
                return Ok(0);
            };
            let txn = crate::db::write_txn(db).await?;
            let r = txn
                .execute_unprepared(&format!(
                    "INSERT INTO rollup (app_id, family, bucket, n) \
                     SELECT app_id, family, bucket, SUM(n) FROM rollup_delta WHERE id <= {upto} \
                     GROUP BY app_id, family, bucket \
                     ON CONFLICT (app_id, family, bucket) DO UPDATE SET n = rollup.n + excluded.n"
                ))
                .await?;
            txn.execute_unprepared(&format!("DELETE FROM rollup_delta WHERE id <= {upto}"))
                .await?;
            #[allow(clippy::disallowed_methods)] // moves counts from one table to another; nothing to audit
            txn.commit().await?;
            Ok(r.rows_affected())
        }
    }
}

/// Counts the inbox backlog into `/metrics` (waiting a second at most; see
/// [`crate::pipeline::inbox::measure_backlog`]).
pub async fn measure_backlog(state: &crate::AppState) {
    crate::pipeline::inbox::measure_backlog(&state.ingest, &state.db).await;
}

//! The console's first screen: what arrived lately and what it did, counted in the database.
use chrono::{DateTime, TimeDelta, Utc};
use entity::status::InboxStatus;
use sea_orm::{ConnectionTrait, DbBackend};

use crate::AppResult;

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
    /// Access granted, revoked and expired per day (UTC) over the last 14 days and today.
    pub changes_per_day: Vec<Bucket>,
    pub backlog: i64,
    pub failed: i64,
    pub unmapped: i64,
}

/// `YYYY-MM-DDTHH` of a timestamp column, the same on both databases (SQLite keeps
/// `YYYY-MM-DD HH:MM:SS…`, always UTC here).
fn hour_of(backend: DbBackend, column: &str) -> String {
    match backend {
        DbBackend::Postgres => format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24')"),
        _ => format!("replace(substr({column}, 1, 13), ' ', 'T')"),
    }
}

async fn buckets(db: &impl ConnectionTrait, sql: &str, app_id: i32, since: sea_orm::Value) -> AppResult<Vec<Bucket>> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(crate::db::statement(backend, sql, vec![app_id.into(), since]))
        .await?;
    let mut out = Vec::new();
    for r in rows {
        out.push(Bucket {
            at: r.try_get("", "at")?,
            kind: r.try_get("", "kind")?,
            count: r.try_get("", "n")?,
        });
    }
    out.sort_by(|a, b| (&a.at, &a.kind).cmp(&(&b.at, &b.kind)));
    Ok(out)
}

async fn count(db: &impl ConnectionTrait, app_id: i32, status: InboxStatus) -> AppResult<i64> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(crate::db::statement(
            backend,
            "SELECT COUNT(*) AS n FROM webhook_event WHERE app_id = ? AND status = ?",
            vec![app_id.into(), status.as_str().into()],
        ))
        .await?;
    Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0))
}

pub async fn of(db: &impl ConnectionTrait, app_id: i32, now: DateTime<Utc>) -> AppResult<Overview> {
    let backend = db.get_database_backend();
    let hour = hour_of(backend, "received_at");
    let events = format!(
        "SELECT {hour} AS at, status AS kind, COUNT(*) AS n FROM webhook_event \
         WHERE app_id = ? AND received_at >= ? GROUP BY {hour}, status"
    );
    let changes = "SELECT day AS at, kind, n FROM access_change_tally \
         WHERE app_id = ? AND day >= ? AND kind IN ('access.granted', 'access.revoked', 'access.expired')";
    let first_day = (now - TimeDelta::days(14)).format("%Y-%m-%d").to_string();
    Ok(Overview {
        events_per_hour: buckets(db, &events, app_id, (now - TimeDelta::hours(24)).into()).await?,
        changes_per_day: buckets(db, changes, app_id, first_day.into()).await?,
        backlog: count(db, app_id, InboxStatus::Pending).await?,
        failed: count(db, app_id, InboxStatus::Failed).await?,
        unmapped: count(db, app_id, InboxStatus::Unmapped).await?,
    })
}

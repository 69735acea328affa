//! The console's first screen: what arrived lately and what it did, counted in the database.
use chrono::{DateTime, TimeDelta, Utc};
use entity::status::InboxStatus;
use entity::webhook_event as we;
use sea_orm::sea_query::{Alias, Asterisk, Expr, ExprTrait, Query, SelectStatement};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter};

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

async fn buckets(db: &impl ConnectionTrait, query: SelectStatement) -> AppResult<Vec<Bucket>> {
    let rows = db.query_all_raw(db.get_database_backend().build(&query)).await?;
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
    let n = we::Entity::find()
        .filter(we::Column::AppId.eq(app_id))
        .filter(we::Column::Status.eq(status))
        .count(db)
        .await?;
    Ok(i64::try_from(n).unwrap_or(i64::MAX))
}

pub async fn of(db: &impl ConnectionTrait, app_id: i32, now: DateTime<Utc>) -> AppResult<Overview> {
    let backend = db.get_database_backend();
    let hour = Expr::cust(hour_of(backend, "received_at"));
    let events = Query::select()
        .expr_as(hour.clone(), Alias::new("at"))
        .expr_as(Expr::col(we::Column::Status), Alias::new("kind"))
        .expr_as(Expr::col(Asterisk).count(), Alias::new("n"))
        .from(we::Entity)
        .and_where(Expr::col(we::Column::AppId).eq(app_id))
        .and_where(Expr::col(we::Column::ReceivedAt).gte(now - TimeDelta::hours(24)))
        .add_group_by([hour, Expr::col(we::Column::Status)])
        .to_owned();
    let tally = Alias::new("access_change_tally");
    let changes = Query::select()
        .expr_as(Expr::col(Alias::new("day")), Alias::new("at"))
        .column(Alias::new("kind"))
        .column(Alias::new("n"))
        .from(tally)
        .and_where(Expr::col(Alias::new("app_id")).eq(app_id))
        .and_where(Expr::col(Alias::new("day")).gte((now - TimeDelta::days(14)).format("%Y-%m-%d").to_string()))
        .and_where(Expr::col(Alias::new("kind")).is_in(["access.granted", "access.revoked", "access.expired"]))
        .to_owned();
    Ok(Overview {
        events_per_hour: buckets(db, events).await?,
        changes_per_day: buckets(db, changes).await?,
        backlog: count(db, app_id, InboxStatus::Pending).await?,
        failed: count(db, app_id, InboxStatus::Failed).await?,
        unmapped: count(db, app_id, InboxStatus::Unmapped).await?,
    })
}

/// Counts the inbox backlog into `/metrics` (waiting a second at most; see
/// [`crate::pipeline::inbox::measure_backlog`]).
pub async fn measure_backlog(state: &crate::AppState) {
    crate::pipeline::inbox::measure_backlog(&state.ingest, &state.db).await;
}

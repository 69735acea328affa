//! The app's changes feed: every announcement of an access change (the notifications' own
//! rows: same ids, payloads and versions) in the order the feed sequenced them, so an app that
//! was down or lost a notification catches up exactly. Rows keep their place for the
//! notifications' retention (`PORTEIRO_NOTIFY_RETENTION_DAYS`).
use entity::notification;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::Value;

use super::api_keys::{AppKey, CHANGES_READ};
use crate::pipeline::outbox;
use crate::{AppError, AppResult, AppState};

/// The most changes one page may hold.
pub const PAGE_MAX: u64 = 1000;
pub const PAGE_DEFAULT: u64 = 100;

/// One announcement as the feed lists it (and as its notification's body carries it).
#[derive(Debug, Clone)]
pub struct Change {
    pub cursor: String,
    /// The notification's `webhook-id`: deduplicate on it.
    pub id: String,
    pub event_type: String,
    pub timestamp: String,
    pub data: Value,
}

pub struct ChangesPage {
    pub changes: Vec<Change>,
    /// Where the next page starts: the last change's cursor, or `after` when there was none.
    pub next_cursor: String,
    pub has_more: bool,
}

/// A cursor from this feed: the digits of a sequence number (`0`: from the start).
fn parse_cursor(raw: &str) -> AppResult<i64> {
    let bad = || {
        AppError::InvalidFields(vec![(
            "after".into(),
            format!("{raw:?} is not a cursor of this feed (give one it returned, or 0)"),
        )])
    };
    if raw.is_empty() || raw.len() > 18 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    raw.parse().map_err(|_| bad())
}

/// The changes after `after` (from the start without it), `limit` of them at most.
pub async fn page(state: &AppState, key: &AppKey, after: Option<&str>, limit: Option<u64>) -> AppResult<ChangesPage> {
    key.require(CHANGES_READ)?;
    let after = after.map(parse_cursor).transpose()?.unwrap_or(0);
    let limit = limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(AppError::InvalidFields(vec![(
            "limit".into(),
            format!("give a limit from 1 to {PAGE_MAX}"),
        )]));
    }
    let mut rows = notification::Entity::find()
        .filter(notification::Column::AppId.eq(key.app_id))
        .filter(notification::Column::Seq.gt(after))
        .order_by_asc(notification::Column::Seq)
        .limit(limit + 1)
        .all(&state.db)
        .await?;
    let has_more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let changes = rows
        .iter()
        .map(|n| {
            let mut v: Value = serde_json::from_str(&outbox::body(n)).map_err(AppError::internal)?;
            let field = |v: &mut Value, k: &str| v.get_mut(k).map_or(Value::Null, Value::take);
            Ok(Change {
                cursor: n.seq.unwrap_or_default().to_string(),
                id: n.msg_id.clone(),
                event_type: n.event_type.clone(),
                timestamp: field(&mut v, "timestamp").as_str().unwrap_or_default().to_string(),
                data: field(&mut v, "data"),
            })
        })
        .collect::<AppResult<Vec<_>>>()?;
    let next_cursor = changes.last().map_or(after.to_string(), |c| c.cursor.clone());
    Ok(ChangesPage {
        changes,
        next_cursor,
        has_more,
    })
}

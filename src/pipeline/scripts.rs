//! The script that decides an event type for an app: its active version, or the shipped
//! default (version 0).
use entity::rule_script as rs;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::caches::HotCache;
use crate::AppResult;
use crate::rules::{self, ActiveScript};

/// [`active`] through the process's cache (the worker's path).
pub async fn active_cached(
    hot: &HotCache,
    db: &impl ConnectionTrait,
    app_id: i32,
    event_type: &str,
) -> AppResult<Option<ActiveScript>> {
    let key = (app_id, hot.rules_generation(app_id), event_type.to_string());
    if let Some(s) = hot.scripts.get(&key) {
        return Ok(s);
    }
    let s = active(db, app_id, event_type).await?;
    hot.scripts.insert(key, s.clone());
    Ok(s)
}

pub async fn active(db: &impl ConnectionTrait, app_id: i32, event_type: &str) -> AppResult<Option<ActiveScript>> {
    let row = rs::Entity::find()
        .filter(rs::Column::AppId.eq(app_id))
        .filter(rs::Column::EventType.eq(event_type))
        .filter(rs::Column::Active.eq(true))
        .one(db)
        .await?;
    Ok(match row {
        Some(r) => Some(ActiveScript {
            version: r.version,
            source: r.source,
        }),
        None => rules::default_script(event_type).map(|s| ActiveScript {
            version: 0,
            source: s.to_string(),
        }),
    })
}

/// The version an admin put in shadow for an event type, if any: decided beside the active
/// one on live events, never applied. Through the process's cache, like [`active_cached`].
pub async fn shadow_cached(
    hot: &HotCache,
    db: &impl ConnectionTrait,
    app_id: i32,
    event_type: &str,
) -> AppResult<Option<ActiveScript>> {
    // The same cache as the active scripts, under a key of its own.
    let key = (app_id, hot.rules_generation(app_id), format!("shadow:{event_type}"));
    if let Some(s) = hot.scripts.get(&key) {
        return Ok(s);
    }
    let s = shadow(db, app_id, event_type).await?;
    hot.scripts.insert(key, s.clone());
    Ok(s)
}

pub async fn shadow(db: &impl ConnectionTrait, app_id: i32, event_type: &str) -> AppResult<Option<ActiveScript>> {
    Ok(rs::Entity::find()
        .filter(rs::Column::AppId.eq(app_id))
        .filter(rs::Column::EventType.eq(event_type))
        .filter(rs::Column::Shadow.eq(true))
        .one(db)
        .await?
        .map(|r| ActiveScript {
            version: r.version,
            source: r.source,
        }))
}

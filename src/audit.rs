//! The append-only audit log: every admin change and every access change writes one row, inside
//! the same transaction as the change itself.
use entity::audit_log;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use serde_json::Value;

use crate::AppResult;
use crate::db::{Page, Paged};

pub struct Entry<'a> {
    pub app_id: i32,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub reason: &'a str,
}

pub async fn record(db: &impl ConnectionTrait, e: Entry<'_>) -> AppResult<()> {
    model(e).insert(db).await?;
    Ok(())
}

/// The row an entry becomes (for writers that insert many at once).
pub fn model(e: Entry<'_>) -> audit_log::ActiveModel {
    audit_log::ActiveModel {
        app_id: Set(e.app_id),
        actor: Set(e.actor.to_string()),
        action: Set(e.action.to_string()),
        target: Set(e.target),
        before: Set(e.before.map(|v| v.to_string())),
        after: Set(e.after.map(|v| v.to_string())),
        reason: Set(e.reason.to_string()),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
}

/// Newest first.
pub async fn list(
    db: &impl ConnectionTrait,
    app_id: i32,
    target: Option<&str>,
    page: Page,
) -> AppResult<Paged<audit_log::Model>> {
    let mut q = audit_log::Entity::find().filter(audit_log::Column::AppId.eq(app_id));
    if let Some(t) = target {
        q = q.filter(audit_log::Column::Target.eq(t));
    }
    if let Some(after) = page.after {
        q = q.filter(audit_log::Column::Id.lt(after));
    }
    let rows = q
        .order_by_desc(audit_log::Column::Id)
        .limit(page.first + 1)
        .all(db)
        .await?;
    Ok(Paged::from_probe(rows, page.first))
}

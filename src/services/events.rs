//! The event log as an admin sees it: filtered pages of stored deliveries, one event, and sending
//! events back to the queue (a replay), each with its audit row.
use entity::webhook_event as we;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::json;

use super::{AdminWrite, Change, Then};
use super::{Page, Paged};
use crate::auth::Principal;
use crate::hotmart::Format;
use crate::pipeline::inbox;
use crate::pipeline::worker::{self, Evaluation};
use crate::{AppError, AppResult, AppState};
use entity::status::InboxStatus;

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub status: Option<String>,
    pub event_type: Option<String>,
    pub email: Option<String>,
    /// Received at or after.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Received before.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

/// Newest first.
pub async fn list(db: &impl ConnectionTrait, app_id: i32, f: EventFilter, page: Page) -> AppResult<Paged<we::Model>> {
    let mut q = we::Entity::find().filter(we::Column::AppId.eq(app_id));
    if let Some(s) = f.status {
        q = q.filter(we::Column::Status.eq(s.to_lowercase()));
    }
    if let Some(t) = f.event_type {
        q = q.filter(we::Column::EventType.eq(t.to_uppercase()));
    }
    if let Some(e) = f.email {
        q = q.filter(we::Column::Email.eq(e.trim().to_lowercase()));
    }
    if let Some(t) = f.since {
        q = q.filter(we::Column::ReceivedAt.gte(t));
    }
    if let Some(t) = f.until {
        q = q.filter(we::Column::ReceivedAt.lt(t));
    }
    if let Some(after) = page.after {
        q = q.filter(we::Column::Id.lt(after));
    }
    let rows = q.order_by_desc(we::Column::Id).limit(page.first + 1).all(db).await?;
    Ok(Paged::from_probe(rows, page.first))
}

pub async fn get(db: &impl ConnectionTrait, app_id: i32, id: i32) -> AppResult<we::Model> {
    we::Entity::find_by_id(id)
        .filter(we::Column::AppId.eq(app_id))
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found(format!("webhook event {id} not found")))
}

/// Puts an event back in the queue, e.g. after fixing a script or linking its product.
pub async fn replay(state: &AppState, who: &Principal, id: i32) -> AppResult<we::Model> {
    who.require_admin()?;
    let txn = AdminWrite::begin(state, who).await?;
    let row = get(&txn, who.app_id, id).await?;
    if row.status == InboxStatus::Pending {
        return Err(AppError::Conflict(format!(
            "webhook event {id} is already waiting to be processed"
        )));
    }
    if row.raw_body.is_empty() {
        return Err(AppError::Conflict(format!(
            "webhook event {id}'s body was emptied by the retention (PORTEIRO_EVENT_BODY_RETENTION_DAYS): \
             it cannot be read again; its facts stand"
        )));
    }
    let before = json!({"status": row.status, "error": row.error});
    let row = inbox::requeue(&txn, row).await?;

    txn.commit(
        Change::new("webhook.replay", format!("webhook_event:{id}"))
            .before(before)
            .after(json!({"status": InboxStatus::Pending})),
        [Then::WakeWorker],
    )
    .await?;
    Ok(row)
}

/// Statuses an admin may send back to the queue in bulk.
pub const REPLAYABLE: &[InboxStatus] = &[InboxStatus::Failed, InboxStatus::Unmapped, InboxStatus::Ignored];

/// Queues every event of the app in `status` (optionally of one type) again, e.g. all `unmapped`
/// events after linking a product, or all `failed` ones after fixing a rule. Returns how many.
pub async fn replay_all(state: &AppState, who: &Principal, status: &str, event_type: Option<&str>) -> AppResult<u64> {
    who.require_admin()?;
    let status = InboxStatus::parse(&status.trim().to_lowercase())
        .ok()
        .filter(|s| REPLAYABLE.contains(s))
        .ok_or_else(|| {
            let names: Vec<&str> = REPLAYABLE.iter().map(|s| s.as_str()).collect();
            AppError::InvalidFields(vec![(
                "status".into(),
                format!("only {} events can be replayed in bulk", names.join(", ")),
            )])
        })?;
    let txn = AdminWrite::begin(state, who).await?;
    let mut q = we::Entity::update_many()
        .col_expr(
            we::Column::Status,
            sea_orm::sea_query::Expr::value(InboxStatus::Pending),
        )
        .col_expr(
            we::Column::Error,
            sea_orm::sea_query::Expr::value(Option::<String>::None),
        )
        .filter(we::Column::AppId.eq(who.app_id))
        .filter(we::Column::Status.eq(status))
        .filter(super::personal_data::has_body());
    if let Some(t) = event_type {
        q = q.filter(we::Column::EventType.eq(t.trim().to_uppercase()));
    }
    let n = q.exec(&txn).await?.rows_affected;

    txn.commit(
        Change::new("webhook.replay_all", format!("webhook_events:{status}"))
            .after(json!({"queued": n, "eventType": event_type})),
        [Then::WakeWorker],
    )
    .await?;
    Ok(n)
}

/// What processing a Hotmart payload (v2 JSON) would conclude now: parsed, linked and decided
/// by the current rules. Nothing is stored or changed.
pub async fn simulate(state: &AppState, who: &Principal, payload: &str) -> AppResult<Evaluation> {
    worker::evaluate(
        state,
        &state.db,
        who.app_id,
        Format::V2,
        payload.as_bytes(),
        chrono::Utc::now(),
    )
    .await
}

/// The stored body of an event as an admin may see it (the Hottok masked).
pub fn payload(row: &we::Model) -> String {
    crate::hotmart::redacted_body(row.format, &row.raw_body)
}

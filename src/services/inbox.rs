//! The webhook inbox: raw deliveries stored verbatim, keyed by the provider's event id.
use chrono::{DateTime, Utc};
use entity::webhook_event as we;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TryInsertResult,
};
use serde_json::json;

use super::audit::{self, Entry};
use super::{Page, Paged};
use crate::auth::Principal;
use crate::{AppError, AppResult, AppState};

pub const PENDING: &str = "pending";
pub const ORIGIN_WEBHOOK: &str = "webhook";
pub const ORIGIN_RECONCILE: &str = "reconcile";

#[derive(Debug, Clone)]
pub struct RecordInput {
    pub app_id: i32,
    pub origin: &'static str,
    pub event_id: String,
    pub event_type: String,
    pub format: &'static str,
    pub raw: Vec<u8>,
    pub headers: serde_json::Value,
    pub occurred_at: Option<DateTime<Utc>>,
    pub is_test: bool,
    /// Stored as `failed` with this reason instead of queued (a delivery we cannot read).
    pub unreadable: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New(i32),
    Duplicate,
}

/// Stores a delivery and notes when the app last heard from Hotmart, in one commit. A known
/// event id changes nothing, however many copies race in.
pub async fn record(state: &AppState, input: RecordInput) -> AppResult<Recorded> {
    // Redeliveries are common (retry storms): answer them from a read, without queueing for the
    // write lock. A copy racing past this check still meets the unique index below.
    if !known_ids(&state.db, input.app_id, std::slice::from_ref(&input.event_id))
        .await?
        .is_empty()
    {
        return Ok(Recorded::Duplicate);
    }
    let txn = crate::db::write_txn(&state.db).await?;
    let (app_id, is_test, from_webhook) = (input.app_id, input.is_test, input.origin == ORIGIN_WEBHOOK);
    let out = insert(&txn, input).await?;
    if from_webhook {
        super::integration::touch_received(&txn, app_id, is_test).await?;
    }
    txn.commit().await?;
    Ok(out)
}

/// Inserts unless the event id is known; the caller owns the transaction.
pub async fn insert(db: &impl ConnectionTrait, input: RecordInput) -> AppResult<Recorded> {
    let am = we::ActiveModel {
        app_id: Set(input.app_id),
        provider: Set("hotmart".into()),
        origin: Set(input.origin.into()),
        event_id: Set(input.event_id),
        event_type: Set(input.event_type),
        format: Set(input.format.into()),
        raw_body: Set(input.raw),
        headers: Set(input.headers.to_string()),
        received_at: Set(super::now()),
        occurred_at: Set(input.occurred_at),
        status: Set(if input.unreadable.is_some() { "failed" } else { PENDING }.into()),
        error: Set(input.unreadable),
        is_test: Set(input.is_test),
        attempts: Set(0),
        ..Default::default()
    };
    let res = we::Entity::insert(am)
        .on_conflict_do_nothing_on([we::Column::AppId, we::Column::Provider, we::Column::EventId])
        .exec(db)
        .await?;
    Ok(match res {
        TryInsertResult::Inserted(r) => Recorded::New(r.last_insert_id),
        TryInsertResult::Conflicted | TryInsertResult::Empty => Recorded::Duplicate,
    })
}

/// Which of these event ids the app already has.
pub async fn known_ids(
    db: &impl ConnectionTrait,
    app_id: i32,
    ids: &[String],
) -> AppResult<std::collections::HashSet<String>> {
    let mut out = std::collections::HashSet::new();
    for chunk in ids.chunks(500) {
        let rows = we::Entity::find()
            .select_only()
            .column(we::Column::EventId)
            .filter(we::Column::AppId.eq(app_id))
            .filter(we::Column::EventId.is_in(chunk.to_vec()))
            .into_tuple::<String>()
            .all(db)
            .await?;
        out.extend(rows);
    }
    Ok(out)
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub status: Option<String>,
    pub event_type: Option<String>,
    pub email: Option<String>,
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
    let txn = crate::db::write_txn(&state.db).await?;
    let row = get(&txn, who.app_id, id).await?;
    if row.status == PENDING {
        return Err(AppError::Conflict(format!(
            "webhook event {id} is already waiting to be processed"
        )));
    }
    let before = json!({"status": row.status, "error": row.error});
    let mut am: we::ActiveModel = row.into();
    am.status = Set(PENDING.into());
    am.error = Set(None);
    let row = am.update(&txn).await?;
    audit::record(
        &txn,
        Entry {
            app_id: who.app_id,
            actor: &who.actor(),
            action: "webhook.replay",
            target: format!("webhook_event:{id}"),
            before: Some(before),
            after: Some(json!({"status": PENDING})),
            reason: "",
        },
    )
    .await?;
    txn.commit().await?;
    state.wake_worker();
    Ok(row)
}

/// Statuses an admin may send back to the queue in bulk.
pub const REPLAYABLE: &[&str] = &["failed", "unmapped", "ignored"];

/// Queues every event of the app in `status` (optionally of one type) again, e.g. all `unmapped`
/// events after linking a product, or all `failed` ones after fixing a rule. Returns how many.
pub async fn replay_all(state: &AppState, who: &Principal, status: &str, event_type: Option<&str>) -> AppResult<u64> {
    who.require_admin()?;
    let status = status.trim().to_lowercase();
    if !REPLAYABLE.contains(&status.as_str()) {
        return Err(AppError::InvalidFields(vec![(
            "status".into(),
            format!("only {} events can be replayed in bulk", REPLAYABLE.join(", ")),
        )]));
    }
    let txn = crate::db::write_txn(&state.db).await?;
    let mut q = we::Entity::update_many()
        .col_expr(we::Column::Status, sea_orm::sea_query::Expr::value(PENDING))
        .col_expr(
            we::Column::Error,
            sea_orm::sea_query::Expr::value(Option::<String>::None),
        )
        .filter(we::Column::AppId.eq(who.app_id))
        .filter(we::Column::Status.eq(status.clone()));
    if let Some(t) = event_type {
        q = q.filter(we::Column::EventType.eq(t.trim().to_uppercase()));
    }
    let n = q.exec(&txn).await?.rows_affected;
    audit::record(
        &txn,
        Entry {
            app_id: who.app_id,
            actor: &who.actor(),
            action: "webhook.replay_all",
            target: format!("webhook_events:{status}"),
            before: None,
            after: Some(json!({"queued": n, "eventType": event_type})),
            reason: "",
        },
    )
    .await?;
    txn.commit().await?;
    state.wake_worker();
    Ok(n)
}

pub async fn pending_count(db: &impl ConnectionTrait) -> AppResult<u64> {
    use sea_orm::PaginatorTrait;
    Ok(we::Entity::find()
        .filter(we::Column::Status.eq(PENDING))
        .count(db)
        .await?)
}

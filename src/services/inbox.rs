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
const PROVIDER: &str = "hotmart";
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

/// Stores a delivery (through the group-committing writer) and answers once it is on disk. A
/// known event id changes nothing, however many copies race in.
pub async fn record(state: &AppState, input: RecordInput) -> AppResult<Recorded> {
    // Redeliveries are common (retry storms): answer them from a read, without queueing for the
    // writer. A copy racing past this check still meets the unique index.
    if !known_ids(&state.db, input.app_id, std::slice::from_ref(&input.event_id))
        .await?
        .is_empty()
    {
        return Ok(Recorded::Duplicate);
    }
    state.ingest.submit(input).await
}

/// How many deliveries may wait for the writer; past that, 503 at once rather than memory.
pub const INGEST_QUEUE: usize = 4096;
/// The most deliveries committed together.
const GROUP_MAX: usize = 256;

struct Job {
    input: RecordInput,
    reply: tokio::sync::oneshot::Sender<Result<Recorded, String>>,
}

/// One writer for the inbox: deliveries queue up while a commit is on its way and the next
/// commit takes them all, so one durable commit (one fsync on SQLite) serves many webhooks.
/// Each request is answered only after its group committed; a failed group answers every
/// request in it with an error (503), and nothing of it was acknowledged.
pub struct Ingest {
    tx: tokio::sync::mpsc::Sender<Job>,
}

impl Ingest {
    /// One writer: a group's "is this id known" check cannot race another group's insert, so
    /// exactly one copy of an event is answered as new. (Four writers on PostgreSQL measured
    /// no faster, and did race.)
    pub fn start(db: sea_orm::DatabaseConnection) -> Ingest {
        let (tx, rx) = tokio::sync::mpsc::channel(INGEST_QUEUE);
        tokio::spawn(writer(db, rx));
        Ingest { tx }
    }

    pub async fn submit(&self, input: RecordInput) -> AppResult<Recorded> {
        let unavailable = |why: &str| AppError::Unavailable(sea_orm::DbErr::Custom(why.to_string()));
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx.try_send(Job { input, reply }).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => unavailable("the ingest queue is full"),
            tokio::sync::mpsc::error::TrySendError::Closed(_) => unavailable("the ingest writer stopped"),
        })?;
        match answer.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(why)) => Err(unavailable(&why)),
            Err(_) => Err(unavailable("the ingest writer stopped")),
        }
    }
}

async fn writer(db: sea_orm::DatabaseConnection, mut rx: tokio::sync::mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        // Whatever is waiting, up to GROUP_MAX, goes into one commit.
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        let inputs: Vec<RecordInput> = group.iter().map(|j| j.input.clone()).collect();
        match write_group(&db, inputs).await {
            Ok(outs) => {
                for (j, out) in group.into_iter().zip(outs) {
                    let _ = j.reply.send(Ok(out));
                }
            }
            Err(e) => {
                e.log();
                let why = format!("the group could not be stored ({})", e.code());
                for j in group {
                    let _ = j.reply.send(Err(why.clone()));
                }
            }
        }
    }
}

/// One transaction for a group, in three statements whatever its size (which ids are known,
/// one multi-row insert, the new rows' ids); the integration's "last heard from Hotmart" is
/// written once per app and group, not once per webhook.
async fn write_group(db: &sea_orm::DatabaseConnection, inputs: Vec<RecordInput>) -> AppResult<Vec<Recorded>> {
    use std::collections::{BTreeMap, HashMap, HashSet};
    let txn = crate::db::write_txn(db).await?;
    let mut by_app: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for i in &inputs {
        by_app.entry(i.app_id).or_default().push(i.event_id.clone());
    }
    let mut known: HashSet<(i32, String)> = HashSet::new();
    for (app_id, ids) in &by_app {
        known.extend(known_ids(&txn, *app_id, ids).await?.into_iter().map(|e| (*app_id, e)));
    }
    let mut fresh: Vec<we::ActiveModel> = Vec::new();
    let mut is_fresh = Vec::with_capacity(inputs.len());
    let mut heard: BTreeMap<i32, bool> = BTreeMap::new();
    for input in &inputs {
        // A copy of an event earlier in the same group is a duplicate too.
        let new = known.insert((input.app_id, input.event_id.clone()));
        is_fresh.push(new);
        if new {
            if input.origin == ORIGIN_WEBHOOK {
                *heard.entry(input.app_id).or_default() |= input.is_test;
            }
            fresh.push(active_model(input.clone()));
        }
    }
    let mut ids: HashMap<(i32, String), i32> = HashMap::new();
    if !fresh.is_empty() {
        we::Entity::insert_many(fresh)
            .on_conflict_do_nothing_on([we::Column::AppId, we::Column::Provider, we::Column::EventId])
            .exec(&txn)
            .await?;
        for (app_id, event_ids) in &by_app {
            let rows: Vec<(i32, String)> = we::Entity::find()
                .select_only()
                .column(we::Column::Id)
                .column(we::Column::EventId)
                .filter(we::Column::AppId.eq(*app_id))
                .filter(we::Column::Provider.eq(PROVIDER))
                .filter(we::Column::EventId.is_in(event_ids.clone()))
                .into_tuple()
                .all(&txn)
                .await?;
            ids.extend(rows.into_iter().map(|(id, e)| ((*app_id, e), id)));
        }
    }
    for (app_id, is_test) in heard {
        super::integration::touch_received(&txn, app_id, is_test).await?;
    }
    txn.commit().await?;
    Ok(inputs
        .iter()
        .zip(is_fresh)
        .map(|(i, new)| match ids.get(&(i.app_id, i.event_id.clone())) {
            Some(id) if new => Recorded::New(*id),
            _ => Recorded::Duplicate,
        })
        .collect())
}

fn active_model(input: RecordInput) -> we::ActiveModel {
    we::ActiveModel {
        app_id: Set(input.app_id),
        provider: Set(PROVIDER.into()),
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
    }
}

/// Inserts unless the event id is known; the caller owns the transaction.
pub async fn insert(db: &impl ConnectionTrait, input: RecordInput) -> AppResult<Recorded> {
    let am = active_model(input);
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
            // The unique index is (app, provider, event id): without the provider the lookup
            // scans every event of the app.
            .filter(we::Column::Provider.eq(PROVIDER))
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

//! The app's notification endpoints (URL, filter, signing secret) and what was sent to them.
//! Sending itself is [`crate::pipeline::dispatch`]; what is sent is written by
//! [`crate::pipeline::outbox`].
use base64::Engine;
use entity::{
    notification as note, notification_attempt as attempt, notification_delivery as delivery,
    notification_endpoint as ep,
};
use rand::RngCore;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use serde_json::json;

use super::{AdminWrite, Change, Then};
use super::{Page, Paged};
use crate::auth::Principal;
use crate::pipeline::dispatch::{self, check_url, secret_slot, signing_secrets};
pub use crate::pipeline::outbox::EVENT_TYPES;
use crate::pipeline::outbox::{self, TEST_EVENT};
use crate::secrets::Slot;
use crate::{AppError, AppResult, AppState};
use entity::status::DeliveryStatus;

const MAX_IN_FLIGHT: i32 = 4;
const TIMEOUT_MS: i32 = 10_000;

/// What an admin sets on an endpoint; `None` keeps the current value on update.
#[derive(Debug, Default, Clone)]
pub struct EndpointInput {
    pub url: Option<String>,
    pub description: Option<String>,
    /// Empty: every event type.
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub max_in_flight: Option<i32>,
    pub timeout_ms: Option<i32>,
}

fn new_secret() -> String {
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(b))
}

fn encrypt(state: &AppState, app_id: i32, uid: &str, previous: bool, secret: &str) -> AppResult<String> {
    let (app_id, field) = secret_slot(app_id, uid, previous);
    state
        .secrets
        .encrypt(secret, Slot { app_id, field: &field })
        .map_err(AppError::internal)
}

fn check_types(types: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = types.iter().map(|t| t.trim().to_ascii_lowercase()).collect();
    out.sort();
    out.dedup();
    match out.iter().find(|t| !EVENT_TYPES.contains(&t.as_str())) {
        Some(bad) => Err(format!(
            "unknown event type {bad:?}; types are {}",
            EVENT_TYPES.join(", ")
        )),
        None => Ok(out),
    }
}

/// Validates every field given, reporting all wrong ones at once.
fn validate(state: &AppState, input: &EndpointInput) -> AppResult<EndpointInput> {
    let mut bad = Vec::new();
    let mut out = input.clone();
    if let Some(u) = &input.url {
        match check_url(u, state.settings.notify_allow_private_targets) {
            Ok(url) => out.url = Some(url.to_string()),
            Err(m) => bad.push(("url".to_string(), m)),
        }
    }
    if let Some(d) = &input.description {
        if d.chars().count() > 500 || d.contains('\0') {
            bad.push(("description".into(), "at most 500 characters".into()));
        }
        out.description = Some(d.trim().to_string());
    }
    if let Some(t) = &input.event_types {
        match check_types(t) {
            Ok(t) => out.event_types = Some(t),
            Err(m) => bad.push(("eventTypes".into(), m)),
        }
    }
    if input.max_in_flight.is_some_and(|n| !(1..=32).contains(&n)) {
        bad.push(("maxInFlight".into(), "between 1 and 32 deliveries at once".into()));
    }
    if input.timeout_ms.is_some_and(|n| !(500..=30_000).contains(&n)) {
        bad.push(("timeoutMs".into(), "between 500 and 30000 milliseconds".into()));
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(AppError::InvalidFields(bad))
    }
}

fn public(e: &ep::Model) -> serde_json::Value {
    json!({"uid": e.uid, "url": e.url, "description": e.description, "eventTypes": e.event_types,
           "enabled": e.enabled, "maxInFlight": e.max_in_flight, "timeoutMs": e.timeout_ms})
}

/// Creates an endpoint; returns it with its signing secret, the only time the secret is shown.
pub async fn create_endpoint(
    state: &AppState,
    who: &Principal,
    input: EndpointInput,
) -> AppResult<(ep::Model, String)> {
    who.require_admin()?;
    if input.url.is_none() {
        return Err(AppError::InvalidFields(vec![(
            "url".into(),
            "give the endpoint's URL".into(),
        )]));
    }
    let input = validate(state, &input)?;
    let uid = format!("ep_{}", uuid::Uuid::new_v4().simple());
    let secret = new_secret();
    let now = super::now();
    let txn = AdminWrite::begin(state, who).await?;
    let row = ep::ActiveModel {
        uid: Set(uid.clone()),
        app_id: Set(who.app_id),
        url: Set(input.url.unwrap_or_default()),
        description: Set(input.description.unwrap_or_default()),
        event_types: Set(input.event_types.unwrap_or_default().join(" ")),
        enabled: Set(input.enabled.unwrap_or(true)),
        disabled_reason: Set(None),
        secret: Set(encrypt(state, who.app_id, &uid, false, &secret)?),
        previous_secret: Set(None),
        previous_secret_until: Set(None),
        max_in_flight: Set(input.max_in_flight.unwrap_or(MAX_IN_FLIGHT)),
        timeout_ms: Set(input.timeout_ms.unwrap_or(TIMEOUT_MS)),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    txn.commit(
        change("notification_endpoint.create", &row, None, Some(public(&row))),
        [],
    )
    .await?;
    Ok((row, secret))
}

/// The audit row of a change to an endpoint.
fn change(
    action: &'static str,
    row: &ep::Model,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> Change {
    let mut c = Change::new(action, format!("notification_endpoint:{}", row.id));
    if let Some(b) = before {
        c = c.before(b);
    }
    if let Some(a) = after {
        c = c.after(a);
    }
    c
}

async fn find(db: &impl ConnectionTrait, app_id: i32, id: i32) -> AppResult<ep::Model> {
    ep::Entity::find_by_id(id)
        .filter(ep::Column::AppId.eq(app_id))
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found(format!("notification endpoint {id} not found")))
}

pub async fn get(db: &impl ConnectionTrait, app_id: i32, id: i32) -> AppResult<ep::Model> {
    find(db, app_id, id).await
}

pub async fn update_endpoint(state: &AppState, who: &Principal, id: i32, input: EndpointInput) -> AppResult<ep::Model> {
    who.require_admin()?;
    let input = validate(state, &input)?;
    let txn = AdminWrite::begin(state, who).await?;
    let row = find(&txn, who.app_id, id).await?;
    let before = public(&row);
    let mut am: ep::ActiveModel = row.into();
    if let Some(u) = input.url {
        am.url = Set(u);
    }
    if let Some(d) = input.description {
        am.description = Set(d);
    }
    if let Some(t) = input.event_types {
        am.event_types = Set(t.join(" "));
    }
    if let Some(e) = input.enabled {
        am.enabled = Set(e);
        if e {
            am.disabled_reason = Set(None);
        }
    }
    if let Some(n) = input.max_in_flight {
        am.max_in_flight = Set(n);
    }
    if let Some(n) = input.timeout_ms {
        am.timeout_ms = Set(n);
    }
    am.updated_at = Set(super::now());
    let row = am.update(&txn).await?;
    txn.commit(
        change("notification_endpoint.update", &row, Some(before), Some(public(&row))),
        [Then::WakeDispatcher],
    )
    .await?;
    Ok(row)
}

pub async fn delete_endpoint(state: &AppState, who: &Principal, id: i32) -> AppResult<()> {
    who.require_admin()?;
    let txn = AdminWrite::begin(state, who).await?;
    let row = find(&txn, who.app_id, id).await?;
    // Attempts and deliveries go with it.
    dispatch::delete_deliveries(&txn, delivery::Column::EndpointId.eq(id)).await?;
    ep::Entity::delete_by_id(id).exec(&txn).await?;
    txn.commit(
        change("notification_endpoint.delete", &row, Some(public(&row)), None),
        [],
    )
    .await?;
    Ok(())
}

/// A new signing secret; the old one keeps signing (a second signature) for `overlap_hours`, so
/// receivers can switch without losing a delivery.
pub async fn rotate_secret(
    state: &AppState,
    who: &Principal,
    id: i32,
    overlap_hours: i32,
) -> AppResult<(ep::Model, String)> {
    who.require_admin()?;
    if !(0..=168).contains(&overlap_hours) {
        return Err(AppError::InvalidFields(vec![(
            "overlapHours".into(),
            "between 0 and 168 hours".into(),
        )]));
    }
    let txn = AdminWrite::begin(state, who).await?;
    let row = find(&txn, who.app_id, id).await?;
    let now = super::now();
    let current = signing_secrets(&state.secrets, &row, now)?.remove(0);
    let secret = new_secret();
    let mut am: ep::ActiveModel = row.clone().into();
    am.secret = Set(encrypt(state, row.app_id, &row.uid, false, &secret)?);
    if overlap_hours > 0 {
        am.previous_secret = Set(Some(encrypt(state, row.app_id, &row.uid, true, &current)?));
        am.previous_secret_until = Set(Some(now + chrono::TimeDelta::hours(overlap_hours as i64)));
    } else {
        am.previous_secret = Set(None);
        am.previous_secret_until = Set(None);
    }
    am.updated_at = Set(now);
    let row = am.update(&txn).await?;
    txn.commit(
        change(
            "notification_endpoint.rotate_secret",
            &row,
            None,
            Some(json!({"overlapHours": overlap_hours})),
        ),
        [],
    )
    .await?;
    Ok((row, secret))
}

pub async fn list_endpoints(db: &impl ConnectionTrait, app_id: i32) -> AppResult<Vec<ep::Model>> {
    Ok(ep::Entity::find()
        .filter(ep::Column::AppId.eq(app_id))
        .order_by_asc(ep::Column::Id)
        .all(db)
        .await?)
}

/// A delivery with what it carries.
#[derive(Debug, Clone)]
pub struct DeliveryView {
    pub row: delivery::Model,
    pub notification: note::Model,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub endpoint_id: Option<i32>,
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<String>,
}

/// Deliveries, newest first.
pub async fn deliveries(
    db: &impl ConnectionTrait,
    app_id: i32,
    filter: &DeliveryFilter,
    page: Page,
) -> AppResult<Paged<DeliveryView>> {
    let mut q = delivery::Entity::find().filter(delivery::Column::AppId.eq(app_id));
    if let Some(e) = filter.endpoint_id {
        q = q.filter(delivery::Column::EndpointId.eq(e));
    }
    if let Some(s) = &filter.status {
        q = q.filter(delivery::Column::Status.eq(*s));
    }
    if let Some(t) = &filter.event_type {
        let ids: Vec<i32> = note::Entity::find()
            .select_only()
            .column(note::Column::Id)
            .filter(note::Column::AppId.eq(app_id))
            .filter(note::Column::EventType.eq(t.as_str()))
            .into_tuple()
            .all(db)
            .await?;
        q = q.filter(delivery::Column::NotificationId.is_in(ids));
    }
    if let Some(after) = page.after {
        q = q.filter(delivery::Column::Id.lt(after));
    }
    let rows = q
        .order_by_desc(delivery::Column::Id)
        .limit(page.first + 1)
        .all(db)
        .await?;
    let rows = Paged::from_probe(rows, page.first);
    let ids: Vec<i32> = rows.items.iter().map(|d| d.notification_id).collect();
    let notes: std::collections::HashMap<i32, note::Model> = note::Entity::find()
        .filter(note::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|n| (n.id, n))
        .collect();
    Ok(Paged {
        has_next: rows.has_next,
        items: rows
            .items
            .into_iter()
            .filter_map(|row| {
                let notification = notes.get(&row.notification_id)?.clone();
                Some(DeliveryView { row, notification })
            })
            .collect(),
    })
}

/// The attempts of several deliveries, oldest first.
pub async fn attempts(
    db: &impl ConnectionTrait,
    delivery_ids: &[i32],
) -> AppResult<std::collections::HashMap<i32, Vec<attempt::Model>>> {
    let mut out: std::collections::HashMap<i32, Vec<attempt::Model>> = std::collections::HashMap::new();
    for chunk in delivery_ids.chunks(500) {
        for a in attempt::Entity::find()
            .filter(attempt::Column::DeliveryId.is_in(chunk.to_vec()))
            .order_by_asc(attempt::Column::Id)
            .all(db)
            .await?
        {
            out.entry(a.delivery_id).or_default().push(a);
        }
    }
    Ok(out)
}

/// Sends deliveries again from the start of the retry schedule: one by id, or every delivery
/// of an endpoint in a status (DEAD by default). Returns how many were queued.
pub async fn resend(
    state: &AppState,
    who: &Principal,
    delivery_id: Option<i32>,
    endpoint_id: Option<i32>,
    status: Option<DeliveryStatus>,
) -> AppResult<u64> {
    who.require_admin()?;
    let mut q = delivery::Entity::update_many()
        .col_expr(delivery::Column::Status, DeliveryStatus::Pending.into())
        .col_expr(delivery::Column::Attempts, 0.into())
        .col_expr(delivery::Column::NextAttemptAt, Some(super::now()).into())
        .col_expr(delivery::Column::UpdatedAt, super::now().into())
        .filter(delivery::Column::AppId.eq(who.app_id));
    match (delivery_id, endpoint_id) {
        (Some(id), _) => q = q.filter(delivery::Column::Id.eq(id)),
        (None, Some(e)) => {
            find(&state.db, who.app_id, e).await?;
            q = q
                .filter(delivery::Column::EndpointId.eq(e))
                .filter(delivery::Column::Status.eq(status.unwrap_or(DeliveryStatus::Dead)));
        }
        (None, None) => return Err(AppError::bad("give a delivery or an endpoint")),
    }
    let txn = AdminWrite::begin(state, who).await?;
    let n = q.exec(&txn).await?.rows_affected;
    if delivery_id.is_some() && n == 0 {
        return Err(AppError::not_found("delivery not found"));
    }

    txn.commit(
        Change::new(
            "notification.resend",
            match delivery_id {
                Some(id) => format!("notification_delivery:{id}"),
                None => format!("notification_endpoint:{}", endpoint_id.unwrap_or_default()),
            },
        )
        .after(json!({"queued": n})),
        [Then::WakeDispatcher],
    )
    .await?;
    Ok(n)
}

/// Queues a `porteiro.test` notification for one endpoint (enabled or not) and sends it now;
/// returns the delivery as it stands after that first attempt.
pub async fn send_test(state: &AppState, app_id: i32, endpoint_id: i32) -> AppResult<DeliveryView> {
    let e = find(&state.db, app_id, endpoint_id).await?;
    let now = super::now();
    let payload = json!({
        "type": TEST_EVENT,
        "timestamp": crate::domain::timestamp(now),
        "data": {"message": "A test from Porteiro: if the signature verifies, this endpoint is ready.", "endpoint": e.uid},
    });
    let txn = crate::db::write_txn(&state.db).await?;
    let n = outbox::write_addressed(&txn, app_id, TEST_EVENT, &payload).await?;
    let d = delivery::ActiveModel {
        app_id: Set(app_id),
        notification_id: Set(n.id),
        endpoint_id: Set(e.id),
        status: Set(DeliveryStatus::Pending),
        attempts: Set(0),
        // Leased to this call: the dispatcher leaves it alone while it is sent here.
        next_attempt_at: Set(Some(now + chrono::TimeDelta::minutes(1))),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    #[allow(clippy::disallowed_methods)] // a test send changes nothing an admin configured
    txn.commit().await?;
    let row = dispatch::attempt(&state.notify, &e, &n, d).await?;
    Ok(DeliveryView { row, notification: n })
}

/// Rewrites every endpoint's signing secrets under another master key (`keys rotate-master`),
/// in the caller's transaction.
pub async fn reencrypt_all(
    db: &impl ConnectionTrait,
    from: &crate::secrets::SecretBox,
    to: &crate::secrets::SecretBox,
) -> AppResult<usize> {
    let mut n = 0;
    for row in ep::Entity::find().all(db).await? {
        let mut am: ep::ActiveModel = row.clone().into();
        let (app_id, field) = secret_slot(row.app_id, &row.uid, false);
        let slot = Slot { app_id, field: &field };
        let plain = from.decrypt(&row.secret, slot).map_err(AppError::internal)?;
        am.secret = Set(to.encrypt(&plain, slot).map_err(AppError::internal)?);
        n += 1;
        if let Some(prev) = &row.previous_secret {
            let (app_id, field) = secret_slot(row.app_id, &row.uid, true);
            let slot = Slot { app_id, field: &field };
            let plain = from.decrypt(prev, slot).map_err(AppError::internal)?;
            am.previous_secret = Set(Some(to.encrypt(&plain, slot).map_err(AppError::internal)?));
            n += 1;
        }
        am.update(db).await?;
    }
    Ok(n)
}

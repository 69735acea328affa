//! Notification endpoints and their deliveries: managed by admins, readable by viewers (never a
//! signing secret, except the one moment it is created or rotated).
use async_graphql::{ComplexObject, Context, Enum, ID, InputObject, Json, Object, SimpleObject};

use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, Loader};

use super::buyers::{Loaders, PageInfo};
use super::{GqlResult, caller, gql, gql_shared, parse_id};
use crate::services::Page;
use crate::services::notifications::{self as svc, DeliveryFilter, DeliveryView, EndpointInput};
use entity::status::DeliveryStatus as Stored;

/// Where the app wants to hear about access changes (Standard Webhooks, signed).
#[derive(SimpleObject)]
pub struct NotificationEndpoint {
    pub id: ID,
    /// The public id, also sent nowhere secret: use it in support conversations.
    pub uid: String,
    pub url: String,
    pub description: String,
    /// The event types sent; empty means every one.
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// Why it was disabled by Porteiro (e.g. it answered 410 Gone).
    pub disabled_reason: Option<String>,
    /// Until when the secret before the last rotation still signs (a second signature).
    pub previous_secret_valid_until: Option<super::DateTime>,
    pub max_in_flight: i32,
    pub timeout_ms: i32,
    pub created_at: super::DateTime,
    pub updated_at: super::DateTime,
}

impl From<entity::notification_endpoint::Model> for NotificationEndpoint {
    fn from(e: entity::notification_endpoint::Model) -> Self {
        NotificationEndpoint {
            id: ID(e.id.to_string()),
            uid: e.uid,
            url: e.url,
            description: e.description,
            event_types: e.event_types.split_whitespace().map(str::to_string).collect(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            previous_secret_valid_until: e
                .previous_secret_until
                .filter(|t| *t > chrono::Utc::now())
                .map(Into::into),
            max_in_flight: e.max_in_flight,
            timeout_ms: e.timeout_ms,
            created_at: e.created_at.into(),
            updated_at: e.updated_at.into(),
        }
    }
}

#[derive(SimpleObject)]
pub struct EndpointWithSecret {
    pub endpoint: NotificationEndpoint,
    /// The signing secret (`whsec_…`), shown this once: give it to the receiver now.
    pub secret: String,
}

#[derive(InputObject, Default)]
pub struct NotificationEndpointInput {
    pub url: Option<String>,
    pub description: Option<String>,
    /// access.granted, access.revoked, access.suspended, access.expired, access.changed; empty
    /// or absent: all.
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
    /// Deliveries sent to it at once (1–32, default 4).
    pub max_in_flight: Option<i32>,
    /// How long one send may take (500–30000 ms, default 10000).
    pub timeout_ms: Option<i32>,
}

impl From<NotificationEndpointInput> for EndpointInput {
    fn from(i: NotificationEndpointInput) -> Self {
        EndpointInput {
            url: i.url,
            description: i.description,
            event_types: i.event_types,
            enabled: i.enabled,
            max_in_flight: i.max_in_flight,
            timeout_ms: i.timeout_ms,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    Delivered,
    /// Every retry failed (or the endpoint answered 410); can be re-sent.
    Dead,
}

impl From<DeliveryStatus> for Stored {
    fn from(s: DeliveryStatus) -> Self {
        match s {
            DeliveryStatus::Pending => Stored::Pending,
            DeliveryStatus::Delivered => Stored::Delivered,
            DeliveryStatus::Dead => Stored::Dead,
        }
    }
}

impl From<Stored> for DeliveryStatus {
    fn from(s: Stored) -> Self {
        match s {
            Stored::Pending => DeliveryStatus::Pending,
            Stored::Delivered => DeliveryStatus::Delivered,
            Stored::Dead => DeliveryStatus::Dead,
        }
    }
}

/// One notification to one endpoint.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct NotificationDelivery {
    pub id: ID,
    pub endpoint_id: ID,
    pub status: DeliveryStatus,
    pub event_type: String,
    /// `webhook-id`: the same on every attempt, for the receiver to deduplicate.
    pub message_id: String,
    /// The entitlement's version this notification carries.
    pub version: i64,
    pub attempt_count: i32,
    pub next_attempt_at: Option<super::DateTime>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<i32>,
    pub delivered_at: Option<super::DateTime>,
    pub created_at: super::DateTime,
    /// The exact body that is signed and sent.
    pub payload: Json<serde_json::Value>,
}

#[derive(SimpleObject)]
pub struct NotificationAttempt {
    pub attempted_at: super::DateTime,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub latency_ms: i32,
    /// The first bytes of the receiver's answer.
    pub response_excerpt: Option<String>,
}

#[ComplexObject]
impl NotificationDelivery {
    /// Every attempt, oldest first.
    async fn attempts(&self, ctx: &Context<'_>) -> GqlResult<Vec<NotificationAttempt>> {
        caller(ctx)?;
        let loader = ctx.data_unchecked::<DataLoader<Loaders>>();
        Ok(loader
            .load_one(AttemptsKey(parse_id(&self.id)?))
            .await
            .map_err(gql_shared)?
            .unwrap_or_default()
            .into_iter()
            .map(|a| NotificationAttempt {
                attempted_at: a.attempted_at.into(),
                status_code: a.status_code,
                error: a.error,
                latency_ms: a.latency_ms,
                response_excerpt: a.response_excerpt,
            })
            .collect())
    }
}

/// The attempts of every delivery on a page, in one query.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttemptsKey(i32);

impl Loader<AttemptsKey> for Loaders {
    type Value = Vec<entity::notification_attempt::Model>;
    type Error = std::sync::Arc<crate::AppError>;

    async fn load(&self, keys: &[AttemptsKey]) -> Result<HashMap<AttemptsKey, Self::Value>, Self::Error> {
        let ids: Vec<i32> = keys.iter().map(|k| k.0).collect();
        let all = svc::attempts(&self.0.db, &ids).await.map_err(|e| {
            e.log();
            std::sync::Arc::new(e)
        })?;
        Ok(all.into_iter().map(|(id, a)| (AttemptsKey(id), a)).collect())
    }
}

impl From<DeliveryView> for NotificationDelivery {
    fn from(v: DeliveryView) -> Self {
        let d = v.row;
        let body = crate::pipeline::outbox::body(&v.notification);
        NotificationDelivery {
            id: ID(d.id.to_string()),
            endpoint_id: ID(d.endpoint_id.to_string()),
            status: d.status.into(),
            event_type: v.notification.event_type,
            message_id: v.notification.msg_id,
            version: v.notification.version,
            attempt_count: d.attempts,
            next_attempt_at: d
                .next_attempt_at
                .filter(|_| d.status == Stored::Pending)
                .map(Into::into),
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            last_latency_ms: d.last_latency_ms,
            delivered_at: d.delivered_at.map(Into::into),
            created_at: d.created_at.into(),
            payload: Json(serde_json::from_str(&body).unwrap_or_default()),
        }
    }
}

#[derive(SimpleObject)]
pub struct NotificationDeliveryConnection {
    pub nodes: Vec<NotificationDelivery>,
    pub page_info: PageInfo,
}

#[derive(Default)]
pub struct NotificationQuery;

#[Object]
impl NotificationQuery {
    async fn notification_endpoints(&self, ctx: &Context<'_>) -> GqlResult<Vec<NotificationEndpoint>> {
        let (state, who) = caller(ctx)?;
        Ok(svc::list_endpoints(&state.db, who.app_id)
            .await
            .map_err(gql)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// The event types an endpoint can subscribe to.
    async fn notification_event_types(&self) -> Vec<String> {
        svc::EVENT_TYPES.iter().map(std::string::ToString::to_string).collect()
    }

    /// Deliveries, newest first.
    async fn notification_deliveries(
        &self,
        ctx: &Context<'_>,
        endpoint_id: Option<ID>,
        status: Option<DeliveryStatus>,
        event_type: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<NotificationDeliveryConnection> {
        let (state, who) = caller(ctx)?;
        let page = Page::new(first, after.as_deref()).map_err(gql)?;
        let filter = DeliveryFilter {
            endpoint_id: endpoint_id.as_ref().map(parse_id).transpose()?,
            status: status.map(Into::into),
            event_type,
        };
        let rows = svc::deliveries(&state.db, who.app_id, &filter, page)
            .await
            .map_err(gql)?;
        let end_cursor = rows.items.last().map(|r| r.row.id.to_string());
        Ok(NotificationDeliveryConnection {
            nodes: rows.items.into_iter().map(Into::into).collect(),
            page_info: PageInfo {
                has_next_page: rows.has_next,
                end_cursor,
            },
        })
    }
}

#[derive(Default)]
pub struct NotificationMutation;

#[Object]
impl NotificationMutation {
    /// Adds an endpoint; the answer holds its signing secret, shown once.
    async fn create_notification_endpoint(
        &self,
        ctx: &Context<'_>,
        input: NotificationEndpointInput,
    ) -> GqlResult<EndpointWithSecret> {
        let (state, who) = caller(ctx)?;
        let (row, secret) = svc::create_endpoint(state, who, input.into()).await.map_err(gql)?;
        Ok(EndpointWithSecret {
            endpoint: row.into(),
            secret,
        })
    }

    /// Changes the fields given; `enabled: true` also clears a disabled reason.
    async fn update_notification_endpoint(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: NotificationEndpointInput,
    ) -> GqlResult<NotificationEndpoint> {
        let (state, who) = caller(ctx)?;
        Ok(svc::update_endpoint(state, who, parse_id(&id)?, input.into())
            .await
            .map_err(gql)?
            .into())
    }

    async fn delete_notification_endpoint(&self, ctx: &Context<'_>, id: ID) -> GqlResult<bool> {
        let (state, who) = caller(ctx)?;
        svc::delete_endpoint(state, who, parse_id(&id)?).await.map_err(gql)?;
        Ok(true)
    }

    /// A new signing secret, shown once. The old one keeps signing too for `overlapHours`
    /// (default 24), so the receiver can switch without a failed delivery.
    async fn rotate_notification_secret(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default = 24)] overlap_hours: i32,
    ) -> GqlResult<EndpointWithSecret> {
        let (state, who) = caller(ctx)?;
        let (row, secret) = svc::rotate_secret(state, who, parse_id(&id)?, overlap_hours)
            .await
            .map_err(gql)?;
        Ok(EndpointWithSecret {
            endpoint: row.into(),
            secret,
        })
    }

    /// Sends a `porteiro.test` notification to the endpoint now and answers with the result.
    async fn send_test_notification(&self, ctx: &Context<'_>, endpoint_id: ID) -> GqlResult<NotificationDelivery> {
        let (state, who) = caller(ctx)?;
        who.require_admin().map_err(gql)?;
        Ok(svc::send_test(state, who.app_id, parse_id(&endpoint_id)?)
            .await
            .map_err(gql)?
            .into())
    }

    /// Sends one delivery again, from the start of the retry schedule.
    async fn resend_notification(&self, ctx: &Context<'_>, delivery_id: ID) -> GqlResult<bool> {
        let (state, who) = caller(ctx)?;
        svc::resend(state, who, Some(parse_id(&delivery_id)?), None, None)
            .await
            .map_err(gql)?;
        Ok(true)
    }

    /// Sends again every delivery of an endpoint in a status (DEAD unless said); returns how
    /// many were queued.
    async fn resend_notifications(
        &self,
        ctx: &Context<'_>,
        endpoint_id: ID,
        status: Option<DeliveryStatus>,
    ) -> GqlResult<i32> {
        let (state, who) = caller(ctx)?;
        let n = svc::resend(
            state,
            who,
            None,
            Some(parse_id(&endpoint_id)?),
            Some(status.unwrap_or(DeliveryStatus::Dead).into()),
        )
        .await
        .map_err(gql)?;
        Ok(n.min(i32::MAX as u64) as i32)
    }
}

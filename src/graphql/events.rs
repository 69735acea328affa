use async_graphql::{Context, ID, Json, Object, SimpleObject};

use super::buyers::{AccessTarget, PageInfo};
use super::{GqlResult, caller, gql, parse_id};
use crate::domain::Decision;
use crate::services::{Page, events as inbox};

/// One delivery in the inbox, with what became of it.
#[derive(SimpleObject)]
pub struct WebhookEvent {
    pub id: ID,
    pub event_id: String,
    pub event_type: String,
    /// v2 (JSON) or v1 (form postback).
    pub format: String,
    pub origin: String,
    /// pending | processed | ignored | unmapped | failed | test
    pub status: String,
    pub is_test: bool,
    pub email: Option<String>,
    pub transaction: Option<String>,
    pub source: Option<String>,
    pub received_at: super::DateTime,
    pub occurred_at: Option<super::DateTime>,
    pub processed_at: Option<super::DateTime>,
    /// The rule's decision in words (`grant`, `revoke at …`, `ignore: …`).
    pub decision: Option<String>,
    pub rule_version: Option<i32>,
    /// Why it failed, or why it was ignored or left unmapped.
    pub error: Option<String>,
    pub attempts: i32,
    /// The body as Hotmart sent it, with any Hottok inside masked.
    pub raw_payload: String,
}

impl From<entity::webhook_event::Model> for WebhookEvent {
    fn from(r: entity::webhook_event::Model) -> Self {
        let decision = r
            .decision
            .as_deref()
            .and_then(|d| serde_json::from_str::<Decision>(d).ok())
            .map(|d| d.label());
        let raw_payload = inbox::payload(&r);
        WebhookEvent {
            raw_payload,
            id: ID(r.id.to_string()),
            event_id: r.event_id,
            event_type: r.event_type,
            format: r.format.as_str().into(),
            origin: r.origin,
            status: r.status.as_str().into(),
            is_test: r.is_test,
            email: r.email,
            transaction: r.transaction,
            source: r.source_key,
            received_at: r.received_at.into(),
            occurred_at: r.occurred_at.map(Into::into),
            processed_at: r.processed_at.map(Into::into),
            decision,
            rule_version: r.rule_version,
            error: r.error,
            attempts: r.attempts,
        }
    }
}

#[derive(SimpleObject)]
pub struct WebhookEventConnection {
    pub nodes: Vec<WebhookEvent>,
    pub page_info: PageInfo,
}

/// What would happen to a payload, without changing anything.
#[derive(SimpleObject)]
pub struct Simulation {
    pub status: String,
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    pub email: Option<String>,
    pub is_test: bool,
    pub target: Option<AccessTarget>,
    pub decision: Option<String>,
    pub rule_version: Option<i32>,
    pub error: Option<String>,
    /// The provider-neutral event the payload was read into.
    pub event: Option<Json<serde_json::Value>>,
}

#[derive(Default)]
pub struct EventQuery;

#[Object]
impl EventQuery {
    // One argument per filter is the GraphQL API's shape.
    #[allow(clippy::too_many_arguments)]
    async fn webhook_events(
        &self,
        ctx: &Context<'_>,
        status: Option<String>,
        event_type: Option<String>,
        email: Option<String>,
        #[graphql(desc = "received at or after")] since: Option<super::DateTime>,
        #[graphql(desc = "received before")] until: Option<super::DateTime>,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<WebhookEventConnection> {
        let (state, who) = caller(ctx)?;
        let page = Page::new(first, after.as_deref()).map_err(gql)?;
        let filter = inbox::EventFilter {
            status,
            event_type,
            email,
            since: since.map(|t| t.0),
            until: until.map(|t| t.0),
        };
        let rows = inbox::list(&state.db, who.app_id, filter, page).await.map_err(gql)?;
        let end_cursor = rows.items.last().map(|r| r.id.to_string());
        Ok(WebhookEventConnection {
            nodes: rows.items.into_iter().map(Into::into).collect(),
            page_info: PageInfo {
                has_next_page: rows.has_next,
                end_cursor,
            },
        })
    }

    async fn webhook_event(&self, ctx: &Context<'_>, id: ID) -> GqlResult<WebhookEvent> {
        let (state, who) = caller(ctx)?;
        inbox::get(&state.db, who.app_id, parse_id(&id)?)
            .await
            .map(Into::into)
            .map_err(gql)
    }
}

#[derive(Default)]
pub struct EventMutation;

#[Object]
impl EventMutation {
    /// Queues an event again (after fixing its rule or linking its product).
    async fn replay_webhook_event(&self, ctx: &Context<'_>, id: ID) -> GqlResult<WebhookEvent> {
        let (state, who) = caller(ctx)?;
        inbox::replay(state, who, parse_id(&id)?)
            .await
            .map(Into::into)
            .map_err(gql)
    }

    /// Queues again every event in `status` (failed, unmapped or ignored), optionally of one
    /// type: after linking a product or fixing a rule. Returns how many were queued.
    async fn replay_webhook_events(
        &self,
        ctx: &Context<'_>,
        status: String,
        event_type: Option<String>,
    ) -> GqlResult<i32> {
        let (state, who) = caller(ctx)?;
        let n = inbox::replay_all(state, who, &status, event_type.as_deref())
            .await
            .map_err(gql)?;
        Ok(n as i32)
    }

    /// Runs a Hotmart payload (v2 JSON) through parsing, mapping and the current rules and shows
    /// the decision. Nothing is stored or changed.
    async fn simulate_webhook(&self, ctx: &Context<'_>, payload: String) -> GqlResult<Simulation> {
        let (state, who) = caller(ctx)?;
        let eval = inbox::simulate(state, who, &payload).await.map_err(gql)?;
        let ev = eval.event.as_ref();
        Ok(Simulation {
            status: eval.status.to_string(),
            event_type: ev.map(|e| e.kind.as_str().to_string()),
            event_id: ev.map(|e| e.event_id.clone()),
            email: ev.and_then(|e| e.buyer_email.clone()),
            is_test: ev.is_some_and(|e| e.is_test),
            target: eval.target.map(|t| AccessTarget {
                kind: t.kind.into(),
                id: ID(t.id.to_string()),
                name: t.name,
            }),
            decision: eval.decision.as_ref().map(Decision::label),
            rule_version: eval.rule_version,
            error: eval.error,
            event: ev.and_then(|e| serde_json::to_value(e).ok()).map(Json),
        })
    }
}

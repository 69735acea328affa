use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::{GqlResult, caller, gql};
use crate::services::integration::{self as svc, Environment, IntegrationInput, IntegrationView, SecretInfo};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum HotmartEnvironment {
    Production,
    Sandbox,
}

impl From<Environment> for HotmartEnvironment {
    fn from(e: Environment) -> Self {
        match e {
            Environment::Production => HotmartEnvironment::Production,
            Environment::Sandbox => HotmartEnvironment::Sandbox,
        }
    }
}

/// Whether a secret is saved, and its last four characters. Never the secret itself.
#[derive(SimpleObject)]
pub struct SecretStatus {
    pub set: bool,
    pub last4: Option<String>,
}

impl From<SecretInfo> for SecretStatus {
    fn from(s: SecretInfo) -> Self {
        SecretStatus {
            set: s.set,
            last4: s.last4,
        }
    }
}

#[derive(SimpleObject)]
pub struct HotmartIntegration {
    /// Paste this URL into Hotmart → Tools → Webhook.
    pub webhook_url: String,
    pub environment: HotmartEnvironment,
    pub hottok: SecretStatus,
    pub basic: SecretStatus,
    pub client_id: SecretStatus,
    pub client_secret: SecretStatus,
    pub last_webhook_at: Option<DateTime<Utc>>,
    pub last_test_event_at: Option<DateTime<Utc>>,
    /// True once a Hotmart "send test" event arrived with the right Hottok.
    pub verified: bool,
    /// Deliveries refused for a missing or wrong Hottok.
    pub rejected_webhooks: i64,
}

impl From<IntegrationView> for HotmartIntegration {
    fn from(v: IntegrationView) -> Self {
        HotmartIntegration {
            webhook_url: v.webhook_url,
            environment: v.environment.into(),
            hottok: v.hottok.into(),
            basic: v.basic.into(),
            client_id: v.client_id.into(),
            client_secret: v.client_secret.into(),
            verified: v.last_test_event_at.is_some(),
            last_webhook_at: v.last_webhook_at,
            last_test_event_at: v.last_test_event_at,
            rejected_webhooks: v.rejected_webhooks,
        }
    }
}

/// Omitted fields keep their saved values.
#[derive(InputObject)]
pub struct SaveHotmartIntegrationInput {
    pub hottok: Option<String>,
    pub basic: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub environment: Option<HotmartEnvironment>,
}

#[derive(Default)]
pub struct IntegrationQuery;

#[Object]
impl IntegrationQuery {
    async fn hotmart_integration(&self, ctx: &Context<'_>) -> GqlResult<HotmartIntegration> {
        let (state, who) = caller(ctx)?;
        svc::view(state, who.app_id).await.map(Into::into).map_err(gql)
    }
}

#[derive(Default)]
pub struct IntegrationMutation;

#[Object]
impl IntegrationMutation {
    async fn save_hotmart_integration(
        &self,
        ctx: &Context<'_>,
        input: SaveHotmartIntegrationInput,
    ) -> GqlResult<HotmartIntegration> {
        let (state, who) = caller(ctx)?;
        let input = IntegrationInput {
            hottok: input.hottok,
            basic: input.basic,
            client_id: input.client_id,
            client_secret: input.client_secret,
            environment: input.environment.map(|e| match e {
                HotmartEnvironment::Production => Environment::Production,
                HotmartEnvironment::Sandbox => Environment::Sandbox,
            }),
        };
        svc::save(state, who, input).await.map(Into::into).map_err(gql)
    }
}

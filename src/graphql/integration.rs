use async_graphql::{Context, Enum, InputObject, MaybeUndefined, Object, SimpleObject};

use super::{GqlResult, caller, gql};
use crate::services::hotmart_account;
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
    pub last_webhook_at: Option<super::DateTime>,
    pub last_test_event_at: Option<super::DateTime>,
    /// True once a Hotmart "send test" event arrived with the right Hottok.
    pub verified: bool,
    /// Deliveries refused for a missing or wrong Hottok, or before a Hottok was saved.
    pub rejected_webhooks: i64,
    /// When a delivery was last refused (its body is never kept).
    pub last_rejected_at: Option<super::DateTime>,
    /// Why: NOT_CONFIGURED (no Hottok saved yet), MISSING_HOTTOK or WRONG_HOTTOK.
    pub last_rejected_reason: Option<String>,
    /// Periodic reconciliation interval; null when off.
    pub reconcile_every_minutes: Option<i32>,
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
            last_webhook_at: v.last_webhook_at.map(Into::into),
            last_test_event_at: v.last_test_event_at.map(Into::into),
            rejected_webhooks: v.rejected_webhooks,
            last_rejected_at: v.last_rejected_at.map(Into::into),
            last_rejected_reason: v.last_rejected_reason,
            reconcile_every_minutes: v.reconcile_every_minutes,
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
    /// Reconcile with Hotmart's API every N minutes (15 to 10080); null turns it off.
    pub reconcile_every_minutes: MaybeUndefined<i32>,
}

#[derive(SimpleObject)]
pub struct ConnectionTest {
    pub ok: bool,
    /// OK, BAD_CREDENTIALS, FORBIDDEN, NOT_FOUND, RATE_LIMITED, UNREACHABLE or HOTMART_ERROR.
    pub code: String,
    pub environment: String,
    /// Success, or the precise reason it failed.
    pub message: String,
}

#[derive(SimpleObject)]
pub struct SubscriptionActionResult {
    pub subscriber_code: String,
    /// The subscription status Hotmart answered with.
    pub hotmart_status: Option<String>,
    /// Entitlements revoked right away (only with `revokeNow`).
    pub revoked_access: i32,
}

impl From<hotmart_account::SubscriptionAction> for SubscriptionActionResult {
    fn from(a: hotmart_account::SubscriptionAction) -> Self {
        SubscriptionActionResult {
            subscriber_code: a.subscriber_code,
            hotmart_status: a.status,
            revoked_access: a.revoked_access,
        }
    }
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
            reconcile_every_minutes: match input.reconcile_every_minutes {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(m) => Some(Some(m)),
            },
        };
        svc::save(state, who, input).await.map(Into::into).map_err(gql)
    }

    /// Fetches a token with the saved credentials and says whether Hotmart accepted them.
    async fn test_hotmart_connection(&self, ctx: &Context<'_>) -> GqlResult<ConnectionTest> {
        let (state, who) = caller(ctx)?;
        let t = hotmart_account::test_connection(state, who).await.map_err(gql)?;
        Ok(ConnectionTest {
            ok: t.ok,
            code: t.code.into(),
            environment: t.environment,
            message: t.message,
        })
    }

    /// Cancels a subscription at Hotmart. Access follows the SUBSCRIPTION_CANCELLATION webhook
    /// Hotmart sends (until the paid period ends), unless `revokeNow` takes it away at once.
    async fn cancel_subscription(
        &self,
        ctx: &Context<'_>,
        subscriber_code: String,
        #[graphql(default = true)] send_mail: bool,
        #[graphql(default = false)] revoke_now: bool,
    ) -> GqlResult<SubscriptionActionResult> {
        let (state, who) = caller(ctx)?;
        hotmart_account::cancel(state, who, &subscriber_code, send_mail, revoke_now)
            .await
            .map(Into::into)
            .map_err(gql)
    }

    /// Asks Hotmart to reactivate a subscription (the subscriber confirms by e-mail).
    async fn reactivate_subscription(
        &self,
        ctx: &Context<'_>,
        subscriber_code: String,
        #[graphql(default = false)] charge: bool,
    ) -> GqlResult<SubscriptionActionResult> {
        let (state, who) = caller(ctx)?;
        hotmart_account::reactivate(state, who, &subscriber_code, charge)
            .await
            .map(Into::into)
            .map_err(gql)
    }
}

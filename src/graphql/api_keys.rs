//! App API keys: created and revoked by admins, listed without their secrets.
use async_graphql::{Context, ID, Object, SimpleObject};

use super::{GqlResult, caller, gql, parse_id};
use crate::services::api_keys as svc;

/// A key a producer's app uses for the access API. The secret is never shown again.
#[derive(SimpleObject)]
pub struct ApiKey {
    pub id: ID,
    pub name: String,
    /// The public part of the key (`pk_<keyId>_…`), to recognise it in lists and logs.
    pub key_id: String,
    pub scopes: Vec<String>,
    pub created_by: String,
    pub created_at: super::DateTime,
    pub last_used_at: Option<super::DateTime>,
    pub revoked_at: Option<super::DateTime>,
    /// Refused from then on (null: until revoked).
    pub expires_at: Option<super::DateTime>,
}

impl From<entity::api_key::Model> for ApiKey {
    fn from(k: entity::api_key::Model) -> Self {
        ApiKey {
            id: ID(k.id.to_string()),
            name: k.name,
            key_id: k.key_id,
            scopes: k.scopes.split_whitespace().map(str::to_string).collect(),
            created_by: k.created_by,
            created_at: k.created_at.into(),
            last_used_at: k.last_used_at.map(Into::into),
            revoked_at: k.revoked_at.map(Into::into),
            expires_at: k.expires_at.map(Into::into),
        }
    }
}

#[derive(SimpleObject)]
pub struct CreatedApiKey {
    pub key: ApiKey,
    /// The whole key, shown this once: store it in the app's configuration now.
    pub secret: String,
}

#[derive(Default)]
pub struct ApiKeyQuery;

#[Object]
impl ApiKeyQuery {
    /// The app's API keys, revoked ones included (without their secrets).
    async fn api_keys(&self, ctx: &Context<'_>) -> GqlResult<Vec<ApiKey>> {
        let (state, who) = caller(ctx)?;
        who.require_admin().map_err(gql)?;
        Ok(svc::list(&state.db, who.app_id)
            .await
            .map_err(gql)?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}

#[derive(Default)]
pub struct ApiKeyMutation;

#[Object]
impl ApiKeyMutation {
    /// Creates a key for the app's own software. Scopes: `access:read`. With `expiresAt`, it is
    /// refused from then on.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        name: String,
        scopes: Vec<String>,
        expires_at: Option<super::DateTime>,
    ) -> GqlResult<CreatedApiKey> {
        let (state, who) = caller(ctx)?;
        let (row, secret) = svc::create(state, who, &name, &scopes, expires_at.map(|t| t.0))
            .await
            .map_err(gql)?;
        Ok(CreatedApiKey {
            key: row.into(),
            secret,
        })
    }

    /// Rotates a key: a new key with the same name and scopes (its secret shown this once),
    /// while the old one keeps working until `oldKeyValidUntil`, then is refused. Deploy the new
    /// one everywhere within that overlap.
    async fn rotate_api_key(
        &self,
        ctx: &Context<'_>,
        id: ID,
        old_key_valid_until: super::DateTime,
    ) -> GqlResult<CreatedApiKey> {
        let (state, who) = caller(ctx)?;
        let id = parse_id(&id)?;
        let (row, secret) = svc::rotate(state, who, id, old_key_valid_until.0).await.map_err(gql)?;
        Ok(CreatedApiKey {
            key: row.into(),
            secret,
        })
    }

    /// Revokes a key: the next request made with it is refused.
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> GqlResult<ApiKey> {
        let (state, who) = caller(ctx)?;
        let id = parse_id(&id)?;
        Ok(svc::revoke(state, who, id).await.map_err(gql)?.into())
    }
}

//! App API keys: named, scoped, revocable credentials for a producer's app. A key is
//! `pk_<key id>_<secret>`; only its SHA-256 is stored (the secret has 256 random bits, so a fast
//! hash is enough), and it is shown once, when created. A key never opens the admin GraphQL API.
use base64::Engine;
use chrono::{DateTime, Utc};
use entity::api_key as ak;
use rand::RngCore;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde_json::json;

use super::{AdminWrite, Change, Then};
use crate::auth::Principal;
use crate::secrets::token_hash as hash;
use crate::{AppError, AppResult, AppState};

/// Scopes a key can carry. Only reading access exists today; the list is the place to add more.
pub const SCOPES: &[&str] = &[ACCESS_READ, CHANGES_READ];
/// Buyers' access: `/v1/access*`, `/v1/targets`, the holder lists.
pub const ACCESS_READ: &str = "access:read";
/// The changes feed, `/v1/changes`.
pub const CHANGES_READ: &str = crate::pipeline::outbox::FEED_SCOPE;

const PREFIX: &str = "pk_";
/// `last_used_at` is written at most this often per key, not on every request.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// What a valid key lets its caller do.
#[derive(Debug, Clone)]
pub struct AppKey {
    pub id: i32,
    pub app_id: i32,
    pub scopes: Vec<String>,
}

impl AppKey {
    pub fn require(&self, scope: &str) -> AppResult<()> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!("this API key lacks the {scope} scope")))
        }
    }
}

fn clean_scopes(scopes: &[String]) -> AppResult<Vec<String>> {
    let mut out: Vec<String> = scopes.iter().map(|s| s.trim().to_lowercase()).collect();
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(AppError::InvalidFields(vec![(
            "scopes".into(),
            format!("give at least one scope ({})", SCOPES.join(", ")),
        )]));
    }
    if let Some(bad) = out.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return Err(AppError::InvalidFields(vec![(
            "scopes".into(),
            format!("unknown scope {bad:?}; scopes are {}", SCOPES.join(", ")),
        )]));
    }
    Ok(out)
}

/// Creates a key and returns it with its secret, the only time the secret is seen. A key with
/// `expires_at` is refused from then on.
pub async fn create(
    state: &AppState,
    who: &Principal,
    name: &str,
    scopes: &[String],
    expires_at: Option<DateTime<Utc>>,
) -> AppResult<(ak::Model, String)> {
    who.require_admin()?;
    let txn = AdminWrite::begin(state, who).await?;
    let (row, token) = insert(&txn, who, name, scopes, expires_at).await?;
    txn.commit(
        Change::new("api_key.create", format!("api_key:{}", row.id)).after(json!({
            "name": row.name, "keyId": row.key_id, "scopes": row.scopes, "expiresAt": row.expires_at,
        })),
        [],
    )
    .await?;
    Ok((row, token))
}

fn future(expires_at: Option<DateTime<Utc>>, field: &str) -> AppResult<()> {
    match expires_at {
        Some(t) if t <= super::now() => Err(AppError::InvalidFields(vec![(
            field.into(),
            "give a time in the future".into(),
        )])),
        _ => Ok(()),
    }
}

async fn insert(
    txn: &AdminWrite<'_>,
    who: &Principal,
    name: &str,
    scopes: &[String],
    expires_at: Option<DateTime<Utc>>,
) -> AppResult<(ak::Model, String)> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.contains('\0') {
        return Err(AppError::InvalidFields(vec![(
            "name".into(),
            "give the key a name of 1 to 100 characters (which app or server uses it)".into(),
        )]));
    }
    let scopes = clean_scopes(scopes)?;
    future(expires_at, "expiresAt")?;
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let key_id = hex::encode(id);
    let token = format!(
        "{PREFIX}{key_id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let row = ak::ActiveModel {
        app_id: Set(who.app_id),
        name: Set(name.to_string()),
        key_id: Set(key_id.clone()),
        secret_hash: Set(hash(&token)),
        scopes: Set(scopes.join(" ")),
        created_by: Set(who.actor()),
        created_at: Set(super::now()),
        expires_at: Set(expires_at),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    Ok((row, token))
}

/// Rotation with an overlap: a new key with the same name and scopes, while the old one keeps
/// working until `old_until` (then it is refused, as if it had expired). Returns the new key with
/// its secret.
pub async fn rotate(
    state: &AppState,
    who: &Principal,
    id: i32,
    old_until: DateTime<Utc>,
) -> AppResult<(ak::Model, String)> {
    who.require_admin()?;
    future(Some(old_until), "oldKeyValidUntil")?;
    let txn = AdminWrite::begin(state, who).await?;
    let Some(old) = ak::Entity::find_by_id(id)
        .filter(ak::Column::AppId.eq(who.app_id))
        .one(&txn)
        .await?
    else {
        return Err(AppError::not_found(format!("API key {id} not found")));
    };
    if old.revoked_at.is_some() || old.expires_at.is_some_and(|t| t <= super::now()) {
        return Err(AppError::Conflict(format!(
            "API key {id} no longer works: create a new one instead"
        )));
    }
    let scopes: Vec<String> = old.scopes.split_whitespace().map(str::to_string).collect();
    // The new key lives as long as the old one would have.
    let (row, token) = insert(&txn, who, &old.name, &scopes, old.expires_at).await?;
    let old_key_id = old.key_id.clone();
    // Never later than it would have stopped anyway.
    let until = old.expires_at.map_or(old_until, |t| t.min(old_until));
    let mut am: ak::ActiveModel = old.into();
    am.expires_at = Set(Some(until));
    am.update(&txn).await?;
    txn.commit(
        Change::new("api_key.rotate", format!("api_key:{id}")).after(json!({
            "oldKeyId": old_key_id, "oldValidUntil": until, "newId": row.id, "newKeyId": row.key_id,
        })),
        [Then::ApiKey(old_key_id)],
    )
    .await?;
    Ok((row, token))
}

pub async fn list(db: &impl ConnectionTrait, app_id: i32) -> AppResult<Vec<ak::Model>> {
    Ok(ak::Entity::find()
        .filter(ak::Column::AppId.eq(app_id))
        .order_by_asc(ak::Column::Id)
        .all(db)
        .await?)
}

/// Revokes a key of the caller's app; the next request with it is refused.
pub async fn revoke(state: &AppState, who: &Principal, id: i32) -> AppResult<ak::Model> {
    who.require_admin()?;
    let txn = AdminWrite::begin(state, who).await?;
    let Some(row) = ak::Entity::find_by_id(id)
        .filter(ak::Column::AppId.eq(who.app_id))
        .one(&txn)
        .await?
    else {
        return Err(AppError::not_found(format!("API key {id} not found")));
    };
    if row.revoked_at.is_some() {
        return Ok(row);
    }
    let key_id = row.key_id.clone();
    let mut am: ak::ActiveModel = row.into();
    am.revoked_at = Set(Some(super::now()));
    let row = am.update(&txn).await?;

    txn.commit(
        Change::new("api_key.revoke", format!("api_key:{id}")).after(json!({"keyId": key_id})),
        [Then::ApiKey(key_id.clone())],
    )
    .await?;
    Ok(row)
}

/// The app and scopes behind a presented key. Unknown, malformed, wrong and revoked keys are
/// all the same error, so a caller learns nothing about which keys exist.
pub async fn authenticate(state: &AppState, token: &str) -> AppResult<AppKey> {
    let refused = || AppError::Unauthenticated("invalid, revoked or expired API key".into());
    let key_id = token
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .map(|(id, _)| id)
        .filter(|id| id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(refused)?;
    let row = match state.hot.api_keys.get(key_id) {
        Some(r) => r,
        None => {
            let r = ak::Entity::find()
                .filter(ak::Column::KeyId.eq(key_id))
                .one(&state.db)
                .await?;
            state.hot.api_keys.insert(key_id.to_string(), r.clone());
            r
        }
    };
    let Some(row) = row else {
        return Err(refused());
    };
    let presented = hash(token);
    let matches: bool = subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), row.secret_hash.as_bytes()).into();
    if !matches || row.revoked_at.is_some() || row.expires_at.is_some_and(|t| t <= super::now()) {
        return Err(refused());
    }
    touch(state, &row).await;
    Ok(AppKey {
        id: row.id,
        app_id: row.app_id,
        scopes: row.scopes.split_whitespace().map(str::to_string).collect(),
    })
}

/// Records the use, at most once a minute per key; a failure to record never refuses the call.
async fn touch(state: &AppState, row: &ak::Model) {
    let now = super::now();
    let due = row.last_used_at.is_none_or(|t: DateTime<Utc>| now - t >= TOUCH_EVERY);
    if !due {
        return;
    }
    let mut fresh = row.clone();
    fresh.last_used_at = Some(now);
    state.hot.api_keys.insert(row.key_id.clone(), Some(fresh));
    let am = ak::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(row.id),
        last_used_at: Set(Some(now)),
        ..Default::default()
    };
    if let Err(e) = am.update(&state.db).await {
        AppError::from(e).log();
    }
}

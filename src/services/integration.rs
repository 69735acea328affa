//! The Hotmart integration of an app: secrets encrypted at rest, validated before saving, shown
//! only by their last four characters.
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use entity::hotmart_integration as hi;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use secrecy::SecretString;
use serde_json::json;

use super::{AdminWrite, Change, Then};
use crate::auth::Principal;
use crate::secrets::{SecretBox, Slot, last4};
use crate::{AppError, AppResult, AppState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Production,
    Sandbox,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Sandbox => "sandbox",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "sandbox" {
            Environment::Sandbox
        } else {
            Environment::Production
        }
    }
}

#[derive(Debug, Clone)]
pub struct SecretInfo {
    pub set: bool,
    pub last4: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IntegrationView {
    pub webhook_url: String,
    pub environment: Environment,
    pub hottok: SecretInfo,
    pub basic: SecretInfo,
    pub client_id: SecretInfo,
    pub client_secret: SecretInfo,
    pub last_webhook_at: Option<DateTime<Utc>>,
    pub last_test_event_at: Option<DateTime<Utc>>,
    pub rejected_webhooks: i64,
    pub last_rejected_at: Option<DateTime<Utc>>,
    pub last_rejected_reason: Option<String>,
    pub reconcile_every_minutes: Option<i32>,
}

#[derive(Debug, Clone, Default)]
pub struct IntegrationInput {
    pub hottok: Option<String>,
    pub basic: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub environment: Option<Environment>,
    /// `Some(None)` turns periodic reconciliation off.
    pub reconcile_every_minutes: Option<Option<i32>>,
}

/// Periodic reconciliation bounds: often enough to matter, rarely enough for the rate limit.
pub const RECONCILE_MINUTES: std::ops::RangeInclusive<i32> = 15..=10_080;

pub fn webhook_url(public_url: &str, webhook_key: &str) -> String {
    format!("{public_url}/webhooks/hotmart/{webhook_key}")
}

fn info(last4: &Option<String>) -> SecretInfo {
    SecretInfo {
        set: last4.is_some(),
        last4: last4.clone(),
    }
}

pub async fn find(db: &impl ConnectionTrait, app_id: i32) -> AppResult<Option<hi::Model>> {
    Ok(hi::Entity::find().filter(hi::Column::AppId.eq(app_id)).one(db).await?)
}

pub async fn view(state: &AppState, app_id: i32) -> AppResult<IntegrationView> {
    let app = entity::app::Entity::find_by_id(app_id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AppError::not_found("app not found"))?;
    let row = find(&state.db, app_id).await?;
    let none = SecretInfo {
        set: false,
        last4: None,
    };
    Ok(IntegrationView {
        webhook_url: webhook_url(&state.settings.public_url, &app.webhook_key),
        environment: row
            .as_ref()
            .map_or(Environment::Production, |r| Environment::parse(&r.environment)),
        hottok: row.as_ref().map(|r| info(&r.hottok_last4)).unwrap_or(none.clone()),
        basic: row.as_ref().map(|r| info(&r.basic_last4)).unwrap_or(none.clone()),
        client_id: row.as_ref().map(|r| info(&r.client_id_last4)).unwrap_or(none.clone()),
        client_secret: row.as_ref().map(|r| info(&r.client_secret_last4)).unwrap_or(none),
        last_webhook_at: row.as_ref().and_then(|r| r.last_webhook_at),
        last_test_event_at: row.as_ref().and_then(|r| r.last_test_event_at),
        rejected_webhooks: row.as_ref().map_or(0, |r| r.rejected_webhooks),
        last_rejected_at: row.as_ref().and_then(|r| r.last_rejected_at),
        last_rejected_reason: row.as_ref().and_then(|r| r.last_rejected_reason.clone()),
        reconcile_every_minutes: row.as_ref().and_then(|r| r.reconcile_every_minutes),
    })
}

fn check_hottok(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("Hottok is empty: copy it from Hotmart → Tools → Webhook → Authentication".into());
    }
    if v.len() > 512 {
        return Err("Hottok is longer than 512 characters".into());
    }
    if !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("Hottok must be printable ASCII without spaces".into());
    }
    Ok(())
}

fn check_uuid(label: &str, v: &str) -> Result<(), String> {
    let ok = v.len() == 36 && uuid::Uuid::try_parse(v).is_ok();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{label} must be a UUID like 3f2a9c1e-0b7d-4e8a-9c55-1d2e3f4a5b6c"
        ))
    }
}

/// Basic is `base64(client_id:client_secret)`, with or without a leading `Basic `.
fn check_basic(v: &str, client_id: Option<&str>, client_secret: Option<&str>) -> Result<(), String> {
    let raw = v.trim();
    let encoded = raw
        .strip_prefix("Basic ")
        .or_else(|| raw.strip_prefix("basic "))
        .unwrap_or(raw)
        .trim();
    let decoded = B64.decode(encoded).map_err(|_| {
        "Basic is not valid base64 (it should be the Basic token Hotmart shows next to the credentials)".to_string()
    })?;
    let decoded = String::from_utf8(decoded).map_err(|_| "Basic does not decode to text".to_string())?;
    let Some((id, secret)) = decoded.split_once(':') else {
        return Err("Basic must decode to client_id:client_secret".into());
    };
    match (client_id, client_secret) {
        (Some(cid), Some(cs)) if cid == id && cs == secret => Ok(()),
        (Some(cid), _) if cid != id => {
            Err("Basic does not match the Client ID (it encodes a different client id)".into())
        }
        (Some(_), Some(_)) => Err("Basic does not match the Client Secret".into()),
        _ => Err("Basic can only be checked together with a Client ID and Client Secret".into()),
    }
}

struct Plain {
    basic: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn slot(app_id: i32, field: &'static str) -> Slot<'static> {
    Slot { app_id, field }
}

use crate::pipeline::ingest::decrypt_opt;

/// Rewrites every stored secret with `to`'s current key (reading with `from`, which has the old
/// keys), in the caller's transaction. Returns how many values were rewritten.
pub async fn reencrypt_all(db: &impl ConnectionTrait, from: &SecretBox, to: &SecretBox) -> AppResult<usize> {
    let mut n = 0;
    for row in hi::Entity::find().all(db).await? {
        let app_id = row.app_id;
        let mut am: hi::ActiveModel = row.clone().into();
        let columns = [
            (&row.hottok_enc, "hottok"),
            (&row.basic_enc, "basic"),
            (&row.client_id_enc, "client_id"),
            (&row.client_secret_enc, "client_secret"),
        ];
        for (value, field) in columns {
            let Some(plain) = decrypt_opt(from, value, slot(app_id, field))? else {
                continue;
            };
            let enc = Some(to.encrypt(&plain, slot(app_id, field)).map_err(AppError::internal)?);
            match field {
                "hottok" => am.hottok_enc = Set(enc),
                "basic" => am.basic_enc = Set(enc),
                "client_id" => am.client_id_enc = Set(enc),
                _ => am.client_secret_enc = Set(enc),
            }
            n += 1;
        }
        am.update(db).await?;
    }
    Ok(n)
}

pub async fn save(state: &AppState, who: &Principal, input: IntegrationInput) -> AppResult<IntegrationView> {
    who.require_admin()?;
    let trim = |v: Option<String>| v.map(|s| s.trim().to_string());
    let input = IntegrationInput {
        hottok: trim(input.hottok),
        basic: trim(input.basic),
        client_id: trim(input.client_id),
        client_secret: trim(input.client_secret),
        environment: input.environment,
        reconcile_every_minutes: input.reconcile_every_minutes,
    };
    let txn = AdminWrite::begin(state, who).await?;
    let existing = find(&txn, who.app_id).await?;
    // Stored values are read only to check a new pair against them. One that cannot be read (a
    // lost master key) counts as absent, so an admin can always overwrite it.
    let mut unreadable = false;
    let mut readable =
        |v: &Option<String>, field: &'static str| match decrypt_opt(&state.secrets, v, slot(who.app_id, field)) {
            Ok(p) => p,
            Err(_) => {
                unreadable = true;
                None
            }
        };
    let stored = match &existing {
        Some(r) => Plain {
            basic: readable(&r.basic_enc, "basic"),
            client_id: readable(&r.client_id_enc, "client_id"),
            client_secret: readable(&r.client_secret_enc, "client_secret"),
        },
        None => Plain {
            basic: None,
            client_id: None,
            client_secret: None,
        },
    };

    let mut errors = Vec::new();
    if let Some(v) = &input.hottok
        && let Err(m) = check_hottok(v)
    {
        errors.push(("hottok".to_string(), m));
    }
    if let Some(v) = &input.client_id
        && let Err(m) = check_uuid("Client ID", v)
    {
        errors.push(("clientId".to_string(), m));
    }
    if let Some(v) = &input.client_secret
        && let Err(m) = check_uuid("Client Secret", v)
    {
        errors.push(("clientSecret".to_string(), m));
    }
    let client_id = input.client_id.clone().or(stored.client_id.clone());
    let client_secret = input.client_secret.clone().or(stored.client_secret.clone());
    // A new pair must still agree with the Basic token, whether that is new or stored.
    let basic = input.basic.clone().or(stored.basic.clone());
    let pair_changed = input.basic.is_some() || input.client_id.is_some() || input.client_secret.is_some();
    if pair_changed
        && errors.iter().all(|(f, _)| f == "hottok")
        && let Some(b) = &basic
        && let Err(m) = check_basic(b, client_id.as_deref(), client_secret.as_deref())
    {
        let m = if unreadable {
            format!(
                "{m}; the stored credentials cannot be read (master key changed?), so enter Basic, Client ID and Client Secret together"
            )
        } else {
            m
        };
        errors.push(("basic".to_string(), m));
    }
    if let Some(Some(m)) = input.reconcile_every_minutes
        && !RECONCILE_MINUTES.contains(&m)
    {
        errors.push((
            "reconcileEveryMinutes".to_string(),
            format!(
                "reconcileEveryMinutes must be between {} and {} (or null to turn it off)",
                RECONCILE_MINUTES.start(),
                RECONCILE_MINUTES.end()
            ),
        ));
    }
    if !errors.is_empty() {
        return Err(AppError::InvalidFields(errors));
    }

    let enc = |v: &str, field: &'static str| {
        state
            .secrets
            .encrypt(v, slot(who.app_id, field))
            .map_err(AppError::internal)
    };
    let now = super::now();
    let before = existing.as_ref().map(audit_view);
    let mut am: hi::ActiveModel = match existing {
        Some(r) => r.into(),
        None => hi::ActiveModel {
            app_id: Set(who.app_id),
            environment: Set(Environment::Production.as_str().into()),
            rejected_webhooks: Set(0),
            created_at: Set(now),
            ..Default::default()
        },
    };
    if let Some(v) = &input.hottok {
        am.hottok_enc = Set(Some(enc(v, "hottok")?));
        am.hottok_last4 = Set(Some(last4(v)));
    }
    if let Some(v) = &input.basic {
        am.basic_enc = Set(Some(enc(v, "basic")?));
        am.basic_last4 = Set(Some(last4(v)));
    }
    if let Some(v) = &input.client_id {
        am.client_id_enc = Set(Some(enc(v, "client_id")?));
        am.client_id_last4 = Set(Some(last4(v)));
    }
    if let Some(v) = &input.client_secret {
        am.client_secret_enc = Set(Some(enc(v, "client_secret")?));
        am.client_secret_last4 = Set(Some(last4(v)));
    }
    if let Some(e) = input.environment {
        am.environment = Set(e.as_str().into());
    }
    if let Some(m) = input.reconcile_every_minutes {
        am.reconcile_every_minutes = Set(m);
    }
    am.updated_at = Set(now);
    let saved = am.save(&txn).await?;
    let saved: hi::Model = saved.try_into().map_err(AppError::internal)?;
    let mut change = Change::new("integration.save", "hotmart_integration").after(audit_view(&saved));
    if let Some(b) = before {
        change = change.before(b);
    }
    // New credentials must not reuse a token fetched with the old ones, nor a new Hottok the
    // cached old one.
    txn.commit(change, [Then::Integration]).await?;
    view(state, who.app_id).await
}

/// The REST credentials of an app, decrypted for one call.
pub async fn credentials(state: &AppState, app_id: i32) -> AppResult<crate::hotmart::api::Credentials> {
    let missing = || AppError::bad("save Basic, Client ID and Client Secret with saveHotmartIntegration first");
    let row = find(&state.db, app_id).await?.ok_or_else(missing)?;
    let (Some(basic), Some(id), Some(secret)) = (
        decrypt_opt(&state.secrets, &row.basic_enc, slot(app_id, "basic"))?,
        decrypt_opt(&state.secrets, &row.client_id_enc, slot(app_id, "client_id"))?,
        decrypt_opt(&state.secrets, &row.client_secret_enc, slot(app_id, "client_secret"))?,
    ) else {
        return Err(missing());
    };
    Ok(crate::hotmart::api::Credentials {
        app_id,
        client_id: id,
        client_secret: SecretString::from(secret),
        basic: SecretString::from(basic),
        sandbox: Environment::parse(&row.environment) == Environment::Sandbox,
    })
}

/// What the audit log may know of the integration: which secrets are set, never their values.
fn audit_view(r: &hi::Model) -> serde_json::Value {
    json!({
        "environment": r.environment,
        "hottok": r.hottok_last4.as_ref().map(|l| format!("…{l}")),
        "basic": r.basic_last4.as_ref().map(|l| format!("…{l}")),
        "clientId": r.client_id_last4.as_ref().map(|l| format!("…{l}")),
        "clientSecret": r.client_secret_last4.as_ref().map(|l| format!("…{l}")),
        "reconcileEveryMinutes": r.reconcile_every_minutes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c1e-0b7d-4e8a-9c55-1d2e3f4a5b6c";
    const SECRET: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

    #[test]
    fn basic_must_encode_exactly_the_pair() {
        let good = B64.encode(format!("{ID}:{SECRET}"));
        assert!(check_basic(&good, Some(ID), Some(SECRET)).is_ok());
        assert!(check_basic(&format!("Basic {good}"), Some(ID), Some(SECRET)).is_ok());
        let other = B64.encode(format!("{ID}:{ID}"));
        assert!(
            check_basic(&other, Some(ID), Some(SECRET))
                .unwrap_err()
                .contains("Client Secret")
        );
        assert!(
            check_basic("%%%", Some(ID), Some(SECRET))
                .unwrap_err()
                .contains("base64")
        );
    }

    #[test]
    fn hottok_and_uuid_formats() {
        assert!(check_hottok("abc123XYZ").is_ok());
        assert!(check_hottok("").is_err());
        assert!(check_hottok("has space").is_err());
        assert!(check_uuid("Client ID", ID).is_ok());
        assert!(check_uuid("Client ID", "not-a-uuid").is_err());
    }
}

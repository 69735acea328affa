//! A Hotmart delivery from the route to the inbox, in one call: load shedding, the app behind
//! the URL, the body, the Hottok, and the raw bytes stored (with the Hottok masked) before any
//! parsing can refuse them. Store first, think later: the worker reads them.
use entity::{app, hotmart_integration as hi};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use secrecy::{ExposeSecret, SecretString};

use super::Pipeline;
use super::inbox::{ORIGIN_WEBHOOK, RecordInput, Recorded};
use crate::hotmart::{self, VerifyError};
use crate::secrets::{SecretBox, Slot};
use crate::{AppError, AppResult};

/// What the route knows of a delivery before its body.
pub struct Delivery<'a> {
    pub key: &'a str,
    pub content_type: Option<&'a str>,
    pub hottok_header: Option<&'a str>,
    /// Headers worth keeping next to the raw body; never the token itself.
    pub headers: serde_json::Value,
}

/// Why the body could not be read.
pub enum BodyError {
    TooLarge,
    Unreadable(String),
}

/// A delivery stored: 200.
#[derive(Debug)]
pub enum Receipt {
    Stored {
        row: i32,
        event_id: String,
        event_type: String,
    },
    Duplicate {
        event_id: String,
    },
    /// Verified but unreadable: kept as `failed` for review and replay.
    Unreadable {
        row: i32,
        event_id: String,
        reason: String,
    },
}

/// A delivery refused, and nothing of it acknowledged.
#[derive(Debug)]
pub enum Refusal {
    /// Too many deliveries in flight: 503, deliver again later.
    Busy,
    UnknownKey,
    TooLarge(usize),
    BadBody(String),
    /// The app has no Hottok yet.
    NotConfigured,
    Hottok(VerifyError),
    /// Neither JSON nor a form.
    Malformed(String),
    /// The app or its Hottok could not be read.
    Unavailable(AppError),
    /// Could not be stored: never a 2xx, so Hotmart delivers again.
    NotStored(AppError),
}

/// Receives one delivery: `body` is read only once the app is known.
pub async fn receive(
    p: &Pipeline,
    d: Delivery<'_>,
    body: impl Future<Output = Result<Vec<u8>, BodyError>>,
) -> Result<Receipt, Refusal> {
    // Load shedding before the body is read: past this many deliveries in flight, each would
    // only wait (holding a connection and its bytes) behind the others; Hotmart retries a 503.
    let Ok(_slot) = p.webhook_slots.try_acquire() else {
        return Err(Refusal::Busy);
    };
    let app = app_by_key(p, d.key)
        .await
        .map_err(Refusal::Unavailable)?
        .ok_or(Refusal::UnknownKey)?;
    let raw = body.await.map_err(|e| match e {
        BodyError::TooLarge => Refusal::TooLarge(p.settings.webhook_body_limit),
        BodyError::Unreadable(why) => Refusal::BadBody(why),
    })?;
    let format = hotmart::detect_format(d.content_type, &raw);
    let Some(expected) = hottok(p, app.id).await.map_err(Refusal::Unavailable)? else {
        note_refusal(&p.db, app.id, "NOT_CONFIGURED").await;
        return Err(Refusal::NotConfigured);
    };
    // Bytes that are neither JSON nor a form are no delivery: 400 (after the token check, so
    // only the Hottok's holder learns why).
    let intake = hotmart::intake_with(format, &raw, !p.settings.keep_personal_data);
    // The header is the documented place; a body `hottok` (v1 forms, some v2 test events) is accepted too.
    let provided = d
        .hottok_header
        .map(str::to_string)
        .or_else(|| intake.as_ref().ok().and_then(|i| i.body_hottok.clone()));
    let secret = expected.expose_secret();
    if let Err(why) = hotmart::verify_hottok(secret, provided.as_deref()) {
        let reason = match why {
            hotmart::VerifyError::Missing => "MISSING_HOTTOK",
            hotmart::VerifyError::Mismatch => "WRONG_HOTTOK",
        };
        note_refusal(&p.db, app.id, reason).await;
        tracing::warn!(app = %app.slug, reason = %why, "webhook rejected");
        return Err(Refusal::Hottok(why));
    }
    let mut intake = intake.map_err(|e| Refusal::Malformed(e.0))?;
    // A verified delivery is kept even when we cannot read it; the Hottok never reaches the disk
    // in clear, nor (unless the seller keeps them) the buyer's document, phones and address.
    let raw = hotmart::mask_secret(intake.minimised.as_deref().unwrap_or(&raw), secret);
    intake.minimised = None;
    let (event_id, event_type, occurred_at, is_test, unreadable) = match intake.envelope {
        Ok(e) => (e.event_id, e.event_type, e.occurred_at, e.is_test, None),
        Err(hotmart::ParseError(reason)) => (
            hotmart::unreadable_id(&raw),
            "UNREADABLE".to_string(),
            None,
            false,
            Some(format!(
                "cannot read the delivery: {reason}; it is kept for review and can be replayed"
            )),
        ),
    };
    let input = RecordInput {
        app_id: app.id,
        origin: ORIGIN_WEBHOOK,
        event_id: event_id.clone(),
        event_type: event_type.clone(),
        format,
        raw,
        headers: d.headers,
        occurred_at,
        is_test,
        unreadable: unreadable.clone(),
    };
    match p.ingest.record(input).await.map_err(Refusal::NotStored)? {
        Recorded::New(row) => match unreadable {
            Some(reason) => {
                tracing::warn!(app = %app.slug, row, reason = %reason, "webhook stored as failed");
                Ok(Receipt::Unreadable { row, event_id, reason })
            }
            None => {
                p.wake_worker();
                tracing::info!(app = %app.slug, event = %event_type, event_id = %event_id, row, "webhook stored");
                Ok(Receipt::Stored {
                    row,
                    event_id,
                    event_type,
                })
            }
        },
        Recorded::Duplicate => Ok(Receipt::Duplicate { event_id }),
    }
}

/// The app behind a webhook key, from the webhook path's cache (a key never changes its app).
pub async fn app_by_key(p: &Pipeline, key: &str) -> AppResult<Option<app::Model>> {
    if let Some(a) = p.hot.apps_by_key.get(key) {
        return Ok(Some(a));
    }
    let found = app::Entity::find()
        .filter(app::Column::WebhookKey.eq(key))
        .one(&p.db)
        .await?;
    if let Some(a) = &found {
        p.hot.apps_by_key.insert(key.to_string(), a.clone());
    }
    Ok(found)
}

/// The Hottok to check deliveries against (cached, decrypted, for a minute at most; saving the
/// integration drops it at once).
pub async fn hottok(p: &Pipeline, app_id: i32) -> AppResult<Option<SecretString>> {
    if let Some(t) = p.hot.hottoks.get(&app_id) {
        return Ok(t);
    }
    let t = match hi::Entity::find()
        .filter(hi::Column::AppId.eq(app_id))
        .one(&p.db)
        .await?
    {
        Some(row) => decrypt_opt(
            &p.secrets,
            &row.hottok_enc,
            Slot {
                app_id,
                field: "hottok",
            },
        )?
        .map(SecretString::from),
        None => None,
    };
    p.hot.hottoks.insert(app_id, t.clone());
    Ok(t)
}

/// Counts a delivery refused for its Hottok (the console shows it).
/// Counts a refused delivery and remembers when and why (never its body), for the console's
/// "it arrived, but…". An app with no integration row yet gets one. A failure here is logged:
/// the refusal stands either way.
async fn note_refusal(db: &impl ConnectionTrait, app_id: i32, reason: &str) {
    if let Err(e) = record_refusal(db, app_id, reason).await {
        e.log();
    }
}

async fn record_refusal(db: &impl ConnectionTrait, app_id: i32, reason: &str) -> AppResult<()> {
    use sea_orm::sea_query::{Expr, ExprTrait};
    let now = chrono::Utc::now();
    let n = hi::Entity::update_many()
        .col_expr(
            hi::Column::RejectedWebhooks,
            Expr::col(hi::Column::RejectedWebhooks).add(1),
        )
        .col_expr(hi::Column::LastRejectedAt, Expr::value(now))
        .col_expr(hi::Column::LastRejectedReason, Expr::value(reason))
        .filter(hi::Column::AppId.eq(app_id))
        .exec(db)
        .await?
        .rows_affected;
    if n == 0 {
        let row = hi::ActiveModel {
            app_id: Set(app_id),
            environment: Set("PRODUCTION".into()),
            rejected_webhooks: Set(1),
            last_rejected_at: Set(Some(now)),
            last_rejected_reason: Set(Some(reason.to_string())),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        // Two first refusals at once: the second finds the first's row next time.
        if let Err(e) = hi::Entity::insert(row).exec(db).await
            && !crate::db::is_unique_violation(&e)
        {
            return Err(e.into());
        }
    }
    Ok(())
}

/// A stored secret, decrypted. An unreadable one (the master key was lost or changed) is an
/// operator problem with a clear reason, never a 500.
pub fn decrypt_opt(secrets: &SecretBox, v: &Option<String>, at: Slot<'_>) -> AppResult<Option<String>> {
    v.as_deref()
        .map(|s| {
            secrets.decrypt(s, at).map_err(|e| {
                AppError::Misconfigured(format!(
                    "the stored Hotmart {} of this app cannot be read ({e}); restore the master key, or save the secret again",
                    at.field
                ))
            })
        })
        .transpose()
}

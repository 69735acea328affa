//! `POST /webhooks/hotmart/{webhookKey}`: verify, store the raw bytes, answer. Processing happens
//! in the worker, so the answer never waits for rules.
use poem::http::{HeaderMap, StatusCode};
use poem::web::{Data, Json, Path};
use poem::{Body, IntoResponse, Response, handler};
use serde_json::json;

use crate::hotmart::{self, VerifyError};
use crate::services::{apps, inbox, integration};
use crate::{AppError, AppState};

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn fail(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    crate::telemetry::webhook(match status.as_u16() {
        401 => "unauthorized",
        404 => "unknown_key",
        413 => "too_large",
        400 => "malformed",
        _ => "error",
    });
    reply(status, json!({"error": code, "message": message.into()}))
}

fn from_app_error(e: AppError) -> Response {
    e.log();
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // 503 tells Hotmart to deliver again later; we never acknowledge what we did not store.
    fail(status, e.code(), e.public_message())
}

/// Headers worth keeping next to the raw body; never the token itself.
fn kept_headers(h: &HeaderMap) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for name in ["content-type", "user-agent", "x-forwarded-for", "x-request-id"] {
        if let Some(v) = h.get(name).and_then(|v| v.to_str().ok()) {
            m.insert(name.into(), v.into());
        }
    }
    serde_json::Value::Object(m)
}

#[handler]
pub async fn receive_hotmart(
    state: Data<&AppState>,
    Path(key): Path<String>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let state = *state;
    // Load shedding before the body is read: past this many deliveries in flight, each would
    // only wait (holding a connection and its bytes) behind the others; Hotmart retries a 503.
    let Ok(_slot) = state.webhook_slots.try_acquire() else {
        return fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "BUSY",
            "too many deliveries in flight; deliver again later",
        );
    };
    let app = match apps::by_webhook_key_cached(state, &key).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return fail(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "no app has this webhook URL; copy it again from hotmartIntegration.webhookUrl",
            );
        }
        Err(e) => return from_app_error(e),
    };
    let raw = match body.into_bytes_limit(state.settings.webhook_body_limit).await {
        Ok(b) => b.to_vec(),
        Err(poem::error::ReadBodyError::PayloadTooLarge) => {
            return fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("body is larger than {} bytes", state.settings.webhook_body_limit),
            );
        }
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("cannot read the body: {e}"),
            );
        }
    };
    let format = hotmart::detect_format(headers.get("content-type").and_then(|v| v.to_str().ok()), &raw);

    let expected = match integration::hottok(state, app.id).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            return fail(
                StatusCode::UNAUTHORIZED,
                "NOT_CONFIGURED",
                "the Hotmart integration of this app has no Hottok yet: save it with saveHotmartIntegration",
            );
        }
        Err(e) => return from_app_error(e),
    };
    let header_token = headers
        .get("x-hotmart-hottok")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Bytes that are neither JSON nor a form are no delivery: 400 (after the token check, so
    // only the Hottok's holder learns why).
    let intake = hotmart::intake(format, &raw);
    // The header is the documented place; a body `hottok` (v1 forms, some v2 test events) is accepted too.
    let provided = header_token.or_else(|| intake.as_ref().ok().and_then(|i| i.body_hottok.clone()));
    let secret = secrecy::ExposeSecret::expose_secret(&expected);
    if let Err(why) = hotmart::verify_hottok(secret, provided.as_deref()) {
        if let Err(e) = integration::count_rejected(&state.db, app.id).await {
            e.log();
        }
        tracing::warn!(app = %app.slug, reason = %why, "webhook rejected");
        let code = match why {
            VerifyError::Missing => "MISSING_HOTTOK",
            VerifyError::Mismatch => "INVALID_HOTTOK",
        };
        return fail(StatusCode::UNAUTHORIZED, code, why.to_string());
    }
    let intake = match intake {
        Ok(i) => i,
        Err(e) => return fail(StatusCode::BAD_REQUEST, "MALFORMED_PAYLOAD", e.0),
    };
    // Store first, think later: a verified delivery is kept even when we cannot read it, and
    // the Hottok never reaches the disk in clear.
    let raw = hotmart::mask_secret(&raw, secret);
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
    let input = inbox::RecordInput {
        app_id: app.id,
        origin: "webhook",
        event_id: event_id.clone(),
        event_type: event_type.clone(),
        format: format.as_str(),
        raw,
        headers: kept_headers(headers),
        occurred_at,
        is_test,
        unreadable: unreadable.clone(),
    };
    match inbox::record(state, input).await {
        Ok(inbox::Recorded::New(id)) => {
            if let Some(why) = &unreadable {
                crate::telemetry::webhook("unreadable");
                tracing::warn!(app = %app.slug, row = id, reason = %why, "webhook stored as failed");
                return reply(
                    StatusCode::OK,
                    json!({"status": "accepted", "eventId": event_id, "duplicate": false, "readable": false, "reason": why}),
                );
            }
            crate::telemetry::webhook("accepted");
            state.wake_worker();
            tracing::info!(app = %app.slug, event = %event_type, event_id = %event_id, row = id, "webhook stored");
            reply(
                StatusCode::OK,
                json!({"status": "accepted", "eventId": event_id, "duplicate": false}),
            )
        }
        Ok(inbox::Recorded::Duplicate) => {
            crate::telemetry::webhook("duplicate");
            reply(
                StatusCode::OK,
                json!({"status": "accepted", "eventId": event_id, "duplicate": true}),
            )
        }
        // Whatever failed, we did not store it: never a 2xx, so Hotmart delivers again.
        Err(e) => {
            e.log();
            fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the event could not be stored; please deliver it again",
            )
        }
    }
}

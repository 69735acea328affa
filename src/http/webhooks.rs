//! `POST /webhooks/hotmart/{webhookKey}`: verify, store the raw bytes, answer. Processing happens
//! in the worker, so the answer never waits for rules.
use poem::http::{HeaderMap, StatusCode};
use poem::web::{Data, Json, Path};
use poem::{Body, IntoResponse, Response, handler};
use serde_json::json;

use crate::hotmart::VerifyError;
use crate::pipeline::ingest::{self, BodyError, Delivery, Receipt, Refusal};
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
    if state.is_draining() {
        // This instance is stopping: Hotmart delivers again, to another one behind the balancer.
        let mut r = fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "DRAINING",
            "this instance is stopping; deliver again",
        );
        r.headers_mut()
            .insert("retry-after", poem::http::HeaderValue::from_static("5"));
        return r;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let delivery = Delivery {
        key: &key,
        content_type: header("content-type"),
        hottok_header: header("x-hotmart-hottok"),
        headers: kept_headers(headers),
    };
    let limit = state.settings.webhook_body_limit;
    let body = async move {
        match body.into_bytes_limit(limit).await {
            Ok(b) => Ok(b.to_vec()),
            Err(poem::error::ReadBodyError::PayloadTooLarge) => Err(BodyError::TooLarge),
            Err(e) => Err(BodyError::Unreadable(e.to_string())),
        }
    };
    match ingest::receive(&state, delivery, body).await {
        Ok(Receipt::Stored { event_id, .. }) => {
            crate::telemetry::webhook("accepted");
            reply(
                StatusCode::OK,
                json!({"status": "accepted", "eventId": event_id, "duplicate": false}),
            )
        }
        Ok(Receipt::Duplicate { event_id }) => {
            crate::telemetry::webhook("duplicate");
            reply(
                StatusCode::OK,
                json!({"status": "accepted", "eventId": event_id, "duplicate": true}),
            )
        }
        Ok(Receipt::Unreadable { event_id, reason, .. }) => {
            crate::telemetry::webhook("unreadable");
            reply(
                StatusCode::OK,
                json!({"status": "accepted", "eventId": event_id, "duplicate": false, "readable": false, "reason": reason}),
            )
        }
        Err(r) => refused(r),
    }
}

fn refused(r: Refusal) -> Response {
    match r {
        Refusal::Busy => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "BUSY",
            "too many deliveries in flight; deliver again later",
        ),
        Refusal::UnknownKey => fail(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no app has this webhook URL; copy it again from hotmartIntegration.webhookUrl",
        ),
        Refusal::TooLarge(limit) => fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("body is larger than {limit} bytes"),
        ),
        Refusal::BadBody(why) => fail(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            format!("cannot read the body: {why}"),
        ),
        Refusal::NotConfigured => fail(
            StatusCode::UNAUTHORIZED,
            "NOT_CONFIGURED",
            "the Hotmart integration of this app has no Hottok yet: save it with saveHotmartIntegration",
        ),
        Refusal::Hottok(why) => {
            let code = match why {
                VerifyError::Missing => "MISSING_HOTTOK",
                VerifyError::Mismatch => "INVALID_HOTTOK",
            };
            fail(StatusCode::UNAUTHORIZED, code, why.to_string())
        }
        Refusal::Malformed(why) => fail(StatusCode::BAD_REQUEST, "MALFORMED_PAYLOAD", why),
        Refusal::Unavailable(e) => from_app_error(e),
        // Whatever failed, we did not store it.
        Refusal::NotStored(e) => {
            e.log();
            fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the event could not be stored; please deliver it again",
            )
        }
    }
}

use poem::http::StatusCode;
use poem::web::{Data, Json};
use poem::{IntoResponse, handler};
use serde_json::json;

use crate::AppState;

#[handler]
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Answers within a second whatever the database does: a load balancer must not wait for the
/// pool's acquire timeout to learn that the database is gone.
///
/// Ready means "can take a webhook": while the latest webhooks could not be stored (disk full,
/// read-only, database down), 503 with the reason, until a write commits again.
#[handler]
pub async fn readyz(state: Data<&AppState>) -> poem::Response {
    let unavailable = |status: &str, reason: Option<String>| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": status, "reason": reason})),
        )
            .into_response()
    };
    if state.is_draining() {
        return unavailable("draining", Some("this instance is stopping".into()));
    }
    let second = std::time::Duration::from_secs(1);
    match tokio::time::timeout(second, state.db.ping()).await {
        Ok(Ok(())) => {}
        _ => return unavailable("database unavailable", None),
    }
    match tokio::time::timeout(second, state.ingest.cannot_store(&state.db)).await {
        Ok(None) => Json(json!({"status": "ready"})).into_response(),
        Ok(Some(why)) => unavailable(
            "cannot store webhooks",
            Some(format!("the latest webhooks could not be stored: {why}")),
        ),
        Err(_) => unavailable(
            "cannot store webhooks",
            Some("a test write did not finish within a second".into()),
        ),
    }
}

/// Prometheus text format. The backlog is counted at scrape time, waited for at most a second
/// (`inbox::measure_backlog`): while the database is down or hung, the scrape still answers
/// within that second with every counter (the webhooks answered 503 among them).
#[handler]
pub async fn metrics(state: Data<&AppState>) -> poem::Response {
    crate::services::overview::measure_backlog(&state).await;
    poem::Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(crate::telemetry::render())
}

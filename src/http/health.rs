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
#[handler]
pub async fn readyz(state: Data<&AppState>) -> poem::Response {
    match tokio::time::timeout(std::time::Duration::from_secs(1), state.db.ping()).await {
        Ok(Ok(())) => Json(json!({"status": "ready"})).into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "database unavailable"})),
        )
            .into_response(),
    }
}

/// Prometheus text format. The backlog is counted at scrape time, waited for at most a second
/// (`inbox::measure_backlog`): while the database is down or hung, the scrape still answers
/// within that second with every counter (the webhooks answered 503 among them).
#[handler]
pub async fn metrics(state: Data<&AppState>) -> poem::Response {
    crate::services::inbox::measure_backlog(&state).await;
    poem::Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(crate::telemetry::render())
}

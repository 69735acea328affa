use poem::http::{HeaderMap, StatusCode};
use poem::web::{Data, Html};
use poem::{Body, IntoResponse, Response, handler};

use crate::AppState;
use crate::graphql::{ApiSchemas, execute, graphiql_html};

#[handler]
pub async fn graphiql() -> impl IntoResponse {
    Html(graphiql_html())
}

/// Our own handler rather than the stock endpoint: a body limit and no batching.
#[handler]
pub async fn handler(schema: Data<&ApiSchemas>, state: Data<&AppState>, headers: &HeaderMap, body: Body) -> Response {
    let limit = state.settings.graphql_body_limit;
    let raw = match body.into_bytes_limit(limit).await {
        Ok(b) => b,
        Err(poem::error::ReadBodyError::PayloadTooLarge) => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                crate::graphql::error_body("BAD_USER_INPUT", &format!("request body is larger than {limit} bytes")),
            );
        }
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                crate::graphql::error_body("BAD_USER_INPUT", &format!("cannot read the body: {e}")),
            );
        }
    };
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).map(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim()
            .to_string()
    });
    let (ok, body) = execute(&schema, &state, bearer.as_deref(), &raw).await;
    json_response(if ok { StatusCode::OK } else { StatusCode::BAD_REQUEST }, body)
}

fn json_response(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body)
}

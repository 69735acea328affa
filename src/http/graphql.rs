use poem::http::{HeaderMap, StatusCode};
use poem::web::{Data, Html};
use poem::{Body, IntoResponse, Response, handler};

use crate::AppState;
use crate::graphql::{ApiSchemas, Credential, execute};

/// GraphiQL, with its scripts and styles inside the binary (see `graphiql/VENDORED.md`).
#[handler]
pub async fn graphiql() -> impl IntoResponse {
    Html(include_str!("graphiql/index.html"))
}

/// The vendored GraphiQL files, stored gzip-compressed and sent as they are.
#[handler]
pub async fn graphiql_asset(poem::web::Path(name): poem::web::Path<String>) -> Response {
    let (body, content_type): (&'static [u8], &str) = match name.as_str() {
        "graphiql.min.js" => (include_bytes!("graphiql/graphiql.min.js.gz"), "text/javascript"),
        "graphiql.min.css" => (include_bytes!("graphiql/graphiql.min.css.gz"), "text/css"),
        "react.production.min.js" => (include_bytes!("graphiql/react.production.min.js.gz"), "text/javascript"),
        "react-dom.production.min.js" => (
            include_bytes!("graphiql/react-dom.production.min.js.gz"),
            "text/javascript",
        ),
        "graphiql-init.js" => {
            return Response::builder()
                .content_type("text/javascript")
                .body(include_str!("graphiql/graphiql-init.js"));
        }
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    Response::builder()
        .content_type(content_type)
        .header("content-encoding", "gzip")
        .header("cache-control", "public, max-age=86400")
        .body(body)
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
    let session = super::console::session_of(headers);
    let credential = match (&bearer, &session) {
        (Some(b), _) => Credential::Bearer(b),
        (None, Some(s)) => Credential::Session(s),
        (None, None) => Credential::None,
    };
    let (ok, body) = execute(&schema, &state, credential, &raw).await;
    json_response(if ok { StatusCode::OK } else { StatusCode::BAD_REQUEST }, body)
}

fn json_response(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body)
}

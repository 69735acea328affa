//! The only module that knows poem: routes, the webhook handler, health checks and the GraphQL
//! endpoint.
mod console;
mod graphql;
mod health;
pub mod v1;
mod webhooks;

use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route, Server, get, post};
use tokio::sync::watch;

use crate::AppState;

pub fn routes(state: AppState) -> impl poem::Endpoint {
    let schema = crate::graphql::schema(state.clone());
    Route::new()
        .at("/", get(console::to_console))
        .nest("/console", console::routes())
        .at("/healthz", get(health::healthz))
        .at("/readyz", get(health::readyz))
        .at("/metrics", get(health::metrics))
        .at("/graphql", get(graphql::graphiql).post(graphql::handler))
        .at("/graphql/assets/:name", get(graphql::graphiql_asset))
        .at("/webhooks/hotmart/:key", post(webhooks::receive_hotmart))
        .nest("/v1", v1::routes())
        .data(state)
        .data(schema)
        .around(access_log)
}

/// The path as logs may show it: a webhook key is a credential (whoever has the URL can post
/// to it), so only its last four characters are kept.
pub fn loggable_path(path: &str) -> String {
    match path.strip_prefix("/webhooks/hotmart/") {
        Some(key) => {
            let tail: String = key
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("/webhooks/hotmart/…{tail}")
        }
        None => path.to_string(),
    }
}

/// The request's id: the caller's `x-request-id` when it is a plain token (a proxy's), else a
/// new one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map_or_else(minted_id, str::to_string)
}

/// A new request id: this process's random prefix and a counter, 32 hex digits. Unique across
/// processes without a random draw per request (a `getrandom` call each, on the ack and the
/// access check).
fn minted_id() -> String {
    static PREFIX: std::sync::LazyLock<u64> = std::sync::LazyLock::new(rand::random);
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:016x}{n:016x}", *PREFIX)
}

/// One line per request: method, masked path (no query string), status and time taken. Every
/// line logged while the request is handled carries its `request_id`, which the answer returns
/// as `x-request-id`.
async fn access_log<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    use tracing::Instrument;
    let id = request_id(&req);
    let span = tracing::info_span!("request", request_id = %id);
    let method = req.method().clone();
    let path = loggable_path(req.uri().path());
    let started = std::time::Instant::now();
    let mut res = next
        .call(req)
        .instrument(span.clone())
        .await
        .map_or_else(poem::Error::into_response, IntoResponse::into_response);
    if let Ok(v) = poem::http::HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    // Whatever answered 503 (a database away, a full inbox), clients may try again shortly.
    if res.status() == poem::http::StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut()
            .entry(poem::http::header::RETRY_AFTER)
            .or_insert(poem::http::HeaderValue::from_static("1"));
    }
    span.in_scope(|| {
        tracing::info!(
            target: "porteiro::http",
            %method,
            path = %path,
            status = res.status().as_u16(),
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    });
    Ok(res)
}

pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpAcceptor> {
    TcpListener::bind(addr).into_acceptor().await
}

pub fn local_addr(acceptor: &TcpAcceptor) -> Option<std::net::SocketAddr> {
    acceptor.local_addr().first().and_then(|a| a.as_socket_addr().copied())
}

/// Serves until `shutdown` flips, then lets requests in flight finish.
pub async fn serve(state: AppState, acceptor: TcpAcceptor, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            routes(state),
            async move {
                let _ = shutdown.changed().await;
            },
            Some(std::time::Duration::from_secs(10)),
        )
        .await
}

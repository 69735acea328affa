//! The only module that knows poem: routes, the webhook handler, health checks and the GraphQL
//! endpoint.
mod graphql;
mod health;
mod webhooks;

use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::middleware::Tracing;
use poem::{EndpointExt, Route, Server, get, post};
use tokio::sync::watch;

use crate::AppState;

pub fn routes(state: AppState) -> impl poem::Endpoint {
    let schema = crate::graphql::schema(state.clone());
    Route::new()
        .at("/healthz", get(health::healthz))
        .at("/readyz", get(health::readyz))
        .at("/metrics", get(health::metrics))
        .at("/graphql", get(graphql::graphiql).post(graphql::handler))
        .at("/webhooks/hotmart/:key", post(webhooks::receive_hotmart))
        .data(state)
        .data(schema)
        .with(Tracing)
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

//! Porteiro: delivers digital products sold on Hotmart.
//!
//! Two flows, each in a straight line (see `docs/architecture.md`):
//! webhook → `http::webhooks` → `pipeline::ingest` (`hotmart::verify`, `pipeline::inbox`'s group
//! commit) → 200; `pipeline::worker` → `hotmart::payload` → `rules` → `pipeline::ledger` (facts →
//! `domain::access::project` → entitlement, audit, outbox) → `pipeline::dispatch`;
//! GraphQL → `http` → `graphql` → `services` → `pipeline` / `entity`.
//!
//! Calls go one way: `app` (the process) → `http` → `graphql` → `services` → `state` →
//! `pipeline` → `domain`, `rules`, `hotmart`, `audit`, `db`, `entity`. `.ci/cycles.py` checks it.
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod hotmart;
pub mod http;
pub mod jobs;
pub mod lease;
pub mod ops;
pub mod pipeline;
pub mod rate_limit;
pub mod rules;
pub mod secrets;
pub mod services;
pub mod state;
pub mod telemetry;

pub use error::{AppError, AppResult};
pub use state::AppState;

/// rustls needs one crypto provider chosen per process (sqlx and reqwest would otherwise disagree).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// This build's version and the commit it was built from (`porteiro --version`, backups' manifests).
pub const fn version() -> &'static str {
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("BUILT_FROM_COMMIT"), ")")
}

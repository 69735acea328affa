//! Porteiro: delivers digital products sold on Hotmart.
//!
//! Two flows, each in a straight line (see `docs/architecture.md`):
//! webhook → `http::webhooks` → `hotmart::verify` → `services::inbox` (group commit) → 200;
//! `services::processor` (the worker) → `hotmart::payload` → `rules` → `services::ledger`
//! (facts → `domain::access::project` → entitlement, audit, outbox) → `services::dispatch`;
//! GraphQL → `http` → `graphql` → `services` → `entity`.
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod hotmart;
pub mod http;
pub mod rules;
pub mod secrets;
pub mod services;
pub mod telemetry;

pub use app::AppState;
pub use error::{AppError, AppResult};

/// rustls needs one crypto provider chosen per process (sqlx and reqwest would otherwise disagree).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

//! Porteiro: delivers digital products sold on Hotmart.
//!
//! Two flows, each in a straight line (see README):
//! webhook → `http::webhooks` → `hotmart` → `services::inbox` → worker → `rules` → `services::entitlements`;
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

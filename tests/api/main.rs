//! One integration binary; one file per capability.
// A test or a benchmark fails by panicking.
#![allow(clippy::unwrap_used)]
mod fake_hotmart;
mod helpers;

mod access;
mod access_model;
mod access_props;
mod api_keys;
mod app_api;
mod auth;
mod backtest;
mod backup;
mod browser;
mod catalog;
mod console;
mod faults;
mod feed;
mod fleet;
mod fuzz;
mod holders;
mod hotmart_api;
mod integration;
mod jobs;
mod migrations;
mod notifications;
mod personal_data;
mod pipeline;
mod rules;
mod schema;
mod security;
mod webhooks;

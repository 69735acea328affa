//! One integration binary; one file per capability.
mod helpers;

mod access;
mod auth;
mod catalog;
mod integration;
mod migrations;
mod pipeline;
mod rules;
mod schema;
mod webhooks;

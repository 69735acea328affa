//! SeaORM entities: the shape of each table, nothing more. Finders live in the services.

pub mod access_fact;
pub mod api_key;
pub mod app;
pub mod audit_log;
pub mod buyer;
pub mod buyer_subscriber_code;
pub mod console_token;
pub mod entitlement;
pub mod erased_source;
pub mod external_product_link;
pub mod hotmart_integration;
pub mod job_lease;
pub mod notification;
pub mod notification_attempt;
pub mod notification_delivery;
pub mod notification_endpoint;
pub mod product_package;
pub mod reconciliation_run;
pub mod rollup;
pub mod rule_backtest;
pub mod rule_script;
pub mod rule_shadow_sample;
pub mod status;
pub mod subscription_plan;
pub mod webhook_event;

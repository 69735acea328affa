//! SeaORM entities: the shape of each table, nothing more. Finders live in the services.

pub mod app;
pub mod hotmart_integration;
pub mod product_package;
pub mod subscription_plan;
pub mod external_product_link;
pub mod buyer;
pub mod buyer_subscriber_code;
pub mod entitlement;
pub mod webhook_event;
pub mod rule_script;
pub mod audit_log;

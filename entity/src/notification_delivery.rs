use sea_orm::entity::prelude::*;

/// One notification to one endpoint: pending until a 2xx, dead after the last retry.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_delivery")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub app_id: i32,
    pub notification_id: i32,
    pub endpoint_id: i32,
    /// PENDING, DELIVERED or DEAD.
    pub status: crate::status::DeliveryStatus,
    pub attempts: i32,
    /// When a sender may take it next (also the lease of a send in progress).
    pub next_attempt_at: Option<DateTimeUtc>,
    pub last_status_code: Option<i32>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    pub last_latency_ms: Option<i32>,
    pub delivered_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

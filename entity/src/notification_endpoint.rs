use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_endpoint")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    /// Public id (`ep_…`), also part of the secrets' associated data.
    pub uid: String,
    pub app_id: i32,
    #[sea_orm(column_type = "Text")]
    pub url: String,
    #[sea_orm(column_type = "Text")]
    pub description: String,
    /// Space-separated event types; empty means every type.
    #[sea_orm(column_type = "Text")]
    pub event_types: String,
    pub enabled: bool,
    #[sea_orm(column_type = "Text", nullable)]
    pub disabled_reason: Option<String>,
    /// The signing secret (`whsec_…`), encrypted with the master key.
    #[sea_orm(column_type = "Text")]
    pub secret: String,
    /// The secret before the last rotation, still signing until `previous_secret_until`.
    #[sea_orm(column_type = "Text", nullable)]
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTimeUtc>,
    pub max_in_flight: i32,
    pub timeout_ms: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

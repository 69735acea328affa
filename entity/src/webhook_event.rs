use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_event")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub app_id: i32,
    pub provider: String,
    pub origin: String,
    pub event_id: String,
    pub event_type: String,
    pub format: crate::status::Format,
    #[sea_orm(column_type = "Blob")]
    pub raw_body: Vec<u8>,
    #[sea_orm(column_type = "Text")]
    pub headers: String,
    pub received_at: DateTimeUtc,
    pub occurred_at: Option<DateTimeUtc>,
    pub status: crate::status::InboxStatus,
    pub is_test: bool,
    pub email: Option<String>,
    pub source_key: Option<String>,
    pub target_kind: Option<String>,
    pub target_id: Option<i32>,
    pub transaction: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub decision: Option<String>,
    pub rule_version: Option<i32>,
    #[sea_orm(column_type = "Text")]
    pub error: Option<String>,
    pub attempts: i32,
    pub processed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

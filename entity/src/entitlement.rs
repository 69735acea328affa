use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "entitlement")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub app_id: i32,
    pub buyer_id: i32,
    pub target_kind: String,
    pub target_id: i32,
    #[sea_orm(column_type = "Text")]
    pub source: String,
    pub status: String,
    pub granted_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    pub expires_at: Option<DateTimeUtc>,
    pub last_event_id: Option<i32>,
    pub rule_version: Option<i32>,
    #[sea_orm(column_type = "Text")]
    pub reason: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

/// A live event on which a shadow version decided otherwise than the active one.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "rule_shadow_sample")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub app_id: i32,
    pub event_type: String,
    pub version: i32,
    pub webhook_event_id: i32,
    #[sea_orm(column_type = "Text")]
    pub active: String,
    #[sea_orm(column_type = "Text")]
    pub shadow: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

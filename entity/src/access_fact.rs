use sea_orm::entity::prelude::*;

/// One fact of a source's access history (see `domain::access`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "access_fact")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub app_id: i32,
    pub source: String,
    pub effect: String,
    pub event_type: String,
    pub fact_key: String,
    pub transaction: Option<String>,
    pub occurred_at: DateTimeUtc,
    /// Payments reported after their approval: when the charge was approved.
    pub paid_at: Option<DateTimeUtc>,
    pub until: Option<DateTimeUtc>,
    pub email: Option<String>,
    pub target_kind: String,
    pub target_id: i32,
    pub webhook_event_id: Option<i32>,
    pub rule_version: Option<i32>,
    pub actor: String,
    #[sea_orm(column_type = "Text")]
    pub reason: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

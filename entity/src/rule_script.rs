use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "rule_script")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub app_id: i32,
    pub event_type: String,
    pub version: i32,
    #[sea_orm(column_type = "Text")]
    pub source: String,
    pub active: bool,
    /// Decided beside the active version on live events, never applied.
    pub shadow: bool,
    /// Its test cases (a JSON array), run when it was saved.
    #[sea_orm(column_type = "Text")]
    pub cases: Option<String>,
    pub created_by: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

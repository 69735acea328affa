use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "rule_backtest")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub app_id: i32,
    pub event_type: String,
    /// The version tried (0: the shipped default).
    pub version: i32,
    /// Only events received in this window (none: all).
    pub since: Option<DateTimeUtc>,
    pub until: Option<DateTimeUtc>,
    pub status: crate::status::RunStatus,
    /// counting, evaluating, done.
    pub stage: Option<String>,
    /// Events evaluated so far, of `total`.
    pub progress: i64,
    pub total: i64,
    /// The report (JSON) once it succeeded.
    #[sea_orm(column_type = "Text")]
    pub report: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub error: Option<String>,
    pub created_by: String,
    pub started_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    pub heartbeat_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reconciliation_run")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub app_id: i32,
    pub trigger: String,
    pub since: DateTimeUtc,
    pub until: DateTimeUtc,
    pub dry_run: bool,
    pub status: crate::status::RunStatus,
    #[sea_orm(column_type = "Text")]
    pub report: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub error: Option<String>,
    pub started_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    /// What a running job is doing (sales, subscriptions, comparing, applying, done).
    pub stage: Option<crate::status::RunStage>,
    /// Items handled in the current stage.
    pub progress: i64,
    /// Written every few seconds while the job runs.
    pub heartbeat_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

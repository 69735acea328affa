use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "hotmart_integration")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub app_id: i32,
    #[sea_orm(column_type = "Text")]
    pub hottok_enc: Option<String>,
    pub hottok_last4: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub basic_enc: Option<String>,
    pub basic_last4: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub client_id_enc: Option<String>,
    pub client_id_last4: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub client_secret_enc: Option<String>,
    pub client_secret_last4: Option<String>,
    pub environment: String,
    pub last_webhook_at: Option<DateTimeUtc>,
    pub last_test_event_at: Option<DateTimeUtc>,
    pub rejected_webhooks: i64,
    pub last_rejected_at: Option<DateTimeUtc>,
    /// `NOT_CONFIGURED` (no Hottok saved), `MISSING_HOTTOK` or `WRONG_HOTTOK`.
    pub last_rejected_reason: Option<String>,
    pub reconcile_every_minutes: Option<i32>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

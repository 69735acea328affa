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
    pub status: crate::status::EntitlementStatus,
    pub granted_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    pub expires_at: Option<DateTimeUtc>,
    pub last_event_id: Option<i32>,
    pub rule_version: Option<i32>,
    #[sea_orm(column_type = "Text")]
    pub reason: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Grows with every notified change, so a receiver can drop what is older than it has.
    pub version: i64,
    /// Whether the passing of `expires_at` was announced (`access.expired`).
    pub expiry_noted: bool,
    /// How its end comes about (renews, cancelled, delayed, fixed).
    pub term: crate::status::Term,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

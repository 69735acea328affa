use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_key")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub app_id: i32,
    pub name: String,
    /// The public part of the key (`pk_<key_id>_<secret>`): finds the row, proves nothing.
    pub key_id: String,
    /// SHA-256 of the whole key, hex. The key itself is shown once and never stored.
    pub secret_hash: String,
    /// Space-separated.
    pub scopes: String,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub last_used_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    /// Refused from then on (none: until revoked).
    pub expires_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

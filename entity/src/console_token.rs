use sea_orm::entity::prelude::*;

/// A console sign-in link (`login`, one use, minutes) or the session it opened (`session`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "console_token")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub kind: String,
    /// SHA-256 of the token, hex; the token itself is only in the link or the cookie.
    pub token_hash: String,
    pub app_id: i32,
    /// admin or viewer.
    pub role: String,
    pub subject: String,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub used_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

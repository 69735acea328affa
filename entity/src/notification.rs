use sea_orm::entity::prelude::*;

/// The outbox: one row per access change, written in the change's own transaction.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub app_id: i32,
    /// `webhook-id`: the same for every attempt and endpoint, so receivers can deduplicate.
    pub msg_id: String,
    pub event_type: String,
    pub entitlement_id: Option<i32>,
    pub version: i64,
    /// The exact JSON body that is signed and sent.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    /// Whether deliveries were created for the endpoints enabled at the time.
    pub fanned_out: bool,
    pub created_at: DateTimeUtc,
    /// The changes feed's cursor: assigned at fan-out, in the order fan-outs commit.
    pub seq: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

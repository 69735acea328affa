//! Outbound notifications: the apps' endpoints, the transactional outbox written with each access
//! change, one delivery per endpoint and every attempt. Entitlements gain a version that only
//! grows (receivers drop stale deliveries by it) and a flag saying their end was announced.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Entitlement {
    Table,
    Version,
    ExpiryNoted,
    ExpiresAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum NotificationEndpoint {
    Table,
    Id,
    Uid,
    AppId,
    Url,
    Description,
    EventTypes,
    Enabled,
    DisabledReason,
    Secret,
    PreviousSecret,
    PreviousSecretUntil,
    MaxInFlight,
    TimeoutMs,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Notification {
    Table,
    Id,
    AppId,
    MsgId,
    EventType,
    EntitlementId,
    Version,
    Payload,
    FannedOut,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum NotificationDelivery {
    Table,
    Id,
    AppId,
    NotificationId,
    EndpointId,
    Status,
    Attempts,
    NextAttemptAt,
    LastStatusCode,
    LastError,
    LastLatencyMs,
    DeliveredAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum NotificationAttempt {
    Table,
    Id,
    DeliveryId,
    AttemptedAt,
    StatusCode,
    Error,
    LatencyMs,
    ResponseExcerpt,
}

#[derive(DeriveIden)]
enum App {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Entitlement::Table)
                .add_column(big_integer(Entitlement::Version).default(0))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Entitlement::Table)
                .add_column(boolean(Entitlement::ExpiryNoted).default(false))
                .to_owned(),
        )
        .await?;
        // What ended before this release is not news: only ends still to come are announced.
        let db = m.get_connection();
        db.execute_raw(sea_orm_migration::sea_orm::Statement::from_sql_and_values(
            db.get_database_backend(),
            match db.get_database_backend() {
                sea_orm_migration::sea_orm::DbBackend::Postgres => {
                    "UPDATE entitlement SET expiry_noted = $1 WHERE expires_at <= $2"
                }
                _ => "UPDATE entitlement SET expiry_noted = ? WHERE expires_at <= ?",
            },
            [true.into(), chrono::Utc::now().into()],
        ))
        .await?;
        m.create_index(
            Index::create()
                .name("idx_entitlement_expiry")
                .table(Entitlement::Table)
                .col(Entitlement::ExpiryNoted)
                .col(Entitlement::ExpiresAt)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(NotificationEndpoint::Table)
                .col(pk_auto(NotificationEndpoint::Id))
                .col(string(NotificationEndpoint::Uid))
                .col(integer(NotificationEndpoint::AppId))
                .col(text(NotificationEndpoint::Url))
                .col(text(NotificationEndpoint::Description))
                .col(text(NotificationEndpoint::EventTypes))
                .col(boolean(NotificationEndpoint::Enabled))
                .col(text_null(NotificationEndpoint::DisabledReason))
                .col(text(NotificationEndpoint::Secret))
                .col(text_null(NotificationEndpoint::PreviousSecret))
                .col(timestamp_with_time_zone_null(NotificationEndpoint::PreviousSecretUntil))
                .col(integer(NotificationEndpoint::MaxInFlight))
                .col(integer(NotificationEndpoint::TimeoutMs))
                .col(timestamp_with_time_zone(NotificationEndpoint::CreatedAt))
                .col(timestamp_with_time_zone(NotificationEndpoint::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_notification_endpoint_app")
                        .from(NotificationEndpoint::Table, NotificationEndpoint::AppId)
                        .to(App::Table, App::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_notification_endpoint_uid")
                .table(NotificationEndpoint::Table)
                .col(NotificationEndpoint::Uid)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Notification::Table)
                .col(pk_auto(Notification::Id))
                .col(integer(Notification::AppId))
                .col(string(Notification::MsgId))
                .col(string(Notification::EventType))
                .col(integer_null(Notification::EntitlementId))
                .col(big_integer(Notification::Version))
                .col(text(Notification::Payload))
                .col(boolean(Notification::FannedOut))
                .col(timestamp_with_time_zone(Notification::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_notification_app")
                        .from(Notification::Table, Notification::AppId)
                        .to(App::Table, App::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_notification_msg_id")
                .table(Notification::Table)
                .col(Notification::MsgId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_notification_fan_out")
                .table(Notification::Table)
                .col(Notification::FannedOut)
                .col(Notification::Id)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(NotificationDelivery::Table)
                .col(pk_auto(NotificationDelivery::Id))
                .col(integer(NotificationDelivery::AppId))
                .col(integer(NotificationDelivery::NotificationId))
                .col(integer(NotificationDelivery::EndpointId))
                .col(string(NotificationDelivery::Status))
                .col(integer(NotificationDelivery::Attempts))
                .col(timestamp_with_time_zone_null(NotificationDelivery::NextAttemptAt))
                .col(integer_null(NotificationDelivery::LastStatusCode))
                .col(text_null(NotificationDelivery::LastError))
                .col(integer_null(NotificationDelivery::LastLatencyMs))
                .col(timestamp_with_time_zone_null(NotificationDelivery::DeliveredAt))
                .col(timestamp_with_time_zone(NotificationDelivery::CreatedAt))
                .col(timestamp_with_time_zone(NotificationDelivery::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_notification_delivery_notification")
                        .from(NotificationDelivery::Table, NotificationDelivery::NotificationId)
                        .to(Notification::Table, Notification::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_notification_delivery_endpoint")
                        .from(NotificationDelivery::Table, NotificationDelivery::EndpointId)
                        .to(NotificationEndpoint::Table, NotificationEndpoint::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_notification_delivery_due")
                .table(NotificationDelivery::Table)
                .col(NotificationDelivery::Status)
                .col(NotificationDelivery::NextAttemptAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_notification_delivery_endpoint")
                .table(NotificationDelivery::Table)
                .col(NotificationDelivery::EndpointId)
                .col(NotificationDelivery::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_notification_delivery_notification")
                .table(NotificationDelivery::Table)
                .col(NotificationDelivery::NotificationId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(NotificationAttempt::Table)
                .col(pk_auto(NotificationAttempt::Id))
                .col(integer(NotificationAttempt::DeliveryId))
                .col(timestamp_with_time_zone(NotificationAttempt::AttemptedAt))
                .col(integer_null(NotificationAttempt::StatusCode))
                .col(text_null(NotificationAttempt::Error))
                .col(integer(NotificationAttempt::LatencyMs))
                .col(text_null(NotificationAttempt::ResponseExcerpt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_notification_attempt_delivery")
                        .from(NotificationAttempt::Table, NotificationAttempt::DeliveryId)
                        .to(NotificationDelivery::Table, NotificationDelivery::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_notification_attempt_delivery")
                .table(NotificationAttempt::Table)
                .col(NotificationAttempt::DeliveryId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            NotificationAttempt::Table.into_iden(),
            NotificationDelivery::Table.into_iden(),
            Notification::Table.into_iden(),
            NotificationEndpoint::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        m.drop_index(
            Index::drop()
                .name("idx_entitlement_expiry")
                .table(Entitlement::Table)
                .to_owned(),
        )
        .await?;
        for col in [Entitlement::ExpiryNoted, Entitlement::Version] {
            m.alter_table(Table::alter().table(Entitlement::Table).drop_column(col).to_owned())
                .await?;
        }
        Ok(())
    }
}

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum App {
    Table,
    Id,
    Slug,
    Name,
    WebhookKey,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum HotmartIntegration {
    Table,
    Id,
    AppId,
    HottokEnc,
    HottokLast4,
    BasicEnc,
    BasicLast4,
    ClientIdEnc,
    ClientIdLast4,
    ClientSecretEnc,
    ClientSecretLast4,
    Environment,
    LastWebhookAt,
    LastTestEventAt,
    RejectedWebhooks,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum ProductPackage {
    Table,
    Id,
    AppId,
    Name,
    Description,
    AccessDays,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum SubscriptionPlan {
    Table,
    Id,
    AppId,
    Name,
    Description,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum ExternalProductLink {
    Table,
    Id,
    AppId,
    Provider,
    ExternalId,
    PackageId,
    PlanId,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Buyer {
    Table,
    Id,
    AppId,
    Email,
    Name,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum BuyerSubscriberCode {
    Table,
    Id,
    AppId,
    BuyerId,
    Code,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Entitlement {
    Table,
    Id,
    AppId,
    BuyerId,
    TargetKind,
    TargetId,
    Source,
    Status,
    GrantedAt,
    RevokedAt,
    ExpiresAt,
    LastEventId,
    RuleVersion,
    Reason,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum WebhookEvent {
    Table,
    Id,
    AppId,
    Provider,
    Origin,
    EventId,
    EventType,
    Format,
    RawBody,
    Headers,
    ReceivedAt,
    OccurredAt,
    Status,
    IsTest,
    Email,
    SourceKey,
    TargetKind,
    TargetId,
    Transaction,
    Decision,
    RuleVersion,
    Error,
    Attempts,
    ProcessedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum RuleScript {
    Table,
    Id,
    AppId,
    EventType,
    Version,
    Source,
    Active,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum AuditLog {
    Table,
    Id,
    AppId,
    Actor,
    Action,
    Target,
    Before,
    After,
    Reason,
    CreatedAt,
}

fn fk_app<T: IntoIden + 'static>(name: &str, table: T, col: T) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, col)
        .to(App::Table, App::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

fn index<T: IntoIden + Copy + 'static>(name: &str, table: T, cols: &[T], unique: bool) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(table);
    for c in cols {
        idx.col(*c);
    }
    if unique {
        idx.unique();
    }
    idx.clone()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(App::Table)
                .col(pk_auto(App::Id))
                .col(string_uniq(App::Slug))
                .col(string(App::Name))
                .col(string_uniq(App::WebhookKey))
                .col(timestamp_with_time_zone(App::CreatedAt))
                .col(timestamp_with_time_zone(App::UpdatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(HotmartIntegration::Table)
                .col(pk_auto(HotmartIntegration::Id))
                .col(integer_uniq(HotmartIntegration::AppId))
                .col(text_null(HotmartIntegration::HottokEnc))
                .col(string_null(HotmartIntegration::HottokLast4))
                .col(text_null(HotmartIntegration::BasicEnc))
                .col(string_null(HotmartIntegration::BasicLast4))
                .col(text_null(HotmartIntegration::ClientIdEnc))
                .col(string_null(HotmartIntegration::ClientIdLast4))
                .col(text_null(HotmartIntegration::ClientSecretEnc))
                .col(string_null(HotmartIntegration::ClientSecretLast4))
                .col(string(HotmartIntegration::Environment))
                .col(timestamp_with_time_zone_null(HotmartIntegration::LastWebhookAt))
                .col(timestamp_with_time_zone_null(HotmartIntegration::LastTestEventAt))
                .col(big_integer(HotmartIntegration::RejectedWebhooks).default(0))
                .col(timestamp_with_time_zone(HotmartIntegration::CreatedAt))
                .col(timestamp_with_time_zone(HotmartIntegration::UpdatedAt))
                .foreign_key(&mut fk_app(
                    "fk_hotmart_integration_app",
                    HotmartIntegration::Table,
                    HotmartIntegration::AppId,
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ProductPackage::Table)
                .col(pk_auto(ProductPackage::Id))
                .col(integer(ProductPackage::AppId))
                .col(string(ProductPackage::Name))
                .col(text(ProductPackage::Description).default(""))
                .col(integer_null(ProductPackage::AccessDays))
                .col(timestamp_with_time_zone(ProductPackage::CreatedAt))
                .col(timestamp_with_time_zone(ProductPackage::UpdatedAt))
                .foreign_key(&mut fk_app(
                    "fk_product_package_app",
                    ProductPackage::Table,
                    ProductPackage::AppId,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "idx_product_package_app",
            ProductPackage::Table,
            &[ProductPackage::AppId],
            false,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(SubscriptionPlan::Table)
                .col(pk_auto(SubscriptionPlan::Id))
                .col(integer(SubscriptionPlan::AppId))
                .col(string(SubscriptionPlan::Name))
                .col(text(SubscriptionPlan::Description).default(""))
                .col(timestamp_with_time_zone(SubscriptionPlan::CreatedAt))
                .col(timestamp_with_time_zone(SubscriptionPlan::UpdatedAt))
                .foreign_key(&mut fk_app(
                    "fk_subscription_plan_app",
                    SubscriptionPlan::Table,
                    SubscriptionPlan::AppId,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "idx_subscription_plan_app",
            SubscriptionPlan::Table,
            &[SubscriptionPlan::AppId],
            false,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(ExternalProductLink::Table)
                .col(pk_auto(ExternalProductLink::Id))
                .col(integer(ExternalProductLink::AppId))
                .col(string(ExternalProductLink::Provider))
                .col(string(ExternalProductLink::ExternalId))
                .col(integer_null(ExternalProductLink::PackageId))
                .col(integer_null(ExternalProductLink::PlanId))
                .col(timestamp_with_time_zone(ExternalProductLink::CreatedAt))
                .foreign_key(&mut fk_app(
                    "fk_external_product_link_app",
                    ExternalProductLink::Table,
                    ExternalProductLink::AppId,
                ))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_external_product_link_package")
                        .from(ExternalProductLink::Table, ExternalProductLink::PackageId)
                        .to(ProductPackage::Table, ProductPackage::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_external_product_link_plan")
                        .from(ExternalProductLink::Table, ExternalProductLink::PlanId)
                        .to(SubscriptionPlan::Table, SubscriptionPlan::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // The rule that keeps one Hotmart product from releasing two packages lives here.
        m.create_index(index(
            "uq_external_product_link",
            ExternalProductLink::Table,
            &[
                ExternalProductLink::AppId,
                ExternalProductLink::Provider,
                ExternalProductLink::ExternalId,
            ],
            true,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(Buyer::Table)
                .col(pk_auto(Buyer::Id))
                .col(integer(Buyer::AppId))
                .col(string(Buyer::Email))
                .col(string(Buyer::Name).default(""))
                .col(timestamp_with_time_zone(Buyer::CreatedAt))
                .col(timestamp_with_time_zone(Buyer::UpdatedAt))
                .foreign_key(&mut fk_app("fk_buyer_app", Buyer::Table, Buyer::AppId))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "uq_buyer_app_email",
            Buyer::Table,
            &[Buyer::AppId, Buyer::Email],
            true,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(BuyerSubscriberCode::Table)
                .col(pk_auto(BuyerSubscriberCode::Id))
                .col(integer(BuyerSubscriberCode::AppId))
                .col(integer(BuyerSubscriberCode::BuyerId))
                .col(string(BuyerSubscriberCode::Code))
                .col(timestamp_with_time_zone(BuyerSubscriberCode::CreatedAt))
                .foreign_key(&mut fk_app(
                    "fk_buyer_subscriber_code_app",
                    BuyerSubscriberCode::Table,
                    BuyerSubscriberCode::AppId,
                ))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_buyer_subscriber_code_buyer")
                        .from(BuyerSubscriberCode::Table, BuyerSubscriberCode::BuyerId)
                        .to(Buyer::Table, Buyer::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "uq_buyer_subscriber_code",
            BuyerSubscriberCode::Table,
            &[BuyerSubscriberCode::AppId, BuyerSubscriberCode::Code],
            true,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(Entitlement::Table)
                .col(pk_auto(Entitlement::Id))
                .col(integer(Entitlement::AppId))
                .col(integer(Entitlement::BuyerId))
                .col(string(Entitlement::TargetKind))
                .col(integer(Entitlement::TargetId))
                .col(string(Entitlement::Source))
                .col(string(Entitlement::Status))
                .col(timestamp_with_time_zone_null(Entitlement::GrantedAt))
                .col(timestamp_with_time_zone_null(Entitlement::RevokedAt))
                .col(timestamp_with_time_zone_null(Entitlement::ExpiresAt))
                .col(integer_null(Entitlement::LastEventId))
                .col(integer_null(Entitlement::RuleVersion))
                .col(text(Entitlement::Reason).default(""))
                .col(timestamp_with_time_zone(Entitlement::CreatedAt))
                .col(timestamp_with_time_zone(Entitlement::UpdatedAt))
                .foreign_key(&mut fk_app(
                    "fk_entitlement_app",
                    Entitlement::Table,
                    Entitlement::AppId,
                ))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_entitlement_buyer")
                        .from(Entitlement::Table, Entitlement::BuyerId)
                        .to(Buyer::Table, Buyer::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "uq_entitlement_source",
            Entitlement::Table,
            &[
                Entitlement::AppId,
                Entitlement::BuyerId,
                Entitlement::TargetKind,
                Entitlement::TargetId,
                Entitlement::Source,
            ],
            true,
        ))
        .await?;
        m.create_index(index(
            "idx_entitlement_target",
            Entitlement::Table,
            &[Entitlement::AppId, Entitlement::TargetKind, Entitlement::TargetId],
            false,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(WebhookEvent::Table)
                .col(pk_auto(WebhookEvent::Id))
                .col(integer(WebhookEvent::AppId))
                .col(string(WebhookEvent::Provider))
                .col(string(WebhookEvent::Origin))
                .col(string(WebhookEvent::EventId))
                .col(string(WebhookEvent::EventType))
                .col(string(WebhookEvent::Format))
                .col(blob(WebhookEvent::RawBody))
                .col(text(WebhookEvent::Headers))
                .col(timestamp_with_time_zone(WebhookEvent::ReceivedAt))
                .col(timestamp_with_time_zone_null(WebhookEvent::OccurredAt))
                .col(string(WebhookEvent::Status))
                .col(boolean(WebhookEvent::IsTest).default(false))
                .col(string_null(WebhookEvent::Email))
                .col(string_null(WebhookEvent::SourceKey))
                .col(string_null(WebhookEvent::TargetKind))
                .col(integer_null(WebhookEvent::TargetId))
                .col(string_null(WebhookEvent::Transaction))
                .col(text_null(WebhookEvent::Decision))
                .col(integer_null(WebhookEvent::RuleVersion))
                .col(text_null(WebhookEvent::Error))
                .col(integer(WebhookEvent::Attempts).default(0))
                .col(timestamp_with_time_zone_null(WebhookEvent::ProcessedAt))
                .foreign_key(&mut fk_app(
                    "fk_webhook_event_app",
                    WebhookEvent::Table,
                    WebhookEvent::AppId,
                ))
                .to_owned(),
        )
        .await?;
        // The provider event id is the idempotency key.
        m.create_index(index(
            "uq_webhook_event_id",
            WebhookEvent::Table,
            &[WebhookEvent::AppId, WebhookEvent::Provider, WebhookEvent::EventId],
            true,
        ))
        .await?;
        m.create_index(index(
            "idx_webhook_event_status",
            WebhookEvent::Table,
            &[WebhookEvent::Status],
            false,
        ))
        .await?;
        m.create_index(index(
            "idx_webhook_event_source",
            WebhookEvent::Table,
            &[WebhookEvent::AppId, WebhookEvent::SourceKey],
            false,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(RuleScript::Table)
                .col(pk_auto(RuleScript::Id))
                .col(integer(RuleScript::AppId))
                .col(string(RuleScript::EventType))
                .col(integer(RuleScript::Version))
                .col(text(RuleScript::Source))
                .col(boolean(RuleScript::Active).default(false))
                .col(string(RuleScript::CreatedBy))
                .col(timestamp_with_time_zone(RuleScript::CreatedAt))
                .foreign_key(&mut fk_app("fk_rule_script_app", RuleScript::Table, RuleScript::AppId))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "uq_rule_script_version",
            RuleScript::Table,
            &[RuleScript::AppId, RuleScript::EventType, RuleScript::Version],
            true,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(AuditLog::Table)
                .col(pk_auto(AuditLog::Id))
                .col(integer(AuditLog::AppId))
                .col(string(AuditLog::Actor))
                .col(string(AuditLog::Action))
                .col(string(AuditLog::Target))
                .col(text_null(AuditLog::Before))
                .col(text_null(AuditLog::After))
                .col(text(AuditLog::Reason).default(""))
                .col(timestamp_with_time_zone(AuditLog::CreatedAt))
                .foreign_key(&mut fk_app("fk_audit_log_app", AuditLog::Table, AuditLog::AppId))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "idx_audit_log_app",
            AuditLog::Table,
            &[AuditLog::AppId, AuditLog::Id],
            false,
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Children first, so foreign keys never block the drop.
        m.drop_table(Table::drop().table(AuditLog::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(RuleScript::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(WebhookEvent::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Entitlement::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(BuyerSubscriberCode::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Buyer::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(ExternalProductLink::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(SubscriptionPlan::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(ProductPackage::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(HotmartIntegration::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(App::Table).to_owned()).await?;
        Ok(())
    }
}

use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, SimpleObject};

use super::{GqlResult, caller, gql, parse_id};
use crate::domain::TargetKind;
use crate::services::catalog::{self as svc, PackageInput, PackageView, PlanInput, PlanView};

/// Pacote de Produtos: a one-off purchase.
#[derive(SimpleObject, Clone)]
pub struct ProductPackage {
    pub id: ID,
    pub name: String,
    /// The key apps use for it instead of the id (`/v1/…?package=curso-completo`): a slug,
    /// unique in the app, that stays the same between staging and production.
    pub key: Option<String>,
    pub description: String,
    /// Days of access from approval; null means lifetime.
    pub access_days: Option<i32>,
    pub lifetime: bool,
    pub hotmart_product_ids: Vec<String>,
    pub created_at: super::DateTime,
    pub updated_at: super::DateTime,
}

impl From<PackageView> for ProductPackage {
    fn from(v: PackageView) -> Self {
        ProductPackage {
            id: ID(v.row.id.to_string()),
            name: v.row.name,
            key: v.row.key,
            description: v.row.description,
            lifetime: v.row.access_days.is_none(),
            access_days: v.row.access_days,
            hotmart_product_ids: v.hotmart_product_ids,
            created_at: v.row.created_at.into(),
            updated_at: v.row.updated_at.into(),
        }
    }
}

/// Plano de Assinatura: a subscription.
#[derive(SimpleObject, Clone)]
pub struct SubscriptionPlan {
    pub id: ID,
    pub name: String,
    /// The key apps use for it instead of the id (`/v1/…?package=curso-completo`): a slug,
    /// unique in the app, that stays the same between staging and production.
    pub key: Option<String>,
    pub description: String,
    pub hotmart_product_ids: Vec<String>,
    /// Hotmart plan ids, for products whose plans (monthly, annual…) give different access.
    pub hotmart_plan_ids: Vec<String>,
    /// Days one paid charge covers when Hotmart does not send the next charge date.
    pub period_days: i32,
    /// Days of access kept past a charge date that was not paid (renewal lost, card refused).
    pub grace_days: i32,
    pub created_at: super::DateTime,
    pub updated_at: super::DateTime,
}

impl From<PlanView> for SubscriptionPlan {
    fn from(v: PlanView) -> Self {
        SubscriptionPlan {
            id: ID(v.row.id.to_string()),
            name: v.row.name,
            key: v.row.key,
            description: v.row.description,
            hotmart_product_ids: v.hotmart_product_ids,
            hotmart_plan_ids: v.hotmart_plan_ids,
            period_days: v.row.period_days,
            grace_days: v.row.grace_days,
            created_at: v.row.created_at.into(),
            updated_at: v.row.updated_at.into(),
        }
    }
}

#[derive(InputObject)]
pub struct CreateProductPackageInput {
    pub name: String,
    /// A slug apps use instead of the id (lower-case letters, digits, `-`, `_`).
    pub key: Option<String>,
    pub description: Option<String>,
    /// Null or omitted: lifetime access.
    pub access_days: Option<i32>,
    pub hotmart_product_ids: Option<Vec<String>>,
}

#[derive(InputObject)]
pub struct UpdateProductPackageInput {
    pub name: Option<String>,
    /// A slug apps use instead of the id; omit to keep, null or "" to remove.
    pub key: MaybeUndefined<String>,
    pub description: Option<String>,
    /// Omit to keep; null for lifetime.
    pub access_days: MaybeUndefined<i32>,
    /// Replaces the whole list when given.
    pub hotmart_product_ids: Option<Vec<String>>,
}

#[derive(InputObject)]
pub struct CreateSubscriptionPlanInput {
    pub name: String,
    /// A slug apps use instead of the id (lower-case letters, digits, `-`, `_`).
    pub key: Option<String>,
    pub description: Option<String>,
    /// Days one paid charge covers when Hotmart omits the next charge date (default 30).
    pub period_days: Option<i32>,
    /// Days of access kept past an unpaid charge date (default 3).
    pub grace_days: Option<i32>,
    pub hotmart_product_ids: Option<Vec<String>>,
    pub hotmart_plan_ids: Option<Vec<String>>,
}

#[derive(InputObject)]
pub struct UpdateSubscriptionPlanInput {
    pub name: Option<String>,
    /// A slug apps use instead of the id; omit to keep, null or "" to remove.
    pub key: MaybeUndefined<String>,
    pub description: Option<String>,
    /// Days one paid charge covers when Hotmart omits the next charge date (default 30).
    pub period_days: Option<i32>,
    /// Days of access kept past an unpaid charge date (default 3).
    pub grace_days: Option<i32>,
    pub hotmart_product_ids: Option<Vec<String>>,
    pub hotmart_plan_ids: Option<Vec<String>>,
}

/// Omitted: keep (`None`); null: clear (`Some(None)`); a value: set.
fn maybe<T>(v: MaybeUndefined<T>) -> Option<Option<T>> {
    match v {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(x) => Some(Some(x)),
    }
}

#[derive(SimpleObject)]
pub struct DeleteResult {
    pub deleted: bool,
    /// How many buyers lost access because the delete was forced.
    pub revoked_access: i32,
}

#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    async fn product_packages(&self, ctx: &Context<'_>) -> GqlResult<Vec<ProductPackage>> {
        let (state, who) = caller(ctx)?;
        let rows = svc::list_packages(&state.db, who.app_id).await.map_err(gql)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn product_package(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<ProductPackage>> {
        let (state, who) = caller(ctx)?;
        Ok(svc::get_package(&state.db, who.app_id, parse_id(&id)?)
            .await
            .map_err(gql)?
            .map(Into::into))
    }

    async fn subscription_plans(&self, ctx: &Context<'_>) -> GqlResult<Vec<SubscriptionPlan>> {
        let (state, who) = caller(ctx)?;
        let rows = svc::list_plans(&state.db, who.app_id).await.map_err(gql)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn subscription_plan(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<SubscriptionPlan>> {
        let (state, who) = caller(ctx)?;
        Ok(svc::get_plan(&state.db, who.app_id, parse_id(&id)?)
            .await
            .map_err(gql)?
            .map(Into::into))
    }
}

#[derive(Default)]
pub struct CatalogMutation;

#[Object]
impl CatalogMutation {
    async fn create_product_package(
        &self,
        ctx: &Context<'_>,
        input: CreateProductPackageInput,
    ) -> GqlResult<ProductPackage> {
        let (state, who) = caller(ctx)?;
        let input = PackageInput {
            name: Some(input.name),
            key: Some(input.key),
            description: input.description,
            access_days: Some(input.access_days),
            hotmart_product_ids: input.hotmart_product_ids,
        };
        svc::create_package(state, who, input)
            .await
            .map(Into::into)
            .map_err(gql)
    }

    async fn update_product_package(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateProductPackageInput,
    ) -> GqlResult<ProductPackage> {
        let (state, who) = caller(ctx)?;
        let access_days = maybe(input.access_days);
        let input = PackageInput {
            name: input.name,
            key: maybe(input.key),
            description: input.description,
            access_days,
            hotmart_product_ids: input.hotmart_product_ids,
        };
        svc::update_package(state, who, parse_id(&id)?, input)
            .await
            .map(Into::into)
            .map_err(gql)
    }

    async fn delete_product_package(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default = false)] force: bool,
    ) -> GqlResult<DeleteResult> {
        let (state, who) = caller(ctx)?;
        let n = svc::delete_target(state, who, TargetKind::Package, parse_id(&id)?, force)
            .await
            .map_err(gql)?;
        Ok(DeleteResult {
            deleted: true,
            revoked_access: n,
        })
    }

    async fn create_subscription_plan(
        &self,
        ctx: &Context<'_>,
        input: CreateSubscriptionPlanInput,
    ) -> GqlResult<SubscriptionPlan> {
        let (state, who) = caller(ctx)?;
        let input = PlanInput {
            name: Some(input.name),
            key: Some(input.key),
            description: input.description,
            period_days: input.period_days,
            grace_days: input.grace_days,
            hotmart_product_ids: input.hotmart_product_ids,
            hotmart_plan_ids: input.hotmart_plan_ids,
        };
        svc::create_plan(state, who, input).await.map(Into::into).map_err(gql)
    }

    async fn update_subscription_plan(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateSubscriptionPlanInput,
    ) -> GqlResult<SubscriptionPlan> {
        let (state, who) = caller(ctx)?;
        let input = PlanInput {
            name: input.name,
            key: maybe(input.key),
            description: input.description,
            period_days: input.period_days,
            grace_days: input.grace_days,
            hotmart_product_ids: input.hotmart_product_ids,
            hotmart_plan_ids: input.hotmart_plan_ids,
        };
        svc::update_plan(state, who, parse_id(&id)?, input)
            .await
            .map(Into::into)
            .map_err(gql)
    }

    async fn delete_subscription_plan(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default = false)] force: bool,
    ) -> GqlResult<DeleteResult> {
        let (state, who) = caller(ctx)?;
        let n = svc::delete_target(state, who, TargetKind::Plan, parse_id(&id)?, force)
            .await
            .map_err(gql)?;
        Ok(DeleteResult {
            deleted: true,
            revoked_access: n,
        })
    }
}

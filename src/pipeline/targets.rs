//! Which package or plan a Hotmart product (or plan) is linked to, and a target by id: what the
//! worker and the outbox read of the catalog.
use entity::{external_product_link as link, product_package as pkg, subscription_plan as plan};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::caches::HotCache;
use crate::AppResult;
use crate::domain::{Target, TargetKind};

pub const PROVIDER_PRODUCT: &str = "hotmart";
pub const PROVIDER_PLAN: &str = "hotmart_plan";

pub async fn target(db: &impl ConnectionTrait, app_id: i32, kind: TargetKind, id: i32) -> AppResult<Option<Target>> {
    Ok(match kind {
        TargetKind::Package => pkg::Entity::find_by_id(id)
            .filter(pkg::Column::AppId.eq(app_id))
            .one(db)
            .await?
            .map(|p| Target::package(id, &p.name, p.access_days).with_key(p.key)),
        TargetKind::Plan => plan::Entity::find_by_id(id)
            .filter(plan::Column::AppId.eq(app_id))
            .one(db)
            .await?
            .map(|p| Target::plan(id, &p.name, p.period_days, p.grace_days).with_key(p.key)),
    })
}

/// [`resolve`] through the process's cache (the worker's path).
pub async fn resolve_cached(
    hot: &HotCache,
    db: &impl ConnectionTrait,
    app_id: i32,
    product_id: Option<&str>,
    plan_id: Option<&str>,
) -> AppResult<Option<Target>> {
    let key = (
        app_id,
        hot.catalog_generation(app_id),
        product_id.unwrap_or_default().to_string(),
        plan_id.unwrap_or_default().to_string(),
    );
    if let Some(t) = hot.targets.get(&key) {
        return Ok(t);
    }
    let t = resolve(db, app_id, product_id, plan_id).await?;
    hot.targets.insert(key, t.clone());
    Ok(t)
}

/// The package or plan a Hotmart product (or, first, a Hotmart plan) is linked to.
pub async fn resolve(
    db: &impl ConnectionTrait,
    app_id: i32,
    product_id: Option<&str>,
    plan_id: Option<&str>,
) -> AppResult<Option<Target>> {
    let norm = |s: &str| s.trim().trim_start_matches('0').to_string();
    for (provider, id) in [(PROVIDER_PLAN, plan_id), (PROVIDER_PRODUCT, product_id)] {
        let Some(id) = id.map(norm).filter(|s| !s.is_empty()) else {
            continue;
        };
        let found = link::Entity::find()
            .filter(link::Column::AppId.eq(app_id))
            .filter(link::Column::Provider.eq(provider))
            .filter(link::Column::ExternalId.eq(id))
            .one(db)
            .await?;
        if let Some(l) = found {
            let (kind, tid) = match (l.package_id, l.plan_id) {
                (Some(p), _) => (TargetKind::Package, p),
                (_, Some(p)) => (TargetKind::Plan, p),
                _ => continue,
            };
            return target(db, app_id, kind, tid).await;
        }
    }
    Ok(None)
}

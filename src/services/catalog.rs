//! Product packages (Pacotes de Produtos), subscription plans (Planos de Assinatura) and the
//! Hotmart product ids linked to them (Lojas Externas).
use std::collections::BTreeSet;

use entity::{entitlement, external_product_link as link, product_package as pkg, subscription_plan as plan};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde_json::json;

use super::{AdminWrite, Change, Then};
use crate::auth::Principal;
use crate::domain::{EntitlementStatus, TargetKind};
use crate::{AppError, AppResult, AppState};

pub use crate::pipeline::targets::{PROVIDER_PLAN, PROVIDER_PRODUCT, target};

#[derive(Debug, Clone, Default)]
pub struct PackageInput {
    pub name: Option<String>,
    /// The stable key apps use (`Some(None)` clears it; `None` keeps it on update).
    pub key: Option<Option<String>>,
    pub description: Option<String>,
    /// `Some(None)` sets lifetime access; `None` keeps the stored value on update.
    pub access_days: Option<Option<i32>>,
    pub hotmart_product_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct PlanInput {
    pub name: Option<String>,
    /// The stable key apps use (`Some(None)` clears it; `None` keeps it on update).
    pub key: Option<Option<String>>,
    pub description: Option<String>,
    /// Days one charge covers when Hotmart omits the next charge date (default 30).
    pub period_days: Option<i32>,
    /// Days of access kept past an unpaid charge date (default 3).
    pub grace_days: Option<i32>,
    pub hotmart_product_ids: Option<Vec<String>>,
    pub hotmart_plan_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct PackageView {
    pub row: pkg::Model,
    pub hotmart_product_ids: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PlanView {
    pub row: plan::Model,
    pub hotmart_product_ids: Vec<String>,
    pub hotmart_plan_ids: Vec<String>,
}

/// A target's key as an admin gives it: a slug (lower-case letters, digits, `-`, `_`, up to 64,
/// starting with a letter or digit) that is not all digits, so it never reads as an id. Empty
/// clears it.
pub fn clean_key(key: Option<String>) -> AppResult<Option<String>> {
    let Some(k) = key.map(|k| k.trim().to_string()).filter(|k| !k.is_empty()) else {
        return Ok(None);
    };
    let slug = k.len() <= 64
        && k.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && k.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !k.bytes().all(|b| b.is_ascii_digit());
    if !slug {
        return Err(AppError::InvalidFields(vec![(
            "key".into(),
            format!(
                "{k:?} is not a key: use lower-case letters, digits, - and _ (up to 64, not only digits), e.g. \"curso-completo\""
            ),
        )]));
    }
    Ok(Some(k))
}

/// Refuses a key another package or plan of the app already has (keys are unique per app,
/// across both kinds, so `/v1` can take one without its kind being ambiguous).
async fn key_is_free(db: &impl ConnectionTrait, app_id: i32, key: &str, mine: (TargetKind, i32)) -> AppResult<()> {
    let taken = match resolve_key(db, app_id, key).await? {
        Some(other) if other != mine => Some(other),
        _ => None,
    };
    match taken {
        Some((kind, id)) => Err(AppError::Conflict(format!(
            "the key {key:?} is already the {} {id}'s",
            kind.as_str()
        ))),
        None => Ok(()),
    }
}

/// The package or plan that has this key.
pub async fn resolve_key(db: &impl ConnectionTrait, app_id: i32, key: &str) -> AppResult<Option<(TargetKind, i32)>> {
    if let Some(p) = pkg::Entity::find()
        .filter(pkg::Column::AppId.eq(app_id))
        .filter(pkg::Column::Key.eq(key))
        .one(db)
        .await?
    {
        return Ok(Some((TargetKind::Package, p.id)));
    }
    Ok(plan::Entity::find()
        .filter(plan::Column::AppId.eq(app_id))
        .filter(plan::Column::Key.eq(key))
        .one(db)
        .await?
        .map(|p| (TargetKind::Plan, p.id)))
}

fn clean_name(name: Option<String>) -> AppResult<String> {
    let n = name.unwrap_or_default().trim().to_string();
    if n.is_empty() {
        return Err(AppError::InvalidFields(vec![(
            "name".into(),
            "name is required".into(),
        )]));
    }
    if n.chars().any(char::is_control) {
        return Err(AppError::InvalidFields(vec![(
            "name".into(),
            "name has control characters".into(),
        )]));
    }
    if n.chars().count() > 200 {
        return Err(AppError::InvalidFields(vec![(
            "name".into(),
            "name is longer than 200 characters".into(),
        )]));
    }
    Ok(n)
}

/// Hotmart ids are numeric; we keep them as strings since payloads send both forms.
fn clean_ids(field: &str, ids: &[String]) -> AppResult<Vec<String>> {
    let mut out = BTreeSet::new();
    for raw in ids {
        let id = raw.trim();
        if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AppError::InvalidFields(vec![(
                field.into(),
                format!("{raw:?} is not a Hotmart id (digits only, as shown in Hotmart's product page)"),
            )]));
        }
        let id = id.trim_start_matches('0');
        if id.is_empty() {
            return Err(AppError::InvalidFields(vec![(
                field.into(),
                "0 is the id Hotmart uses for test events; it cannot be linked".into(),
            )]));
        }
        out.insert(id.to_string());
    }
    Ok(out.into_iter().collect())
}

/// A plan's period (1..=3660 days) and grace (0..=90 days), named per field when wrong.
fn check_plan_days(input: &PlanInput) -> AppResult<()> {
    let mut errors = Vec::new();
    if input.period_days.is_some_and(|d| !(1..=3660).contains(&d)) {
        errors.push((
            "periodDays".to_string(),
            "periodDays must be between 1 and 3660".to_string(),
        ));
    }
    if input.grace_days.is_some_and(|d| !(0..=90).contains(&d)) {
        errors.push((
            "graceDays".to_string(),
            "graceDays must be between 0 and 90".to_string(),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::InvalidFields(errors))
    }
}

fn check_days(days: Option<i32>) -> AppResult<()> {
    match days {
        Some(d) if !(1..=36500).contains(&d) => Err(AppError::InvalidFields(vec![(
            "accessDays".into(),
            "accessDays must be between 1 and 36500, or null for lifetime access".into(),
        )])),
        _ => Ok(()),
    }
}

async fn target_name(db: &impl ConnectionTrait, l: &link::Model) -> AppResult<String> {
    if let Some(id) = l.package_id {
        let name = pkg::Entity::find_by_id(id)
            .one(db)
            .await?
            .map(|p| p.name)
            .unwrap_or_default();
        return Ok(format!("package \"{name}\" (id {id})"));
    }
    let id = l.plan_id.unwrap_or_default();
    let name = plan::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(|p| p.name)
        .unwrap_or_default();
    Ok(format!("subscription plan \"{name}\" (id {id})"))
}

/// Replaces the links of one package or plan, refusing ids another package or plan holds.
async fn set_links(
    db: &impl ConnectionTrait,
    app_id: i32,
    provider: &str,
    owner: (TargetKind, i32),
    ids: &[String],
) -> AppResult<()> {
    let taken = link::Entity::find()
        .filter(link::Column::AppId.eq(app_id))
        .filter(link::Column::Provider.eq(provider))
        .filter(link::Column::ExternalId.is_in(ids.to_vec()))
        .all(db)
        .await?;
    for l in taken {
        let mine = match owner.0 {
            TargetKind::Package => l.package_id == Some(owner.1),
            TargetKind::Plan => l.plan_id == Some(owner.1),
        };
        if !mine {
            let what = if provider == PROVIDER_PLAN {
                "Hotmart plan"
            } else {
                "Hotmart product"
            };
            return Err(AppError::Conflict(format!(
                "{what} {} is already linked to {}; unlink it there first",
                l.external_id,
                target_name(db, &l).await?
            )));
        }
    }
    let owner_col = match owner.0 {
        TargetKind::Package => link::Column::PackageId,
        TargetKind::Plan => link::Column::PlanId,
    };
    link::Entity::delete_many()
        .filter(link::Column::AppId.eq(app_id))
        .filter(link::Column::Provider.eq(provider))
        .filter(owner_col.eq(owner.1))
        .exec(db)
        .await?;
    for id in ids {
        let am = link::ActiveModel {
            app_id: Set(app_id),
            provider: Set(provider.into()),
            external_id: Set(id.clone()),
            package_id: Set((owner.0 == TargetKind::Package).then_some(owner.1)),
            plan_id: Set((owner.0 == TargetKind::Plan).then_some(owner.1)),
            created_at: Set(super::now()),
            ..Default::default()
        };
        am.insert(db).await.map_err(|e| {
            if crate::db::is_unique_violation(&e) {
                AppError::Conflict(format!("Hotmart id {id} was linked elsewhere at the same moment"))
            } else {
                e.into()
            }
        })?;
    }
    Ok(())
}

async fn links_of(
    db: &impl ConnectionTrait,
    app_id: i32,
    provider: &str,
    owner: (TargetKind, i32),
) -> AppResult<Vec<String>> {
    let col = match owner.0 {
        TargetKind::Package => link::Column::PackageId,
        TargetKind::Plan => link::Column::PlanId,
    };
    let rows = link::Entity::find()
        .filter(link::Column::AppId.eq(app_id))
        .filter(link::Column::Provider.eq(provider))
        .filter(col.eq(owner.1))
        .order_by_asc(link::Column::ExternalId)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|l| l.external_id).collect())
}

async fn package_view(db: &impl ConnectionTrait, row: pkg::Model) -> AppResult<PackageView> {
    let ids = links_of(db, row.app_id, PROVIDER_PRODUCT, (TargetKind::Package, row.id)).await?;
    Ok(PackageView {
        row,
        hotmart_product_ids: ids,
    })
}

async fn plan_view(db: &impl ConnectionTrait, row: plan::Model) -> AppResult<PlanView> {
    let ids = links_of(db, row.app_id, PROVIDER_PRODUCT, (TargetKind::Plan, row.id)).await?;
    let plan_ids = links_of(db, row.app_id, PROVIDER_PLAN, (TargetKind::Plan, row.id)).await?;
    Ok(PlanView {
        row,
        hotmart_product_ids: ids,
        hotmart_plan_ids: plan_ids,
    })
}

fn package_json(v: &PackageView) -> serde_json::Value {
    json!({"name": v.row.name, "key": v.row.key, "description": v.row.description, "accessDays": v.row.access_days, "hotmartProductIds": v.hotmart_product_ids})
}

fn plan_json(v: &PlanView) -> serde_json::Value {
    json!({
        "name": v.row.name,
        "key": v.row.key,
        "description": v.row.description,
        "periodDays": v.row.period_days,
        "graceDays": v.row.grace_days,
        "hotmartProductIds": v.hotmart_product_ids,
        "hotmartPlanIds": v.hotmart_plan_ids,
    })
}

type LinkMap = std::collections::HashMap<(String, Option<i32>, Option<i32>), Vec<String>>;

/// Every product link of the app in one query: (provider, package, plan) → external ids.
async fn all_links(db: &impl ConnectionTrait, app_id: i32) -> AppResult<LinkMap> {
    let rows = link::Entity::find()
        .filter(link::Column::AppId.eq(app_id))
        .order_by_asc(link::Column::ExternalId)
        .all(db)
        .await?;
    let mut out = LinkMap::new();
    for l in rows {
        out.entry((l.provider, l.package_id, l.plan_id))
            .or_default()
            .push(l.external_id);
    }
    Ok(out)
}

/// Every package and plan of an app: (kind, id, name), without their links.
pub async fn all_targets(db: &impl ConnectionTrait, app_id: i32) -> AppResult<Vec<(TargetKind, i32, String)>> {
    use sea_orm::QuerySelect;
    let packages: Vec<(i32, String)> = entity::product_package::Entity::find()
        .select_only()
        .column(entity::product_package::Column::Id)
        .column(entity::product_package::Column::Name)
        .filter(entity::product_package::Column::AppId.eq(app_id))
        .into_tuple()
        .all(db)
        .await?;
    let plans: Vec<(i32, String)> = entity::subscription_plan::Entity::find()
        .select_only()
        .column(entity::subscription_plan::Column::Id)
        .column(entity::subscription_plan::Column::Name)
        .filter(entity::subscription_plan::Column::AppId.eq(app_id))
        .into_tuple()
        .all(db)
        .await?;
    Ok(packages
        .into_iter()
        .map(|(id, n)| (TargetKind::Package, id, n))
        .chain(plans.into_iter().map(|(id, n)| (TargetKind::Plan, id, n)))
        .collect())
}

/// Two queries whatever the number of packages.
pub async fn list_packages(db: &impl ConnectionTrait, app_id: i32) -> AppResult<Vec<PackageView>> {
    let rows = pkg::Entity::find()
        .filter(pkg::Column::AppId.eq(app_id))
        .order_by_asc(pkg::Column::Id)
        .all(db)
        .await?;
    let mut links = all_links(db, app_id).await?;
    Ok(rows
        .into_iter()
        .map(|row| PackageView {
            hotmart_product_ids: links
                .remove(&(PROVIDER_PRODUCT.to_string(), Some(row.id), None))
                .unwrap_or_default(),
            row,
        })
        .collect())
}

pub async fn get_package(db: &impl ConnectionTrait, app_id: i32, id: i32) -> AppResult<Option<PackageView>> {
    match pkg::Entity::find_by_id(id)
        .filter(pkg::Column::AppId.eq(app_id))
        .one(db)
        .await?
    {
        Some(r) => Ok(Some(package_view(db, r).await?)),
        None => Ok(None),
    }
}

/// Two queries whatever the number of plans.
pub async fn list_plans(db: &impl ConnectionTrait, app_id: i32) -> AppResult<Vec<PlanView>> {
    let rows = plan::Entity::find()
        .filter(plan::Column::AppId.eq(app_id))
        .order_by_asc(plan::Column::Id)
        .all(db)
        .await?;
    let mut links = all_links(db, app_id).await?;
    Ok(rows
        .into_iter()
        .map(|row| PlanView {
            hotmart_product_ids: links
                .remove(&(PROVIDER_PRODUCT.to_string(), None, Some(row.id)))
                .unwrap_or_default(),
            hotmart_plan_ids: links
                .remove(&(PROVIDER_PLAN.to_string(), None, Some(row.id)))
                .unwrap_or_default(),
            row,
        })
        .collect())
}

pub async fn get_plan(db: &impl ConnectionTrait, app_id: i32, id: i32) -> AppResult<Option<PlanView>> {
    match plan::Entity::find_by_id(id)
        .filter(plan::Column::AppId.eq(app_id))
        .one(db)
        .await?
    {
        Some(r) => Ok(Some(plan_view(db, r).await?)),
        None => Ok(None),
    }
}

pub async fn create_package(state: &AppState, who: &Principal, input: PackageInput) -> AppResult<PackageView> {
    who.require_admin()?;
    let name = clean_name(input.name)?;
    let days = input.access_days.flatten();
    check_days(days)?;
    let ids = clean_ids("hotmartProductIds", &input.hotmart_product_ids.unwrap_or_default())?;
    let key = clean_key(input.key.flatten())?;
    let txn = AdminWrite::begin(state, who).await?;
    if let Some(k) = &key {
        key_is_free(&txn, who.app_id, k, (TargetKind::Package, 0)).await?;
    }
    let now = super::now();
    let row = pkg::ActiveModel {
        app_id: Set(who.app_id),
        name: Set(name),
        key: Set(key),
        description: Set(input.description.unwrap_or_default().trim().to_string()),
        access_days: Set(days),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    set_links(&txn, who.app_id, PROVIDER_PRODUCT, (TargetKind::Package, row.id), &ids).await?;
    let view = package_view(&txn, row).await?;

    txn.commit(
        Change::new("package.create", format!("package:{}", view.row.id)).after(package_json(&view)),
        [Then::Catalog],
    )
    .await?;
    Ok(view)
}

pub async fn update_package(state: &AppState, who: &Principal, id: i32, input: PackageInput) -> AppResult<PackageView> {
    who.require_admin()?;
    let txn = AdminWrite::begin(state, who).await?;
    let current = get_package(&txn, who.app_id, id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("package {id} not found")))?;
    let before = package_json(&current);
    let mut am: pkg::ActiveModel = current.row.into();
    if input.name.is_some() {
        am.name = Set(clean_name(input.name)?);
    }
    if let Some(k) = input.key {
        let k = clean_key(k)?;
        if let Some(k) = &k {
            key_is_free(&txn, who.app_id, k, (TargetKind::Package, id)).await?;
        }
        am.key = Set(k);
    }
    if let Some(d) = input.description {
        am.description = Set(d.trim().to_string());
    }
    if let Some(days) = input.access_days {
        check_days(days)?;
        am.access_days = Set(days);
    }
    am.updated_at = Set(super::now());
    let row = am.update(&txn).await?;
    if let Some(ids) = input.hotmart_product_ids {
        let ids = clean_ids("hotmartProductIds", &ids)?;
        set_links(&txn, who.app_id, PROVIDER_PRODUCT, (TargetKind::Package, id), &ids).await?;
    }
    let view = package_view(&txn, row).await?;

    txn.commit(
        Change::new("package.update", format!("package:{id}"))
            .before(before)
            .after(package_json(&view)),
        [Then::Catalog],
    )
    .await?;
    Ok(view)
}

pub async fn create_plan(state: &AppState, who: &Principal, input: PlanInput) -> AppResult<PlanView> {
    who.require_admin()?;
    check_plan_days(&input)?;
    let name = clean_name(input.name)?;
    let ids = clean_ids("hotmartProductIds", &input.hotmart_product_ids.unwrap_or_default())?;
    let plan_ids = clean_ids("hotmartPlanIds", &input.hotmart_plan_ids.unwrap_or_default())?;
    let key = clean_key(input.key.flatten())?;
    let txn = AdminWrite::begin(state, who).await?;
    if let Some(k) = &key {
        key_is_free(&txn, who.app_id, k, (TargetKind::Plan, 0)).await?;
    }
    let now = super::now();
    let row = plan::ActiveModel {
        app_id: Set(who.app_id),
        name: Set(name),
        key: Set(key),
        description: Set(input.description.unwrap_or_default().trim().to_string()),
        period_days: Set(input.period_days.unwrap_or(crate::domain::DEFAULT_PERIOD_DAYS)),
        grace_days: Set(input.grace_days.unwrap_or(crate::domain::DEFAULT_GRACE_DAYS)),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    set_links(&txn, who.app_id, PROVIDER_PRODUCT, (TargetKind::Plan, row.id), &ids).await?;
    set_links(&txn, who.app_id, PROVIDER_PLAN, (TargetKind::Plan, row.id), &plan_ids).await?;
    let view = plan_view(&txn, row).await?;

    txn.commit(
        Change::new("plan.create", format!("plan:{}", view.row.id)).after(plan_json(&view)),
        [Then::Catalog],
    )
    .await?;
    Ok(view)
}

pub async fn update_plan(state: &AppState, who: &Principal, id: i32, input: PlanInput) -> AppResult<PlanView> {
    who.require_admin()?;
    check_plan_days(&input)?;
    let txn = AdminWrite::begin(state, who).await?;
    let current = get_plan(&txn, who.app_id, id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("subscription plan {id} not found")))?;
    let before = plan_json(&current);
    let mut am: plan::ActiveModel = current.row.into();
    if input.name.is_some() {
        am.name = Set(clean_name(input.name)?);
    }
    if let Some(k) = input.key {
        let k = clean_key(k)?;
        if let Some(k) = &k {
            key_is_free(&txn, who.app_id, k, (TargetKind::Plan, id)).await?;
        }
        am.key = Set(k);
    }
    if let Some(d) = input.description {
        am.description = Set(d.trim().to_string());
    }
    if let Some(d) = input.period_days {
        am.period_days = Set(d);
    }
    if let Some(d) = input.grace_days {
        am.grace_days = Set(d);
    }
    am.updated_at = Set(super::now());
    let row = am.update(&txn).await?;
    if let Some(ids) = input.hotmart_product_ids {
        let ids = clean_ids("hotmartProductIds", &ids)?;
        set_links(&txn, who.app_id, PROVIDER_PRODUCT, (TargetKind::Plan, id), &ids).await?;
    }
    if let Some(ids) = input.hotmart_plan_ids {
        let ids = clean_ids("hotmartPlanIds", &ids)?;
        set_links(&txn, who.app_id, PROVIDER_PLAN, (TargetKind::Plan, id), &ids).await?;
    }
    let view = plan_view(&txn, row).await?;

    txn.commit(
        Change::new("plan.update", format!("plan:{id}"))
            .before(before)
            .after(plan_json(&view)),
        [Then::Catalog],
    )
    .await?;
    Ok(view)
}

/// Deleting what buyers hold access to is refused unless forced; forcing revokes that access
/// (the entitlement rows go with the package or plan, and the audit row says how many).
pub async fn delete_target(
    state: &AppState,
    who: &Principal,
    kind: TargetKind,
    id: i32,
    force: bool,
) -> AppResult<i32> {
    who.require_admin()?;
    let txn = AdminWrite::begin(state, who).await?;
    let before = match kind {
        TargetKind::Package => get_package(&txn, who.app_id, id).await?.map(|v| package_json(&v)),
        TargetKind::Plan => get_plan(&txn, who.app_id, id).await?.map(|v| plan_json(&v)),
    };
    let Some(before) = before else {
        return Err(AppError::not_found(format!("{} {id} not found", kind.as_str())));
    };
    let live = entitlement::Entity::find()
        .filter(entitlement::Column::AppId.eq(who.app_id))
        .filter(entitlement::Column::TargetKind.eq(kind.as_str()))
        .filter(entitlement::Column::TargetId.eq(id))
        .filter(entitlement::Column::Status.is_in([EntitlementStatus::Active, EntitlementStatus::Suspended]))
        .all(&txn)
        .await?;
    let holders = live.len();
    if holders > 0 && !force {
        return Err(AppError::Conflict(format!(
            "{holders} buyer(s) hold access to this {}; delete with force: true to revoke it",
            kind.as_str()
        )));
    }
    crate::pipeline::outbox::announce_removal(&txn, &live, &who.actor(), "the package or plan was deleted").await?;
    entitlement::Entity::delete_many()
        .filter(entitlement::Column::AppId.eq(who.app_id))
        .filter(entitlement::Column::TargetKind.eq(kind.as_str()))
        .filter(entitlement::Column::TargetId.eq(id))
        .exec(&txn)
        .await?;
    // Its history goes too, so no recompute can bring back access to what no longer exists.
    entity::access_fact::Entity::delete_many()
        .filter(entity::access_fact::Column::AppId.eq(who.app_id))
        .filter(entity::access_fact::Column::TargetKind.eq(kind.as_str()))
        .filter(entity::access_fact::Column::TargetId.eq(id))
        .exec(&txn)
        .await?;
    match kind {
        TargetKind::Package => pkg::Entity::delete_by_id(id).exec(&txn).await?,
        TargetKind::Plan => plan::Entity::delete_by_id(id).exec(&txn).await?,
    };
    let reason = if holders > 0 {
        format!("forced: revoked access of {holders} buyer(s)")
    } else {
        String::new()
    };

    txn.commit(
        Change::new(format!("{}.delete", kind.as_str()), format!("{}:{id}", kind.as_str()))
            .before(before)
            .reason(&reason),
        [Then::Catalog, Then::WakeDispatcher],
    )
    .await?;
    Ok(holders as i32)
}

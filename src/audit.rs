//! The append-only audit log: every admin change and every access change writes one row, inside
//! the same transaction as the change itself.
use entity::audit_log;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use serde_json::Value;

use crate::AppResult;
use crate::db::{Page, Paged};

pub struct Entry<'a> {
    pub app_id: i32,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub reason: &'a str,
}

pub async fn record(db: &impl ConnectionTrait, e: Entry<'_>) -> AppResult<()> {
    model(e).insert(db).await?;
    Ok(())
}

/// The row an entry becomes (for writers that insert many at once).
pub fn model(e: Entry<'_>) -> audit_log::ActiveModel {
    audit_log::ActiveModel {
        app_id: Set(e.app_id),
        actor: Set(e.actor.to_string()),
        action: Set(e.action.to_string()),
        target: Set(e.target),
        before: Set(e.before.map(|v| v.to_string())),
        after: Set(e.after.map(|v| v.to_string())),
        reason: Set(e.reason.to_string()),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
}

/// Newest first.
pub async fn list(
    db: &impl ConnectionTrait,
    app_id: i32,
    target: Option<&str>,
    page: Page,
) -> AppResult<Paged<audit_log::Model>> {
    let mut q = audit_log::Entity::find().filter(audit_log::Column::AppId.eq(app_id));
    if let Some(t) = target {
        q = q.filter(audit_log::Column::Target.eq(t));
    }
    if let Some(after) = page.after {
        q = q.filter(audit_log::Column::Id.lt(after));
    }
    let rows = q
        .order_by_desc(audit_log::Column::Id)
        .limit(page.first + 1)
        .all(db)
        .await?;
    Ok(Paged::from_probe(rows, page.first))
}

/// What an audit row is about, in names a seller knows: `kind` is the target's prefix
/// (`entitlement`, `package`, `plan`, `buyer`, `webhook_event`, `rule`, …) and `name` what it is
/// called (`ana@… — Plano Mensal`, the package's name, the event's type, the key's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub kind: String,
    pub name: String,
}

/// Names the targets of a page of rows, from their own snapshots where they hold the name (so
/// deleted things keep theirs) and a few batched lookups for the rest.
pub async fn subjects(db: &impl ConnectionTrait, app_id: i32, rows: &[audit_log::Model]) -> AppResult<Vec<Subject>> {
    use std::collections::{BTreeSet, HashMap};

    use entity::{api_key, product_package as pp, subscription_plan as sp, webhook_event as we};
    use sea_orm::QuerySelect;

    let parse = |r: &audit_log::Model| -> (String, String) {
        match r.target.split_once(':') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (r.target.clone(), String::new()),
        }
    };
    let json = |s: &Option<String>| s.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok());
    let field = |r: &audit_log::Model, f: &str| {
        [json(&r.after), json(&r.before)]
            .into_iter()
            .flatten()
            .find_map(|v| v[f].as_str().map(str::to_string))
    };
    // What to look up: catalogue names (entitlements name theirs as "plan:3"), keys, events.
    let (mut packages, mut plans, mut keys, mut events) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for r in rows {
        let (kind, id) = parse(r);
        let target = match kind.as_str() {
            "entitlement" => {
                field(r, "target").and_then(|t| t.split_once(':').map(|(k, i)| (k.to_string(), i.to_string())))
            }
            "package" | "plan" => Some((kind.clone(), id.clone())),
            _ => None,
        };
        match target.as_ref().map(|(k, i)| (k.as_str(), i.parse::<i32>())) {
            Some(("package", Ok(i))) => drop(packages.insert(i)),
            Some(("plan", Ok(i))) => drop(plans.insert(i)),
            _ => {}
        }
        match (kind.as_str(), id.parse::<i32>()) {
            ("api_key", Ok(i)) => drop(keys.insert(i)),
            ("webhook_event", Ok(i)) => drop(events.insert(i)),
            _ => {}
        }
    }
    let mut names: HashMap<(&str, i32), String> = HashMap::new();
    if !packages.is_empty() {
        for p in pp::Entity::find()
            .filter(pp::Column::AppId.eq(app_id))
            .filter(pp::Column::Id.is_in(packages.clone()))
            .all(db)
            .await?
        {
            names.insert(("package", p.id), p.name);
        }
    }
    if !plans.is_empty() {
        for p in sp::Entity::find()
            .filter(sp::Column::AppId.eq(app_id))
            .filter(sp::Column::Id.is_in(plans.clone()))
            .all(db)
            .await?
        {
            names.insert(("plan", p.id), p.name);
        }
    }
    if !keys.is_empty() {
        for k in api_key::Entity::find()
            .filter(api_key::Column::AppId.eq(app_id))
            .filter(api_key::Column::Id.is_in(keys))
            .all(db)
            .await?
        {
            names.insert(("api_key", k.id), k.name);
        }
    }
    if !events.is_empty() {
        let found: Vec<(i32, String)> = we::Entity::find()
            .select_only()
            .column(we::Column::Id)
            .column(we::Column::EventType)
            .filter(we::Column::AppId.eq(app_id))
            .filter(we::Column::Id.is_in(events))
            .into_tuple()
            .all(db)
            .await?;
        for (id, t) in found {
            names.insert(("webhook_event", id), t);
        }
    }
    // Deleted packages and plans: the name their own audit rows recorded.
    let gone: Vec<String> = packages
        .iter()
        .filter(|i| !names.contains_key(&("package", **i)))
        .map(|i| format!("package:{i}"))
        .chain(
            plans
                .iter()
                .filter(|i| !names.contains_key(&("plan", **i)))
                .map(|i| format!("plan:{i}")),
        )
        .collect();
    if !gone.is_empty() {
        for r in audit_log::Entity::find()
            .filter(audit_log::Column::AppId.eq(app_id))
            .filter(audit_log::Column::Target.is_in(gone))
            .order_by_asc(audit_log::Column::Id)
            .all(db)
            .await?
        {
            let (kind, id) = parse(&r);
            if let (Some(name), Ok(id)) = (field(&r, "name"), id.parse::<i32>()) {
                let kind = if kind == "package" { "package" } else { "plan" };
                names.insert((kind, id), name);
            }
        }
    }
    let named = |kind: &str, id: &str| id.parse().ok().and_then(|i: i32| names.get(&(kind, i)).cloned());
    Ok(rows
        .iter()
        .map(|r| {
            let (kind, id) = parse(r);
            let name = match kind.as_str() {
                "entitlement" => {
                    let holder = field(r, "holder").unwrap_or_default();
                    let target = field(r, "target")
                        .and_then(|t| t.split_once(':').and_then(|(k, i)| named(k, i)))
                        .unwrap_or_default();
                    format!("{holder} — {target}")
                }
                // A deleted one keeps the name its snapshot recorded.
                "package" | "plan" => named(&kind, &id).or_else(|| field(r, "name")).unwrap_or(id),
                "api_key" => named(&kind, &id).or_else(|| field(r, "name")).unwrap_or(id),
                "notification_endpoint" => field(r, "url").unwrap_or(id),
                // An e-mail change names both; an erasure's id is the pseudonym.
                "buyer" => match (json(&r.before), json(&r.after)) {
                    (Some(b), Some(a)) if b["email"].is_string() && a["email"].is_string() => {
                        format!(
                            "{} → {}",
                            b["email"].as_str().unwrap_or_default(),
                            a["email"].as_str().unwrap_or_default()
                        )
                    }
                    _ => id,
                },
                "webhook_event" => named(&kind, &id).unwrap_or(id),
                _ => id,
            };
            Subject { kind, name }
        })
        .collect())
}

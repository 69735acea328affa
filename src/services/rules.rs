//! Rule scripts per app and event type, versioned; the shipped defaults are version 0.
use entity::{rule_script as rs, webhook_event as we};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use serde_json::json;

use super::{AdminWrite, Change, Then};
use crate::auth::Principal;
use crate::rules::{self, RuleError};
use crate::{AppError, AppResult, AppState};
use entity::status::InboxStatus;

pub use crate::pipeline::scripts::active;
pub use crate::rules::ActiveScript;

pub fn check_event_type(event_type: &str) -> AppResult<()> {
    if rules::default_script(event_type).is_some() {
        return Ok(());
    }
    let known: Vec<&str> = rules::scripted_event_types().collect();
    Err(AppError::InvalidFields(vec![(
        "eventType".into(),
        format!("{event_type:?} has no rule; rules exist for {}", known.join(", ")),
    )]))
}

pub async fn versions(db: &impl ConnectionTrait, app_id: i32, event_type: Option<&str>) -> AppResult<Vec<rs::Model>> {
    let mut q = rs::Entity::find().filter(rs::Column::AppId.eq(app_id));
    if let Some(t) = event_type {
        q = q.filter(rs::Column::EventType.eq(t));
    }
    Ok(q.order_by_asc(rs::Column::EventType)
        .order_by_desc(rs::Column::Version)
        .all(db)
        .await?)
}

fn rule_error(e: RuleError) -> AppError {
    AppError::InvalidFields(vec![("source".into(), e.to_string())])
}

/// Validates (compile, entry point, dry run over fixtures) before saving; a broken script is
/// refused and the active version stays. `activate`: the new version decides from now on (and
/// the events the old one decided are decided again); otherwise it is a draft, to backtest and
/// activate later.
/// `cases`: test cases (the `rules test` format); a version whose cases fail is refused.
pub async fn save(
    state: &AppState,
    who: &Principal,
    event_type: &str,
    source: &str,
    activate: bool,
    cases: Option<&str>,
) -> AppResult<rs::Model> {
    who.require_admin()?;
    check_event_type(event_type)?;
    if source.len() > 64 * 1024 {
        return Err(AppError::InvalidFields(vec![(
            "source".into(),
            "script is larger than 64 KiB".into(),
        )]));
    }
    rules::validate(&state.rules, event_type, source).map_err(rule_error)?;
    let cases = match cases.map(str::trim).filter(|c| !c.is_empty()) {
        Some(text) => {
            let cases = checked_cases(state, who.app_id, event_type, source, text).await?;
            // Kept as given: a stored event stays a reference (its payload, with the buyer's
            // data, is not copied here, so an erasure leaves nothing behind).
            Some(serde_json::to_string_pretty(&cases).map_err(AppError::internal)?)
        }
        None => None,
    };
    let txn = AdminWrite::begin(state, who).await?;
    let before = active(&txn, who.app_id, event_type).await?.map(|a| a.version);
    let latest = versions(&txn, who.app_id, Some(event_type))
        .await?
        .first()
        .map_or(0, |r| r.version);
    let queued = if activate {
        deactivate_all(&txn, who.app_id, event_type).await?
    } else {
        0
    };
    let row = rs::ActiveModel {
        app_id: Set(who.app_id),
        event_type: Set(event_type.into()),
        version: Set(latest + 1),
        source: Set(source.into()),
        active: Set(activate),
        cases: Set(cases),
        created_by: Set(who.actor()),
        created_at: Set(super::now()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;

    txn.commit(
        Change::new(
            if activate { "rule.save" } else { "rule.draft" },
            format!("rule:{event_type}"),
        )
        .before(before.map(|v| json!({"version": v})).unwrap_or_default())
        .after(json!({"version": row.version, "active": activate, "eventsRequeued": queued})),
        if activate { vec![Then::Rules] } else { vec![] },
    )
    .await?;
    Ok(row)
}

/// Reads test cases, puts each stored event's payload in, and runs them: every failure is
/// reported on the `cases` field.
async fn checked_cases(
    state: &AppState,
    app_id: i32,
    event_type: &str,
    source: &str,
    text: &str,
) -> AppResult<Vec<rules::cases::Case>> {
    let bad = |m: String| AppError::InvalidFields(vec![("cases".into(), m)]);
    let given = rules::cases::parse(text).map_err(bad)?;
    if given.len() > 200 {
        return Err(bad("at most 200 cases per version".into()));
    }
    let mut cases = given.clone();
    for c in &mut cases {
        if let (None, Some(id)) = (&c.payload, c.event_id) {
            let row = we::Entity::find_by_id(id)
                .filter(we::Column::AppId.eq(app_id))
                .one(&state.db)
                .await?
                .ok_or_else(|| bad(format!("case {:?}: no stored event {id}", c.name)))?;
            let body: serde_json::Value = serde_json::from_slice(&row.raw_body)
                .map_err(|_| bad(format!("case {:?}: stored event {id} is not a JSON payload", c.name)))?;
            c.payload = Some(body);
        }
    }
    let engine = state.rules.clone();
    let (t, s) = (event_type.to_string(), source.to_string());
    tokio::task::spawn_blocking(move || rules::cases::run(&engine, &t, &s, &cases))
        .await
        .map_err(AppError::internal)?
        .map_err(bad)?;
    Ok(given)
}

/// Deactivates every version of an event type's script, and sends the events the old version
/// decided back to the queue: the new version re-decides them and every source they touch is
/// recomputed, whatever the old or the new outcome. Returns how many events were queued.
async fn deactivate_all(db: &impl ConnectionTrait, app_id: i32, event_type: &str) -> AppResult<u64> {
    rs::Entity::update_many()
        .col_expr(rs::Column::Active, Expr::value(false))
        .filter(rs::Column::AppId.eq(app_id))
        .filter(rs::Column::EventType.eq(event_type))
        .exec(db)
        .await?;
    let queued = we::Entity::update_many()
        .col_expr(we::Column::Status, Expr::value(InboxStatus::Pending))
        .col_expr(we::Column::Attempts, Expr::value(0))
        .filter(crate::pipeline::backtest::redecided_on_activation(app_id, event_type))
        .exec(db)
        .await?
        .rows_affected;
    Ok(queued)
}

/// Rollback (or forward) to a saved version; version 0 returns to the shipped default.
pub async fn activate(state: &AppState, who: &Principal, event_type: &str, version: i32) -> AppResult<ActiveScript> {
    who.require_admin()?;
    check_event_type(event_type)?;
    let txn = AdminWrite::begin(state, who).await?;
    let before = active(&txn, who.app_id, event_type).await?.map(|a| a.version);
    let queued = if version != 0 {
        let row = rs::Entity::find()
            .filter(rs::Column::AppId.eq(who.app_id))
            .filter(rs::Column::EventType.eq(event_type))
            .filter(rs::Column::Version.eq(version))
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found(format!("{event_type} has no version {version}")))?;
        let q = deactivate_all(&txn, who.app_id, event_type).await?;
        let mut am: rs::ActiveModel = row.into();
        am.active = Set(true);
        // Promoted: it decides now, so it is no longer in shadow.
        am.shadow = Set(false);
        am.update(&txn).await?;
        q
    } else {
        deactivate_all(&txn, who.app_id, event_type).await?
    };

    let now = active(&txn, who.app_id, event_type)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("no script after activation")))?;
    txn.commit(
        Change::new("rule.activate", format!("rule:{event_type}"))
            .before(before.map(|v| json!({"version": v})).unwrap_or_default())
            .after(json!({"version": version, "eventsRequeued": queued})),
        [Then::Rules],
    )
    .await?;
    Ok(now)
}

/// Puts a saved version in shadow (decided beside the active one on every live event, nothing
/// applied), or takes the shadow away (`None`). One version per event type at most.
pub async fn set_shadow(state: &AppState, who: &Principal, event_type: &str, version: Option<i32>) -> AppResult<()> {
    who.require_admin()?;
    check_event_type(event_type)?;
    let txn = AdminWrite::begin(state, who).await?;
    let before = crate::pipeline::scripts::shadow(&txn, who.app_id, event_type)
        .await?
        .map(|s| s.version);
    rs::Entity::update_many()
        .col_expr(rs::Column::Shadow, Expr::value(false))
        .filter(rs::Column::AppId.eq(who.app_id))
        .filter(rs::Column::EventType.eq(event_type))
        .exec(&txn)
        .await?;
    if let Some(v) = version {
        let row = rs::Entity::find()
            .filter(rs::Column::AppId.eq(who.app_id))
            .filter(rs::Column::EventType.eq(event_type))
            .filter(rs::Column::Version.eq(v))
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found(format!("{event_type} has no saved version {v}")))?;
        if row.active {
            return Err(AppError::InvalidFields(vec![(
                "version".into(),
                format!("version {v} is the active one; a shadow is a version that is not"),
            )]));
        }
        let mut am: rs::ActiveModel = row.into();
        am.shadow = Set(true);
        am.update(&txn).await?;
    }
    txn.commit(
        Change::new("rule.shadow", format!("rule:{event_type}"))
            .before(json!({"shadow": before}))
            .after(json!({"shadow": version})),
        [Then::Rules],
    )
    .await
}

/// Activates the version in shadow (as [`activate`] does).
pub async fn promote_shadow(state: &AppState, who: &Principal, event_type: &str) -> AppResult<ActiveScript> {
    check_event_type(event_type)?;
    let shadow = crate::pipeline::scripts::shadow(&state.db, who.app_id, event_type)
        .await?
        .ok_or_else(|| AppError::not_found(format!("{event_type} has no version in shadow")))?;
    activate(state, who, event_type, shadow.version).await
}

/// The shadow's record for an event type: per version decided in shadow (the current one and
/// earlier ones), how often it agreed and disagreed with the active version, and samples of
/// the disagreements, newest first.
pub struct ShadowRecord {
    pub version: i32,
    pub current: bool,
    pub agreed: i64,
    pub disagreed: i64,
    pub samples: Vec<entity::rule_shadow_sample::Model>,
}

pub async fn shadow_records(db: &impl ConnectionTrait, app_id: i32, event_type: &str) -> AppResult<Vec<ShadowRecord>> {
    use entity::rule_shadow_sample as sample;
    let current = crate::pipeline::scripts::shadow(db, app_id, event_type)
        .await?
        .map(|s| s.version);
    let prefix = format!("{event_type}:");
    let rows = entity::rollup::Entity::find()
        .filter(entity::rollup::Column::AppId.eq(app_id))
        .filter(entity::rollup::Column::Family.eq("shadow"))
        .filter(entity::rollup::Column::Bucket.starts_with(&prefix))
        .all(db)
        .await?;
    let mut by_version: std::collections::BTreeMap<i32, (i64, i64)> = Default::default();
    if let Some(v) = current {
        by_version.entry(v).or_default();
    }
    for r in rows {
        // `PURCHASE_APPROVED:3|agree`
        let Some((v, side)) = r.bucket[prefix.len()..].split_once('|') else {
            continue;
        };
        let Ok(v) = v.parse::<i32>() else { continue };
        let e = by_version.entry(v).or_default();
        if side == "agree" {
            e.0 += r.n;
        } else {
            e.1 += r.n;
        }
    }
    let mut out = Vec::new();
    for (version, (agreed, disagreed)) in by_version.into_iter().rev() {
        let samples = sample::Entity::find()
            .filter(sample::Column::AppId.eq(app_id))
            .filter(sample::Column::EventType.eq(event_type))
            .filter(sample::Column::Version.eq(version))
            .order_by_desc(sample::Column::Id)
            .limit(20)
            .all(db)
            .await?;
        out.push(ShadowRecord {
            version,
            current: current == Some(version),
            agreed,
            disagreed,
            samples,
        });
    }
    Ok(out)
}

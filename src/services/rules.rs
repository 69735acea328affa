//! Rule scripts per app and event type, versioned; the shipped defaults are version 0.
use entity::{rule_script as rs, webhook_event as we};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
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
pub async fn save(
    state: &AppState,
    who: &Principal,
    event_type: &str,
    source: &str,
    activate: bool,
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

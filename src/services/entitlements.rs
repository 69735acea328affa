//! Access changes: manual grants and revokes, and the recomputation of one source's access from its
//! events. Every change writes its audit row in the same transaction.
use chrono::{DateTime, Utc};
use entity::{entitlement, webhook_event};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde_json::json;

use super::audit::{self, Entry};
use super::buyers;
use crate::auth::Principal;
use crate::domain::{AccessState, Decision, EntitlementStatus, EventKind, SourceEvent, TargetKind, compute_access};
use crate::{AppError, AppResult, AppState};

pub const MANUAL_SOURCE: &str = "manual";

fn snapshot(e: &entitlement::Model) -> serde_json::Value {
    json!({
        "status": e.status,
        "target": format!("{}:{}", e.target_kind, e.target_id),
        "source": e.source,
        "expiresAt": e.expires_at.map(|t| t.to_rfc3339()),
    })
}

async fn rows_for(
    db: &impl ConnectionTrait,
    app_id: i32,
    buyer_id: i32,
    source: &str,
) -> AppResult<Vec<entitlement::Model>> {
    Ok(entitlement::Entity::find()
        .filter(entitlement::Column::AppId.eq(app_id))
        .filter(entitlement::Column::BuyerId.eq(buyer_id))
        .filter(entitlement::Column::Source.eq(source))
        .all(db)
        .await?)
}

/// Writes `state` into the row for (buyer, target, source), creating it if needed; audits changes.
async fn write_state(
    db: &impl ConnectionTrait,
    app_id: i32,
    buyer_id: i32,
    source: &str,
    state: &AccessState,
    actor: &str,
    existing: Option<entitlement::Model>,
) -> AppResult<()> {
    let now = super::now();
    let before = existing.as_ref().map(snapshot);
    let mut am: entitlement::ActiveModel = match existing {
        Some(e) => e.into(),
        None => entitlement::ActiveModel {
            app_id: Set(app_id),
            buyer_id: Set(buyer_id),
            target_kind: Set(state.target.0.as_str().into()),
            target_id: Set(state.target.1),
            source: Set(source.into()),
            created_at: Set(now),
            ..Default::default()
        },
    };
    am.status = Set(state.status.as_str().into());
    am.granted_at = Set(state.granted_at);
    am.revoked_at = Set(state.revoked_at);
    am.expires_at = Set(state.expires_at);
    am.last_event_id = Set((state.last_event_row > 0).then_some(state.last_event_row));
    am.rule_version = Set(state.rule_version);
    am.reason = Set(state.reason.clone());
    am.updated_at = Set(now);
    let saved: entitlement::Model = am.save(db).await?.try_into().map_err(AppError::internal)?;
    let after = snapshot(&saved);
    if before.as_ref() != Some(&after) {
        audit::record(
            db,
            Entry {
                app_id,
                actor,
                action: "access.change",
                target: format!("entitlement:{}", saved.id),
                before,
                after: Some(after),
                reason: &state.reason,
            },
        )
        .await?;
    }
    Ok(())
}

/// The events of one source that the rules decided on, as the fold needs them.
pub async fn source_events(db: &impl ConnectionTrait, app_id: i32, source_key: &str) -> AppResult<Vec<SourceEvent>> {
    let rows = webhook_event::Entity::find()
        .filter(webhook_event::Column::AppId.eq(app_id))
        .filter(webhook_event::Column::SourceKey.eq(source_key))
        .filter(webhook_event::Column::Status.is_in(["processed", "ignored"]))
        .order_by_asc(webhook_event::Column::Id)
        .all(db)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (Some(decision), Some(kind), Some(tid), Some(at)) = (
            r.decision
                .as_deref()
                .and_then(|d| serde_json::from_str::<Decision>(d).ok()),
            r.target_kind.as_deref().and_then(TargetKind::parse),
            r.target_id,
            r.occurred_at,
        ) else {
            continue;
        };
        out.push(SourceEvent {
            row_id: r.id,
            event_id: r.event_id,
            kind: EventKind::parse(&r.event_type),
            occurred_at: at,
            transaction: r.transaction,
            target: (kind, tid),
            decision,
            rule_version: r.rule_version,
        });
    }
    Ok(out)
}

/// Recomputes a source's access from all of its events, so a late event lands where it belongs.
/// The caller holds the transaction (and, on PostgreSQL, the per-source lock).
pub async fn recompute_source(
    db: &impl ConnectionTrait,
    app_id: i32,
    buyer_id: i32,
    source_key: &str,
) -> AppResult<()> {
    let events = source_events(db, app_id, source_key).await?;
    let Some(state) = compute_access(&events) else {
        return Ok(());
    };
    let rows = rows_for(db, app_id, buyer_id, source_key).await?;
    let (mine, others): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .partition(|r| r.target_kind == state.target.0.as_str() && r.target_id == state.target.1);
    write_state(
        db,
        app_id,
        buyer_id,
        source_key,
        &state,
        "rules",
        mine.into_iter().next(),
    )
    .await?;
    // A plan switch moves the source's access: what it gave elsewhere ends now.
    let moved: Vec<_> = others
        .into_iter()
        .filter(|o| o.status == "ACTIVE" || o.status == "SUSPENDED")
        .collect();
    let reason = format!("moved to {}:{}", state.target.0.as_str(), state.target.1);
    revoke_rows(db, app_id, moved, "rules", &reason).await?;
    Ok(())
}

pub async fn grant_manual(
    state: &AppState,
    who: &Principal,
    email: &str,
    target: (TargetKind, i32),
    expires_at: Option<DateTime<Utc>>,
    reason: &str,
) -> AppResult<()> {
    who.require_admin()?;
    let email = buyers::parse_email(email)?;
    if reason.trim().is_empty() {
        return Err(AppError::InvalidFields(vec![(
            "reason".into(),
            "a reason is required for manual access changes".into(),
        )]));
    }
    if expires_at.is_some_and(|t| t <= super::now()) {
        return Err(AppError::InvalidFields(vec![(
            "expiresAt".into(),
            "expiresAt is in the past".into(),
        )]));
    }
    let txn = crate::db::write_txn(&state.db).await?;
    if super::catalog::target(&txn, who.app_id, target.0, target.1)
        .await?
        .is_none()
    {
        return Err(AppError::not_found(format!(
            "{} {} not found",
            target.0.as_str(),
            target.1
        )));
    }
    let buyer = buyers::upsert(&txn, who.app_id, &email, None).await?;
    let existing = rows_for(&txn, who.app_id, buyer.id, MANUAL_SOURCE)
        .await?
        .into_iter()
        .find(|r| r.target_kind == target.0.as_str() && r.target_id == target.1);
    let s = AccessState {
        target,
        status: EntitlementStatus::Active,
        granted_at: Some(super::now()),
        revoked_at: None,
        expires_at,
        last_event_row: 0,
        rule_version: None,
        reason: format!("manual grant: {}", reason.trim()),
    };
    write_state(&txn, who.app_id, buyer.id, MANUAL_SOURCE, &s, &who.actor(), existing).await?;
    txn.commit().await?;
    Ok(())
}

/// Revokes every entitlement the buyer holds to the target, whatever its source. Returns how many.
pub async fn revoke_manual(
    state: &AppState,
    who: &Principal,
    email: &str,
    target: (TargetKind, i32),
    reason: &str,
) -> AppResult<i32> {
    who.require_admin()?;
    let email = buyers::parse_email(email)?;
    if reason.trim().is_empty() {
        return Err(AppError::InvalidFields(vec![(
            "reason".into(),
            "a reason is required for manual access changes".into(),
        )]));
    }
    let txn = crate::db::write_txn(&state.db).await?;
    let Some(buyer) = buyers::find(&txn, who.app_id, &email).await? else {
        return Err(AppError::not_found(format!("no buyer with e-mail {email}")));
    };
    let rows = entitlement::Entity::find()
        .filter(entitlement::Column::AppId.eq(who.app_id))
        .filter(entitlement::Column::BuyerId.eq(buyer.id))
        .filter(entitlement::Column::TargetKind.eq(target.0.as_str()))
        .filter(entitlement::Column::TargetId.eq(target.1))
        .filter(entitlement::Column::Status.is_in(["ACTIVE", "SUSPENDED"]))
        .all(&txn)
        .await?;
    let n = revoke_rows(
        &txn,
        who.app_id,
        rows,
        &who.actor(),
        &format!("manual revoke: {}", reason.trim()),
    )
    .await?;
    txn.commit().await?;
    Ok(n)
}

/// One step of the history behind a buyer's access.
#[derive(Debug, Clone)]
pub struct ExplainStep {
    pub source: String,
    pub event: SourceEvent,
}

/// The events and decisions that produced the buyer's access to a target, in the order the fold
/// applies them.
pub async fn explain(
    db: &impl ConnectionTrait,
    app_id: i32,
    email: &str,
    target: (TargetKind, i32),
) -> AppResult<(Vec<buyers::AccessView>, Vec<ExplainStep>)> {
    let email = buyers::parse_email(email)?;
    let access: Vec<_> = buyers::access(db, app_id, &email)
        .await?
        .into_iter()
        .filter(|a| a.entitlement.target_kind == target.0.as_str() && a.entitlement.target_id == target.1)
        .collect();
    let mut steps = Vec::new();
    for a in &access {
        let mut events = source_events(db, app_id, &a.entitlement.source).await?;
        events.sort_by(|x, y| {
            (x.occurred_at, crate::domain::precedence(&x.kind), &x.event_id).cmp(&(
                y.occurred_at,
                crate::domain::precedence(&y.kind),
                &y.event_id,
            ))
        });
        steps.extend(events.into_iter().map(|event| ExplainStep {
            source: a.entitlement.source.clone(),
            event,
        }));
    }
    Ok((access, steps))
}

/// Revokes whatever one source gives, for every buyer (support cancelling a subscription now).
pub async fn revoke_source(
    db: &impl ConnectionTrait,
    app_id: i32,
    source: &str,
    actor: &str,
    reason: &str,
) -> AppResult<i32> {
    let rows = entitlement::Entity::find()
        .filter(entitlement::Column::AppId.eq(app_id))
        .filter(entitlement::Column::Source.eq(source))
        .filter(entitlement::Column::Status.is_in(["ACTIVE", "SUSPENDED"]))
        .all(db)
        .await?;
    revoke_rows(db, app_id, rows, actor, reason).await
}

/// Marks the given entitlements revoked now, each with its audit row.
async fn revoke_rows(
    db: &impl ConnectionTrait,
    app_id: i32,
    rows: Vec<entitlement::Model>,
    actor: &str,
    reason: &str,
) -> AppResult<i32> {
    let n = rows.len() as i32;
    for r in rows {
        let s = AccessState {
            target: (
                TargetKind::parse(&r.target_kind).unwrap_or(TargetKind::Plan),
                r.target_id,
            ),
            status: EntitlementStatus::Revoked,
            granted_at: r.granted_at,
            revoked_at: Some(super::now()),
            expires_at: r.expires_at,
            last_event_row: r.last_event_id.unwrap_or(0),
            rule_version: r.rule_version,
            reason: reason.to_string(),
        };
        let (buyer, source) = (r.buyer_id, r.source.clone());
        write_state(db, app_id, buyer, &source, &s, actor, Some(r)).await?;
    }
    Ok(n)
}

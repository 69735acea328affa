//! Access histories and their projection. Every change to access is a fact added to one source's
//! history (an inbox event's decision, or an admin's grant or revoke); the source's entitlement
//! row is then recomputed from all of its facts ([`crate::domain::project`]) and written with its
//! audit row, in the caller's transaction.

use chrono::{DateTime, Utc};
use entity::entitlement;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::buyers;
use crate::auth::Principal;
use crate::domain::{Effect, EntitlementStatus, Fact, TargetKind};
use crate::pipeline::access_cache::{AccessView, Changed};
use crate::pipeline::history::{self, lock_source, row_of};
use crate::pipeline::ledger::Ledger;
use crate::{AppError, AppResult, AppState};

/// The source of an admin's grant of one target to one buyer.
pub fn manual_source(target: (TargetKind, i32), buyer_id: i32) -> String {
    format!("manual:{}:{}:{buyer_id}", target.0.as_str(), target.1)
}

fn admin_fact(
    effect: Effect,
    target: (TargetKind, i32),
    until: Option<DateTime<Utc>>,
    email: Option<&str>,
    reason: &str,
) -> Fact {
    let now = super::now();
    Fact {
        effect,
        occurred_at: now,
        paid_at: None,
        // Admin facts of the same instant keep the order they were made in.
        key: format!(
            "admin:{}:{}",
            now.timestamp_nanos_opt().unwrap_or_default(),
            uuid::Uuid::new_v4().simple()
        ),
        event_type: match effect {
            Effect::AdminGrant => "ADMIN_GRANT".into(),
            Effect::AdminMove => "ADMIN_MOVE".into(),
            _ => "ADMIN_REVOKE".into(),
        },
        transaction: None,
        until,
        email: email.map(str::to_string),
        target,
        event_row: 0,
        rule_version: None,
        reason: reason.to_string(),
    }
}

/// Adds an admin fact to a source and recomputes it.
async fn add_admin_fact(
    db: &impl ConnectionTrait,
    ledger: &mut Ledger,
    app_id: i32,
    source: &str,
    f: &Fact,
    actor: &str,
) -> AppResult<Changed> {
    lock_source(db, app_id, source).await?;
    ledger.add_fact(db, app_id, source, f, actor).await?;
    let changed = ledger.recompute(db, app_id, source, actor).await?;
    ledger.flush(db).await?;
    Ok(changed)
}

fn require_reason(reason: &str) -> AppResult<String> {
    let r = reason.trim();
    if r.is_empty() {
        return Err(AppError::InvalidFields(vec![(
            "reason".into(),
            "a reason is required for manual access changes".into(),
        )]));
    }
    Ok(r.to_string())
}

/// Gives a buyer access to a target by hand, until `expires_at` (`None`: for good). It is a
/// source of its own; Hotmart facts of other sources neither extend nor end it.
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
    let reason = require_reason(reason)?;
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
    // The source is named after the buyer's id: a new buyer is written first.
    let mut ledger = Ledger::default();
    ledger.upsert_buyer(&txn, who.app_id, &email, None).await?;
    ledger.flush(&txn).await?;
    let buyer = ledger.upsert_buyer(&txn, who.app_id, &email, None).await?;
    let f = admin_fact(Effect::AdminGrant, target, expires_at, Some(email.as_str()), &reason);
    let source = manual_source(target, buyer.id);
    let changed = add_admin_fact(&txn, &mut ledger, who.app_id, &source, &f, &who.actor()).await?;
    #[allow(clippy::disallowed_methods)] // the ledger wrote this change's audit rows, one per entitlement
    txn.commit().await?;
    state.access_changed(&changed);
    Ok(())
}

/// Revokes every entitlement the buyer holds to the target, whatever its source, or only the
/// one from `source`. The revoke is a
/// fact of each source, so no later Hotmart event of those sources brings access back. Returns
/// how many entitlements gave access until now.
pub async fn revoke_manual(
    state: &AppState,
    who: &Principal,
    email: &str,
    target: (TargetKind, i32),
    source: Option<&str>,
    reason: &str,
) -> AppResult<i32> {
    who.require_admin()?;
    let email = buyers::parse_email(email)?;
    let reason = require_reason(reason)?;
    let txn = crate::db::write_txn(&state.db).await?;
    let Some(buyer) = buyers::find(&txn, who.app_id, &email).await? else {
        return Err(AppError::not_found(format!("no buyer with e-mail {email}")));
    };
    let rows = entitlement::Entity::find()
        .filter(entitlement::Column::AppId.eq(who.app_id))
        .filter(entitlement::Column::BuyerId.eq(buyer.id))
        .filter(entitlement::Column::TargetKind.eq(target.0.as_str()))
        .filter(entitlement::Column::TargetId.eq(target.1))
        .all(&txn)
        .await?;
    // One row of the console (a sale, a subscription, a courtesy) revokes only its own source.
    let rows = match source {
        None => rows,
        Some(s) => {
            let one: Vec<_> = rows.into_iter().filter(|r| r.source == s.trim()).collect();
            if one.is_empty() {
                return Err(AppError::not_found(format!(
                    "{email} holds nothing to this package or plan from source {s}"
                )));
            }
            one
        }
    };
    let (mut n, mut changed) = (0, Changed::default());
    for r in rows {
        let (live, c) = revoke_row(&txn, who.app_id, &r, &who.actor(), &reason).await?;
        n += live;
        changed.extend(c);
    }
    #[allow(clippy::disallowed_methods)] // the ledger wrote this change's audit rows, one per entitlement
    txn.commit().await?;
    state.access_changed(&changed);
    Ok(n)
}

async fn revoke_row(
    db: &impl ConnectionTrait,
    app_id: i32,
    r: &entitlement::Model,
    actor: &str,
    reason: &str,
) -> AppResult<(i32, Changed)> {
    let was_live = matches!(
        r.status.effective(r.expires_at, super::now()),
        EntitlementStatus::Active | EntitlementStatus::Suspended
    );
    let target = (
        TargetKind::parse(&r.target_kind).unwrap_or(TargetKind::Plan),
        r.target_id,
    );
    let f = admin_fact(Effect::AdminRevoke, target, None, None, reason);
    let changed = add_admin_fact(db, &mut Ledger::default(), app_id, &r.source, &f, actor).await?;
    Ok((i32::from(was_live), changed))
}

/// Revokes whatever one source gives (support cancelling a subscription now). Hotmart's own
/// cancellation that follows cannot give it back.
pub async fn revoke_source(
    db: &impl ConnectionTrait,
    app_id: i32,
    source: &str,
    actor: &str,
    reason: &str,
) -> AppResult<(i32, Changed)> {
    match row_of(db, app_id, source).await? {
        Some(r) => revoke_row(db, app_id, &r, actor, reason).await,
        None => Ok((0, Changed::default())),
    }
}

/// Moves everything a buyer holds, every source and ended ones too, to another e-mail (the daily
/// "comprei com outro e-mail"). Each source gets an admin move fact, so Hotmart events that later
/// arrive under the old e-mail leave it where support put it; the app hears `access.revoked` for
/// the old e-mail and `access.granted` for the new one. Returns how many entitlements moved.
pub async fn change_email(state: &AppState, who: &Principal, from: &str, to: &str, reason: &str) -> AppResult<i32> {
    who.require_admin()?;
    let from = buyers::parse_email(from)?;
    let to = buyers::parse_email(to).map_err(|_| {
        AppError::InvalidFields(vec![(
            "newEmail".into(),
            "the new e-mail is not a valid address".into(),
        )])
    })?;
    if from == to {
        return Err(AppError::InvalidFields(vec![(
            "newEmail".into(),
            "the new e-mail is the buyer's current one".into(),
        )]));
    }
    let reason = require_reason(reason)?;
    let txn = crate::db::write_txn(&state.db).await?;
    let Some(old) = buyers::find(&txn, who.app_id, &from).await? else {
        return Err(AppError::not_found(format!("no buyer with e-mail {from}")));
    };
    let rows = entitlement::Entity::find()
        .filter(entitlement::Column::AppId.eq(who.app_id))
        .filter(entitlement::Column::BuyerId.eq(old.id))
        .all(&txn)
        .await?;
    if rows.is_empty() {
        return Err(AppError::not_found(format!("{from} holds nothing to move")));
    }
    let mut ledger = Ledger::default();
    // The person is the same: the new e-mail's buyer takes their name (when they have one).
    let name = (!old.name.is_empty()).then_some(old.name.as_str());
    ledger.upsert_buyer(&txn, who.app_id, &to, name).await?;
    let mut changed = Changed::default();
    for r in &rows {
        let target = (
            TargetKind::parse(&r.target_kind).unwrap_or(TargetKind::Plan),
            r.target_id,
        );
        let f = admin_fact(Effect::AdminMove, target, None, Some(to.as_str()), &reason);
        changed.extend(add_admin_fact(&txn, &mut ledger, who.app_id, &r.source, &f, &who.actor()).await?);
    }
    crate::audit::record(
        &txn,
        crate::audit::Entry {
            app_id: who.app_id,
            actor: &who.actor(),
            action: "buyer.email_change",
            target: format!("buyer:{}", old.id),
            before: Some(serde_json::json!({ "email": from.as_str() })),
            after: Some(serde_json::json!({ "email": to.as_str(), "entitlements": rows.len() })),
            reason: &reason,
        },
    )
    .await?;
    #[allow(clippy::disallowed_methods)] // the ledger wrote the per-entitlement audit rows, and the summary is above
    txn.commit().await?;
    state.access_changed(&changed);
    Ok(rows.len() as i32)
}

/// One step of the history behind a buyer's access.
#[derive(Debug, Clone)]
pub struct ExplainStep {
    pub source: String,
    pub fact: Fact,
}

/// The facts behind the buyer's access to a target, per source, in the order they are applied.
pub async fn explain(
    db: &impl ConnectionTrait,
    app_id: i32,
    email: &str,
    target: (TargetKind, i32),
) -> AppResult<(Vec<AccessView>, Vec<ExplainStep>)> {
    let email = buyers::parse_email(email)?;
    let access: Vec<_> = crate::pipeline::access_cache::read(db, app_id, &email)
        .await?
        .into_iter()
        .filter(|a| a.entitlement.target_kind == target.0.as_str() && a.entitlement.target_id == target.1)
        .collect();
    let mut steps = Vec::new();
    for a in &access {
        let history = history::facts(db, app_id, &a.entitlement.source).await?;
        steps.extend(crate::domain::sorted(&history).into_iter().map(|f| ExplainStep {
            source: a.entitlement.source.clone(),
            fact: f.clone(),
        }));
    }
    Ok((access, steps))
}

//! Access histories and their projection. Every change to access is a fact added to one source's
//! history (an inbox event's decision, or an admin's grant or revoke); the source's entitlement
//! row is then recomputed from all of its facts ([`crate::domain::project`]) and written with its
//! audit row, in the caller's transaction.
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use entity::{buyer, entitlement};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    Statement,
};
use serde_json::json;

use super::access_cache::Changed;
use super::buyers;
use super::ledger::Ledger;
use super::outbox;
use crate::auth::Principal;
use crate::domain::{Effect, EntitlementStatus, Fact, TargetKind};
use crate::{AppError, AppResult, AppState};

/// The source of an admin's grant of one target to one buyer.
pub fn manual_source(target: (TargetKind, i32), buyer_id: i32) -> String {
    format!("manual:{}:{}:{buyer_id}", target.0.as_str(), target.1)
}

/// Serialises work on one source across workers and processes (PostgreSQL); SQLite already has
/// a single writer.
pub async fn lock_source(db: &impl ConnectionTrait, app_id: i32, source: &str) -> AppResult<()> {
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            [format!("{app_id}:{source}").into()],
        ))
        .await?;
    }
    Ok(())
}

async fn email_of(db: &impl ConnectionTrait, buyer_id: i32) -> AppResult<String> {
    Ok(buyer::Entity::find_by_id(buyer_id)
        .one(db)
        .await?
        .map(|b| b.email)
        .unwrap_or_default())
}

/// The entitlement one source gives (one row per source).
pub async fn row_of(db: &impl ConnectionTrait, app_id: i32, source: &str) -> AppResult<Option<entitlement::Model>> {
    Ok(entitlement::Entity::find()
        .filter(entitlement::Column::AppId.eq(app_id))
        .filter(entitlement::Column::Source.eq(source))
        .one(db)
        .await?)
}

/// The entitlements of many sources, one query per app (and per few hundred sources).
pub async fn rows_of(
    db: &impl ConnectionTrait,
    keys: &BTreeSet<(i32, String)>,
) -> AppResult<std::collections::HashMap<(i32, String), entitlement::Model>> {
    let mut by_app: std::collections::BTreeMap<i32, Vec<String>> = Default::default();
    for (app, s) in keys {
        by_app.entry(*app).or_default().push(s.clone());
    }
    let mut out = std::collections::HashMap::new();
    for (app_id, list) in by_app {
        for chunk in list.chunks(200) {
            for e in entitlement::Entity::find()
                .filter(entitlement::Column::AppId.eq(app_id))
                .filter(entitlement::Column::Source.is_in(chunk.to_vec()))
                .all(db)
                .await?
            {
                out.insert((app_id, e.source.clone()), e);
            }
        }
    }
    Ok(out)
}

/// Announces the end of rows about to be deleted with their target (in the caller's
/// transaction, before the delete).
pub async fn announce_removal(
    db: &impl ConnectionTrait,
    rows: &[entitlement::Model],
    actor: &str,
    reason: &str,
) -> AppResult<()> {
    let now = super::now();
    let cause = json!({"kind": "admin", "eventType": "TARGET_DELETED", "actor": actor, "reason": reason});
    for r in rows {
        let email = email_of(db, r.buyer_id).await?;
        let news = outbox::transitions(Some(&outbox::side_of(r, &email, now)), None);
        let mut r = r.clone();
        r.version += news.len() as i64;
        outbox::announce(db, &r, &news, &cause).await?;
    }
    Ok(())
}

/// Announces the ends that passed (`access.expired`) and were not announced yet: the
/// notifications' timer (a read needs none: expiry is evaluated when read).
pub async fn announce_expiries(state: &AppState, now: DateTime<Utc>) -> AppResult<usize> {
    let due = entitlement::Entity::find()
        .filter(entitlement::Column::ExpiryNoted.eq(false))
        .filter(entitlement::Column::ExpiresAt.lte(now))
        .filter(entitlement::Column::Status.is_in(["ACTIVE", "SUSPENDED"]))
        .order_by_asc(entitlement::Column::ExpiresAt)
        .limit(500)
        .all(&state.db)
        .await?;
    let mut n = 0;
    for row in due {
        let txn = crate::db::write_txn(&state.db).await?;
        lock_source(&txn, row.app_id, &row.source).await?;
        // Read again under the lock: a recompute may have moved the end or announced it.
        let Some(row) = entitlement::Entity::find_by_id(row.id).one(&txn).await? else {
            continue;
        };
        let due = !row.expiry_noted && row.expires_at.is_some_and(|t| t <= now);
        if !due {
            continue;
        }
        let email = email_of(&txn, row.buyer_id).await?;
        let before = outbox::side_of(&row, &email, now);
        let mut after = before.clone();
        after.status = EntitlementStatus::Expired;
        let news = outbox::transitions(Some(&before), Some(&after));
        let mut am: entitlement::ActiveModel = row.clone().into();
        am.expiry_noted = Set(true);
        am.version = Set(row.version + news.len() as i64);
        let row = am.update(&txn).await?;
        let cause = json!({"kind": "timer", "actor": "timer", "reason": "the paid-through date passed"});
        outbox::announce(&txn, &row, &news, &cause).await?;
        txn.commit().await?;
        n += 1;
    }
    Ok(n)
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
    txn.commit().await?;
    state.access_changed(&changed);
    Ok(())
}

/// Revokes every entitlement the buyer holds to the target, whatever its source. The revoke is a
/// fact of each source, so no later Hotmart event of those sources brings access back. Returns
/// how many entitlements gave access until now.
pub async fn revoke_manual(
    state: &AppState,
    who: &Principal,
    email: &str,
    target: (TargetKind, i32),
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
    let (mut n, mut changed) = (0, Changed::default());
    for r in rows {
        let (live, c) = revoke_row(&txn, who.app_id, &r, &who.actor(), &reason).await?;
        n += live;
        changed.extend(c);
    }
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
        EntitlementStatus::parse(&r.status).effective(r.expires_at, super::now()),
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
) -> AppResult<(Vec<buyers::AccessView>, Vec<ExplainStep>)> {
    let email = buyers::parse_email(email)?;
    let access: Vec<_> = super::access_cache::read(db, app_id, &email)
        .await?
        .into_iter()
        .filter(|a| a.entitlement.target_kind == target.0.as_str() && a.entitlement.target_id == target.1)
        .collect();
    let mut steps = Vec::new();
    for a in &access {
        let history = super::ledger::facts(db, app_id, &a.entitlement.source).await?;
        steps.extend(crate::domain::sorted(&history).into_iter().map(|f| ExplainStep {
            source: a.entitlement.source.clone(),
            fact: f.clone(),
        }));
    }
    Ok((access, steps))
}

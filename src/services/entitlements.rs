//! Access histories and their projection. Every change to access is a fact added to one source's
//! history (an inbox event's decision, or an admin's grant or revoke); the source's entitlement
//! row is then recomputed from all of its facts ([`crate::domain::project`]) and written with its
//! audit row, in the caller's transaction.
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use entity::{access_fact as af, buyer, buyer_subscriber_code as subcode, entitlement};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    Statement,
};
use serde_json::json;

use super::access_cache::Changed;
use super::audit::{self, Entry};
use super::buyers;
use super::outbox;
use crate::auth::Principal;
use crate::domain::{Effect, EntitlementStatus, Fact, Projection, TargetKind, project};
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

fn to_fact(r: af::Model) -> Option<Fact> {
    Some(Fact {
        effect: Effect::parse(&r.effect)?,
        occurred_at: r.occurred_at,
        key: r.fact_key,
        event_type: r.event_type,
        transaction: r.transaction,
        until: r.until,
        email: r.email,
        target: (TargetKind::parse(&r.target_kind)?, r.target_id),
        event_row: r.webhook_event_id.unwrap_or(0),
        rule_version: r.rule_version,
        reason: r.reason,
    })
}

/// A source's whole history, as the projection needs it (small rows; no payloads).
pub async fn facts(db: &impl ConnectionTrait, app_id: i32, source: &str) -> AppResult<Vec<Fact>> {
    let rows = af::Entity::find()
        .filter(af::Column::AppId.eq(app_id))
        .filter(af::Column::Source.eq(source))
        .order_by_asc(af::Column::Id)
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(to_fact).collect())
}

async fn insert_fact(db: &impl ConnectionTrait, app_id: i32, source: &str, f: &Fact, actor: &str) -> AppResult<()> {
    af::ActiveModel {
        app_id: Set(app_id),
        source: Set(source.to_string()),
        effect: Set(f.effect.as_str().to_string()),
        event_type: Set(f.event_type.clone()),
        fact_key: Set(f.key.clone()),
        transaction: Set(f.transaction.clone()),
        occurred_at: Set(f.occurred_at),
        until: Set(f.until),
        email: Set(f.email.clone()),
        target_kind: Set(f.target.0.as_str().to_string()),
        target_id: Set(f.target.1),
        webhook_event_id: Set((f.event_row > 0).then_some(f.event_row)),
        rule_version: Set(f.rule_version),
        actor: Set(actor.to_string()),
        reason: Set(f.reason.clone()),
        created_at: Set(super::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Replaces what one inbox event contributes to the histories (nothing, when `fact` is `None`)
/// and returns every source it touched, before or now, so the caller recomputes them all.
pub async fn set_event_fact(
    db: &impl ConnectionTrait,
    app_id: i32,
    event_row: i32,
    new: Option<(&str, &Fact)>,
) -> AppResult<BTreeSet<String>> {
    let old = af::Entity::find()
        .filter(af::Column::WebhookEventId.eq(event_row))
        .all(db)
        .await?;
    let mut touched: BTreeSet<String> = old.iter().map(|r| r.source.clone()).collect();
    if !old.is_empty() {
        af::Entity::delete_many()
            .filter(af::Column::WebhookEventId.eq(event_row))
            .exec(db)
            .await?;
    }
    if let Some((source, f)) = new {
        insert_fact(db, app_id, source, f, "rules").await?;
        touched.insert(source.to_string());
    }
    Ok(touched)
}

fn snapshot(e: &entitlement::Model, email: &str) -> serde_json::Value {
    json!({
        "status": e.status,
        "target": format!("{}:{}", e.target_kind, e.target_id),
        "source": e.source,
        "holder": email,
        "expiresAt": e.expires_at.map(|t| t.to_rfc3339()),
    })
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

/// A subscription's code follows its holder: whoever holds the subscription is found by it.
async fn bind_subscriber(db: &impl ConnectionTrait, app_id: i32, source: &str, buyer_id: i32) -> AppResult<()> {
    let Some(code) = source.strip_prefix("sub:") else {
        return Ok(());
    };
    match subcode::Entity::find()
        .filter(subcode::Column::AppId.eq(app_id))
        .filter(subcode::Column::Code.eq(code))
        .one(db)
        .await?
    {
        Some(link) if link.buyer_id == buyer_id => {}
        Some(link) => {
            let mut am: subcode::ActiveModel = link.into();
            am.buyer_id = Set(buyer_id);
            am.update(db).await?;
        }
        None => buyers::link_subscriber(db, app_id, buyer_id, code).await?,
    }
    Ok(())
}

/// Recomputes one source's entitlement from its whole history and writes it (moving it to the
/// current holder when the e-mail changed), with an audit row for every change. The caller holds
/// the transaction and, on PostgreSQL, the source's lock.
pub async fn recompute(db: &impl ConnectionTrait, app_id: i32, source: &str, actor: &str) -> AppResult<Changed> {
    let history = facts(db, app_id, source).await?;
    let existing = row_of(db, app_id, source).await?;
    let now = super::now();
    let mut changed = Changed::default();
    let (before, before_side) = match &existing {
        Some(e) => {
            let email = email_of(db, e.buyer_id).await?;
            changed.add(app_id, &email);
            (Some(snapshot(e, &email)), Some(outbox::side_of(e, &email, now)))
        }
        None => (None, None),
    };
    let Some(p) = project(&history) else {
        // Nothing in the history gives or takes access any more (a replay changed its decision).
        if let Some(mut e) = existing {
            let id = e.id;
            let news = outbox::transitions(before_side.as_ref(), None);
            e.version += news.len() as i64;
            outbox::announce(db, &e, &news, &outbox::cause(&history, 0, actor)).await?;
            entitlement::Entity::delete_by_id(id).exec(db).await?;
            audit::record(
                db,
                Entry {
                    app_id,
                    actor,
                    action: "access.change",
                    target: format!("entitlement:{id}"),
                    before,
                    after: None,
                    reason: "no fact of this source gives access",
                },
            )
            .await?;
        }
        return Ok(changed);
    };
    let holder = match (&p.holder, &existing) {
        (Some(email), _) => {
            let email = buyers::parse_email(email)?;
            buyers::upsert(db, app_id, &email, None).await?
        }
        (None, Some(e)) => match buyer::Entity::find_by_id(e.buyer_id).one(db).await? {
            Some(b) => b,
            None => return Ok(changed),
        },
        // No fact names anyone: nobody to give a row to.
        (None, None) => return Ok(changed),
    };
    changed.add(app_id, &holder.email);
    bind_subscriber(db, app_id, source, holder.id).await?;
    let after_side = outbox::Side {
        email: holder.email.clone(),
        target: p.target,
        status: p.status.effective(p.expires_at, now),
        expires_at: p.expires_at,
    };
    let news = outbox::transitions(before_side.as_ref(), Some(&after_side));
    let notes = Notes {
        version: existing.as_ref().map_or(0, |e| e.version) + news.len() as i64,
        // A live row's end is announced by the timer when it passes; any other has nothing left
        // to announce.
        expiry_noted: !after_side.live(),
    };
    let saved = write_row(db, app_id, source, &p, holder.id, existing, notes).await?;
    if !news.is_empty() {
        outbox::announce(db, &saved, &news, &outbox::cause(&history, p.last_event_row, actor)).await?;
    }
    let after = snapshot(&saved, &holder.email);
    if before.as_ref() != Some(&after) {
        let moved = before.as_ref().is_some_and(|b| b["holder"] != after["holder"]);
        let action = if moved { "access.move" } else { "access.change" };
        audit::record(
            db,
            Entry {
                app_id,
                actor,
                action,
                target: format!("entitlement:{}", saved.id),
                before,
                after: Some(after),
                reason: &p.reason,
            },
        )
        .await?;
    }
    Ok(changed)
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

/// What notifications keep on the row.
struct Notes {
    version: i64,
    expiry_noted: bool,
}

async fn write_row(
    db: &impl ConnectionTrait,
    app_id: i32,
    source: &str,
    p: &Projection,
    buyer_id: i32,
    existing: Option<entitlement::Model>,
    notes: Notes,
) -> AppResult<entitlement::Model> {
    let now = super::now();
    let mut am: entitlement::ActiveModel = match existing {
        Some(e) => e.into(),
        None => entitlement::ActiveModel {
            app_id: Set(app_id),
            source: Set(source.into()),
            created_at: Set(now),
            ..Default::default()
        },
    };
    am.buyer_id = Set(buyer_id);
    am.target_kind = Set(p.target.0.as_str().into());
    am.target_id = Set(p.target.1);
    am.status = Set(p.status.as_str().into());
    am.granted_at = Set(p.granted_at);
    am.revoked_at = Set(p.revoked_at);
    am.expires_at = Set(p.expires_at);
    am.last_event_id = Set((p.last_event_row > 0).then_some(p.last_event_row));
    am.rule_version = Set(p.rule_version);
    am.reason = Set(p.reason.clone());
    am.updated_at = Set(now);
    am.version = Set(notes.version);
    am.expiry_noted = Set(notes.expiry_noted);
    am.save(db).await?.try_into().map_err(AppError::internal)
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
    app_id: i32,
    source: &str,
    f: &Fact,
    actor: &str,
) -> AppResult<Changed> {
    lock_source(db, app_id, source).await?;
    insert_fact(db, app_id, source, f, actor).await?;
    recompute(db, app_id, source, actor).await
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
    let buyer = buyers::upsert(&txn, who.app_id, &email, None).await?;
    let f = admin_fact(Effect::AdminGrant, target, expires_at, Some(email.as_str()), &reason);
    let changed = add_admin_fact(&txn, who.app_id, &manual_source(target, buyer.id), &f, &who.actor()).await?;
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
    let changed = add_admin_fact(db, app_id, &r.source, &f, actor).await?;
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
        let history = facts(db, app_id, &a.entitlement.source).await?;
        steps.extend(crate::domain::sorted(&history).into_iter().map(|f| ExplainStep {
            source: a.entitlement.source.clone(),
            fact: f.clone(),
        }));
    }
    Ok((access, steps))
}

//! A buyer's personal data under the LGPD (art. 18): everything Porteiro holds about them,
//! exported as JSON, or erased on request. Erasing ends their access (an admin fact, announced
//! to the apps), then replaces their e-mail by a pseudonym and masks their name and personal
//! fields in every row and stored body, so counts, facts and decisions stay coherent; the
//! sources they held are remembered, so a later delivery of one of their events is not applied
//! and cannot bring them back. A later purchase under the same e-mail is a new buyer.
use std::collections::BTreeSet;

use entity::{
    access_fact as af, audit_log, buyer, buyer_subscriber_code as subcode, entitlement, erased_source as es,
    notification, notification_attempt as na, notification_delivery as nd, reconciliation_run as rr,
    webhook_event as we,
};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
    Set,
};
use serde_json::{Value, json};

use super::{AdminWrite, Change, Then};
use crate::auth::Principal;
use crate::domain::Email;
use crate::hotmart::personal::{self, MASK};
use crate::pipeline::access_cache::Changed;
use crate::{AppError, AppResult, AppState};

/// Keys per `IN (…)`: far below both databases' limits on bound values.
const CHUNK: usize = 200;

/// Rows that name a person: found by SQL (`LIKE`, a prefilter: `_` is a wildcard there) and
/// kept only if they really contain the e-mail.
fn mentions(text: Option<&str>, email: &str) -> bool {
    text.is_some_and(|t| t.to_ascii_lowercase().contains(email))
}

fn like(email: &str) -> String {
    format!("%{email}%")
}

/// What one person left in the app's tables: their buyer rows, and the sources they held.
struct Footprint {
    buyers: Vec<buyer::Model>,
    entitlements: Vec<entitlement::Model>,
    sources: BTreeSet<String>,
}

async fn footprint(db: &impl ConnectionTrait, app_id: i32, email: &Email) -> AppResult<Footprint> {
    let buyers = buyer::Entity::find()
        .filter(buyer::Column::AppId.eq(app_id))
        .filter(buyer::Column::Email.eq(email.as_str()))
        .all(db)
        .await?;
    let ids: Vec<i32> = buyers.iter().map(|b| b.id).collect();
    let entitlements = if ids.is_empty() {
        Vec::new()
    } else {
        entitlement::Entity::find()
            .filter(entitlement::Column::AppId.eq(app_id))
            .filter(entitlement::Column::BuyerId.is_in(ids))
            .order_by_asc(entitlement::Column::Id)
            .all(db)
            .await?
    };
    let mut sources: BTreeSet<String> = entitlements.iter().map(|e| e.source.clone()).collect();
    let fact_sources: Vec<String> = af::Entity::find()
        .select_only()
        .column(af::Column::Source)
        .filter(af::Column::AppId.eq(app_id))
        .filter(af::Column::Email.eq(email.as_str()))
        .into_tuple()
        .all(db)
        .await?;
    sources.extend(fact_sources);
    let event_sources: Vec<Option<String>> = we::Entity::find()
        .select_only()
        .column(we::Column::SourceKey)
        .filter(we::Column::AppId.eq(app_id))
        .filter(we::Column::Email.eq(email.as_str()))
        .into_tuple()
        .all(db)
        .await?;
    sources.extend(event_sources.into_iter().flatten());
    Ok(Footprint {
        buyers,
        entitlements,
        sources,
    })
}

/// The rows of one of the app's tables that name the person or one of their sources, by id.
async fn naming<E>(
    db: &impl ConnectionTrait,
    app_id: i32,
    email: &Email,
    f: &Footprint,
    (app, mail, source): (E::Column, E::Column, E::Column),
    id: fn(&E::Model) -> i32,
) -> AppResult<Vec<E::Model>>
where
    E: EntityTrait,
{
    let mut out = E::find()
        .filter(app.eq(app_id))
        .filter(mail.eq(email.as_str()))
        .all(db)
        .await?;
    let sources: Vec<String> = f.sources.iter().cloned().collect();
    for chunk in sources.chunks(CHUNK) {
        out.extend(
            E::find()
                .filter(app.eq(app_id))
                .filter(source.is_in(chunk.to_vec()))
                .all(db)
                .await?,
        );
    }
    out.sort_by_key(id);
    out.dedup_by_key(|r| id(r));
    Ok(out)
}

async fn facts_of(db: &impl ConnectionTrait, app_id: i32, email: &Email, f: &Footprint) -> AppResult<Vec<af::Model>> {
    let columns = (af::Column::AppId, af::Column::Email, af::Column::Source);
    naming::<af::Entity>(db, app_id, email, f, columns, |r| r.id).await
}

async fn events_of(db: &impl ConnectionTrait, app_id: i32, email: &Email, f: &Footprint) -> AppResult<Vec<we::Model>> {
    let columns = (we::Column::AppId, we::Column::Email, we::Column::SourceKey);
    naming::<we::Entity>(db, app_id, email, f, columns, |r| r.id).await
}

async fn audit_of(db: &impl ConnectionTrait, app_id: i32, email: &str) -> AppResult<Vec<audit_log::Model>> {
    let lower = |c: audit_log::Column| Expr::expr(Func::lower(Expr::col(c)));
    let rows = audit_log::Entity::find()
        .filter(audit_log::Column::AppId.eq(app_id))
        .filter(
            lower(audit_log::Column::Before)
                .like(like(email))
                .or(lower(audit_log::Column::After).like(like(email)))
                .or(lower(audit_log::Column::Target).like(like(email)))
                .or(lower(audit_log::Column::Reason).like(like(email))),
        )
        .order_by_asc(audit_log::Column::Id)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter(|r| {
            mentions(r.before.as_deref(), email)
                || mentions(r.after.as_deref(), email)
                || mentions(Some(&r.target), email)
                || mentions(Some(&r.reason), email)
        })
        .collect())
}

async fn notifications_of(
    db: &impl ConnectionTrait,
    app_id: i32,
    email: &str,
    f: &Footprint,
) -> AppResult<Vec<notification::Model>> {
    let ids: Vec<i32> = f.entitlements.iter().map(|e| e.id).collect();
    let mut cond = Expr::expr(Func::lower(Expr::col(notification::Column::Payload))).like(like(email));
    if !ids.is_empty() {
        cond = cond.or(notification::Column::EntitlementId.is_in(ids));
    }
    let rows = notification::Entity::find()
        .filter(notification::Column::AppId.eq(app_id))
        .filter(cond)
        .order_by_asc(notification::Column::Id)
        .all(db)
        .await?;
    let held: BTreeSet<i32> = f.entitlements.iter().map(|e| e.id).collect();
    Ok(rows
        .into_iter()
        .filter(|n| n.entitlement_id.is_some_and(|id| held.contains(&id)) || mentions(Some(&n.payload), email))
        .collect())
}

fn parsed(text: Option<&str>) -> Value {
    text.map_or(Value::Null, |t| {
        serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_string()))
    })
}

/// Everything the app holds about the person with this e-mail, as JSON (LGPD art. 18, II).
pub async fn export(state: &AppState, who: &Principal, email: &str) -> AppResult<Value> {
    who.require_admin()?;
    let email = super::buyers::parse_email(email)?;
    let db = &state.db;
    let app_id = who.app_id;
    let f = footprint(db, app_id, &email).await?;
    let ids: Vec<i32> = f.buyers.iter().map(|b| b.id).collect();
    let codes = if ids.is_empty() {
        Vec::new()
    } else {
        subcode::Entity::find()
            .filter(subcode::Column::AppId.eq(app_id))
            .filter(subcode::Column::BuyerId.is_in(ids))
            .all(db)
            .await?
    };
    let facts = facts_of(db, app_id, &email, &f).await?;
    let events = events_of(db, app_id, &email, &f).await?;
    let notifications = notifications_of(db, app_id, email.as_str(), &f).await?;
    let audit = audit_of(db, app_id, email.as_str()).await?;
    Ok(json!({
        "email": email.as_str(),
        "app": who.app_slug,
        "exportedAt": crate::domain::timestamp(chrono::Utc::now()),
        "buyers": f.buyers.iter().map(|b| json!({
            "id": b.id, "email": b.email, "name": b.name,
            "createdAt": crate::domain::timestamp(b.created_at),
        })).collect::<Vec<_>>(),
        "subscriberCodes": codes.iter().map(|c| &c.code).collect::<Vec<_>>(),
        "entitlements": f.entitlements.iter().map(|e| json!({
            "id": e.id, "target": format!("{}:{}", e.target_kind, e.target_id), "source": e.source,
            "status": e.status.as_str(), "grantedAt": e.granted_at.map(crate::domain::timestamp),
            "revokedAt": e.revoked_at.map(crate::domain::timestamp),
            "expiresAt": e.expires_at.map(crate::domain::timestamp), "reason": e.reason,
        })).collect::<Vec<_>>(),
        "facts": facts.iter().map(|x| json!({
            "id": x.id, "source": x.source, "effect": x.effect, "eventType": x.event_type,
            "transaction": x.transaction, "occurredAt": crate::domain::timestamp(x.occurred_at),
            "until": x.until.map(crate::domain::timestamp), "email": x.email,
            "target": format!("{}:{}", x.target_kind, x.target_id), "actor": x.actor, "reason": x.reason,
        })).collect::<Vec<_>>(),
        "events": events.iter().map(|e| json!({
            "id": e.id, "eventId": e.event_id, "eventType": e.event_type, "status": e.status.as_str(),
            "receivedAt": crate::domain::timestamp(e.received_at), "email": e.email,
            "transaction": e.transaction, "decision": parsed(e.decision.as_deref()), "error": e.error,
            "body": crate::hotmart::redacted_body(e.format, &e.raw_body),
        })).collect::<Vec<_>>(),
        "notifications": notifications.iter().map(|n| json!({
            "id": n.id, "msgId": n.msg_id, "eventType": n.event_type,
            "createdAt": crate::domain::timestamp(n.created_at), "payload": parsed(Some(&n.payload)),
        })).collect::<Vec<_>>(),
        "audit": audit.iter().map(|a| json!({
            "id": a.id, "actor": a.actor, "action": a.action, "target": a.target,
            "before": parsed(a.before.as_deref()), "after": parsed(a.after.as_deref()), "reason": a.reason,
            "at": crate::domain::timestamp(a.created_at),
        })).collect::<Vec<_>>(),
    }))
}

/// What an erasure did.
#[derive(Debug, Clone)]
pub struct Erased {
    pub pseudonym: String,
    /// Entitlements that gave access and were revoked.
    pub revoked: i32,
    pub sources: usize,
    pub events: usize,
}

/// Text with the e-mail replaced by the pseudonym and the buyer's names masked.
fn scrub_text(text: &str, email: &str, pseudonym: &str, names: &[String]) -> String {
    let mut out = String::from_utf8_lossy(&personal::replace_ci(text.as_bytes(), email, pseudonym)).into_owned();
    for n in names {
        out = out.replace(n.as_str(), MASK);
    }
    out
}

/// Erases the person with this e-mail from the app (LGPD art. 18, VI): see the module's comment.
pub async fn erase(state: &AppState, who: &Principal, email: &str, reason: &str) -> AppResult<Erased> {
    let email = super::buyers::parse_email(email)?;
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(AppError::InvalidFields(vec![(
            "reason".into(),
            "say why (e.g. the buyer's request and its date)".into(),
        )]));
    }
    let app_id = who.app_id;
    let txn = AdminWrite::begin(state, who).await?;
    let f = footprint(&txn, app_id, &email).await?;
    let e = email.as_str();
    if f.buyers.is_empty() && f.sources.is_empty() {
        return Err(AppError::not_found(format!("no buyer with e-mail {e}")));
    }
    let pseudonym = format!(
        "erased-{}@erased.invalid",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    // Names longer than a couple of letters: a short one would mask unrelated text.
    let names: Vec<String> = f
        .buyers
        .iter()
        .map(|b| b.name.trim().to_string())
        .filter(|n| n.chars().count() >= 3)
        .collect();
    let clean = |t: &str| scrub_text(t, e, &pseudonym, &names);

    // 1. Access ends now: an admin fact on every source they hold, announced to the apps.
    let (mut revoked, mut changed) = (0, Changed::default());
    for ent in &f.entitlements {
        let (n, c) = super::entitlements::revoke_source(
            &txn,
            app_id,
            &ent.source,
            &who.actor(),
            "erased at the buyer's request (LGPD)",
        )
        .await?;
        revoked += n;
        changed.extend(c);
    }
    // 2. Every row that names them, written just now included, under the pseudonym.
    for b in &f.buyers {
        let mut am = b.clone().into_active_model();
        am.email = Set(pseudonym.clone());
        am.name = Set(String::new());
        am.update(&txn).await?;
    }
    for ent in entitlement::Entity::find()
        .filter(entitlement::Column::AppId.eq(app_id))
        .filter(entitlement::Column::BuyerId.is_in(f.buyers.iter().map(|b| b.id).collect::<Vec<_>>()))
        .all(&txn)
        .await?
    {
        if mentions(Some(&ent.reason), e) {
            let reason = clean(&ent.reason);
            let mut am = ent.into_active_model();
            am.reason = Set(reason);
            am.update(&txn).await?;
        }
    }
    for fact in facts_of(&txn, app_id, &email, &f).await? {
        let named = fact.email.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(e));
        if named || mentions(Some(&fact.reason), e) {
            let reason = clean(&fact.reason);
            let mut am = fact.into_active_model();
            if named {
                am.email = Set(Some(pseudonym.clone()));
            }
            am.reason = Set(reason);
            am.update(&txn).await?;
        }
    }
    let events = events_of(&txn, app_id, &email, &f).await?;
    for ev in &events {
        let mut am = we::ActiveModel {
            id: Set(ev.id),
            raw_body: Set(personal::scrub(ev.format, &ev.raw_body, e, &pseudonym)),
            ..Default::default()
        };
        if ev.email.is_some() {
            am.email = Set(Some(pseudonym.clone()));
        }
        if let Some(x) = &ev.error {
            am.error = Set(Some(clean(x)));
        }
        if let Some(x) = &ev.decision {
            am.decision = Set(Some(clean(x)));
        }
        am.update(&txn).await?;
    }
    for a in audit_of(&txn, app_id, e).await? {
        let mut am = a.clone().into_active_model();
        am.before = Set(a.before.as_deref().map(clean));
        am.after = Set(a.after.as_deref().map(clean));
        am.target = Set(clean(&a.target));
        am.reason = Set(clean(&a.reason));
        am.update(&txn).await?;
    }
    let notes = notifications_of(&txn, app_id, e, &f).await?;
    for n in &notes {
        if mentions(Some(&n.payload), e) {
            let mut am = n.clone().into_active_model();
            am.payload = Set(clean(&n.payload));
            am.update(&txn).await?;
        }
    }
    // What receivers answered may echo the e-mail.
    let ids: Vec<i32> = notes.iter().map(|n| n.id).collect();
    for chunk in ids.chunks(CHUNK) {
        let deliveries: Vec<i32> = nd::Entity::find()
            .select_only()
            .column(nd::Column::Id)
            .filter(nd::Column::NotificationId.is_in(chunk.to_vec()))
            .into_tuple()
            .all(&txn)
            .await?;
        for d in deliveries.chunks(CHUNK) {
            for at in na::Entity::find()
                .filter(na::Column::DeliveryId.is_in(d.to_vec()))
                .all(&txn)
                .await?
            {
                if mentions(at.response_excerpt.as_deref(), e) || mentions(at.error.as_deref(), e) {
                    let mut am = at.clone().into_active_model();
                    am.response_excerpt = Set(at.response_excerpt.as_deref().map(clean));
                    am.error = Set(at.error.as_deref().map(clean));
                    am.update(&txn).await?;
                }
            }
        }
    }
    for run in rr::Entity::find()
        .filter(rr::Column::AppId.eq(app_id))
        .filter(Expr::expr(Func::lower(Expr::col(rr::Column::Report))).like(like(e)))
        .all(&txn)
        .await?
    {
        let report = run.report.as_deref().map(clean);
        let mut am = run.into_active_model();
        am.report = Set(report);
        am.update(&txn).await?;
    }
    // Backtest reports name the buyers whose access would change.
    for bt in entity::rule_backtest::Entity::find()
        .filter(entity::rule_backtest::Column::AppId.eq(app_id))
        .filter(Expr::expr(Func::lower(Expr::col(entity::rule_backtest::Column::Report))).like(like(e)))
        .all(&txn)
        .await?
    {
        let report = bt.report.as_deref().map(clean);
        let mut am = bt.into_active_model();
        am.report = Set(report);
        am.update(&txn).await?;
    }
    // 3. Their sources stay closed to later deliveries.
    let now = chrono::Utc::now();
    for s in &f.sources {
        let known = es::Entity::find()
            .filter(es::Column::AppId.eq(app_id))
            .filter(es::Column::Source.eq(s.as_str()))
            .one(&txn)
            .await?;
        if known.is_none() {
            es::ActiveModel {
                app_id: Set(app_id),
                source: Set(s.clone()),
                pseudonym: Set(pseudonym.clone()),
                erased_at: Set(now),
                ..Default::default()
            }
            .insert(&txn)
            .await?;
        }
    }
    let out = Erased {
        pseudonym: pseudonym.clone(),
        revoked,
        sources: f.sources.len(),
        events: events.len(),
    };
    txn.commit(
        Change::new("buyer.erase", format!("buyer:{pseudonym}"))
            .after(json!({
                "pseudonym": pseudonym,
                "revoked": revoked,
                "sources": out.sources,
                "events": out.events,
            }))
            .reason(clean(reason)),
        [Then::Access(changed)],
    )
    .await?;
    state.hot.erasures.invalidate(&app_id);
    state.signal(crate::pipeline::signals::Signal::Erasure { app: app_id });
    crate::db::forget_freed(&state.db).await;
    Ok(out)
}

/// Masks the personal fields of deliveries stored before minimisation (or while
/// `PORTEIRO_KEEP_PERSONAL_DATA` was on), a batch per transaction; how many bodies changed.
pub async fn mask_stored(db: &sea_orm::DatabaseConnection) -> AppResult<u64> {
    let (mut after, mut changed) = (0, 0u64);
    loop {
        let rows: Vec<(i32, entity::status::Format, Vec<u8>)> = we::Entity::find()
            .select_only()
            .columns([we::Column::Id, we::Column::Format, we::Column::RawBody])
            .filter(we::Column::Id.gt(after))
            .order_by_asc(we::Column::Id)
            .limit(500)
            .into_tuple()
            .all(db)
            .await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.0;
        let txn = crate::db::write_txn(db).await?;
        for (id, format, body) in rows {
            if let Some(masked) = personal::minimise(format, &body) {
                we::ActiveModel {
                    id: Set(id),
                    raw_body: Set(masked),
                    ..Default::default()
                }
                .update(&txn)
                .await?;
                changed += 1;
            }
        }
        #[allow(clippy::disallowed_methods)] // an operator's batch rewrite of stored bodies, not an app's change
        txn.commit().await?;
    }
    crate::db::forget_freed(db).await;
    Ok(changed)
}

/// Statuses whose stored body the retention may empty: decided, nothing left to replay.
const RETAINED: [entity::status::InboxStatus; 3] = [
    entity::status::InboxStatus::Processed,
    entity::status::InboxStatus::Ignored,
    entity::status::InboxStatus::Test,
];

/// Empties the stored bodies of events decided more than `days` ago (the retention), keeping
/// their rows, facts and decisions; a batch per transaction. How many were emptied.
pub async fn apply_retention(db: &sea_orm::DatabaseConnection, days: u32) -> AppResult<u64> {
    let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
    let mut emptied = 0;
    loop {
        let ids: Vec<i32> = we::Entity::find()
            .select_only()
            .column(we::Column::Id)
            .filter(we::Column::Status.is_in(RETAINED))
            .filter(we::Column::ProcessedAt.lt(cutoff))
            .filter(has_body())
            .order_by_asc(we::Column::Id)
            .limit(1000)
            .into_tuple()
            .all(db)
            .await?;
        if ids.is_empty() {
            break;
        }
        let txn = crate::db::write_txn(db).await?;
        let n = we::Entity::update_many()
            .col_expr(we::Column::RawBody, Expr::value(Vec::<u8>::new()))
            .filter(we::Column::Id.is_in(ids))
            .exec(&txn)
            .await?
            .rows_affected;
        #[allow(clippy::disallowed_methods)] // the retention's own upkeep, not an app's change
        txn.commit().await?;
        emptied += n;
    }
    if emptied > 0 {
        tracing::info!(emptied, days, "emptied the stored bodies of events past the retention");
        crate::db::forget_freed(db).await;
    }
    Ok(emptied)
}

/// Rows whose body is still stored (the retention empties it; no delivery is empty).
pub fn has_body() -> sea_orm::sea_query::SimpleExpr {
    Expr::cust("length(raw_body) > 0")
}

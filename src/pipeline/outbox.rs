//! The transactional outbox: what an access change announces to the app, written in the
//! change's own transaction (so a crash can neither lose a notification nor announce a change that
//! did not commit). The dispatcher ([`super::dispatch`]) fans each row out to the app's endpoints
//! and gives it its place in the app's changes feed ([`sequence`]), which `GET /v1/changes`
//! pages through. Apps that listen get the rows ([`listening`]).
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{api_key, entitlement, notification, notification_endpoint};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use serde_json::{Value, json};

use sea_orm::{DatabaseConnection, QueryOrder};

use super::history;
use crate::domain::{EntitlementStatus, Fact, SubscriptionState, TargetKind, Term};
use crate::{AppError, AppResult};

/// Announces the end of rows about to be deleted with their target (in the caller's
/// transaction, before the delete).
pub async fn announce_removal(
    db: &impl ConnectionTrait,
    rows: &[entitlement::Model],
    actor: &str,
    reason: &str,
) -> AppResult<()> {
    let now = chrono::Utc::now();
    let cause = json!({"kind": "admin", "eventType": "TARGET_DELETED", "actor": actor, "reason": reason});
    for r in rows {
        let email = history::email_of(db, r.buyer_id).await?;
        let news = transitions(Some(&side_of(r, &email, now)), None);
        let mut r = r.clone();
        r.version += news.len() as i64;
        announce(db, &r, &news, &cause).await?;
    }
    Ok(())
}

/// Announces the ends that passed (`access.expired`) and were not announced yet: the
/// notifications' timer (a read needs none: expiry is evaluated when read).
pub async fn announce_expiries(db: &DatabaseConnection, now: DateTime<Utc>) -> AppResult<usize> {
    let due = entitlement::Entity::find()
        .filter(entitlement::Column::ExpiryNoted.eq(false))
        .filter(entitlement::Column::ExpiresAt.lte(now))
        .filter(entitlement::Column::Status.is_in([EntitlementStatus::Active, EntitlementStatus::Suspended]))
        .order_by_asc(entitlement::Column::ExpiresAt)
        .limit(500)
        .all(db)
        .await?;
    let mut n = 0;
    for row in due {
        let txn = crate::db::write_txn(db).await?;
        history::lock_source(&txn, row.app_id, &row.source).await?;
        // Read again under the lock: a recompute may have moved the end or announced it.
        let Some(row) = entitlement::Entity::find_by_id(row.id).one(&txn).await? else {
            continue;
        };
        let due = !row.expiry_noted && row.expires_at.is_some_and(|t| t <= now);
        if !due {
            continue;
        }
        let email = history::email_of(&txn, row.buyer_id).await?;
        let before = side_of(&row, &email, now);
        let mut after = before.clone();
        after.status = EntitlementStatus::Expired;
        let news = transitions(Some(&before), Some(&after));
        let mut am: entitlement::ActiveModel = row.clone().into();
        am.expiry_noted = Set(true);
        am.version = Set(row.version + news.len() as i64);
        let row = am.update(&txn).await?;
        let cause = json!({"kind": "timer", "actor": "timer", "reason": "the paid-through date passed"});
        announce(&txn, &row, &news, &cause).await?;
        txn.commit().await?;
        n += 1;
    }
    Ok(n)
}

/// Every event type an endpoint can subscribe to.
pub const EVENT_TYPES: &[&str] = &[
    "access.granted",
    "access.revoked",
    "access.suspended",
    "access.expired",
    "access.changed",
];
/// Sent only by `sendTestNotification` / `porteiro notify test`, to every endpoint asked.
pub const TEST_EVENT: &str = "porteiro.test";

/// What a source gives one holder, as notifications compare it.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    pub email: String,
    pub target: (TargetKind, i32),
    /// As of now: an end date that passed reads EXPIRED.
    pub status: EntitlementStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub term: Term,
}

impl Side {
    pub fn live(&self) -> bool {
        matches!(self.status, EntitlementStatus::Active | EntitlementStatus::Suspended)
    }

    pub fn state(&self) -> SubscriptionState {
        SubscriptionState::of(self.status, self.term)
    }
}

/// A stored row as notifications compare it. An end that passed but was not announced yet still
/// reads as the stored status, so whichever comes first (the timer or a later recompute)
/// announces it.
pub fn side_of(e: &entitlement::Model, email: &str, now: DateTime<Utc>) -> Side {
    let stored = e.status;
    Side {
        email: email.to_string(),
        target: (
            TargetKind::parse(&e.target_kind).unwrap_or(TargetKind::Plan),
            e.target_id,
        ),
        status: if e.expiry_noted {
            stored.effective(e.expires_at, now)
        } else {
            stored
        },
        expires_at: e.expires_at,
        term: e.term,
    }
}

/// The scope of an API key that reads the changes feed.
pub const FEED_SCOPE: &str = "changes:read";

/// The apps among `apps` that listen: with a notification endpoint (enabled or paused) or an
/// API key that may read the changes feed (`changes:read`, not revoked). Only they get outbox
/// rows, so an app that uses neither pays nothing for them; its feed starts when it first
/// listens. Read in the change's transaction: an endpoint or key committed before that read
/// hears of the change (on PostgreSQL, one committed while the change's transaction runs may
/// not).
pub async fn listening(
    db: &impl ConnectionTrait,
    apps: impl IntoIterator<Item = i32>,
) -> AppResult<std::collections::HashSet<i32>> {
    let mut apps: Vec<i32> = apps.into_iter().collect();
    apps.sort_unstable();
    apps.dedup();
    if apps.is_empty() {
        return Ok(Default::default());
    }
    let mut found: std::collections::HashSet<i32> = notification_endpoint::Entity::find()
        .select_only()
        .column(notification_endpoint::Column::AppId)
        .filter(notification_endpoint::Column::AppId.is_in(apps.clone()))
        .distinct()
        .into_tuple::<i32>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    apps.retain(|a| !found.contains(a));
    if !apps.is_empty() {
        let readers: Vec<i32> = api_key::Entity::find()
            .select_only()
            .column(api_key::Column::AppId)
            .filter(api_key::Column::AppId.is_in(apps))
            .filter(api_key::Column::RevokedAt.is_null())
            .filter(api_key::Column::Scopes.contains(FEED_SCOPE))
            .distinct()
            .into_tuple()
            .all(db)
            .await?;
        found.extend(readers);
    }
    Ok(found)
}

/// Counts announcements by app, hour (UTC) and type for the console's overview, which draws
/// them in the seller's own days: rows of `rollup`, family `changes`, bucket
/// `YYYY-MM-DDTHH|type`. In the change's transaction: one upsert whatever their number, its
/// keys in one order. A worker batch upserts once, at its end; an admin change or the expiry
/// timer once per change, and a transaction that revokes several rows (a buyer's, a deleted
/// target's) counts only `access.revoked`. So two transactions on PostgreSQL never wait for
/// each other's rows crosswise.
pub async fn tally(db: &impl ConnectionTrait, news: Vec<(i32, &'static str)>) -> AppResult<()> {
    let hour = chrono::Utc::now().format("%Y-%m-%dT%H").to_string();
    let mut counts: std::collections::BTreeMap<(i32, String), i64> = Default::default();
    for (app_id, kind) in news {
        *counts.entry((app_id, format!("{hour}|{kind}"))).or_default() += 1;
    }
    if counts.is_empty() {
        return Ok(());
    }
    use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
    let (rollup, n) = (Alias::new("rollup"), Alias::new("n"));
    let key = ["app_id", "family", "bucket"].map(Alias::new);
    let mut insert = Query::insert();
    insert
        .into_table(rollup.clone())
        .columns(key.clone().into_iter().chain([n.clone()]))
        .on_conflict(
            OnConflict::columns(key)
                .value(
                    n.clone(),
                    Expr::col((rollup, n.clone())).add(Expr::col((Alias::new("excluded"), n))),
                )
                .to_owned(),
        );
    for ((app_id, bucket), count) in counts {
        insert
            .values([app_id.into(), "changes".into(), bucket.into(), count.into()])
            .map_err(AppError::internal)?;
    }
    db.execute_raw(db.get_database_backend().build(&insert)).await?;
    Ok(())
}

/// Writes the announcements of one change of `row` (its version already counts them: the last
/// one carries `row.version`): counted always, written to the outbox when the app listens.
pub async fn announce(
    db: &impl ConnectionTrait,
    row: &entitlement::Model,
    news: &[Announcement],
    cause: &Value,
) -> AppResult<()> {
    if news.is_empty() {
        return Ok(());
    }
    tally(db, news.iter().map(|a| (row.app_id, a.event_type)).collect()).await?;
    if listening(db, [row.app_id]).await?.is_empty() {
        return Ok(());
    }
    let mut names = HashMap::new();
    for a in news {
        if let std::collections::hash_map::Entry::Vacant(slot) = names.entry(a.side.target) {
            let n = super::targets::target(db, row.app_id, a.side.target.0, a.side.target.1)
                .await?
                .map(|t| t.name);
            slot.insert(n);
        }
    }
    let rows = models(row, news, cause, &names)?;
    if !rows.is_empty() {
        notification::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// The outbox rows of one change of `row`, given the names of the targets it is about.
pub fn models(
    row: &entitlement::Model,
    news: &[Announcement],
    cause: &Value,
    names: &HashMap<(TargetKind, i32), Option<String>>,
) -> AppResult<Vec<notification::ActiveModel>> {
    let now = chrono::Utc::now();
    news.iter()
        .enumerate()
        .map(|(i, a)| {
            let version = row.version - (news.len() - 1 - i) as i64;
            let body = payload(
                &Body {
                    announcement: a,
                    entitlement: row,
                    target_name: names.get(&a.side.target).and_then(|n| n.as_deref()),
                    version,
                    cause: cause.clone(),
                },
                now,
            );
            model(row.app_id, a.event_type, Some(row.id), version, &body, false)
        })
        .collect()
}

/// One announcement: its type and the side it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    pub event_type: &'static str,
    pub side: Side,
    pub previous: Option<Side>,
}

/// The announcements a change from `before` to `after` makes. A move to another holder or
/// another target is the old one's loss and the new one's gain.
pub fn transitions(before: Option<&Side>, after: Option<&Side>) -> Vec<Announcement> {
    let mut out = Vec::new();
    let same_holding = |b: &Side, a: &Side| b.email == a.email && b.target == a.target;
    let (before, moved_from) = match (before, after) {
        (Some(b), Some(a)) if !same_holding(b, a) => (None, Some(b)),
        (b, _) => (b, None),
    };
    // A live holding that ends without a successor state: its holder lost it.
    let lost = |b: &Side| {
        let mut gone = b.clone();
        gone.status = EntitlementStatus::Revoked;
        Announcement {
            event_type: "access.revoked",
            side: gone,
            previous: Some(b.clone()),
        }
    };
    if let Some(b) = moved_from.filter(|b| b.live()) {
        out.push(lost(b));
    }
    let Some(a) = after else {
        out.extend(before.filter(|b| b.live()).map(lost));
        return out;
    };
    use EntitlementStatus::*;
    // Every change of status is news once the app heard of the holding (so its last word is
    // always the current status); a holding that starts without access is not.
    let kind = match (before, a.status) {
        (None, Active) => Some("access.granted"),
        (None, _) => None,
        // The end moved, or how it comes (a cancellation, a failed charge, a renewal again).
        (Some(b), s) if b.status == s => {
            (b.live() && (b.expires_at != a.expires_at || b.state() != a.state())).then_some("access.changed")
        }
        (Some(_), Active) => Some("access.granted"),
        (Some(_), Suspended) => Some("access.suspended"),
        (Some(_), Revoked) => Some("access.revoked"),
        (Some(_), Expired) => Some("access.expired"),
    };
    if let Some(event_type) = kind {
        out.push(Announcement {
            event_type,
            side: a.clone(),
            previous: before.cloned(),
        });
    }
    out
}

/// Why the change happened, for the payload: the Hotmart event or admin action that decided it.
pub fn cause(history: &[Fact], last_event_row: i32, actor: &str) -> Value {
    let decisive = if last_event_row > 0 {
        history.iter().find(|f| f.event_row == last_event_row)
    } else {
        crate::domain::sorted(history).into_iter().rfind(|f| f.event_row == 0)
    };
    match decisive {
        Some(f) => json!({
            "kind": if f.event_row > 0 { "hotmart" } else { "admin" },
            "eventType": f.event_type,
            "hotmartEventId": (f.event_row > 0).then(|| f.key.clone()),
            "transaction": f.transaction,
            "actor": actor,
            "reason": f.reason,
        }),
        None => json!({"kind": "system", "actor": actor}),
    }
}

fn side_json(s: &Side) -> Value {
    let state = s.state();
    json!({
        "active": s.status == EntitlementStatus::Active,
        "status": s.status.as_str(),
        "expiresAt": s.expires_at.map(crate::domain::timestamp),
        "willRenew": state.will_renew,
        "cancelAtPeriodEnd": state.cancel_at_period_end,
        "inGrace": state.in_grace,
        "suspended": state.suspended,
    })
}

/// The JSON body receivers get (Standard Webhooks' `type` / `timestamp` / `data` envelope).
pub struct Body<'a> {
    pub announcement: &'a Announcement,
    pub entitlement: &'a entitlement::Model,
    pub target_name: Option<&'a str>,
    pub version: i64,
    pub cause: Value,
}

pub fn payload(b: &Body<'_>, now: DateTime<Utc>) -> Value {
    let a = b.announcement;
    json!({
        "type": a.event_type,
        "timestamp": crate::domain::timestamp(now),
        "data": {
            "buyer": {
                "email": a.side.email,
                "subscriberCode": b.entitlement.source.strip_prefix("sub:"),
            },
            "target": {"kind": a.side.target.0.as_str(), "id": a.side.target.1, "name": b.target_name},
            "entitlement": {"id": b.entitlement.id, "source": b.entitlement.source, "version": b.version},
            "access": side_json(&a.side),
            "previous": a.previous.as_ref().map(side_json),
            "cause": b.cause,
        }
    })
}

/// Gives the rows `ids` (committed, not sequenced yet, ascending) their cursors, after every
/// cursor given before, in the caller's transaction. One sequencing at a time (a lock on
/// PostgreSQL; SQLite has one writer), so the cursors readers can see only ever grow: a row
/// that committed late is sequenced late, after those a reader may already have passed.
/// Returns how many it sequenced (fewer: another process got there first).
pub async fn sequence(db: &impl ConnectionTrait, ids: &[i32]) -> AppResult<u64> {
    use sea_orm::sea_query::{Expr, ExprTrait};
    let Some(&first) = ids.first() else {
        return Ok(0);
    };
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        db.execute_unprepared("SELECT pg_advisory_xact_lock(7146288, 1)")
            .await?;
    }
    let top: Option<Option<i64>> = notification::Entity::find()
        .select_only()
        .column_as(notification::Column::Seq.max(), "m")
        .into_tuple()
        .one(db)
        .await?;
    let top = top.flatten().unwrap_or(0);
    // seq = id + offset: ascending with the ids, all after `top`, in one statement.
    let offset = top + 1 - i64::from(first);
    Ok(notification::Entity::update_many()
        .col_expr(notification::Column::FannedOut, true.into())
        .col_expr(
            notification::Column::Seq,
            Expr::col(notification::Column::Id).add(offset),
        )
        .filter(notification::Column::Id.is_in(ids.iter().copied()))
        .filter(notification::Column::FannedOut.eq(false))
        .exec(db)
        .await?
        .rows_affected)
}

/// The body an endpoint receives and the feed lists: the stored payload with its cursor first
/// (a test notification, never in the feed, has none).
pub fn body(n: &notification::Model) -> String {
    match (n.seq, n.payload.strip_prefix('{')) {
        (Some(seq), Some(rest)) => {
            let sep = if rest.trim_start().starts_with('}') { "" } else { "," };
            format!("{{\"cursor\":\"{seq}\"{sep}{rest}")
        }
        _ => n.payload.clone(),
    }
}

/// A notification addressed by its sender to one endpoint (a test): never fanned out.
pub async fn write_addressed(
    db: &impl ConnectionTrait,
    app_id: i32,
    event_type: &str,
    payload: &Value,
) -> AppResult<notification::Model> {
    Ok(model(app_id, event_type, None, 0, payload, true)?.insert(db).await?)
}

/// One outbox row; the dispatcher fans out those not `fanned_out` yet.
fn model(
    app_id: i32,
    event_type: &str,
    entitlement_id: Option<i32>,
    version: i64,
    payload: &Value,
    fanned_out: bool,
) -> AppResult<notification::ActiveModel> {
    Ok(notification::ActiveModel {
        app_id: Set(app_id),
        msg_id: Set(format!("msg_{}", uuid::Uuid::new_v4().simple())),
        event_type: Set(event_type.to_string()),
        entitlement_id: Set(entitlement_id),
        version: Set(version),
        payload: Set(serde_json::to_string(payload).map_err(AppError::internal)?),
        fanned_out: Set(fanned_out),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use EntitlementStatus::*;

    fn side(email: &str, id: i32, status: EntitlementStatus, days: Option<i64>) -> Side {
        Side {
            email: email.into(),
            target: (TargetKind::Plan, id),
            status,
            expires_at: days.map(|d| DateTime::from_timestamp(1_800_000_000 + d * 86_400, 0).unwrap()),
            term: Term::Renews,
        }
    }

    fn types(b: Option<&Side>, a: Option<&Side>) -> Vec<&'static str> {
        transitions(b, a).into_iter().map(|x| x.event_type).collect()
    }

    #[test]
    fn each_change_is_announced_once_with_its_own_type() {
        let active = side("a@x.io", 1, Active, Some(30));
        assert_eq!(types(None, Some(&active)), ["access.granted"]);
        assert_eq!(types(Some(&active), Some(&active)), Vec::<&str>::new());
        assert_eq!(
            types(Some(&active), Some(&side("a@x.io", 1, Active, Some(60)))),
            ["access.changed"]
        );
        assert_eq!(
            types(Some(&active), Some(&side("a@x.io", 1, Suspended, Some(30)))),
            ["access.suspended"]
        );
        assert_eq!(
            types(Some(&side("a@x.io", 1, Suspended, Some(30))), Some(&active)),
            ["access.granted"]
        );
        assert_eq!(
            types(Some(&active), Some(&side("a@x.io", 1, Revoked, Some(30)))),
            ["access.revoked"]
        );
        assert_eq!(
            types(Some(&active), Some(&side("a@x.io", 1, Expired, Some(30)))),
            ["access.expired"]
        );
        assert_eq!(types(Some(&active), None), ["access.revoked"]);
        // A cancellation that keeps the end is still news: the app shows "cancelled".
        let mut cancelled = active.clone();
        cancelled.term = Term::Cancelled;
        assert_eq!(types(Some(&active), Some(&cancelled)), ["access.changed"]);
        // A change between two states without access is still news (the app's last word is the
        // current status); a holding that starts without access, or one without access that
        // disappears, is not.
        let revoked = side("a@x.io", 1, Revoked, None);
        let expired = side("a@x.io", 1, Expired, Some(1));
        assert_eq!(types(Some(&expired), Some(&revoked)), ["access.revoked"]);
        assert_eq!(
            types(Some(&expired), Some(&side("a@x.io", 1, Suspended, None))),
            ["access.suspended"]
        );
        assert!(types(Some(&revoked), Some(&revoked)).is_empty());
        assert!(types(None, Some(&revoked)).is_empty());
        assert!(types(None, Some(&side("a@x.io", 1, Suspended, None))).is_empty());
        assert!(types(Some(&revoked), None).is_empty());
    }

    #[test]
    fn a_move_is_a_loss_for_the_old_holder_and_a_gain_for_the_new_one() {
        let ana = side("ana@x.io", 1, Active, Some(30));
        let bia = side("bia@x.io", 1, Active, Some(30));
        let t = transitions(Some(&ana), Some(&bia));
        assert_eq!(
            t.iter()
                .map(|x| (x.event_type, x.side.email.as_str()))
                .collect::<Vec<_>>(),
            [("access.revoked", "ana@x.io"), ("access.granted", "bia@x.io")]
        );
        // A plan switch within one subscription: the old plan ends, the new one starts.
        let other_plan = side("ana@x.io", 2, Active, Some(30));
        let t = transitions(Some(&ana), Some(&other_plan));
        assert_eq!(
            t.iter().map(|x| (x.event_type, x.side.target.1)).collect::<Vec<_>>(),
            [("access.revoked", 1), ("access.granted", 2)]
        );
    }
}

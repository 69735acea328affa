//! A source's history of facts and the entitlement row it gives: reads, and the lock that
//! serialises work on a source.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use entity::{access_fact as af, buyer, entitlement};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, Statement};

use crate::AppResult;
use crate::domain::{Email, Fact, TargetKind};

/// Keys per multi-row statement: far below both databases' limits on bound values.
const CHUNK: usize = 200;

/// Serialises work on one source across workers and processes (PostgreSQL); SQLite already has
/// a single writer.
pub async fn lock_source(db: &impl ConnectionTrait, app_id: i32, source: &str) -> AppResult<()> {
    lock(db, &[(app_id, source.to_string())]).await
}

/// [`lock_source`] for many sources in one statement (per few hundred), in the order given: a
/// caller passes them sorted so two transactions sharing sources cannot deadlock.
pub async fn lock(db: &impl ConnectionTrait, keys: &[(i32, String)]) -> AppResult<()> {
    if keys.is_empty() || db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    for chunk in keys.chunks(CHUNK) {
        let values = (1..=chunk.len())
            .map(|n| format!("(${n})"))
            .collect::<Vec<_>>()
            .join(",");
        let keys = chunk.iter().map(|(app, s)| format!("{app}:{s}").into());
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("SELECT count(pg_advisory_xact_lock(hashtext(k))) FROM (VALUES {values}) AS v(k)"),
            keys,
        ))
        .await?;
    }
    Ok(())
}

/// The e-mail of a buyer (empty if the row is gone).
pub async fn email_of(db: &impl ConnectionTrait, buyer_id: i32) -> AppResult<String> {
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
) -> AppResult<HashMap<(i32, String), entitlement::Model>> {
    let mut by_app: BTreeMap<i32, Vec<String>> = Default::default();
    for (app, s) in keys {
        by_app.entry(*app).or_default().push(s.clone());
    }
    let mut out = HashMap::new();
    for (app_id, list) in by_app {
        for chunk in list.chunks(CHUNK) {
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

/// The buyer with this e-mail in the app, if any.
pub async fn buyer(db: &impl ConnectionTrait, app_id: i32, email: &Email) -> AppResult<Option<buyer::Model>> {
    Ok(buyer::Entity::find()
        .filter(buyer::Column::AppId.eq(app_id))
        .filter(buyer::Column::Email.eq(email.as_str()))
        .one(db)
        .await?)
}

pub fn to_fact(r: af::Model) -> Option<Fact> {
    Some(Fact {
        effect: crate::domain::Effect::parse(&r.effect)?,
        occurred_at: r.occurred_at,
        paid_at: r.paid_at,
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

/// The latest admin grant of a source: who gave it, when and why (a courtesy's story).
pub async fn last_admin_grant(db: &impl ConnectionTrait, app_id: i32, source: &str) -> AppResult<Option<af::Model>> {
    Ok(af::Entity::find()
        .filter(af::Column::AppId.eq(app_id))
        .filter(af::Column::Source.eq(source))
        .filter(af::Column::Effect.eq(crate::domain::Effect::AdminGrant.as_str()))
        .order_by_desc(af::Column::OccurredAt)
        .one(db)
        .await?)
}

/// The pseudonym of the erased buyer who held `source`, if they were erased on request (LGPD):
/// such a source's events are not applied again. Looked up only for apps with erasures.
pub async fn erased(
    hot: &super::caches::HotCache,
    db: &impl ConnectionTrait,
    app_id: i32,
    source: &str,
) -> AppResult<Option<String>> {
    use entity::erased_source as es;
    use sea_orm::PaginatorTrait;
    let any = match hot.erasures.get(&app_id) {
        Some(any) => any,
        None => {
            let any = es::Entity::find()
                .filter(es::Column::AppId.eq(app_id))
                .count(db)
                .await?
                > 0;
            hot.erasures.insert(app_id, any);
            any
        }
    };
    if !any {
        return Ok(None);
    }
    Ok(es::Entity::find()
        .filter(es::Column::AppId.eq(app_id))
        .filter(es::Column::Source.eq(source))
        .one(db)
        .await?
        .map(|r| r.pseudonym))
}

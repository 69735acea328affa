//! Shadow runs: the version an admin put in shadow is decided beside the active one on every
//! live event ([`super::worker`]), nothing of it applied. Here what it did is kept, in the
//! batch's transaction: agreements and disagreements counted per version (`rollup`, family
//! `shadow`, bucket `EVENT_TYPE:vN|agree` or `|disagree`), and the first disagreements kept as
//! samples to look at.
use std::collections::BTreeMap;

use entity::rule_shadow_sample as sample;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};

use crate::domain::Decision;
use crate::{AppError, AppResult};

/// Disagreements kept per version: enough to see why, bounded whatever the traffic.
pub const SAMPLES: u64 = 100;

/// One live event decided by both versions.
#[derive(Debug, Clone)]
pub struct Note {
    pub app_id: i32,
    pub event_type: String,
    pub version: i32,
    pub event_row: i32,
    pub active: String,
    pub shadow: String,
    pub agree: bool,
}

/// A decision as compared: the same action and end agree, whatever an ignore's reason.
pub fn compared(d: Option<&Decision>, why: Option<&str>) -> (String, String) {
    match d {
        Some(Decision::Ignore { reason }) => ("ignore".into(), format!("ignore: {reason}")),
        Some(d) => (d.label(), d.label()),
        None => ("none".into(), why.unwrap_or("no decision").to_string()),
    }
}

pub async fn record(db: &impl ConnectionTrait, notes: Vec<Note>) -> AppResult<()> {
    if notes.is_empty() {
        return Ok(());
    }
    let mut counts: BTreeMap<(i32, String), i64> = BTreeMap::new();
    for n in &notes {
        let side = if n.agree { "agree" } else { "disagree" };
        *counts
            .entry((n.app_id, format!("{}:{}|{side}", n.event_type, n.version)))
            .or_default() += 1;
    }
    let (rollup, count) = (Alias::new("rollup"), Alias::new("n"));
    let key = ["app_id", "family", "bucket"].map(Alias::new);
    let mut insert = Query::insert();
    insert
        .into_table(rollup.clone())
        .columns(key.clone().into_iter().chain([count.clone()]))
        .on_conflict(
            OnConflict::columns(key)
                .value(
                    count.clone(),
                    Expr::col((rollup, count.clone())).add(Expr::col((Alias::new("excluded"), count))),
                )
                .to_owned(),
        );
    for ((app_id, bucket), n) in counts {
        insert
            .values([app_id.into(), "shadow".into(), bucket.into(), n.into()])
            .map_err(AppError::internal)?;
    }
    db.execute_raw(db.get_database_backend().build(&insert)).await?;
    let mut kept: BTreeMap<(i32, String, i32), u64> = BTreeMap::new();
    let mut rows = Vec::new();
    for n in notes.into_iter().filter(|n| !n.agree) {
        let key = (n.app_id, n.event_type.clone(), n.version);
        let have = match kept.get(&key) {
            Some(k) => *k,
            None => {
                sample::Entity::find()
                    .filter(sample::Column::AppId.eq(n.app_id))
                    .filter(sample::Column::EventType.eq(n.event_type.clone()))
                    .filter(sample::Column::Version.eq(n.version))
                    .count(db)
                    .await?
            }
        };
        if have >= SAMPLES {
            kept.insert(key, have);
            continue;
        }
        kept.insert(key, have + 1);
        rows.push(sample::ActiveModel {
            app_id: Set(n.app_id),
            event_type: Set(n.event_type),
            version: Set(n.version),
            webhook_event_id: Set(n.event_row),
            active: Set(n.active),
            shadow: Set(n.shadow),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        });
    }
    if !rows.is_empty() {
        sample::Entity::insert_many(rows).exec_without_returning(db).await?;
    }
    Ok(())
}

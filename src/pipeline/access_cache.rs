//! What each buyer holds, kept in memory for the read paths (GraphQL `access`, the apps' API).
//!
//! Entries hold stored rows, never a verdict: whether access is active is computed at read time,
//! so an end date passing needs no invalidation. Every transaction that changes access reports
//! the e-mails it touched and they are forgotten right after its commit; a catalog change forgets
//! the app. Forgetting bumps a generation that is part of the key, so a reader that loaded rows
//! before the commit and stores them after it stores them under a key nobody asks for again.
//! Entries also expire after a few seconds, which bounds what another process sharing the
//! PostgreSQL database (or a CLI command) can leave stale.
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use entity::{buyer, entitlement, product_package as pkg, subscription_plan as plan};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use super::caches::Generations;
use crate::AppResult;
use crate::domain::{Email, EntitlementStatus, Target, TargetKind};

/// What a buyer holds through one source, with its verdict as of the read.
#[derive(Debug, Clone)]
pub struct AccessView {
    pub entitlement: entitlement::Model,
    pub target: Option<Target>,
    pub status: EntitlementStatus,
    pub active: bool,
}

impl AccessView {
    /// Its subscription state as of the moment the view was made.
    pub fn state(&self) -> crate::domain::SubscriptionState {
        crate::domain::SubscriptionState::of(self.status, self.entitlement.term)
    }
}

/// Shards of the e-mail space per app; a change forgets one shard's generation, not the app's.
const SHARDS: u64 = 1024;
const TTL: Duration = Duration::from_secs(5);

/// A buyer's stored entitlements with their targets (`buyer: None`: never seen).
#[derive(Debug, Clone, Default)]
pub struct Holdings {
    pub buyer: Option<buyer::Model>,
    pub rows: Vec<(entitlement::Model, Option<Target>)>,
}

impl Holdings {
    /// The verdicts as of `now`.
    pub fn views(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<AccessView> {
        self.rows
            .iter()
            .map(|(e, t)| {
                let status = e.status.effective(e.expires_at, now);
                AccessView {
                    active: status == EntitlementStatus::Active,
                    status,
                    target: t.clone(),
                    entitlement: e.clone(),
                }
            })
            .collect()
    }
}

type Key = (i32, u64, String);

pub struct AccessCache {
    entries: moka::sync::Cache<Key, Arc<Holdings>>,
    /// (app, shard) → generation; (app, SHARDS) is the app-wide one.
    generations: Generations<(i32, u64)>,
}

impl Default for AccessCache {
    fn default() -> Self {
        AccessCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(200_000)
                .time_to_live(TTL)
                .build(),
            generations: Generations::default(),
        }
    }
}

/// The shard of an e-mail: the unit a change forgets, here and in other instances' signals.
/// (`DefaultHasher::new()` is keyed the same in every process of one build; instances of
/// different builds during an upgrade may disagree, which the TTL bounds.)
pub fn shard(email: &str) -> u16 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    email.hash(&mut h);
    (h.finish() % SHARDS) as u16
}

impl AccessCache {
    fn key(&self, app_id: i32, email: &str) -> Key {
        // Both generations in one number: app-wide changes are rare, shard ones frequent.
        let generation = self
            .generations
            .read(|of| (of(&(app_id, SHARDS)) << 40) ^ of(&(app_id, u64::from(shard(email)))));
        (app_id, generation, email.to_string())
    }

    /// After a commit that changed what these buyers hold.
    pub fn forget(&self, changed: &Changed) {
        for (app_id, email) in &changed.0 {
            self.generations.bump((*app_id, u64::from(shard(email))));
        }
    }

    /// Another instance's change, by shard.
    pub fn forget_shards(&self, app_id: i32, shards: &[u16]) {
        for s in shards {
            if u64::from(*s) < SHARDS {
                self.generations.bump((app_id, u64::from(*s)));
            }
        }
    }

    /// Everything (signals may have been missed).
    pub fn forget_all(&self) {
        self.entries.invalidate_all();
    }

    /// After a change that can alter every buyer of the app (a target renamed or deleted).
    pub fn forget_app(&self, app_id: i32) {
        self.generations.bump((app_id, SHARDS));
    }

    pub fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

/// E-mails whose holdings a transaction changed, to forget once it committed.
#[derive(Debug, Default, Clone)]
#[must_use = "forget these after the commit, or reads serve stale access"]
pub struct Changed(pub BTreeSet<(i32, String)>);

impl Changed {
    pub fn one(app_id: i32, email: &str) -> Self {
        let mut c = Changed::default();
        c.add(app_id, email);
        c
    }
    pub fn add(&mut self, app_id: i32, email: &str) {
        if !email.is_empty() {
            self.0.insert((app_id, email.to_string()));
        }
    }
    pub fn extend(&mut self, other: Changed) {
        self.0.extend(other.0);
    }
}

/// Holdings of several buyers: from memory where possible, the rest in four queries whatever
/// their number (buyers, entitlements, packages, plans).
pub async fn holdings(
    cache: &AccessCache,
    db: &impl ConnectionTrait,
    app_id: i32,
    emails: &[Email],
) -> AppResult<HashMap<String, Arc<Holdings>>> {
    let mut out = HashMap::with_capacity(emails.len());
    let mut missing = Vec::new();
    for e in emails {
        // The key (and its generations) is taken before reading, never after.
        let key = cache.key(app_id, e.as_str());
        match cache.entries.get(&key) {
            Some(h) => {
                crate::telemetry::access_cache(true);
                out.insert(e.as_str().to_string(), h);
            }
            None => {
                crate::telemetry::access_cache(false);
                missing.push((key, e.as_str().to_string()));
            }
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let wanted: Vec<String> = missing.iter().map(|(_, e)| e.clone()).collect();
    let mut loaded = load(db, app_id, &wanted).await?;
    for (key, email) in missing {
        let h = Arc::new(loaded.remove(&email).unwrap_or_default());
        cache.entries.insert(key, h.clone());
        out.insert(email, h);
    }
    Ok(out)
}

/// One buyer's access as of now, through the cache.
pub async fn access(
    cache: &AccessCache,
    db: &impl ConnectionTrait,
    app_id: i32,
    email: &Email,
) -> AppResult<Vec<AccessView>> {
    let h = holdings(cache, db, app_id, std::slice::from_ref(email)).await?;
    Ok(h.get(email.as_str())
        .map(|h| h.views(chrono::Utc::now()))
        .unwrap_or_default())
}

/// One buyer's access as of now, straight from the database (inside a transaction, or where a
/// fresh read matters more than speed). Someone we never saw simply has none.
pub async fn read(db: &impl ConnectionTrait, app_id: i32, email: &Email) -> AppResult<Vec<AccessView>> {
    let mut held = load(db, app_id, &[email.as_str().to_string()]).await?;
    Ok(held
        .remove(email.as_str())
        .map(|h| h.views(chrono::Utc::now()))
        .unwrap_or_default())
}

async fn load(db: &impl ConnectionTrait, app_id: i32, emails: &[String]) -> AppResult<HashMap<String, Holdings>> {
    let mut out: HashMap<String, Holdings> = HashMap::new();
    let mut buyers = Vec::new();
    for chunk in emails.chunks(500) {
        buyers.extend(
            buyer::Entity::find()
                .filter(buyer::Column::AppId.eq(app_id))
                .filter(buyer::Column::Email.is_in(chunk.to_vec()))
                .all(db)
                .await?,
        );
    }
    if buyers.is_empty() {
        return Ok(out);
    }
    let by_id: HashMap<i32, String> = buyers.iter().map(|b| (b.id, b.email.clone())).collect();
    let mut rows = Vec::new();
    let ids: Vec<i32> = by_id.keys().copied().collect();
    for chunk in ids.chunks(500) {
        rows.extend(
            entitlement::Entity::find()
                .filter(entitlement::Column::AppId.eq(app_id))
                .filter(entitlement::Column::BuyerId.is_in(chunk.to_vec()))
                .order_by_asc(entitlement::Column::Id)
                .all(db)
                .await?,
        );
    }
    let targets = targets_of(db, app_id, &rows).await?;
    for b in buyers {
        out.insert(
            b.email.clone(),
            Holdings {
                buyer: Some(b),
                rows: Vec::new(),
            },
        );
    }
    for e in rows {
        let kind = TargetKind::parse(&e.target_kind).unwrap_or(TargetKind::Package);
        let t = targets.get(&(kind, e.target_id)).cloned();
        if let Some(h) = by_id.get(&e.buyer_id).and_then(|m| out.get_mut(m)) {
            h.rows.push((e, t));
        }
    }
    Ok(out)
}

/// The packages and plans these rows point at, one query per kind.
async fn targets_of(
    db: &impl ConnectionTrait,
    app_id: i32,
    rows: &[entitlement::Model],
) -> AppResult<HashMap<(TargetKind, i32), Target>> {
    let ids = |k: TargetKind| -> Vec<i32> {
        let set: BTreeSet<i32> = rows
            .iter()
            .filter(|e| TargetKind::parse(&e.target_kind) == Some(k))
            .map(|e| e.target_id)
            .collect();
        set.into_iter().collect()
    };
    let mut out = HashMap::new();
    let packages = ids(TargetKind::Package);
    if !packages.is_empty() {
        for p in pkg::Entity::find()
            .filter(pkg::Column::AppId.eq(app_id))
            .filter(pkg::Column::Id.is_in(packages))
            .all(db)
            .await?
        {
            out.insert(
                (TargetKind::Package, p.id),
                Target::package(p.id, &p.name, p.access_days).with_key(p.key.clone()),
            );
        }
    }
    let plans = ids(TargetKind::Plan);
    if !plans.is_empty() {
        for p in plan::Entity::find()
            .filter(plan::Column::AppId.eq(app_id))
            .filter(plan::Column::Id.is_in(plans))
            .all(db)
            .await?
        {
            out.insert(
                (TargetKind::Plan, p.id),
                Target::plan(p.id, &p.name, p.period_days, p.grace_days).with_key(p.key.clone()),
            );
        }
    }
    Ok(out)
}

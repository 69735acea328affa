//! The working set of one write transaction's access changes. A source's history, its
//! entitlement, the buyers and subscriber codes involved are read once (a worker batch reads them
//! all in a few queries up front), any number of facts are applied and recomputed in memory, and
//! [`Ledger::flush`] writes everything back with one statement per table, whatever the number of
//! events. That is what lets a batch of 64 events cost a handful of statements instead of a
//! thousand. Rows created here carry negative placeholder ids until the flush learns the real ones.
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use entity::{access_fact as af, audit_log, buyer, buyer_subscriber_code as subcode, entitlement, notification};
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QueryTrait, Set};
use serde_json::{Value, json};

use super::access_cache::Changed;
use super::audit;
use super::outbox::{self, Announcement};
use crate::AppResult;
use crate::db::runs;
use crate::domain::{Email, EntitlementStatus, Fact, Projection, TargetKind, project};
use crate::rules::CurrentAccess;

/// (app, source)
type Key = (i32, String);
/// (app, e-mail) or (app, subscriber code)
type Named = (i32, String);

/// Rows per multi-row statement: far below both databases' limits on bound values.
const CHUNK: usize = 200;

/// What processing concluded for one inbox row: only these columns are written (never the stored
/// body again).
pub struct Outcome {
    pub id: i32,
    pub status: &'static str,
    pub error: Option<String>,
    pub decision: Option<String>,
    pub rule_version: Option<i32>,
    pub email: Option<String>,
    pub source_key: Option<String>,
    pub target_kind: Option<String>,
    pub target_id: Option<i32>,
    pub transaction: Option<String>,
    /// `None` keeps what is stored (a payload that could not be read).
    pub occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    pub event_type: Option<String>,
    pub attempts: i32,
    pub processed_at: chrono::DateTime<chrono::Utc>,
}

struct PendingNote {
    row: entitlement::Model,
    news: Vec<Announcement>,
    cause: Value,
}

struct PendingAudit {
    app_id: i32,
    actor: String,
    action: &'static str,
    entitlement: i32,
    before: Option<Value>,
    after: Option<Value>,
    reason: String,
}

#[derive(Default)]
pub struct Ledger {
    histories: HashMap<Key, Vec<Fact>>,
    rows: HashMap<Key, Option<entitlement::Model>>,
    /// Sources whose entitlement changed since the last flush.
    dirty_rows: BTreeSet<Key>,
    buyers: HashMap<Named, Option<buyer::Model>>,
    buyer_keys: HashMap<i32, Named>,
    /// Stored buyers whose name changed (new buyers have a placeholder id instead).
    renamed: BTreeSet<Named>,
    codes: HashMap<Named, Option<subcode::Model>>,
    dirty_codes: BTreeSet<Named>,
    names: HashMap<(i32, TargetKind, i32), Option<String>>,
    /// The source each inbox row's fact belongs to (`None`: the row has no fact).
    event_facts: HashMap<i32, Option<Key>>,
    /// Inbox rows whose stored facts go.
    dropped: Vec<i32>,
    new_facts: Vec<(Key, Fact, String)>,
    notes: Vec<PendingNote>,
    audits: Vec<PendingAudit>,
    /// The last placeholder id handed out (they count down from -1).
    placeholder: i32,
    /// Placeholder → real id, learned by the flush.
    real: HashMap<i32, i32>,
    /// Sources this transaction holds the lock of (PostgreSQL).
    locked: BTreeSet<Key>,
    outcomes: Vec<Outcome>,
    /// (app, announcement type) of every announcement since the last tally.
    counted: Vec<(i32, &'static str)>,
}

fn to_fact(r: af::Model) -> Option<Fact> {
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

fn snapshot(e: &entitlement::Model, email: &str) -> Value {
    json!({
        "status": e.status,
        "target": format!("{}:{}", e.target_kind, e.target_id),
        "source": e.source,
        "holder": email,
        "expiresAt": e.expires_at.map(crate::domain::timestamp),
    })
}

/// What notifications keep on the row.
struct Notes {
    version: i64,
    expiry_noted: bool,
}

impl Ledger {
    fn next_placeholder(&mut self) -> i32 {
        self.placeholder -= 1;
        self.placeholder
    }

    fn resolve(&self, id: i32) -> i32 {
        if id < 0 {
            self.real.get(&id).copied().unwrap_or(id)
        } else {
            id
        }
    }

    /// Serialises work on these sources across workers and processes (PostgreSQL; SQLite has a
    /// single writer): each is locked once per transaction, all of them in one statement, in
    /// the set's order so two batches sharing sources cannot deadlock.
    pub async fn lock(&mut self, db: &impl ConnectionTrait, keys: BTreeSet<Key>) -> AppResult<()> {
        let fresh: Vec<sea_orm::Value> = keys
            .into_iter()
            .filter(|k| self.locked.insert(k.clone()))
            .map(|(app, s)| format!("{app}:{s}").into())
            .collect();
        if fresh.is_empty() || db.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        for chunk in fresh.chunks(CHUNK) {
            let values = (1..=chunk.len())
                .map(|n| format!("(${n})"))
                .collect::<Vec<_>>()
                .join(",");
            db.execute_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                format!("SELECT count(pg_advisory_xact_lock(hashtext(k))) FROM (VALUES {values}) AS v(k)"),
                chunk.to_vec(),
            ))
            .await?;
        }
        Ok(())
    }

    /// Locks the given sources and those the inbox rows' earlier facts belong to (a replay),
    /// then reads, in a few queries, everything they, the buyers and the rows will need. The
    /// reads are only a shortcut: whatever is not read here is read when first needed.
    pub async fn preload(
        &mut self,
        db: &impl ConnectionTrait,
        sources: &BTreeSet<Key>,
        emails: &BTreeSet<Named>,
        event_rows: &[i32],
    ) -> AppResult<()> {
        let mut sources = sources.clone();
        let mut emails = emails.clone();
        for chunk in event_rows.chunks(CHUNK) {
            for &r in chunk {
                self.event_facts.entry(r).or_insert(None);
            }
            let old = af::Entity::find()
                .filter(af::Column::WebhookEventId.is_in(chunk.to_vec()))
                .all(db)
                .await?;
            for f in old {
                let key = (f.app_id, f.source.clone());
                if let Some(r) = f.webhook_event_id {
                    self.event_facts.insert(r, Some(key.clone()));
                }
                sources.insert(key);
            }
        }
        // Locked before anything of theirs is read, replayed rows' earlier sources included.
        self.lock(db, sources.clone()).await?;
        let mut by_app: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for (app, s) in sources.iter().filter(|k| !self.rows.contains_key(*k)) {
            by_app.entry(*app).or_default().push(s.clone());
        }
        let mut buyer_ids = Vec::new();
        for (app_id, list) in by_app {
            for chunk in list.chunks(CHUNK) {
                for s in chunk {
                    self.histories.insert((app_id, s.clone()), Vec::new());
                    self.rows.insert((app_id, s.clone()), None);
                }
                let rows = af::Entity::find()
                    .filter(af::Column::AppId.eq(app_id))
                    .filter(af::Column::Source.is_in(chunk.to_vec()))
                    .order_by_asc(af::Column::Id)
                    .all(db)
                    .await?;
                for r in rows {
                    let key = (app_id, r.source.clone());
                    if let Some(e) = &r.email {
                        emails.insert((app_id, e.clone()));
                    }
                    if let Some(id) = r.webhook_event_id {
                        self.event_facts.insert(id, Some(key.clone()));
                    }
                    if let Some(f) = to_fact(r) {
                        self.histories.entry(key).or_default().push(f);
                    }
                }
                let ents = entitlement::Entity::find()
                    .filter(entitlement::Column::AppId.eq(app_id))
                    .filter(entitlement::Column::Source.is_in(chunk.to_vec()))
                    .all(db)
                    .await?;
                for e in ents {
                    buyer_ids.push(e.buyer_id);
                    self.rows.insert((app_id, e.source.clone()), Some(e));
                }
                let codes: Vec<String> = chunk
                    .iter()
                    .filter_map(|s| s.strip_prefix("sub:").map(str::to_string))
                    .collect();
                for c in &codes {
                    self.codes.entry((app_id, c.clone())).or_insert(None);
                }
                if !codes.is_empty() {
                    for l in subcode::Entity::find()
                        .filter(subcode::Column::AppId.eq(app_id))
                        .filter(subcode::Column::Code.is_in(codes))
                        .all(db)
                        .await?
                    {
                        buyer_ids.push(l.buyer_id);
                        self.codes.insert((app_id, l.code.clone()), Some(l));
                    }
                }
            }
        }
        buyer_ids.retain(|id| !self.buyer_keys.contains_key(id));
        for chunk in buyer_ids.chunks(CHUNK) {
            for b in buyer::Entity::find()
                .filter(buyer::Column::Id.is_in(chunk.to_vec()))
                .all(db)
                .await?
            {
                self.keep_buyer(b);
            }
        }
        let mut by_app: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for (app, e) in emails.iter().filter(|k| !self.buyers.contains_key(*k)) {
            by_app.entry(*app).or_default().push(e.clone());
        }
        for (app_id, list) in by_app {
            for chunk in list.chunks(CHUNK) {
                for e in chunk {
                    self.buyers.insert((app_id, e.clone()), None);
                }
                for b in buyer::Entity::find()
                    .filter(buyer::Column::AppId.eq(app_id))
                    .filter(buyer::Column::Email.is_in(chunk.to_vec()))
                    .all(db)
                    .await?
                {
                    self.keep_buyer(b);
                }
            }
        }
        Ok(())
    }

    fn keep_buyer(&mut self, b: buyer::Model) {
        let key = (b.app_id, b.email.clone());
        self.buyer_keys.insert(b.id, key.clone());
        self.buyers.insert(key, Some(b));
    }

    async fn load_source(&mut self, db: &impl ConnectionTrait, key: &Key) -> AppResult<()> {
        if !self.histories.contains_key(key) {
            let h = facts(db, key.0, &key.1).await?;
            self.histories.insert(key.clone(), h);
        }
        if !self.rows.contains_key(key) {
            let row = super::entitlements::row_of(db, key.0, &key.1).await?;
            self.rows.insert(key.clone(), row);
        }
        Ok(())
    }

    /// What a source gives now (whoever holds it), as a rule script sees it: this transaction's
    /// view, changes not yet written included.
    pub async fn current_access(
        &mut self,
        db: &impl ConnectionTrait,
        app_id: i32,
        source: &str,
    ) -> AppResult<Option<CurrentAccess>> {
        let key = (app_id, source.to_string());
        self.load_source(db, &key).await?;
        Ok(self.rows[&key].as_ref().map(|r| CurrentAccess {
            status: EntitlementStatus::parse(&r.status).effective(r.expires_at, super::now()),
            expires_at: r.expires_at,
        }))
    }

    async fn buyer_by_email(
        &mut self,
        db: &impl ConnectionTrait,
        app_id: i32,
        email: &Email,
    ) -> AppResult<Option<buyer::Model>> {
        let key = (app_id, email.as_str().to_string());
        if !self.buyers.contains_key(&key) {
            match super::buyers::find(db, app_id, email).await? {
                Some(b) => self.keep_buyer(b),
                None => {
                    self.buyers.insert(key.clone(), None);
                }
            }
        }
        Ok(self.buyers[&key].clone())
    }

    async fn buyer_by_id(&mut self, db: &impl ConnectionTrait, id: i32) -> AppResult<Option<buyer::Model>> {
        if let Some(key) = self.buyer_keys.get(&id) {
            return Ok(self.buyers.get(key).cloned().flatten());
        }
        let b = buyer::Entity::find_by_id(id).one(db).await?;
        if let Some(b) = &b {
            self.keep_buyer(b.clone());
        }
        Ok(b)
    }

    async fn email_of(&mut self, db: &impl ConnectionTrait, buyer_id: i32) -> AppResult<String> {
        Ok(self
            .buyer_by_id(db, buyer_id)
            .await?
            .map(|b| b.email)
            .unwrap_or_default())
    }

    /// The buyer with this e-mail, created on first sight; a name a later event knows is kept.
    pub async fn upsert_buyer(
        &mut self,
        db: &impl ConnectionTrait,
        app_id: i32,
        email: &Email,
        name: Option<&str>,
    ) -> AppResult<buyer::Model> {
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        let key = (app_id, email.as_str().to_string());
        match self.buyer_by_email(db, app_id, email).await? {
            Some(mut b) => {
                if let Some(n) = name.filter(|n| *n != b.name) {
                    b.name = n.to_string();
                    b.updated_at = super::now();
                    if b.id > 0 {
                        self.renamed.insert(key.clone());
                    }
                    self.buyers.insert(key, Some(b.clone()));
                }
                Ok(b)
            }
            None => {
                let now = super::now();
                let b = buyer::Model {
                    id: self.next_placeholder(),
                    app_id,
                    email: email.as_str().to_string(),
                    name: name.unwrap_or_default().to_string(),
                    created_at: now,
                    updated_at: now,
                };
                self.keep_buyer(b.clone());
                Ok(b)
            }
        }
    }

    /// A subscription's code follows its holder: whoever holds the subscription is found by it.
    async fn bind_subscriber(
        &mut self,
        db: &impl ConnectionTrait,
        app_id: i32,
        source: &str,
        buyer_id: i32,
    ) -> AppResult<()> {
        let Some(code) = source.strip_prefix("sub:") else {
            return Ok(());
        };
        let key = (app_id, code.to_string());
        if !self.codes.contains_key(&key) {
            let link = subcode::Entity::find()
                .filter(subcode::Column::AppId.eq(app_id))
                .filter(subcode::Column::Code.eq(code))
                .one(db)
                .await?;
            self.codes.insert(key.clone(), link);
        }
        let link = match self.codes[&key].clone() {
            Some(link) if link.buyer_id == buyer_id => return Ok(()),
            Some(mut link) => {
                link.buyer_id = buyer_id;
                link
            }
            None => subcode::Model {
                id: self.next_placeholder(),
                app_id,
                buyer_id,
                code: code.to_string(),
                created_at: super::now(),
            },
        };
        self.codes.insert(key.clone(), Some(link));
        self.dirty_codes.insert(key);
        Ok(())
    }

    async fn target_name(
        &mut self,
        db: &impl ConnectionTrait,
        app_id: i32,
        target: (TargetKind, i32),
    ) -> AppResult<Option<String>> {
        let key = (app_id, target.0, target.1);
        if let Entry::Vacant(slot) = self.names.entry(key) {
            let name = super::catalog::target(db, app_id, target.0, target.1)
                .await?
                .map(|t| t.name);
            slot.insert(name);
        }
        Ok(self.names[&key].clone())
    }

    /// Adds a fact to a source's history (written at the flush).
    pub async fn add_fact(
        &mut self,
        db: &impl ConnectionTrait,
        app_id: i32,
        source: &str,
        f: &Fact,
        actor: &str,
    ) -> AppResult<()> {
        let key = (app_id, source.to_string());
        self.load_source(db, &key).await?;
        if let Some(h) = self.histories.get_mut(&key) {
            h.push(f.clone());
        }
        if f.event_row > 0 {
            self.event_facts.insert(f.event_row, Some(key.clone()));
        }
        self.new_facts.push((key, f.clone(), actor.to_string()));
        Ok(())
    }

    /// Replaces what one inbox event contributes to the histories (nothing, when `new` is
    /// `None`) and returns every source it touched, before or now, so the caller recomputes them.
    pub async fn set_event_fact(
        &mut self,
        db: &impl ConnectionTrait,
        app_id: i32,
        event_row: i32,
        new: Option<(&str, &Fact)>,
    ) -> AppResult<BTreeSet<String>> {
        if let Entry::Vacant(slot) = self.event_facts.entry(event_row) {
            let old = af::Entity::find()
                .filter(af::Column::WebhookEventId.eq(event_row))
                .one(db)
                .await?;
            slot.insert(old.map(|f| (f.app_id, f.source)));
        }
        let mut touched = BTreeSet::new();
        if let Some(key) = self.event_facts.insert(event_row, None).flatten() {
            self.load_source(db, &key).await?;
            if let Some(h) = self.histories.get_mut(&key) {
                h.retain(|f| f.event_row != event_row);
            }
            let before = self.new_facts.len();
            self.new_facts.retain(|(_, f, _)| f.event_row != event_row);
            if self.new_facts.len() == before {
                self.dropped.push(event_row);
            }
            touched.insert(key.1);
        }
        if let Some((source, f)) = new {
            self.add_fact(db, app_id, source, f, "rules").await?;
            touched.insert(source.to_string());
        }
        Ok(touched)
    }

    /// Recomputes one source's entitlement from its whole history (moving it to the current
    /// holder when the e-mail changed), with an audit row for every change and the
    /// announcements it makes. The caller holds the transaction and, on PostgreSQL, the
    /// source's lock.
    pub async fn recompute(
        &mut self,
        db: &impl ConnectionTrait,
        app_id: i32,
        source: &str,
        actor: &str,
    ) -> AppResult<Changed> {
        let key = (app_id, source.to_string());
        self.load_source(db, &key).await?;
        let existing = self.rows[&key].clone();
        let now = super::now();
        let mut changed = Changed::default();
        let (before, before_side) = match &existing {
            Some(e) => {
                let email = self.email_of(db, e.buyer_id).await?;
                changed.add(app_id, &email);
                (Some(snapshot(e, &email)), Some(outbox::side_of(e, &email, now)))
            }
            None => (None, None),
        };
        let Some(p) = project(&self.histories[&key]) else {
            // Nothing in the history gives or takes access any more (a replay changed its
            // decision). Rare: everything so far is written first, so the row has its real id.
            if existing.is_some() {
                self.write(db).await?;
                let Some(mut e) = self.rows[&key].clone() else {
                    return Ok(changed);
                };
                let id = e.id;
                let news = outbox::transitions(before_side.as_ref(), None);
                e.version += news.len() as i64;
                let cause = outbox::cause(&self.histories[&key], 0, actor);
                self.notes.push(PendingNote { row: e, news, cause });
                entitlement::Entity::delete_by_id(id).exec(db).await?;
                self.rows.insert(key, None);
                self.audits.push(PendingAudit {
                    app_id,
                    actor: actor.to_string(),
                    action: "access.change",
                    entitlement: id,
                    before,
                    after: None,
                    reason: "no fact of this source gives access".into(),
                });
            }
            return Ok(changed);
        };
        let holder = match (&p.holder, &existing) {
            (Some(email), _) => {
                let email = super::buyers::parse_email(email)?;
                self.upsert_buyer(db, app_id, &email, None).await?
            }
            (None, Some(e)) => match self.buyer_by_id(db, e.buyer_id).await? {
                Some(b) => b,
                None => return Ok(changed),
            },
            // No fact names anyone: nobody to give a row to.
            (None, None) => return Ok(changed),
        };
        changed.add(app_id, &holder.email);
        self.bind_subscriber(db, app_id, source, holder.id).await?;
        let after_side = outbox::Side {
            email: holder.email.clone(),
            target: p.target,
            status: p.status.effective(p.expires_at, now),
            expires_at: p.expires_at,
        };
        let news = outbox::transitions(before_side.as_ref(), Some(&after_side));
        let notes = Notes {
            version: existing.as_ref().map_or(0, |e| e.version) + news.len() as i64,
            // A live row's end is announced by the timer when it passes; any other has nothing
            // left to announce.
            expiry_noted: !after_side.live(),
        };
        let saved = self.write_row(&key, &p, holder.id, existing, notes);
        if !news.is_empty() {
            let cause = outbox::cause(&self.histories[&key], p.last_event_row, actor);
            self.notes.push(PendingNote {
                row: saved.clone(),
                news,
                cause,
            });
        }
        let after = snapshot(&saved, &holder.email);
        if before.as_ref() != Some(&after) {
            let moved = before.as_ref().is_some_and(|b| b["holder"] != after["holder"]);
            let action = if moved { "access.move" } else { "access.change" };
            self.audits.push(PendingAudit {
                app_id,
                actor: actor.to_string(),
                action,
                entitlement: saved.id,
                before,
                after: Some(after),
                reason: p.reason.clone(),
            });
        }
        Ok(changed)
    }

    fn write_row(
        &mut self,
        key: &Key,
        p: &Projection,
        buyer_id: i32,
        existing: Option<entitlement::Model>,
        notes: Notes,
    ) -> entitlement::Model {
        let now = super::now();
        let mut row = match existing {
            Some(e) => e,
            None => entitlement::Model {
                id: self.next_placeholder(),
                app_id: key.0,
                buyer_id,
                target_kind: String::new(),
                target_id: 0,
                source: key.1.clone(),
                status: String::new(),
                granted_at: None,
                revoked_at: None,
                expires_at: None,
                last_event_id: None,
                rule_version: None,
                reason: String::new(),
                created_at: now,
                updated_at: now,
                version: 0,
                expiry_noted: false,
            },
        };
        row.buyer_id = buyer_id;
        row.target_kind = p.target.0.as_str().into();
        row.target_id = p.target.1;
        row.status = p.status.as_str().into();
        row.granted_at = p.granted_at;
        row.revoked_at = p.revoked_at;
        row.expires_at = p.expires_at;
        row.last_event_id = (p.last_event_row > 0).then_some(p.last_event_row);
        row.rule_version = p.rule_version;
        row.reason = p.reason.clone();
        row.updated_at = now;
        row.version = notes.version;
        row.expiry_noted = notes.expiry_noted;
        self.rows.insert(key.clone(), Some(row.clone()));
        self.dirty_rows.insert(key.clone());
        row
    }

    /// Notes what an inbox row's processing concluded (written at the flush).
    pub fn outcome(&mut self, o: Outcome) {
        self.outcomes.push(o);
    }

    /// Writes every change made since the last flush, a statement per table (per [`CHUNK`]
    /// rows), in the caller's transaction, and last the counts of what it announced.
    pub async fn flush(&mut self, db: &impl ConnectionTrait) -> AppResult<()> {
        self.write(db).await?;
        // Last, and once however often a batch wrote early: on PostgreSQL the tally's rows are
        // shared by every batch of the day, and their locks are held from here to the commit.
        outbox::tally(db, std::mem::take(&mut self.counted)).await
    }

    /// [`Self::flush`] but for the tally, which keeps counting until then.
    async fn write(&mut self, db: &impl ConnectionTrait) -> AppResult<()> {
        let backend = db.get_database_backend();
        let max = crate::db::statement_bytes(backend);
        for chunk in std::mem::take(&mut self.dropped).chunks(CHUNK) {
            af::Entity::delete_many()
                .filter(af::Column::WebhookEventId.is_in(chunk.to_vec()))
                .exec(db)
                .await?;
        }

        // Buyers first: rows and links name them.
        let new_buyers: Vec<buyer::Model> = self.buyers.values().flatten().filter(|b| b.id < 0).cloned().collect();
        for chunk in runs(&new_buyers, CHUNK, max, |b| b.email.len() + b.name.len() + 64) {
            let mut stmt = buyer::Entity::insert_many(chunk.iter().map(|b| buyer::ActiveModel {
                app_id: Set(b.app_id),
                email: Set(b.email.clone()),
                name: Set(b.name.clone()),
                created_at: Set(b.created_at),
                updated_at: Set(b.updated_at),
                ..Default::default()
            }))
            .into_query();
            stmt.returning(Query::returning().columns([buyer::Column::Id, buyer::Column::AppId, buyer::Column::Email]));
            for r in db.query_all_raw(backend.build(&stmt)).await? {
                let (id, app_id, email): (i32, i32, String) =
                    (r.try_get("", "id")?, r.try_get("", "app_id")?, r.try_get("", "email")?);
                let key = (app_id, email);
                if let Some(Some(b)) = self.buyers.get_mut(&key) {
                    self.real.insert(b.id, id);
                    b.id = id;
                }
                self.buyer_keys.insert(id, key);
            }
        }
        for key in std::mem::take(&mut self.renamed) {
            if let Some(Some(b)) = self.buyers.get(&key) {
                buyer::ActiveModel {
                    id: sea_orm::ActiveValue::Unchanged(b.id),
                    name: Set(b.name.clone()),
                    updated_at: Set(b.updated_at),
                    ..Default::default()
                }
                .update(db)
                .await?;
            }
        }

        let rows: Vec<entitlement::Model> = std::mem::take(&mut self.dirty_rows)
            .iter()
            .filter_map(|k| self.rows.get(k).cloned().flatten())
            .collect();
        for chunk in runs(&rows, CHUNK, max, |r| r.source.len() + r.reason.len() + 160) {
            let models = chunk.iter().map(|r| entitlement::ActiveModel {
                app_id: Set(r.app_id),
                buyer_id: Set(self.resolve(r.buyer_id)),
                target_kind: Set(r.target_kind.clone()),
                target_id: Set(r.target_id),
                source: Set(r.source.clone()),
                status: Set(r.status.clone()),
                granted_at: Set(r.granted_at),
                revoked_at: Set(r.revoked_at),
                expires_at: Set(r.expires_at),
                last_event_id: Set(r.last_event_id),
                rule_version: Set(r.rule_version),
                reason: Set(r.reason.clone()),
                created_at: Set(r.created_at),
                updated_at: Set(r.updated_at),
                version: Set(r.version),
                expiry_noted: Set(r.expiry_noted),
                ..Default::default()
            });
            use entitlement::Column as C;
            let mut stmt = entitlement::Entity::insert_many(models.collect::<Vec<_>>())
                .on_conflict(
                    OnConflict::columns([C::AppId, C::Source])
                        .update_columns([
                            C::BuyerId,
                            C::TargetKind,
                            C::TargetId,
                            C::Status,
                            C::GrantedAt,
                            C::RevokedAt,
                            C::ExpiresAt,
                            C::LastEventId,
                            C::RuleVersion,
                            C::Reason,
                            C::UpdatedAt,
                            C::Version,
                            C::ExpiryNoted,
                        ])
                        .to_owned(),
                )
                .into_query();
            stmt.returning(Query::returning().columns([C::Id, C::AppId, C::Source]));
            for r in db.query_all_raw(backend.build(&stmt)).await? {
                let (id, app_id, source): (i32, i32, String) =
                    (r.try_get("", "id")?, r.try_get("", "app_id")?, r.try_get("", "source")?);
                if let Some(Some(row)) = self.rows.get_mut(&(app_id, source)) {
                    if row.id < 0 {
                        self.real.insert(row.id, id);
                    }
                    row.id = id;
                    row.buyer_id = if row.buyer_id < 0 {
                        self.real.get(&row.buyer_id).copied().unwrap_or(row.buyer_id)
                    } else {
                        row.buyer_id
                    };
                }
            }
        }

        let facts = std::mem::take(&mut self.new_facts);
        for chunk in runs(&facts, CHUNK, max, |(k, f, _)| {
            k.1.len() + f.key.len() + f.reason.len() + 200
        }) {
            let now = super::now();
            af::Entity::insert_many(chunk.iter().map(|((app_id, source), f, actor)| af::ActiveModel {
                app_id: Set(*app_id),
                source: Set(source.clone()),
                effect: Set(f.effect.as_str().to_string()),
                event_type: Set(f.event_type.clone()),
                fact_key: Set(f.key.clone()),
                transaction: Set(f.transaction.clone()),
                occurred_at: Set(f.occurred_at),
                paid_at: Set(f.paid_at),
                until: Set(f.until),
                email: Set(f.email.clone()),
                target_kind: Set(f.target.0.as_str().to_string()),
                target_id: Set(f.target.1),
                webhook_event_id: Set((f.event_row > 0).then_some(f.event_row)),
                rule_version: Set(f.rule_version),
                actor: Set(actor.clone()),
                reason: Set(f.reason.clone()),
                created_at: Set(now),
                ..Default::default()
            }))
            .exec_without_returning(db)
            .await?;
        }

        let mut new_codes = Vec::new();
        let mut new_code_keys = Vec::new();
        for key in std::mem::take(&mut self.dirty_codes) {
            let Some(Some(link)) = self.codes.get(&key).cloned() else {
                continue;
            };
            let buyer_id = self.resolve(link.buyer_id);
            if link.id < 0 {
                new_code_keys.push(key);
                new_codes.push(subcode::ActiveModel {
                    app_id: Set(link.app_id),
                    buyer_id: Set(buyer_id),
                    code: Set(link.code.clone()),
                    created_at: Set(link.created_at),
                    ..Default::default()
                });
            } else {
                subcode::ActiveModel {
                    id: sea_orm::ActiveValue::Unchanged(link.id),
                    buyer_id: Set(buyer_id),
                    ..Default::default()
                }
                .update(db)
                .await?;
            }
        }
        for chunk in runs(&new_codes, CHUNK, max, |_| 100) {
            subcode::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(db)
                .await?;
        }
        // Their ids are never needed again in this transaction; a later change reads them anew.
        for k in new_code_keys {
            self.codes.remove(&k);
        }

        let notes = std::mem::take(&mut self.notes);
        let listening = outbox::listening(db, notes.iter().map(|n| n.row.app_id)).await?;
        self.counted.extend(
            notes
                .iter()
                .flat_map(|n| n.news.iter().map(|a| (n.row.app_id, a.event_type))),
        );
        let mut out: Vec<notification::ActiveModel> = Vec::new();
        for note in notes.into_iter().filter(|n| listening.contains(&n.row.app_id)) {
            let mut row = note.row;
            row.id = self.resolve(row.id);
            let mut names = HashMap::new();
            for a in &note.news {
                let name = self.target_name(db, row.app_id, a.side.target).await?;
                names.insert(a.side.target, name);
            }
            out.extend(outbox::models(&row, &note.news, &note.cause, &names)?);
        }
        for chunk in runs(&out, CHUNK, max, |n| n.payload.as_ref().len() + 100) {
            notification::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(db)
                .await?;
        }

        let audits: Vec<audit_log::ActiveModel> = std::mem::take(&mut self.audits)
            .into_iter()
            .map(|a| {
                audit::model(audit::Entry {
                    app_id: a.app_id,
                    actor: &a.actor,
                    action: a.action,
                    target: format!("entitlement:{}", self.resolve(a.entitlement)),
                    before: a.before,
                    after: a.after,
                    reason: &a.reason,
                })
            })
            .collect();
        for chunk in runs(&audits, CHUNK, max, |a| {
            let len = |v: &sea_orm::ActiveValue<Option<String>>| v.as_ref().as_ref().map_or(0, String::len);
            len(&a.before) + len(&a.after) + a.reason.as_ref().len() + 100
        }) {
            audit_log::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(db)
                .await?;
        }
        let outcomes = std::mem::take(&mut self.outcomes);
        for chunk in runs(&outcomes, CHUNK, max, |o| {
            o.error.as_ref().map_or(0, String::len) + o.decision.as_ref().map_or(0, String::len) + 200
        }) {
            write_outcomes(db, chunk).await?;
        }
        Ok(())
    }
}

/// One UPDATE for many inbox rows, each with its own values (the same SQL on both databases).
async fn write_outcomes(db: &impl ConnectionTrait, rows: &[Outcome]) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    const COLUMNS: usize = 14;
    let one = format!("({})", vec!["?"; COLUMNS].join(","));
    let sql = format!(
        "WITH v(id, status, error, decision, rule_version, email, source_key, target_kind, target_id, tx, \
         occurred_at, event_type, attempts, processed_at) AS (VALUES {}) \
         UPDATE webhook_event SET status = v.status, error = v.error, decision = v.decision, \
         rule_version = v.rule_version, email = v.email, source_key = v.source_key, \
         target_kind = v.target_kind, target_id = v.target_id, \"transaction\" = v.tx, \
         occurred_at = COALESCE(v.occurred_at, webhook_event.occurred_at), \
         event_type = COALESCE(v.event_type, webhook_event.event_type), attempts = v.attempts, \
         processed_at = v.processed_at FROM v WHERE webhook_event.id = v.id",
        vec![one.as_str(); rows.len()].join(",")
    );
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(rows.len() * COLUMNS);
    for o in rows {
        values.extend([
            o.id.into(),
            o.status.to_string().into(),
            o.error.clone().into(),
            o.decision.clone().into(),
            o.rule_version.into(),
            o.email.clone().into(),
            o.source_key.clone().into(),
            o.target_kind.clone().into(),
            o.target_id.into(),
            o.transaction.clone().into(),
            o.occurred_at.into(),
            o.event_type.clone().into(),
            o.attempts.into(),
            o.processed_at.into(),
        ]);
    }
    let stmt = crate::db::statement(db.get_database_backend(), &sql, values);
    db.execute_raw(stmt).await?;
    Ok(())
}

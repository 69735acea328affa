//! The working set of one write transaction's access changes. A source's history, its
//! entitlement, the buyers and subscriber codes involved are read once (a worker batch reads them
//! all in a few queries up front), any number of facts are applied and recomputed in memory, and
//! [`Ledger::flush`] writes everything back with one statement per table, whatever the number of
//! events. That is what lets a batch of 64 events cost a handful of statements instead of a
//! thousand. Rows created here carry negative placeholder ids until the flush learns the real ones.
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use entity::{access_fact as af, buyer, buyer_subscriber_code as subcode, entitlement};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};

use super::access_cache::Changed;
use super::history;
use super::outbox::{self, Announcement};
use crate::AppResult;
use crate::domain::{Email, Fact, Projection, TargetKind, project};
use crate::rules::CurrentAccess;

/// (app, source)
type Key = (i32, String);
/// (app, e-mail) or (app, subscriber code)
type Named = (i32, String);

/// Rows per multi-row statement: far below both databases' limits on bound values.
const CHUNK: usize = 200;

mod flush;

/// What processing concluded for one inbox row: only these columns are written (never the stored
/// body again).
pub struct Outcome {
    pub id: i32,
    pub status: entity::status::InboxStatus,
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
    /// A backtest's ledger: computes the same as a worker's, never writes (it is never
    /// flushed, and the one change written early is kept in memory instead).
    dry: bool,
    /// What versions in shadow decided on this transaction's events.
    shadows: Vec<super::shadow::Note>,
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
    /// A ledger that is never flushed: what processing would do, computed, nothing written.
    pub fn dry() -> Self {
        Ledger {
            dry: true,
            ..Default::default()
        }
    }

    /// A source's entitlement as this ledger sees it, with its holder's e-mail.
    pub async fn entitlement(
        &mut self,
        db: &impl ConnectionTrait,
        app_id: i32,
        source: &str,
    ) -> AppResult<Option<(entitlement::Model, String)>> {
        let key = (app_id, source.to_string());
        self.load_source(db, &key).await?;
        let Some(row) = self.rows[&key].clone() else {
            return Ok(None);
        };
        let email = self.email_of(db, row.buyer_id).await?;
        Ok(Some((row, email)))
    }

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
        if self.dry {
            // Nothing is written: nothing to serialise.
            return Ok(());
        }
        let fresh: Vec<Key> = keys.into_iter().filter(|k| self.locked.insert(k.clone())).collect();
        history::lock(db, &fresh).await
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
                    if let Some(f) = history::to_fact(r) {
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
            let h = history::facts(db, key.0, &key.1).await?;
            self.histories.insert(key.clone(), h);
        }
        if !self.rows.contains_key(key) {
            let row = history::row_of(db, key.0, &key.1).await?;
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
            status: r.status.effective(r.expires_at, chrono::Utc::now()),
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
            match history::buyer(db, app_id, email).await? {
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
                    b.updated_at = chrono::Utc::now();
                    if b.id > 0 {
                        self.renamed.insert(key.clone());
                    }
                    self.buyers.insert(key, Some(b.clone()));
                }
                Ok(b)
            }
            None => {
                let now = chrono::Utc::now();
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
                created_at: chrono::Utc::now(),
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
            let name = super::targets::target(db, app_id, target.0, target.1)
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
        let now = chrono::Utc::now();
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
                if !self.dry {
                    self.write(db).await?;
                }
                let Some(mut e) = self.rows[&key].clone() else {
                    return Ok(changed);
                };
                let id = e.id;
                let news = outbox::transitions(before_side.as_ref(), None);
                e.version += news.len() as i64;
                let cause = outbox::cause(&self.histories[&key], 0, actor);
                self.notes.push(PendingNote { row: e, news, cause });
                if !self.dry {
                    entitlement::Entity::delete_by_id(id).exec(db).await?;
                }
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
                let email =
                    Email::parse(email).map_err(|m| crate::AppError::InvalidFields(vec![("email".into(), m)]))?;
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
            term: p.term,
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
        let now = chrono::Utc::now();
        let mut row = match existing {
            Some(e) => e,
            None => entitlement::Model {
                id: self.next_placeholder(),
                app_id: key.0,
                buyer_id,
                target_kind: String::new(),
                target_id: 0,
                source: key.1.clone(),
                status: p.status,
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
                term: p.term,
            },
        };
        row.buyer_id = buyer_id;
        row.target_kind = p.target.0.as_str().into();
        row.target_id = p.target.1;
        row.status = p.status;
        row.granted_at = p.granted_at;
        row.revoked_at = p.revoked_at;
        row.expires_at = p.expires_at;
        row.last_event_id = (p.last_event_row > 0).then_some(p.last_event_row);
        row.rule_version = p.rule_version;
        row.reason = p.reason.clone();
        row.updated_at = now;
        row.version = notes.version;
        row.expiry_noted = notes.expiry_noted;
        row.term = p.term;
        self.rows.insert(key.clone(), Some(row.clone()));
        self.dirty_rows.insert(key.clone());
        row
    }

    /// Notes what an inbox row's processing concluded (written at the flush).
    pub fn outcome(&mut self, o: Outcome) {
        self.outcomes.push(o);
    }

    /// Notes what the version in shadow decided on an event (written at the flush).
    pub fn shadowed(&mut self, n: super::shadow::Note) {
        self.shadows.push(n);
    }
}

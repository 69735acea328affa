//! What the pipeline works with: the pool, its caches, the settings, the rule engine and the
//! handles of its writer and sender. Admin code holds an [`crate::AppState`], which derefs to
//! this; the pipeline never sees the rest.
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::Notify;

use super::access_cache::{AccessCache, Changed};
use super::caches::HotCache;
use super::dispatch::Dispatcher;
use super::inbox::{INGEST_QUEUE, Ingest};
use super::signals::{Signal, Signals};
use crate::config::Settings;
use crate::rules::RuleEngine;
use crate::secrets::SecretBox;

#[derive(Clone)]
pub struct Pipeline {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    pub secrets: SecretBox,
    pub rules: Arc<RuleEngine>,
    /// The inbox's group-committing writer.
    pub ingest: Arc<Ingest>,
    /// What every webhook re-reads: the app behind a webhook key and its decrypted Hottok.
    pub hot: Arc<HotCache>,
    /// Webhook deliveries being handled at once; past it, 503 before reading the body.
    pub webhook_slots: Arc<tokio::sync::Semaphore>,
    /// What each buyer holds, for the read paths; forgotten after every access-changing commit.
    pub access: Arc<AccessCache>,
    /// The notifications' sender.
    pub notify: Arc<Dispatcher>,
    /// What this process tells the other instances sharing the database.
    pub signals: Arc<Signals>,
    /// This process's name among them ([`crate::lease`], [`super::signals`]).
    pub instance: Arc<str>,
    worker: Arc<Notify>,
}

impl Pipeline {
    pub fn new(db: DatabaseConnection, settings: Arc<Settings>) -> Self {
        let secrets = settings.secret_box();
        Pipeline {
            rules: Arc::new(RuleEngine::new(Duration::from_millis(settings.rule_timeout_ms))),
            notify: Arc::new(Dispatcher::new(
                db.clone(),
                secrets.clone(),
                settings.notify_allow_private_targets,
            )),
            secrets,
            ingest: Arc::new(Ingest::start(db.clone())),
            hot: Arc::new(HotCache::default()),
            access: Arc::new(AccessCache::default()),
            webhook_slots: Arc::new(tokio::sync::Semaphore::new(INGEST_QUEUE)),
            signals: Arc::new(Signals::default()),
            instance: crate::lease::instance_name(),
            settings,
            db,
            worker: Arc::new(Notify::new()),
        }
    }

    /// Tells the worker there is something in the inbox (it also polls, so a lost wake-up only
    /// delays processing).
    pub fn wake_worker(&self) {
        self.worker.notify_one();
        self.signals.send([Signal::Inbox]);
    }

    /// Wakes this process's worker only (another instance's signal).
    pub fn wake_worker_here(&self) {
        self.worker.notify_one();
    }

    /// Tells the other instances (if any) what this one committed.
    pub fn signal(&self, s: Signal) {
        self.signals.send([s]);
    }

    /// What [`Self::wake_worker`] notifies (the job registry waits on it).
    pub fn worker_wake(&self) -> Arc<Notify> {
        self.worker.clone()
    }

    /// After a commit that changed what these buyers hold: forget their cached access and let
    /// the dispatcher send what the change announced.
    pub fn access_changed(&self, changed: &Changed) {
        self.access.forget(changed);
        if !changed.0.is_empty() {
            if self.signals.has_peers() {
                let mut shards: std::collections::BTreeMap<i32, Vec<u16>> = Default::default();
                for (app, email) in &changed.0 {
                    shards.entry(*app).or_default().push(super::access_cache::shard(email));
                }
                self.signals
                    .send(shards.into_iter().map(|(app, shards)| Signal::Access { app, shards }));
            }
            self.wake_dispatcher();
        }
    }

    /// Tells the dispatcher there may be notifications to fan out or send (it also polls), here
    /// and on whichever instance holds it.
    pub fn wake_dispatcher(&self) {
        self.notify.wake();
        self.signals.send([Signal::Outbox]);
    }

    /// Sends the queued signals in one `NOTIFY` (waits for some first).
    pub async fn publish_signals(&self) -> crate::AppResult<()> {
        let batch = self.signals.next().await;
        let payload = super::signals::envelope(&self.instance, batch)?;
        super::signals::notify(&self.db, &payload).await
    }

    /// Acts on another instance's signals: what the pipeline caches is forgotten, its loops
    /// woken. (The admin side's own caches, the Hotmart client's, are the caller's.)
    pub fn apply_signals(&self, signals: &[Signal]) {
        for s in signals {
            match s {
                // The listener answers a hello; both mean someone else listens.
                Signal::Hello | Signal::Here => {}
                Signal::Inbox => self.wake_worker_here(),
                Signal::Outbox => self.notify.wake(),
                Signal::Access { app, shards } => self.access.forget_shards(*app, shards),
                Signal::AppAccess { app } => self.access.forget_app(*app),
                Signal::Catalog { app } => {
                    self.hot.forget_catalog(*app);
                    self.access.forget_app(*app);
                }
                Signal::Rules { app } => {
                    self.hot.forget_rules(*app);
                    self.wake_worker_here();
                }
                Signal::Integration { app } => self.hot.hottoks.invalidate(app),
                Signal::Erasure { app } => self.hot.erasures.invalidate(app),
                Signal::ApiKey { id } => self.hot.api_keys.invalidate(id),
            }
        }
    }

    /// After signals may have been missed (the listener's connection dropped): everything cached
    /// that another instance could have changed is forgotten, and the loops look.
    pub fn forget_everything(&self) {
        self.access.forget_all();
        self.hot.forget_all();
        self.wake_worker_here();
        self.notify.wake();
    }
}

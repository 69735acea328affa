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
            settings,
            db,
            worker: Arc::new(Notify::new()),
        }
    }

    /// Tells the worker there is something in the inbox (it also polls, so a lost wake-up only
    /// delays processing).
    pub fn wake_worker(&self) {
        self.worker.notify_one();
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
            self.wake_dispatcher();
        }
    }

    /// Tells the dispatcher there may be notifications to fan out or send (it also polls).
    pub fn wake_dispatcher(&self) {
        self.notify.wake();
    }
}

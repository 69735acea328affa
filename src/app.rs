//! The shared state every handler and the worker get, and the process's lifecycle.
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, watch};

use crate::config::Settings;
use crate::hotmart::api::HotmartApi;
use crate::rules::RuleEngine;
use crate::secrets::SecretBox;
use crate::services;

/// Read-through caches of the webhook path and the worker. Entries live a minute at most (ten
/// seconds for what an admin edits, so a second process sharing a PostgreSQL database sees an
/// edit soon), and a change made through this process applies to the next delivery at once.
pub struct HotCache {
    pub apps_by_key: moka::sync::Cache<String, entity::app::Model>,
    /// Slug → app, for the admin token of every GraphQL request (an app's slug never changes,
    /// and apps are never deleted).
    pub apps_by_slug: moka::sync::Cache<String, entity::app::Model>,
    pub hottoks: moka::sync::Cache<i32, Option<secrecy::SecretString>>,
    /// (app, generation, Hotmart product, Hotmart plan) → the package or plan it maps to.
    pub targets: moka::sync::Cache<(i32, u64, String, String), Option<crate::domain::Target>>,
    /// (app, generation, kind, id) → whether the app has that package or plan (the access
    /// check's 404).
    pub target_exists: moka::sync::Cache<(i32, u64, crate::domain::TargetKind, i32), bool>,
    /// API key id → its row (`None`: no such key). Revoking drops the entry at once; another
    /// process sharing the database sees a revocation within ten seconds.
    pub api_keys: moka::sync::Cache<String, Option<entity::api_key::Model>>,
    /// (app, generation, event type) → the active script.
    pub scripts: moka::sync::Cache<(i32, u64, String), Option<services::rules::ActiveScript>>,
    catalog_gen: Generations,
    rules_gen: Generations,
}

/// Per-app generations that are part of a cache key. A change bumps its app's generation, so an
/// entry read from the database before the change (even one inserted after it) is never found.
#[derive(Default)]
struct Generations(std::sync::Mutex<std::collections::HashMap<i32, u64>>);

impl Generations {
    fn get(&self, app_id: i32) -> u64 {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&app_id)
            .unwrap_or(&0)
    }
    fn bump(&self, app_id: i32) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(app_id)
            .or_default() += 1;
    }
}

impl HotCache {
    pub fn catalog_generation(&self, app_id: i32) -> u64 {
        self.catalog_gen.get(app_id)
    }
    pub fn rules_generation(&self, app_id: i32) -> u64 {
        self.rules_gen.get(app_id)
    }
    /// After a package, plan or product link of the app changed.
    pub fn forget_catalog(&self, app_id: i32) {
        self.catalog_gen.bump(app_id);
    }
    /// After a rule of the app was saved or activated.
    pub fn forget_rules(&self, app_id: i32) {
        self.rules_gen.bump(app_id);
    }
}

impl Default for HotCache {
    fn default() -> Self {
        let ttl = Duration::from_secs(60);
        let edited = Duration::from_secs(10);
        HotCache {
            apps_by_key: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            apps_by_slug: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            hottoks: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            targets: moka::sync::Cache::builder()
                .max_capacity(50_000)
                .time_to_live(edited)
                .build(),
            target_exists: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(edited)
                .build(),
            api_keys: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(edited)
                .build(),
            scripts: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(edited)
                .build(),
            catalog_gen: Generations::default(),
            rules_gen: Generations::default(),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    pub secrets: SecretBox,
    pub rules: Arc<RuleEngine>,
    pub hotmart: Arc<HotmartApi>,
    /// Reconciliation jobs this process runs, so they can be cancelled or stopped at shutdown.
    pub jobs: Arc<services::reconcile::Jobs>,
    /// The inbox's group-committing writer.
    pub ingest: Arc<services::inbox::Ingest>,
    /// What every webhook re-reads: the app behind a webhook key and its decrypted Hottok.
    pub hot: Arc<HotCache>,
    /// Webhook deliveries being handled at once; past it, 503 before reading the body.
    pub webhook_slots: Arc<tokio::sync::Semaphore>,
    /// What each buyer holds, for the read paths; forgotten after every access-changing commit.
    pub access: Arc<services::access_cache::AccessCache>,
    /// The notifications' sender.
    pub notify: Arc<services::dispatch::Dispatcher>,
    worker: Arc<Notify>,
}

impl AppState {
    /// Connects, migrates and makes sure the default app exists.
    pub async fn init(settings: Settings) -> anyhow::Result<Self> {
        let db = crate::db::connect_with(&settings.database_url, settings.sqlite_durable).await?;
        crate::db::migrate(&db).await?;
        services::apps::ensure(&db, &settings.default_app).await?;
        let orphans = services::reconcile::sweep_orphans(&db).await?;
        if orphans > 0 {
            tracing::warn!(
                runs = orphans,
                "reconciliation runs left running by a stopped process marked failed"
            );
        }
        Ok(Self::with_db(db, settings))
    }

    pub fn with_db(db: DatabaseConnection, settings: Settings) -> Self {
        crate::telemetry::init();
        AppState {
            secrets: SecretBox::new(settings.master_key).with_older(settings.older_master_keys.iter().copied()),
            rules: Arc::new(RuleEngine::new(Duration::from_millis(settings.rule_timeout_ms))),
            hotmart: Arc::new(HotmartApi::new(settings.hotmart.clone())),
            notify: Arc::new(services::dispatch::Dispatcher::new(
                settings.notify_allow_private_targets,
            )),
            settings: Arc::new(settings),
            jobs: Arc::new(services::reconcile::Jobs::default()),
            ingest: Arc::new(services::inbox::Ingest::start(db.clone())),
            hot: Arc::new(HotCache::default()),
            access: Arc::new(services::access_cache::AccessCache::default()),
            webhook_slots: Arc::new(tokio::sync::Semaphore::new(services::inbox::INGEST_QUEUE)),
            db,
            worker: Arc::new(Notify::new()),
        }
    }

    /// Tells the worker there is something in the inbox (it also polls, so a lost wake-up only
    /// delays processing).
    pub fn wake_worker(&self) {
        self.worker.notify_one();
    }

    /// After a commit that changed what these buyers hold: forget their cached access and let
    /// the dispatcher send what the change announced.
    pub fn access_changed(&self, changed: &services::access_cache::Changed) {
        self.access.forget(changed);
        if !changed.0.is_empty() {
            self.wake_dispatcher();
        }
    }

    /// Tells the dispatcher there may be notifications to fan out or send (it also polls).
    pub fn wake_dispatcher(&self) {
        self.notify.wake();
    }

    /// Drains the inbox whenever woken, and on a timer, until shutdown. Events stored before a
    /// crash are simply still pending, so a restart picks them up.
    pub async fn run_worker(self, mut shutdown: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.settings.worker_poll_ms);
        loop {
            // The shutdown is checked between batches, so it waits for at most the batch in hand.
            let go = || !*shutdown.borrow();
            if !go() {
                return;
            }
            if let Err(e) = services::processor::drain_while(&self, go).await {
                e.log();
                tracing::warn!("inbox processing paused after an error; retrying");
            }
            tokio::select! {
                _ = self.worker.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// [`AppState::run_worker`] on a thread and runtime of its own. Each event is a chain of
    /// database round trips; on the server's runtime every one of them waited its turn behind
    /// every HTTP request's task, and under load a batch of 64 took 2 s while holding the write
    /// lock. On its own thread it gets its share of the CPU from the OS instead.
    pub fn spawn_worker_thread(self, shutdown: watch::Receiver<bool>) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("porteiro-worker".into())
            .spawn(
                move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt.block_on(self.run_worker(shutdown)),
                    Err(e) => tracing::error!(error = %e, "cannot start the worker's runtime"),
                },
            )
    }

    /// Runs periodic reconciliations that are due, once per tick, until shutdown.
    pub async fn run_scheduler(self, mut shutdown: watch::Receiver<bool>) {
        let tick = Duration::from_secs(self.settings.scheduler_tick_secs);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = services::reconcile::sweep_orphans(&self.db).await {
                e.log();
            }
            if let Err(e) = services::reconcile::run_due(&self).await {
                e.log();
            }
        }
    }
}

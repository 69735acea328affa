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

/// Read-through caches of the webhook path. Entries live a minute at most, and saving an
/// integration drops its app's entry at once, so a new Hottok applies to the next delivery.
pub struct HotCache {
    pub apps_by_key: moka::sync::Cache<String, entity::app::Model>,
    pub hottoks: moka::sync::Cache<i32, Option<secrecy::SecretString>>,
}

impl Default for HotCache {
    fn default() -> Self {
        let ttl = Duration::from_secs(60);
        HotCache {
            apps_by_key: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            hottoks: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
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
            settings: Arc::new(settings),
            jobs: Arc::new(services::reconcile::Jobs::default()),
            ingest: Arc::new(services::inbox::Ingest::start(db.clone())),
            hot: Arc::new(HotCache::default()),
            db,
            worker: Arc::new(Notify::new()),
        }
    }

    /// Tells the worker there is something in the inbox (it also polls, so a lost wake-up only
    /// delays processing).
    pub fn wake_worker(&self) {
        self.worker.notify_one();
    }

    /// Drains the inbox whenever woken, and on a timer, until shutdown. Events stored before a
    /// crash are simply still pending, so a restart picks them up.
    pub async fn run_worker(self, mut shutdown: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.settings.worker_poll_ms);
        loop {
            // One event per step, so a shutdown waits for at most the event in hand.
            loop {
                if *shutdown.borrow() {
                    return;
                }
                match services::processor::process_one(&self).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(e) => {
                        e.log();
                        tracing::warn!("inbox processing paused after an error; retrying");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.worker.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => return,
            }
        }
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

//! The state every handler gets: the pipeline's (which it derefs to) and what only admin use
//! cases need.
use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::config::Settings;
use crate::hotmart::api::HotmartApi;
use crate::jobs::Runs;
use crate::pipeline::Pipeline;

#[derive(Clone)]
pub struct AppState {
    pub pipeline: Pipeline,
    pub hotmart: Arc<HotmartApi>,
    /// Reconciliation runs this process runs, so they can be cancelled or stopped at shutdown.
    pub runs: Arc<Runs>,
    /// Rule backtests this process runs, likewise.
    pub backtests: Arc<Runs>,
    /// The app API's per-key rate limit (`None`: off).
    pub api_limit: Arc<Option<crate::rate_limit::ApiLimiter>>,
    /// This instance among those sharing the database: its leases of fleet-wide jobs.
    pub fleet: crate::lease::Fleet,
    /// Set on SIGTERM: webhooks and readiness answer 503 (so Hotmart and the load balancer go
    /// to another instance) until the server stops.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

/// `state.db`, `state.settings`… read as before; a pipeline function takes `&Pipeline` and is
/// given `&state`.
impl std::ops::Deref for AppState {
    type Target = Pipeline;
    fn deref(&self) -> &Pipeline {
        &self.pipeline
    }
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn with_db(db: DatabaseConnection, settings: Settings) -> Self {
        crate::telemetry::init();
        let settings = Arc::new(settings);
        let pipeline = Pipeline::new(db, settings.clone());
        AppState {
            fleet: crate::lease::Fleet::new(pipeline.db.clone(), pipeline.instance.clone(), settings.job_lease),
            hotmart: Arc::new(HotmartApi::new(settings.hotmart.clone())),
            runs: Arc::new(Runs::default()),
            backtests: Arc::new(Runs::default()),
            api_limit: Arc::new(settings.api_rate_limit.map(crate::rate_limit::ApiLimiter::new)),
            draining: Arc::default(),
            pipeline,
        }
    }
}

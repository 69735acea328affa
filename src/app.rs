//! The process: start-up (connect, migrate, the default app), the background jobs it runs, and
//! their order at shutdown.
use std::time::Duration;

use crate::config::Settings;
use crate::jobs::{Every, Jobs, Tick};
use crate::{AppState, pipeline, services};

impl AppState {
    /// Connects, migrates and makes sure the default app exists.
    pub async fn init(settings: Settings) -> anyhow::Result<Self> {
        let db = crate::db::connect_pool(
            &settings.database_url,
            settings.sqlite_durable,
            settings.db_max_connections,
        )
        .await?;
        crate::db::migrate(&db).await?;
        if let Err(e) = crate::ops::key_check::verify_or_seal(&db, &settings.secret_box()).await {
            // A key this start generated belongs to nothing: leave the directory as it was, so
            // the right key can simply be put back.
            if settings.master_key_generated {
                let _ = std::fs::remove_file(settings.data_dir.join("master.key"));
            }
            return Err(e);
        }
        services::apps::ensure(&db, &settings.default_app).await?;
        services::backtests::sweep_orphans(&db).await?;
        let orphans = services::reconcile::sweep_orphans(&db).await?;
        if orphans > 0 {
            tracing::warn!(
                runs = orphans,
                "reconciliation runs left running by a stopped process marked failed"
            );
        }
        Ok(Self::with_db(db, settings))
    }
}

/// Boxes one round of a job.
fn tick<F: std::future::Future<Output = crate::AppResult<()>> + Send + 'static>(f: F) -> Tick {
    Box::pin(f)
}

/// The database's upkeep while it takes writes: SQLite's WAL checkpoints, PostgreSQL's analyses
/// of tables that doubled (see [`crate::db::maintain`]). The pipeline benchmark runs it too.
pub fn start_maintenance(jobs: &mut Jobs, state: &AppState) {
    let db = state.db.clone();
    let backend = db.get_database_backend();
    let period = crate::db::maintenance_period(backend);
    let mut first = true;
    let round = move || {
        let db = db.clone();
        let first = std::mem::take(&mut first);
        tick(async move { Ok(crate::db::maintain(&db, first).await?) })
    };
    if backend == sea_orm::DbBackend::Postgres {
        // One instance analyses for the fleet; SQLite's checkpoints are this process's own.
        jobs.spawn(
            "maintenance",
            Every::period(period.min(LOOK)),
            state.fleet.once_per("maintenance", period, round),
        );
    } else {
        jobs.spawn("maintenance", Every::period(period), round);
    }
}

/// How often an instance looks whether a fleet-wide job with a long period is due (and so how
/// soon one whose holder died is taken over).
const LOOK: Duration = Duration::from_secs(60);

/// Drains the inbox whenever woken, and on a timer, on a thread of its own. Events stored before
/// a crash are simply still pending, so a restart picks them up.
pub fn start_worker(jobs: &mut Jobs, state: &AppState) -> std::io::Result<()> {
    let p = state.pipeline.clone();
    let stop = jobs.stopping();
    let every = Every::period(Duration::from_millis(p.settings.worker_poll_ms)).woken_by(p.worker_wake());
    jobs.spawn_thread("worker", every, move || {
        let (p, stop) = (p.clone(), stop.clone());
        // The stop is checked between batches, so it waits for at most the batch in hand.
        tick(async move { pipeline::worker::drain_while(&p, || !*stop.borrow()).await.map(|_| ()) })
    })
}

/// Every background job of a serving process.
pub fn start_jobs(state: &AppState) -> std::io::Result<Jobs> {
    let mut jobs = Jobs::default();
    start_signals(&mut jobs, state);
    start_maintenance(&mut jobs, state);
    start_worker(&mut jobs, state)?;
    start_dispatcher(&mut jobs, state);
    start_upkeep(&mut jobs, state);
    start_backups(&mut jobs, state);
    Ok(jobs)
}

/// Sends notifications (fan-out and due deliveries; woken after every access change) and
/// announces ends as they pass. One instance of the fleet dispatches at a time (it keeps the
/// lease while it lives), so an endpoint's `maxInFlight` holds fleet-wide.
pub fn start_dispatcher(jobs: &mut Jobs, state: &AppState) {
    let notify = state.notify.clone();
    jobs.spawn(
        "dispatch",
        Every::period(Duration::from_secs(1)).woken_by(notify.wake_handle()),
        state.fleet.once_per("dispatch", Duration::ZERO, move || {
            let d = notify.clone();
            tick(async move { pipeline::dispatch::round(&d).await })
        }),
    );

    let p = state.pipeline.clone();
    let expiry = Duration::from_secs(5);
    jobs.spawn(
        "expiry",
        Every::period(expiry),
        state.fleet.once_per("expiry", expiry, move || {
            let p = p.clone();
            tick(async move {
                if pipeline::outbox::announce_expiries(&p.db, chrono::Utc::now()).await? > 0 {
                    p.wake_dispatcher();
                }
                Ok(())
            })
        }),
    );
}

/// The admin screens' counters: the triggers' deltas folded in every 5 s, so reads stay small.
pub fn start_rollups(jobs: &mut Jobs, state: &AppState) {
    let db = state.db.clone();
    let every = Duration::from_secs(5);
    jobs.spawn(
        "rollups",
        Every::period(every),
        state.fleet.once_per("rollups", every, move || {
            let db = db.clone();
            tick(async move { services::overview::fold(&db).await.map(|_| ()) })
        }),
    );
}

/// Hourly retention of the outbox, and the reconciliation scheduler.
pub fn start_upkeep(jobs: &mut Jobs, state: &AppState) {
    let p = state.pipeline.clone();
    let hourly = Duration::from_secs(3600);
    jobs.spawn(
        "prune",
        Every::period(LOOK).after_a_period(),
        state.fleet.once_per("prune", hourly, move || {
            let p = p.clone();
            tick(async move {
                pipeline::dispatch::prune(&p.db, p.settings.notify_retention_days)
                    .await
                    .map(|_| ())
            })
        }),
    );

    start_rollups(jobs, state);

    if let Some(days) = state.settings.event_body_retention_days {
        let db = state.db.clone();
        jobs.spawn(
            "retention",
            Every::period(LOOK),
            state.fleet.once_per("retention", hourly, move || {
                let db = db.clone();
                tick(async move { services::personal_data::apply_retention(&db, days).await.map(|_| ()) })
            }),
        );
    }

    // The scheduler decides what is due itself; the lease keeps two instances from starting
    // the same run.
    let st = state.clone();
    jobs.spawn(
        "reconcile_scheduler",
        Every::period(Duration::from_secs(state.settings.scheduler_tick_secs)).after_a_period(),
        state.fleet.once_per("reconcile_scheduler", Duration::ZERO, move || {
            let st = st.clone();
            tick(async move {
                // Both halves run whatever the other did.
                let swept = services::reconcile::sweep_orphans(&st.db).await;
                let swept = swept.and(services::backtests::sweep_orphans(&st.db).await);
                let ran = services::reconcile::run_due(&st).await;
                swept.and(ran).map(|_| ())
            })
        }),
    );
}

/// Scheduled backups (`PORTEIRO_BACKUP_EVERY`): one whenever the newest is older than the period,
/// looked at every minute, so a restart neither skips one nor takes an extra one.
pub fn start_backups(jobs: &mut Jobs, state: &AppState) {
    let Some(plan) = state.settings.backup.clone() else {
        return;
    };
    let src = crate::ops::backup::Source::of(&state.settings);
    let look = plan.every.min(Duration::from_secs(60));
    jobs.spawn(
        "backup",
        Every::period(look),
        state.fleet.once_per("backup", Duration::ZERO, move || {
            let (src, plan) = (src.clone(), plan.clone());
            tick(async move {
                crate::ops::backup::scheduled_round(&src, &plan)
                    .await
                    .map(|_| ())
                    .map_err(crate::AppError::internal)
            })
        }),
    );
}

/// On PostgreSQL, the signals between instances: what this one commits is sent (coalesced), and
/// what the others send is acted on (see [`pipeline::signals`]). SQLite has one process.
pub fn start_signals(jobs: &mut Jobs, state: &AppState) {
    if state.db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return;
    }
    state.signals.enable();
    let p = state.pipeline.clone();
    jobs.spawn_service("signals_out", async move {
        loop {
            let started = tokio::time::Instant::now();
            if let Err(e) = p.publish_signals().await {
                e.log();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            tokio::time::sleep_until(started + pipeline::signals::PACE).await;
        }
    });
    let url = state
        .settings
        .db_listen_url
        .clone()
        .unwrap_or_else(|| state.settings.database_url.clone());
    jobs.spawn_service("signals_in", listen(state.clone(), url));
    // Instances hear of each other now and then, so each knows whether anyone else listens.
    let signals = state.signals.clone();
    jobs.spawn_service("signals_here", async move {
        loop {
            tokio::time::sleep(pipeline::signals::HERE_EVERY).await;
            signals.send([pipeline::signals::Signal::Here]);
        }
    });
}

/// Listens on one direct connection (LISTEN cannot go through a pooler in transaction mode),
/// reconnecting after a loss; whatever may have been missed meanwhile is forgotten.
async fn listen(st: AppState, url: String) {
    use pipeline::signals::{CHANNEL, Signal, decode};
    use sea_orm::sqlx::postgres::PgListener;
    // Retries back off to half a minute, so a database that is down fills no log.
    let mut wait = Duration::from_secs(1);
    loop {
        let connected = match PgListener::connect(&url).await {
            Ok(mut l) => l.listen(CHANNEL).await.map(|_| l),
            Err(e) => Err(e),
        };
        let mut listener = match connected {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?wait, "cannot listen for other instances' signals");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        wait = Duration::from_secs(1);
        st.forget_everything();
        st.signals.send([Signal::Hello]);
        metrics::gauge!("porteiro_signals_listening").set(1.0);
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    let Some(signals) = decode(&st.instance, n.payload()) else {
                        continue;
                    };
                    st.signals.heard_a_peer();
                    if signals.contains(&Signal::Hello) {
                        st.signals.send([Signal::Here]);
                    }
                    metrics::counter!("porteiro_signals_received_total").increment(signals.len() as u64);
                    st.apply_signals(&signals);
                    for s in &signals {
                        if let Signal::Integration { app } = s {
                            st.hotmart.forget(*app).await;
                        }
                    }
                }
                // The connection dropped and was made again: signals may have been missed.
                Ok(None) => st.forget_everything(),
                Err(e) => {
                    tracing::warn!(error = %e, "lost the connection other instances' signals come on");
                    break;
                }
            }
        }
        metrics::gauge!("porteiro_signals_listening").set(0.0);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

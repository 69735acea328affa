//! Every background loop of the process, started, named and stopped in one place, and the stop
//! signals of the reconciliation runs it executes.
//!
//! A loop is a name and a tick. The registry runs the tick on its schedule (and when woken),
//! records when each one last ran and how it ended (`porteiro_job_last_run_timestamp_seconds`,
//! `porteiro_job_runs_total` in `/metrics`), and on [`Jobs::stop`] tells every loop to stop and
//! waits for it: a tick in progress finishes first.
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::AppResult;

/// One tick's future.
pub type Tick = Pin<Box<dyn Future<Output = AppResult<()>> + Send>>;

enum Handle {
    Task(tokio::task::JoinHandle<()>),
    Thread(std::thread::JoinHandle<()>),
}

/// The loops this process runs.
pub struct Jobs {
    stop: watch::Sender<bool>,
    running: Vec<(&'static str, Handle)>,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            stop: watch::channel(false).0,
            running: Vec::new(),
        }
    }
}

/// When a loop runs its tick.
#[derive(Clone)]
pub struct Every {
    pub period: Duration,
    /// Runs sooner when notified (the worker after a webhook, the dispatcher after a commit).
    pub wake: Option<Arc<Notify>>,
    /// The first tick waits a period (a scheduler) rather than running at once (a queue).
    pub delay_first: bool,
}

impl Every {
    pub fn period(period: Duration) -> Self {
        Every {
            period,
            wake: None,
            delay_first: false,
        }
    }
    pub fn woken_by(mut self, wake: Arc<Notify>) -> Self {
        self.wake = Some(wake);
        self
    }
    pub fn after_a_period(mut self) -> Self {
        self.delay_first = true;
        self
    }
}

impl Jobs {
    /// A receiver that turns `true` when the jobs are told to stop (for the HTTP server too).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Runs `tick` on the current runtime until stop.
    pub fn spawn<F>(&mut self, name: &'static str, every: Every, tick: F)
    where
        F: FnMut() -> Tick + Send + 'static,
    {
        let stop = self.stopping();
        self.running
            .push((name, Handle::Task(tokio::spawn(run(name, every, tick, stop)))));
    }

    /// Runs `tick` on a thread and runtime of its own (the worker: each event is a chain of
    /// database round trips, and on the server's runtime every one of them waited its turn
    /// behind every HTTP request's task; on its own thread it gets its share of the CPU from the
    /// OS instead).
    pub fn spawn_thread<F>(&mut self, name: &'static str, every: Every, tick: F) -> std::io::Result<()>
    where
        F: FnMut() -> Tick + Send + 'static,
    {
        let stop = self.stopping();
        let handle = std::thread::Builder::new()
            .name(format!("porteiro-{name}"))
            .spawn(
                move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt.block_on(run(name, every, tick, stop)),
                    Err(e) => tracing::error!(job = name, error = %e, "cannot start the job's runtime"),
                },
            )?;
        self.running.push((name, Handle::Thread(handle)));
        Ok(())
    }

    /// Runs `service` (a loop that never ends by itself: a listener) until stop, when it is
    /// dropped wherever it waits.
    pub fn spawn_service<F>(&mut self, name: &'static str, service: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut stop = self.stopping();
        self.running.push((
            name,
            Handle::Task(tokio::spawn(async move {
                tokio::select! {
                    _ = service => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            })),
        ));
    }

    /// The names of the loops started, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.running.iter().map(|(n, _)| *n).collect()
    }

    /// Tells every loop to stop and waits until each has.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for (name, h) in self.running {
            let done = match h {
                Handle::Task(t) => t.await.is_ok(),
                Handle::Thread(t) => tokio::task::spawn_blocking(move || t.join().is_ok())
                    .await
                    .unwrap_or(false),
            };
            if !done {
                tracing::warn!(job = name, "the job ended in a panic");
            }
        }
    }
}

async fn run<F>(name: &'static str, every: Every, mut tick: F, mut stop: watch::Receiver<bool>)
where
    F: FnMut() -> Tick,
{
    let wake = every.wake.unwrap_or_default();
    let mut first = !every.delay_first;
    loop {
        if !first {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(every.period) => {}
                _ = stop.changed() => {}
            }
        }
        first = false;
        if *stop.borrow() {
            return;
        }
        let result = tick().await;
        ran(name, result.is_ok());
        if let Err(e) = result {
            e.log();
            tracing::warn!(job = name, "the job's round failed; the next round retries");
        }
    }
}

/// Records one round of a job for `/metrics`.
pub fn ran(name: &'static str, ok: bool) {
    let now = chrono::Utc::now();
    metrics::gauge!("porteiro_job_last_run_timestamp_seconds", "job" => name)
        .set(now.timestamp_millis() as f64 / 1000.0);
    metrics::counter!("porteiro_job_runs_total", "job" => name, "result" => if ok { "ok" } else { "error" })
        .increment(1);
}

/// Why a reconciliation run stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// An admin cancelled it.
    Cancelled,
    /// The service is shutting down.
    Shutdown,
}

/// The stop signals of the reconciliation runs this process executes.
#[derive(Default)]
pub struct Runs(Mutex<HashMap<i32, watch::Sender<Option<Stop>>>>);

impl Runs {
    pub fn register(&self, id: i32) -> watch::Receiver<Option<Stop>> {
        let (tx, rx) = watch::channel(None);
        self.lock().insert(id, tx);
        rx
    }

    pub fn forget(&self, id: i32) {
        self.lock().remove(&id);
    }

    /// Signals one run; false when this process does not execute it.
    pub fn stop(&self, id: i32, why: Stop) -> bool {
        match self.lock().get(&id) {
            Some(tx) => tx.send(Some(why)).is_ok(),
            None => false,
        }
    }

    /// Signals every run (shutdown); they finish as `cancelled`.
    pub fn stop_all(&self) -> usize {
        let runs = self.lock();
        for tx in runs.values() {
            let _ = tx.send(Some(Stop::Shutdown));
        }
        runs.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, watch::Sender<Option<Stop>>>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_failing_round_does_not_end_its_loop_and_stop_waits_for_the_round_in_hand() {
        let rounds = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let mut jobs = Jobs::default();
        let (r, f) = (rounds.clone(), finished.clone());
        jobs.spawn("test_flaky", Every::period(Duration::from_millis(10)), move || {
            let (r, f) = (r.clone(), f.clone());
            Box::pin(async move {
                let n = r.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                f.fetch_add(1, Ordering::SeqCst);
                if n % 2 == 0 {
                    Err(crate::AppError::bad("every other round fails"))
                } else {
                    Ok(())
                }
            })
        });
        while rounds.load(Ordering::SeqCst) < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        jobs.stop().await;
        // Every round that began also finished: stop waited for it.
        assert_eq!(rounds.load(Ordering::SeqCst), finished.load(Ordering::SeqCst));
        let after = rounds.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), after, "no round after stop");
    }
}

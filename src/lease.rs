//! Fleet-wide jobs: several instances on one database, and each scheduled job runs once per
//! period, on one of them at a time.
//!
//! A job's row in `job_lease` says who holds it and until when, and when it last ran. A round is
//! run by whoever claims it: the holder (renewing), or anyone once the lease has passed (its
//! holder died or stopped), and only when the period since the last run is over. The claim is one
//! conditional `UPDATE`, so two instances can never both win it. While a round runs its lease is
//! renewed, so a long round is never taken over; a holder killed mid-round is taken over once
//! its lease has passed, at the others' next look. The holder keeps the lease between rounds (the dispatcher's sends outlive its
//! round), and gives it back when it stops.
//!
//! Times are the instances' clocks: they must agree (NTP) to well within a lease.
//!
//! Only on PostgreSQL: a SQLite database has one process, whose jobs simply run (a lease write
//! there would also queue behind the one write lock that ingest and the worker take turns at).
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use entity::job_lease as row;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, Set};

use crate::AppResult;
use crate::jobs::Tick;

/// This instance's identity among those sharing the database, and its leases.
#[derive(Clone)]
pub struct Fleet {
    pub db: DatabaseConnection,
    /// Unique per process: host, pid and a random part.
    pub me: Arc<str>,
    pub lease: Duration,
    /// Whether instances may share the database (PostgreSQL).
    shared: bool,
    /// Jobs held with no period, and until when this process knows it holds them: a round
    /// within the first half of the lease needs no write (the dispatcher runs a round per
    /// access change). Without sharing (SQLite): when each job last ran.
    held: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
    /// Jobs with no period another instance holds, and when to ask again: the dispatcher of an
    /// instance that does not hold it is woken by every access change too.
    elsewhere: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
    /// Names whose row is known to exist.
    known: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// What a job gets from [`Fleet::claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This instance runs the round.
    Run,
    /// Another instance holds the job, or the period is not over.
    Skip,
}

impl Fleet {
    pub fn new(db: DatabaseConnection, me: Arc<str>, lease: Duration) -> Self {
        Fleet {
            shared: db.get_database_backend() == sea_orm::DbBackend::Postgres,
            db,
            me,
            lease,
            held: Arc::default(),
            elsewhere: Arc::default(),
            known: Arc::default(),
        }
    }

    fn until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + TimeDelta::from_std(self.lease).unwrap_or(TimeDelta::seconds(15))
    }

    /// Claims one round of `name`, due `period` after its last run (zero: every round).
    pub async fn claim(&self, name: &str, period: Duration) -> AppResult<Claim> {
        if !self.shared {
            // One process: only the period, kept in memory (a restart may run a round early).
            let mut last = lock(&self.held);
            let now = std::time::Instant::now();
            if last.get(name).is_some_and(|at| now.duration_since(*at) < period) {
                return Ok(Claim::Skip);
            }
            last.insert(name.to_string(), now);
            return Ok(Claim::Run);
        }
        if period.is_zero()
            && lock(&self.held)
                .get(name)
                .is_some_and(|until| *until > std::time::Instant::now() + self.lease / 2)
        {
            return Ok(Claim::Run);
        }
        if period.is_zero()
            && lock(&self.elsewhere)
                .get(name)
                .is_some_and(|ask| *ask > std::time::Instant::now())
        {
            return Ok(Claim::Skip);
        }
        let (started, now) = (std::time::Instant::now(), Utc::now());
        if !lock(&self.known).contains(name) {
            // The row exists from the first claim on, whoever made it.
            row::Entity::insert(row::ActiveModel {
                name: Set(name.to_string()),
                holder: Set(None),
                lease_until: Set(None),
                last_run_at: Set(None),
                runs: Set(0),
            })
            .on_conflict_do_nothing_on([row::Column::Name])
            .exec(&self.db)
            .await?;
            lock(&self.known).insert(name.to_string());
        }
        let due_from = now - TimeDelta::from_std(period).unwrap_or(TimeDelta::zero());
        let won = row::Entity::update_many()
            .col_expr(row::Column::Holder, Expr::value(self.me.to_string()))
            .col_expr(row::Column::LeaseUntil, Expr::value(self.until(now)))
            .col_expr(row::Column::LastRunAt, Expr::value(now))
            .filter(row::Column::Name.eq(name))
            .filter(
                Condition::any()
                    .add(row::Column::Holder.eq(self.me.to_string()))
                    .add(row::Column::LeaseUntil.is_null())
                    .add(row::Column::LeaseUntil.lt(now)),
            )
            .filter(
                Condition::any()
                    .add(row::Column::LastRunAt.is_null())
                    .add(row::Column::LastRunAt.lte(due_from)),
            )
            .exec(&self.db)
            .await?;
        let mut held = lock(&self.held);
        if won.rows_affected == 1 {
            // Counted from before the write: the database's lease ends later than this.
            held.insert(name.to_string(), started + self.lease);
            Ok(Claim::Run)
        } else {
            held.remove(name);
            if period.is_zero() {
                // Its holder's death is noticed within a lease and a quarter.
                lock(&self.elsewhere).insert(name.to_string(), started + self.lease / 4);
            }
            Ok(Claim::Skip)
        }
    }

    /// Pushes the lease of a job this instance holds further (while its round runs).
    pub async fn renew(&self, name: &str) -> AppResult<bool> {
        if !self.shared {
            return Ok(true);
        }
        let started = std::time::Instant::now();
        let r = row::Entity::update_many()
            .col_expr(row::Column::LeaseUntil, Expr::value(self.until(Utc::now())))
            .filter(row::Column::Name.eq(name))
            .filter(row::Column::Holder.eq(self.me.to_string()))
            .exec(&self.db)
            .await?;
        let mut held = lock(&self.held);
        if r.rows_affected == 1 {
            held.insert(name.to_string(), started + self.lease);
        } else {
            held.remove(name);
        }
        Ok(r.rows_affected == 1)
    }

    /// Counts a round that ran to its end (what `/metrics` shows per process, for the fleet).
    pub async fn ran(&self, name: &str) -> AppResult<()> {
        if !self.shared {
            return Ok(());
        }
        row::Entity::update_many()
            .col_expr(row::Column::Runs, Expr::col(row::Column::Runs).add(1))
            .filter(row::Column::Name.eq(name))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Gives back every lease this instance holds (a stop): the others take the jobs over at
    /// their next round instead of after a lease.
    pub async fn release_all(&self) -> AppResult<u64> {
        lock(&self.held).clear();
        if !self.shared {
            return Ok(0);
        }
        let r = row::Entity::update_many()
            .col_expr(row::Column::Holder, Expr::value(Option::<String>::None))
            .col_expr(row::Column::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(row::Column::Holder.eq(self.me.to_string()))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected)
    }

    /// Wraps a job's round: it runs only when claimed, with its lease renewed while it runs.
    pub fn once_per(
        &self,
        name: &'static str,
        period: Duration,
        mut tick: impl FnMut() -> Tick + Send + 'static,
    ) -> impl FnMut() -> Tick + Send + 'static {
        let fleet = self.clone();
        move || {
            let fleet = fleet.clone();
            let round = tick();
            Box::pin(async move {
                if fleet.claim(name, period).await? == Claim::Skip {
                    return Ok(());
                }
                let renewing = async {
                    loop {
                        tokio::time::sleep(fleet.lease / 3).await;
                        if let Err(e) = fleet.renew(name).await {
                            e.log();
                        }
                    }
                };
                let result = tokio::select! {
                    r = round => r,
                    _ = renewing => Ok(()),
                };
                // Rounds of a periodic job are counted for the fleet (a job without a period,
                // the dispatcher, runs a round per wake: counting it would cost a write each).
                if !period.is_zero() {
                    fleet.ran(name).await?;
                }
                result
            })
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A name for this process among the instances: host, pid and a random part (a pid is reused
/// after a restart, and containers all have pid 1).
pub fn instance_name() -> Arc<str> {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &random[..8]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_process_on_sqlite_keeps_each_jobs_period_in_memory() {
        let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        let fleet = Fleet::new(db, instance_name(), Duration::from_secs(15));
        let hour = Duration::from_secs(3600);
        assert_eq!(fleet.claim("prune", hour).await.unwrap(), Claim::Run);
        assert_eq!(fleet.claim("prune", hour).await.unwrap(), Claim::Skip);
        // A job without a period runs every round.
        for _ in 0..3 {
            assert_eq!(fleet.claim("dispatch", Duration::ZERO).await.unwrap(), Claim::Run);
        }
        // No table is needed, or written: SQLite has one process.
        assert_eq!(fleet.release_all().await.unwrap(), 0);
    }
}

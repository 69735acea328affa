//! Fleet-wide jobs: several instances on one database, and each scheduled job runs once per
//! period, on one of them at a time.
//!
//! A job's row in `job_lease` says who holds it and until when, and when it last ran. A round is
//! run by whoever claims it: the holder (renewing), or anyone once the lease has passed (its
//! holder died or stopped), and only when the period since the last run is over. The claim is one
//! conditional `UPDATE`, so two instances can never both win it. While a round runs its lease is
//! renewed, so a long round is never taken over; a holder killed mid-round is taken over within
//! one lease. The holder keeps the lease between rounds (the dispatcher's sends outlive its
//! round), and gives it back when it stops.
//!
//! Times are the instances' clocks: they must agree (NTP) to well within a lease.
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
        Fleet { db, me, lease }
    }

    fn until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + TimeDelta::from_std(self.lease).unwrap_or(TimeDelta::seconds(15))
    }

    /// Claims one round of `name`, due `period` after its last run (zero: every round).
    pub async fn claim(&self, name: &str, period: Duration) -> AppResult<Claim> {
        let now = Utc::now();
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
        Ok(if won.rows_affected == 1 {
            Claim::Run
        } else {
            Claim::Skip
        })
    }

    /// Pushes the lease of a job this instance holds further (while its round runs).
    pub async fn renew(&self, name: &str) -> AppResult<bool> {
        let r = row::Entity::update_many()
            .col_expr(row::Column::LeaseUntil, Expr::value(self.until(Utc::now())))
            .filter(row::Column::Name.eq(name))
            .filter(row::Column::Holder.eq(self.me.to_string()))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Counts a round that ran to its end (what `/metrics` shows per process, for the fleet).
    pub async fn ran(&self, name: &str) -> AppResult<()> {
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
                fleet.ran(name).await?;
                result
            })
        }
    }
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

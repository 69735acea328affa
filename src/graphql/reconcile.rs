use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::Utc;

use super::{GqlResult, caller, gql};
use crate::services::reconcile::{self as svc, DriftKind};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum DriftType {
    /// Paid, but holds no access here.
    MissingAccess,
    /// Holds access Hotmart says was refunded, charged back or cancelled.
    UnexpectedAccess,
    /// Both agree on access, not on until when.
    ExpiryMismatch,
}

#[derive(SimpleObject)]
pub struct Drift {
    pub kind: DriftType,
    pub email: String,
    pub source: String,
    pub target: String,
    pub before_status: Option<String>,
    pub before_expires_at: Option<super::DateTime>,
    pub after_status: String,
    pub after_expires_at: Option<super::DateTime>,
}

#[derive(SimpleObject)]
pub struct ReconciliationReport {
    pub sales_seen: i32,
    pub subscriptions_seen: i32,
    pub events_found: i32,
    pub events_new: i32,
    pub events_known: i32,
    pub unmapped_products: Vec<String>,
    /// Subscription charges whose subscription Hotmart did not return; left out, never treated
    /// as one-off sales.
    pub unresolved_subscription_sales: Vec<String>,
    pub drift: Vec<Drift>,
    pub applied: bool,
}

#[derive(SimpleObject)]
pub struct ReconciliationRun {
    pub id: ID,
    /// manual, cli or schedule.
    pub trigger: String,
    pub since: super::DateTime,
    pub until: super::DateTime,
    pub dry_run: bool,
    /// running, succeeded, failed or cancelled.
    pub status: String,
    pub error: Option<String>,
    /// What a job is doing: starting, sales, subscriptions, subscription charges, comparing,
    /// storing, applying; `done` once it succeeded.
    pub stage: Option<String>,
    /// Items handled in the current stage.
    pub progress: i32,
    /// The job's last sign of life (every few seconds while it runs).
    pub heartbeat_at: Option<super::DateTime>,
    pub report: Option<ReconciliationReport>,
    pub started_at: super::DateTime,
    pub finished_at: Option<super::DateTime>,
}

impl From<entity::reconciliation_run::Model> for ReconciliationRun {
    fn from(r: entity::reconciliation_run::Model) -> Self {
        let report = svc::report_of(&r).map(|rep| ReconciliationReport {
            sales_seen: rep.sales_seen as i32,
            subscriptions_seen: rep.subscriptions_seen as i32,
            events_found: rep.events_found as i32,
            events_new: rep.events_new as i32,
            events_known: rep.events_known as i32,
            unmapped_products: rep.unmapped_products,
            unresolved_subscription_sales: rep.unresolved_subscription_sales,
            applied: rep.applied,
            drift: rep
                .drift
                .into_iter()
                .map(|d| Drift {
                    kind: match d.kind {
                        DriftKind::MissingAccess => DriftType::MissingAccess,
                        DriftKind::UnexpectedAccess => DriftType::UnexpectedAccess,
                        DriftKind::ExpiryMismatch => DriftType::ExpiryMismatch,
                    },
                    email: d.email,
                    source: d.source,
                    target: d.target,
                    before_status: d.before_status,
                    before_expires_at: d.before_expires_at.map(Into::into),
                    after_status: d.after_status,
                    after_expires_at: d.after_expires_at.map(Into::into),
                })
                .collect(),
        });
        ReconciliationRun {
            id: ID(r.id.to_string()),
            trigger: r.trigger,
            since: r.since.into(),
            until: r.until.into(),
            dry_run: r.dry_run,
            status: r.status.as_str().into(),
            error: r.error,
            stage: r.stage.map(|s| s.as_str().into()),
            progress: r.progress.clamp(0, i64::from(i32::MAX)) as i32,
            heartbeat_at: r.heartbeat_at.map(Into::into),
            report,
            started_at: r.started_at.into(),
            finished_at: r.finished_at.map(Into::into),
        }
    }
}

#[derive(Default)]
pub struct ReconcileQuery;

#[Object]
impl ReconcileQuery {
    /// The latest reconciliation runs, newest first.
    async fn reconciliation_runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
    ) -> GqlResult<Vec<ReconciliationRun>> {
        let (state, who) = caller(ctx)?;
        let first = first.clamp(1, 200) as u64;
        Ok(svc::runs(&state.db, who.app_id, first)
            .await
            .map_err(gql)?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}

#[derive(Default)]
pub struct ReconcileMutation;

#[Object]
impl ReconcileMutation {
    /// Pulls sales and subscriptions for the window from Hotmart and heals what webhooks missed.
    /// `dryRun` (the default) only reports the drift. The run is a background job: this returns
    /// it `running` (follow it in `reconciliationRuns`), or, with `wait`, once it ended (up to
    /// 60 s; it goes on running if the request goes away). Backfilling a fresh install is the
    /// same call with a wide window.
    async fn reconcile(
        &self,
        ctx: &Context<'_>,
        since: super::DateTime,
        until: Option<super::DateTime>,
        #[graphql(default = true)] dry_run: bool,
        #[graphql(default = false)] wait: bool,
    ) -> GqlResult<ReconciliationRun> {
        let (state, who) = caller(ctx)?;
        // Even a dry run calls Hotmart with the app's credentials: an admin's decision.
        who.require_admin().map_err(gql)?;
        let req = svc::Request {
            since: since.0,
            until: until.map_or_else(Utc::now, |t| t.0),
            dry_run,
            trigger: "manual",
            actor: who.actor(),
        };
        let run = svc::start(state, who.app_id, req).await.map_err(gql)?;
        let run = if wait {
            svc::wait(state, who.app_id, run.id, std::time::Duration::from_secs(60))
                .await
                .map_err(gql)?
        } else {
            run
        };
        Ok(run.into())
    }

    /// Stops a running reconciliation; it ends as `cancelled` (what it applied stays).
    async fn cancel_reconciliation(&self, ctx: &Context<'_>, id: ID) -> GqlResult<ReconciliationRun> {
        let (state, who) = caller(ctx)?;
        let id = super::parse_id(&id)?;
        Ok(svc::cancel(state, who, id).await.map_err(gql)?.into())
    }
}

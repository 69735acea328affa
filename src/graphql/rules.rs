use async_graphql::{Context, Object, SimpleObject};

use super::{GqlResult, caller, gql};
use crate::services::backtests;
use crate::services::backtests as bt;
use crate::services::rules as svc;

#[derive(SimpleObject)]
pub struct RuleVersion {
    pub version: i32,
    pub active: bool,
    /// Decided beside the active version on live events, never applied.
    pub shadow: bool,
    /// Its test cases (JSON), run when it was saved.
    pub cases: Option<String>,
    pub source: String,
    pub created_by: String,
    pub created_at: super::DateTime,
}

/// The script that decides one event type, with its history. Version 0 is the shipped default.
#[derive(SimpleObject)]
pub struct Rule {
    pub event_type: String,
    pub active_version: i32,
    pub source: String,
    pub is_default: bool,
    pub default_source: String,
    pub versions: Vec<RuleVersion>,
}

/// How a version decided in shadow compared with the active one on live events.
#[derive(SimpleObject)]
pub struct RuleShadowRecord {
    pub version: i32,
    /// In shadow now (earlier ones keep their record).
    pub current: bool,
    pub agreed: i64,
    pub disagreed: i64,
    /// The latest disagreements kept (the first 100 are kept), newest first.
    pub samples: Vec<RuleShadowSample>,
}

#[derive(SimpleObject)]
pub struct RuleShadowSample {
    /// The stored event (`webhookEvent(id)`).
    pub webhook_event_id: i32,
    /// What the active version decided, and what the shadow would have.
    pub active: String,
    pub shadow: String,
    pub at: super::DateTime,
}

/// A backtest of one rule version: what activating it would change, computed without writing.
#[derive(SimpleObject)]
pub struct RuleBacktest {
    pub id: i32,
    pub event_type: String,
    pub version: i32,
    pub since: Option<super::DateTime>,
    pub until: Option<super::DateTime>,
    /// running, succeeded, cancelled, failed
    pub status: String,
    /// counting, evaluating, done
    pub stage: Option<String>,
    /// Events evaluated so far, of `total`.
    pub progress: i64,
    pub total: i64,
    pub error: Option<String>,
    pub created_by: String,
    pub started_at: super::DateTime,
    pub finished_at: Option<super::DateTime>,
    pub report: Option<BacktestReport>,
}

#[derive(SimpleObject)]
pub struct BacktestReport {
    pub events_evaluated: u64,
    pub decisions_changed: u64,
    /// Changed decisions by kind (grant, revoke, suspend, ignore; unmapped or failed when no
    /// decision is reached).
    pub decision_changes: Vec<BacktestDecisionCount>,
    pub sources_touched: u64,
    pub gained: u64,
    pub lost: u64,
    pub suspended: u64,
    pub end_moved: u64,
    pub changed: u64,
    /// Every source whose access would change (up to 10,000; `truncated` says when more).
    pub changes: Vec<BacktestChange>,
    pub truncated: bool,
}

#[derive(SimpleObject)]
pub struct BacktestDecisionCount {
    pub from: String,
    pub to: String,
    pub count: u64,
}

#[derive(async_graphql::Enum, Copy, Clone, Eq, PartialEq)]
pub enum BacktestChangeKind {
    /// Has no active access now, would have it.
    Gained,
    /// Has active access now, would not.
    Lost,
    /// Would be suspended.
    Suspended,
    /// Active either way; the end moves.
    EndMoved,
    /// Anything else (a revoked row that would read expired, another holder…).
    Changed,
}

#[derive(SimpleObject)]
pub struct BacktestAccess {
    pub email: String,
    pub target_kind: String,
    pub target_id: i32,
    pub status: super::buyers::AccessStatus,
    pub expires_at: Option<super::DateTime>,
}

#[derive(SimpleObject)]
pub struct BacktestEvent {
    /// The stored event (`webhookEvent(id)`).
    pub id: i32,
    pub event_id: String,
    pub event_type: String,
    pub received_at: super::DateTime,
    /// Its decision as stored, and as the version tried decides it.
    pub before: String,
    pub after: String,
}

#[derive(SimpleObject)]
pub struct BacktestChange {
    pub source: String,
    pub kind: BacktestChangeKind,
    pub before: Option<BacktestAccess>,
    pub after: Option<BacktestAccess>,
    pub end_moved_by_seconds: Option<i64>,
    pub events: Vec<BacktestEvent>,
}

fn access(a: Option<bt::AccessState>) -> Option<BacktestAccess> {
    a.map(|a| BacktestAccess {
        email: a.email,
        target_kind: a.target_kind,
        target_id: a.target_id,
        status: a.status.into(),
        expires_at: a.expires_at.map(Into::into),
    })
}

impl From<bt::Report> for BacktestReport {
    fn from(r: bt::Report) -> Self {
        BacktestReport {
            events_evaluated: r.events_evaluated,
            decisions_changed: r.decisions_changed,
            decision_changes: r
                .decision_changes
                .into_iter()
                .map(|c| BacktestDecisionCount {
                    from: c.from,
                    to: c.to,
                    count: c.count,
                })
                .collect(),
            sources_touched: r.sources_touched,
            gained: r.gained,
            lost: r.lost,
            suspended: r.suspended,
            end_moved: r.end_moved,
            changed: r.changed,
            changes: r
                .changes
                .into_iter()
                .map(|c| BacktestChange {
                    source: c.source,
                    kind: match c.kind {
                        bt::ChangeKind::Gained => BacktestChangeKind::Gained,
                        bt::ChangeKind::Lost => BacktestChangeKind::Lost,
                        bt::ChangeKind::Suspended => BacktestChangeKind::Suspended,
                        bt::ChangeKind::EndMoved => BacktestChangeKind::EndMoved,
                        bt::ChangeKind::Changed => BacktestChangeKind::Changed,
                    },
                    before: access(c.before),
                    after: access(c.after),
                    end_moved_by_seconds: c.end_moved_by_seconds,
                    events: c
                        .events
                        .into_iter()
                        .map(|e| BacktestEvent {
                            id: e.id,
                            event_id: e.event_id,
                            event_type: e.event_type,
                            received_at: e.received_at.into(),
                            before: e.before,
                            after: e.after,
                        })
                        .collect(),
                })
                .collect(),
            truncated: r.truncated,
        }
    }
}

impl From<entity::rule_backtest::Model> for RuleBacktest {
    fn from(r: entity::rule_backtest::Model) -> Self {
        let report = backtests::report_of(&r).map(Into::into);
        RuleBacktest {
            id: r.id,
            event_type: r.event_type,
            version: r.version,
            since: r.since.map(Into::into),
            until: r.until.map(Into::into),
            status: r.status.as_str().to_string(),
            stage: r.stage,
            progress: r.progress,
            total: r.total,
            error: r.error,
            created_by: r.created_by,
            started_at: r.started_at.into(),
            finished_at: r.finished_at.map(Into::into),
            report,
        }
    }
}

#[derive(Default)]
pub struct RuleQuery;

#[Object]
impl RuleQuery {
    /// What the versions put in shadow for an event type decided beside the active one.
    async fn rule_shadow(&self, ctx: &Context<'_>, event_type: String) -> GqlResult<Vec<RuleShadowRecord>> {
        let (state, who) = caller(ctx)?;
        svc::check_event_type(&event_type).map_err(gql)?;
        let records = svc::shadow_records(&state.db, who.app_id, &event_type)
            .await
            .map_err(gql)?;
        Ok(records
            .into_iter()
            .map(|r| RuleShadowRecord {
                version: r.version,
                current: r.current,
                agreed: r.agreed,
                disagreed: r.disagreed,
                samples: r
                    .samples
                    .into_iter()
                    .map(|s| RuleShadowSample {
                        webhook_event_id: s.webhook_event_id,
                        active: s.active,
                        shadow: s.shadow,
                        at: s.created_at.into(),
                    })
                    .collect(),
            })
            .collect())
    }

    /// One backtest, with its report once it succeeded.
    async fn rule_backtest(&self, ctx: &Context<'_>, id: i32) -> GqlResult<RuleBacktest> {
        let (state, who) = caller(ctx)?;
        Ok(backtests::get(&state.db, who.app_id, id).await.map_err(gql)?.into())
    }

    /// Backtests of an event type's rule (of one version, when given), newest first.
    async fn rule_backtests(
        &self,
        ctx: &Context<'_>,
        event_type: String,
        version: Option<i32>,
        #[graphql(default = 20)] first: u64,
    ) -> GqlResult<Vec<RuleBacktest>> {
        let (state, who) = caller(ctx)?;
        svc::check_event_type(&event_type).map_err(gql)?;
        let rows = backtests::list(&state.db, who.app_id, &event_type, version, first.min(100))
            .await
            .map_err(gql)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Current and past versions per event type.
    async fn rules(&self, ctx: &Context<'_>, event_type: Option<String>) -> GqlResult<Vec<Rule>> {
        let (state, who) = caller(ctx)?;
        if let Some(t) = &event_type {
            svc::check_event_type(t).map_err(gql)?;
        }
        let mut out = Vec::new();
        for t in crate::rules::scripted_event_types().filter(|t| event_type.as_deref().is_none_or(|e| e == *t)) {
            let active = svc::active(&state.db, who.app_id, t).await.map_err(gql)?;
            let versions = svc::versions(&state.db, who.app_id, Some(t)).await.map_err(gql)?;
            let (active_version, source) = active.map(|a| (a.version, a.source)).unwrap_or_default();
            out.push(Rule {
                event_type: t.to_string(),
                is_default: active_version == 0,
                active_version,
                source,
                default_source: crate::rules::default_script(t).unwrap_or_default().to_string(),
                versions: versions
                    .into_iter()
                    .map(|v| RuleVersion {
                        version: v.version,
                        active: v.active,
                        shadow: v.shadow,
                        cases: v.cases,
                        source: v.source,
                        created_by: v.created_by,
                        created_at: v.created_at.into(),
                    })
                    .collect(),
            });
        }
        Ok(out)
    }
}

#[derive(Default)]
pub struct RuleMutation;

#[Object]
impl RuleMutation {
    /// Compiles, checks `decide(event, target, access)`, dry-runs the shipped fixtures, then saves
    /// and activates a new version. A broken script is refused with its line and column.
    ///
    /// `activate: false` saves a draft: nothing changes until `activateRuleVersion`; try it
    /// first with `startRuleBacktest`.
    async fn save_rule(
        &self,
        ctx: &Context<'_>,
        event_type: String,
        source: String,
        #[graphql(default = true)] activate: bool,
        #[graphql(
            desc = "Test cases, a JSON array as in `porteiro rules test` files: `[{\"name\": …, \"payload\": {…} or \"eventId\": 12, \"target\": {\"kind\": \"plan\", \"periodDays\": 30, \"graceDays\": 3}, \"access\": {\"status\": \"ACTIVE\", \"expiresAt\": …}, \"expect\": {\"action\": \"grant\", \"at\": …}}]`. A version whose cases fail is refused, each failure named."
        )]
        cases: Option<String>,
    ) -> GqlResult<RuleVersion> {
        let (state, who) = caller(ctx)?;
        let v = svc::save(state, who, &event_type, &source, activate, cases.as_deref())
            .await
            .map_err(gql)?;
        Ok(RuleVersion {
            version: v.version,
            active: v.active,
            shadow: v.shadow,
            cases: v.cases,
            source: v.source,
            created_by: v.created_by,
            created_at: v.created_at.into(),
        })
    }

    /// Runs a saved version (a draft, the active one, an old one; 0 is the shipped default)
    /// over the stored events of its type, received in the window if one is given, writing
    /// nothing, and reports whose access activating it would change. A background job: the
    /// backtest comes back `running`; `ruleBacktest(id)` shows its progress and report.
    async fn start_rule_backtest(
        &self,
        ctx: &Context<'_>,
        event_type: String,
        version: i32,
        since: Option<super::DateTime>,
        until: Option<super::DateTime>,
    ) -> GqlResult<RuleBacktest> {
        let (state, who) = caller(ctx)?;
        let window = backtests::Window {
            since: since.map(|t| t.0),
            until: until.map(|t| t.0),
        };
        let r = backtests::start(state, who, &event_type, version, window)
            .await
            .map_err(gql)?;
        Ok(r.into())
    }

    /// Puts a saved version in shadow: on every live event of its type it is decided beside the
    /// active one, nothing applied, and `ruleShadow` counts where they disagree. `version: null`
    /// takes the shadow away. One version per event type at most.
    async fn set_rule_shadow(&self, ctx: &Context<'_>, event_type: String, version: Option<i32>) -> GqlResult<bool> {
        let (state, who) = caller(ctx)?;
        svc::set_shadow(state, who, &event_type, version).await.map_err(gql)?;
        Ok(true)
    }

    /// Activates the version in shadow (as `activateRuleVersion` does). Returns its version.
    async fn promote_rule_shadow(&self, ctx: &Context<'_>, event_type: String) -> GqlResult<i32> {
        let (state, who) = caller(ctx)?;
        Ok(svc::promote_shadow(state, who, &event_type).await.map_err(gql)?.version)
    }

    /// Stops a running backtest.
    async fn cancel_rule_backtest(&self, ctx: &Context<'_>, id: i32) -> GqlResult<RuleBacktest> {
        let (state, who) = caller(ctx)?;
        Ok(backtests::cancel(state, who, id).await.map_err(gql)?.into())
    }

    /// Makes a saved version active (a draft, or an old one: rollback), and decides the stored
    /// events of its type again. Version 0 is the shipped default.
    async fn activate_rule_version(&self, ctx: &Context<'_>, event_type: String, version: i32) -> GqlResult<i32> {
        let (state, who) = caller(ctx)?;
        Ok(svc::activate(state, who, &event_type, version)
            .await
            .map_err(gql)?
            .version)
    }
}

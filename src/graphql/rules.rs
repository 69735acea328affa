use async_graphql::{Context, Object, SimpleObject};

use super::{GqlResult, caller, gql};
use crate::services::rules as svc;

#[derive(SimpleObject)]
pub struct RuleVersion {
    pub version: i32,
    pub active: bool,
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

#[derive(Default)]
pub struct RuleQuery;

#[Object]
impl RuleQuery {
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
    async fn save_rule(&self, ctx: &Context<'_>, event_type: String, source: String) -> GqlResult<RuleVersion> {
        let (state, who) = caller(ctx)?;
        let v = svc::save(state, who, &event_type, &source).await.map_err(gql)?;
        Ok(RuleVersion {
            version: v.version,
            active: v.active,
            source: v.source,
            created_by: v.created_by,
            created_at: v.created_at.into(),
        })
    }

    /// Makes a saved version active again (rollback). Version 0 is the shipped default.
    async fn activate_rule_version(&self, ctx: &Context<'_>, event_type: String, version: i32) -> GqlResult<i32> {
        let (state, who) = caller(ctx)?;
        Ok(svc::activate(state, who, &event_type, version)
            .await
            .map_err(gql)?
            .version)
    }
}

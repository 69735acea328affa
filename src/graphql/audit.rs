use async_graphql::{Context, ID, Json, Object, SimpleObject};

use super::buyers::PageInfo;
use super::{GqlResult, caller, gql};
use crate::audit;
use crate::services::Page;

#[derive(SimpleObject)]
pub struct AuditEntry {
    pub id: ID,
    pub actor: String,
    pub action: String,
    /// `kind:id`, as stored.
    pub target: String,
    /// The target in names: who and which package or plan, the package's name, the event's type.
    pub subject: AuditSubject,
    pub before: Option<Json<serde_json::Value>>,
    pub after: Option<Json<serde_json::Value>>,
    pub reason: String,
    pub created_at: super::DateTime,
}

#[derive(SimpleObject)]
pub struct AuditSubject {
    /// entitlement, package, plan, buyer, webhook_event, webhook_events, rule, api_key,
    /// notification_endpoint, subscription, reconciliation_run, hotmart_integration.
    pub kind: String,
    /// What it is called: `e-mail — package or plan` for an entitlement, the name of a package,
    /// plan or key, the event type of an event or rule, `old → new` for an e-mail change.
    pub name: String,
}

#[derive(SimpleObject)]
pub struct AuditConnection {
    pub nodes: Vec<AuditEntry>,
    pub page_info: PageInfo,
}

fn json(s: Option<String>) -> Option<Json<serde_json::Value>> {
    s.and_then(|s| serde_json::from_str(&s).ok()).map(Json)
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// Newest first.
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        target: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<AuditConnection> {
        let (state, who) = caller(ctx)?;
        let page = Page::new(first, after.as_deref()).map_err(gql)?;
        let rows = audit::list(&state.db, who.app_id, target.as_deref(), page)
            .await
            .map_err(gql)?;
        let end_cursor = rows.items.last().map(|r| r.id.to_string());
        let subjects = audit::subjects(&state.db, who.app_id, &rows.items).await.map_err(gql)?;
        Ok(AuditConnection {
            nodes: rows
                .items
                .into_iter()
                .zip(subjects)
                .map(|(r, s)| AuditEntry {
                    id: ID(r.id.to_string()),
                    actor: r.actor,
                    action: r.action,
                    target: r.target,
                    subject: AuditSubject {
                        kind: s.kind,
                        name: s.name,
                    },
                    before: json(r.before),
                    after: json(r.after),
                    reason: r.reason,
                    created_at: r.created_at.into(),
                })
                .collect(),
            page_info: PageInfo {
                has_next_page: rows.has_next,
                end_cursor,
            },
        })
    }
}

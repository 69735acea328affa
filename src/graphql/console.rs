//! What an admin panel needs about itself: who is signed in, and the overview's counts.
use async_graphql::{Context, Object, SimpleObject};

use super::{GqlResult, caller, gql};
use crate::services::overview;

#[derive(SimpleObject)]
pub struct Me {
    /// The app's slug.
    pub app: String,
    /// admin or viewer.
    pub role: String,
    pub subject: String,
}

#[derive(SimpleObject)]
pub struct CountBucket {
    /// `YYYY-MM-DDTHH` (UTC) for hours, `YYYY-MM-DD` (UTC) for days.
    pub at: String,
    /// An event status, or a notification type.
    pub kind: String,
    pub count: i64,
}

#[derive(SimpleObject)]
pub struct Overview {
    /// Webhook events of the last 24 hours by hour received and status.
    pub events_per_hour: Vec<CountBucket>,
    /// access.granted, access.revoked and access.expired per hour (UTC) over 15 days: group
    /// them into the reader's own days (the console does).
    pub changes_per_hour: Vec<CountBucket>,
    /// The same per day, in UTC days: a change at 22:00 in São Paulo counts on the next day.
    #[graphql(deprecation = "UTC days; group changesPerHour into the reader's own days")]
    pub changes_per_day: Vec<CountBucket>,
    /// Events waiting for the worker.
    pub backlog: i64,
    /// Events that need an admin: failed (kept for review and replay) and unmapped.
    pub failed: i64,
    pub unmapped: i64,
    /// Every package and plan with its live holders, most held first. Kept by counters as
    /// access changes; an end that passes counts once the expiry timer notes it (seconds).
    pub holders: Vec<TargetHolders>,
    pub last_webhook_at: Option<super::DateTime>,
    pub generated_at: super::DateTime,
}

#[derive(SimpleObject)]
pub struct TargetHolders {
    pub target: super::buyers::AccessTarget,
    /// Buyers with access now.
    pub active: i64,
    /// Buyers whose access a dispute holds.
    pub suspended: i64,
}

fn buckets(b: Vec<overview::Bucket>) -> Vec<CountBucket> {
    b.into_iter()
        .map(|b| CountBucket {
            at: b.at,
            kind: b.kind,
            count: b.count,
        })
        .collect()
}

#[derive(Default)]
pub struct ConsoleQuery;

#[Object]
impl ConsoleQuery {
    /// Who this request is signed in as.
    async fn me(&self, ctx: &Context<'_>) -> GqlResult<Me> {
        let (_, who) = caller(ctx)?;
        Ok(Me {
            app: who.app_slug.clone(),
            role: who.role.as_str().into(),
            subject: who.subject.clone(),
        })
    }

    async fn overview(&self, ctx: &Context<'_>) -> GqlResult<Overview> {
        let (state, who) = caller(ctx)?;
        let now = chrono::Utc::now();
        let o = overview::of(&state.db, who.app_id, now).await.map_err(gql)?;
        let last = crate::services::integration::find(&state.db, who.app_id)
            .await
            .map_err(gql)?
            .and_then(|r| r.last_webhook_at);
        Ok(Overview {
            events_per_hour: buckets(o.events_per_hour),
            changes_per_day: buckets(o.changes_per_day),
            changes_per_hour: buckets(o.changes_per_hour),
            backlog: o.backlog,
            failed: o.failed,
            unmapped: o.unmapped,
            holders: o
                .holders
                .into_iter()
                .map(|h| TargetHolders {
                    target: super::buyers::AccessTarget {
                        kind: h.kind.into(),
                        id: async_graphql::ID(h.id.to_string()),
                        name: h.name,
                    },
                    active: h.active,
                    suspended: h.suspended,
                })
                .collect(),
            last_webhook_at: last.map(Into::into),
            generated_at: now.into(),
        })
    }
}

//! Business logic and transactions. Resolvers and handlers call one function here each.
pub mod api_keys;
pub mod app_access;
pub mod apps;
pub mod backtests;
pub mod buyers;
pub mod catalog;
pub mod changes;
pub mod console;
pub mod entitlements;
pub mod events;
pub mod holders;
pub mod hotmart_account;
pub mod integration;
pub mod notifications;
pub mod overview;
pub mod personal_data;
pub mod reconcile;
pub mod rules;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::audit;
use crate::auth::Principal;
use crate::db::WriteTxn;
pub use crate::db::{Page, Paged};
use crate::pipeline::access_cache::Changed;
use crate::pipeline::signals::Signal;
use crate::{AppResult, AppState};

/// An admin's change in progress: the admin role checked, its transaction open. Only
/// [`AdminWrite::commit`] makes it durable, and that takes the audit row and says what the
/// process must forget: a change cannot commit without its row, and the caches are dropped
/// after the commit, never before. Dropped uncommitted, it rolls back.
pub struct AdminWrite<'a> {
    state: &'a AppState,
    who: &'a Principal,
    txn: WriteTxn,
}

// Reads and writes of the change go through it as through its transaction.
crate::delegate_connection!(AdminWrite<'_>, txn);

/// One audit row: what was done to what, before and after.
pub struct Change {
    action: std::borrow::Cow<'static, str>,
    target: String,
    before: Option<Value>,
    after: Option<Value>,
    reason: String,
}

impl Change {
    pub fn new(action: impl Into<std::borrow::Cow<'static, str>>, target: impl Into<String>) -> Self {
        Change {
            action: action.into(),
            target: target.into(),
            before: None,
            after: None,
            reason: String::new(),
        }
    }
    pub fn before(mut self, v: Value) -> Self {
        self.before = Some(v);
        self
    }
    pub fn after(mut self, v: Value) -> Self {
        self.after = Some(v);
        self
    }
    pub fn reason(mut self, r: impl Into<String>) -> Self {
        self.reason = r.into();
        self
    }
}

/// What a committed change makes stale, or starts.
pub enum Then {
    /// Packages, plans or links: the worker's link cache and every buyer's cached access.
    Catalog,
    /// A rule saved or activated: the script cache; the worker retries what waited for it.
    Rules,
    /// The integration: its Hottok and API client.
    Integration,
    ApiKey(String),
    /// Access changed for these buyers: forget them and let the dispatcher announce it.
    Access(Changed),
    WakeWorker,
    WakeDispatcher,
}

impl<'a> AdminWrite<'a> {
    pub async fn begin(state: &'a AppState, who: &'a Principal) -> AppResult<Self> {
        who.require_admin()?;
        let txn = crate::db::write_txn(&state.db).await?;
        Ok(AdminWrite { state, who, txn })
    }

    /// An audit row besides the one [`Self::commit`] writes (a change of several things).
    pub async fn record(&self, c: Change) -> AppResult<()> {
        audit::record(
            &self.txn,
            audit::Entry {
                app_id: self.who.app_id,
                actor: &self.who.actor(),
                action: &c.action,
                target: c.target,
                before: c.before,
                after: c.after,
                reason: &c.reason,
            },
        )
        .await
    }

    /// Writes the audit row, commits, then forgets and wakes what `then` names.
    pub async fn commit(self, c: Change, then: impl IntoIterator<Item = Then>) -> AppResult<()> {
        self.record(c).await?;
        let AdminWrite { state, who, txn } = self;
        #[allow(clippy::disallowed_methods)] // the one place an admin change commits
        txn.commit().await?;
        let app = who.app_id;
        for t in then {
            match t {
                Then::Catalog => {
                    state.hot.forget_catalog(app);
                    state.access.forget_app(app);
                    state.signal(Signal::Catalog { app });
                }
                Then::Rules => {
                    state.hot.forget_rules(app);
                    state.signal(Signal::Rules { app });
                    state.wake_worker();
                }
                Then::Integration => {
                    state.hotmart.forget(app).await;
                    state.hot.hottoks.invalidate(&app);
                    state.signal(Signal::Integration { app });
                }
                Then::ApiKey(id) => {
                    state.hot.api_keys.invalidate(&id);
                    state.signal(Signal::ApiKey { id });
                }
                Then::Access(changed) => state.access_changed(&changed),
                Then::WakeWorker => state.wake_worker(),
                Then::WakeDispatcher => state.wake_dispatcher(),
            }
        }
        Ok(())
    }
}

pub fn now() -> DateTime<Utc> {
    Utc::now()
}

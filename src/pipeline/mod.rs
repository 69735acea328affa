//! From a delivery to access and notifications, calls going one way (down this list, and out
//! to `domain`, `rules`, `hotmart`, `entity`, `db`; never up into `services`):
//!
//! - [`ingest`]: the webhook route's one call: the app behind the URL, the Hottok, the raw bytes
//!   stored (masked) through the inbox's group-committing writer.
//! - [`inbox`]: the queue of stored deliveries and its writer.
//! - [`worker`]: a batch of pending rows read, understood ([`crate::hotmart`]), linked to a
//!   package or plan ([`targets`]), decided by the app's script ([`scripts`], [`crate::rules`]) and
//!   applied through the ledger.
//! - [`ledger`]: the working set of a transaction: facts added to sources' histories
//!   ([`history`]), access recomputed ([`crate::domain::access`]), and [`ledger::flush`] writing
//!   every table in a statement or two.
//! - [`outbox`]: what a change announces, written in the change's transaction.
//! - [`dispatch`]: signed deliveries of those announcements to the app's endpoints.
//! - [`shadow`]: what a version in shadow decided beside the active one, counted and sampled.
//! - [`backtest`]: what activating a rule version would do, decided by the worker's own steps
//!   in a ledger that is never written.
//!
//! [`Pipeline`] is what they work with; [`caches`] and [`access_cache`] keep what they re-read.
// The pipeline commits its own transactions and writes its own audit rows (see clippy.toml).
#![allow(clippy::disallowed_methods)]
pub mod access_cache;
pub mod backtest;
pub mod caches;
pub mod dispatch;
pub mod history;
pub mod inbox;
pub mod ingest;
pub mod ledger;
pub mod outbox;
pub mod scripts;
pub mod shadow;
pub mod signals;
mod state;
pub mod targets;
pub mod worker;

pub use state::Pipeline;

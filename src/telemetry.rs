//! Prometheus metrics: what operators watch (webhooks by outcome, events by status, processing
//! time, inbox backlog). Names are stable; labels are small closed sets.
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once per process (tests start many servers in one process).
pub fn init() {
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().ok());
}

/// The text exposition.
pub fn render() -> String {
    HANDLE
        .get()
        .and_then(|h| h.as_ref())
        .map(metrics_exporter_prometheus::PrometheusHandle::render)
        .unwrap_or_default()
}

/// The inbox backlog, as last counted.
pub fn inbox_pending(n: u64) {
    metrics::gauge!("porteiro_inbox_pending").set(n as f64);
}

pub fn webhook(outcome: &'static str) {
    metrics::counter!("porteiro_webhooks_total", "outcome" => outcome).increment(1);
}

pub fn event_processed(status: &'static str, seconds: f64) {
    metrics::counter!("porteiro_events_processed_total", "status" => status).increment(1);
    metrics::histogram!("porteiro_event_processing_seconds").record(seconds);
}

pub fn access_cache(hit: bool) {
    metrics::counter!("porteiro_access_cache_total", "result" => if hit { "hit" } else { "miss" }).increment(1);
}

pub fn reconciliation(status: &'static str) {
    metrics::counter!("porteiro_reconciliations_total", "status" => status).increment(1);
}

/// One notification attempt's result: delivered, dead, or pending (will retry).
pub fn notification(status: entity::status::DeliveryStatus) {
    use entity::status::DeliveryStatus;
    let status = match status {
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Dead => "dead",
        DeliveryStatus::Pending => "retrying",
    };
    metrics::counter!("porteiro_notification_attempts_total", "result" => status).increment(1);
}

/// A worker batch committed early to let waiting webhooks in (SQLite).
pub fn worker_yield() {
    metrics::counter!("porteiro_worker_yields_total").increment(1);
}

/// One ingest commit: how many deliveries it stored together, how long it waited for the write
/// gate (SQLite; zero on PostgreSQL, whose waits are inside the commit), and how long its write
/// and commit took. The mean group size (`porteiro_ingest_group_deliveries_total /
/// porteiro_ingest_groups_total`) tells how well commits are shared under the current load.
pub fn ingest_group(deliveries: usize, waited: f64, commit: f64) {
    metrics::counter!("porteiro_ingest_groups_total").increment(1);
    metrics::counter!("porteiro_ingest_group_deliveries_total").increment(deliveries as u64);
    metrics::histogram!("porteiro_ingest_gate_wait_seconds").record(waited);
    metrics::histogram!("porteiro_ingest_commit_seconds").record(commit);
}

//! Delivers the outbox: fans each notification out to the app's endpoints, sends due deliveries
//! signed per Standard Webhooks, retries with backoff and jitter for about a day, then gives up
//! (DEAD, re-sendable). Also the timer that announces ends as they pass (`access.expired`).
//!
//! At-least-once: a delivery is leased (its next attempt pushed past the send's timeout) before
//! it is sent, so a crash mid-send only means it is sent again after the lease.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use entity::{
    notification as note, notification_attempt as attempt_row, notification_delivery as delivery,
    notification_endpoint as ep,
};
use rand::Rng;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use sea_orm::DatabaseConnection;

use crate::secrets::{self, SecretBox};
use crate::{AppError, AppResult};

use entity::status::DeliveryStatus;

/// Waits after the 1st, 2nd… failed attempt: 8 attempts over about 27 hours, as Standard
/// Webhooks senders do.
const SCHEDULE: &[Duration] = &[
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];
/// The most of a receiver's answer that is read (and kept, for the attempt log).
const READ_LIMIT: usize = 2048;
const CLAIM: u64 = 200;

/// Addresses a notification may go to when private targets are not allowed.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8))
        }
    }
}

/// Resolves names and keeps only public addresses: the check happens on the very addresses the
/// connection uses, so a name cannot resolve to a public address when checked and a private one
/// when connected.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves only to loopback, private or link-local addresses").into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The dispatcher's HTTP client and what it is sending right now.
pub struct Dispatcher {
    db: DatabaseConnection,
    secrets: SecretBox,
    http: reqwest::Client,
    allow_private: bool,
    in_flight: Mutex<HashMap<i32, usize>>,
    wake: Arc<tokio::sync::Notify>,
}

impl Dispatcher {
    pub fn new(db: DatabaseConnection, secrets: SecretBox, allow_private: bool) -> Self {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("porteiro-notifications/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            b = b.dns_resolver(Arc::new(PublicOnly));
        }
        Dispatcher {
            db,
            secrets,
            http: b.build().unwrap_or_default(),
            allow_private,
            in_flight: Mutex::new(HashMap::new()),
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// What [`Self::wake`] notifies (the job registry waits on it).
    pub fn wake_handle(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<i32, usize>> {
        self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Releases an endpoint's slot when a send ends, however it ends.
struct Slot(Arc<Dispatcher>, i32);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(n) = self.0.slots().get_mut(&self.1) {
            *n = n.saturating_sub(1);
        }
    }
}

/// New notifications read per fan-out transaction.
const FAN_OUT_BATCH: usize = 500;

/// Fans out what is new, a batch at a time, until it is all done (or ten batches: the sends
/// due meanwhile get their turn).
pub async fn fan_out(d: &Dispatcher) -> AppResult<usize> {
    let mut total = 0;
    for _ in 0..10 {
        let n = fan_out_batch(d).await?;
        total += n;
        if n < FAN_OUT_BATCH {
            break;
        }
    }
    Ok(total)
}

/// Creates the deliveries of new notifications, one per enabled endpoint that existed when the
/// change was written and whose filter takes it, and gives them their places in the changes
/// feed ([`outbox::sequence`]).
async fn fan_out_batch(d: &Dispatcher) -> AppResult<usize> {
    let fresh = note::Entity::find()
        .filter(note::Column::FannedOut.eq(false))
        .order_by_asc(note::Column::Id)
        .limit(FAN_OUT_BATCH as u64)
        .all(&d.db)
        .await?;
    if fresh.is_empty() {
        return Ok(0);
    }
    let mut apps: Vec<i32> = fresh.iter().map(|n| n.app_id).collect();
    apps.sort();
    apps.dedup();
    let txn = crate::db::write_txn(&d.db).await?;
    let endpoints = ep::Entity::find()
        .filter(ep::Column::AppId.is_in(apps))
        .filter(ep::Column::Enabled.eq(true))
        .all(&txn)
        .await?;
    let now = chrono::Utc::now();
    let mut rows = Vec::new();
    for n in &fresh {
        // An endpoint created after the change hears only what comes after it.
        for e in endpoints
            .iter()
            .filter(|e| e.app_id == n.app_id && e.created_at <= n.created_at)
        {
            let takes = e.event_types.is_empty() || e.event_types.split_whitespace().any(|t| t == n.event_type);
            if takes {
                rows.push(delivery::ActiveModel {
                    app_id: Set(n.app_id),
                    notification_id: Set(n.id),
                    endpoint_id: Set(e.id),
                    status: Set(DeliveryStatus::Pending),
                    attempts: Set(0),
                    next_attempt_at: Set(Some(now)),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                });
            }
        }
    }
    for chunk in rows.chunks(200) {
        delivery::Entity::insert_many(chunk.to_vec()).exec(&txn).await?;
    }
    // Only rows still unmarked: another process may have fanned some out meanwhile.
    let ids: Vec<i32> = fresh.iter().map(|n| n.id).collect();
    let marked = super::outbox::sequence(&txn, &ids).await?;
    if marked as usize != fresh.len() {
        txn.rollback().await?;
        return Ok(0);
    }
    txn.commit().await?;
    Ok(fresh.len())
}

/// Claims the deliveries due at `now` that their endpoints have room for, and sends each on its
/// own task. The handles are returned so a caller (a test, a command) can wait for them.
pub async fn deliver_due(d: &Arc<Dispatcher>, now: DateTime<Utc>) -> AppResult<Vec<tokio::task::JoinHandle<()>>> {
    let txn = crate::db::write_txn(&d.db).await?;
    let mut q = delivery::Entity::find()
        .filter(delivery::Column::Status.eq(DeliveryStatus::Pending))
        .filter(delivery::Column::NextAttemptAt.lte(now))
        .order_by_asc(delivery::Column::NextAttemptAt)
        .limit(CLAIM);
    if txn.get_database_backend() == DbBackend::Postgres {
        q = q.lock_with_behavior(
            sea_orm::sea_query::LockType::Update,
            sea_orm::sea_query::LockBehavior::SkipLocked,
        );
    }
    let due = q.all(&txn).await?;
    if due.is_empty() {
        txn.rollback().await?;
        return Ok(Vec::new());
    }
    let mut ids: Vec<i32> = due.iter().map(|d| d.endpoint_id).collect();
    ids.sort();
    ids.dedup();
    let endpoints: HashMap<i32, ep::Model> = ep::Entity::find()
        .filter(ep::Column::Id.is_in(ids))
        .filter(ep::Column::Enabled.eq(true))
        .all(&txn)
        .await?
        .into_iter()
        .map(|e| (e.id, e))
        .collect();
    let mut taken = Vec::new();
    {
        let mut slots = d.slots();
        for row in due {
            let Some(e) = endpoints.get(&row.endpoint_id) else {
                continue;
            };
            let used = slots.entry(e.id).or_insert(0);
            if *used >= e.max_in_flight.max(1) as usize {
                continue;
            }
            *used += 1;
            taken.push((Slot(d.clone(), e.id), e.clone(), row));
        }
    }
    let real_now = chrono::Utc::now();
    for (_, e, row) in &taken {
        // The lease: nobody else takes it until the send had time to end.
        let lease = real_now + chrono::TimeDelta::milliseconds(e.timeout_ms as i64 + 30_000);
        delivery::Entity::update_many()
            .col_expr(delivery::Column::NextAttemptAt, Some(lease).into())
            .filter(delivery::Column::Id.eq(row.id))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    let mut notes: HashMap<i32, note::Model> = HashMap::new();
    let wanted: Vec<i32> = taken.iter().map(|(_, _, row)| row.notification_id).collect();
    for chunk in wanted.chunks(500) {
        for n in note::Entity::find()
            .filter(note::Column::Id.is_in(chunk.to_vec()))
            .all(&d.db)
            .await?
        {
            notes.insert(n.id, n);
        }
    }
    let mut handles = Vec::new();
    for (slot, e, row) in taken {
        let Some(n) = notes.get(&row.notification_id).cloned() else {
            continue;
        };
        let dispatcher = d.clone();
        handles.push(tokio::spawn(async move {
            // Held until the send ended, however it ended (a panic included).
            let held = slot;
            if let Err(err) = attempt(&dispatcher, &e, &n, row).await {
                err.log();
            }
            // A slot is free: the next due delivery of this endpoint need not wait for the tick.
            drop(held);
            dispatcher.wake();
        }));
    }
    Ok(handles)
}

/// What one send came to.
struct Outcome {
    status: Option<u16>,
    error: Option<String>,
    excerpt: Option<String>,
    latency_ms: i32,
}

/// Headers of one signed send: `webhook-id`, `webhook-timestamp`, and one `v1,` signature per
/// signing secret (two during a rotation's overlap).
pub fn sign(secrets: &[String], msg_id: &str, timestamp: i64, body: &str) -> AppResult<Vec<(&'static str, String)>> {
    let mut sigs = Vec::new();
    for s in secrets {
        let wh = standardwebhooks::Webhook::new(s).map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?;
        sigs.push(
            wh.sign(msg_id, timestamp, body.as_bytes())
                .map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?,
        );
    }
    Ok(vec![
        ("webhook-id", msg_id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", sigs.join(" ")),
    ])
}

async fn send(d: &Dispatcher, e: &ep::Model, n: &note::Model) -> AppResult<Outcome> {
    let now = chrono::Utc::now();
    let secrets = signing_secrets(&d.secrets, e, now)?;
    let body = super::outbox::body(n);
    let headers = sign(&secrets, &n.msg_id, now.timestamp(), &body)?;
    let started = Instant::now();
    let elapsed = |t: Instant| t.elapsed().as_millis().min(i32::MAX as u128) as i32;
    // Literal addresses never reach the resolver: checked here.
    if !d.allow_private
        && let Err(m) = check_url(&e.url, false)
    {
        return Ok(Outcome {
            status: None,
            error: Some(m),
            excerpt: None,
            latency_ms: 0,
        });
    }
    let mut req = d
        .http
        .post(&e.url)
        .timeout(Duration::from_millis(e.timeout_ms.max(1) as u64))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let mut res = match req.send().await {
        Ok(r) => r,
        Err(err) => {
            return Ok(Outcome {
                status: None,
                error: Some(describe(&err)),
                excerpt: None,
                latency_ms: elapsed(started),
            });
        }
    };
    let status = res.status().as_u16();
    let mut body = Vec::new();
    // Bounded: a receiver answering gigabytes costs us 2 KiB.
    while body.len() < READ_LIMIT {
        match res.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c[..c.len().min(READ_LIMIT - body.len())]),
            _ => break,
        }
    }
    let excerpt = String::from_utf8_lossy(&body).replace('\0', "").clone();
    Ok(Outcome {
        status: Some(status),
        error: None,
        excerpt: (!excerpt.is_empty()).then_some(excerpt),
        latency_ms: elapsed(started),
    })
}

fn describe(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() {
        "timed out".to_string()
    } else if err.is_connect() {
        "could not connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.chars().take(500).collect()
}

/// The wait before the next attempt after `attempts` failed ones, with ±20% jitter, or `None`
/// when the schedule is over.
pub fn next_wait(attempts: i32) -> Option<Duration> {
    let base = SCHEDULE.get(usize::try_from(attempts).ok()?.checked_sub(1)?)?;
    let jitter = rand::rng().random_range(0.8..1.2);
    Some(base.mul_f64(jitter))
}

/// Sends one delivery now and records the attempt and its consequence.
pub async fn attempt(
    dispatcher: &Dispatcher,
    e: &ep::Model,
    n: &note::Model,
    d: delivery::Model,
) -> AppResult<delivery::Model> {
    let out = send(dispatcher, e, n).await?;
    let db = &dispatcher.db;
    let now = chrono::Utc::now();
    let attempts = d.attempts + 1;
    let txn = crate::db::write_txn(db).await?;
    attempt_row::ActiveModel {
        delivery_id: Set(d.id),
        attempted_at: Set(now),
        status_code: Set(out.status.map(i32::from)),
        error: Set(out.error.clone()),
        latency_ms: Set(out.latency_ms),
        response_excerpt: Set(out.excerpt.clone()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    let mut am: delivery::ActiveModel = d.into();
    am.attempts = Set(attempts);
    am.last_status_code = Set(out.status.map(i32::from));
    am.last_latency_ms = Set(Some(out.latency_ms));
    am.updated_at = Set(now);
    match out.status {
        Some(s) if (200..300).contains(&s) => {
            am.status = Set(DeliveryStatus::Delivered);
            am.delivered_at = Set(Some(now));
            am.next_attempt_at = Set(None);
            am.last_error = Set(None);
        }
        Some(410) => {
            am.status = Set(DeliveryStatus::Dead);
            am.next_attempt_at = Set(None);
            am.last_error = Set(Some("410 Gone: the endpoint was disabled".into()));
            ep::Entity::update_many()
                .col_expr(ep::Column::Enabled, false.into())
                .col_expr(
                    ep::Column::DisabledReason,
                    Some(format!("answered 410 Gone at {}", crate::domain::timestamp(now))).into(),
                )
                .col_expr(ep::Column::UpdatedAt, now.into())
                .filter(ep::Column::Id.eq(e.id))
                .exec(&txn)
                .await?;
            tracing::warn!(endpoint = %e.uid, "notification endpoint answered 410 Gone; disabled");
        }
        other => {
            am.last_error = Set(Some(
                out.error
                    .unwrap_or_else(|| format!("answered {}", other.unwrap_or_default())),
            ));
            match next_wait(attempts) {
                Some(wait) => {
                    am.next_attempt_at = Set(Some(now + chrono::TimeDelta::from_std(wait).unwrap_or_default()));
                }
                None => {
                    am.status = Set(DeliveryStatus::Dead);
                    am.next_attempt_at = Set(None);
                }
            }
        }
    }
    let row = am.update(&txn).await?;
    txn.commit().await?;
    crate::telemetry::notification(row.status);
    Ok(row)
}

/// One round of the dispatcher job: fan new notifications out, then send what is due.
pub async fn round(d: &Arc<Dispatcher>) -> AppResult<()> {
    let fanned = fan_out(d).await;
    let sent = deliver_due(d, chrono::Utc::now()).await.map(|_| ());
    fanned.and(sent)
}

/// The secrets that sign a delivery now: the current one, and the previous one during its
/// overlap window.
pub fn signing_secrets(secrets: &SecretBox, e: &ep::Model, now: DateTime<Utc>) -> AppResult<Vec<String>> {
    let open = |stored: &str, previous: bool| {
        let (app_id, field) = secret_slot(e.app_id, &e.uid, previous);
        secrets
            .decrypt(stored, secrets::Slot { app_id, field: &field })
            .map_err(|err| {
                AppError::Misconfigured(format!(
                    "the signing secret of endpoint {} cannot be decrypted: {err}",
                    e.uid
                ))
            })
    };
    let mut out = vec![open(&e.secret, false)?];
    if let (Some(prev), Some(until)) = (&e.previous_secret, e.previous_secret_until)
        && until > now
    {
        out.push(open(prev, true)?);
    }
    Ok(out)
}

/// Checks an endpoint URL: http(s), a host, no credentials, and (unless the operator allows it)
/// no loopback, private or link-local address written into it. Names are checked again when
/// they are resolved, at every send.
pub fn check_url(raw: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    let raw = raw.trim();
    if raw.len() > 2000 {
        return Err("the URL is longer than 2000 characters".into());
    }
    let url = reqwest::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the URL must start with https:// (or http://)".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put no credentials in the URL; verify the signature instead".into());
    }
    let Some(host) = url.host() else {
        return Err("the URL has no host".into());
    };
    if !allow_private {
        let local = match host {
            url::Host::Ipv4(ip) => !is_public(ip.into()),
            url::Host::Ipv6(ip) => !is_public(ip.into()),
            url::Host::Domain(d) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                d == "localhost" || d.ends_with(".localhost")
            }
        };
        if local {
            return Err(
                "the URL points at a loopback, private or link-local address; an operator can allow that with PORTEIRO_NOTIFY_ALLOW_PRIVATE_TARGETS=true"
                    .into(),
            );
        }
    }
    Ok(url)
}

/// Ends of retention: delivered or dead notifications older than `days` are deleted with their
/// deliveries and attempts, so the outbox does not grow forever.
pub async fn prune(db: &DatabaseConnection, days: i64) -> AppResult<u64> {
    let cutoff = chrono::Utc::now() - chrono::TimeDelta::days(days);
    let old: Vec<i32> = note::Entity::find()
        .select_only()
        .column(note::Column::Id)
        .filter(note::Column::FannedOut.eq(true))
        .filter(note::Column::CreatedAt.lt(cutoff))
        .limit(1000)
        .into_tuple()
        .all(db)
        .await?;
    if old.is_empty() {
        return Ok(0);
    }
    let pending: Vec<i32> = delivery::Entity::find()
        .select_only()
        .column(delivery::Column::NotificationId)
        .filter(delivery::Column::NotificationId.is_in(old.clone()))
        .filter(delivery::Column::Status.eq(DeliveryStatus::Pending))
        .into_tuple()
        .all(db)
        .await?;
    let done: Vec<i32> = old.into_iter().filter(|id| !pending.contains(id)).collect();
    let txn = crate::db::write_txn(db).await?;
    delete_deliveries(&txn, delivery::Column::NotificationId.is_in(done.clone())).await?;
    let n = note::Entity::delete_many()
        .filter(note::Column::Id.is_in(done))
        .exec(&txn)
        .await?
        .rows_affected;
    txn.commit().await?;
    Ok(n)
}

/// Deletes the deliveries `which` selects with their attempts, in the caller's transaction (the
/// foreign keys cascade, but SQLite only cascades with its foreign-key pragma on).
pub async fn delete_deliveries(db: &impl ConnectionTrait, which: sea_orm::sea_query::SimpleExpr) -> AppResult<()> {
    let ids: Vec<i32> = delivery::Entity::find()
        .select_only()
        .column(delivery::Column::Id)
        .filter(which.clone())
        .into_tuple()
        .all(db)
        .await?;
    for chunk in ids.chunks(500) {
        attempt_row::Entity::delete_many()
            .filter(attempt_row::Column::DeliveryId.is_in(chunk.to_vec()))
            .exec(db)
            .await?;
    }
    delivery::Entity::delete_many().filter(which).exec(db).await?;
    Ok(())
}

/// Where an endpoint's signing secret (or the previous one) is sealed.
pub fn secret_slot(app_id: i32, uid: &str, previous: bool) -> (i32, String) {
    let field = if previous {
        format!("notify_secret_previous:{uid}")
    } else {
        format!("notify_secret:{uid}")
    };
    (app_id, field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve;

    #[test]
    fn only_public_addresses_are_public() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn names_that_resolve_to_loopback_are_refused_at_connection_time() {
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = match PublicOnly.resolve(name).await {
            Ok(_) => panic!("localhost resolved to a public address"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("private"), "{err}");
    }

    #[test]
    fn retries_spread_over_about_a_day_then_stop() {
        let total: Duration = (1..=7).map(|n| next_wait(n).unwrap()).sum();
        assert!(
            total > Duration::from_secs(20 * 3600) && total < Duration::from_secs(34 * 3600),
            "{total:?}"
        );
        assert!(next_wait(8).is_none());
        assert!(next_wait(0).is_none());
    }
}

//! Backtests at a launch's size: `cargo bench --bench backtest` stores
//! `PORTEIRO_BENCH_EVENTS` (default 100,000) purchase approvals through the webhook and the
//! worker (two charges per subscription; SQLite in a temp dir, PORTEIRO_BENCH_DATABASE_URL for
//! PostgreSQL), then backtests the active version (nothing changes) and a candidate that
//! moves every end, and prints events/s (goal >= 10,000) and the process's resident memory
//! before and at its peak during each (goal: under 256 MiB), beside the worker's own rate on
//! the same events in the same run. Then shadow runs: rounds of 10,000 more sales, webhook to
//! access, alternately with and without a version in shadow, and the ratio of their times
//! (goal: the shadow adds at most 10%). Asserts nothing but that the reports are what they
//! must be.
// A benchmark fails by panicking.
#![allow(clippy::unwrap_used)]
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use porteiro::config::Settings;
use porteiro::pipeline::backtest::{self, Window};
use porteiro::{AppState, services};
use serde_json::{Value, json};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HOTTOK: &str = "BENCHHOTTOKabcdefghijklmnopqrstuv0001234";

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Quiet;
impl backtest::Progress for Quiet {
    fn total(&self, _: u64) {}
    fn evaluated(&self, _: u64) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// Runs one backtest and prints its rate and memory.
async fn measure(state: &AppState, app_id: i32, name: &str, source: &str) -> (backtest::Report, f64) {
    let candidate = porteiro::rules::ActiveScript {
        version: 99,
        source: source.to_string(),
    };
    let (peak, done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let before = rss_mib();
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_mib() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let t = Instant::now();
    let report = backtest::run(
        &state.pipeline,
        app_id,
        "PURCHASE_APPROVED",
        &candidate,
        &Window::default(),
        &Quiet,
    )
    .await
    .unwrap()
    .unwrap();
    let took = t.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    println!(
        "{name:<38} {:>7} events in {:>6.2} s = {:>7.0} events/s (goal >= 10,000); {} sources changed; RSS {before:.0} MiB before, {} MiB peak (goal < 256)",
        report.events_evaluated,
        took.as_secs_f64(),
        report.events_evaluated as f64 / took.as_secs_f64(),
        report.gained + report.lost + report.suspended + report.end_moved + report.changed,
        peak.load(Ordering::Relaxed).max(before as u64),
    );
    let rate = report.events_evaluated as f64 / took.as_secs_f64();
    (report, rate)
}

/// Posts every body to the webhook, 32 at a time.
async fn post_all(client: &reqwest::Client, hook: &reqwest::Url, bodies: Arc<Vec<bytes::Bytes>>) {
    let next = Arc::new(AtomicU64::new(0));
    let mut posters = Vec::new();
    for _ in 0..32 {
        let (c, h, bodies, next) = (client.clone(), hook.clone(), bodies.clone(), next.clone());
        posters.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= bodies.len() {
                    break;
                }
                let s = c
                    .post(h.clone())
                    .header("X-HOTMART-HOTTOK", HOTTOK)
                    .header("content-type", "application/json")
                    .body(bodies[i].clone())
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert!(s.is_success(), "{s}");
            }
        }));
    }
    for p in posters {
        p.await.unwrap();
    }
}

/// A sale: subscription `sub`, charge `charge` (0: a month ago, 1: now).
fn sale(base: &Value, id: &str, sub: usize, charge: usize) -> bytes::Bytes {
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000i64;
    let paid = now - (1 - charge as i64) * 30 * day;
    let mut v = base.clone();
    v["id"] = json!(id);
    v["creation_date"] = json!(paid);
    v["data"]["purchase"]["approved_date"] = json!(paid);
    v["data"]["purchase"]["date_next_charge"] = json!(paid + 30 * day);
    v["data"]["purchase"]["transaction"] = json!(format!("HPBT{sub:08}{charge}"));
    v["data"]["subscription"]["subscriber"]["code"] = json!(format!("SBBT{sub:08}"));
    v["data"]["buyer"]["email"] = json!(format!("bt{sub}@example.com"));
    v.to_string().into()
}

#[tokio::main]
async fn main() {
    porteiro::install_crypto_provider();
    // RUST_LOG=porteiro::pipeline::backtest=debug prints each chunk's timings.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let n: usize = std::env::var("PORTEIRO_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("PORTEIRO_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display()));
    let settings = Settings::for_tests(&url, dir.path()).unwrap();
    let state = AppState::init(settings).await.unwrap();
    let acceptor = porteiro::http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = format!("http://{}", porteiro::http::local_addr(&acceptor).unwrap());
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(porteiro::http::serve(state.clone(), acceptor, rx));
    let client = reqwest::Client::new();
    let token = porteiro::auth::issue(
        state.settings.jwt_secret(),
        "default",
        porteiro::auth::Role::Admin,
        "bench",
        chrono::Duration::hours(1),
    )
    .unwrap();
    for q in [
        format!("mutation {{ saveHotmartIntegration(input: {{hottok: \"{HOTTOK}\"}}) {{ webhookUrl }} }}"),
        "mutation { createSubscriptionPlan(input: {name: \"Mensal\", hotmartProductIds: [\"4100001\"]}) { id } }"
            .to_string(),
    ] {
        let v: Value = client
            .post(format!("{addr}/graphql"))
            .bearer_auth(&token)
            .json(&json!({"query": q}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(v.get("errors").is_none(), "{v}");
    }
    let app = services::apps::by_slug(&state.db, "default").await.unwrap().unwrap();
    let hook = reqwest::Url::parse(&format!("{addr}/webhooks/hotmart/{}", app.webhook_key)).unwrap();
    println!(
        "porteiro backtest benchmark: {n} stored PURCHASE_APPROVED events, {}",
        porteiro::config::redact_url(&url).split(':').next().unwrap_or("")
    );

    // Two charges per subscription, a month apart, the second paid now.
    let base: Value = serde_json::from_str(include_str!("../rules/fixtures/purchase_approved.json")).unwrap();
    let bodies: Arc<Vec<bytes::Bytes>> =
        Arc::new((0..n).map(|i| sale(&base, &format!("bt-{i}"), i / 2, i % 2)).collect());
    let t = Instant::now();
    post_all(&client, &hook, bodies).await;
    let stored = t.elapsed();
    let t = Instant::now();
    let processed = porteiro::pipeline::worker::drain(&state.pipeline).await.unwrap();
    let worked = t.elapsed();
    println!(
        "{:<38} {n:>7} events in {:>6.2} s (stored in {:.1} s)",
        "fill: webhook, then the worker",
        worked.as_secs_f64(),
        stored.as_secs_f64()
    );
    println!(
        "{:<38} {processed:>7} events in {:>6.2} s = {:>7.0} events/s (baseline)",
        "worker (applies, writes)",
        worked.as_secs_f64(),
        processed as f64 / worked.as_secs_f64()
    );
    let active = porteiro::rules::default_script("PURCHASE_APPROVED").unwrap();
    let (same, rate) = measure(&state, app.id, "backtest of the active version", active).await;
    assert_eq!((same.decisions_changed, same.changes.len()), (0, 0), "{same:?}");
    let (moved, _) = measure(
        &state,
        app.id,
        "backtest of a candidate moving every end",
        "fn decide(event, target, access) { grant_until(event.occurred_at + 40 * 86400000) }",
    )
    .await;
    assert_eq!(moved.events_evaluated, n as u64);
    println!(
        "ratio: the backtest evaluates {:.2}x the events per second the worker applies",
        rate / (processed as f64 / worked.as_secs_f64())
    );

    // Shadow runs: the same flood, webhook to access, with and without a version in shadow,
    // alternated so the database's growth weighs on both alike.
    let who = porteiro::auth::Principal {
        app_id: app.id,
        app_slug: "default".into(),
        role: porteiro::auth::Role::Admin,
        subject: "bench".into(),
    };
    let shadow = services::rules::save(
        &state,
        &who,
        "PURCHASE_APPROVED",
        "fn decide(event, target, access) { if access == () { grant_until(event.occurred_at + 40 * 86400000) } else { ignore(\"held\") } }",
        false,
        None,
    )
    .await
    .unwrap();
    const ROUND: usize = 10_000;
    let (mut with, mut without) = (Duration::ZERO, Duration::ZERO);
    for round in 0..6 {
        let on = round % 2 == 1;
        services::rules::set_shadow(&state, &who, "PURCHASE_APPROVED", on.then_some(shadow.version))
            .await
            .unwrap();
        let first = n / 2 + round * ROUND;
        let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(
            (0..ROUND)
                .map(|i| sale(&base, &format!("sh-{round}-{i}"), first + i, 1))
                .collect(),
        );
        let t = Instant::now();
        post_all(&client, &hook, bodies).await;
        porteiro::pipeline::worker::drain(&state.pipeline).await.unwrap();
        let took = t.elapsed();
        if on { with += took } else { without += took }
    }
    let per = |d: Duration| (3 * ROUND) as f64 / d.as_secs_f64();
    println!(
        "{:<38} {:>7.0} sales/s webhook to access, without a shadow (baseline)",
        "flood without a shadow",
        per(without)
    );
    println!(
        "{:<38} {:>7.0} sales/s webhook to access, {:.2}x the time (goal <= 1.10x)",
        "flood with a version in shadow",
        per(with),
        with.as_secs_f64() / without.as_secs_f64()
    );
}

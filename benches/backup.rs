//! How long `porteiro backup` takes on a database of 100,000 events, idle and while webhooks keep
//! arriving, and what the backup costs the webhooks meanwhile (acknowledgements a second, against
//! the same load without a backup, measured in the same run).
//!
//! `cargo bench --bench backup` (SQLite in a temp dir; `PORTEIRO_BENCH_EVENTS` to change the
//! size). Prints figures; asserts nothing.
// A benchmark fails by panicking.
#![allow(clippy::unwrap_used)]
use std::time::{Duration, Instant};

use porteiro::config::{BackupKeys, Settings};
use porteiro::ops::backup;
use porteiro::{AppState, services};
use serde_json::{Value, json};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HOTTOK: &str = "BENCHHOTTOKabcdefghijklmnopqrstuv0001234";
const CONCURRENCY: usize = 16;

fn sale(i: usize, base: &Value) -> bytes::Bytes {
    let mut v = base.clone();
    let now = chrono::Utc::now().timestamp_millis();
    v["creation_date"] = json!(now);
    v["data"]["purchase"]["approved_date"] = json!(now);
    v["data"]["purchase"]["date_next_charge"] = json!(now + 30 * 86_400_000i64);
    v["id"] = json!(format!("bk-{i}"));
    v["data"]["purchase"]["transaction"] = json!(format!("HPBK{i:09}"));
    v["data"]["subscription"]["subscriber"]["code"] = json!(format!("SBK{i:09}"));
    v["data"]["buyer"]["email"] = json!(format!("bk{i}@example.com"));
    v.to_string().into()
}

/// Posts sales `from..to`, `CONCURRENCY` at a time; acknowledgements a second.
async fn post(client: &reqwest::Client, hook: &reqwest::Url, base: &Value, from: usize, to: usize) -> f64 {
    let bodies: std::sync::Arc<Vec<bytes::Bytes>> = std::sync::Arc::new((from..to).map(|i| sale(i, base)).collect());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..CONCURRENCY {
        let (c, h, bodies) = (client.clone(), hook.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < bodies.len() {
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
                i += CONCURRENCY;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (to - from) as f64 / start.elapsed().as_secs_f64()
}

fn mib(path: &std::path::Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / 1048576.0)
}

#[tokio::main]
async fn main() {
    porteiro::install_crypto_provider();
    let events: usize = std::env::var("PORTEIRO_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let db_file = dir.path().join("bench.db");
    let url = format!("sqlite://{}?mode=rwc", db_file.display());
    let settings = Settings::for_tests(&url, dir.path()).unwrap();
    let state = AppState::init(settings).await.unwrap();
    // As in `serve`: the worker decides what arrives, the upkeep checkpoints the WAL.
    let mut jobs = porteiro::jobs::Jobs::default();
    porteiro::app::start_maintenance(&mut jobs, &state);
    porteiro::app::start_worker(&mut jobs, &state).unwrap();
    let acceptor = porteiro::http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = format!("http://{}", porteiro::http::local_addr(&acceptor).unwrap());
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(porteiro::http::serve(state.clone(), acceptor, rx));
    let app = services::apps::by_slug(&state.db, "default").await.unwrap().unwrap();
    let client = reqwest::Client::new();
    let token = porteiro::auth::issue(
        state.settings.jwt_secret(),
        "default",
        porteiro::auth::Role::Admin,
        "bench",
        chrono::Duration::hours(1),
    )
    .unwrap();
    client
        .post(format!("{addr}/graphql"))
        .bearer_auth(&token)
        .json(&json!({"query": "mutation { createSubscriptionPlan(input: {name: \"Bench\", hotmartProductIds: [\"4100001\"]}) { id } }"}))
        .send()
        .await
        .unwrap();
    client
        .post(format!("{addr}/graphql"))
        .bearer_auth(&token)
        .json(&json!({
            "query": "mutation($h: String!) { saveHotmartIntegration(input: {hottok: $h}) { webhookUrl } }",
            "variables": {"h": HOTTOK}
        }))
        .send()
        .await
        .unwrap();
    let hook = reqwest::Url::parse(&format!("{addr}/webhooks/hotmart/{}", app.webhook_key)).unwrap();
    let base: Value = serde_json::from_str(include_str!("../rules/fixtures/purchase_approved.json")).unwrap();

    let fill = Instant::now();
    let fill_rate = post(&client, &hook, &base, 0, events).await;
    while porteiro::pipeline::inbox::pending_count(&state.db).await.unwrap() > 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "porteiro backup benchmark: SQLite, {events} events stored and decided in {:.1}s ({fill_rate:.0} acks/s), database {:.1} MiB",
        fill.elapsed().as_secs_f64(),
        mib(&db_file)
    );
    let src = backup::Source::of(&state.settings);
    let out = tempfile::tempdir().unwrap();

    let idle = backup::create(&src, &out.path().join("idle"), BackupKeys::Include)
        .await
        .unwrap();
    println!(
        "backup, idle:                 {:>6.2}s  ({:.1} MiB written)",
        idle.seconds,
        idle.bytes as f64 / 1048576.0
    );

    // The same load twice: alone (the baseline), then with a backup taken in its middle.
    let load = 20_000;
    let alone = post(&client, &hook, &base, events, events + load).await;
    let (c, h, b) = (client.clone(), hook.clone(), base.clone());
    let during = tokio::spawn(async move { post(&c, &h, &b, events + load, events + 2 * load).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = backup::create(&src, &out.path().join("busy"), BackupKeys::Include)
        .await
        .unwrap();
    let finished_first = during.is_finished();
    let with_backup = during.await.unwrap();
    println!(
        "backup, under load:           {:>6.2}s  ({} events in the snapshot{})",
        busy.seconds,
        busy.counts.as_ref().map_or(0, |c| c.events),
        if finished_first {
            "; the load ended before the backup: raise it"
        } else {
            ""
        }
    );
    println!("webhook acks, no backup:      {alone:>8.0}/s (baseline)");
    println!(
        "webhook acks, backup running: {with_backup:>8.0}/s ({:.2}x baseline; the load spans the backup)",
        with_backup / alone
    );
    let t = Instant::now();
    backup::verify(&out.path().join("busy")).await.unwrap();
    println!("backup --verify:              {:>6.2}s", t.elapsed().as_secs_f64());
    let target = tempfile::tempdir().unwrap();
    let t = Instant::now();
    backup::restore(
        &out.path().join("busy"),
        &format!("sqlite://{}?mode=rwc", target.path().join("r.db").display()),
        target.path(),
    )
    .await
    .unwrap();
    println!("restore:                      {:>6.2}s", t.elapsed().as_secs_f64());
    jobs.stop().await;
}

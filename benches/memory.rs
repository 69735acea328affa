//! Server memory under pressure, measured on the real binary (`/proc/<pid>/status` VmRSS):
//! during a flood of webhooks at twice the rate it sustains (goal: < 256 MiB), and with one
//! million entitlements stored while apps ask about random buyers (goal: < 512 MiB).
//!
//! `cargo bench --bench memory`; PORTEIRO_BENCH_DATABASE_URL for PostgreSQL (an empty
//! database), PORTEIRO_BENCH_FLOOD_SECS (default 60), PORTEIRO_BENCH_ENTITLEMENTS (default 1M).
// A test or a benchmark fails by panicking.
#![allow(clippy::unwrap_used)]
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

const HOTTOK: &str = "bench-hottok-0123456789";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn command(url: &str, dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_porteiro"));
    c.current_dir(dir)
        .env("DATABASE_URL", url)
        .env("PORTEIRO_DATA_DIR", dir)
        .env("PORTEIRO_BIND", "127.0.0.1:0")
        .env(
            "RUST_LOG",
            std::env::var("PORTEIRO_BENCH_SERVER_LOG").unwrap_or_else(|_| "error".into()),
        )
        .env_remove("PORTEIRO_MASTER_KEY")
        .env_remove("PORTEIRO_JWT_KEY");
    // The server refuses PORTEIRO_ variables it does not know, such as this bench's own.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PORTEIRO_BENCH_")) {
        c.env_remove(k);
    }
    c
}

fn start(url: &str, dir: &std::path::Path) -> (Server, String) {
    let mut child = command(url, dir).arg("serve").stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let server = Server(child);
    let mut seen = Vec::new();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the server printed its address: {seen:?}"))
            .unwrap();
        seen.push(line.clone());
        if let Some(a) = line.strip_prefix("porteiro listening on ") {
            let addr = a.trim().to_string();
            // Its log goes to PORTEIRO_BENCH_SERVER_LOG_FILE when asked, else nowhere.
            let mut sink: Box<dyn std::io::Write + Send> = match std::env::var("PORTEIRO_BENCH_SERVER_LOG_FILE") {
                Ok(f) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(f).unwrap()),
                Err(_) => Box::new(std::io::sink()),
            };
            std::thread::spawn(move || {
                for l in lines.by_ref().map_while(Result::ok) {
                    let _ = writeln!(sink, "{l}");
                }
            });
            return (server, addr);
        }
    }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Samples the process's RSS every 100 ms until told to stop; returns the peak.
fn watch_rss(pid: u32) -> (Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<f64>) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        let mut peak: f64 = 0.0;
        while !s.load(Ordering::Relaxed) {
            peak = peak.max(rss_mib(pid));
            std::thread::sleep(Duration::from_millis(100));
        }
        peak
    });
    (stop, h)
}

fn sale(i: u64, base: &Value) -> String {
    let mut v = base.clone();
    v["id"] = json!(format!("mem-{i}"));
    v["data"]["purchase"]["transaction"] = json!(format!("HPM{i}"));
    v["data"]["buyer"]["email"] = json!(format!("flood{i}@example.com"));
    // One subscription per sale: with the fixture's one code, every sale joined one history
    // that grew by one fact per event, and each recompute read all of it.
    v["data"]["subscription"]["subscriber"]["code"] = json!(format!("SM{i:08}"));
    v.to_string()
}

#[tokio::main]
async fn main() {
    porteiro::install_crypto_provider();
    let env_num = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let flood_secs = env_num("PORTEIRO_BENCH_FLOOD_SECS", 60);
    let stored = env_num("PORTEIRO_BENCH_ENTITLEMENTS", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("PORTEIRO_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}?mode=rwc", dir.path().join("mem.db").display()));
    let (server, addr) = start(&url, dir.path());
    let pid = server.0.id();
    let token = String::from_utf8(
        command(&url, dir.path())
            .args(["token", "--app", "default", "--role", "admin"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let client = reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap();
    let gql = |q: &'static str| {
        let (client, addr, token) = (client.clone(), addr.clone(), token.clone());
        async move {
            client
                .post(format!("{addr}/graphql"))
                .bearer_auth(token)
                .json(&json!({"query": q}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let saved =
        gql("mutation { saveHotmartIntegration(input: {hottok: \"bench-hottok-0123456789\"}) { webhookUrl } }").await;
    let hook = saved["data"]["saveHotmartIntegration"]["webhookUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("{saved}"))
        .to_string();
    let hook = format!("{addr}/webhooks/{}", hook.split("/webhooks/").nth(1).unwrap());
    let pkg =
        gql("mutation { createProductPackage(input: {name: \"Bench\", hotmartProductIds: [\"4100001\"]}) { id } }")
            .await;
    let pkg_id: i64 = pkg["data"]["createProductPackage"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let base: Value = serde_json::from_str(include_str!("../rules/fixtures/purchase_approved.json")).unwrap();
    println!("porteiro memory benchmark ({})", url.split(':').next().unwrap_or(""));
    println!("{:<44} {:>8.1} MiB", "idle after start", rss_mib(pid));

    // A first estimate of the rate: 32 connections back to back for 5 s.
    let next = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, hook, base, next) = (client.clone(), hook.clone(), base.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while t.elapsed() < Duration::from_secs(5) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let _ = client
                    .post(&hook)
                    .header("X-HOTMART-HOTTOK", HOTTOK)
                    .header("content-type", "application/json")
                    .body(sale(i, &base))
                    .send()
                    .await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let sustained = next.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();

    // Open loop at twice that rate: requests start on schedule whether or not earlier ones ended.
    let rate = (sustained * 2.0).max(10.0);
    let (stop, peak) = watch_rss(pid);
    let (ok, busy, other) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let t = Instant::now();
    let mut inflight = Vec::new();
    while t.elapsed() < Duration::from_secs(flood_secs) {
        tick.tick().await;
        let i = next.fetch_add(1, Ordering::Relaxed);
        let (client, hook, body) = (client.clone(), hook.clone(), sale(i, &base));
        let (ok, busy, other) = (ok.clone(), busy.clone(), other.clone());
        inflight.push(tokio::spawn(async move {
            let r = client
                .post(&hook)
                .header("X-HOTMART-HOTTOK", HOTTOK)
                .header("content-type", "application/json")
                .timeout(Duration::from_secs(30))
                .body(body)
                .send()
                .await;
            match r.map(|r| r.status().as_u16()) {
                Ok(200..=299) => ok.fetch_add(1, Ordering::Relaxed),
                Ok(503) => busy.fetch_add(1, Ordering::Relaxed),
                _ => other.fetch_add(1, Ordering::Relaxed),
            };
        }));
        if inflight.len() > 20_000 {
            inflight.retain(|h| !h.is_finished());
        }
    }
    for h in inflight {
        let _ = h.await;
    }
    stop.store(true, Ordering::Relaxed);
    let flood_peak = peak.join().unwrap();
    println!(
        "{:<44} {:>8.1} MiB  (goal < 256; {flood_secs} s at {rate:.0}/s = 2x the {sustained:.0}/s of 32 connections; {} stored, {} answered 503, {} other)",
        "peak during the flood",
        flood_peak,
        ok.load(Ordering::Relaxed),
        busy.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
    );
    // What it sustains with the worker running alongside: what the flood got stored per second.
    let kept = ok.load(Ordering::Relaxed) as f64 / flood_secs as f64;
    // Latency at half that rate, open loop for 10 s, once the worker caught up with the backlog
    // (it keeps processing alongside, as in production).
    for _ in 0..600 {
        let m = client
            .get(format!("{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let pending = m
            .lines()
            .find_map(|l| l.strip_prefix("porteiro_inbox_pending "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if pending == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    {
        let rate = (kept / 2.0).max(5.0);
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let t = Instant::now();
        let mut inflight = Vec::new();
        while t.elapsed() < Duration::from_secs(10) {
            tick.tick().await;
            let i = next.fetch_add(1, Ordering::Relaxed);
            let (client, hook, body) = (client.clone(), hook.clone(), sale(i, &base));
            inflight.push(tokio::spawn(async move {
                let t = Instant::now();
                let r = client
                    .post(&hook)
                    .header("X-HOTMART-HOTTOK", HOTTOK)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                (r.map_or(0, |r| r.status().as_u16()), t.elapsed())
            }));
        }
        let (mut lat, mut refused) = (Vec::new(), 0);
        for h in inflight {
            let (status, took) = h.await.unwrap();
            if status == 200 {
                lat.push(took);
            } else {
                refused += 1;
            }
        }
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
        println!(
            "{:<44} p50 {:>6.2} ms  p99 {:>6.2} ms  (10 s at {rate:.0}/s = half the {kept:.0}/s stored during the flood, worker running; {refused} answered 503; goal p99 <= 25 ms)",
            "webhook ack at half the max rate",
            pct(0.5),
            pct(0.99)
        );
    }

    drop(server);

    // One million entitlements, written straight into the database, then a restart.
    let db = porteiro::db::connect(&url).await.unwrap();
    let t = Instant::now();
    let (series, stamp) = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => (format!("generate_series(1, {stored}) AS n(i)"), "now()".to_string()),
        _ => (
            format!(
                "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {stored}) SELECT i FROM s) AS n"
            ),
            // The stamp format the server itself writes.
            format!(
                "'{}'",
                db.query_one_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    "SELECT created_at AS c FROM buyer LIMIT 1"
                ))
                .await
                .unwrap()
                .expect("the flood created buyers")
                .try_get::<String>("", "c")
                .unwrap()
            ),
        ),
    };
    db.execute_unprepared(&format!(
        "INSERT INTO buyer (app_id, email, name, created_at, updated_at) \
         SELECT 1, 'm' || CAST(i AS TEXT) || '@example.com', '', {stamp}, {stamp} FROM {series}"
    ))
    .await
    .unwrap();
    db.execute_unprepared(&format!(
        "INSERT INTO entitlement (app_id, buyer_id, target_kind, target_id, source, status, granted_at, \
         reason, created_at, updated_at) SELECT app_id, id, 'package', {pkg_id}, 'txn:M' || CAST(id AS TEXT), \
         'active', created_at, 'bench', created_at, created_at FROM buyer WHERE email LIKE 'm%@example.com'"
    ))
    .await
    .unwrap();
    println!(
        "{:<44} {:>8.1} s",
        format!("wrote {stored} buyers and entitlements"),
        t.elapsed().as_secs_f64()
    );
    drop(db);

    let (server, addr) = start(&url, dir.path());
    let pid = server.0.id();
    println!("{:<44} {:>8.1} MiB", "idle after restart", rss_mib(pid));
    let (stop, peak) = watch_rss(pid);
    let asked = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..32u64 {
        let (client, addr, token, asked) = (client.clone(), addr.clone(), token.clone(), asked.clone());
        tasks.push(tokio::spawn(async move {
            let mut x = w.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            while t.elapsed() < Duration::from_secs(20) {
                // xorshift: random buyers across the million.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let body = json!({"query": "query($e: String!) { access(email: $e) { active } }",
                    "variables": {"e": format!("m{}@example.com", x % stored + 1)}});
                let r = client
                    .post(format!("{addr}/graphql"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                asked.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    println!(
        "{:<44} {:>8.1} MiB  (goal < 512; {} access queries over random buyers in 20 s)",
        format!("peak with {stored} entitlements"),
        peak.join().unwrap(),
        asked.load(Ordering::Relaxed)
    );
}

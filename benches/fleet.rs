//! Throughput with 1, 2 and 3 `porteiro serve` processes on one PostgreSQL database, in one run.
//!
//! `cargo bench --bench fleet` (PostgreSQL at PORTEIRO_BENCH_DATABASE_URL, default
//! `postgres://postgres@127.0.0.1:5432/test`; a fresh database per row). A load balancer's round
//! robin spreads `PORTEIRO_BENCH_N` sales (default 6000) over the instances, 16 at a time; each
//! row gives the acknowledgements per second, and the events processed per second from the
//! first request until the inbox is empty (every instance's worker drains it). Prints figures;
//! asserts nothing. On two cores the point is that nothing serialises needlessly, not a speed-up.
//! Three instances' pools (16 each by default) and listeners fit PostgreSQL's default 100
//! connections. `PORTEIRO_BENCH_INSTANCES=1,3` picks the rows; `PORTEIRO_BENCH_BIN` runs another
//! build's binary (an older commit's, for old against new in one session; with
//! `PORTEIRO_BENCH_BIN_DOWN=k` the newest k migrations are undone for it).
// A benchmark fails by panicking.
#![allow(clippy::unwrap_used)]
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use porteiro::auth::{self, Role};
use porteiro::config::Settings;
use porteiro::{AppState, services};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

const HOTTOK: &str = "BENCHHOTTOKabcdefghijklmnopqrstuv0001234";
const CONCURRENCY: usize = 16;

struct Instance(Child);

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(url: &str, dir: &std::path::Path) -> (Instance, String) {
    // PORTEIRO_BENCH_BIN: another build's binary (an older commit's, for old against new).
    let bin = std::env::var("PORTEIRO_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_porteiro").to_string());
    let mut child = Command::new(bin)
        .arg("serve")
        .current_dir(dir)
        .env("DATABASE_URL", url)
        .env("PORTEIRO_DATA_DIR", dir)
        .env("PORTEIRO_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        // The service refuses `PORTEIRO_*` settings it does not know, this benchmark's own too.
        .env_remove("PORTEIRO_BENCH_BIN")
        .env_remove("PORTEIRO_BENCH_BIN_DOWN")
        .env_remove("PORTEIRO_BENCH_INSTANCES")
        .env_remove("PORTEIRO_BENCH_N")
        .env_remove("PORTEIRO_BENCH_DATABASE_URL")
        .env_remove("PORTEIRO_MASTER_KEY")
        .env_remove("PORTEIRO_JWT_KEY")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let instance = Instance(child);
    let mut said = Vec::new();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the server did not start:\n{}", said.join("\n")))
            .unwrap();
        said.push(line.clone());
        if let Some(a) = line.strip_prefix("porteiro listening on ") {
            std::thread::spawn(move || for _ in lines.by_ref() {});
            return (instance, a.trim().to_string());
        }
    }
}

fn sale(i: usize, base: &Value) -> String {
    let mut v = base.clone();
    let now = chrono::Utc::now().timestamp_millis();
    v["creation_date"] = json!(now);
    v["data"]["purchase"]["approved_date"] = json!(now);
    v["data"]["purchase"]["date_next_charge"] = json!(now + 30 * 86_400_000i64);
    v["id"] = json!(format!("fleet-{i}"));
    v["data"]["purchase"]["transaction"] = json!(format!("HPFLEET{i:08}"));
    v["data"]["subscription"]["subscriber"]["code"] = json!(format!("SF{i:08}"));
    v["data"]["buyer"]["email"] = json!(format!("fleet{i}@example.com"));
    v.to_string()
}

struct Row {
    acks: f64,
    processed: f64,
    healthz: f64,
}

async fn pending(db: &sea_orm::DatabaseConnection) -> i64 {
    db.query_one_raw(sea_orm::Statement::from_string(
        db.get_database_backend(),
        "SELECT COUNT(*) AS n FROM webhook_event WHERE status = 'pending'",
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get::<i64>("", "n")
    .unwrap()
}

async fn run(base_url: &str, instances: usize, n: usize) -> Row {
    let name = format!("porteiro_bench_fleet_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(base_url).await.unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = format!("{}/{name}", base_url.rsplit_once('/').unwrap().0);
    let dir = tempfile::tempdir().unwrap();
    // The catalogue and the Hottok, through this process; then it only watches the inbox.
    let state = AppState::init(Settings::for_tests(&url, dir.path()).unwrap())
        .await
        .unwrap();
    let acceptor = porteiro::http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let setup = format!("http://{}", porteiro::http::local_addr(&acceptor).unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(porteiro::http::serve(state.clone(), acceptor, rx));
    let client = reqwest::Client::new();
    let token = auth::issue(
        state.settings.jwt_secret(),
        "default",
        Role::Admin,
        "bench",
        chrono::Duration::hours(1),
    )
    .unwrap();
    for (q, v) in [
        (
            "mutation($h: String!) { saveHotmartIntegration(input: {hottok: $h}) { webhookUrl } }",
            json!({"h": HOTTOK}),
        ),
        (
            "mutation { createSubscriptionPlan(input: {name: \"Bench\", hotmartProductIds: [\"4100001\"]}) { id } }",
            json!({}),
        ),
    ] {
        let r: Value = client
            .post(format!("{setup}/graphql"))
            .bearer_auth(&token)
            .json(&json!({"query": q, "variables": v}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(r.get("errors").is_none(), "{r}");
    }
    let _ = stop.send(true);
    let _ = server.await;
    // An older build refuses a schema newer than it knows: PORTEIRO_BENCH_BIN_DOWN undoes that
    // many of the newest migrations for it.
    if let Some(k) = std::env::var("PORTEIRO_BENCH_BIN_DOWN")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        use migration::MigratorTrait;
        migration::Migrator::down(&state.db, Some(k)).await.unwrap();
    }
    let key = services::apps::by_slug(&state.db, "default")
        .await
        .unwrap()
        .unwrap()
        .webhook_key;
    let fleet: Vec<(Instance, String)> = (0..instances).map(|_| start(&url, dir.path())).collect();
    let hooks: Vec<reqwest::Url> = fleet
        .iter()
        .map(|(_, a)| reqwest::Url::parse(&format!("{a}/webhooks/hotmart/{key}")).unwrap())
        .collect();
    let base: Value = serde_json::from_str(include_str!("../rules/fixtures/purchase_approved.json")).unwrap();
    let bodies: std::sync::Arc<Vec<bytes::Bytes>> =
        std::sync::Arc::new((0..n).map(|i| sale(i, &base).into()).collect());

    // The baseline, in the same run: `/healthz` of the first instance.
    let health = reqwest::Url::parse(&format!("{}/healthz", fleet[0].1)).unwrap();
    let t = Instant::now();
    let mut hs = Vec::new();
    for w in 0..CONCURRENCY {
        let (c, h) = (client.clone(), health.clone());
        hs.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                c.get(h.clone()).send().await.unwrap();
                i += CONCURRENCY;
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    let healthz = n as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut hs = Vec::new();
    for w in 0..CONCURRENCY {
        let (c, hooks, bodies) = (client.clone(), hooks.clone(), bodies.clone());
        hs.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                let r = c
                    .post(hooks[i % hooks.len()].clone())
                    .header("X-HOTMART-HOTTOK", HOTTOK)
                    .header("content-type", "application/json")
                    .body(bodies[i].clone())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                i += CONCURRENCY;
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    let acks = n as f64 / t.elapsed().as_secs_f64();
    while pending(&state.db).await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let processed = n as f64 / t.elapsed().as_secs_f64();
    drop(fleet);
    state.db.clone().close().await.ok();
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
    Row {
        acks,
        processed,
        healthz,
    }
}

#[tokio::main]
async fn main() {
    porteiro::install_crypto_provider();
    let base = std::env::var("PORTEIRO_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let n: usize = std::env::var("PORTEIRO_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6000);
    // PORTEIRO_BENCH_INSTANCES: the rows to run (default 1,2,3).
    let rows: Vec<usize> = std::env::var("PORTEIRO_BENCH_INSTANCES").map_or_else(
        |_| vec![1, 2, 3],
        |v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
    );
    println!("porteiro fleet benchmark: {n} sales per row, concurrency {CONCURRENCY}, PostgreSQL");
    let mut one: Option<(f64, f64)> = None;
    for instances in rows {
        let r = run(&base, instances, n).await;
        let first = *one.get_or_insert((r.acks, r.processed));
        println!(
            "{instances} instance(s): webhook acks {:>7.0}/s ({:.2}x one)  processed {:>7.0}/s ({:.2}x one)  /healthz {:>7.0}/s  acks {:.2}x /healthz",
            r.acks,
            r.acks / first.0,
            r.processed,
            r.processed / first.1,
            r.healthz,
            r.acks / r.healthz,
        );
    }
}

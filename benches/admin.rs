//! The admin screens' queries at a launch's size: `cargo bench --bench admin` fills
//! `PORTEIRO_BENCH_EVENTS` (default 1,000,000) webhook events, buyers and entitlements straight
//! into the database (SQLite in a temp dir; PORTEIRO_BENCH_DATABASE_URL for PostgreSQL), then
//! asks each query the console asks through the server, one at a time, and prints p50/p99 next
//! to `GET /healthz` in the same run (goal: p99 <= 50 ms each). Asserts nothing.
// A benchmark fails by panicking.
#![allow(clippy::unwrap_used)]
use std::time::{Duration, Instant};

use porteiro::auth::{self, Role};
use porteiro::config::Settings;
use porteiro::{AppState, services};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 200;
const HOTTOK: &str = "BENCHHOTTOKabcdefghijklmnopqrstuv0001234";
const FLOOD: usize = 4000;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

async fn exec(db: &sea_orm::DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
}

#[tokio::main]
async fn main() {
    porteiro::install_crypto_provider();
    let n: usize = std::env::var("PORTEIRO_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
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
    let token = auth::issue(
        state.settings.jwt_secret(),
        "default",
        Role::Admin,
        "bench",
        chrono::Duration::hours(1),
    )
    .unwrap();
    let gql = |q: String| {
        let (client, addr, token) = (client.clone(), addr.clone(), token.clone());
        async move {
            let v: Value = client
                .post(format!("{addr}/graphql"))
                .bearer_auth(token)
                .json(&json!({"query": q}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(v.get("errors").is_none(), "{v}");
            v
        }
    };
    gql(format!(
        "mutation {{ saveHotmartIntegration(input: {{hottok: \"{HOTTOK}\"}}) {{ webhookUrl }} }}"
    ))
    .await;
    gql(
        "mutation { createSubscriptionPlan(input: {name: \"Mensal\", hotmartProductIds: [\"4100001\"]}) { id } }"
            .into(),
    )
    .await;
    let app = services::apps::by_slug(&state.db, "default").await.unwrap().unwrap();
    let plan: i32 = gql("{ subscriptionPlans { id } }".into()).await["data"]["subscriptionPlans"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let db = &state.db;
    let backend = db.get_database_backend();
    println!(
        "porteiro admin benchmark: {n} events, buyers and entitlements, {}",
        porteiro::config::redact_url(&url).split(':').next().unwrap_or("")
    );

    // The fill: one event, one buyer with a subscriber code, one entitlement per i, events spread
    // over 30 days (every 50th failed, every 70th unmapped), a small body (the screens never
    // read it in lists).
    let t = Instant::now();
    let (series, at_hours_ago, now) = match backend {
        sea_orm::DbBackend::Postgres => (
            format!("generate_series(1, {n}) AS s(i)"),
            "now() - (i % 720) * interval '1 hour'".to_string(),
            "now()".to_string(),
        ),
        _ => {
            // The text the server writes for a time, with the date and time made in SQL.
            let stamp: String = db
                .query_one_raw(sea_orm::Statement::from_string(
                    backend,
                    "SELECT created_at AS c FROM app LIMIT 1",
                ))
                .await
                .unwrap()
                .unwrap()
                .try_get("", "c")
                .unwrap();
            let tail = stamp[19..].to_string();
            (
                format!(
                    "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) SELECT i FROM s) AS s"
                ),
                format!("strftime('%Y-%m-%d %H:%M:%S', 'now', '-' || (i % 720) || ' hours') || '{tail}'"),
                format!("strftime('%Y-%m-%d %H:%M:%S', 'now') || '{tail}'"),
            )
        }
    };
    let app_id = app.id;
    exec(
        db,
        &format!(
            "INSERT INTO webhook_event (app_id, provider, origin, event_id, event_type, format, raw_body, headers, \
             received_at, status, is_test, email, source_key, target_kind, target_id, \"transaction\", decision, attempts) \
             SELECT {app_id}, 'hotmart', 'webhook', 'bench-' || CAST(i AS TEXT), 'PURCHASE_APPROVED', 'v2', \
             CAST('{{\"id\":\"bench\"}}' AS {blob}), '{{}}', {at_hours_ago}, \
             CASE WHEN i % 50 = 0 THEN 'failed' WHEN i % 70 = 0 THEN 'unmapped' ELSE 'processed' END, {false_}, \
             'b' || CAST(i AS TEXT) || '@example.com', 'sub:SB' || CAST(i AS TEXT), 'plan', {plan}, \
             'HPB' || CAST(i AS TEXT), 'grant', 1 FROM {series}",
            blob = if backend == sea_orm::DbBackend::Postgres { "bytea" } else { "BLOB" },
            false_ = if backend == sea_orm::DbBackend::Postgres { "false" } else { "0" },
        ),
    )
    .await;
    exec(
        db,
        &format!(
            "INSERT INTO buyer (app_id, email, name, created_at, updated_at) \
             SELECT {app_id}, 'b' || CAST(i AS TEXT) || '@example.com', 'Comprador ' || CAST(i AS TEXT), {now}, {now} FROM {series}"
        ),
    )
    .await;
    exec(
        db,
        &format!(
            "INSERT INTO buyer_subscriber_code (app_id, buyer_id, code, created_at) \
             SELECT app_id, id, 'SB' || substr(email, 2, length(email) - 13), created_at FROM buyer WHERE app_id = {app_id}"
        ),
    )
    .await;
    exec(
        db,
        &format!(
            "INSERT INTO entitlement (app_id, buyer_id, target_kind, target_id, source, status, granted_at, reason, \
             created_at, updated_at, version, expiry_noted) \
             SELECT app_id, id, 'plan', {plan}, 'sub:SB' || substr(email, 2, length(email) - 13), \
             CASE WHEN id % 40 = 0 THEN 'SUSPENDED' ELSE 'ACTIVE' END, created_at, 'bench', created_at, created_at, 1, {false_} \
             FROM buyer WHERE app_id = {app_id}",
            false_ = if backend == sea_orm::DbBackend::Postgres { "false" } else { "0" },
        ),
    )
    .await;
    let filled = t.elapsed();
    let t = Instant::now();
    while services::overview::fold(db).await.unwrap() > 0 {}
    let folded = t.elapsed();
    // Statistics, as the maintenance job keeps them on a running server.
    exec(db, "ANALYZE").await;
    println!(
        "{:<48} {:>8.1} s (the triggers' deltas folded in {:.1} s)",
        "filled",
        filled.as_secs_f64(),
        folded.as_secs_f64()
    );

    // Cursors deep in the lists: the ten-thousandth page of buyers, the thousandth of events.
    let last_event: i64 = db
        .query_one_raw(sea_orm::Statement::from_string(
            backend,
            "SELECT MAX(id) AS m FROM webhook_event",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i32>("", "m")
        .unwrap()
        .into();
    let deep_event = last_event - 100 * 1000;
    let queries: Vec<(&str, String)> = vec![
        (
            "overview (the console's)",
            "{ overview { backlog failed unmapped lastWebhookAt generatedAt eventsPerHour { at kind count } \
             changesPerDay { at kind count } holders { target { kind id name } active suspended } } }"
                .into(),
        ),
        (
            "buyers(search: \"b12\", first: 50)",
            "{ buyers(search: \"b12\", first: 50) { nodes { email name access { status } } } }".into(),
        ),
        (
            "buyers(search: subscriber code)",
            "{ buyers(search: \"SB777777\") { nodes { email } } }".into(),
        ),
        (
            "buyers(search: transaction)",
            "{ buyers(search: \"HPB777777\") { nodes { email } } }".into(),
        ),
        (
            "buyers(first: 100) { access }",
            "{ buyers(first: 100) { nodes { email access { status expiresAt } } } }".into(),
        ),
        (
            "buyers page 5,000 (first: 100)",
            format!("{{ buyers(first: 100, after: \"{}\") {{ nodes {{ email }} }} }}", n / 2),
        ),
        (
            "webhookEvents(first: 100), page 1",
            "{ webhookEvents(first: 100) { nodes { id status eventType } } }".into(),
        ),
        (
            "webhookEvents page 1,000",
            format!("{{ webhookEvents(first: 100, after: \"{deep_event}\") {{ nodes {{ id status }} }} }}"),
        ),
        (
            "webhookEvents(status: failed)",
            "{ webhookEvents(first: 100, status: \"failed\") { nodes { id } } }".into(),
        ),
        (
            "webhookEvents(email: …)",
            "{ webhookEvents(first: 100, email: \"b424242@example.com\") { nodes { id } } }".into(),
        ),
        (
            "auditLog(first: 100)",
            "{ auditLog(first: 100) { nodes { action subject { name } } } }".into(),
        ),
    ];
    let healthz = {
        let mut lat = Vec::new();
        for _ in 0..ROUNDS * 5 {
            let t = Instant::now();
            client.get(format!("{addr}/healthz")).send().await.unwrap();
            lat.push(t.elapsed());
        }
        lat.sort();
        lat
    };
    println!(
        "{:<48} p50 {:>7.2} ms  p99 {:>7.2} ms  (baseline)",
        "GET /healthz",
        pct(&healthz, 0.5),
        pct(&healthz, 0.99)
    );
    for (name, q) in queries {
        // The first ask meets a cold cache (printed apart); the percentiles are of the rest.
        let t = Instant::now();
        gql(q.clone()).await;
        let cold = t.elapsed().as_secs_f64() * 1e3;
        let mut lat = Vec::new();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            gql(q.clone()).await;
            lat.push(t.elapsed());
        }
        lat.sort();
        let p99 = pct(&lat, 0.99);
        println!(
            "{name:<48} p50 {:>7.2} ms  p99 {:>7.2} ms  first {cold:>7.2} ms  {}",
            pct(&lat, 0.5),
            p99,
            if p99 <= 50.0 {
                "(goal p99 <= 50 ms: met)"
            } else {
                "(goal p99 <= 50 ms: NOT met)"
            }
        );
    }

    // The apps' lists at the same size: a plan's holders (the fill's 1,000,000 entitlements) and
    // the changes feed (as many notifications, sequenced), a page of 1,000 at random depths.
    // (One notification per fill row: `series` counts them.)
    let feed_rows = n;
    let t = Instant::now();
    exec(
        db,
        &format!(
            "INSERT INTO notification (app_id, msg_id, event_type, entitlement_id, version, payload, fanned_out, created_at, seq) \
             SELECT {app_id}, 'msg_bench' || CAST(i AS TEXT), 'access.granted', i, 1, \
             '{{\"data\":{{\"access\":{{\"active\":true,\"status\":\"ACTIVE\"}},\"buyer\":{{\"email\":\"b' || CAST(i AS TEXT) || '@example.com\"}},\"entitlement\":{{\"id\":' || CAST(i AS TEXT) || ',\"version\":1}}}},\"timestamp\":\"2026-12-06T00:00:00.000Z\",\"type\":\"access.granted\"}}', \
             {true_}, {now}, i FROM {series}",
            true_ = if backend == sea_orm::DbBackend::Postgres { "true" } else { "1" },
        ),
    )
    .await;
    exec(db, "ANALYZE").await;
    println!("{:<48} {:>8.1} s", "feed filled", t.elapsed().as_secs_f64());
    let key = gql(
        "mutation { createApiKey(name: \"bench\", scopes: [\"access:read\", \"changes:read\"]) { secret } }".into(),
    )
    .await["data"]["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let rest = |path: String| {
        let (client, addr, key) = (client.clone(), addr.clone(), key.clone());
        async move {
            let t = Instant::now();
            let r = client
                .get(format!("{addr}{path}"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{path}: {}", r.status());
            let body: Value = r.json().await.unwrap();
            (t.elapsed(), body)
        }
    };
    // (name, path without the cursor, how deep cursors go)
    let calls = [
        (
            "GET /v1/plans/{id}/holders, 1,000 a page",
            format!("/v1/plans/{plan}/holders?limit=1000"),
            n as i64 - 2000,
        ),
        (
            "GET /v1/plans/{id}/holders?status=any, 1,000",
            format!("/v1/plans/{plan}/holders?status=any&limit=1000"),
            n as i64 - 2000,
        ),
        (
            "GET /v1/changes, 1,000 a page",
            "/v1/changes?limit=1000".to_string(),
            feed_rows as i64 - 2000,
        ),
    ];
    for (name, base, depth) in calls {
        let path = |r: usize| format!("{base}&after={}", (r as i64 * 7919) % depth);
        let (cold, first) = rest(path(1)).await;
        assert_eq!(first["data"].as_array().unwrap().len(), 1000, "{name}: a full page");
        let mut lat = Vec::new();
        for r in 0..ROUNDS {
            lat.push(rest(path(r + 2)).await.0);
        }
        lat.sort();
        let p99 = pct(&lat, 0.99);
        println!(
            "{name:<48} p50 {:>7.2} ms  p99 {:>7.2} ms  first {:>7.2} ms  {}",
            pct(&lat, 0.5),
            p99,
            cold.as_secs_f64() * 1e3,
            if p99 <= 50.0 {
                "(goal p99 <= 50 ms: met)"
            } else {
                "(goal p99 <= 50 ms: NOT met)"
            }
        );
    }
    let (took, body) = rest(format!("/v1/plans/{plan}/holders?limit=1&includeTotal=true")).await;
    println!(
        "{:<48} {:>8.1} ms (total {}, counted on request)",
        "GET /v1/plans/{id}/holders?includeTotal=true",
        took.as_secs_f64() * 1e3,
        body["total"]
    );

    // The overview under a flood: the worker's end-to-end rate with admins polling the overview
    // (4 a second, as four consoles open) against the same flood without them, alternated.
    // The worker, and the counters' fold as `serve` runs it.
    let mut worker = porteiro::jobs::Jobs::default();
    porteiro::app::start_worker(&mut worker, &state).unwrap();
    porteiro::app::start_rollups(&mut worker, &state);
    let hook = format!("{addr}/webhooks/hotmart/{}", app.webhook_key);
    let base: Value = serde_json::from_str(include_str!("../rules/fixtures/purchase_approved.json")).unwrap();
    let mut rates: Vec<(bool, f64)> = Vec::new();
    for (round, polled) in [false, true, false, true].into_iter().enumerate() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let poller = polled.then(|| {
            let (stop, client, addr, token) = (stop.clone(), client.clone(), addr.clone(), token.clone());
            tokio::spawn(async move {
                let q = "{ overview { backlog failed unmapped eventsPerHour { at kind count } \
                         changesPerDay { at kind count } holders { active } } }";
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = client
                        .post(format!("{addr}/graphql"))
                        .bearer_auth(&token)
                        .json(&json!({ "query": q }))
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success());
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        });
        let t = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..16 {
            let (client, hook, base) = (client.clone(), hook.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = w;
                while i < FLOOD {
                    let id = round * FLOOD + i;
                    let mut v = base.clone();
                    let now = chrono::Utc::now().timestamp_millis();
                    v["id"] = json!(format!("flood-{id}"));
                    v["creation_date"] = json!(now);
                    v["data"]["purchase"]["approved_date"] = json!(now);
                    v["data"]["purchase"]["date_next_charge"] = json!(now + 30 * 86_400_000i64);
                    v["data"]["purchase"]["transaction"] = json!(format!("HPFLOOD{id:08}"));
                    v["data"]["subscription"]["subscriber"]["code"] = json!(format!("SBF{id:08}"));
                    v["data"]["buyer"]["email"] = json!(format!("flood{id}@example.com"));
                    let status = client
                        .post(&hook)
                        .header("X-HOTMART-HOTTOK", HOTTOK)
                        .header("content-type", "application/json")
                        .body(v.to_string())
                        .send()
                        .await
                        .unwrap()
                        .status();
                    assert!(status.is_success(), "{status}");
                    i += 16;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        loop {
            let pending: i64 = db
                .query_one_raw(sea_orm::Statement::from_string(
                    backend,
                    "SELECT COUNT(*) AS n FROM webhook_event WHERE status = 'pending'",
                ))
                .await
                .unwrap()
                .unwrap()
                .try_get("", "n")
                .unwrap();
            if pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rate = FLOOD as f64 / t.elapsed().as_secs_f64();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(p) = poller {
            p.await.unwrap();
        }
        println!(
            "{:<48} {:>8.0} sales/s end to end ({FLOOD} sales, 16 at a time, worker running)",
            if polled {
                "flood, overview polled 4 times a second"
            } else {
                "flood, nobody looking (baseline)"
            },
            rate
        );
        rates.push((polled, rate));
    }
    let mean = |polled: bool| {
        let r: Vec<f64> = rates.iter().filter(|x| x.0 == polled).map(|x| x.1).collect();
        r.iter().sum::<f64>() / r.len() as f64
    };
    println!(
        "{:<48} {:>8.2}x (goal: equal within noise)",
        "flood rate, polled / baseline",
        mean(true) / mean(false)
    );
    worker.stop().await;
}

//! A real server on port 0 over a fresh database per test (SQLite file, or a new PostgreSQL
//! database when PORTEIRO_TEST_DATABASE_URL is set).
use std::path::PathBuf;

use porteiro::auth::{self, Role};
use porteiro::config::Settings;
use porteiro::{AppState, services};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tokio::sync::watch;

pub const HOTTOK: &str = "SYNTHETICHOTTOKabcdefghijklmnopqrst0001234";
pub const CLIENT_ID: &str = "3f2a9c1e-0b7d-4e8a-9c55-1d2e3f4a5b6c";
pub const CLIENT_SECRET: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

pub struct TestApp {
    pub addr: String,
    pub state: AppState,
    pub client: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    shutdown: watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<()>>,
}

pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("rules/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A fixture with some JSON fields replaced (paths as `data.purchase.transaction`).
pub fn fixture_with(name: &str, edits: &[(&str, Value)]) -> String {
    let v: Value = serde_json::from_str(&fixture(name)).unwrap();
    edited(v, edits)
}

fn edited(mut v: Value, edits: &[(&str, Value)]) -> String {
    for (path, value) in edits {
        let mut cur = &mut v;
        let parts: Vec<&str> = path.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            cur = cur.get_mut(*p).unwrap_or_else(|| panic!("no {p} in {path}"));
        }
        cur[parts[parts.len() - 1]] = value.clone();
    }
    v.to_string()
}

/// A server with the Hottok saved and a plan "Mensal" linked to the fixtures' product.
pub async fn app_with_plan() -> (TestApp, String) {
    let app = TestApp::spawn().await;
    app.configure_hotmart().await;
    let plan = app.create_plan("Mensal", &["4100001"]).await;
    (app, plan)
}

/// The column `v` of a PostgreSQL query's one row.
pub async fn pg_value<T: sea_orm::TryGetable>(db: &impl ConnectionTrait, sql: &str) -> T {
    db.query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "v")
        .unwrap()
}

/// Is this run using PostgreSQL?
/// A test whose precondition is missing here (root, a browser, PostgreSQL's server binaries):
/// skipped with a note, except where `CI_REQUIRE_ALL` is set (`.ci/run`), where a required test
/// that cannot run is a failure, never a pass.
/// A port free now for a server started a little later, outside the kernel's ephemeral range
/// (32768–60999 by default): no other test's `:0` listener or client socket can take it
/// meanwhile, as they could a port reserved with `:0` and freed.
pub fn free_port() -> u16 {
    (0..10_000)
        .map(|_| rand::random_range(20_000u16..30_000))
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below the ephemeral range")
}

pub fn cannot_run(why: &str) {
    if std::env::var("CI_REQUIRE_ALL").is_ok() {
        panic!("a required test could not run: {why}");
    }
    eprintln!("skipped: {why}");
}

pub fn pg_base() -> Option<String> {
    std::env::var("PORTEIRO_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

async fn fresh_database(dir: &std::path::Path) -> String {
    match pg_base() {
        Some(base) => {
            let name = format!("porteiro_t_{}", uuid::Uuid::new_v4().simple());
            let admin = Database::connect(&base)
                .await
                .expect("PostgreSQL from PORTEIRO_TEST_DATABASE_URL is reachable");
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create test database");
            admin.close().await.ok();
            let (prefix, _) = base.rsplit_once('/').expect("database URL ends in /dbname");
            format!("{prefix}/{name}")
        }
        None => format!("sqlite://{}?mode=rwc", dir.join("test.db").display()),
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// A test app whose settings are adjusted first (e.g. to point at a fake Hotmart API).
    pub async fn spawn_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
        porteiro::install_crypto_provider();
        let data_dir = tempfile::tempdir().unwrap();
        let url = fresh_database(data_dir.path()).await;
        let mut settings = Settings::for_tests(&url, data_dir.path()).unwrap();
        adjust(&mut settings);
        Self::start(settings, data_dir).await
    }

    /// A server on given settings and data directory (a restored backup's).
    pub async fn start_on(settings: Settings, data_dir: tempfile::TempDir) -> TestApp {
        Self::start(settings, data_dir).await
    }

    async fn start(settings: Settings, data_dir: tempfile::TempDir) -> TestApp {
        let state = AppState::init(settings).await.expect("state");
        let acceptor = porteiro::http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = format!("http://{}", porteiro::http::local_addr(&acceptor).unwrap());
        let (tx, rx) = watch::channel(false);
        let st = state.clone();
        let server = tokio::spawn(async move {
            porteiro::http::serve(st, acceptor, rx).await.unwrap();
        });
        TestApp {
            addr,
            state,
            client: reqwest::Client::new(),
            data_dir,
            shutdown: tx,
            server: Some(server),
        }
    }

    /// Stops the server and starts a new process-like instance on the same database and keys.
    pub async fn restart(self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    /// Like [`TestApp::restart`], with the settings adjusted first (another master key…).
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut Settings)) -> TestApp {
        let _ = self.shutdown.send(true);
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
        self.state.db.clone().close().await.ok();
        let mut settings = (*self.state.settings).clone();
        adjust(&mut settings);
        let dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap());
        Self::start(settings, dir).await
    }

    pub async fn app(&self, slug: &str) -> entity::app::Model {
        services::apps::by_slug(&self.state.db, slug).await.unwrap().unwrap()
    }

    pub async fn create_app(&self, slug: &str) -> entity::app::Model {
        services::apps::create(&self.state.db, slug, slug).await.unwrap()
    }

    pub fn token(&self, app: &str, role: Role) -> String {
        auth::issue(
            self.state.settings.jwt_secret(),
            app,
            role,
            "test",
            chrono::Duration::hours(1),
        )
        .unwrap()
    }

    pub fn admin(&self) -> String {
        self.token("default", Role::Admin)
    }

    /// The default app's admin, for calling services directly.
    pub async fn principal(&self) -> auth::Principal {
        auth::Principal {
            app_id: self.app("default").await.id,
            app_slug: "default".into(),
            role: Role::Admin,
            subject: "test".into(),
        }
    }

    /// The SQLite database file (none on PostgreSQL).
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        let p = self.data_dir.path().join("test.db");
        (self.state.db.get_database_backend() == sea_orm::DbBackend::Sqlite && p.exists()).then_some(p)
    }

    pub async fn graphql_raw(&self, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self.client.post(format!("{}/graphql", self.addr)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap())
    }

    /// Runs one operation as `token` and returns the whole response.
    pub async fn gql_as(&self, token: &str, query: &str, variables: Value) -> Value {
        self.graphql_raw(Some(token), &json!({"query": query, "variables": variables}))
            .await
            .1
    }

    /// Runs one operation as the default app's admin and returns `data`, failing on errors.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        let v = self.gql_as(&self.admin(), query, variables).await;
        assert!(v.get("errors").is_none(), "unexpected errors: {v}");
        v["data"].clone()
    }

    pub async fn webhook_url(&self, app: &str) -> String {
        format!("{}/webhooks/hotmart/{}", self.addr, self.app(app).await.webhook_key)
    }

    /// The Hottok and the REST API's credentials (Basic, Client ID, Client Secret), saved.
    pub async fn configure_hotmart_api(&self) {
        self.gql(
            "mutation($h: String!, $b: String!, $i: String!, $s: String!) { saveHotmartIntegration(input: {hottok: $h, basic: $b, clientId: $i, clientSecret: $s}) { hottok { set } } }",
            json!({
                "h": HOTTOK,
                "b": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{CLIENT_ID}:{CLIENT_SECRET}")),
                "i": CLIENT_ID,
                "s": CLIENT_SECRET,
            }),
        )
        .await;
    }

    pub async fn configure_hotmart(&self) {
        self.gql(
            "mutation($h: String!) { saveHotmartIntegration(input: {hottok: $h}) { hottok { set } } }",
            json!({"h": HOTTOK}),
        )
        .await;
    }

    /// POSTs a v2 JSON body with the right Hottok to the default app.
    pub async fn post_hotmart(&self, body: &str) -> (u16, Value) {
        self.post_hotmart_with(body, Some(HOTTOK), "application/json").await
    }

    /// POSTs a v2 JSON body with the test Hottok to another app's webhook URL.
    pub async fn post_hotmart_to(&self, app: &str, body: &str) -> (u16, Value) {
        self.post_to(app, body, Some(HOTTOK), "application/json").await
    }

    pub async fn post_hotmart_with(&self, body: &str, hottok: Option<&str>, content_type: &str) -> (u16, Value) {
        self.post_to("default", body, hottok, content_type).await
    }

    async fn post_to(&self, app: &str, body: &str, hottok: Option<&str>, content_type: &str) -> (u16, Value) {
        let url = self.webhook_url(app).await;
        let mut req = self
            .client
            .post(url)
            .header("content-type", content_type)
            .body(body.to_string());
        if let Some(h) = hottok {
            req = req.header("X-HOTMART-HOTTOK", h);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let body = res.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Processes everything in the inbox, deterministically.
    pub async fn process_inbox(&self) -> usize {
        porteiro::pipeline::worker::drain(&self.state).await.unwrap()
    }

    pub async fn create_plan(&self, name: &str, product_ids: &[&str]) -> String {
        let d = self
            .gql(
                "mutation($n: String!, $p: [String!]) { createSubscriptionPlan(input: {name: $n, hotmartProductIds: $p}) { id } }",
                json!({"n": name, "p": product_ids}),
            )
            .await;
        d["createSubscriptionPlan"]["id"].as_str().unwrap().to_string()
    }

    pub async fn create_package(&self, name: &str, product_ids: &[&str], access_days: Option<i32>) -> String {
        let d = self
            .gql(
                "mutation($n: String!, $p: [String!], $d: Int) { createProductPackage(input: {name: $n, hotmartProductIds: $p, accessDays: $d}) { id } }",
                json!({"n": name, "p": product_ids, "d": access_days}),
            )
            .await;
        d["createProductPackage"]["id"].as_str().unwrap().to_string()
    }

    /// Gives the default app a paused notification endpoint: its access changes are then
    /// written to the outbox (an app without any endpoint writes none), and nothing is sent.
    /// A new app API key of the default app with these scopes (its secret).
    pub async fn api_key(&self, scopes: &[&str]) -> String {
        let d = self
            .gql(
                "mutation($s: [String!]!) { createApiKey(name: \"app\", scopes: $s) { secret } }",
                json!({"s": scopes}),
            )
            .await;
        d["createApiKey"]["secret"]
            .as_str()
            .unwrap_or_else(|| panic!("{d}"))
            .to_string()
    }

    /// GET on the app API with a key: the status and the JSON body (`null` when there is none).
    pub async fn rest(&self, key: &str, path_and_query: &str) -> (u16, Value) {
        let res = self
            .client
            .get(format!("{}{path_and_query}", self.addr))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// The whole changes feed after `after`, a page of `limit` at a time.
    pub async fn feed(&self, key: &str, after: &str, limit: u32) -> Vec<Value> {
        let (mut out, mut cursor) = (Vec::new(), after.to_string());
        loop {
            let (status, page) = self
                .rest(key, &format!("/v1/changes?after={cursor}&limit={limit}"))
                .await;
            assert_eq!(status, 200, "{page}");
            out.extend(page["data"].as_array().unwrap().iter().cloned());
            cursor = page["nextCursor"].as_str().unwrap().to_string();
            if page["hasMore"] == false {
                return out;
            }
        }
    }

    pub async fn paused_endpoint(&self) {
        let d = self
            .gql(
                "mutation { createNotificationEndpoint(input: {url: \"https://receiver.example/hooks\", enabled: false}) { endpoint { id } } }",
                json!({}),
            )
            .await;
        assert!(d["createNotificationEndpoint"]["endpoint"]["id"].is_string(), "{d}");
    }

    pub async fn access(&self, email: &str) -> Vec<Value> {
        let d = self
            .gql(
                "query($e: String!) { access(email: $e) { status active source expiresAt willRenew cancelAtPeriodEnd inGrace suspended target { kind id name } } }",
                json!({"e": email}),
            )
            .await;
        d["access"].as_array().unwrap().clone()
    }

    /// The Prometheus text the server exposes.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn events(&self) -> Vec<Value> {
        let d = self
            .gql("{ webhookEvents(first: 200) { nodes { id eventId eventType status decision error ruleVersion isTest } } }", json!({}))
            .await;
        d["webhookEvents"]["nodes"].as_array().unwrap().clone()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

pub fn error_code(v: &Value) -> String {
    v["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub fn error_message(v: &Value) -> String {
    v["errors"][0]["message"].as_str().unwrap_or_default().to_string()
}

/// How far the fixtures' dates are moved so their story happens now: the first approval
/// (2025-05-14) lands five days ago, whole days only, the same for every fixture of a run.
pub fn fixture_shift_ms() -> i64 {
    static SHIFT: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *SHIFT.get_or_init(|| {
        let day = 86_400_000i64;
        let target = chrono::Utc::now().timestamp_millis() - 5 * day;
        (target - 1_747_231_245_123) / day * day
    })
}

/// Moves every epoch-millisecond value of a JSON document by `shift`.
pub fn shift_times(v: &mut Value, shift: i64) {
    match v {
        Value::Number(n) => {
            if let Some(ms) = n
                .as_i64()
                .filter(|ms| (1_600_000_000_000..1_900_000_000_000).contains(ms))
            {
                *v = json!(ms + shift);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| shift_times(x, shift)),
        Value::Object(o) => o.values_mut().for_each(|x| shift_times(x, shift)),
        _ => {}
    }
}

/// A fixture whose dates are moved to now (see [`fixture_shift_ms`]), then edited; edit values
/// are taken as they are (give them already shifted with [`at`]).
pub fn recent(name: &str, edits: &[(&str, Value)]) -> String {
    let mut v: Value = serde_json::from_str(&fixture(name)).unwrap();
    shift_times(&mut v, fixture_shift_ms());
    edited(v, edits)
}

/// A fixture-era time (epoch ms) moved like [`recent`] moves fixtures.
pub fn at(fixture_ms: i64) -> i64 {
    fixture_ms + fixture_shift_ms()
}

/// An API time (RFC 3339) as epoch milliseconds.
pub fn ms_of(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .timestamp_millis()
}

/// The admin screens' counters (folded and not yet folded) against a count of the rows
/// themselves, for every app: webhook events by hour and status and by status, live holders by
/// target and status. Folds first when `fold` (both paths must agree). Access changes
/// (family `changes`) count announcements, not rows: `access_props` checks them against the
/// outbox.
pub async fn the_rollups_equal_a_recount(db: &sea_orm::DatabaseConnection, fold: bool, context: &str) {
    if fold {
        porteiro::services::overview::fold(db).await.unwrap();
    }
    let backend = db.get_database_backend();
    let hour = match backend {
        sea_orm::DbBackend::Postgres => "to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24')",
        _ => "replace(substr(received_at, 1, 13), ' ', 'T')",
    };
    let rows = |sql: String| async move {
        let mut out: Vec<(i32, String, String, i64)> = db
            .query_all_raw(sea_orm::Statement::from_string(backend, sql))
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.try_get("", "app_id").unwrap(),
                    r.try_get("", "family").unwrap(),
                    r.try_get("", "bucket").unwrap(),
                    r.try_get("", "n").unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    };
    let kept = rows(
        "SELECT app_id, family, bucket, CAST(SUM(n) AS BIGINT) AS n FROM \
         (SELECT app_id, family, bucket, n FROM rollup UNION ALL SELECT app_id, family, bucket, n FROM rollup_delta) t \
         WHERE family <> 'changes' GROUP BY app_id, family, bucket HAVING SUM(n) <> 0"
            .into(),
    )
    .await;
    let live = "status IN ('ACTIVE', 'SUSPENDED') AND NOT expiry_noted";
    let counted = rows(format!(
        "SELECT app_id, 'inbox' AS family, {hour} || '|' || status AS bucket, COUNT(*) AS n FROM webhook_event \
         GROUP BY app_id, {hour} || '|' || status \
         UNION ALL SELECT app_id, 'inbox_status', status, COUNT(*) FROM webhook_event GROUP BY app_id, status \
         UNION ALL SELECT app_id, 'holders', target_kind || ':' || target_id || '|' || status, COUNT(*) \
         FROM entitlement WHERE {live} GROUP BY app_id, target_kind || ':' || target_id || '|' || status"
    ))
    .await;
    assert_eq!(kept, counted, "the rollups drifted from the rows: {context}");
}

/// A property test's runner, seeded from `var` when it is set (to draw a failure's cases again)
/// and at random otherwise; the seed goes into every failure's message.
pub fn seeded_runner(var: &str) -> (u64, proptest::test_runner::TestRunner) {
    let seed: u64 = std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let rng = proptest::test_runner::TestRng::from_seed(
        proptest::test_runner::RngAlgorithm::ChaCha,
        &[seed.to_le_bytes(); 4].concat(),
    );
    (
        seed,
        proptest::test_runner::TestRunner::new_with_rng(proptest::test_runner::Config::default(), rng),
    )
}

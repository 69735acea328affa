//! Faults injected into the real binary: kill -9 at random moments during a flood of webhooks.
//! Every event acknowledged with a 2xx must be in the inbox after the restarts and be applied
//! exactly once. Runs on SQLite, and on PostgreSQL when the suite does.
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use rand::Rng;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;

use crate::helpers::*;

const ROUNDS: usize = 20;
const FLOODERS: usize = 8;

/// The server process; killed (SIGKILL) when dropped, whatever happened.
pub(crate) struct Server(Child);

impl Server {
    /// Sends SIGTERM (a stop, as systemd or Kubernetes asks).
    pub(crate) fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to end by itself: its exit status, or `None` after `within`.
    pub(crate) fn wait_exit(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + within;
        while std::time::Instant::now() < until {
            if let Some(s) = self.0.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start(url: &str, data_dir: &std::path::Path) -> (Server, String) {
    start_with(url, data_dir, &[])
}

/// [`start`] with more of the environment set (`PORTEIRO_*` settings).
pub(crate) fn start_with(url: &str, data_dir: &std::path::Path, env: &[(&str, &str)]) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_porteiro"))
        .arg("serve")
        .envs(env.iter().copied())
        .current_dir(data_dir)
        .env("DATABASE_URL", url)
        .env("PORTEIRO_DATA_DIR", data_dir)
        .env("PORTEIRO_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .env("PORTEIRO_NOTIFY_ALLOW_PRIVATE_TARGETS", "true")
        .env_remove("PORTEIRO_MASTER_KEY")
        .env_remove("PORTEIRO_JWT_KEY")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let server = Server(child);
    loop {
        let line = lines.next().expect("the server printed its address").unwrap();
        if let Some(a) = line.strip_prefix("porteiro listening on ") {
            let addr = a.trim().to_string();
            // Keep draining its output so it never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines.by_ref() {});
            return (server, addr);
        }
    }
}

/// A refund of `sale(id)`'s transaction.
pub(crate) fn refund(id: &str) -> String {
    fixture_with(
        "purchase_refunded.json",
        &[
            ("id", json!(format!("r{id}"))),
            ("data.purchase.transaction", json!(format!("HP{id}"))),
            ("data.buyer.email", json!(format!("{id}@example.com"))),
            // A one-off sale's refund, like the sales: no subscription.
            ("data.subscription", json!(null)),
        ],
    )
}

pub(crate) fn sale(id: &str) -> String {
    fixture_with(
        "purchase_approved_single.json",
        &[
            ("id", json!(id)),
            ("data.purchase.transaction", json!(format!("HP{id}"))),
            ("data.buyer.email", json!(format!("{id}@example.com"))),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_a_flood_loses_no_acknowledged_event_and_applies_each_once() {
    let app = TestApp::spawn().await;
    app.configure_hotmart().await;
    app.create_package("Curso", &["4100001"], None).await;
    let key = app.app("default").await.webhook_key;
    let url = app.state.settings.database_url.clone();
    let dir = app.state.settings.data_dir.clone();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let client = reqwest::Client::new();
    // An app that listens, and reads the feed afterwards.
    let rx = crate::notifications::Receiver::start(&[crate::notifications::Reply::Status(204)]).await;
    crate::notifications::endpoint(&app, &rx.url, &[]).await;
    let feed_key = app.api_key(&["access:read", "changes:read"]).await;
    for round in 0..ROUNDS {
        let (server, addr) = start(&url, &dir);
        let target = format!("{addr}/webhooks/hotmart/{key}");
        let mut flood = Vec::new();
        for f in 0..FLOODERS {
            let (client, target, acked) = (client.clone(), target.clone(), acked.clone());
            flood.push(tokio::spawn(async move {
                for n in 0.. {
                    // Every third delivery refunds the sale before it.
                    let (id, body) = if n % 3 == 2 {
                        let of = format!("k{round}x{f}x{}", n - 1);
                        (format!("r{of}"), refund(&of))
                    } else {
                        let id = format!("k{round}x{f}x{n}");
                        let body = sale(&id);
                        (id, body)
                    };
                    let res = client
                        .post(&target)
                        .header("content-type", "application/json")
                        .header("X-HOTMART-HOTTOK", HOTTOK)
                        .body(body)
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status().is_success() => acked.lock().unwrap().push(id),
                        Ok(r) => assert!(r.status().is_server_error(), "{}", r.status()),
                        // The process died under us: this request was never acknowledged.
                        Err(_) => return,
                    }
                }
            }));
        }
        let after = rand::rng().random_range(50..400);
        tokio::time::sleep(std::time::Duration::from_millis(after)).await;
        drop(server); // SIGKILL, mid-flood
        for f in flood {
            f.await.unwrap();
        }
    }
    // A last start drains what the killed processes left pending.
    let (server, _) = start(&url, &dir);
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > ROUNDS, "the flood got through: {}", acked.len());
    let db = &app.state.db;
    let mut done = false;
    for _ in 0..600 {
        let pending = entity::webhook_event::Entity::find()
            .filter(entity::webhook_event::Column::Status.eq("pending"))
            .count(db)
            .await
            .unwrap();
        if pending == 0 {
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(done, "the inbox drained after the restarts");
    // And every notification was delivered (at least once).
    for _ in 0..600 {
        let waiting = entity::notification_delivery::Entity::find()
            .filter(entity::notification_delivery::Column::Status.eq(entity::status::DeliveryStatus::Pending))
            .count(&app.state.db)
            .await
            .unwrap();
        let unsequenced = entity::notification::Entity::find()
            .filter(entity::notification::Column::FannedOut.eq(false))
            .count(&app.state.db)
            .await
            .unwrap();
        if waiting + unsequenced == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(server);
    the_feed_replayed_from_zero_is_the_access(&app, &feed_key, &rx).await;
    let rows = every_acknowledged_event_applied_once(&app, &acked).await;
    // One entitlement per transaction (a refund joins its sale's source; one whose sale was
    // refused a 503 around a kill is recorded alone).
    let sales: std::collections::HashSet<_> = rows.iter().map(|r| r.transaction.clone()).collect();
    let rights = entity::entitlement::Entity::find().all(db).await.unwrap();
    let extra: Vec<_> = rights
        .iter()
        .filter(|e| !sales.contains(&e.source.strip_prefix("txn:").map(str::to_string)))
        .collect();
    assert_eq!(rights.len(), sales.len(), "{extra:?}");
}

/// Every acknowledged event is stored once and processed, and each stored event was applied
/// exactly once (one fact each); the stored events are returned.
pub(crate) async fn every_acknowledged_event_applied_once(
    app: &TestApp,
    acked: &[String],
) -> Vec<entity::webhook_event::Model> {
    let db = &app.state.db;
    let rows = entity::webhook_event::Entity::find().all(db).await.unwrap();
    let stored: std::collections::HashMap<&str, &entity::webhook_event::Model> =
        rows.iter().map(|r| (r.event_id.as_str(), r)).collect();
    assert_eq!(stored.len(), rows.len(), "an event stored twice");
    for id in acked {
        let row = stored
            .get(id.as_str())
            .unwrap_or_else(|| panic!("acknowledged {id} was lost"));
        assert_eq!(row.status, entity::status::InboxStatus::Processed, "{id}: {row:?}");
    }
    let facts = entity::access_fact::Entity::find().all(db).await.unwrap();
    let mut per_event = std::collections::HashMap::new();
    for f in &facts {
        *per_event.entry(f.webhook_event_id).or_insert(0) += 1;
    }
    assert!(per_event.values().all(|n| *n == 1), "an event applied twice");
    assert_eq!(facts.len(), rows.len());
    rows
}

/// A client that replays the feed from cursor 0 (keeping each entitlement's highest version)
/// ends with exactly the access `/v1/access/lookup` reports for every buyer, with no version
/// missing; and the feed and the delivered notifications agree id for id.
pub(crate) async fn the_feed_replayed_from_zero_is_the_access(
    app: &TestApp,
    key: &str,
    rx: &crate::notifications::Receiver,
) {
    let feed = app.feed(key, "0", 1000).await;
    assert!(!feed.is_empty());
    let mut latest: std::collections::HashMap<i64, &serde_json::Value> = Default::default();
    let mut versions: std::collections::HashMap<i64, Vec<i64>> = Default::default();
    for c in &feed {
        let e = &c["data"]["entitlement"];
        let (id, v) = (e["id"].as_i64().unwrap(), e["version"].as_i64().unwrap());
        versions.entry(id).or_default().push(v);
        if latest
            .get(&id)
            .is_none_or(|l| l["data"]["entitlement"]["version"].as_i64().unwrap() < v)
        {
            latest.insert(id, c);
        }
    }
    for (id, v) in &versions {
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            (1..=v.len() as i64).collect::<Vec<_>>(),
            "entitlement {id}: {v:?}"
        );
    }
    // Every buyer the feed names, asked 500 at a time.
    let mut emails: Vec<String> = latest
        .values()
        .map(|c| c["data"]["buyer"]["email"].as_str().unwrap().to_string())
        .collect();
    emails.sort();
    emails.dedup();
    let mut reported: std::collections::HashMap<i64, serde_json::Value> = Default::default();
    for chunk in emails.chunks(500) {
        let res = app
            .client
            .post(format!("{}/v1/access/lookup", app.addr))
            .bearer_auth(key)
            .json(&json!({"emails": chunk}))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = res.json().await.unwrap();
        for b in body["results"].as_array().unwrap() {
            for e in b["entitlements"].as_array().unwrap() {
                reported.insert(e["id"].as_i64().unwrap(), e.clone());
            }
        }
    }
    let announced: Vec<i64> = reported
        .iter()
        .filter(|(_, e)| e["version"].as_i64().unwrap() > 0)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        announced.len(),
        latest.len(),
        "every announced entitlement is in the feed"
    );
    for (id, c) in &latest {
        let e = &reported[id];
        let heard = &c["data"]["access"];
        assert_eq!(
            (&heard["status"], &heard["active"], &heard["expiresAt"]),
            (&e["status"], &e["active"], &e["expiresAt"]),
            "entitlement {id}: feed {c} vs REST {e}"
        );
        assert_eq!(c["data"]["entitlement"]["version"], e["version"], "{id}");
    }
    // Delivered (some more than once, around a kill) = the feed, id for id, cursor for cursor.
    let mut heard: std::collections::HashMap<String, String> = Default::default();
    for g in rx.got() {
        let b = crate::notifications::body(&g);
        heard.insert(
            g.headers["webhook-id"].to_str().unwrap().to_string(),
            b["cursor"].as_str().unwrap().to_string(),
        );
    }
    let listed: std::collections::HashMap<String, String> = feed
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["cursor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(heard, listed);
}

/// A small filesystem of its own (tmpfs), unmounted when dropped. Needs root: the test is
/// skipped (with a note) elsewhere, and `.ci/run` runs it as root and requires it.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(kib: u32) -> Option<SmallDisk> {
        let dir = std::env::temp_dir().join(format!("porteiro-full-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(dir))
    }

    /// Fills what is left with a file; returns its path (delete it to free the disk).
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.flush();
        path
    }

    /// Makes the directory read-only (a read-only bind mount over it: files opened from now on
    /// open read-only, as after a filesystem's remount) or read-write again.
    fn read_only(&self, on: bool) {
        let run = |args: &[&str]| {
            let ok = Command::new(args[0])
                .args(&args[1..])
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "{args:?}");
        };
        let dir = self.0.to_str().unwrap();
        if on {
            run(&["mount", "--bind", dir]);
            run(&["mount", "-o", "remount,bind,ro"]);
        } else {
            run(&["umount", "-l"]);
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server on SQLite in a small filesystem of its own (`None` where that cannot be mounted,
/// after saying so), with the Hottok saved and the sales' product linked.
async fn app_on_small_disk(kib: u32) -> Option<(SmallDisk, TestApp)> {
    let Some(disk) = SmallDisk::mount(kib) else {
        cannot_run("mounting a small tmpfs needs root (.ci/run runs this as root)");
        return None;
    };
    let url = format!("sqlite://{}?mode=rwc", disk.0.join("p.db").display());
    let app = TestApp::spawn_with(|s| s.database_url = url.clone()).await;
    app.configure_hotmart().await;
    app.create_package("Curso", &["4100001"], None).await;
    Some((disk, app))
}

/// Posts a sale: 200 (noted in `acked`) or 503, nothing else.
async fn post_sale(app: &TestApp, id: String, acked: &mut Vec<String>) -> u16 {
    let (status, _) = app.post_hotmart(&sale(&id)).await;
    assert!(status == 200 || status == 503, "{id}: {status}");
    if status == 200 {
        acked.push(id);
    }
    status
}

/// `/readyz`: its status and body.
async fn readiness(app: &TestApp) -> (u16, String) {
    let r = app.client.get(format!("{}/readyz", app.addr)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Every acknowledged sale is stored and applied.
async fn all_applied(app: &TestApp, acked: &[String]) {
    let rows = entity::webhook_event::Entity::find().all(&app.state.db).await.unwrap();
    let stored: std::collections::HashMap<&str, &str> =
        rows.iter().map(|r| (r.event_id.as_str(), r.status.as_str())).collect();
    for id in acked {
        assert_eq!(
            stored.get(id.as_str()),
            Some(&"processed"),
            "acknowledged {id} lost or unapplied"
        );
    }
}

/// SQLite on a disk that fills up and recovers: no 500, no 2xx for what could not be written,
/// writes resume by themselves once there is room, and nothing acknowledged is lost.
#[cfg_attr(pg_backend, ignore = "SQLite only")]
#[tokio::test]
async fn a_full_disk_never_costs_an_acknowledged_event() {
    let Some((disk, app)) = app_on_small_disk(16 * 1024).await else {
        return;
    };
    let mut acked = Vec::new();
    let post = async |id: String, acked: &mut Vec<String>| post_sale(&app, id, acked).await;
    for n in 0..20 {
        post(format!("before{n}"), &mut acked).await;
    }
    let filler = disk.fill();
    let mut refused = 0;
    for n in 0..200 {
        if post(format!("full{n}"), &mut acked).await == 503 {
            refused += 1;
        }
    }
    assert!(refused > 0, "a full disk refuses writes with 503");
    let during: Vec<&String> = acked.iter().filter(|id| id.starts_with("full")).collect();
    eprintln!(
        "while the disk was full: {refused} refused, {} acknowledged",
        during.len()
    );
    std::fs::remove_file(&filler).unwrap();
    let mut resumed = 0;
    for n in 0..50 {
        if post(format!("after{n}"), &mut acked).await == 200 {
            resumed += 1;
        }
    }
    assert!(resumed > 40, "writes resume without a restart: {resumed}/50");
    let app = app.restart().await;
    app.process_inbox().await;
    all_applied(&app, &acked).await;
}

/// A PostgreSQL cluster of the test's own (initdb in a temporary directory, run as the
/// `postgres` user), so it can be stopped and started. Needs root and Debian's server binaries.
struct OwnPostgres {
    dir: std::path::PathBuf,
    port: u16,
    bin: std::path::PathBuf,
}

impl OwnPostgres {
    fn start() -> Option<OwnPostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|p| p.join("pg_ctl").exists())?;
        let dir = std::env::temp_dir().join(format!("porteiro-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).ok()?;
        Command::new("chown")
            .arg("postgres")
            .arg(&dir)
            .status()
            .ok()?
            .success()
            .then_some(())?;
        let port = free_port();
        let pg = OwnPostgres { dir, port, bin };
        pg.run("initdb", &["-A", "trust", "-U", "postgres", "-D"])
            .then_some(())?;
        pg.ctl("start").then_some(pg)
    }

    fn run(&self, tool: &str, args: &[&str]) -> bool {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .args(args)
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `start` waits until it accepts connections; `stop` is immediate (a crash, as far as
    /// clients can tell).
    fn ctl(&self, what: &str) -> bool {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        match what {
            "start" => self.run("pg_ctl", &["-w", "-l", "/dev/null", "-o", &opts, "start", "-D"]),
            _ => self.run("pg_ctl", &["-w", "-m", "immediate", "stop", "-D"]),
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.ctl("stop");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// PostgreSQL stopped under a flood and started again: only 200 or 503 (never a 500), /readyz
/// says so within its second, every acknowledged event survives and is applied once, and
/// ingest and the worker recover by themselves, without a restart.
#[cfg_attr(not(pg_backend), ignore = "PostgreSQL only: set PORTEIRO_TEST_DATABASE_URL")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_and_restarted_under_a_flood_loses_nothing() {
    let Some(pg) = OwnPostgres::start() else {
        cannot_run("a private PostgreSQL cluster needs root and the server binaries");
        return;
    };
    let url = pg.url();
    let app = TestApp::spawn_with(|s| s.database_url = url.clone()).await;
    app.configure_hotmart().await;
    app.create_package("Curso", &["4100001"], None).await;
    let mut worker = porteiro::jobs::Jobs::default();
    porteiro::app::start_worker(&mut worker, &app.state).unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let statuses: Arc<Mutex<std::collections::BTreeMap<u16, usize>>> = Arc::default();
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let slowest: Arc<Mutex<std::time::Duration>> = Arc::default();
    let target = app.webhook_url("default").await;
    let mut flood = Vec::new();
    for f in 0..FLOODERS {
        let (client, target, acked, statuses, running, slowest) = (
            app.client.clone(),
            target.clone(),
            acked.clone(),
            statuses.clone(),
            running.clone(),
            slowest.clone(),
        );
        flood.push(tokio::spawn(async move {
            let mut n = 0;
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let id = format!("pg{f}x{n}");
                let sent = std::time::Instant::now();
                let r = client
                    .post(&target)
                    .header("content-type", "application/json")
                    .header("X-HOTMART-HOTTOK", HOTTOK)
                    .body(sale(&id))
                    .send()
                    .await
                    .unwrap();
                let s = r.status().as_u16();
                if s == 503 {
                    let took = sent.elapsed();
                    let mut w = slowest.lock().unwrap();
                    *w = (*w).max(took);
                }
                *statuses.lock().unwrap().entry(s).or_default() += 1;
                if s == 200 {
                    acked.lock().unwrap().push(id);
                }
            }
        }));
    }
    let count_ok = || statuses.lock().unwrap().get(&200).copied().unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert!(pg.ctl("stop"), "stop the cluster");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let t = std::time::Instant::now();
    let ready = app.client.get(format!("{}/readyz", app.addr)).send().await.unwrap();
    let ready_took = t.elapsed();
    assert_eq!(ready.status().as_u16(), 503);
    assert_eq!(
        ready.headers().get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1"),
        "a 503 says when to try again"
    );
    assert!(ready_took < std::time::Duration::from_millis(1500), "{ready_took:?}");
    // Operators still see the counters (the 503s among them) while the database is down: the
    // scrape does not wait for the pool.
    let t = std::time::Instant::now();
    let metrics = app.client.get(format!("{}/metrics", app.addr)).send().await.unwrap();
    let metrics_took = t.elapsed();
    assert_eq!(metrics.status().as_u16(), 200);
    assert!(
        metrics_took < std::time::Duration::from_millis(1500),
        "{metrics_took:?}"
    );
    let text = metrics.text().await.unwrap();
    assert!(text.contains("porteiro_webhooks_total{outcome=\"accepted\"}"), "{text}");
    let ok_while_down = count_ok();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(count_ok(), ok_while_down, "no 2xx while the database is down");
    assert!(pg.ctl("start"), "start the cluster again");
    // Recovery by itself: acknowledgements resume within a few seconds.
    let mut resumed = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if count_ok() > ok_while_down + 20 {
            resumed = true;
            break;
        }
    }
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    for f in flood {
        f.await.unwrap();
    }
    let seen = statuses.lock().unwrap().clone();
    let slowest = *slowest.lock().unwrap();
    eprintln!("statuses over the outage: {seen:?}; slowest 503 took {slowest:?}");
    assert!(resumed, "ingest recovered without a restart: {seen:?}");
    assert!(seen.keys().all(|s| *s == 200 || *s == 503), "only 200 or 503: {seen:?}");
    // The worker recovers too: the inbox drains without help.
    let db = &app.state.db;
    let mut drained = false;
    for _ in 0..300 {
        let pending = porteiro::pipeline::inbox::pending_count(db).await.unwrap_or(u64::MAX);
        if pending == 0 {
            drained = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(drained, "the worker resumed by itself");
    let rows = entity::webhook_event::Entity::find().all(db).await.unwrap();
    let facts = entity::access_fact::Entity::find().count(db).await.unwrap();
    // Stopped only now: the worker thread's runtime drives the PostgreSQL connections it opened
    // in the shared pool, and a query on one after that runtime ends fails.
    worker.stop().await;
    let stored: std::collections::HashMap<&str, &str> =
        rows.iter().map(|r| (r.event_id.as_str(), r.status.as_str())).collect();
    let acked = acked.lock().unwrap().clone();
    for id in &acked {
        assert_eq!(stored.get(id.as_str()), Some(&"processed"), "acknowledged {id}");
    }
    assert_eq!(facts as usize, rows.len(), "each event applied once");
}

/// SQLite whose directory turns read-only (a filesystem remounted read-only after an I/O error,
/// the common case) under load, then read-write again: only 200 or 503, and writes resume
/// within seconds without a restart (the connections SQLite opened read-only meanwhile, which it
/// never reopens, are replaced); nothing acknowledged is lost.
#[cfg_attr(pg_backend, ignore = "SQLite only")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_only_episode_heals_without_a_restart() {
    let Some((disk, app)) = app_on_small_disk(64 * 1024).await else {
        return;
    };
    let mut acked = Vec::new();
    let post = async |id: String, acked: &mut Vec<String>| post_sale(&app, id, acked).await;
    for n in 0..20 {
        assert_eq!(post(format!("before{n}"), &mut acked).await, 200);
    }
    app.process_inbox().await;
    disk.read_only(true);
    // The pool as an episode leaves it: connections opened since are read-only, and those
    // opened before are busy (a long read holds one here) or gone. The older ones could still
    // write through the files they hold open, so the test takes them out of the pool, all but
    // the one it holds: SQLite shares one memory map of the WAL index per file in a process, and
    // it stays as the first connection opened it while any connection lives (were every
    // connection closed meanwhile, it would be reopened read-only; see docs/operations.md).
    let pool = app.state.db.get_sqlite_connection_pool();
    let mut kept = None;
    {
        use sea_orm::sqlx::Executor;
        loop {
            // As many as the pool lends now (a background task may hold one).
            let mut held = Vec::new();
            for _ in 0..8 {
                match tokio::time::timeout(std::time::Duration::from_secs(2), pool.acquire()).await {
                    Ok(c) => held.push(c.unwrap()),
                    Err(_) => break,
                }
            }
            let mut writable = 0;
            for mut c in held {
                let _ = c.execute("BEGIN").await;
                let wrote = c.execute("UPDATE app SET id = id").await.is_ok();
                let _ = c.execute("ROLLBACK").await;
                if wrote {
                    writable += 1;
                    if kept.is_none() {
                        kept = Some(c);
                    } else {
                        drop(c.detach());
                    }
                }
            }
            if writable == 0 {
                break;
            }
        }
    }
    assert!(
        kept.is_some(),
        "a connection opened before the episode is held through it"
    );
    let mut refused = 0;
    for n in 0..50 {
        if post(format!("ro{n}"), &mut acked).await == 503 {
            refused += 1;
        }
    }
    assert_eq!(refused, 50, "a read-only database refuses every write with 503");
    let ready = async || readiness(&app).await;
    let (status, body) = ready().await;
    assert_eq!(status, 503, "not ready while nothing can be stored: {body}");
    assert!(body.contains("could not be stored"), "says why: {body}");
    disk.read_only(false);
    // Within seconds, not after a restart.
    let mut healed = false;
    let mut last = String::new();
    for n in 0..100 {
        let id = format!("rw{n}");
        let (status, body) = app.post_hotmart(&sale(&id)).await;
        assert!(status == 200 || status == 503, "{id}: {status} {body}");
        if status == 200 {
            acked.push(id);
            healed = true;
            break;
        }
        last = body.to_string();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        healed,
        "writes resume within 10 s of the directory taking writes again; last answer {last}, readiness {:?}",
        ready().await
    );
    let mut failed = 0;
    for n in 0..100 {
        if post(format!("after{n}"), &mut acked).await != 200 {
            failed += 1;
        }
    }
    assert_eq!(failed, 0, "every write succeeds once healed");
    assert_eq!(ready().await.0, 200, "ready again");
    drop(kept);
    app.process_inbox().await;
    all_applied(&app, &acked).await;
}

/// `/readyz` is 503 with the reason while the disk is full, and 200 again once there is room,
/// even when no webhook comes to find out (it writes to check).
#[cfg_attr(pg_backend, ignore = "SQLite only")]
#[tokio::test]
async fn readiness_follows_whether_a_webhook_can_be_stored() {
    let Some((disk, app)) = app_on_small_disk(16 * 1024).await else {
        return;
    };
    let ready = async || readiness(&app).await;
    assert_eq!(ready().await.0, 200);
    let filler = disk.fill();
    let mut refused = false;
    for n in 0..200 {
        if app.post_hotmart(&sale(&format!("full{n}"))).await.0 == 503 {
            refused = true;
            break;
        }
    }
    assert!(refused, "the full disk refused a webhook");
    let (status, body) = ready().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("could not be stored"), "{body}");
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(ready().await.0, 200, "ready again without a webhook");
}

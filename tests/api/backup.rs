//! Backups and restore: a snapshot taken under a flood of webhooks restores into a fresh data
//! directory with every event acknowledged before it began, the same access, and secrets that
//! decrypt; a database restored without its key refuses to start and says why.
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use porteiro::config::{BackupKeys, BackupSchedule, Settings};
use porteiro::ops::backup::{self, Keys, Source};
use serde_json::{Value, json};

use crate::helpers::*;

fn sale(i: usize) -> String {
    let mut v: Value = serde_json::from_str(&fixture("purchase_approved.json")).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    v["creation_date"] = json!(now);
    v["data"]["purchase"]["approved_date"] = json!(now);
    v["data"]["purchase"]["date_next_charge"] = json!(now + 30 * 86_400_000i64);
    v["id"] = json!(format!("flood-{i}"));
    v["data"]["purchase"]["transaction"] = json!(format!("HPFLOOD{i:08}"));
    v["data"]["subscription"]["subscriber"]["code"] = json!(format!("SBFL{i:06}"));
    v["data"]["buyer"]["email"] = json!(format!("flood{i}@example.com"));
    v.to_string()
}

/// A store with its Hottok and API credentials saved and a plan for the fixtures' product.
async fn store() -> TestApp {
    let app = TestApp::spawn().await;
    app.configure_hotmart_api().await;
    app.create_plan("Mensal", &["4100001"]).await;
    app
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("restored.db").display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(pg_backend, ignore = "SQLite only (PostgreSQL is backed up by pg_dump: see below)")]
async fn a_backup_taken_under_a_flood_restores_every_acknowledged_event_and_the_same_access() {
    const EVENTS: usize = 1_200;
    const STREAMS: usize = 8;
    let app = store().await;
    let hook = app.webhook_url("default").await;
    let acked: Arc<Mutex<BTreeSet<usize>>> = Arc::default();
    let mut streams = Vec::new();
    for s in 0..STREAMS {
        let (client, hook, acked) = (app.client.clone(), hook.clone(), acked.clone());
        streams.push(tokio::spawn(async move {
            for i in (s..EVENTS).step_by(STREAMS) {
                let res = client
                    .post(&hook)
                    .header("content-type", "application/json")
                    .header("X-HOTMART-HOTTOK", HOTTOK)
                    .body(sale(i))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status().as_u16(), 200, "event {i}");
                acked.lock().unwrap().insert(i);
            }
        }));
    }
    // The worker runs beside the flood, as in `serve`, so the backup sees decided events too.
    let worker = {
        let state = app.state.clone();
        tokio::spawn(async move {
            loop {
                porteiro::pipeline::worker::drain(&state).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };
    while acked.lock().unwrap().len() < EVENTS / 3 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let before: BTreeSet<usize> = acked.lock().unwrap().clone();
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("nightly");
    let manifest = backup::create(&Source::of(&app.state.settings), &to, Keys::Include)
        .await
        .unwrap();
    let during = acked.lock().unwrap().len();
    for s in streams {
        s.await.unwrap();
    }
    worker.abort();
    app.process_inbox().await;
    assert!(
        during < EVENTS,
        "the backup ran while the flood went on ({} acked before it, {during} after)",
        before.len()
    );
    let counts = manifest.counts.clone().unwrap();
    assert!(
        counts.events >= before.len() as i64 && counts.events < EVENTS as i64,
        "{counts:?}"
    );
    assert!(manifest.keys_included);

    let verified = backup::verify(&to).await.unwrap();
    assert_eq!(verified.keys_open, Some(true));

    // Restore into a fresh data directory and start on it.
    let fresh = tempfile::tempdir().unwrap();
    let url = sqlite_url(fresh.path());
    let restored = backup::restore(&to, &url, fresh.path()).await.unwrap();
    assert!(restored.keys_restored);
    let again = backup::restore(&to, &url, fresh.path()).await.unwrap_err().to_string();
    assert!(again.contains("refusing to overwrite"), "{again}");
    let settings = Settings::for_tests(&url, fresh.path()).unwrap();
    let back = TestApp::start_on(settings, fresh).await;
    back.process_inbox().await;

    let db = &back.state.db;
    let stored: BTreeSet<String> = {
        use sea_orm::{EntityTrait, QuerySelect};
        entity::webhook_event::Entity::find()
            .select_only()
            .column(entity::webhook_event::Column::EventId)
            .into_tuple::<String>()
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .collect()
    };
    assert_eq!(stored.len() as i64, counts.events);
    for i in &before {
        assert!(
            stored.contains(&format!("flood-{i}")),
            "event {i}, acknowledged before the backup, is lost"
        );
        let email = format!("flood{i}@example.com");
        let (was, is) = (app.access(&email).await, back.access(&email).await);
        assert_eq!(was, is, "{email}");
        assert_eq!(is.len(), 1, "{email}: {is:?}");
        assert_eq!(is[0]["active"], json!(true), "{email}");
    }
    let app_id = back.app("default").await.id;
    let creds = porteiro::services::integration::credentials(&back.state, app_id)
        .await
        .expect("the Hotmart credentials decrypt after the restore");
    assert_eq!(creds.client_id, CLIENT_ID);
}

#[tokio::test]
#[cfg_attr(pg_backend, ignore = "SQLite only")]
async fn a_damaged_backup_fails_its_check_and_is_not_restored() {
    let app = store().await;
    app.post_hotmart(&sale(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("b");
    backup::create(&Source::of(&app.state.settings), &to, Keys::Exclude)
        .await
        .unwrap();
    let v = backup::verify(&to).await.unwrap();
    assert_eq!(v.keys_open, None, "no keys, nothing to open");
    assert!(!to.join("keys").exists());
    // One byte changed in the middle of the file.
    let file = to.join("porteiro.db");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let err = backup::verify(&to).await.unwrap_err().to_string();
    assert!(err.contains("damaged"), "{err}");
    let fresh = tempfile::tempdir().unwrap();
    assert!(
        backup::restore(&to, &sqlite_url(fresh.path()), fresh.path())
            .await
            .is_err()
    );
    assert!(
        !fresh.path().join("restored.db").exists(),
        "nothing written from a damaged backup"
    );
    // A backup never lands half-written: the name appears only once complete.
    let taken = backup::create(&Source::of(&app.state.settings), &to, Keys::Exclude)
        .await
        .unwrap_err()
        .to_string();
    assert!(taken.contains("already exists"), "{taken}");
}

fn porteiro(dir: &Path, args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_porteiro"));
    c.args(args).current_dir(dir);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PORTEIRO_")) {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// `porteiro serve`, killed after 30 s if it has not stopped by itself.
fn serve_briefly(dir: &Path, env: &[(&str, String)]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_porteiro"));
    c.arg("serve")
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PORTEIRO_")) {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
#[cfg_attr(pg_backend, ignore = "SQLite only")]
async fn the_command_line_asks_about_keys_and_a_restore_without_them_refuses_to_start() {
    let app = store().await;
    app.post_hotmart(&sale(7)).await;
    app.process_inbox().await;
    let work = tempfile::tempdir().unwrap();
    let env = vec![
        ("DATABASE_URL", app.state.settings.database_url.clone()),
        ("PORTEIRO_DATA_DIR", app.data_dir.path().display().to_string()),
    ];
    // Without a word about the keys: refused, nothing written.
    let out = porteiro(work.path(), &["backup", "--to", "b"], &env);
    assert!(!out.status.success());
    assert!(text(&out).contains("--with-keys"), "{}", text(&out));
    assert!(!work.path().join("b").exists());
    let out = porteiro(work.path(), &["backup", "--to", "b", "--without-keys"], &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("needs master key"), "{}", text(&out));
    let out = porteiro(work.path(), &["backup", "--verify", "b"], &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("intact"), "{}", text(&out));

    // Restored into an empty place, the database has no key beside it.
    let place = work.path().join("new");
    std::fs::create_dir(&place).unwrap();
    let there = vec![
        (
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", place.join("porteiro.db").display()),
        ),
        ("PORTEIRO_DATA_DIR", place.join("data").display().to_string()),
        ("PORTEIRO_BIND", format!("127.0.0.1:{}", free_port())),
        ("PORTEIRO_PUBLIC_URL", "https://porteiro.example.com".to_string()),
    ];
    let out = porteiro(&place, &["restore", "--from", "../b"], &there);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("holds no keys"), "{}", text(&out));
    let out = porteiro(&place, &["restore", "--from", "../b"], &there);
    assert!(!out.status.success());
    assert!(text(&out).contains("refusing to overwrite"), "{}", text(&out));

    let out = serve_briefly(&place, &there);
    assert!(
        !out.status.success(),
        "it must not serve without its key: {}",
        text(&out)
    );
    let said = text(&out);
    assert!(
        said.contains("sealed with master key") && said.contains("Put back the master.key"),
        "{said}"
    );
    assert!(
        !place.join("data/master.key").exists(),
        "the key generated by the refused start is not left behind"
    );

    // With its key put back, the installation checks out.
    std::fs::copy(app.data_dir.path().join("master.key"), place.join("data/master.key")).unwrap();
    let out = porteiro(&place, &["doctor", "--offline"], &there);
    let said = text(&out);
    assert!(said.contains("ok    master key"), "{said}");
    assert!(said.contains("ok    database"), "{said}");
    assert!(said.contains("ok    public URL"), "{said}");
    assert!(out.status.success(), "{said}");
}

#[tokio::test]
#[cfg_attr(pg_backend, ignore = "SQLite only")]
async fn scheduled_backups_are_taken_when_due_reported_and_pruned() {
    let app = store().await;
    let dir = tempfile::tempdir().unwrap();
    let plan = BackupSchedule {
        every: std::time::Duration::from_secs(3600),
        keep: 2,
        dir: dir.path().join("backups"),
        keys: BackupKeys::Include,
    };
    let src = Source::of(&app.state.settings);
    let first = backup::scheduled_round(&src, &plan).await.unwrap();
    assert!(first.is_some(), "the first round takes one");
    assert!(
        backup::scheduled_round(&src, &plan).await.unwrap().is_none(),
        "not due again within the period"
    );
    let metrics = app.metrics().await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("porteiro_backup_last_success_timestamp_seconds"))
        .unwrap_or_else(|| panic!("{metrics}"));
    let at: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((at - chrono::Utc::now().timestamp() as f64).abs() < 120.0, "{line}");

    // Two older ones appear; the oldest beyond the two kept go.
    for t in ["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"] {
        let at = chrono::DateTime::parse_from_rfc3339(t).unwrap().to_utc();
        backup::create(&src, &plan.dir.join(backup::scheduled_name(at)), Keys::Exclude)
            .await
            .unwrap();
    }
    std::fs::create_dir(plan.dir.join(".porteiro-x.partial-1")).unwrap();
    assert_eq!(backup::scheduled(&plan.dir).len(), 3);
    assert_eq!(backup::prune(&plan.dir, plan.keep).unwrap(), 1);
    let left: Vec<String> = backup::scheduled(&plan.dir)
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(left[0], "porteiro-20260201T000000Z", "{left:?}");
    assert_eq!(left.len(), 2);
    assert!(!plan.dir.join(".porteiro-x.partial-1").exists());
}

#[tokio::test]
#[cfg_attr(not(pg_backend), ignore = "PostgreSQL only")]
async fn postgres_is_backed_up_with_pg_dump_and_restored_with_its_instructions() {
    if std::process::Command::new("pg_dump").arg("--version").output().is_err() {
        cannot_run("pg_dump is not installed");
        return;
    }
    let app = store().await;
    app.post_hotmart(&sale(3)).await;
    app.process_inbox().await;
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("pg");
    let m = backup::create(&Source::of(&app.state.settings), &to, Keys::Include)
        .await
        .unwrap();
    assert_eq!((m.backend.as_str(), m.file.as_str()), ("postgres", "porteiro.pgdump"));
    assert_eq!(m.counts.as_ref().unwrap().events, 1);
    assert!(m.master_key_id.is_some());
    let v = backup::verify(&to).await.unwrap();
    assert_eq!(v.keys_open, Some(true));
    let err = backup::restore(&to, &app.state.settings.database_url, dir.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("pg_restore --no-owner"), "{err}");
}

//! Keys and secrets: rotation of the master key, a lost master key, what the logs may show.
use sea_orm::EntityTrait;
use serde_json::json;

use crate::helpers::*;

async fn stored_hottok(app: &TestApp) -> String {
    entity::hotmart_integration::Entity::find()
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap()
        .hottok_enc
        .unwrap()
}

#[tokio::test]
async fn the_master_key_rotates_and_every_secret_follows() {
    let app = TestApp::spawn().await;
    app.configure_hotmart().await;
    let dir = app.state.settings.data_dir.clone();
    let old_key = std::fs::read_to_string(dir.join("master.key")).unwrap();
    let before = stored_hottok(&app).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_porteiro"))
        .args(["keys", "rotate-master"])
        .current_dir(&dir)
        .env("PORTEIRO_DATA_DIR", &dir)
        .env("DATABASE_URL", &app.state.settings.database_url)
        .env_remove("PORTEIRO_MASTER_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("re-encrypted 1 secret"), "{stdout}");
    let new_key = std::fs::read_to_string(dir.join("master.key")).unwrap();
    assert_ne!(new_key, old_key);
    assert_eq!(
        std::fs::read_to_string(dir.join("master.key.previous")).unwrap(),
        old_key
    );
    assert!(
        !stdout.contains(new_key.trim()) && !stdout.contains(old_key.trim()),
        "keys are never printed"
    );
    let after = stored_hottok(&app).await;
    assert_ne!(after, before);
    // A new process with the new key (and the old one kept for reading) takes deliveries.
    let new: [u8; 32] = hex::decode(new_key.trim()).unwrap().try_into().unwrap();
    let app = app
        .restart_with(|s| {
            s.master_key = new;
            s.older_master_keys = vec![];
        })
        .await;
    assert!(after.starts_with(&format!("v2:{}:", app.state.secrets.current_key_id())));
    let (status, v) = app.post_hotmart(&fixture("purchase_approved.json")).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn a_lost_master_key_gives_503_with_a_reason_and_admins_can_overwrite_secrets() {
    let app = TestApp::spawn().await;
    app.configure_hotmart().await;
    // Started with another key, the database refuses: it says which key sealed it.
    let mut wrong = (*app.state.settings).clone();
    wrong.master_key = [9u8; 32];
    let sealed_by = app.state.secrets.current_key_id().to_string();
    let err = match porteiro::AppState::init(wrong).await {
        Ok(_) => panic!("served with a master key that is not the database's"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&format!("sealed with master key {sealed_by}")), "{err}");
    // The operator gives the old key up, explicitly, with the new key configured.
    let dir = app.state.settings.data_dir.clone();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_porteiro"))
            .args(args)
            .current_dir(&dir)
            .env("PORTEIRO_DATA_DIR", &dir)
            .env("PORTEIRO_MASTER_KEY", hex::encode([9u8; 32]))
            .env("DATABASE_URL", &app.state.settings.database_url)
            .output()
            .unwrap()
    };
    let out = run(&["keys", "reseal"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--forget-unreadable"));
    let out = run(&["keys", "reseal", "--forget-unreadable"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let app = app.restart_with(|s| s.master_key = [9u8; 32]).await;
    let (status, v) = app.post_hotmart(&fixture("purchase_approved.json")).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"], "MISCONFIGURED", "{v}");
    assert!(v["message"].as_str().unwrap().contains("master key"), "{v}");
    // The admin re-enters the secrets: saving never needs the unreadable ones.
    app.configure_hotmart_api().await;
    let (status, v) = app.post_hotmart(&fixture("purchase_approved.json")).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn a_secret_copied_into_another_app_does_not_decrypt_there() {
    let app = TestApp::spawn().await;
    app.configure_hotmart().await;
    let other = app.create_app("outra").await;
    let token = app.token("outra", porteiro::auth::Role::Admin);
    app.gql_as(
        &token,
        "mutation { saveHotmartIntegration(input: {hottok: \"OTHERHOTTOK123\"}) { hottok { set } } }",
        json!({}),
    )
    .await;
    // Someone with write access to the database copies app 1's ciphertext into app 2's row.
    let mine = stored_hottok(&app).await;
    let rows = entity::hotmart_integration::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    let theirs = rows.into_iter().find(|r| r.app_id == other.id).unwrap();
    let mut am: entity::hotmart_integration::ActiveModel = theirs.into();
    am.hottok_enc = sea_orm::Set(Some(mine));
    sea_orm::ActiveModelTrait::update(am, &app.state.db).await.unwrap();
    let (status, _) = app.post_hotmart_to("outra", &fixture("purchase_approved.json")).await;
    assert_eq!(status, 503, "the swapped value is refused, not accepted");
}

/// The service as an operator runs it: whatever reaches its log (start-up banner, access log)
/// never holds a whole webhook key.
#[tokio::test]
async fn the_webhook_key_never_reaches_the_log() {
    use std::io::{BufRead, BufReader};
    porteiro::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    let cmd = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_porteiro"));
        c.args(args)
            .current_dir(dir.path())
            .env("DATABASE_URL", &db)
            .env("PORTEIRO_DATA_DIR", dir.path().join("keys"))
            .env("PORTEIRO_BIND", "127.0.0.1:0")
            .env("RUST_LOG", "debug,sqlx=warn")
            .env_remove("PORTEIRO_MASTER_KEY")
            .env_remove("PORTEIRO_JWT_KEY");
        c
    };
    /// Kills the server even when an assertion fails first.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut server = Killed(cmd(&["serve"]).stderr(std::process::Stdio::piped()).spawn().unwrap());
    let mut lines = BufReader::new(server.0.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let addr = loop {
        let line = lines.next().expect("the server printed its address").unwrap();
        log.push_str(&line);
        log.push('\n');
        if let Some(a) = line.strip_prefix("porteiro listening on ") {
            break a.trim().to_string();
        }
    };
    let listed = String::from_utf8(cmd(&["apps", "list"]).output().unwrap().stdout).unwrap();
    let key = listed.split("/webhooks/hotmart/").nth(1).unwrap().trim().to_string();
    assert!(key.len() >= 16, "{listed}");
    let res = reqwest::Client::new()
        .post(format!("{addr}/webhooks/hotmart/{key}?x=1"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    drop(server);
    for line in lines.map_while(Result::ok) {
        log.push_str(&line);
        log.push('\n');
    }
    assert!(
        log.contains("/webhooks/hotmart/…"),
        "the request is logged, masked:\n{log}"
    );
    assert!(!log.contains(&key), "the whole key is in the log:\n{log}");
    // Written to a pipe, not a terminal: plain text, no colour codes for a file or journald.
    assert!(!log.contains('\u{1b}'), "terminal escapes in a piped log:\n{log}");
}

/// `PORTEIRO_LOG_FORMAT=json`: every line the server writes is one JSON object, and a request's
/// lines carry the id its answer returns as `x-request-id` (the caller's own, when it sends one).
#[tokio::test]
async fn json_logs_are_one_object_a_line_with_the_request_id() {
    porteiro::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let server = Killed(
        std::process::Command::new(env!("CARGO_BIN_EXE_porteiro"))
            .arg("serve")
            .current_dir(dir.path())
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display()),
            )
            .env("PORTEIRO_DATA_DIR", dir.path().join("keys"))
            .env("PORTEIRO_BIND", "127.0.0.1:0")
            .env("PORTEIRO_LOG_FORMAT", "json")
            .env("RUST_LOG", "info,sqlx=warn")
            .env_remove("PORTEIRO_MASTER_KEY")
            .env_remove("PORTEIRO_JWT_KEY")
            .stderr(log_file)
            .spawn()
            .unwrap(),
    );
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log_path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
            .collect()
    };
    let mut addr = None;
    for _ in 0..200 {
        addr = lines().iter().find_map(|l| l["address"].as_str().map(str::to_string));
        if addr.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let addr = addr.expect("the server logged its address");
    let client = reqwest::Client::new();
    let res = client.get(format!("{addr}/healthz")).send().await.unwrap();
    let minted = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(minted.len(), 32, "{minted}");
    let again = client.get(format!("{addr}/healthz")).send().await.unwrap();
    assert_ne!(
        again.headers()["x-request-id"],
        minted.as_str(),
        "every request gets its own id"
    );
    let res = client
        .get(format!("{addr}/readyz"))
        .header("x-request-id", "proxy-7f3a.1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "proxy-7f3a.1");
    // A header that is no plain token is replaced, never echoed.
    let res = client
        .get(format!("{addr}/healthz"))
        .header("x-request-id", "a b\"<script>")
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"], "a b\"<script>");
    let mut found = (false, false);
    for _ in 0..100 {
        let all = lines();
        let logged = |id: &str| {
            all.iter()
                .any(|l| l["message"] == "request" && l["span"]["request_id"] == id && l["status"] == 200)
        };
        found = (logged(&minted), logged("proxy-7f3a.1"));
        if found == (true, true) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(server);
    assert_eq!(found, (true, true), "{:#?}", lines());
    // Every line parsed (above); none holds a terminal escape.
    assert!(!std::fs::read_to_string(&log_path).unwrap().contains('\u{1b}'));
}

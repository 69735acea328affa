//! The REST API client, subscription actions and reconciliation, against a fake Hotmart.
use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine;
use serde_json::{Value, json};

use crate::fake_hotmart::{self, Fake, api_fixture, sale};
use crate::helpers::*;

const ANA: &str = "ana.teste@example.com";
const CARLOS: &str = "carlos.exemplo@example.com";

pub async fn setup() -> (TestApp, Arc<Fake>) {
    let (fake, url) = fake_hotmart::start().await;
    let app = TestApp::spawn_with(|s| {
        s.hotmart.token_url = format!("{url}/security/oauth/token");
        s.hotmart.production_base = url.clone();
        s.hotmart.sandbox_base = url.clone();
        s.hotmart.retry_base = std::time::Duration::from_millis(5);
    })
    .await;
    app.configure_hotmart().await;
    save_credentials(&app, CLIENT_SECRET).await;
    (app, fake)
}

async fn save_credentials(app: &TestApp, secret: &str) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{secret}"));
    app.gql(
        "mutation($b: String!, $i: String!, $s: String!) { saveHotmartIntegration(input: {basic: $b, clientId: $i, clientSecret: $s}) { basic { set } } }",
        json!({"b": basic, "i": CLIENT_ID, "s": secret}),
    )
    .await;
}

const RECONCILE: &str = "mutation($s: DateTime!, $d: Boolean!) { reconcile(since: $s, dryRun: $d, wait: true) { status error report { salesSeen subscriptionsSeen eventsFound eventsNew eventsKnown unmappedProducts applied drift { kind email source target beforeStatus afterStatus } } } }";

async fn reconcile(app: &TestApp, dry_run: bool) -> Value {
    let d = app
        .gql(RECONCILE, json!({"s": "2025-01-01T00:00:00Z", "d": dry_run}))
        .await;
    d["reconcile"].clone()
}

#[tokio::test]
async fn the_connection_test_reports_success_or_the_precise_reason() {
    let (app, fake) = setup().await;
    let d = app
        .gql(
            "mutation { testHotmartConnection { ok environment message } }",
            json!({}),
        )
        .await;
    assert_eq!(d["testHotmartConnection"]["ok"], true, "{d}");
    assert_eq!(d["testHotmartConnection"]["environment"], "production");
    save_credentials(&app, "00000000-0000-4000-8000-000000000000").await;
    let d = app
        .gql("mutation { testHotmartConnection { ok message } }", json!({}))
        .await;
    assert_eq!(d["testHotmartConnection"]["ok"], false);
    let msg = d["testHotmartConnection"]["message"].as_str().unwrap();
    assert!(
        msg.contains("refused the credentials") && msg.contains("sandbox"),
        "{msg}"
    );
    assert!(
        !msg.contains("00000000-0000-4000-8000-000000000000"),
        "the secret leaked into the message"
    );
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn without_credentials_the_api_features_explain_what_is_missing() {
    let app = TestApp::spawn().await;
    let v = app
        .gql_as(&app.admin(), "mutation { testHotmartConnection { ok } }", json!({}))
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    assert!(error_message(&v).contains("Client Secret"), "{v}");
}

#[tokio::test]
async fn tokens_are_cached_until_shortly_before_they_expire_and_refreshed_once_on_401() {
    let (app, fake) = setup().await;
    reconcile(&app, true).await;
    reconcile(&app, true).await;
    assert_eq!(
        fake.token_requests.load(Ordering::SeqCst),
        1,
        "one token serves both runs"
    );
    // Hotmart forgets the token: the next call gets a 401, refreshes once and succeeds.
    fake.revoke_tokens();
    assert_eq!(reconcile(&app, true).await["status"], "succeeded");
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 2);
    // A token that lives one second is never reused.
    fake.expires_in.store(1, Ordering::SeqCst);
    app.state.hotmart.forget(app.app("default").await.id).await;
    reconcile(&app, true).await;
    let before = fake.token_requests.load(Ordering::SeqCst);
    reconcile(&app, true).await;
    assert!(fake.token_requests.load(Ordering::SeqCst) > before);
}

#[tokio::test]
async fn pagination_is_followed_and_rate_limits_are_waited_out() {
    let (app, fake) = setup().await;
    app.create_package("Curso", &["4100001"], None).await;
    {
        let mut s = fake.sales.lock().unwrap();
        for i in 0..5 {
            s.push(sale(
                &format!("buyer{i}@example.com"),
                &format!("HP77000000000{i}"),
                "COMPLETE",
                1747231290000 + i,
                false,
            ));
        }
    }
    fake.page_size.store(2, Ordering::SeqCst);
    fake.rate_limited.store(2, Ordering::SeqCst);
    let r = reconcile(&app, true).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["report"]["salesSeen"], 5);
    let queries = fake.queries.lock().unwrap().clone();
    let sales_pages: Vec<&String> = queries
        .iter()
        .filter(|q| q.starts_with("/payments/api/v1/sales/history"))
        .collect();
    assert!(
        sales_pages.iter().any(|q| q.contains("page_token=4")),
        "{sales_pages:?}"
    );
    assert!(
        sales_pages.iter().all(|q| q.contains("transaction_status=REFUNDED")),
        "refunds must not be hidden"
    );
    assert_eq!(
        fake.rate_limited.load(Ordering::SeqCst),
        0,
        "the 429s were answered by retrying"
    );
}

#[tokio::test]
async fn bad_credentials_fail_the_run_with_a_clear_reason() {
    let (app, _fake) = setup().await;
    save_credentials(&app, "00000000-0000-4000-8000-000000000000").await;
    let r = reconcile(&app, true).await;
    assert_eq!(r["status"], "failed");
    assert!(r["error"].as_str().unwrap().contains("refused the credentials"), "{r}");
    let d = app
        .gql("{ reconciliationRuns { status dryRun trigger } }", json!({}))
        .await;
    assert_eq!(
        d["reconciliationRuns"][0],
        json!({"status": "failed", "dryRun": true, "trigger": "manual"})
    );
}

#[tokio::test]
async fn a_sale_whose_webhook_never_came_gets_access() {
    let (app, fake) = setup().await;
    app.create_package("Curso", &["4100001"], None).await;
    fake.sales
        .lock()
        .unwrap()
        .push(api_fixture("api_sales_history_page.json")["items"][1].clone());
    let r = reconcile(&app, true).await;
    assert_eq!(
        r["report"]["drift"],
        json!([{"kind": "MISSING_ACCESS", "email": CARLOS, "source": "txn:HP14880000000050", "target": "Curso", "beforeStatus": null, "afterStatus": "ACTIVE"}])
    );
    assert!(app.access(CARLOS).await.is_empty(), "a dry run changes nothing");
    let r = reconcile(&app, false).await;
    assert_eq!(r["report"]["applied"], true);
    assert_eq!(app.access(CARLOS).await[0]["active"], true);
    let e = app.events().await;
    assert_eq!(e[0]["eventId"], "api:HP14880000000050:PURCHASE_COMPLETE");
}

async fn ana_subscription(fake: &Fake) {
    fake.subscriptions
        .lock()
        .unwrap()
        .push(api_fixture("api_subscriptions_page.json")["items"][0].clone());
    fake.purchases.lock().unwrap().insert(
        "SBX7Q2LM".into(),
        api_fixture("api_subscription_purchases.json")
            .as_array()
            .unwrap()
            .clone(),
    );
}

#[tokio::test]
async fn a_refund_whose_webhook_never_came_loses_access_and_a_rerun_changes_nothing() {
    let (app, fake) = setup().await;
    app.create_plan("Mensal", &["4100001"]).await;
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;
    assert_eq!(app.access(ANA).await[0]["active"], true);
    ana_subscription(&fake).await;
    fake.sales
        .lock()
        .unwrap()
        .push(sale(ANA, "HP14880000000001", "REFUNDED", 1747231242000, true));
    let r = reconcile(&app, false).await;
    let drift = &r["report"]["drift"];
    assert_eq!(drift[0]["kind"], "UNEXPECTED_ACCESS", "{r}");
    assert_eq!(drift[0]["source"], "sub:SBX7Q2LM");
    assert_eq!(app.access(ANA).await[0]["status"], "REVOKED");

    let audit_before = app.gql("{ auditLog(first: 200) { nodes { id } } }", json!({})).await["auditLog"]["nodes"]
        .as_array()
        .unwrap()
        .len();
    let again = reconcile(&app, false).await;
    assert_eq!(again["report"]["eventsNew"], 0);
    assert!(again["report"]["eventsKnown"].as_i64().unwrap() > 0);
    assert_eq!(again["report"]["drift"], json!([]));
    let audit_after = app
        .gql("{ auditLog(first: 200) { nodes { id action } } }", json!({}))
        .await["auditLog"]["nodes"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(audit_after, audit_before + 1, "only the reconcile.apply summary is new");
}

#[tokio::test]
async fn reconciliation_racing_a_live_webhook_ends_in_one_consistent_state() {
    let (app, fake) = setup().await;
    app.create_plan("Mensal", &["4100001"]).await;
    ana_subscription(&fake).await;
    fake.sales
        .lock()
        .unwrap()
        .push(sale(ANA, "HP14880000000001", "APPROVED", 1747231242000, true));
    let refund = fixture("purchase_refunded.json");
    let (r, (status, _)) = tokio::join!(reconcile(&app, false), app.post_hotmart(&refund));
    assert_eq!((r["status"].as_str(), status), (Some("succeeded"), 200));
    app.process_inbox().await;
    // Approval (from the API) and refund (from the webhook): revoked, whichever landed first.
    let access = app.access(ANA).await;
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["status"], "REVOKED");
    // And the other order of the same two facts agrees.
    let again = reconcile(&app, false).await;
    assert_eq!(again["report"]["drift"], json!([]));
}

#[tokio::test]
async fn cancelling_a_subscription_calls_hotmart_and_is_audited() {
    let (app, fake) = setup().await;
    app.create_plan("Mensal", &["4100001"]).await;
    ana_subscription(&fake).await;
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;
    let q = "mutation($c: String!, $m: Boolean! = true, $r: Boolean! = false) { cancelSubscription(subscriberCode: $c, sendMail: $m, revokeNow: $r) { subscriberCode hotmartStatus revokedAccess } }";
    let d = app.gql(q, json!({"c": "sbx7q2lm", "m": false})).await;
    assert_eq!(
        d["cancelSubscription"],
        json!({"subscriberCode": "SBX7Q2LM", "hotmartStatus": "INACTIVE", "revokedAccess": 0})
    );
    assert_eq!(
        fake.actions.lock().unwrap()[0],
        (
            "cancel".to_string(),
            "SBX7Q2LM".to_string(),
            json!({"send_mail": false})
        )
    );
    assert_eq!(
        app.access(ANA).await[0]["active"],
        true,
        "access follows the webhook Hotmart sends next"
    );
    let d = app.gql(q, json!({"c": "SBX7Q2LM", "r": true})).await;
    assert_eq!(d["cancelSubscription"]["revokedAccess"], 1);
    assert_eq!(app.access(ANA).await[0]["status"], "REVOKED");
    let v = app.gql_as(&app.admin(), q, json!({"c": "NOPE0000"})).await;
    assert_eq!(error_code(&v), "NOT_FOUND");
    let d = app
        .gql(
            "mutation { reactivateSubscription(subscriberCode: \"SBX7Q2LM\", charge: true) { hotmartStatus } }",
            json!({}),
        )
        .await;
    assert_eq!(d["reactivateSubscription"]["hotmartStatus"], "ACTIVE");
    let audit = app
        .gql("{ auditLog { nodes { action } } }", json!({}))
        .await
        .to_string();
    assert!(audit.contains("subscription.cancel") && audit.contains("subscription.reactivate"));
    let viewer = app.token("default", porteiro::auth::Role::Viewer);
    let v = app.gql_as(&viewer, q, json!({"c": "SBX7Q2LM"})).await;
    assert_eq!(error_code(&v), "FORBIDDEN");
    let v = app
        .gql_as(&viewer, RECONCILE, json!({"s": "2025-01-01T00:00:00Z", "d": true}))
        .await;
    assert_eq!(error_code(&v), "FORBIDDEN");
}

#[tokio::test]
async fn reconciliation_sends_only_documented_statuses_and_names_a_refused_parameter() {
    let (app, fake) = setup().await;
    app.create_package("Curso", &["4100001"], None).await;
    // The fake refuses undocumented transaction_status values, as Hotmart does.
    let r = reconcile(&app, true).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    *fake.refuse_parameter.lock().unwrap() = Some("start_date".into());
    let r = reconcile(&app, true).await;
    assert_eq!(r["status"], "failed", "{r}");
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("parameter start_date"), "{error}");
}

/// The newest run once it is no longer running (or as it is after thirty seconds).
async fn latest_finished_run(app: &TestApp, query: &str) -> Value {
    let mut last = json!(null);
    for _ in 0..1200 {
        last = app.gql(query, json!({})).await["reconciliationRuns"][0].clone();
        if last["status"] != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    last
}

#[tokio::test]
async fn reconciliations_are_background_jobs_with_progress_that_can_be_cancelled() {
    let (app, fake) = setup().await;
    app.create_package("Curso", &["4100001"], None).await;
    let start = "mutation { reconcile(since: \"2026-01-01T00:00:00Z\", dryRun: true) { id status stage } }";
    let runs = "{ reconciliationRuns { id status stage progress heartbeatAt error } }";
    // Without `wait` the call returns at once and the job goes on.
    let d = app.gql(start, json!({})).await;
    assert_eq!(d["reconcile"]["status"], "running", "{d}");
    let id = d["reconcile"]["id"].clone();
    let last = latest_finished_run(&app, runs).await;
    assert_eq!(
        (&last["id"], &last["status"], &last["stage"]),
        (&id, &json!("succeeded"), &json!("done"))
    );
    assert!(last["heartbeatAt"].is_string());

    // A slow Hotmart: the run shows where it is, and an admin can stop it.
    fake.sales_delay_ms.store(300, Ordering::SeqCst);
    let d = app.gql(start, json!({})).await;
    let id = d["reconcile"]["id"].clone();
    // The stage reaches the run row with the job's heartbeat.
    let mut stage = json!(null);
    for _ in 0..100 {
        stage = app.gql(runs, json!({})).await["reconciliationRuns"][0]["stage"].clone();
        if stage == "sales" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(stage, "sales");
    let viewer = app.token("default", porteiro::auth::Role::Viewer);
    let cancel = "mutation($id: ID!) { cancelReconciliation(id: $id) { status error } }";
    let v = app.gql_as(&viewer, cancel, json!({"id": id})).await;
    assert_eq!(error_code(&v), "FORBIDDEN");
    let d = app.gql(cancel, json!({"id": id})).await;
    assert_eq!(d["cancelReconciliation"]["status"], "cancelled", "{d}");
    assert!(
        d["cancelReconciliation"]["error"]
            .as_str()
            .unwrap()
            .contains("cancelled")
    );
    let v = app.gql_as(&app.admin(), cancel, json!({"id": id})).await;
    assert_eq!(error_code(&v), "CONFLICT");

    // A request that goes away (a closed browser tab) does not take the run with it.
    let gone = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(100))
        .build()
        .unwrap()
        .post(format!("{}/graphql", app.addr))
        .bearer_auth(app.admin())
        .json(&json!({"query": start.replace("dryRun: true", "dryRun: true, wait: true")}))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up");
    let last = latest_finished_run(&app, runs).await;
    assert_eq!(last["status"], "succeeded", "{last}");
}

#[tokio::test]
async fn a_run_left_running_by_a_dead_process_is_finished_as_failed() {
    let (app, _fake) = setup().await;
    let db = &app.state.db;
    let old = chrono::Utc::now() - chrono::Duration::minutes(10);
    let row = sea_orm::ActiveModelTrait::insert(
        entity::reconciliation_run::ActiveModel {
            app_id: sea_orm::Set(app.app("default").await.id),
            trigger: sea_orm::Set("manual".into()),
            since: sea_orm::Set(old),
            until: sea_orm::Set(old),
            dry_run: sea_orm::Set(true),
            status: sea_orm::Set(entity::status::RunStatus::Running),
            started_at: sea_orm::Set(old),
            heartbeat_at: sea_orm::Set(Some(old)),
            progress: sea_orm::Set(0),
            ..Default::default()
        },
        db,
    )
    .await
    .unwrap();
    let app = app.restart().await;
    let d = app.gql("{ reconciliationRuns { id status error } }", json!({})).await;
    let run = &d["reconciliationRuns"][0];
    assert_eq!(run["id"], json!(row.id.to_string()));
    assert_eq!(run["status"], "failed");
    assert!(run["error"].as_str().unwrap().contains("interrupted"), "{run}");
}

#[tokio::test]
async fn applying_a_reconciliation_leaves_other_apps_inboxes_to_the_worker() {
    let (app, fake) = setup().await;
    app.create_package("Curso", &["4100001"], None).await;
    fake.sales.lock().unwrap().push(sale(
        ANA,
        "HP14880000000050",
        "APPROVED",
        chrono::Utc::now().timestamp_millis() - 3_600_000,
        false,
    ));
    // Another app has a delivery waiting for the worker (none runs in tests).
    app.create_app("outra").await;
    let token = app.token("outra", porteiro::auth::Role::Admin);
    app.gql_as(
        &token,
        "mutation($h: String!) { saveHotmartIntegration(input: {hottok: $h}) { hottok { set } } }",
        json!({"h": HOTTOK}),
    )
    .await;
    let (status, _) = app.post_hotmart_to("outra", &fixture("purchase_approved.json")).await;
    assert_eq!(status, 200);
    let r = reconcile(&app, false).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(app.access(ANA).await.len(), 1, "this run's own events were applied");
    let pending = app
        .gql_as(&token, "{ webhookEvents { nodes { status } } }", json!({}))
        .await;
    assert_eq!(
        pending["data"]["webhookEvents"]["nodes"][0]["status"], "pending",
        "{pending}"
    );
}

#[tokio::test]
async fn viewers_cannot_make_porteiro_call_hotmart_or_drop_its_token() {
    let (app, fake) = setup().await;
    let viewer = app.token("default", porteiro::auth::Role::Viewer);
    let before = fake.token_requests.load(Ordering::SeqCst);
    let v = app
        .gql_as(&viewer, "mutation { testHotmartConnection { ok } }", json!({}))
        .await;
    assert_eq!(error_code(&v), "FORBIDDEN", "{v}");
    assert_eq!(
        fake.token_requests.load(Ordering::SeqCst),
        before,
        "Hotmart was not called"
    );
}

#[tokio::test]
async fn periodic_reconciliation_runs_when_due_and_only_then() {
    let (app, fake) = setup().await;
    app.create_package("Curso", &["4100001"], None).await;
    let mut recent = api_fixture("api_sales_history_page.json")["items"][1].clone();
    recent["purchase"]["approved_date"] = json!(chrono::Utc::now().timestamp_millis() - 3_600_000);
    fake.sales.lock().unwrap().push(recent);
    let v = app
        .gql_as(
            &app.admin(),
            "mutation { saveHotmartIntegration(input: {reconcileEveryMinutes: 5}) { reconcileEveryMinutes } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    assert_eq!(
        porteiro::services::reconcile::run_due(&app.state).await.unwrap(),
        0,
        "off by default"
    );
    app.gql(
        "mutation { saveHotmartIntegration(input: {reconcileEveryMinutes: 60}) { reconcileEveryMinutes } }",
        json!({}),
    )
    .await;
    assert_eq!(porteiro::services::reconcile::run_due(&app.state).await.unwrap(), 1);
    assert_eq!(
        porteiro::services::reconcile::run_due(&app.state).await.unwrap(),
        0,
        "not due again yet"
    );
    assert_eq!(app.access(CARLOS).await[0]["active"], true);
    let d = app
        .gql(
            "{ reconciliationRuns { trigger dryRun report { applied } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        d["reconciliationRuns"][0],
        json!({"trigger": "schedule", "dryRun": false, "report": {"applied": true}})
    );
}

#[tokio::test]
async fn doctor_asks_hotmart_whether_the_credentials_are_accepted() {
    use porteiro::ops::doctor::{Level, examine};
    let (app, _fake) = setup().await;
    let report = examine((*app.state.settings).clone(), false).await;
    let api = |r: &porteiro::ops::doctor::Report| {
        r.findings
            .iter()
            .find(|f| f.check == "app default Hotmart API")
            .cloned()
            .unwrap_or_else(|| panic!("{r}"))
    };
    let found = api(&report);
    assert_eq!(found.level, Level::Ok, "{report}");
    assert!(found.detail.contains("accepted"), "{report}");
    // Offline, nothing is asked.
    let offline = examine((*app.state.settings).clone(), true).await;
    assert!(api(&offline).detail.contains("--offline"), "{offline}");
    // Credentials Hotmart refuses are a problem, said as Hotmart's refusal.
    save_credentials(&app, "00000000-0000-4000-8000-000000000000").await;
    app.state.hotmart.forget(app.app("default").await.id).await;
    let report = examine((*app.state.settings).clone(), false).await;
    let found = api(&report);
    assert_eq!(found.level, Level::Fail, "{report}");
    assert!(found.detail.contains("refused the credentials"), "{report}");
    assert_eq!(report.worst(), Level::Fail);
}

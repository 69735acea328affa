//! Rule scripts: saving, validation, rollback, failures that never change access, simulation.
use serde_json::json;

use crate::helpers::*;

const SAVE: &str = "mutation($t: String!, $s: String!) { saveRule(eventType: $t, source: $s) { version active } }";
const ANA: &str = "ana.teste@example.com";

#[tokio::test]
async fn a_broken_script_is_refused_with_line_and_column_and_the_active_version_stays() {
    let app = TestApp::spawn().await;
    let v = app
        .gql_as(
            &app.admin(),
            SAVE,
            json!({"t": "PURCHASE_APPROVED", "s": "fn decide(event, target, access) {\n  grant(\n}"}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    assert!(error_message(&v).contains("line 3"), "{v}");
    assert!(error_message(&v).contains("column"), "{v}");
    let v = app
        .gql_as(
            &app.admin(),
            SAVE,
            json!({"t": "PURCHASE_APPROVED", "s": "fn other(a) { grant() }"}),
        )
        .await;
    assert!(error_message(&v).contains("decide"), "{v}");
    // Compiles, but fails its dry run on the shipped fixtures.
    let v = app
        .gql_as(
            &app.admin(),
            SAVE,
            json!({"t": "PURCHASE_APPROVED", "s": "fn decide(e, t, a) { \"yes\" }"}),
        )
        .await;
    assert!(error_message(&v).contains("dry run"), "{v}");
    let v = app
        .gql_as(
            &app.admin(),
            SAVE,
            json!({"t": "NOT_AN_EVENT", "s": "fn decide(e, t, a) { grant() }"}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    let d = app
        .gql(
            "{ rules(eventType: \"PURCHASE_APPROVED\") { activeVersion isDefault versions { version } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        d["rules"][0],
        json!({"activeVersion": 0, "isDefault": true, "versions": []})
    );
}

#[tokio::test]
async fn saved_versions_can_be_rolled_back() {
    let app = TestApp::spawn().await;
    let d = app
        .gql(
            SAVE,
            json!({"t": "PURCHASE_PROTEST", "s": "fn decide(e, t, a) { ignore(\"we trust our buyers\") }"}),
        )
        .await;
    assert_eq!(d["saveRule"], json!({"version": 1, "active": true}));
    let d = app
        .gql(
            SAVE,
            json!({"t": "PURCHASE_PROTEST", "s": "fn decide(e, t, a) { revoke() }"}),
        )
        .await;
    assert_eq!(d["saveRule"]["version"], 2);
    app.gql(
        "mutation { activateRuleVersion(eventType: \"PURCHASE_PROTEST\", version: 1) }",
        json!({}),
    )
    .await;
    let d = app
        .gql(
            "{ rules(eventType: \"PURCHASE_PROTEST\") { activeVersion source versions { version active } } }",
            json!({}),
        )
        .await;
    assert_eq!(d["rules"][0]["activeVersion"], 1);
    assert!(d["rules"][0]["source"].as_str().unwrap().contains("trust"));
    assert_eq!(
        d["rules"][0]["versions"],
        json!([{"version": 2, "active": false}, {"version": 1, "active": true}])
    );
    app.gql(
        "mutation { activateRuleVersion(eventType: \"PURCHASE_PROTEST\", version: 0) }",
        json!({}),
    )
    .await;
    let d = app
        .gql("{ rules(eventType: \"PURCHASE_PROTEST\") { isDefault } }", json!({}))
        .await;
    assert_eq!(d["rules"][0]["isDefault"], true);
    let v = app
        .gql_as(
            &app.admin(),
            "mutation { activateRuleVersion(eventType: \"PURCHASE_PROTEST\", version: 9) }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&v), "NOT_FOUND");
}

#[tokio::test]
async fn a_custom_rule_decides_and_its_version_is_recorded() {
    let app = TestApp::spawn().await;
    app.configure_hotmart().await;
    app.create_plan("Mensal", &["4100001"]).await;
    app.gql(
        SAVE,
        json!({"t": "PURCHASE_PROTEST", "s": "fn decide(e, t, a) { revoke() }"}),
    )
    .await;
    app.post_hotmart(&fixture("purchase_approved.json")).await;
    app.post_hotmart(&fixture("purchase_protest.json")).await;
    app.process_inbox().await;
    assert_eq!(app.access(ANA).await[0]["status"], "REVOKED");
    let protest = app
        .events()
        .await
        .into_iter()
        .find(|e| e["eventType"] == "PURCHASE_PROTEST")
        .unwrap();
    assert_eq!(protest["ruleVersion"], 1);
}

async fn failing_rule_case(script: &str, needle: &str) {
    let app = TestApp::spawn().await;
    app.configure_hotmart().await;
    app.create_plan("Mensal", &["4100001"]).await;
    // Passes the dry run (fixtures use another e-mail), misbehaves on this buyer.
    app.gql(SAVE, json!({"t": "PURCHASE_APPROVED", "s": script})).await;
    let body = recent(
        "purchase_approved.json",
        &[("data.buyer.email", json!("trouble@example.com"))],
    );
    assert_eq!(app.post_hotmart(&body).await.0, 200);
    app.process_inbox().await;
    let e = &app.events().await[0];
    assert_eq!(e["status"], "failed", "{e}");
    assert!(e["error"].as_str().unwrap().contains(needle), "{e}");
    assert!(
        app.access("trouble@example.com").await.is_empty(),
        "a failing script never changes access"
    );
    // Fix the script, replay: the event was kept and now applies.
    app.gql(
        SAVE,
        json!({"t": "PURCHASE_APPROVED", "s": "fn decide(e, t, a) { grant() }"}),
    )
    .await;
    app.gql(
        "mutation($id: ID!) { replayWebhookEvent(id: $id) { status } }",
        json!({"id": e["id"]}),
    )
    .await;
    app.process_inbox().await;
    assert_eq!(app.events().await[0]["status"], "processed");
    assert_eq!(app.access("trouble@example.com").await[0]["active"], true);
}

#[tokio::test]
async fn a_looping_script_marks_the_event_failed_and_it_can_be_replayed() {
    failing_rule_case(
        "fn decide(e, t, a) { if e.email == \"trouble@example.com\" { loop { } } grant() }",
        "operations",
    )
    .await;
}

#[tokio::test]
async fn a_crashing_script_marks_the_event_failed_and_it_can_be_replayed() {
    failing_rule_case(
        "fn decide(e, t, a) {\n  if e.email == \"trouble@example.com\" { throw \"boom\"; }\n  grant()\n}",
        "boom",
    )
    .await;
}

#[tokio::test]
async fn simulate_shows_the_decision_without_changing_anything() {
    let app = TestApp::spawn().await;
    app.create_plan("Mensal", &["4100001"]).await;
    let q = "mutation($p: String!) { simulateWebhook(payload: $p) { status eventType decision target { name } ruleVersion error } }";
    let d = app.gql(q, json!({"p": fixture("purchase_refunded.json")})).await;
    assert_eq!(
        d["simulateWebhook"],
        json!({"status": "processed", "eventType": "PURCHASE_REFUNDED", "decision": "revoke", "target": {"name": "Mensal"}, "ruleVersion": 0, "error": null})
    );
    let d = app.gql(q, json!({"p": "{oops"})).await;
    assert_eq!(d["simulateWebhook"]["status"], "failed");
    assert!(app.events().await.is_empty());
    assert!(app.access(ANA).await.is_empty());
}

#[test]
fn the_cli_checks_a_directory_of_scripts() {
    let bin = env!("CARGO_BIN_EXE_porteiro");
    let dir = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new(bin)
        .args(["rules", "check"])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("purchase_approved.rhai"));
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(
        bad.path().join("purchase_refunded.rhai"),
        "fn decide(e, t, a) {\n  revoke(\n}",
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args(["rules", "check"])
        .arg(bad.path())
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line") && err.contains("column"), "{err}");
}

#[test]
fn scripts_round_trip_through_export_and_import() {
    let bin = env!("CARGO_BIN_EXE_porteiro");
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .current_dir(dir.path())
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", dir.path().join("cli.db").display()),
            )
            .env("PORTEIRO_DATA_DIR", dir.path().join("keys"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["migrate", "up"]);
    assert!(run(&["apps", "create", "--slug", "loja2", "--name", "Loja 2"]).contains("/webhooks/hotmart/"));
    assert!(run(&["apps", "list"]).contains("loja2"));
    let token = run(&["token", "--app", "loja2", "--role", "viewer", "--ttl", "30m"]);
    assert_eq!(token.trim().split('.').count(), 3, "a JWT: {token}");
    let rules = dir.path().join("rules");
    run(&["rules", "export", "--app", "loja2", rules.to_str().unwrap()]);
    let file = rules.join("purchase_protest.rhai");
    assert!(std::fs::read_to_string(&file).unwrap().contains("suspend()"));
    std::fs::write(&file, "fn decide(e, t, a) { ignore(\"disputes are handled by hand\") }").unwrap();
    let out = run(&["rules", "import", "--app", "loja2", rules.to_str().unwrap()]);
    assert!(out.contains("saved and activated PURCHASE_PROTEST version 1"), "{out}");
    assert!(out.contains("unchanged PURCHASE_APPROVED"), "{out}");
    let again = run(&["rules", "import", "--app", "loja2", rules.to_str().unwrap()]);
    assert!(again.contains("unchanged PURCHASE_PROTEST"), "{again}");
    // A draft changes nothing until activated; a backtest says what activating it would do.
    std::fs::write(&file, "fn decide(e, t, a) { suspend() }").unwrap();
    let out = run(&["rules", "import", "--draft", "--app", "loja2", rules.to_str().unwrap()]);
    assert!(
        out.contains("saved PURCHASE_PROTEST version 2 as a draft (not active)"),
        "{out}"
    );
    let out = run(&[
        "rules",
        "backtest",
        "--app",
        "loja2",
        "--event-type",
        "PURCHASE_PROTEST",
        "--version",
        "2",
    ]);
    assert!(out.contains("PURCHASE_PROTEST version 2: 0 events evaluated"), "{out}");
    // Version 2 in shadow, then out of it.
    let out = run(&[
        "rules",
        "shadow",
        "--app",
        "loja2",
        "--event-type",
        "PURCHASE_PROTEST",
        "--version",
        "2",
    ]);
    assert!(out.contains("version 2 (in shadow): 0 agreed, 0 disagreed"), "{out}");
    let out = run(&[
        "rules",
        "shadow",
        "--app",
        "loja2",
        "--event-type",
        "PURCHASE_PROTEST",
        "--off",
    ]);
    // (A version with no record, once out of the shadow, is not listed.)
    assert!(!out.contains("in shadow"), "{out}");
    assert!(run(&["replay", "--app", "loja2", "--status", "unmapped"]).contains("queued 0 event(s)"));
}

/// A draft is saved without changing anything; a backtest through the API shows who would lose
/// access, kept and listed per version; activating it does exactly that.
#[tokio::test]
async fn a_draft_is_backtested_through_the_api_before_it_is_activated() {
    let (app, _) = app_with_plan().await;
    assert_eq!(app.post_hotmart(&recent("purchase_approved.json", &[])).await.0, 200);
    app.process_inbox().await;
    let save = "mutation($s: String!) { saveRule(eventType: \"PURCHASE_APPROVED\", source: $s, activate: false) { version active } }";
    let d = app
        .gql(save, json!({"s": "fn decide(e, t, a) { ignore(\"paused sales\") }"}))
        .await;
    assert_eq!(d["saveRule"], json!({"version": 1, "active": false}));
    assert_eq!(app.access(ANA).await[0]["status"], "ACTIVE", "a draft changes nothing");
    let d = app
        .gql(
            "{ rules(eventType: \"PURCHASE_APPROVED\") { activeVersion versions { version active } } }",
            json!({}),
        )
        .await;
    assert_eq!(d["rules"][0]["activeVersion"], 0);

    // A viewer may look, not start one.
    let v = app
        .gql_as(
            &app.token("default", porteiro::auth::Role::Viewer),
            "mutation { startRuleBacktest(eventType: \"PURCHASE_APPROVED\", version: 1) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&v), "FORBIDDEN", "{v}");
    let d = app
        .gql(
            "mutation { startRuleBacktest(eventType: \"PURCHASE_APPROVED\", version: 1) { id status } }",
            json!({}),
        )
        .await;
    let id = d["startRuleBacktest"]["id"].as_i64().unwrap();
    let q = "query($id: Int!) { ruleBacktest(id: $id) { status progress total report { eventsEvaluated decisionsChanged decisionChanges { from to count } lost changes { kind before { email status } after { status } events { eventType before after } } } } }";
    let mut done = json!(null);
    for _ in 0..200 {
        done = app.gql(q, json!({"id": id})).await["ruleBacktest"].clone();
        if done["status"] != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!((done["progress"].as_i64(), done["total"].as_i64()), (Some(1), Some(1)));
    let r = &done["report"];
    assert_eq!(r["eventsEvaluated"], 1);
    assert_eq!(
        r["decisionChanges"],
        json!([{"from": "grant", "to": "ignore", "count": 1}])
    );
    assert_eq!(r["lost"], 1);
    let change = &r["changes"][0];
    assert_eq!(change["kind"], "LOST");
    assert_eq!(change["before"], json!({"email": ANA, "status": "ACTIVE"}));
    assert_eq!(change["events"][0]["after"], "ignore");
    // Listed per version, and a finished one cannot be cancelled.
    let d = app
        .gql(
            "{ ruleBacktests(eventType: \"PURCHASE_APPROVED\", version: 1) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(d["ruleBacktests"], json!([{"id": id}]));
    let v = app
        .gql_as(
            &app.admin(),
            "mutation($id: Int!) { cancelRuleBacktest(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(error_code(&v), "CONFLICT", "{v}");

    // Activated, it does what the backtest said.
    app.gql(
        "mutation { activateRuleVersion(eventType: \"PURCHASE_APPROVED\", version: 1) }",
        json!({}),
    )
    .await;
    app.process_inbox().await;
    let now = app.access(ANA).await;
    assert!(now.is_empty() || now[0]["status"] != "ACTIVE", "{now:?}");
}

/// A version in shadow is decided beside the active one on live events: nothing of it is
/// applied, agreements and disagreements are counted per version with samples, and promoting
/// it is one action.
#[tokio::test]
async fn a_shadow_version_is_decided_beside_the_active_one_and_applies_nothing() {
    let (app, _) = app_with_plan().await;
    let save =
        "mutation($s: String!) { saveRule(eventType: \"PURCHASE_APPROVED\", source: $s, activate: false) { version } }";
    let shadow = "mutation($v: Int) { setRuleShadow(eventType: \"PURCHASE_APPROVED\", version: $v) }";
    let record = "{ ruleShadow(eventType: \"PURCHASE_APPROVED\") { version current agreed disagreed samples { webhookEventId active shadow } } }";
    app.gql(save, json!({"s": "fn decide(e, t, a) { ignore(\"paused sales\") }"}))
        .await;
    app.gql(shadow, json!({"v": 1})).await;
    let sale = |i: usize| {
        recent(
            "purchase_approved.json",
            &[
                ("id", json!(format!("shadow-{i}"))),
                ("data.buyer.email", json!(format!("s{i}@example.com"))),
                ("data.purchase.transaction", json!(format!("HPSHADOW{i}"))),
                ("data.subscription.subscriber.code", json!(format!("SBSH{i}"))),
            ],
        )
    };
    for i in 0..2 {
        assert_eq!(app.post_hotmart(&sale(i)).await.0, 200);
    }
    app.process_inbox().await;
    for i in 0..2 {
        assert_eq!(
            app.access(&format!("s{i}@example.com")).await[0]["status"],
            "ACTIVE",
            "the shadow applied nothing"
        );
    }
    let d = app.gql(record, json!({})).await;
    let r = &d["ruleShadow"][0];
    assert_eq!(
        (r["version"].as_i64(), r["current"].as_bool()),
        (Some(1), Some(true)),
        "{d}"
    );
    assert_eq!(
        (r["agreed"].as_i64(), r["disagreed"].as_i64()),
        (Some(0), Some(2)),
        "{d}"
    );
    let samples = r["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2);
    assert!(samples[0]["active"].as_str().unwrap().starts_with("grant until"), "{d}");
    assert_eq!(samples[0]["shadow"], "ignore: paused sales");

    // The active version cannot be its own shadow.
    let v = app.gql_as(&app.admin(), shadow, json!({"v": 0})).await;
    assert_eq!(error_code(&v), "NOT_FOUND", "{v}");
    // Another version in shadow: the first keeps its record, the new one counts from zero.
    let default = porteiro::rules::default_script("PURCHASE_APPROVED").unwrap();
    app.gql(save, json!({"s": format!("// the same\n{default}")})).await;
    app.gql(shadow, json!({"v": 2})).await;
    assert_eq!(app.post_hotmart(&sale(2)).await.0, 200);
    app.process_inbox().await;
    let d = app.gql(record, json!({})).await;
    let got: Vec<(i64, bool, i64, i64)> = d["ruleShadow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_i64().unwrap(),
                r["current"].as_bool().unwrap(),
                r["agreed"].as_i64().unwrap(),
                r["disagreed"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [(2, true, 1, 0), (1, false, 0, 2)]);

    // Promoted: it is the active version, no longer in shadow.
    let d = app
        .gql(
            "mutation { promoteRuleShadow(eventType: \"PURCHASE_APPROVED\") }",
            json!({}),
        )
        .await;
    assert_eq!(d["promoteRuleShadow"], 2);
    let d = app
        .gql(
            "{ rules(eventType: \"PURCHASE_APPROVED\") { activeVersion versions { version active shadow } } }",
            json!({}),
        )
        .await;
    assert_eq!(d["rules"][0]["activeVersion"], 2);
    assert_eq!(
        d["rules"][0]["versions"][0],
        json!({"version": 2, "active": true, "shadow": false})
    );
    let v = app
        .gql_as(
            &app.admin(),
            "mutation { promoteRuleShadow(eventType: \"PURCHASE_APPROVED\") }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&v), "NOT_FOUND", "{v}");
}

/// `porteiro rules test DIR` runs each script against its cases offline, for the seller's CI:
/// passing cases pass, a failing one names itself and exits non-zero.
#[test]
fn rules_test_runs_the_cases_offline_and_fails_ci_on_a_wrong_decision() {
    let bin = env!("CARGO_BIN_EXE_porteiro");
    let dir = tempfile::tempdir().unwrap();
    let refund: serde_json::Value = serde_json::from_str(&fixture("purchase_refunded.json")).unwrap();
    std::fs::write(
        dir.path().join("purchase_refunded.rhai"),
        porteiro::rules::default_script("PURCHASE_REFUNDED").unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("purchase_approved.rhai"),
        porteiro::rules::default_script("PURCHASE_APPROVED").unwrap(),
    )
    .unwrap();
    let cases = |expect: &str| {
        json!([
            {"name": "a refund ends access", "payload": refund, "access": {"status": "ACTIVE"}, "expect": {"action": expect}},
            {"name": "on a package too", "payload": refund, "target": {"kind": "package", "accessDays": 365}, "expect": {"action": expect}},
        ])
        .to_string()
    };
    let cases_file = dir.path().join("purchase_refunded.cases.json");
    std::fs::write(&cases_file, cases("revoke")).unwrap();
    let test = || {
        std::process::Command::new(bin)
            .args(["rules", "test", dir.path().to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = test();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok purchase_refunded.rhai: 2 case(s)"), "{stdout}");
    assert!(stdout.contains("no cases for purchase_approved.rhai"), "{stdout}");
    std::fs::write(&cases_file, cases("grant")).unwrap();
    let out = test();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("case 1 \"a refund ends access\": expected grant, the script decided revoke"),
        "{stdout}"
    );
    assert!(stdout.contains("case 2 \"on a package too\""), "{stdout}");
}

/// A version may carry cases: saving runs them (a stored event's payload included) and refuses
/// the version when one fails, naming it; the cases are kept with the version.
#[tokio::test]
async fn saving_a_version_runs_its_cases_and_refuses_it_when_one_fails() {
    let (app, _) = app_with_plan().await;
    assert_eq!(app.post_hotmart(&recent("purchase_protest.json", &[])).await.0, 200);
    app.process_inbox().await;
    let stored = app
        .gql(
            "{ webhookEvents(eventType: \"PURCHASE_PROTEST\", first: 1) { nodes { id } } }",
            json!({}),
        )
        .await["webhookEvents"]["nodes"][0]["id"]
        .as_str()
        .unwrap()
        .parse::<i32>()
        .unwrap();
    let protest: serde_json::Value = serde_json::from_str(&fixture("purchase_protest.json")).unwrap();
    let save = "mutation($s: String!, $c: String) { saveRule(eventType: \"PURCHASE_PROTEST\", source: $s, activate: false, cases: $c) { version cases } }";
    let source = "fn decide(e, t, a) { if a != () && a.status == \"ACTIVE\" { suspend() } else { ignore(\"nothing to pause\") } }";
    let cases = |first: &str| {
        json!([
            {"name": "a dispute pauses access", "payload": protest, "access": {"status": "ACTIVE"}, "expect": {"action": first}},
            {"name": "nothing held, nothing to pause", "eventId": stored, "expect": {"action": "ignore"}},
        ])
        .to_string()
    };
    let d = app.gql(save, json!({"s": source, "c": cases("suspend")})).await;
    assert_eq!(d["saveRule"]["version"], 1);
    let kept: serde_json::Value = serde_json::from_str(d["saveRule"]["cases"].as_str().unwrap()).unwrap();
    assert_eq!(kept[1]["eventId"], stored, "a stored event stays a reference");
    assert!(kept[1].get("payload").is_none(), "{kept}");

    let v = app
        .gql_as(&app.admin(), save, json!({"s": source, "c": cases("revoke")}))
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT", "{v}");
    let m = error_message(&v);
    assert!(
        m.contains("case 1 \"a dispute pauses access\": expected revoke, the script decided suspend"),
        "{m}"
    );
    let v = app
        .gql_as(
            &app.admin(),
            save,
            json!({"s": source, "c": "[{\"name\": \"x\", \"eventId\": 999999, \"expect\": {\"action\": \"ignore\"}}]"}),
        )
        .await;
    assert!(error_message(&v).contains("no stored event 999999"), "{v}");
    let v = app
        .gql_as(&app.admin(), save, json!({"s": source, "c": "not json"}))
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT", "{v}");
    let d = app
        .gql(
            "{ rules(eventType: \"PURCHASE_PROTEST\") { versions { version } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        d["rules"][0]["versions"],
        json!([{"version": 1}]),
        "the refused versions were not saved"
    );
}

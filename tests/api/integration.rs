use base64::Engine;
use serde_json::json;

use crate::helpers::*;

const SAVE: &str = "mutation($i: SaveHotmartIntegrationInput!) { saveHotmartIntegration(input: $i) { webhookUrl environment hottok { set last4 } basic { set last4 } clientId { set last4 } clientSecret { set last4 } } }";

fn basic() -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
}

#[tokio::test]
async fn a_fresh_integration_shows_the_webhook_url_and_no_secrets() {
    let app = TestApp::spawn().await;
    let d = app
        .gql(
            "{ hotmartIntegration { webhookUrl environment verified hottok { set last4 } } }",
            json!({}),
        )
        .await;
    let key = app.app("default").await.webhook_key;
    assert_eq!(
        d["hotmartIntegration"]["webhookUrl"],
        format!("http://porteiro.test/webhooks/hotmart/{key}")
    );
    assert_eq!(d["hotmartIntegration"]["hottok"]["set"], false);
    assert_eq!(d["hotmartIntegration"]["verified"], false);
    assert_eq!(d["hotmartIntegration"]["environment"], "PRODUCTION");
}

#[tokio::test]
async fn saving_valid_credentials_shows_only_their_last_four_characters() {
    let app = TestApp::spawn().await;
    let input = json!({"hottok": HOTTOK, "basic": format!("Basic {}", basic()), "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "environment": "SANDBOX"});
    let v = app.gql_as(&app.admin(), SAVE, json!({"i": input})).await;
    let body = v.to_string();
    assert!(v.get("errors").is_none(), "{v}");
    let d = &v["data"]["saveHotmartIntegration"];
    assert_eq!(d["hottok"]["last4"], "1234");
    assert_eq!(d["clientSecret"]["last4"], &CLIENT_SECRET[CLIENT_SECRET.len() - 4..]);
    assert_eq!(d["environment"], "SANDBOX");
    for secret in [HOTTOK, CLIENT_SECRET, &basic()] {
        assert!(!body.contains(secret), "a whole secret leaked: {body}");
    }
    let audit = app
        .gql("{ auditLog { nodes { action after } } }", json!({}))
        .await
        .to_string();
    assert!(audit.contains("integration.save"));
    for secret in [HOTTOK, CLIENT_SECRET, CLIENT_ID] {
        assert!(!audit.contains(secret), "the audit log holds a secret: {audit}");
    }
}

#[tokio::test]
async fn each_wrong_field_gets_its_own_message() {
    let app = TestApp::spawn().await;
    let input = json!({"hottok": "has spaces in it", "clientId": "nope", "clientSecret": "12345"});
    let v = app.gql_as(&app.admin(), SAVE, json!({"i": input})).await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    let fields = v["errors"][0]["extensions"]["fields"].as_array().unwrap();
    let names: Vec<&str> = fields.iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(names, ["hottok", "clientId", "clientSecret"]);
    assert!(fields[1]["message"].as_str().unwrap().contains("UUID"));
}

#[tokio::test]
async fn basic_must_decode_to_exactly_the_given_pair() {
    let app = TestApp::spawn().await;
    let other = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_ID}"));
    let v = app
        .gql_as(
            &app.admin(),
            SAVE,
            json!({"i": {"basic": other, "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    assert_eq!(v["errors"][0]["extensions"]["fields"][0]["field"], "basic");
    assert!(error_message(&v).contains("Client Secret"), "{v}");
    let v = app
        .gql_as(
            &app.admin(),
            SAVE,
            json!({"i": {"basic": "not base64!", "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}}),
        )
        .await;
    assert!(error_message(&v).contains("base64"), "{v}");
    // Nothing was stored by the refused attempts.
    let d = app.gql("{ hotmartIntegration { basic { set } } }", json!({})).await;
    assert_eq!(d["hotmartIntegration"]["basic"]["set"], false);
}

#[tokio::test]
async fn partial_updates_keep_the_stored_values() {
    let app = TestApp::spawn().await;
    app.gql(
        SAVE,
        json!({"i": {"hottok": HOTTOK, "basic": basic(), "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}}),
    )
    .await;
    let d = app.gql(SAVE, json!({"i": {"environment": "SANDBOX"}})).await;
    let d = &d["saveHotmartIntegration"];
    assert_eq!(d["hottok"]["last4"], "1234");
    assert_eq!(d["basic"]["set"], true);
    assert_eq!(d["environment"], "SANDBOX");
    // A new secret alone must still agree with the stored Basic.
    let v = app
        .gql_as(
            &app.admin(),
            SAVE,
            json!({"i": {"clientSecret": "00000000-0000-4000-8000-000000000000"}}),
        )
        .await;
    assert_eq!(v["errors"][0]["extensions"]["fields"][0]["field"], "basic", "{v}");
}

#[tokio::test]
async fn secrets_are_never_stored_in_plain_text() {
    let app = TestApp::spawn().await;
    app.gql(
        SAVE,
        json!({"i": {"hottok": HOTTOK, "basic": basic(), "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}}),
    )
    .await;
    let dump = if pg_base().is_some() {
        use sea_orm::{ConnectionTrait, Statement};
        let rows = app
            .state
            .db
            .query_all_raw(Statement::from_string(app.state.db.get_database_backend(), "SELECT row_to_json(h)::text AS j FROM hotmart_integration h UNION ALL SELECT row_to_json(a)::text FROM audit_log a"))
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.try_get::<String>("", "j").unwrap())
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes()
    } else {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(app.data_dir.path()).unwrap() {
            let p = entry.unwrap().path();
            if p.file_name().unwrap().to_string_lossy().starts_with("test.db") {
                all.extend(std::fs::read(p).unwrap());
            }
        }
        all
    };
    assert!(!dump.is_empty());
    let text = String::from_utf8_lossy(&dump);
    for secret in [HOTTOK, CLIENT_SECRET, CLIENT_ID, &basic()] {
        assert!(!text.contains(secret), "{secret} is stored in plain text");
    }
}

#[tokio::test]
async fn viewers_cannot_change_the_integration() {
    let app = TestApp::spawn().await;
    let viewer = app.token("default", porteiro::auth::Role::Viewer);
    let v = app.gql_as(&viewer, SAVE, json!({"i": {"hottok": HOTTOK}})).await;
    assert_eq!(error_code(&v), "FORBIDDEN");
    let v = app
        .gql_as(&viewer, "{ hotmartIntegration { hottok { set } } }", json!({}))
        .await;
    assert_eq!(v["data"]["hotmartIntegration"]["hottok"]["set"], false);
}

#[tokio::test]
async fn refused_deliveries_are_remembered_with_their_reason_never_their_body() {
    let app = TestApp::spawn().await;
    let q = "{ hotmartIntegration { rejectedWebhooks lastRejectedAt lastRejectedReason } }";
    let body = fixture("purchase_approved.json");
    // Before any Hottok is saved.
    let (status, _) = app.post_hotmart(&body).await;
    assert_eq!(status, 401);
    let d = app.gql(q, json!({})).await;
    assert_eq!(d["hotmartIntegration"]["lastRejectedReason"], "NOT_CONFIGURED", "{d}");
    assert_eq!(d["hotmartIntegration"]["rejectedWebhooks"], 1);
    assert!(d["hotmartIntegration"]["lastRejectedAt"].is_string());
    // Saving the Hottok over the row the refusal created works as on a fresh app.
    app.configure_hotmart().await;
    let (status, _) = app.post_hotmart_with(&body, Some("WRONG"), "application/json").await;
    assert_eq!(status, 401);
    let d = app.gql(q, json!({})).await;
    assert_eq!(d["hotmartIntegration"]["lastRejectedReason"], "WRONG_HOTTOK", "{d}");
    let (status, _) = app.post_hotmart_with(&body, None, "application/json").await;
    assert_eq!(status, 401);
    let d = app.gql(q, json!({})).await;
    assert_eq!(d["hotmartIntegration"]["lastRejectedReason"], "MISSING_HOTTOK", "{d}");
    assert_eq!(d["hotmartIntegration"]["rejectedWebhooks"], 3);
    assert!(app.events().await.is_empty(), "no refused body is stored");
    let (status, _) = app.post_hotmart(&body).await;
    assert_eq!(status, 200, "the saved Hottok is the one checked");
}

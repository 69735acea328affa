//! App API keys: shown once, stored as a hash, scoped, revocable at once, per app, and never a
//! way into the admin GraphQL API.
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::*;
use porteiro::services::api_keys;

const CREATE: &str = "mutation($n: String!, $s: [String!]!) { createApiKey(name: $n, scopes: $s) { secret key { id keyId scopes name revokedAt } } }";

async fn create(app: &TestApp, token: &str, name: &str) -> (String, Value) {
    let v = app
        .gql_as(token, CREATE, json!({"n": name, "s": ["access:read"]}))
        .await;
    let c = &v["data"]["createApiKey"];
    (
        c["secret"].as_str().unwrap_or_else(|| panic!("{v}")).to_string(),
        c["key"].clone(),
    )
}

/// Every stored value of the api_key table and the audit log, as text.
async fn stored_text(app: &TestApp) -> String {
    let rows = app
        .state
        .db
        .query_all_raw(Statement::from_string(
            app.state.db.get_database_backend(),
            "SELECT name || ' ' || key_id || ' ' || secret_hash || ' ' || scopes AS t FROM api_key",
        ))
        .await
        .unwrap();
    let mut out: Vec<String> = rows.iter().map(|r| r.try_get::<String>("", "t").unwrap()).collect();
    let audit = app.gql("{ auditLog { nodes { action after } } }", json!({})).await;
    out.push(audit.to_string());
    out.join("\n")
}

#[tokio::test]
async fn a_key_is_shown_once_stored_as_a_hash_and_revoked_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let (secret, key) = create(&app, &admin, "members area").await;
    assert!(
        secret.starts_with(&format!("pk_{}_", key["keyId"].as_str().unwrap())),
        "{secret}"
    );
    assert_eq!(key["scopes"], json!(["access:read"]));

    // The list shows the key without its secret, and nothing stored holds it.
    let listed = app.gql("{ apiKeys { keyId name lastUsedAt } }", json!({})).await;
    assert!(!listed.to_string().contains(&secret));
    let stored = stored_text(&app).await;
    assert!(stored.contains(key["keyId"].as_str().unwrap()));
    assert!(!stored.contains(&secret), "the key is stored in plain text");
    // The secret part ("pk_" + 12 hex + "_" come first; base64url may itself hold '_').
    assert!(!stored.contains(&secret[16..]));

    let ok = api_keys::authenticate(&app.state, &secret).await.unwrap();
    assert_eq!(ok.app_id, app.app("default").await.id);
    assert!(ok.require(api_keys::ACCESS_READ).is_ok());
    assert!(ok.require("access:write").is_err(), "scopes are enforced");
    let used = app.gql("{ apiKeys { lastUsedAt } }", json!({})).await;
    assert!(used["apiKeys"][0]["lastUsedAt"].is_string(), "{used}");

    // A wrong secret with the right id, and a made-up key, are refused alike.
    let forged = format!("{}x", &secret[..secret.len() - 1]);
    for bad in [forged.as_str(), "pk_000000000000_abc", "nonsense", ""] {
        let e = api_keys::authenticate(&app.state, bad).await.unwrap_err();
        assert_eq!(e.code(), "UNAUTHENTICATED", "{bad}");
    }

    let v = app
        .gql(
            "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }",
            json!({"id": key["id"]}),
        )
        .await;
    assert!(v["revokeApiKey"]["revokedAt"].is_string(), "{v}");
    let e = api_keys::authenticate(&app.state, &secret).await.unwrap_err();
    assert_eq!(e.code(), "UNAUTHENTICATED", "revocation applies to the next request");
}

#[tokio::test]
async fn keys_are_per_app_admin_only_and_never_open_graphql() {
    let app = TestApp::spawn().await;
    app.create_app("outra").await;
    let (secret, key) = create(&app, &app.admin(), "site").await;

    // Another app's admin neither sees nor revokes it.
    let other = app.token("outra", porteiro::auth::Role::Admin);
    let listed = app.gql_as(&other, "{ apiKeys { keyId } }", json!({})).await;
    assert_eq!(listed["data"]["apiKeys"], json!([]));
    let (_, v) = app
        .graphql_raw(
            Some(&other),
            &json!({"query": "mutation($id: ID!) { revokeApiKey(id: $id) { id } }", "variables": {"id": key["id"]}}),
        )
        .await;
    assert_eq!(error_code(&v), "NOT_FOUND", "{v}");
    assert!(api_keys::authenticate(&app.state, &secret).await.is_ok());

    // Viewers cannot create keys; unknown scopes and empty names are refused with the field.
    let viewer = app.token("default", porteiro::auth::Role::Viewer);
    let (_, v) = app
        .graphql_raw(
            Some(&viewer),
            &json!({"query": CREATE, "variables": {"n": "x", "s": ["access:read"]}}),
        )
        .await;
    assert_eq!(error_code(&v), "FORBIDDEN", "{v}");
    for (name, scopes, field) in [
        ("x", json!(["admin"]), "scopes"),
        ("x", json!([]), "scopes"),
        (" ", json!(["access:read"]), "name"),
    ] {
        let (_, v) = app
            .graphql_raw(
                Some(&app.admin()),
                &json!({"query": CREATE, "variables": {"n": name, "s": scopes}}),
            )
            .await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{v}");
        assert!(v.to_string().contains(field), "{v}");
    }

    // The key is no admin token.
    let (_, v) = app
        .graphql_raw(Some(&secret), &json!({"query": "{ apiKeys { keyId } }"}))
        .await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED", "{v}");
}

/// A key may expire; a rotation gives a new key while the old one works until the overlap
/// ends, then is refused like an expired key. Both audited.
#[tokio::test]
async fn a_rotated_key_keeps_working_for_the_overlap_then_stops() {
    let (app, _plan) = app_with_plan().await;
    let check = |key: String| {
        let app = &app;
        async move {
            app.client
                .get(format!("{}/v1/access?email=ana@example.com", app.addr))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // An expiry in the past is refused; one in the future is kept.
    let expiring = "mutation($x: DateTime) { createApiKey(name: \"trial\", scopes: [\"access:read\"], expiresAt: $x) { secret key { id expiresAt } } }";
    let v = app
        .gql_as(&app.admin(), expiring, json!({"x": "2020-01-01T00:00:00Z"}))
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT", "{v}");
    let later = (chrono::Utc::now() + chrono::TimeDelta::days(30)).to_rfc3339();
    let d = app.gql(expiring, json!({"x": later})).await;
    let (old, id) = (
        d["createApiKey"]["secret"].as_str().unwrap().to_string(),
        d["createApiKey"]["key"]["id"].as_str().unwrap().to_string(),
    );
    assert!(d["createApiKey"]["key"]["expiresAt"].is_string(), "{d}");
    assert_eq!(check(old.clone()).await, 200);

    // Rotated with a one-second overlap: both work, then only the new one.
    let overlap = (chrono::Utc::now() + chrono::TimeDelta::milliseconds(1200)).to_rfc3339();
    let d = app
        .gql(
            "mutation($id: ID!, $u: DateTime!) { rotateApiKey(id: $id, oldKeyValidUntil: $u) { secret key { id name scopes expiresAt } } }",
            json!({"id": id, "u": overlap}),
        )
        .await;
    let new = d["rotateApiKey"]["secret"].as_str().unwrap().to_string();
    assert_eq!(d["rotateApiKey"]["key"]["name"], "trial");
    assert_eq!(d["rotateApiKey"]["key"]["scopes"], json!(["access:read"]));
    assert!(
        d["rotateApiKey"]["key"]["expiresAt"].is_string(),
        "the new key keeps the old one's end: {d}"
    );
    assert_ne!(new, old);
    assert_eq!((check(old.clone()).await, check(new.clone()).await), (200, 200));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(check(old.clone()).await, 401, "the old key outlived its overlap");
    assert_eq!(check(new.clone()).await, 200);
    // An expired key cannot be rotated again.
    let v = app
        .gql_as(
            &app.admin(),
            "mutation($id: ID!, $u: DateTime!) { rotateApiKey(id: $id, oldKeyValidUntil: $u) { secret } }",
            json!({"id": id, "u": later}),
        )
        .await;
    assert_eq!(error_code(&v), "CONFLICT", "{v}");
    let audit = app.gql("{ auditLog { nodes { action } } }", json!({})).await;
    assert!(audit.to_string().contains("api_key.rotate"), "{audit}");
    assert!(!stored_text(&app).await.contains(&new), "the new secret is not stored");
}

/// Each key has its own allowance a minute: every answer says what is left, and over it a 429
/// says when to come back; another key is not affected, and a wrong key spends nothing.
#[tokio::test]
async fn a_key_over_its_rate_limit_gets_a_429_with_retry_after() {
    let app = TestApp::spawn_with(|s| s.api_rate_limit = std::num::NonZeroU32::new(5)).await;
    let (a, b) = (app.api_key(&["access:read"]).await, app.api_key(&["access:read"]).await);
    let call = |key: String| {
        let app = &app;
        async move {
            app.client
                .get(format!("{}/v1/targets", app.addr))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
        }
    };
    let header = |r: &reqwest::Response, h: &str| r.headers().get(h).map(|v| v.to_str().unwrap().to_string());
    for left in (0..5).rev() {
        let r = call(a.clone()).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "ratelimit-limit").as_deref(), Some("5"));
        assert_eq!(header(&r, "ratelimit-remaining"), Some(left.to_string()));
        let reset: u64 = header(&r, "ratelimit-reset").unwrap().parse().unwrap();
        assert_eq!(reset, (5 - left) * 12, "each request comes back after 12 s");
    }
    let over = call(a.clone()).await;
    assert_eq!(over.status(), 429);
    let retry: u64 = header(&over, "retry-after").unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "{retry}");
    assert_eq!(header(&over, "ratelimit-remaining").as_deref(), Some("0"));
    let body: serde_json::Value = over.json().await.unwrap();
    assert_eq!(body["code"], "RATE_LIMITED", "{body}");
    assert_eq!(body["status"], 429);
    // Another key has its own allowance; a forged key spends nobody's.
    assert_eq!(call(b).await.status(), 200);
    let forged = a.rsplit_once('_').unwrap().0.to_string() + "_wrongsecret";
    let r = call(forged).await;
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "ratelimit-remaining"), None);
}

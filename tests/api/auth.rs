use porteiro::auth::Role;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn no_token_means_unauthenticated() {
    let app = TestApp::spawn().await;
    let (_, v) = app
        .graphql_raw(None, &json!({"query": "{ productPackages { id } }"}))
        .await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED");
}

#[tokio::test]
async fn bad_expired_and_foreign_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let q = json!({"query": "{ productPackages { id } }"});
    let (_, v) = app.graphql_raw(Some("not.a.jwt"), &q).await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED");
    let expired = porteiro::auth::issue(
        app.state.settings.jwt_secret(),
        "default",
        Role::Admin,
        "t",
        chrono::Duration::hours(-2),
    )
    .unwrap();
    let (_, v) = app.graphql_raw(Some(&expired), &q).await;
    assert!(error_message(&v).contains("expired"), "{v}");
    let other_key = porteiro::auth::issue(
        b"some-other-key-some-other-key-123",
        "default",
        Role::Admin,
        "t",
        chrono::Duration::hours(1),
    )
    .unwrap();
    let (_, v) = app.graphql_raw(Some(&other_key), &q).await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED");
    let ghost = app.token("ghost", Role::Admin);
    let (_, v) = app.graphql_raw(Some(&ghost), &q).await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED");
}

#[tokio::test]
async fn viewers_read_but_do_not_write() {
    let app = TestApp::spawn().await;
    app.create_package("Curso", &["1"], None).await;
    let viewer = app.token("default", Role::Viewer);
    let v = app.gql_as(&viewer, "{ productPackages { name } }", json!({})).await;
    assert_eq!(v["data"]["productPackages"][0]["name"], "Curso");
    let v = app
        .gql_as(
            &viewer,
            "mutation { createProductPackage(input: {name: \"x\"}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&v), "FORBIDDEN");
}

/// The token's app is remembered once found (every request carries the token), never while it
/// is missing: an app created after a refusal is served at once.
#[tokio::test]
async fn a_token_for_an_app_created_after_a_refusal_is_accepted() {
    let app = TestApp::spawn().await;
    let q = json!({"query": "{ productPackages { id } }"});
    let later = app.token("later", Role::Admin);
    let (_, v) = app.graphql_raw(Some(&later), &q).await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED");
    app.create_app("later").await;
    for _ in 0..2 {
        let (_, v) = app.graphql_raw(Some(&later), &q).await;
        assert_eq!(v["data"]["productPackages"], json!([]), "{v}");
    }
}

#[tokio::test]
async fn a_token_for_one_app_never_sees_another_apps_data() {
    let app = TestApp::spawn().await;
    app.create_app("other").await;
    let pkg = app.create_package("Curso da loja default", &["4100001"], None).await;
    app.gql("mutation($id: ID!) { grantAccess(email: \"a@example.com\", target: {kind: PACKAGE, id: $id}, reason: \"r\") { active } }", json!({"id": pkg})).await;
    let other = app.token("other", Role::Admin);
    let v = app.gql_as(&other, "query($id: ID!) { productPackages { id } productPackage(id: $id) { id } buyers { nodes { email } } access(email: \"a@example.com\") { active } auditLog { nodes { action } } }", json!({"id": pkg})).await;
    assert_eq!(v["data"]["productPackages"], json!([]));
    assert_eq!(v["data"]["productPackage"], json!(null));
    assert_eq!(v["data"]["buyers"]["nodes"], json!([]));
    assert_eq!(v["data"]["access"], json!([]));
    assert_eq!(v["data"]["auditLog"]["nodes"], json!([]));
    // Writing to the other app's package is NOT_FOUND, not a leak.
    let v = app
        .gql_as(
            &other,
            "mutation($id: ID!) { updateProductPackage(id: $id, input: {name: \"x\"}) { id } }",
            json!({"id": pkg}),
        )
        .await;
    assert_eq!(error_code(&v), "NOT_FOUND");
    // Product ids are per app: the same id may be linked in another store.
    let v = app
        .gql_as(
            &other,
            "mutation { createProductPackage(input: {name: \"y\", hotmartProductIds: [\"4100001\"]}) { id } }",
            json!({}),
        )
        .await;
    assert!(v.get("errors").is_none(), "{v}");
    // And it cannot grant access to the first app's package.
    let v = app.gql_as(&other, "mutation($id: ID!) { grantAccess(email: \"b@example.com\", target: {kind: PACKAGE, id: $id}, reason: \"r\") { active } }", json!({"id": pkg})).await;
    assert_eq!(error_code(&v), "NOT_FOUND");
}

#[tokio::test]
async fn batches_oversized_bodies_and_deep_queries_are_refused() {
    let app = TestApp::spawn().await;
    let token = app.admin();
    let res = app
        .client
        .post(format!("{}/graphql", app.addr))
        .bearer_auth(&token)
        .json(&json!([{"query": "{ productPackages { id } }"}, {"query": "{ productPackages { id } }"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let v: serde_json::Value = res.json().await.unwrap();
    assert!(error_message(&v).contains("batched"), "{v}");

    let huge = "x".repeat(300 * 1024);
    let res = app
        .client
        .post(format!("{}/graphql", app.addr))
        .bearer_auth(&token)
        .json(&json!({"query": format!("{{ productPackages {{ id }} }} # {huge}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 413);

    let deep = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
        "ofType { ".repeat(30),
        "} ".repeat(30)
    );
    let (_, v) = app.graphql_raw(Some(&token), &json!({"query": deep})).await;
    assert!(
        v.get("errors").is_some(),
        "a query deeper than the limit must fail: {v}"
    );

    // Shallow but wide: 400 aliases of a list cost more than the complexity budget.
    let wide: String = (0..400)
        .map(|i| format!("a{i}: productPackages {{ id name }} "))
        .collect();
    let (_, v) = app
        .graphql_raw(Some(&token), &json!({"query": format!("{{ {wide} }}")}))
        .await;
    assert!(
        error_message(&v).to_lowercase().contains("complex"),
        "a query over the complexity budget must fail: {v}"
    );
    let (_, v) = app
        .graphql_raw(Some(&token), &json!({"query": "{ a: productPackages { id name } }"}))
        .await;
    assert!(v.get("errors").is_none(), "{v}");
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let r = app.client.get(format!("{}/healthz", app.addr)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = app.client.get(format!("{}/readyz", app.addr)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = app.client.get(format!("{}/graphql", app.addr)).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("graphiql"));
}

fn introspection_query() -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/introspection_query.graphql"),
    )
    .unwrap()
}

#[tokio::test]
async fn authenticated_tools_can_introspect_with_the_standard_query() {
    let app = TestApp::spawn().await;
    let viewer = app.token("default", Role::Viewer);
    // graphql-js / graphql-core's getIntrospectionQuery, as GraphiQL and code generators send it.
    let v = app.gql_as(&viewer, &introspection_query(), json!({})).await;
    assert!(v.get("errors").is_none(), "{v}");
    let types = v["data"]["__schema"]["types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "SubscriptionPlan"));
    // A real client library (cynic) builds its own introspection query and reads the answer.
    use cynic::QueryBuilder;
    let op = cynic_introspection::IntrospectionQuery::build(());
    let (status, v) = app
        .graphql_raw(Some(&viewer), &json!({"query": op.query, "variables": op.variables}))
        .await;
    assert_eq!(status, 200, "{v}");
    let parsed: cynic::GraphQlResponse<cynic_introspection::IntrospectionQuery> = serde_json::from_value(v).unwrap();
    let schema = parsed.data.unwrap().into_schema().unwrap();
    assert_eq!(schema.query_type, "Query");
    assert!(schema.types.len() > 20);
}

#[tokio::test]
async fn introspection_keeps_its_limits_and_anonymous_callers_learn_nothing() {
    let app = TestApp::spawn().await;
    let token = app.admin();
    // Wide abuse: the same introspection a thousand times over, by aliases.
    let wide: String = (0..400)
        .map(|i| format!("a{i}: __schema {{ types {{ name }} }} "))
        .collect();
    let v = app.gql_as(&token, &format!("{{ {wide} }}"), json!({})).await;
    assert!(v.get("errors").is_some(), "complexity still applies: {v}");
    // Anonymous: no introspection, and no "did you mean" hints about field names.
    let (_, v) = app.graphql_raw(None, &json!({"query": introspection_query()})).await;
    assert!(v["data"].is_null() || v["data"]["__schema"].is_null(), "{v}");
    assert!(v.get("errors").is_some(), "{v}");
    let (_, v) = app
        .graphql_raw(None, &json!({"query": "{ productPackagez { id } }"}))
        .await;
    assert!(!v.to_string().contains("Did you mean"), "{v}");
    let (_, v) = app
        .graphql_raw(
            None,
            &json!({"query": "{ __type(name: \"SubscriptionPlan\") { name } }"}),
        )
        .await;
    assert!(v["data"].is_null() || v["data"]["__type"].is_null(), "{v}");
    // With a token, suggestions help.
    let v = app.gql_as(&token, "{ productPackagez { id } }", json!({})).await;
    assert!(v.to_string().contains("Did you mean"), "{v}");
}

#[tokio::test]
async fn a_token_valid_only_later_is_refused_now() {
    let app = TestApp::spawn().await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": "t", "app": "default", "role": "admin", "iss": "porteiro", "aud": "porteiro-admin",
        "iat": now, "exp": now + 7200, "nbf": now + 3600,
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(app.state.settings.jwt_secret()).unwrap(),
    )
    .unwrap();
    let (_, v) = app
        .graphql_raw(Some(&token), &json!({"query": "{ productPackages { id } }"}))
        .await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED", "{v}");
    assert!(error_message(&v).contains("not valid yet"), "{v}");
}

#[tokio::test]
async fn a_nul_in_any_graphql_text_is_bad_input_on_every_database() {
    let app = TestApp::spawn().await;
    for (q, vars) in [
        (
            "mutation($n: String!) { createProductPackage(input: {name: $n}) { id } }",
            json!({"n": "Curso\u{0}"}),
        ),
        (
            "mutation($e: String!) { grantAccess(email: $e, target: {kind: PACKAGE, id: \"1\"}, reason: \"x\") { status } }",
            json!({"e": "a\u{0}b@example.com"}),
        ),
    ] {
        let v = app.gql_as(&app.admin(), q, vars).await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{v}");
    }
}

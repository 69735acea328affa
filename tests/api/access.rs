use serde_json::json;

use crate::helpers::*;

const GRANT: &str = "mutation($e: String!, $id: ID!, $x: DateTime, $r: String!) { grantAccess(email: $e, target: {kind: PLAN, id: $id}, expiresAt: $x, reason: $r) { status active expiresAt source } }";

#[tokio::test]
async fn someone_who_never_bought_has_an_empty_list() {
    let app = TestApp::spawn().await;
    assert!(app.access("never@example.com").await.is_empty());
    let d = app
        .gql("{ buyer(email: \"never@example.com\") { id } }", json!({}))
        .await;
    assert_eq!(d["buyer"], json!(null));
    let v = app
        .gql_as(
            &app.admin(),
            "{ access(email: \"not an email\") { active } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
}

#[tokio::test]
async fn manual_grants_and_revokes_are_audited_with_their_reason() {
    let app = TestApp::spawn().await;
    let plan = app.create_plan("Mensal", &[]).await;
    let until = (chrono::Utc::now() + chrono::Duration::days(10)).to_rfc3339();
    let d = app
        .gql(
            GRANT,
            json!({"e": "  Ana@Example.com ", "id": plan, "x": until, "r": "support ticket 42"}),
        )
        .await;
    assert_eq!(d["grantAccess"][0]["status"], "ACTIVE");
    assert_eq!(d["grantAccess"][0]["active"], true);
    assert!(
        d["grantAccess"][0]["source"]
            .as_str()
            .unwrap()
            .starts_with("manual:plan:"),
        "{d}"
    );
    let access = app.access("ana@example.com").await;
    assert_eq!(access.len(), 1);
    assert_eq!(access[0]["target"]["name"], "Mensal");
    let d = app
        .gql(
            "{ access(email: \"ana@example.com\") { package { id } plan { name hotmartProductIds } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        d["access"][0],
        json!({"package": null, "plan": {"name": "Mensal", "hotmartProductIds": []}})
    );

    let v = app
        .gql_as(
            &app.admin(),
            GRANT,
            json!({"e": "ana@example.com", "id": plan, "r": "  "}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");

    let d = app.gql("mutation($id: ID!) { revokeAccess(email: \"ANA@example.com\", target: {kind: PLAN, id: $id}, reason: \"chargeback by phone\") }", json!({"id": plan})).await;
    assert_eq!(d["revokeAccess"], 1);
    let access = app.access("ana@example.com").await;
    assert_eq!(
        (access[0]["status"].as_str(), access[0]["active"].as_bool()),
        (Some("REVOKED"), Some(false))
    );

    let d = app
        .gql(
            "{ auditLog(first: 10) { nodes { actor action reason before after } } }",
            json!({}),
        )
        .await;
    let nodes = d["auditLog"]["nodes"].as_array().unwrap();
    assert_eq!(nodes[0]["action"], "access.change");
    assert!(nodes[0]["reason"].as_str().unwrap().contains("chargeback by phone"));
    assert_eq!(nodes[0]["before"]["status"], "ACTIVE");
    assert_eq!(nodes[0]["after"]["status"], "REVOKED");
    assert_eq!(nodes[0]["actor"], "admin:test");
    assert!(nodes[1]["reason"].as_str().unwrap().contains("support ticket 42"));
}

#[tokio::test]
async fn buyers_can_be_searched_and_paged() {
    let app = TestApp::spawn().await;
    let plan = app.create_plan("Mensal", &[]).await;
    for i in 0..5 {
        app.gql(
            GRANT,
            json!({"e": format!("buyer{i}@example.com"), "id": plan, "r": "seed"}),
        )
        .await;
    }
    app.gql(GRANT, json!({"e": "maria@other.org", "id": plan, "r": "seed"}))
        .await;
    let q = "query($s: String, $f: Int, $a: String) { buyers(search: $s, first: $f, after: $a) { nodes { email access { active } } pageInfo { hasNextPage endCursor } } }";
    let d = app.gql(q, json!({"f": 4})).await;
    assert_eq!(d["buyers"]["nodes"].as_array().unwrap().len(), 4);
    assert_eq!(d["buyers"]["pageInfo"]["hasNextPage"], true);
    let d = app
        .gql(q, json!({"f": 4, "a": d["buyers"]["pageInfo"]["endCursor"]}))
        .await;
    assert_eq!(d["buyers"]["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(d["buyers"]["pageInfo"]["hasNextPage"], false);
    let d = app.gql(q, json!({"s": "OTHER.org"})).await;
    assert_eq!(
        d["buyers"]["nodes"],
        json!([{"email": "maria@other.org", "access": [{"active": true}]}])
    );
    let v = app.gql_as(&app.admin(), q, json!({"f": 1000})).await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
}

#[tokio::test]
async fn revoking_one_row_ends_only_its_source_and_revoking_all_ends_every_one() {
    let (app, plan) = app_with_plan().await;
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;
    app.gql(
        "mutation($id: ID!) { grantAccess(email: \"ana.teste@example.com\", target: {kind: PLAN, id: $id}, reason: \"cortesia\") { status } }",
        json!({"id": plan}),
    )
    .await;
    let rows = app.access("ana.teste@example.com").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let source_of = |rows: &[serde_json::Value], manual: bool| {
        rows.iter()
            .find(|r| r["source"].as_str().unwrap().starts_with("manual:") == manual)
            .unwrap()["source"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let courtesy = source_of(&rows, true);
    let paid = source_of(&rows, false);
    let revoke = "mutation($id: ID!, $s: String) { revokeAccess(email: \"ana.teste@example.com\", target: {kind: PLAN, id: $id}, reason: \"fim da cortesia\", source: $s) }";
    let d = app.gql(revoke, json!({"id": plan, "s": courtesy})).await;
    assert_eq!(d["revokeAccess"], 1);
    let rows = app.access("ana.teste@example.com").await;
    let status = |s: &str| rows.iter().find(|r| r["source"] == s).unwrap()["status"].clone();
    assert_eq!(status(&courtesy), "REVOKED");
    assert_eq!(status(&paid), "ACTIVE", "the paid sale keeps its access");
    // A source the buyer does not hold to that plan is not found, and changes nothing.
    let (_, v) = app
        .graphql_raw(
            Some(&app.admin()),
            &json!({"query": revoke, "variables": {"id": plan, "s": "HPNOPE"}}),
        )
        .await;
    assert_eq!(error_code(&v), "NOT_FOUND", "{v}");
    // Without a source, everything the plan gives ends.
    let d = app.gql(revoke, json!({"id": plan, "s": null})).await;
    assert_eq!(d["revokeAccess"], 1, "the paid one was the only one still live");
    let rows = app.access("ana.teste@example.com").await;
    assert!(rows.iter().all(|r| r["status"] == "REVOKED"), "{rows:?}");
}

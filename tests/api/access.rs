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
    // A search is an e-mail prefix, any case, paged by e-mail.
    let d = app.gql(q, json!({"s": "MARIA@"})).await;
    assert_eq!(
        d["buyers"]["nodes"],
        json!([{"email": "maria@other.org", "access": [{"active": true}]}])
    );
    let emails = |d: &serde_json::Value| {
        d["buyers"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["email"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let d = app.gql(q, json!({"s": "Buyer", "f": 3})).await;
    assert_eq!(
        emails(&d),
        ["buyer0@example.com", "buyer1@example.com", "buyer2@example.com"]
    );
    let d = app
        .gql(
            q,
            json!({"s": "Buyer", "f": 3, "a": d["buyers"]["pageInfo"]["endCursor"]}),
        )
        .await;
    assert_eq!(emails(&d), ["buyer3@example.com", "buyer4@example.com"]);
    assert_eq!(d["buyers"]["pageInfo"]["hasNextPage"], false);
    // Not a part in the middle: that would read every buyer.
    let d = app.gql(q, json!({"s": "other.org"})).await;
    assert_eq!(emails(&d), Vec::<String>::new());
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

#[tokio::test]
async fn a_buyer_who_bought_with_another_email_is_moved_and_stays_moved() {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let (app, plan) = app_with_plan().await;
    app.paused_endpoint().await;
    let (old, new) = ("ana.teste@example.com", "ana.nova@example.com");
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;
    app.gql(
        "mutation($id: ID!) { grantAccess(email: \"ana.teste@example.com\", target: {kind: PLAN, id: $id}, reason: \"cortesia\") { status } }",
        json!({"id": plan}),
    )
    .await;
    let before = app.access(old).await;
    assert_eq!(before.len(), 2, "{before:?}");
    let change = "mutation($e: String!, $n: String!) { changeBuyerEmail(email: $e, newEmail: $n, reason: \"comprou com outro e-mail\") { status source expiresAt } }";
    let d = app.gql(change, json!({"e": old, "n": new})).await;
    let moved = d["changeBuyerEmail"].as_array().unwrap();
    assert_eq!(moved.len(), 2, "{d}");
    assert!(moved.iter().all(|r| r["status"] == "ACTIVE"), "{d}");
    assert!(app.access(old).await.is_empty(), "nothing stays with the old e-mail");
    // The subscriber code follows: the subscription is found under the new e-mail.
    let d = app
        .gql("{ buyer(subscriberCode: \"SBX7Q2LM\") { email } }", json!({}))
        .await;
    assert_eq!(d["buyer"]["email"], new, "{d}");

    // The app heard: revoked for the old e-mail, granted for the new one, once per source.
    let notes = entity::notification::Entity::find()
        .filter(entity::notification::Column::EntitlementId.is_not_null())
        .order_by_asc(entity::notification::Column::Id)
        .all(&app.state.db)
        .await
        .unwrap();
    let told = |kind: &str, email: &str| {
        notes
            .iter()
            .filter(|n| {
                let body: serde_json::Value = serde_json::from_str(&n.payload).unwrap();
                n.event_type == kind && body["data"]["buyer"]["email"] == email
            })
            .count()
    };
    assert_eq!(told("access.revoked", old), 2);
    assert_eq!(told("access.granted", new), 2);

    // A renewal that Hotmart still sends under the old e-mail extends the moved subscription.
    let renewal = recent(
        "purchase_approved.json",
        &[
            ("id", json!("renewal-under-the-old-email")),
            ("creation_date", json!(at(1_749_823_300_000))),
            ("data.purchase.approved_date", json!(at(1_749_823_300_000))),
            ("data.purchase.transaction", json!("HP14880000000002")),
            ("data.purchase.date_next_charge", json!(at(1_752_415_200_000))),
        ],
    );
    assert_eq!(app.post_hotmart(&renewal).await.0, 200);
    app.process_inbox().await;
    assert!(app.access(old).await.is_empty(), "the old e-mail does not get it back");
    let now = app.access(new).await;
    let paid = now.iter().find(|r| r["source"] == "sub:SBX7Q2LM").unwrap();
    assert_eq!(paid["status"], "ACTIVE");
    assert!(ms_of(&paid["expiresAt"]) > at(1_752_415_200_000), "{paid}");

    // The history says who moved it and why; the audit log has the summary and one row per source.
    let d = app
        .gql(
            "query($id: ID!) { explainAccess(email: \"ana.nova@example.com\", target: {kind: PLAN, id: $id}) { steps { eventType effect email decision } } }",
            json!({"id": plan}),
        )
        .await;
    let steps = d["explainAccess"]["steps"].as_array().unwrap();
    assert_eq!(
        steps
            .iter()
            .filter(|s| s["effect"] == "ADMIN_MOVE" && s["email"] == new)
            .count(),
        2,
        "{d}"
    );
    let audit = entity::audit_log::Entity::find().all(&app.state.db).await.unwrap();
    let summary: Vec<_> = audit.iter().filter(|a| a.action == "buyer.email_change").collect();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].reason, "comprou com outro e-mail");
    assert!(summary[0].after.as_deref().unwrap().contains(new));
    assert_eq!(audit.iter().filter(|a| a.action == "access.move").count(), 2);
    // The audit log names them as a seller would: the e-mails, the plan's name.
    let d = app
        .gql(
            "{ auditLog(first: 20) { nodes { action subject { kind name } } } }",
            json!({}),
        )
        .await;
    let nodes = d["auditLog"]["nodes"].as_array().unwrap();
    let subject = |action: &str| {
        nodes
            .iter()
            .filter(|n| n["action"] == action)
            .map(|n| {
                (
                    n["subject"]["kind"].as_str().unwrap().to_string(),
                    n["subject"]["name"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        subject("buyer.email_change"),
        vec![("buyer".to_string(), format!("{old} → {new}"))]
    );
    assert_eq!(
        subject("access.move"),
        vec![("entitlement".to_string(), format!("{new} — Mensal")); 2]
    );
    assert_eq!(subject("plan.create"), vec![("plan".to_string(), "Mensal".to_string())]);
    // A deleted plan keeps its name in the log.
    let d = app
        .gql(
            "mutation($id: ID!) { deleteSubscriptionPlan(id: $id, force: true) { deleted } }",
            json!({"id": plan}),
        )
        .await;
    assert_eq!(d["deleteSubscriptionPlan"]["deleted"], true, "{d}");
    let d = app
        .gql(
            "{ auditLog(first: 50) { nodes { action subject { name } } } }",
            json!({}),
        )
        .await;
    let names: Vec<&str> = d["auditLog"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["action"] == "access.move" || n["action"] == "plan.delete")
        .map(|n| n["subject"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{d}");
    assert!(names.iter().all(|n| n.ends_with("Mensal")), "{names:?}");

    // Mistakes are refused.
    for (e, n, code) in [
        (new, new, "BAD_USER_INPUT"),
        (new, "not-an-email", "BAD_USER_INPUT"),
        ("ninguem@example.com", "x@example.com", "NOT_FOUND"),
    ] {
        let (_, v) = app
            .graphql_raw(
                Some(&app.admin()),
                &json!({"query": change, "variables": {"e": e, "n": n}}),
            )
            .await;
        assert_eq!(error_code(&v), code, "{e} → {n}: {v}");
    }
}

#[tokio::test]
async fn a_search_finds_a_buyer_by_subscriber_code_or_transaction() {
    let (app, _) = app_with_plan().await;
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;
    let q = "query($s: String) { buyers(search: $s) { nodes { email } } }";
    for s in ["sbx7q2lm", "SBX7Q2LM", "hp14880000000001", "ana.teste@"] {
        let d = app.gql(q, json!({"s": s})).await;
        assert_eq!(d["buyers"]["nodes"], json!([{"email": "ana.teste@example.com"}]), "{s}");
    }
    for s in ["SBX7Q2L", "HP1488", "teste"] {
        let d = app.gql(q, json!({"s": s})).await;
        assert_eq!(
            d["buyers"]["nodes"],
            json!([]),
            "{s}: codes and transactions match whole"
        );
    }
}

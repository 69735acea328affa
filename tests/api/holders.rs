//! The holder lists (`/v1/packages|plans/{key}/holders`) and the admin-set keys apps use
//! instead of ids.
use std::collections::HashMap;

use serde_json::{Value, json};

use crate::helpers::*;

const GRANT: &str = "mutation($e: String!, $id: ID!) { grantAccess(email: $e, target: {kind: PLAN, id: $id}, reason: \"cortesia\") { status } }";
const REVOKE: &str =
    "mutation($e: String!, $id: ID!) { revokeAccess(email: $e, target: {kind: PLAN, id: $id}, reason: \"fraude\") }";

/// Every page of a holder list, `limit` at a time.
async fn walk(app: &TestApp, key: &str, path: &str, limit: u32) -> Vec<Value> {
    let (mut out, mut after) = (Vec::new(), String::new());
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (s, page) = app.rest(key, &format!("{path}{sep}limit={limit}{after}")).await;
        assert_eq!(s, 200, "{path}: {page}");
        out.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(c) => after = format!("&after={c}"),
            None => return out,
        }
    }
}

fn emails(list: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|h| h["email"].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_plan_lists_each_holder_once_with_the_checks_verdict() {
    let (app, plan) = app_with_plan().await;
    let d = app
        .gql(
            "mutation($id: ID!) { updateSubscriptionPlan(id: $id, input: {key: \"mensal\"}) { key } }",
            json!({"id": plan}),
        )
        .await;
    assert_eq!(d["updateSubscriptionPlan"]["key"], "mensal");
    let key = app.api_key(&["access:read"]).await;
    for e in [
        "ana@example.com",
        "bia@example.com",
        "caio@example.com",
        "duda@example.com",
    ] {
        app.gql(GRANT, json!({"e": e, "id": plan})).await;
    }
    app.gql(REVOKE, json!({"e": "caio@example.com", "id": plan})).await;
    // Duda also bought it (a sale of her own, refunded): one holder, active by the courtesy.
    let sale = recent(
        "purchase_approved.json",
        &[("id", json!("s1")), ("data.buyer.email", json!("duda@example.com"))],
    );
    app.post_hotmart(&sale).await;
    let refund = recent(
        "purchase_refunded.json",
        &[("id", json!("r1")), ("data.buyer.email", json!("duda@example.com"))],
    );
    app.post_hotmart(&refund).await;
    app.process_inbox().await;
    // Elis's subscription lapsed long ago.
    let old = chrono::Utc::now().timestamp_millis() - 90 * 86_400_000;
    let lapsed = fixture_with(
        "purchase_approved.json",
        &[
            ("id", json!("s2")),
            ("creation_date", json!(old)),
            ("data.purchase.approved_date", json!(old)),
            ("data.purchase.date_next_charge", json!(old + 30 * 86_400_000i64)),
            ("data.purchase.transaction", json!("HPOLD1")),
            ("data.subscription.subscriber.code", json!("OLDSUB1")),
            ("data.buyer.email", json!("elis@example.com")),
        ],
    );
    app.post_hotmart(&lapsed).await;
    app.process_inbox().await;

    let active = walk(&app, &key, "/v1/plans/mensal/holders", 1).await;
    assert_eq!(
        emails(&active),
        ["ana@example.com", "bia@example.com", "duda@example.com"]
    );
    let duda = active.iter().find(|h| h["email"] == "duda@example.com").unwrap();
    assert_eq!(duda["entitlements"].as_array().unwrap().len(), 2, "{duda}");
    for h in &active {
        let (_, check) = app
            .rest(
                &key,
                &format!("/v1/access/check?email={}&plan=mensal", h["email"].as_str().unwrap()),
            )
            .await;
        for f in [
            "active",
            "status",
            "expiresAt",
            "willRenew",
            "cancelAtPeriodEnd",
            "inGrace",
            "suspended",
        ] {
            assert_eq!(h[f], check[f], "{f}: {h} vs {check}");
        }
    }
    // By id, the same; the first page with its total.
    let (_, first) = app
        .rest(&key, &format!("/v1/plans/{plan}/holders?includeTotal=true&limit=2"))
        .await;
    assert_eq!(first["total"], 3, "{first}");
    assert_eq!(first["targetId"].to_string(), plan);
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert!(first["nextCursor"].is_string());
    let (_, plain) = app.rest(&key, "/v1/plans/mensal/holders").await;
    assert_eq!(plain["total"], Value::Null, "counted only when asked");
    // Filters list each buyer under their best status.
    let revoked = walk(&app, &key, "/v1/plans/mensal/holders?status=revoked", 1).await;
    assert_eq!(
        emails(&revoked),
        ["caio@example.com"],
        "duda's refunded sale is outranked"
    );
    let expired = walk(&app, &key, "/v1/plans/mensal/holders?status=expired", 1).await;
    assert_eq!(emails(&expired), ["elis@example.com"]);
    let any = walk(&app, &key, "/v1/plans/mensal/holders?status=any", 2).await;
    assert_eq!(any.len(), 5);
    for (status, n) in [
        ("active", 3),
        ("revoked", 1),
        ("expired", 1),
        ("suspended", 0),
        ("any", 5),
    ] {
        let (_, p) = app
            .rest(
                &key,
                &format!("/v1/plans/mensal/holders?status={status}&includeTotal=true"),
            )
            .await;
        assert_eq!(p["total"], n, "{status}: {p}");
    }
    // Keys work wherever ids do, and name only what they name.
    let (s, c) = app
        .rest(&key, "/v1/access/check?email=ana@example.com&plan=mensal")
        .await;
    assert_eq!((s, c["active"].as_bool()), (200, Some(true)), "{c}");
    let (_, t) = app.rest(&key, "/v1/targets").await;
    assert_eq!(t["targets"][0]["key"], "mensal", "{t}");
    let (_, a) = app.rest(&key, "/v1/access?email=ana@example.com").await;
    assert_eq!(a["entitlements"][0]["targetKey"], "mensal", "{a}");
    for path in [
        "/v1/plans/anual/holders",
        "/v1/packages/mensal/holders",
        "/v1/plans/999999/holders",
        "/v1/access/check?email=ana@example.com&package=mensal",
    ] {
        let (s, p) = app.rest(&key, path).await;
        assert_eq!((s, p["code"].as_str()), (404, Some("NOT_FOUND")), "{path}: {p}");
    }
    for bad in ["status=gone", "after=abc", "limit=0", "limit=1001"] {
        let (s, p) = app.rest(&key, &format!("/v1/plans/mensal/holders?{bad}")).await;
        assert_eq!(s, 400, "{bad}: {p}");
    }
    let changes_only = app.api_key(&["changes:read"]).await;
    assert_eq!(app.rest(&changes_only, "/v1/plans/mensal/holders").await.0, 403);
}

#[tokio::test]
async fn keys_are_slugs_unique_in_the_app() {
    let app = TestApp::spawn().await;
    let create = "mutation($k: String) { createProductPackage(input: {name: \"Curso\", key: $k}) { id key } }";
    let d = app.gql(create, json!({"k": "curso-completo"})).await;
    assert_eq!(d["createProductPackage"]["key"], "curso-completo");
    let plan = "mutation($k: String) { createSubscriptionPlan(input: {name: \"Mensal\", key: $k}) { id key } }";
    let dup = app.gql_as(&app.admin(), plan, json!({"k": "curso-completo"})).await;
    assert_eq!(dup["errors"][0]["extensions"]["code"], "CONFLICT", "{dup}");
    for bad in ["Curso Completo", "123", "-x", "ação", &"a".repeat(65)] {
        let v = app.gql_as(&app.admin(), create, json!({"k": bad})).await;
        assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{bad}: {v}");
    }
    // Cleared with null; then free again.
    let id = d["createProductPackage"]["id"].clone();
    let u = app
        .gql(
            "mutation($id: ID!) { updateProductPackage(id: $id, input: {key: null}) { key } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(u["updateProductPackage"]["key"], Value::Null);
    let again = app.gql(plan, json!({"k": "curso-completo"})).await;
    assert_eq!(again["createSubscriptionPlan"]["key"], "curso-completo");
}

/// A walk with grants and revokes happening during it returns every buyer who held the plan
/// throughout exactly once, and nobody twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_walk_during_grants_and_revokes_lists_every_steady_holder_once() {
    let (app, plan) = app_with_plan().await;
    let key = app.api_key(&["access:read"]).await;
    let steady: Vec<String> = (0..80).map(|i| format!("steady{i:03}@example.com")).collect();
    let volatile: Vec<String> = (0..40).map(|i| format!("volatile{i:03}@example.com")).collect();
    for e in steady.iter().chain(&volatile) {
        app.gql(GRANT, json!({"e": e, "id": plan})).await;
    }
    let app = std::sync::Arc::new(app);
    let churn = {
        let (app, plan, volatile) = (app.clone(), plan.clone(), volatile.clone());
        tokio::spawn(async move {
            for (i, e) in volatile.iter().enumerate() {
                app.gql(REVOKE, json!({"e": e, "id": plan})).await;
                app.gql(GRANT, json!({"e": format!("new{i:03}@example.com"), "id": plan}))
                    .await;
            }
        })
    };
    let mut walks = Vec::new();
    for limit in [3, 7, 11] {
        let (app, key, path) = (app.clone(), key.clone(), format!("/v1/plans/{plan}/holders?status=any"));
        walks.push(tokio::spawn(async move { walk(&app, &key, &path, limit).await }));
    }
    for w in walks {
        let list = w.await.unwrap();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for h in &list {
            *seen.entry(h["email"].as_str().unwrap().to_string()).or_default() += 1;
        }
        assert!(seen.values().all(|n| *n == 1), "a buyer twice: {seen:?}");
        for e in &steady {
            assert_eq!(seen.get(e), Some(&1), "{e} missing");
        }
    }
    churn.await.unwrap();
    let end = walk(&app, &key, &format!("/v1/plans/{plan}/holders"), 13).await;
    assert_eq!(end.len(), 80 + 40, "the steady ones and the new ones are active");
}

//! The apps' REST API: access by e-mail and subscriber code, the check, bulk lookups, problem
//! reports for every error, keys per app, and revocations visible to the very next check.
use serde_json::{Value, json};

use crate::helpers::*;

const CREATE_KEY: &str =
    "mutation($n: String!) { createApiKey(name: $n, scopes: [\"access:read\"]) { secret key { id } } }";

async fn key_for(app: &TestApp, token: &str) -> (String, String) {
    let v = app.gql_as(token, CREATE_KEY, json!({"n": "members area"})).await;
    let c = &v["data"]["createApiKey"];
    (
        c["secret"].as_str().unwrap_or_else(|| panic!("{v}")).to_string(),
        c["key"]["id"].as_str().unwrap().to_string(),
    )
}

/// GET with a bearer key (or none); the status, the content type and the JSON body.
async fn get(app: &TestApp, key: Option<&str>, path_and_query: &str) -> (u16, String, Value) {
    let mut req = app.client.get(format!("{}{path_and_query}", app.addr));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    answer(req.send().await.unwrap()).await
}

async fn post(app: &TestApp, key: &str, path: &str, body: &Value) -> (u16, String, Value) {
    let res = app
        .client
        .post(format!("{}{path}", app.addr))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    answer(res).await
}

async fn answer(res: reqwest::Response) -> (u16, String, Value) {
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = res.text().await.unwrap();
    (status, ct, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn assert_problem(got: &(u16, String, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{got:?}");
    assert!(got.1.starts_with("application/problem+json"), "{got:?}");
    assert_eq!(got.2["status"], status, "{got:?}");
    assert_eq!(got.2["code"], code, "{got:?}");
    assert!(got.2["title"].is_string() && got.2["detail"].is_string(), "{got:?}");
    // Every field the document marks required is there, so a strict generated client parses it.
    let spec: Value = serde_json::from_str(&porteiro::http::v1::spec()).unwrap();
    for field in spec["components"]["schemas"]["ProblemDetails"]["required"]
        .as_array()
        .unwrap()
    {
        assert!(!got.2[field.as_str().unwrap()].is_null(), "{field} missing: {got:?}");
    }
    assert!(got.2["errors"].is_array(), "{got:?}");
}

#[tokio::test]
async fn an_app_reads_access_by_email_and_subscriber_code_and_checks_one_plan() {
    let (app, plan) = app_with_plan().await;
    let (key, _) = key_for(&app, &app.admin()).await;
    assert_eq!(app.post_hotmart(&recent("purchase_approved.json", &[])).await.0, 200);
    app.process_inbox().await;

    let got = get(&app, Some(&key), "/v1/access?email=Ana.Teste@Example.com").await;
    assert_eq!(got.0, 200, "{got:?}");
    let body = &got.2;
    assert_eq!(body["email"], "ana.teste@example.com");
    assert_eq!(
        (body["known"].as_bool(), body["active"].as_bool()),
        (Some(true), Some(true))
    );
    let e = &body["entitlements"][0];
    assert_eq!(e["targetKind"], "plan");
    assert_eq!(e["targetId"].to_string(), plan);
    assert_eq!(e["targetName"], "Mensal");
    assert_eq!(
        (e["status"].as_str(), e["active"].as_bool()),
        (Some("ACTIVE"), Some(true))
    );
    assert_eq!(e["subscriberCode"], "SBX7Q2LM");
    assert!(ms_of(&e["expiresAt"]) > chrono::Utc::now().timestamp_millis());

    let by_code = get(&app, Some(&key), "/v1/access?subscriberCode=sbx7q2lm").await;
    assert_eq!(by_code.0, 200);
    assert_eq!(by_code.2["email"], "ana.teste@example.com");
    assert_eq!(by_code.2["subscriberCode"], "SBX7Q2LM");
    assert_eq!(by_code.2["entitlements"], body["entitlements"]);

    let check = get(
        &app,
        Some(&key),
        &format!("/v1/access/check?email=ana.teste@example.com&plan={plan}"),
    )
    .await;
    assert_eq!(check.0, 200, "{check:?}");
    assert_eq!(check.2["active"], true);
    assert_eq!(check.2["status"], "ACTIVE");
    assert_eq!(check.2["expiresAt"], e["expiresAt"]);
    let by_code = get(
        &app,
        Some(&key),
        &format!("/v1/access/check?subscriberCode=SBX7Q2LM&plan={plan}"),
    )
    .await;
    assert_eq!(by_code.2, check.2);

    // Another plan, an unknown buyer and an unknown code: all "no".
    let other = app.create_plan("Anual", &[]).await;
    for q in [
        format!("email=ana.teste@example.com&plan={other}"),
        format!("email=nobody@example.com&plan={plan}"),
        format!("subscriberCode=NOPE0000&plan={plan}"),
    ] {
        let got = get(&app, Some(&key), &format!("/v1/access/check?{q}")).await;
        assert_eq!(got.0, 200, "{q}: {got:?}");
        assert_eq!(
            got.2,
            json!({"active": false, "status": "NONE", "expiresAt": null, "willRenew": false, "cancelAtPeriodEnd": false, "inGrace": false, "suspended": false}),
            "{q}"
        );
    }
    let nobody = get(&app, Some(&key), "/v1/access?email=nobody@example.com").await;
    assert_eq!(nobody.0, 200);
    assert_eq!(
        (
            nobody.2["known"].as_bool(),
            nobody.2["entitlements"].as_array().map(Vec::len)
        ),
        (Some(false), Some(0))
    );
}

#[tokio::test]
async fn a_revocation_is_visible_to_the_next_check() {
    let (app, plan) = app_with_plan().await;
    let (key, _) = key_for(&app, &app.admin()).await;
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;
    let check = format!("/v1/access/check?email=ana.teste@example.com&plan={plan}");
    // Warm the cache, so what follows proves the change invalidated it.
    for _ in 0..3 {
        assert_eq!(get(&app, Some(&key), &check).await.2["active"], true);
    }

    // A refund through the webhook and the worker.
    assert_eq!(app.post_hotmart(&recent("purchase_refunded.json", &[])).await.0, 200);
    app.process_inbox().await;
    let got = get(&app, Some(&key), &check).await;
    assert_eq!(
        (got.2["active"].as_bool(), got.2["status"].as_str()),
        (Some(false), Some("REVOKED")),
        "{got:?}"
    );

    // An admin's grant and revoke.
    let pkg = app.create_package("Bônus", &[], None).await;
    let check_pkg = format!("/v1/access/check?email=bia@example.com&package={pkg}");
    assert_eq!(get(&app, Some(&key), &check_pkg).await.2["status"], "NONE");
    app.gql(
        "mutation($id: ID!) { grantAccess(email: \"bia@example.com\", target: {kind: PACKAGE, id: $id}, reason: \"gift\") { status } }",
        json!({"id": pkg}),
    )
    .await;
    let got = get(&app, Some(&key), &check_pkg).await;
    assert_eq!(
        got.2,
        json!({"active": true, "status": "ACTIVE", "expiresAt": null, "willRenew": false, "cancelAtPeriodEnd": false, "inGrace": false, "suspended": false})
    );
    app.gql(
        "mutation($id: ID!) { revokeAccess(email: \"bia@example.com\", target: {kind: PACKAGE, id: $id}, reason: \"abuse\") }",
        json!({"id": pkg}),
    )
    .await;
    let got = get(&app, Some(&key), &check_pkg).await;
    assert_eq!(
        (got.2["active"].as_bool(), got.2["status"].as_str()),
        (Some(false), Some("REVOKED"))
    );
}

#[tokio::test]
async fn a_get_carries_an_etag_and_an_unchanged_answer_is_a_304() {
    let (app, plan) = app_with_plan().await;
    let (key, _) = key_for(&app, &app.admin()).await;
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;
    let url = format!("{}/v1/access/check?email=ana.teste@example.com&plan={plan}", app.addr);
    let ask = |etag: Option<String>| {
        let mut req = app.client.get(&url).bearer_auth(&key);
        if let Some(e) = etag {
            req = req.header("if-none-match", e);
        }
        req.send()
    };
    let header = |r: &reqwest::Response, name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    let first = ask(None).await.unwrap();
    assert_eq!(first.status(), 200);
    let etag = header(&first, "etag").expect("an ETag");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "a strong ETag: {etag}");
    assert_eq!(header(&first, "cache-control").as_deref(), Some("private, no-cache"));
    assert!(header(&first, "x-request-id").is_some());
    // The same answer again: 304, no body, the same ETag.
    let again = ask(Some(etag.clone())).await.unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(header(&again, "etag"), Some(etag.clone()));
    assert!(again.bytes().await.unwrap().is_empty());
    // A list with it (weak or not) matches too; another tag does not.
    assert_eq!(ask(Some(format!("\"x\", W/{etag}"))).await.unwrap().status(), 304);
    assert_eq!(ask(Some("\"other\"".into())).await.unwrap().status(), 200);
    // A refund changes the answer: a new body and a new ETag, never a stale 304.
    assert_eq!(app.post_hotmart(&recent("purchase_refunded.json", &[])).await.0, 200);
    app.process_inbox().await;
    let changed = ask(Some(etag.clone())).await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(header(&changed, "etag"), Some(etag));
    let body: Value = changed.json().await.unwrap();
    assert_eq!(body["status"], "REVOKED");
    // Errors are not cached answers: no ETag on a 400.
    let bad = app
        .client
        .get(format!("{}/v1/access/check?plan={plan}", app.addr))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(header(&bad, "etag").is_none());
}

#[tokio::test]
async fn lookup_answers_many_buyers_in_order_and_names_every_bad_entry() {
    let (app, _plan) = app_with_plan().await;
    let (key, _) = key_for(&app, &app.admin()).await;
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;

    let got = post(
        &app,
        &key,
        "/v1/access/lookup",
        &json!({"emails": ["nobody@example.com", "ANA.TESTE@example.com"], "subscriberCodes": ["SBX7Q2LM", "UNKNOWN1"]}),
    )
    .await;
    assert_eq!(got.0, 200, "{got:?}");
    let r = got.2["results"].as_array().unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(
        (r[0]["email"].as_str(), r[0]["known"].as_bool()),
        (Some("nobody@example.com"), Some(false))
    );
    assert_eq!(
        (r[1]["email"].as_str(), r[1]["active"].as_bool()),
        (Some("ana.teste@example.com"), Some(true))
    );
    assert_eq!(r[2]["email"], "ana.teste@example.com");
    assert_eq!(r[2]["subscriberCode"], "SBX7Q2LM");
    assert_eq!(r[2]["entitlements"], r[1]["entitlements"]);
    assert_eq!(
        (r[3]["email"].clone(), r[3]["known"].as_bool()),
        (Value::Null, Some(false))
    );

    let bad = post(
        &app,
        &key,
        "/v1/access/lookup",
        &json!({"emails": ["ok@example.com", "not-an-email", "x\u{0}@y.z"], "subscriberCodes": ["  "]}),
    )
    .await;
    assert_problem(&bad, 400, "BAD_USER_INPUT");
    let fields: Vec<&str> = bad.2["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["emails[1]", "emails[2]", "subscriberCodes[0]"], "{bad:?}");

    let many: Vec<String> = (0..501).map(|i| format!("b{i}@example.com")).collect();
    assert_problem(
        &post(&app, &key, "/v1/access/lookup", &json!({"emails": many})).await,
        400,
        "BAD_USER_INPUT",
    );
    let many: Vec<String> = (0..500).map(|i| format!("b{i}@example.com")).collect();
    let got = post(&app, &key, "/v1/access/lookup", &json!({"emails": many})).await;
    assert_eq!((got.0, got.2["results"].as_array().map(Vec::len)), (200, Some(500)));
}

#[tokio::test]
async fn every_error_is_a_problem_report_and_nothing_is_a_500() {
    let (app, plan) = app_with_plan().await;
    let (key, key_id) = key_for(&app, &app.admin()).await;
    let check = format!("/v1/access/check?email=ana@example.com&plan={plan}");

    assert_problem(&get(&app, None, &check).await, 401, "UNAUTHENTICATED");
    assert_problem(
        &get(&app, Some("pk_000000000000_nope"), &check).await,
        401,
        "UNAUTHENTICATED",
    );
    // An admin JWT is not an API key.
    assert_problem(&get(&app, Some(&app.admin()), &check).await, 401, "UNAUTHENTICATED");

    for q in [
        "/v1/access/check?email=ana@example.com".to_string(),
        format!("/v1/access/check?email=ana@example.com&plan={plan}&package=1"),
        format!("/v1/access/check?plan={plan}"),
        format!("/v1/access/check?email=ana@example.com&subscriberCode=X&plan={plan}"),
        format!("/v1/access/check?email=not-an-email&plan={plan}"),
        "/v1/access?email=%00".to_string(),
        "/v1/access".to_string(),
    ] {
        assert_problem(&get(&app, Some(&key), &q).await, 400, "BAD_USER_INPUT");
    }
    // A plan named by a key nobody has, or by an id out of range: no such plan.
    for q in [
        "/v1/access/check?email=ana@example.com&plan=abc",
        "/v1/access/check?email=ana@example.com&plan=99999999999",
    ] {
        assert_problem(&get(&app, Some(&key), q).await, 404, "NOT_FOUND");
    }
    let res = app
        .client
        .post(format!("{}/v1/access/lookup", app.addr))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(&answer(res).await, 400, "BAD_USER_INPUT");
    assert_problem(&get(&app, Some(&key), "/v1/nothing-here").await, 404, "NOT_FOUND");
    // A package or plan the app does not have (a typo) is named, not a silent "no".
    for q in [
        format!("/v1/access/check?email=ana@example.com&package={plan}"),
        "/v1/access/check?email=ana@example.com&plan=424242".to_string(),
    ] {
        let got = get(&app, Some(&key), &q).await;
        assert_problem(&got, 404, "NOT_FOUND");
        assert!(got.2["detail"].as_str().unwrap().contains("does not exist"), "{got:?}");
    }
    let res = app
        .client
        .post(format!("{}{check}", app.addr))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_problem(&answer(res).await, 405, "METHOD_NOT_ALLOWED");
    let res = app
        .client
        .post(format!("{}/v1/access/lookup", app.addr))
        .bearer_auth(&key)
        .body(r#"{"emails": ["ana@example.com"]}"#)
        .send()
        .await
        .unwrap();
    assert_problem(&answer(res).await, 415, "UNSUPPORTED_MEDIA_TYPE");

    // Revoked: refused at once.
    app.gql(
        "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
        json!({"id": key_id}),
    )
    .await;
    assert_problem(&get(&app, Some(&key), &check).await, 401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_key_of_one_app_never_sees_another_apps_buyers() {
    let (app, plan) = app_with_plan().await;
    app.create_app("outra").await;
    let (key_default, _) = key_for(&app, &app.admin()).await;
    let (key_other, _) = key_for(&app, &app.token("outra", porteiro::auth::Role::Admin)).await;
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;

    let q = "/v1/access?email=ana.teste@example.com";
    assert_eq!(get(&app, Some(&key_default), q).await.2["known"], true);
    let other = get(&app, Some(&key_other), q).await;
    assert_eq!((other.0, other.2["known"].as_bool()), (200, Some(false)));
    // The other app has no such plan at all.
    let check = format!("/v1/access/check?email=ana.teste@example.com&plan={plan}");
    assert_problem(&get(&app, Some(&key_other), &check).await, 404, "NOT_FOUND");
    let by_code = get(&app, Some(&key_other), "/v1/access?subscriberCode=SBX7Q2LM").await;
    assert_eq!(by_code.2["email"], Value::Null);
}

#[tokio::test]
async fn the_openapi_document_and_its_page_are_served_offline() {
    let app = TestApp::spawn().await;
    let (status, _, spec) = get(&app, None, "/v1/openapi.json").await;
    assert_eq!(status, 200);
    for path in ["/access", "/access/check", "/access/lookup"] {
        assert!(spec["paths"][path].is_object(), "{path} missing from the document");
    }
    assert_eq!(spec["servers"][0]["url"], "/v1");
    let problem = &spec["paths"]["/access/check"]["get"]["responses"]["401"]["content"];
    assert!(problem["application/problem+json"].is_object(), "{problem}");
    let lookup = &spec["paths"]["/access/lookup"]["post"]["responses"];
    assert!(lookup["415"].is_object(), "the lookup's 415 is documented: {lookup}");
    let params = spec["paths"]["/access/check"]["get"]["parameters"].as_array().unwrap();
    let email = params.iter().find(|p| p["name"] == "email").unwrap();
    assert_eq!(
        email["schema"]["format"], "idn-email",
        "addresses in any script, as accepted"
    );
    assert!(
        email["description"].as_str().unwrap().contains("exactly one"),
        "{email}"
    );
    // The document says the same as `porteiro openapi` prints.
    assert_eq!(
        spec,
        serde_json::from_str::<Value>(&porteiro::http::v1::spec()).unwrap()
    );

    let res = app.client.get(format!("{}/v1/docs", app.addr)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("openapi.json") || page.contains("spec-url"),
        "the page loads our document"
    );
    // Offline: no script or style fetched from elsewhere.
    for attr in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "@import url(http",
    ] {
        assert!(!page.contains(attr), "the docs page loads {attr}…");
    }
}

/// One way to write a moment across REST, GraphQL and notifications: RFC 3339, UTC, `Z`,
/// milliseconds (an admin's grant used to show microseconds and `+00:00` on REST).
#[tokio::test]
async fn rest_graphql_and_notifications_write_the_same_timestamp() {
    use sea_orm::EntityTrait;
    let (app, plan) = app_with_plan().await;
    app.paused_endpoint().await;
    let (key, _) = key_for(&app, &app.admin()).await;
    let until = "2027-01-06T14:03:01.730123-03:00";
    let d = app
        .gql(
            "mutation($id: ID!, $x: DateTime) { grantAccess(email: \"ana@example.com\", target: {kind: PLAN, id: $id}, expiresAt: $x, reason: \"cortesia\") { expiresAt grantedAt } }",
            json!({"id": plan, "x": until}),
        )
        .await;
    let want = "2027-01-06T17:03:01.730Z";
    assert_eq!(d["grantAccess"][0]["expiresAt"], want, "GraphQL: {d}");
    let shape = |s: &str| {
        s.len() == 24 && s.ends_with('Z') && s.as_bytes()[19] == b'.' && chrono::DateTime::parse_from_rfc3339(s).is_ok()
    };
    assert!(shape(d["grantAccess"][0]["grantedAt"].as_str().unwrap()), "{d}");
    let check = get(
        &app,
        Some(&key),
        &format!("/v1/access/check?email=ana@example.com&plan={plan}"),
    )
    .await;
    assert_eq!(check.2["expiresAt"], want, "REST check: {check:?}");
    let access = get(&app, Some(&key), "/v1/access?email=ana@example.com").await;
    let e = &access.2["entitlements"][0];
    assert_eq!(e["expiresAt"], want, "REST access: {access:?}");
    assert!(shape(e["grantedAt"].as_str().unwrap()), "{e}");
    let note = entity::notification::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .pop()
        .expect("the grant was announced");
    let body: Value = serde_json::from_str(&note.payload).unwrap();
    assert_eq!(body["data"]["access"]["expiresAt"], want, "notification: {body}");
    assert!(shape(body["timestamp"].as_str().unwrap()), "{body}");
    // The same entitlement and version as the notification says, so an app can tell which of
    // the two it heard last is newer.
    assert_eq!(e["id"], body["data"]["entitlement"]["id"], "{e} {body}");
    assert_eq!(e["version"], body["data"]["entitlement"]["version"], "{e} {body}");
    assert!(shape(e["updatedAt"].as_str().unwrap()), "{e}");
    let g = app
        .gql(
            "{ access(email: \"ana@example.com\") { id version updatedAt } }",
            json!({}),
        )
        .await;
    assert_eq!(g["access"][0]["id"], e["id"].to_string(), "{g}");
    assert_eq!(g["access"][0]["version"], e["version"], "{g}");
    assert_eq!(g["access"][0]["updatedAt"], e["updatedAt"], "{g}");
    // A revoke is a newer version, in both.
    app.gql(
        "mutation($id: ID!) { revokeAccess(email: \"ana@example.com\", target: {kind: PLAN, id: $id}, reason: \"fraude\") }",
        json!({"id": plan}),
    )
    .await;
    let after = get(&app, Some(&key), "/v1/access?email=ana@example.com").await;
    let newer = &after.2["entitlements"][0];
    assert!(newer["version"].as_i64() > e["version"].as_i64(), "{newer} after {e}");
    let last: Value = serde_json::from_str(
        &entity::notification::Entity::find()
            .all(&app.state.db)
            .await
            .unwrap()
            .pop()
            .unwrap()
            .payload,
    )
    .unwrap();
    assert_eq!(newer["version"], last["data"]["entitlement"]["version"], "{last}");
}

/// `GET /v1/targets` lists the app's packages and plans with the ids to ask about, and what
/// another app has is not in it.
#[tokio::test]
async fn an_app_lists_its_packages_and_plans() {
    let (app, plan) = app_with_plan().await;
    let package = app
        .gql(
            "mutation { createProductPackage(input: {name: \"Curso\", hotmartProductIds: [\"777\"], accessDays: 365}) { id } }",
            json!({}),
        )
        .await["createProductPackage"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (key, _) = key_for(&app, &app.admin()).await;
    let (status, _, body) = get(&app, Some(&key), "/v1/targets").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["targets"],
        json!([
            {"kind": "package", "id": package.parse::<i32>().unwrap(), "key": null, "name": "Curso", "accessDays": 365, "periodDays": null, "graceDays": null},
            {"kind": "plan", "id": plan.parse::<i32>().unwrap(), "key": null, "name": "Mensal", "accessDays": null, "periodDays": 30, "graceDays": 3},
        ])
    );
    // The id checks access.
    let (status, _, _) = get(
        &app,
        Some(&key),
        &format!("/v1/access/check?email=ninguem@example.com&package={package}"),
    )
    .await;
    assert_eq!(status, 200);
    // Another app's key sees only its own (none).
    app.create_app("outra").await;
    let (other, _) = key_for(&app, &app.token("outra", porteiro::auth::Role::Admin)).await;
    let (_, _, body) = get(&app, Some(&other), "/v1/targets").await;
    assert_eq!(body["targets"], json!([]));
    let (status, _, _) = get(&app, None, "/v1/targets").await;
    assert_eq!(status, 401);
}

/// The README's examples (`docs/examples/`: Python with the standard library, JavaScript with
/// fetch, curl) run against a live server and print what the API holds.
#[tokio::test]
async fn the_examples_in_python_javascript_and_curl_run_against_a_live_server() {
    let (app, plan) = app_with_plan().await;
    // The feed starts when the app first listens: the key comes first.
    let key = app.api_key(&["access:read", "changes:read"]).await;
    app.gql(
        "mutation($id: ID!) { updateSubscriptionPlan(id: $id, input: {key: \"mensal\"}) { key } }",
        json!({"id": plan}),
    )
    .await;
    for e in ["ana@example.com", "bia@example.com"] {
        app.gql(
            "mutation($e: String!, $id: ID!) { grantAccess(email: $e, target: {kind: PLAN, id: $id}, reason: \"cortesia\") { status } }",
            json!({"e": e, "id": plan}),
        )
        .await;
    }
    app.gql(
        "mutation($id: ID!) { revokeAccess(email: \"bia@example.com\", target: {kind: PLAN, id: $id}, reason: \"fraude\") }",
        json!({"id": plan}),
    )
    .await;
    app.state.notify.wake();
    porteiro::pipeline::dispatch::fan_out(&app.state.notify).await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
    // Off the runtime's thread: the server answering them runs on it.
    let run = |program: &str, script: &str| {
        let mut cmd = std::process::Command::new(program);
        cmd.arg(dir.join(script))
            .arg("ana@example.com")
            .env("PORTEIRO_URL", &app.addr)
            .env("PORTEIRO_KEY", &key)
            .env("PLAN", "mensal");
        async move { tokio::task::spawn_blocking(move || cmd.output()).await.unwrap() }
    };
    for (program, script, want) in [
        (
            "python3",
            "app_sync.py",
            "check ana@example.com True ACTIVE False\nholders 1\nchanges 2 cursor 3\n",
        ),
        (
            "node",
            "app_sync.mjs",
            "check ana@example.com true ACTIVE false\nholders 1\nchanges 2 cursor 3\n",
        ),
    ] {
        match run(program, script).await {
            Ok(out) => {
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "{script}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(stdout, want, "{script}");
            }
            Err(e) => cannot_run(&format!("{program} is not installed ({e})")),
        }
    }
    match run("sh", "app_sync.sh").await {
        Ok(out) => {
            assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
            let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(lines[0]["active"], true, "{lines:?}");
            assert_eq!(lines[1]["total"], 1, "{lines:?}");
            assert_eq!(lines[2]["data"].as_array().unwrap().len(), 3, "{lines:?}");
        }
        Err(e) => cannot_run(&format!("sh is not installed ({e})")),
    }
}

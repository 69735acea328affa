//! The console's server side: sign-in links and sessions (HttpOnly, SameSite=Strict, CSRF header,
//! expiry, sign-out), the pages and GraphiQL served from the binary with nothing from elsewhere,
//! and the GraphQL the console added (`me`, `overview`, event dates).
use serde_json::{Value, json};

use crate::helpers::*;
use porteiro::auth::Role;
use porteiro::services::console;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in through the link; returns the session cookie's value and the whole header.
async fn sign_in(app: &TestApp, role: Role) -> (String, String) {
    let token = console::issue_login(&app.state, "default", role, "ana").await.unwrap();
    let http = no_redirects();
    let page = http
        .get(format!("{}/console/login?token={token}", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("method=\"post\"") && html.contains(&token), "{html}");
    let res = redeem(&http, app, &token).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/console/");
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("porteiro_session=")
        .unwrap()
        .to_string();
    (value, cookie)
}

/// Posts the sign-in form with a link's token.
async fn redeem(http: &reqwest::Client, app: &TestApp, token: &str) -> reqwest::Response {
    http.post(format!("{}/console/login", app.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("token", token)]).unwrap())
        .send()
        .await
        .unwrap()
}

async fn gql_cookie(app: &TestApp, session: &str, csrf: bool, query: &str) -> Value {
    let mut req = app
        .client
        .post(format!("{}/graphql", app.addr))
        .header("cookie", format!("porteiro_session={session}"))
        .json(&json!({"query": query}));
    if csrf {
        req = req.header("x-porteiro-console", "1");
    }
    req.send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn a_sign_in_link_opens_one_session_kept_in_a_strict_http_only_cookie() {
    let app = TestApp::spawn().await;
    let (session, cookie) = sign_in(&app, Role::Admin).await;
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let v = gql_cookie(&app, &session, true, "{ me { app role subject } }").await;
    assert_eq!(
        v["data"]["me"],
        json!({"app": "default", "role": "admin", "subject": "console:ana"})
    );

    // Without the console's header the cookie is not a credential (another site's form could
    // send the cookie, never the header).
    let v = gql_cookie(&app, &session, false, "{ me { role } }").await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED");

    // Sessions are stored as hashes only.
    use sea_orm::{ConnectionTrait, Statement};
    let rows = app
        .state
        .db
        .query_all_raw(Statement::from_string(
            app.state.db.get_database_backend(),
            "SELECT token_hash FROM console_token",
        ))
        .await
        .unwrap();
    let stored: String = rows
        .iter()
        .map(|r| r.try_get::<String>("", "token_hash").unwrap())
        .collect();
    assert!(!stored.contains(&session));

    // Signing out needs the header too, then the session is gone.
    let out = app
        .client
        .post(format!("{}/console/logout", app.addr))
        .header("cookie", format!("porteiro_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 403);
    let out = app
        .client
        .post(format!("{}/console/logout", app.addr))
        .header("cookie", format!("porteiro_session={session}"))
        .header("x-porteiro-console", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let v = gql_cookie(&app, &session, true, "{ me { role } }").await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED");
}

#[tokio::test]
async fn links_work_once_sessions_expire_and_viewers_stay_viewers() {
    let app = TestApp::spawn().await;
    let token = console::issue_login(&app.state, "default", Role::Viewer, "bia")
        .await
        .unwrap();
    let http = no_redirects();
    let first = redeem(&http, &app, &token).await;
    assert_eq!(first.status(), 303);
    let again = redeem(&http, &app, &token).await;
    assert_eq!(again.status(), 401);
    assert!(again.text().await.unwrap().contains("porteiro login"));
    let bad = redeem(&http, &app, "made-up").await;
    assert_eq!(bad.status(), 401);

    let (session, _) = sign_in(&app, Role::Viewer).await;
    let v = gql_cookie(&app, &session, true, "{ me { role } productPackages { id } }").await;
    assert_eq!(v["data"]["me"]["role"], "viewer");
    let v = gql_cookie(
        &app,
        &session,
        true,
        "mutation { createProductPackage(input: {name: \"X\"}) { id } }",
    )
    .await;
    assert_eq!(error_code(&v), "FORBIDDEN");

    // An expired link and an expired session are refused.
    use sea_orm::{ConnectionTrait, Statement};
    let past = chrono::Utc::now() - chrono::TimeDelta::minutes(1);
    let old = console::issue_login(&app.state, "default", Role::Admin, "old")
        .await
        .unwrap();
    let backend = app.state.db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => "UPDATE console_token SET expires_at = $1",
        _ => "UPDATE console_token SET expires_at = ?",
    };
    app.state
        .db
        .execute_raw(Statement::from_sql_and_values(backend, sql, [past.into()]))
        .await
        .unwrap();
    let late = redeem(&http, &app, &old).await;
    assert_eq!(late.status(), 401);
    let v = gql_cookie(&app, &session, true, "{ me { role } }").await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED");
}

#[tokio::test]
async fn the_console_and_graphiql_are_served_from_the_binary_and_small() {
    let app = TestApp::spawn().await;
    let http = no_redirects();
    let root = http.get(format!("{}/", app.addr)).send().await.unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/console/");
    let mut total = 0;
    for (path, kind) in [
        ("/console/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let res = app.client.get(format!("{}{path}", app.addr)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with(kind));
        let csp = res.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        let body = res.text().await.unwrap();
        total += body.len();
        for external in ["src=\"http", "href=\"http", "url(http", "import \"http", "from \"http"] {
            assert!(!body.contains(external), "{path} loads {external}…");
        }
    }
    assert!(total < 300 * 1024, "the console is {total} bytes uncompressed");

    let page = app.client.get(format!("{}/graphql", app.addr)).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "GraphiQL loads from elsewhere"
    );
    for asset in [
        "graphiql.min.js",
        "graphiql.min.css",
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql-init.js",
    ] {
        assert!(html.contains(&format!("/graphql/assets/{asset}")), "{asset}");
        let res = app
            .client
            .get(format!("{}/graphql/assets/{asset}", app.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{asset}");
        // reqwest here does not decompress: a gzip body starts with its magic bytes.
        let gzip = res.headers().get("content-encoding").is_some_and(|v| v == "gzip");
        let bytes = res.bytes().await.unwrap();
        assert!(!bytes.is_empty());
        if gzip {
            assert_eq!(&bytes[..2], &[0x1f, 0x8b], "{asset}");
        }
    }
    let missing = app
        .client
        .get(format!("{}/graphql/assets/nope.js", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn the_overview_counts_events_and_access_changes_and_events_filter_by_date() {
    let (app, _) = app_with_plan().await;
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.post_hotmart(&recent("purchase_refunded.json", &[])).await;
    let mut unknown: Value = serde_json::from_str(&recent("purchase_approved_single.json", &[])).unwrap();
    unknown["id"] = json!("unmapped-1");
    unknown["data"]["product"]["id"] = json!(999999);
    app.post_hotmart(&unknown.to_string()).await;
    app.process_inbox().await;
    let d = app
        .gql(
            "{ overview { backlog failed unmapped lastWebhookAt eventsPerHour { at kind count } changesPerDay { at kind count } changesPerHour { at kind count } } }",
            json!({}),
        )
        .await;
    let o = &d["overview"];
    assert_eq!((o["backlog"].as_i64(), o["unmapped"].as_i64()), (Some(0), Some(1)));
    assert!(o["lastWebhookAt"].is_string());
    let hour = chrono::Utc::now().format("%Y-%m-%dT%H").to_string();
    let events: i64 = o["eventsPerHour"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["at"] == hour.as_str())
        .map(|b| b["count"].as_i64().unwrap())
        .sum();
    assert_eq!(events, 3, "{o}");
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let changes: Vec<(String, i64)> = o["changesPerDay"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["at"] == day.as_str())
        .map(|b| (b["kind"].as_str().unwrap().to_string(), b["count"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        changes,
        [("access.granted".to_string(), 1), ("access.revoked".to_string(), 1)]
    );
    // By hour too, the hour they happened (UTC), for the console to group into local days.
    let by_hour: Vec<(String, String, i64)> = o["changesPerHour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["at"].as_str().unwrap().to_string(),
                b["kind"].as_str().unwrap().to_string(),
                b["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_hour,
        [
            (hour.clone(), "access.granted".to_string(), 1),
            (hour.clone(), "access.revoked".to_string(), 1)
        ]
    );

    let q = "query($a: DateTime, $b: DateTime) { webhookEvents(since: $a, until: $b) { nodes { eventId } } }";
    let now = chrono::Utc::now();
    let all = app
        .gql(
            q,
            json!({"a": (now - chrono::TimeDelta::hours(1)).to_rfc3339(), "b": null}),
        )
        .await;
    assert_eq!(all["webhookEvents"]["nodes"].as_array().unwrap().len(), 3);
    let none = app
        .gql(
            q,
            json!({"a": null, "b": (now - chrono::TimeDelta::hours(1)).to_rfc3339()}),
        )
        .await;
    assert!(none["webhookEvents"]["nodes"].as_array().unwrap().is_empty());
}

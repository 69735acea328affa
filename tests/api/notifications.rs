//! Outbound notifications, against a real local receiver: signed per Standard Webhooks (checked
//! with the official crate), retried until the receiver recovers, dead-lettered and re-sent,
//! 410 disables, nothing for a rolled-back change, versions that only grow, the expiry timer,
//! secret rotation with overlap, no redirects, bounded reads, and a kill -9 between the change
//! and its delivery.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use poem::http::{HeaderMap, StatusCode};
use poem::{Body, EndpointExt, IntoResponse, Request, Response, Route};
use serde_json::{Value, json};

use crate::helpers::*;
use porteiro::pipeline::dispatch;
use porteiro::services::entitlements;

/// What the receiver answers, in turn; the last one repeats.
#[derive(Clone, Debug)]
pub(crate) enum Reply {
    Status(u16),
    Redirect,
    Huge,
}

#[derive(Clone, Debug)]
pub(crate) struct Got {
    path: String,
    pub(crate) headers: HeaderMap,
    body: String,
}

pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Arc<Mutex<Vec<Got>>>,
    /// The most requests it was answering at once.
    most: Arc<std::sync::atomic::AtomicUsize>,
    plan: Arc<Mutex<VecDeque<Reply>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Receiver {
    pub(crate) async fn start(plan: &[Reply]) -> Receiver {
        Self::start_on("127.0.0.1:0", plan, std::time::Duration::ZERO).await
    }

    /// A receiver that takes `delay` over each answer.
    pub(crate) async fn start_slow(plan: &[Reply], delay: std::time::Duration) -> Receiver {
        Self::start_on("127.0.0.1:0", plan, delay).await
    }

    async fn start_on(addr: &str, plan: &[Reply], delay: std::time::Duration) -> Receiver {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let plan = Arc::new(Mutex::new(plan.iter().cloned().collect::<VecDeque<_>>()));
        let (now, most): (Arc<std::sync::atomic::AtomicUsize>, Arc<std::sync::atomic::AtomicUsize>) =
            Default::default();
        let (g, p, n, m) = (got.clone(), plan.clone(), now.clone(), most.clone());
        let endpoint = Route::new().nest(
            "/",
            poem::endpoint::make(move |req: Request| {
                let (g, p, n, m) = (g.clone(), p.clone(), n.clone(), m.clone());
                async move {
                    // Counted down however the request ends (a sender killed mid-send).
                    struct Answering(Arc<std::sync::atomic::AtomicUsize>);
                    impl Drop for Answering {
                        fn drop(&mut self) {
                            self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                    let at_once = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    let _answering = Answering(n);
                    m.fetch_max(at_once, std::sync::atomic::Ordering::SeqCst);
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    let path = req.uri().path().to_string();
                    let headers = req.headers().clone();
                    let body = req.into_body().into_string().await.unwrap_or_default();
                    g.lock().unwrap().push(Got { path, headers, body });
                    let reply = {
                        let mut p = p.lock().unwrap();
                        if p.len() > 1 { p.pop_front() } else { p.front().cloned() }
                    };
                    match reply.unwrap_or(Reply::Status(200)) {
                        Reply::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
                        Reply::Redirect => Response::builder()
                            .status(StatusCode::FOUND)
                            .header("location", "/elsewhere")
                            .finish(),
                        Reply::Huge => Response::builder()
                            .status(StatusCode::INTERNAL_SERVER_ERROR)
                            .body(Body::from(vec![b'x'; 5 * 1024 * 1024])),
                    }
                }
            }),
        );
        let acceptor = porteiro::http::bind(addr.parse().unwrap()).await.unwrap();
        let addr = porteiro::http::local_addr(&acceptor).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    endpoint.map_to_response(),
                    async {
                        let _ = rx.await;
                    },
                    None,
                )
                .await;
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            got,
            most,
            plan,
            _stop: tx,
        }
    }

    pub(crate) fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The most requests it was answering at once so far.
    pub(crate) fn most_at_once(&self) -> usize {
        self.most.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn answer(&self, plan: &[Reply]) {
        *self.plan.lock().unwrap() = plan.iter().cloned().collect();
    }
}

const CREATE: &str = "mutation($i: NotificationEndpointInput!) { createNotificationEndpoint(input: $i) { secret endpoint { id uid enabled eventTypes } } }";

pub(crate) async fn endpoint(app: &TestApp, url: &str, types: &[&str]) -> (String, String) {
    let d = app.gql(CREATE, json!({"i": {"url": url, "eventTypes": types}})).await;
    let c = &d["createNotificationEndpoint"];
    (
        c["endpoint"]["id"].as_str().unwrap().to_string(),
        c["secret"].as_str().unwrap().to_string(),
    )
}

/// Fans out and sends what is due `ahead` from now, waiting for the sends.
async fn pump(app: &TestApp, ahead: chrono::TimeDelta) {
    dispatch::fan_out(&app.state.notify).await.unwrap();
    for h in dispatch::deliver_due(&app.state.notify, chrono::Utc::now() + ahead)
        .await
        .unwrap()
    {
        h.await.unwrap();
    }
}

pub(crate) async fn now_pump(app: &TestApp) {
    pump(app, chrono::TimeDelta::zero()).await;
}

fn verify(secret: &str, g: &Got) -> Result<(), String> {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(g.body.as_bytes(), &g.headers)
        .map_err(|e| e.to_string())
}

pub(crate) fn body(g: &Got) -> Value {
    serde_json::from_str(&g.body).unwrap()
}

async fn deliveries(app: &TestApp) -> Vec<Value> {
    let d = app
        .gql(
            "{ notificationDeliveries(first: 100) { nodes { id status eventType messageId version attemptCount nextAttemptAt lastStatusCode lastError lastLatencyMs payload attempts { statusCode error latencyMs responseExcerpt } } } }",
            json!({}),
        )
        .await;
    d["notificationDeliveries"]["nodes"].as_array().unwrap().clone()
}

#[tokio::test]
async fn access_changes_are_delivered_signed_with_versions_that_only_grow() {
    let (app, plan) = app_with_plan().await;
    let rx = Receiver::start(&[Reply::Status(204)]).await;
    let (_, secret) = endpoint(&app, &rx.url, &[]).await;

    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;
    now_pump(&app).await;
    let got = rx.got();
    assert_eq!(got.len(), 1, "{got:?}");
    verify(&secret, &got[0]).expect("the signature verifies with the standardwebhooks crate");
    assert!(
        verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &got[0]).is_err(),
        "a wrong secret fails"
    );
    let b = body(&got[0]);
    assert_eq!(b["type"], "access.granted");
    let d = &b["data"];
    assert_eq!(
        d["buyer"],
        json!({"email": "ana.teste@example.com", "subscriberCode": "SBX7Q2LM"})
    );
    assert_eq!(d["target"]["kind"], "plan");
    assert_eq!(d["target"]["id"].to_string(), plan);
    assert_eq!(d["target"]["name"], "Mensal");
    assert_eq!(
        (d["access"]["active"].as_bool(), d["access"]["status"].as_str()),
        (Some(true), Some("ACTIVE"))
    );
    assert_eq!(d["cause"]["kind"], "hotmart");
    assert_eq!(d["cause"]["eventType"], "PURCHASE_APPROVED");
    assert_eq!(d["entitlement"]["version"], 1);
    assert_eq!(
        got[0].headers["webhook-id"].to_str().unwrap(),
        deliveries(&app).await[0]["messageId"]
    );

    // A redelivery of the same sale changes nothing: nothing is sent.
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;
    now_pump(&app).await;
    assert_eq!(rx.got().len(), 1);

    // The refund: access.revoked, a higher version.
    app.post_hotmart(&recent("purchase_refunded.json", &[])).await;
    app.process_inbox().await;
    now_pump(&app).await;
    let got = rx.got();
    assert_eq!(got.len(), 2);
    let b = body(&got[1]);
    assert_eq!(b["type"], "access.revoked");
    assert_eq!(b["data"]["access"]["active"], false);
    assert_eq!(b["data"]["previous"]["status"], "ACTIVE");
    assert_eq!(b["data"]["cause"]["eventType"], "PURCHASE_REFUNDED");
    let versions: Vec<i64> = got
        .iter()
        .map(|g| body(g)["data"]["entitlement"]["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2]);
    // A receiver keeps the highest version it saw: the older one arriving late is detectable.
    assert!(versions[0] < versions[1]);

    let listed = deliveries(&app).await;
    assert_eq!(listed.len(), 2);
    for d in &listed {
        assert_eq!(d["status"], "DELIVERED", "{d}");
        assert_eq!(d["lastStatusCode"], 204);
        assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
        assert!(d["lastLatencyMs"].is_number());
    }
}

/// An app that listens neither through an endpoint nor through the changes feed writes nothing
/// to the outbox; a `changes:read` key makes it write (the feed lists the changes, nothing is
/// sent); an endpoint created later hears every change from then on, not the ones before it,
/// its versions still counting them.
#[tokio::test]
async fn no_outbox_rows_for_an_app_that_does_not_listen_and_a_new_endpoint_hears_what_follows() {
    use sea_orm::{EntityTrait, PaginatorTrait};
    let (app, plan) = app_with_plan().await;
    let notes = || entity::notification::Entity::find().count(&app.state.db);
    let deliveries = || entity::notification_delivery::Entity::find().count(&app.state.db);
    app.post_hotmart(&recent("purchase_approved.json", &[("id", json!("first"))]))
        .await;
    assert_eq!(app.process_inbox().await, 1);
    assert_eq!(notes().await.unwrap(), 0);
    app.api_key(&["changes:read"]).await;
    app.gql(
        "mutation($id: ID!) { grantAccess(email: \"outra@example.com\", target: {kind: PLAN, id: $id}, reason: \"x\") { status } }",
        json!({"id": plan}),
    )
    .await;
    assert_eq!(notes().await.unwrap(), 1, "a feed reader listens");
    assert_eq!(dispatch::fan_out(&app.state.notify).await.unwrap(), 1);
    assert_eq!(deliveries().await.unwrap(), 0);
    let before = notes().await.unwrap();
    assert_eq!(app.access("ana.teste@example.com").await[0]["active"], true);

    let rx = Receiver::start(&[Reply::Status(204)]).await;
    endpoint(&app, &rx.url, &[]).await;
    app.post_hotmart(&recent("purchase_refunded.json", &[])).await;
    app.process_inbox().await;
    now_pump(&app).await;
    let got = rx.got();
    assert_eq!(got.len(), 1, "{got:?}");
    let b = body(&got[0]);
    assert_eq!(b["type"], "access.revoked");
    assert_eq!(b["data"]["previous"]["status"], "ACTIVE");
    assert_eq!(b["data"]["entitlement"]["version"], 2);
    assert_eq!(notes().await.unwrap(), before + 1);
    assert_eq!(deliveries().await.unwrap(), 1);
}

#[tokio::test]
async fn admin_actions_and_the_expiry_timer_are_announced_once() {
    let app = TestApp::spawn().await;
    let pkg = app.create_package("Bônus", &[], None).await;
    let rx = Receiver::start(&[Reply::Status(200)]).await;
    let (_, secret) = endpoint(&app, &rx.url, &[]).await;
    let until = (chrono::Utc::now() + chrono::TimeDelta::days(3)).to_rfc3339();
    app.gql(
        "mutation($id: ID!, $x: DateTime) { grantAccess(email: \"bia@example.com\", target: {kind: PACKAGE, id: $id}, expiresAt: $x, reason: \"gift\") { status } }",
        json!({"id": pkg, "x": until}),
    )
    .await;
    now_pump(&app).await;
    let b = body(&rx.got()[0]);
    assert_eq!(b["type"], "access.granted");
    assert_eq!(b["data"]["cause"]["kind"], "admin");
    assert_eq!(b["data"]["cause"]["reason"], "gift");

    // Three days later, the timer says it ended, once.
    let later = chrono::Utc::now() + chrono::TimeDelta::days(4);
    assert_eq!(
        porteiro::pipeline::outbox::announce_expiries(&app.state.db, later)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        porteiro::pipeline::outbox::announce_expiries(&app.state.db, later)
            .await
            .unwrap(),
        0
    );
    now_pump(&app).await;
    let got = rx.got();
    assert_eq!(got.len(), 2);
    verify(&secret, &got[1]).unwrap();
    let b = body(&got[1]);
    assert_eq!(b["type"], "access.expired");
    assert_eq!(b["data"]["access"]["status"], "EXPIRED");
    assert_eq!(b["data"]["cause"]["kind"], "timer");
    assert_eq!(b["data"]["entitlement"]["version"], 2);
}

#[tokio::test]
async fn a_failing_receiver_gets_the_event_after_it_recovers_and_a_dead_one_can_be_resent() {
    let (app, _) = app_with_plan().await;
    let rx = Receiver::start(&[
        Reply::Status(500),
        Reply::Status(502),
        Reply::Status(503),
        Reply::Status(200),
    ])
    .await;
    let (ep, secret) = endpoint(&app, &rx.url, &[]).await;
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;
    now_pump(&app).await;
    let d = &deliveries(&app).await[0];
    assert_eq!(
        (d["status"].as_str(), d["attemptCount"].as_i64()),
        (Some("PENDING"), Some(1))
    );
    assert_eq!(d["lastStatusCode"], 500);
    // The next try waits (about 5 s), so nothing more is sent now.
    let next = ms_of(&d["nextAttemptAt"]);
    assert!(next > chrono::Utc::now().timestamp_millis(), "{d}");
    now_pump(&app).await;
    assert_eq!(rx.got().len(), 1);
    for _ in 0..3 {
        pump(&app, chrono::TimeDelta::days(2)).await;
    }
    let got = rx.got();
    assert_eq!(got.len(), 4);
    // The same message every time, each signed afresh.
    let ids: std::collections::BTreeSet<&str> = got.iter().map(|g| g.headers["webhook-id"].to_str().unwrap()).collect();
    assert_eq!(ids.len(), 1);
    for g in &got {
        verify(&secret, g).unwrap();
    }
    let d = &deliveries(&app).await[0];
    assert_eq!(
        (d["status"].as_str(), d["attemptCount"].as_i64()),
        (Some("DELIVERED"), Some(4))
    );
    let codes: Vec<i64> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["statusCode"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [500, 502, 503, 200]);

    // A receiver that never recovers: dead after the whole schedule (8 attempts).
    rx.answer(&[Reply::Status(500)]);
    app.post_hotmart(&recent("purchase_refunded.json", &[])).await;
    app.process_inbox().await;
    now_pump(&app).await;
    for _ in 0..10 {
        pump(&app, chrono::TimeDelta::days(2)).await;
    }
    let d = &deliveries(&app).await[0];
    assert_eq!(
        (d["status"].as_str(), d["attemptCount"].as_i64()),
        (Some("DEAD"), Some(8)),
        "{d}"
    );
    assert_eq!(d["nextAttemptAt"], Value::Null);

    // Re-sent in bulk once the receiver is back.
    rx.answer(&[Reply::Status(200)]);
    let n = app
        .gql(
            "mutation($e: ID!) { resendNotifications(endpointId: $e) }",
            json!({"e": ep}),
        )
        .await;
    assert_eq!(n["resendNotifications"], 1);
    now_pump(&app).await;
    let d = &deliveries(&app).await[0];
    assert_eq!(d["status"], "DELIVERED", "{d}");
    assert_eq!(body(rx.got().last().unwrap())["type"], "access.revoked");
}

#[tokio::test]
async fn a_410_disables_the_endpoint_and_redirects_are_not_followed() {
    let (app, _) = app_with_plan().await;
    let rx = Receiver::start(&[Reply::Status(410)]).await;
    let (ep, _) = endpoint(&app, &rx.url, &[]).await;
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;
    now_pump(&app).await;
    let d = app
        .gql("{ notificationEndpoints { enabled disabledReason } }", json!({}))
        .await;
    let e = &d["notificationEndpoints"][0];
    assert_eq!(e["enabled"], false);
    assert!(e["disabledReason"].as_str().unwrap().contains("410"), "{e}");
    assert_eq!(deliveries(&app).await[0]["status"], "DEAD");
    // A disabled endpoint gets nothing new.
    app.post_hotmart(&recent("purchase_refunded.json", &[])).await;
    app.process_inbox().await;
    pump(&app, chrono::TimeDelta::days(2)).await;
    assert_eq!(rx.got().len(), 1);

    // Enabled again, pointing at a receiver that redirects and then answers 5 MiB.
    rx.answer(&[Reply::Redirect, Reply::Huge]);
    app.gql(
        "mutation($id: ID!) { updateNotificationEndpoint(id: $id, input: {enabled: true}) { enabled } }",
        json!({"id": ep}),
    )
    .await;
    app.gql(
        "mutation($e: ID!) { sendTestNotification(endpointId: $e) { status } }",
        json!({"e": ep}),
    )
    .await;
    let got = rx.got();
    assert!(
        got.iter().all(|g| g.path == "/hook"),
        "a redirect was followed: {got:?}"
    );
    let t = app.gql("mutation($e: ID!) { sendTestNotification(endpointId: $e) { status lastStatusCode attempts { responseExcerpt } } }", json!({"e": ep})).await;
    let t = &t["sendTestNotification"];
    assert_eq!(
        (t["status"].as_str(), t["lastStatusCode"].as_i64()),
        (Some("PENDING"), Some(500))
    );
    let excerpt = t["attempts"][0]["responseExcerpt"].as_str().unwrap();
    assert!(excerpt.len() <= 2048, "read {} bytes of the answer", excerpt.len());
    let redirect = deliveries(&app).await.into_iter().find(|d| d["lastStatusCode"] == 302);
    assert!(
        redirect.is_some_and(|d| d["status"] == "PENDING"),
        "a 302 is a failure to retry"
    );
}

#[tokio::test]
async fn nothing_is_sent_for_a_change_that_rolled_back() {
    let (app, _) = app_with_plan().await;
    let rx = Receiver::start(&[Reply::Status(200)]).await;
    endpoint(&app, &rx.url, &[]).await;
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;
    now_pump(&app).await;
    assert_eq!(rx.got().len(), 1);

    let app_id = app.app("default").await.id;
    let txn = porteiro::db::write_txn(&app.state.db).await.unwrap();
    let (n, _changed) = entitlements::revoke_source(&txn, app_id, "sub:SBX7Q2LM", "admin:test", "rolled back")
        .await
        .unwrap();
    assert_eq!(n, 1, "the revoke did change access inside the transaction");
    txn.rollback().await.unwrap();
    pump(&app, chrono::TimeDelta::days(2)).await;
    assert_eq!(rx.got().len(), 1, "a change that never committed was announced");
    assert_eq!(app.access("ana.teste@example.com").await[0]["active"], true);
}

#[tokio::test]
async fn filters_rotation_overlap_roles_and_secrets_at_rest() {
    let (app, _) = app_with_plan().await;
    let rx = Receiver::start(&[Reply::Status(200)]).await;
    let (ep, old) = endpoint(&app, &rx.url, &["access.revoked"]).await;
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;
    now_pump(&app).await;
    assert!(rx.got().is_empty(), "the filter lets only revocations through");

    let r = app
        .gql(
            "mutation($id: ID!) { rotateNotificationSecret(id: $id, overlapHours: 24) { secret endpoint { previousSecretValidUntil } } }",
            json!({"id": ep}),
        )
        .await;
    let new = r["rotateNotificationSecret"]["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(r["rotateNotificationSecret"]["endpoint"]["previousSecretValidUntil"].is_string());
    app.post_hotmart(&recent("purchase_refunded.json", &[])).await;
    app.process_inbox().await;
    now_pump(&app).await;
    let got = rx.got();
    assert_eq!(got.len(), 1);
    assert_eq!(body(&got[0])["type"], "access.revoked");
    // During the overlap both the old and the new secret verify.
    verify(&old, &got[0]).unwrap();
    verify(&new, &got[0]).unwrap();
    let r = app
        .gql(
            "mutation($id: ID!) { rotateNotificationSecret(id: $id, overlapHours: 0) { secret } }",
            json!({"id": ep}),
        )
        .await;
    let newest = r["rotateNotificationSecret"]["secret"].as_str().unwrap().to_string();
    let t = app
        .gql(
            "mutation($e: ID!) { sendTestNotification(endpointId: $e) { status } }",
            json!({"e": ep}),
        )
        .await;
    assert_eq!(t["sendTestNotification"]["status"], "DELIVERED");
    let test = rx.got().last().unwrap().clone();
    assert_eq!(body(&test)["type"], "porteiro.test");
    verify(&newest, &test).unwrap();
    assert!(
        verify(&new, &test).is_err(),
        "without overlap the replaced secret no longer verifies"
    );

    // Secrets are never stored in clear, and never listed.
    let listed = app.gql("{ notificationEndpoints { id uid url } }", json!({})).await;
    assert!(!listed.to_string().contains("whsec_"));
    use sea_orm::{ConnectionTrait, Statement};
    let rows = app
        .state
        .db
        .query_all_raw(Statement::from_string(
            app.state.db.get_database_backend(),
            "SELECT secret || ' ' || COALESCE(previous_secret, '') AS t FROM notification_endpoint",
        ))
        .await
        .unwrap();
    let stored: String = rows.iter().map(|r| r.try_get::<String>("", "t").unwrap()).collect();
    for s in [&old, &new, &newest] {
        assert!(
            !stored.contains(s.trim_start_matches("whsec_")),
            "a signing secret is stored in clear"
        );
    }

    // Viewers read, admins change.
    let viewer = app.token("default", porteiro::auth::Role::Viewer);
    let v = app.gql_as(&viewer, "{ notificationEndpoints { id } }", json!({})).await;
    assert_eq!(v["data"]["notificationEndpoints"][0]["id"], ep.as_str());
    let v = app.gql_as(&viewer, CREATE, json!({"i": {"url": rx.url}})).await;
    assert_eq!(error_code(&v), "FORBIDDEN");
    let v = app
        .gql_as(
            &viewer,
            "mutation($e: ID!) { sendTestNotification(endpointId: $e) { status } }",
            json!({"e": ep}),
        )
        .await;
    assert_eq!(error_code(&v), "FORBIDDEN");
}

#[tokio::test]
async fn endpoints_on_private_networks_are_refused_unless_the_operator_allows_them() {
    let app = TestApp::spawn_with(|s| s.notify_allow_private_targets = false).await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://10.1.2.3/x",
        "http://192.168.0.10/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://[fd00::1]/x",
        "ftp://example.com/x",
        "https://user:pass@example.com/x",
        "not a url",
    ] {
        let v = app.gql_as(&app.admin(), CREATE, json!({"i": {"url": url}})).await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{url}: {v}");
    }
    let v = app
        .gql_as(
            &app.admin(),
            CREATE,
            json!({"i": {"url": "https://example.com/hook", "eventTypes": ["access.nope"]}}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    let ok = app.gql(CREATE, json!({"i": {"url": "https://example.com/hook"}})).await;
    assert!(
        ok["createNotificationEndpoint"]["secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
}

/// kill -9 after the access change committed and before its notification went out: the
/// restarted server delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_survives_a_kill_9_between_the_change_and_its_delivery() {
    let (app, _) = app_with_plan().await;
    // The receiver is down at first.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let (_, secret) = endpoint(&app, &url, &[]).await;
    let db_url = app.state.settings.database_url.clone();
    let dir = app.state.settings.data_dir.clone();
    let client = reqwest::Client::new();

    // On PostgreSQL the restarted process takes the dispatcher over once the killed one's lease
    // has passed: a short one here.
    let lease = [("PORTEIRO_JOB_LEASE_SECS", "2")];
    let (server, addr) = crate::faults::start_with(&db_url, &dir, &lease);
    let hook = format!("{addr}/webhooks/hotmart/{}", app.app("default").await.webhook_key);
    let res = client
        .post(&hook)
        .header("content-type", "application/json")
        .header("X-HOTMART-HOTTOK", HOTTOK)
        .body(recent("purchase_approved.json", &[]))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    // Wait until the change committed and its first attempt failed (nobody listening).
    let mut attempted = false;
    for _ in 0..200 {
        let d = deliveries(&app).await;
        if d.first().is_some_and(|d| d["attemptCount"].as_i64() >= Some(1)) {
            attempted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(attempted, "the running server tried to deliver");
    drop(server); // SIGKILL
    assert_eq!(deliveries(&app).await[0]["status"], "PENDING");

    let rx = Receiver::start_on(
        &format!("127.0.0.1:{port}"),
        &[Reply::Status(200)],
        std::time::Duration::ZERO,
    )
    .await;
    // Its next try is due within seconds (the first retry waits about 5 s).
    let (server, _) = crate::faults::start_with(&db_url, &dir, &lease);
    let mut delivered = Vec::new();
    for _ in 0..300 {
        delivered = rx.got();
        if !delivered.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(server);
    assert_eq!(delivered.len(), 1, "delivered after the restart");
    verify(&secret, &delivered[0]).unwrap();
    assert_eq!(body(&delivered[0])["type"], "access.granted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn porteiro_notify_test_sends_a_signed_test_and_says_what_came_back() {
    let app = TestApp::spawn().await;
    let rx = Receiver::start(&[Reply::Status(200)]).await;
    let (ep, secret) = endpoint(&app, &rx.url, &[]).await;
    let run = |endpoint: String| {
        let (url, dir) = (
            app.state.settings.database_url.clone(),
            app.state.settings.data_dir.clone(),
        );
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_porteiro"))
                .args(["notify", "test", "--endpoint", &endpoint])
                .current_dir(&dir)
                .env("DATABASE_URL", url)
                .env("PORTEIRO_DATA_DIR", &dir)
                .env("PORTEIRO_NOTIFY_ALLOW_PRIVATE_TARGETS", "true")
                .env_remove("PORTEIRO_MASTER_KEY")
                .env_remove("PORTEIRO_JWT_KEY")
                .output()
                .unwrap()
        })
    };
    let out = run(ep.clone()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("answered 200"), "{stdout}");
    let got = rx.got();
    assert_eq!(got.len(), 1);
    verify(&secret, &got[0]).unwrap();
    assert_eq!(body(&got[0])["type"], "porteiro.test");

    rx.answer(&[Reply::Status(500)]);
    let out = run(ep).await.unwrap();
    assert!(!out.status.success(), "a failed test exits non-zero");
    assert!(String::from_utf8_lossy(&out.stdout).contains("answered 500"));
    let out = run("9999".into()).await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

/// The dispatcher as the server runs it: one delivery at a time to a slow-ish receiver, and
/// still every change arrives, each slot freed by the send before it rather than by a timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_dispatcher_sends_a_burst_through_one_slot() {
    let app = TestApp::spawn().await;
    let pkg = app.create_package("Bônus", &[], None).await;
    let rx = Receiver::start(&[Reply::Status(200)]).await;
    let (ep, _) = endpoint(&app, &rx.url, &[]).await;
    app.gql(
        "mutation($id: ID!) { updateNotificationEndpoint(id: $id, input: {maxInFlight: 1}) { maxInFlight } }",
        json!({"id": ep}),
    )
    .await;
    const N: usize = 40;
    for i in 0..N {
        app.gql(
            "mutation($e: String!, $id: ID!) { grantAccess(email: $e, target: {kind: PACKAGE, id: $id}, reason: \"burst\") { status } }",
            json!({"e": format!("b{i}@example.com"), "id": pkg}),
        )
        .await;
    }
    // Started after the burst, so no grant's own wake-up helps it along.
    let mut jobs = porteiro::jobs::Jobs::default();
    porteiro::app::start_dispatcher(&mut jobs, &app.state);
    // Generous: at one send per one-second tick this would take 40 s.
    for _ in 0..200 {
        if rx.got().len() >= N {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    jobs.stop().await;
    let mut emails: Vec<String> = rx
        .got()
        .iter()
        .map(|g| body(g)["data"]["buyer"]["email"].as_str().unwrap().to_string())
        .collect();
    emails.sort();
    emails.dedup();
    assert_eq!(emails.len(), N, "every grant was delivered once the burst was through");
}

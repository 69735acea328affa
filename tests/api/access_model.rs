//! The seven sequences of the access-model issue, end to end through the server: webhooks in,
//! `access` out. Each once granted lifetime access (or undid an admin) where it must not.
use serde_json::{Value, json};

use crate::fake_hotmart::sale;
use crate::helpers::*;

const ANA: &str = "ana.teste@example.com";
const DAY: i64 = 86_400_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn deliver(app: &TestApp, bodies: &[String]) {
    for b in bodies {
        let (status, v) = app.post_hotmart(b).await;
        assert_eq!(status, 200, "{v}");
    }
    app.process_inbox().await;
}

/// (status, active, expiresAt in ms) of the buyer's only entitlement.
async fn only(app: &TestApp, email: &str) -> (String, bool, Option<i64>) {
    let access = app.access(email).await;
    assert_eq!(access.len(), 1, "{email}: {access:?}");
    let a = &access[0];
    (
        a["status"].as_str().unwrap().to_string(),
        a["active"].as_bool().unwrap(),
        (!a["expiresAt"].is_null()).then(|| ms_of(&a["expiresAt"])),
    )
}

/// A first charge approved `ago` days ago whose next charge is in `next` days.
fn approved(id: &str, txn: &str, ago: i64, next: i64) -> String {
    let t = now_ms() - ago * DAY;
    fixture_with(
        "purchase_approved.json",
        &[
            ("id", json!(id)),
            ("creation_date", json!(t)),
            ("data.purchase.approved_date", json!(t)),
            ("data.purchase.transaction", json!(txn)),
            ("data.purchase.date_next_charge", json!(now_ms() + next * DAY)),
        ],
    )
}

fn complete(id: &str, txn: &str, ago: i64, next: i64) -> String {
    fixture_with(
        "purchase_complete.json",
        &[
            ("id", json!(id)),
            ("creation_date", json!(now_ms() - ago * DAY)),
            ("data.purchase.transaction", json!(txn)),
            ("data.purchase.date_next_charge", json!(now_ms() + next * DAY)),
        ],
    )
}

fn cancellation(id: &str, ago: i64, paid_until: i64, email: &str) -> String {
    fixture_with(
        "subscription_cancellation.json",
        &[
            ("id", json!(id)),
            ("creation_date", json!(now_ms() - ago * DAY)),
            ("data.date_next_charge", json!(paid_until)),
            ("data.subscriber.email", json!(email)),
        ],
    )
}

fn protest(id: &str, txn: &str, ago: i64) -> String {
    fixture_with(
        "purchase_protest.json",
        &[
            ("id", json!(id)),
            ("creation_date", json!(now_ms() - ago * DAY)),
            ("data.purchase.transaction", json!(txn)),
        ],
    )
}

fn delayed(id: &str, txn: &str, ago: i64) -> String {
    fixture_with(
        "purchase_delayed.json",
        &[
            ("id", json!(id)),
            ("creation_date", json!(now_ms() - ago * DAY)),
            ("data.purchase.transaction", json!(txn)),
        ],
    )
}

#[tokio::test]
async fn seq1_a_cancellation_in_the_warranty_survives_complete_resends_and_a_won_dispute() {
    let (app, _) = app_with_plan().await;
    let paid_until = now_ms() + 25 * DAY;
    deliver(
        &app,
        &[
            approved("a1", "HPT1", 5, 25),
            cancellation("c1", 3, paid_until, ANA),
            complete("k1", "HPT1", 1, 25),
        ],
    )
    .await;
    assert_eq!(only(&app, ANA).await, ("ACTIVE".into(), true, Some(paid_until)));
    // Hotmart re-sends the approval with a new id: the same transaction grants once.
    deliver(&app, &[approved("a1-resent", "HPT1", 0, 25)]).await;
    assert_eq!(only(&app, ANA).await, ("ACTIVE".into(), true, Some(paid_until)));
    // A dispute won after the cancellation resumes access, still ending at the paid date.
    deliver(&app, &[protest("p1", "HPT1", 2)]).await;
    assert_eq!(
        only(&app, ANA).await.0,
        "ACTIVE",
        "the later COMPLETE settled the dispute"
    );
    let (app2, _) = app_with_plan().await;
    deliver(
        &app2,
        &[
            approved("a1", "HPT1", 5, 25),
            cancellation("c1", 3, paid_until, ANA),
            protest("p1", "HPT1", 2),
        ],
    )
    .await;
    assert_eq!(only(&app2, ANA).await.0, "SUSPENDED");
    deliver(&app2, &[complete("k1", "HPT1", 1, 25)]).await;
    assert_eq!(only(&app2, ANA).await, ("ACTIVE".into(), true, Some(paid_until)));
}

#[tokio::test]
async fn seq2_a_plan_whose_renewals_stop_ends_at_the_paid_through_date_plus_grace() {
    let (app, _) = app_with_plan().await;
    deliver(&app, &[approved("a1", "HPT1", 40, -10)]).await;
    let (status, active, expires) = only(&app, ANA).await;
    assert_eq!((status.as_str(), active), ("EXPIRED", false));
    assert!(expires.is_some(), "a plan is never open-ended");
    // Without a next charge date the plan's period (30 days) stands in for it.
    let (app, _) = app_with_plan().await;
    let t = now_ms() - 2 * DAY;
    let body = fixture_with(
        "purchase_approved.json",
        &[
            ("creation_date", json!(t)),
            ("data.purchase.approved_date", json!(t)),
            ("data.purchase.date_next_charge", Value::Null),
        ],
    );
    deliver(&app, &[body]).await;
    assert_eq!(only(&app, ANA).await, ("ACTIVE".into(), true, Some(t + 33 * DAY)));
}

#[tokio::test]
async fn seq3_a_second_delay_never_brings_lapsed_access_back() {
    let (app, _) = app_with_plan().await;
    deliver(&app, &[approved("a1", "HPT1", 70, -40), delayed("d2", "HPT2", 40)]).await;
    let first = only(&app, ANA).await;
    assert_eq!((first.0.as_str(), first.1), ("EXPIRED", false));
    deliver(&app, &[delayed("d3", "HPT3", 1)]).await;
    assert_eq!(only(&app, ANA).await, first, "the next month's delay changes nothing");
}

#[tokio::test]
async fn seq4_an_admin_revoke_holds_against_later_webhooks() {
    let (app, plan) = app_with_plan().await;
    deliver(&app, &[approved("a1", "HPT1", 5, 25)]).await;
    let d = app
        .gql(
            "mutation($id: ID!) { revokeAccess(email: \"ana.teste@example.com\", target: {kind: PLAN, id: $id}, reason: \"fraud\") }",
            json!({"id": plan}),
        )
        .await;
    assert_eq!(d["revokeAccess"], 1);
    deliver(&app, &[complete("k1", "HPT1", 0, 25), approved("a2", "HPT2", 0, 55)]).await;
    assert_eq!(
        only(&app, ANA).await.0,
        "REVOKED",
        "neither the COMPLETE nor a renewal undoes it"
    );
    let d = app
        .gql(
            "query($id: ID!) { explainAccess(email: \"ana.teste@example.com\", target: {kind: PLAN, id: $id}) { steps { eventType effect decision } } }",
            json!({"id": plan}),
        )
        .await;
    let steps = d["explainAccess"]["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s["eventType"] == "ADMIN_REVOKE" && s["decision"] == "fraud"),
        "{steps:?}"
    );
    // An admin grant is the admin's own source, explicit about its end.
    let until = chrono::Utc::now() + chrono::Duration::days(10);
    app.gql(
        "mutation($id: ID!, $x: DateTime) { grantAccess(email: \"ana.teste@example.com\", target: {kind: PLAN, id: $id}, expiresAt: $x, reason: \"cleared\") { status } }",
        json!({"id": plan, "x": until.to_rfc3339()}),
    )
    .await;
    let access = app.access(ANA).await;
    let manual: Vec<&Value> = access.iter().filter(|a| a["active"] == true).collect();
    assert_eq!(manual.len(), 1);
    assert!(manual[0]["source"].as_str().unwrap().starts_with("manual:"));
    assert_eq!(ms_of(&manual[0]["expiresAt"]) / 1000, until.timestamp());
}

#[tokio::test]
async fn seq4_cancel_with_revoke_now_is_not_undone_by_hotmarts_cancellation() {
    let (app, fake) = crate::hotmart_api::setup().await;
    app.create_plan("Mensal", &["4100001"]).await;
    fake.subscriptions
        .lock()
        .unwrap()
        .push(crate::fake_hotmart::api_fixture("api_subscriptions_page.json")["items"][0].clone());
    deliver(&app, &[approved("a1", "HP14880000000001", 5, 25)]).await;
    let d = app
        .gql(
            "mutation { cancelSubscription(subscriberCode: \"SBX7Q2LM\", sendMail: false, revokeNow: true) { revokedAccess } }",
            json!({}),
        )
        .await;
    assert_eq!(d["cancelSubscription"]["revokedAccess"], 1);
    // The webhook that Hotmart sends because of the cancellation.
    deliver(&app, &[cancellation("c1", 0, now_ms() + 25 * DAY, ANA)]).await;
    assert_eq!(only(&app, ANA).await.0, "REVOKED");
}

#[tokio::test]
async fn seq5_a_subscription_has_one_holder_whatever_the_order_of_an_email_change() {
    let new_email = "ana.nova@example.com";
    let paid_until = now_ms() + 20 * DAY;
    let events = [
        approved("a1", "HPT1", 5, 25),
        cancellation("c1", 2, paid_until, new_email),
    ];
    for order in [[0, 1], [1, 0]] {
        let (app, _) = app_with_plan().await;
        for i in order {
            deliver(&app, &[events[i].clone()]).await;
        }
        assert!(app.access(ANA).await.is_empty(), "no copy stays with the old e-mail");
        assert_eq!(only(&app, new_email).await, ("ACTIVE".into(), true, Some(paid_until)));
        let d = app
            .gql(
                "{ buyer(subscriberCode: \"sbx7q2lm\") { email } access(subscriberCode: \"SBX7Q2LM\") { status } }",
                json!({}),
            )
            .await;
        assert_eq!(d["buyer"]["email"], new_email);
        assert_eq!(d["access"][0]["status"], "ACTIVE");
    }
}

#[tokio::test]
async fn seq6_changing_a_rule_recomputes_what_its_events_did() {
    let (app, _) = app_with_plan().await;
    deliver(&app, &[approved("a1", "HPT1", 5, 25), protest("p1", "HPT1", 2)]).await;
    assert_eq!(only(&app, ANA).await.0, "SUSPENDED");
    app.gql(
        "mutation($s: String!) { saveRule(eventType: \"PURCHASE_PROTEST\", source: $s) { version } }",
        json!({"s": "fn decide(e, t, a) { ignore(\"disputes are handled by support\") }"}),
    )
    .await;
    app.process_inbox().await;
    let protest_row = app
        .events()
        .await
        .into_iter()
        .find(|e| e["eventType"] == "PURCHASE_PROTEST")
        .unwrap();
    assert_eq!(protest_row["status"], "ignored");
    assert_eq!(
        only(&app, ANA).await.0,
        "ACTIVE",
        "the suspension went with the decision"
    );
    // Rolling back re-decides again, and a single replay recomputes as well.
    app.gql(
        "mutation { activateRuleVersion(eventType: \"PURCHASE_PROTEST\", version: 0) }",
        json!({}),
    )
    .await;
    app.process_inbox().await;
    assert_eq!(only(&app, ANA).await.0, "SUSPENDED");
}

#[tokio::test]
async fn seq7_rest_renewals_join_their_subscription_and_rest_statuses_sort_after_what_is_known() {
    let (app, fake) = crate::hotmart_api::setup().await;
    let now = now_ms();
    app.create_plan("Mensal", &["4100001"]).await;
    // A subscription that started long before the window, renewed inside it; no webhook came.
    let mut sub = crate::fake_hotmart::api_fixture("api_subscriptions_page.json")["items"][0].clone();
    sub["accession_date"] = json!(now - 400 * DAY);
    sub["date_next_charge"] = json!(now + 20 * DAY);
    fake.subscriptions.lock().unwrap().push(sub);
    fake.purchases.lock().unwrap().insert(
        "SBX7Q2LM".into(),
        vec![json!({"transaction": "HPREN0000000013", "status": "APPROVED", "approved_date": now - 10 * DAY, "recurrency_number": 13})],
    );
    fake.sales
        .lock()
        .unwrap()
        .push(sale(ANA, "HPREN0000000013", "APPROVED", now - 10 * DAY, true));
    // A subscription sale whose subscription Hotmart does not return is left out, never a `txn:`.
    fake.sales.lock().unwrap().push(sale(
        "orfa@example.com",
        "HPORPHAN000001",
        "APPROVED",
        now - 9 * DAY,
        true,
    ));
    let since = (chrono::Utc::now() - chrono::Duration::days(30)).to_rfc3339();
    let r = app
        .gql(
            "mutation($s: DateTime!) { reconcile(since: $s, dryRun: false, wait: true) { status report { unresolvedSubscriptionSales } } }",
            json!({"s": since}),
        )
        .await;
    assert_eq!(r["reconcile"]["status"], "succeeded", "{r}");
    assert_eq!(
        r["reconcile"]["report"]["unresolvedSubscriptionSales"],
        json!(["HPORPHAN000001"])
    );
    let access = app.access(ANA).await;
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["source"], "sub:SBX7Q2LM");
    // REST sales carry no next charge: the plan's period plus grace from the approval.
    assert_eq!(ms_of(&access[0]["expiresAt"]) / 1000, (now + 23 * DAY) / 1000);
    assert!(app.access("orfa@example.com").await.is_empty());

    // A later webhook cancellation ends it; then REST reports the subscription INACTIVE with its
    // paid-through date, and a dispute known only through REST: both apply after the history.
    deliver(&app, &[cancellation("c1", 1, now + 15 * DAY, ANA)]).await;
    {
        let mut subs = fake.subscriptions.lock().unwrap();
        subs[0]["status"] = json!("INACTIVE");
        subs[0]["date_next_charge"] = json!(now + 5 * DAY);
        subs[0]["end_accession_date"] = json!(now - 20 * DAY);
    }
    let r = app
        .gql(
            "mutation($s: DateTime!) { reconcile(since: $s, dryRun: false, wait: true) { status } }",
            json!({"s": since}),
        )
        .await;
    assert_eq!(r["reconcile"]["status"], "succeeded", "{r}");
    let (status, active, expires) = only(&app, ANA).await;
    assert_eq!((status.as_str(), active), ("ACTIVE", true));
    assert_eq!(
        expires.unwrap() / 1000,
        (now + 5 * DAY) / 1000,
        "INACTIVE ends at its paid-through date"
    );
    fake.sales.lock().unwrap()[0]["purchase"]["status"] = json!("PROTESTED");
    app.gql(
        "mutation($s: DateTime!) { reconcile(since: $s, dryRun: false, wait: true) { status } }",
        json!({"s": since}),
    )
    .await;
    assert_eq!(
        only(&app, ANA).await.0,
        "SUSPENDED",
        "a REST-only dispute is not dated before what is known"
    );
}

#[tokio::test]
async fn seq7_a_v1_refund_is_dated_when_it_arrives() {
    let (app, _) = app_with_plan().await;
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let approved = fixture("legacy_v1_purchase_approved.txt").replace("2025-05-14", &today);
    let refunded = approved.replace("status=approved", "status=refunded");
    for body in [approved, refunded] {
        let (status, v) = app
            .post_hotmart_with(&body, None, "application/x-www-form-urlencoded")
            .await;
        assert_eq!(status, 200, "{v}");
        app.process_inbox().await;
    }
    assert_eq!(only(&app, ANA).await.0, "REVOKED");
}

/// The worker decides a batch before it takes the write lock; a script that reads `access` must
/// still see what the events before it in the same batch did, exactly as one at a time.
#[tokio::test]
async fn a_script_reading_access_sees_the_events_before_it_in_the_same_batch() {
    let (app, _) = app_with_plan().await;
    app.gql(
        "mutation($s: String!) { saveRule(eventType: \"SUBSCRIPTION_CANCELLATION\", source: $s) { version } }",
        json!({"s": "fn decide(e, t, a) { if a == () { ignore(\"nothing to cancel yet\") } else { revoke() } }"}),
    )
    .await;
    // Both stored before the worker runs: one batch.
    deliver(
        &app,
        &[
            approved("a1", "HPT1", 5, 25),
            cancellation("c1", 1, now_ms() + 25 * DAY, ANA),
        ],
    )
    .await;
    let cancel_row = app
        .events()
        .await
        .into_iter()
        .find(|e| e["eventType"] == "SUBSCRIPTION_CANCELLATION")
        .unwrap();
    assert_eq!(cancel_row["status"], "processed", "{cancel_row}");
    let (_, active, _) = only(&app, ANA).await;
    assert!(!active, "the cancellation saw the grant before it and revoked");
}

/// Sets a package's or plan's Hotmart product ids (an admin reorganising the catalogue).
async fn link(app: &TestApp, kind: &str, id: &str, products: &[&str]) {
    let (m, input) = match kind {
        "package" => ("updateProductPackage", "UpdateProductPackageInput"),
        _ => ("updateSubscriptionPlan", "UpdateSubscriptionPlanInput"),
    };
    let q = format!("mutation($id: ID!, $i: {input}!) {{ {m}(id: $id, input: $i) {{ id }} }}");
    let d = app
        .gql(&q, json!({"id": id, "i": {"hotmartProductIds": products}}))
        .await;
    assert!(d[m]["id"].is_string(), "{d}");
}

const BIA: &str = "bia.teste@example.com";

/// A one-off sale of product 5200001 to Bia and a subscription of 4100001 to Ana, both approved.
async fn sale_and_subscription() -> (TestApp, String, String) {
    let (app, plan) = app_with_plan().await;
    let package = app.create_package("Curso", &["5200001"], None).await;
    let t = now_ms() - 5 * DAY;
    let single = fixture_with(
        "purchase_approved_single.json",
        &[
            ("id", json!("s1")),
            ("creation_date", json!(t)),
            ("data.purchase.approved_date", json!(t)),
            ("data.product.id", json!(5200001)),
            ("data.buyer.email", json!(BIA)),
        ],
    );
    deliver(&app, &[single, approved("a1", "HPT1", 5, 25)]).await;
    assert_eq!(only(&app, BIA).await, ("ACTIVE".into(), true, None));
    assert_eq!(only(&app, ANA).await.0, "ACTIVE");
    (app, package, plan)
}

fn refund_and_chargeback() -> Vec<String> {
    let t = now_ms() - DAY;
    vec![
        fixture_with(
            "purchase_refunded.json",
            &[
                ("id", json!("r1")),
                ("creation_date", json!(t)),
                ("data.product.id", json!(5200001)),
                ("data.purchase.transaction", json!("HP14880000000050")),
                ("data.buyer.email", json!(BIA)),
                ("data.subscription", Value::Null),
            ],
        ),
        fixture_with(
            "purchase_chargeback.json",
            &[
                ("id", json!("cb1")),
                ("creation_date", json!(t)),
                ("data.purchase.transaction", json!("HPT1")),
            ],
        ),
    ]
}

#[tokio::test]
async fn seq8_a_refund_after_the_product_was_unlinked_still_ends_access() {
    let (app, package, plan) = sale_and_subscription().await;
    link(&app, "package", &package, &[]).await;
    link(&app, "plan", &plan, &[]).await;
    deliver(&app, &refund_and_chargeback()).await;
    assert_eq!(only(&app, BIA).await.0, "REVOKED", "the one-off sale was refunded");
    assert_eq!(only(&app, ANA).await.0, "REVOKED", "the subscription was charged back");
    let events = app.events().await;
    for t in ["PURCHASE_REFUNDED", "PURCHASE_CHARGEBACK"] {
        let e = events.iter().find(|e| e["eventType"] == t).unwrap();
        assert_eq!(e["status"], "processed", "{e}");
    }
    // A fact that would give access still needs a link: a renewal of the unlinked plan is
    // unmapped (kept for replay once linked again), and nothing is granted.
    deliver(&app, &[approved("a2", "HPT2", 0, 30)]).await;
    assert_eq!(only(&app, ANA).await.0, "REVOKED");
    let renewal = app
        .events()
        .await
        .into_iter()
        .find(|e| e["eventType"] == "PURCHASE_APPROVED" && e["status"] == "unmapped");
    assert!(renewal.is_some(), "the renewal waits for a link");
}

#[tokio::test]
async fn seq8_a_refund_after_the_product_was_relinked_elsewhere_still_ends_access() {
    let (app, package, plan) = sale_and_subscription().await;
    link(&app, "package", &package, &[]).await;
    link(&app, "plan", &plan, &[]).await;
    app.create_package("Curso novo", &["5200001"], None).await;
    app.create_plan("Mensal novo", &["4100001"]).await;
    deliver(&app, &refund_and_chargeback()).await;
    assert_eq!(only(&app, BIA).await.0, "REVOKED");
    assert_eq!(only(&app, ANA).await.0, "REVOKED");
}

#[tokio::test]
async fn seq9_an_open_dispute_holds_whether_the_renewal_came_on_time_or_late() {
    for (renewed_ago, when) in [(11, "on time"), (2, "after the cover ran out")] {
        let (app, _) = app_with_plan().await;
        deliver(
            &app,
            &[
                approved("a1", "HPT1", 40, -10),
                protest("p1", "HPT1", 20),
                approved("a2", "HPT2", renewed_ago, 28),
            ],
        )
        .await;
        assert_eq!(only(&app, ANA).await.0, "SUSPENDED", "renewed {when}");
        // Settled: won (paid again) lifts it; the renewal's cover stands.
        deliver(&app, &[complete("k1", "HPT1", 0, -10)]).await;
        let (status, active, end) = only(&app, ANA).await;
        assert_eq!(
            (status.as_str(), active),
            ("ACTIVE", true),
            "renewed {when}, dispute won"
        );
        let want = now_ms() + 31 * DAY;
        assert!(
            end.is_some_and(|e| (want - e).abs() < 60_000),
            "{end:?}: the renewal's cover"
        );
    }
}

#[tokio::test]
async fn seq10_a_lost_approval_gives_the_same_access_as_a_delivered_one() {
    let paid_until = now_ms() + 20 * DAY;
    let t2 = now_ms() - 10 * DAY;
    let complete_t2 = fixture_with(
        "purchase_complete.json",
        &[
            ("id", json!("k2")),
            ("creation_date", json!(now_ms() - DAY)),
            ("data.purchase.approved_date", json!(t2)),
            ("data.purchase.transaction", json!("HPT2")),
            ("data.purchase.date_next_charge", json!(paid_until)),
        ],
    );
    let approved_t2 = fixture_with(
        "purchase_approved.json",
        &[
            ("id", json!("a2")),
            ("creation_date", json!(t2)),
            ("data.purchase.approved_date", json!(t2)),
            ("data.purchase.transaction", json!("HPT2")),
            ("data.purchase.date_next_charge", json!(paid_until)),
        ],
    );
    let mut outcomes = Vec::new();
    for with_approval in [true, false] {
        let (app, _) = app_with_plan().await;
        let mut history = vec![approved("a1", "HPT1", 40, -10)];
        if with_approval {
            history.push(approved_t2.clone());
        }
        history.push(cancellation("c1", 5, paid_until, ANA));
        history.push(complete_t2.clone());
        deliver(&app, &history).await;
        outcomes.push(only(&app, ANA).await);
    }
    assert_eq!(outcomes[0], ("ACTIVE".into(), true, Some(paid_until)));
    assert_eq!(outcomes[1], outcomes[0], "the COMPLETE stands in for the lost approval");
}

/// A holding's subscription state as REST (`/v1/access` and the check), GraphQL and the last
/// notification all show it; they must agree. (status, [willRenew, cancelAtPeriodEnd, inGrace,
/// suspended], expiresAt in ms).
async fn state(app: &TestApp, key: &str, plan: &str) -> (String, [bool; 4], Option<i64>) {
    use sea_orm::{EntityTrait, QueryOrder};
    const FLAGS: [&str; 4] = ["willRenew", "cancelAtPeriodEnd", "inGrace", "suspended"];
    let flags = |v: &Value| FLAGS.map(|f| v[f].as_bool().unwrap_or_else(|| panic!("{f} in {v}")));
    let rest = |path: String| async move {
        let res = app
            .client
            .get(format!("{}{path}", app.addr))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()
    };
    let all = rest(format!("/v1/access?email={ANA}")).await;
    let e = &all["entitlements"][0];
    let check = rest(format!("/v1/access/check?email={ANA}&plan={plan}")).await;
    let g = app.access(ANA).await;
    let got = (
        e["status"].as_str().unwrap().to_string(),
        flags(e),
        e["expiresAt"].clone(),
    );
    assert_eq!(flags(&check), got.1, "check {check} vs {e}");
    assert_eq!(flags(&g[0]), got.1, "GraphQL {g:?} vs {e}");
    assert_eq!(g[0]["status"], got.0, "GraphQL {g:?} vs {e}");
    let last = entity::notification::Entity::find()
        .order_by_desc(entity::notification::Column::Id)
        .one(&app.state.db)
        .await
        .unwrap();
    // A holding that never gave access was never announced; the timer announces an end that
    // passed. Anything else was, and its last word is the state read here.
    if got.0 != "EXPIRED" {
        let note: Value = serde_json::from_str(&last.expect("the change was announced").payload).unwrap();
        let heard = &note["data"]["access"];
        assert_eq!(flags(heard), got.1, "notification {note} vs {e}");
        assert_eq!(heard["status"], got.0, "notification {note} vs {e}");
    }
    let end = (!got.2.is_null()).then(|| ms_of(&got.2));
    (got.0, got.1, end)
}

/// The README's subscription-state table, one sequence per row, through webhooks: each flag as
/// REST, GraphQL and the notification show it, consistent with `expiresAt`.
#[tokio::test]
async fn the_subscription_state_table_holds_for_each_sequence() {
    const RENEWS: [bool; 4] = [true, false, false, false];
    const CANCELLED: [bool; 4] = [false, true, false, false];
    const GRACE: [bool; 4] = [false, false, true, false];
    const DISPUTED: [bool; 4] = [false, false, false, true];
    const NOTHING: [bool; 4] = [false; 4];
    let paid_until = now_ms() + 20 * DAY;
    let rows: Vec<(&str, Vec<String>, &str, [bool; 4])> = vec![
        ("paid", vec![approved("a1", "HPT1", 5, 25)], "ACTIVE", RENEWS),
        (
            "cancelled within the paid period",
            vec![approved("a1", "HPT1", 5, 20), cancellation("c1", 2, paid_until, ANA)],
            "ACTIVE",
            CANCELLED,
        ),
        (
            "a renewal charge failed, within grace",
            vec![approved("a1", "HPT1", 29, 1), delayed("d2", "HPT2", 1)],
            "ACTIVE",
            GRACE,
        ),
        (
            "a failed charge paid after all",
            vec![
                approved("a1", "HPT1", 29, 1),
                delayed("d2", "HPT2", 1),
                approved("a2", "HPT2", 0, 30),
            ],
            "ACTIVE",
            RENEWS,
        ),
        (
            "a dispute",
            vec![approved("a1", "HPT1", 5, 25), protest("p1", "HPT1", 1)],
            "SUSPENDED",
            DISPUTED,
        ),
        (
            "a dispute after a cancellation",
            vec![
                approved("a1", "HPT1", 5, 20),
                cancellation("c1", 3, paid_until, ANA),
                protest("p1", "HPT1", 1),
            ],
            "SUSPENDED",
            [false, true, false, true],
        ),
        (
            "cancelled, and the paid period is over",
            vec![
                approved("a1", "HPT1", 40, -10),
                cancellation("c1", 20, now_ms() - 10 * DAY, ANA),
            ],
            "EXPIRED",
            NOTHING,
        ),
        (
            "a failed charge never paid",
            vec![approved("a1", "HPT1", 40, -10), delayed("d2", "HPT2", 10)],
            "EXPIRED",
            NOTHING,
        ),
        (
            "refunded",
            vec![
                approved("a1", "HPT1", 5, 25),
                fixture_with(
                    "purchase_refunded.json",
                    &[
                        ("id", json!("r1")),
                        ("creation_date", json!(now_ms() - DAY)),
                        ("data.purchase.transaction", json!("HPT1")),
                    ],
                ),
            ],
            "REVOKED",
            NOTHING,
        ),
    ];
    for (name, bodies, status, flags) in rows {
        let (app, plan) = app_with_plan().await;
        app.paused_endpoint().await;
        let key = app.api_key(&["access:read"]).await;
        deliver(&app, &bodies).await;
        let (got_status, got_flags, end) = state(&app, &key, &plan).await;
        assert_eq!((got_status.as_str(), got_flags), (status, flags), "{name}");
        // Every flag but none means access is live until `expiresAt`.
        if flags != NOTHING {
            assert!(end.is_some_and(|e| e > now_ms()), "{name}: ends {end:?}");
        }
        if name == "cancelled within the paid period" {
            assert_eq!(end, Some(paid_until), "{name}");
        }
    }
    // A courtesy ends when the admin said; nothing renews it.
    let (app, plan) = app_with_plan().await;
    app.paused_endpoint().await;
    let key = app.api_key(&["access:read"]).await;
    app.gql(
        "mutation($id: ID!) { grantAccess(email: \"ana.teste@example.com\", target: {kind: PLAN, id: $id}, expiresAt: \"2030-01-01T00:00:00Z\", reason: \"cortesia\") { status } }",
        json!({"id": plan}),
    )
    .await;
    assert_eq!(state(&app, &key, &plan).await.1, NOTHING, "a courtesy");
}

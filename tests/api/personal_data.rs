//! Buyers' personal data under the LGPD: what access does not need never reaches the disk, a
//! buyer's data can be exported, and erased so that neither the database file nor any answer
//! holds it and no later delivery brings them back.
use sea_orm::{ConnectionTrait, EntityTrait};
use serde_json::json;

use crate::helpers::*;
use crate::notifications::{Receiver, Reply, endpoint, now_pump};

/// The fixture's personal fields, as they appear in clear.
const CPF: &str = "00000000000";
const PHONE: &str = "999990000";
const ZIP: &str = "30000000";
const STREET: &str = "Rua Ficticia";
const ANA: &str = "ana.teste@example.com";
const ANA_NAME: &str = "Ana Teste Exemplo";

fn is_pg() -> bool {
    pg_base().is_some()
}

/// Every byte of the SQLite database: the file, its WAL and journal.
fn sqlite_bytes(app: &TestApp) -> Vec<u8> {
    let file = porteiro::db::sqlite_file(&app.state.settings.database_url).unwrap();
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-journal"] {
        let mut p = file.clone().into_os_string();
        p.push(suffix);
        if let Ok(b) = std::fs::read(&p) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Every text and byte column of every table, on PostgreSQL, as one string.
async fn pg_everything(app: &TestApp) -> String {
    let db = &app.state.db;
    let tables: Vec<String> = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public'",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "t").unwrap())
        .collect();
    let mut out = String::new();
    for t in tables {
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!("SELECT CAST(row_to_json(x) AS TEXT) AS j FROM \"{t}\" x"),
            ))
            .await
            .unwrap();
        for r in rows {
            out.push_str(&r.try_get::<String>("", "j").unwrap());
        }
        // bytea columns appear hex-encoded in row_to_json: read the bodies as text too.
    }
    let bodies = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT convert_from(raw_body, 'UTF8') AS b FROM webhook_event",
        ))
        .await
        .unwrap();
    for r in bodies {
        out.push_str(&r.try_get::<String>("", "b").unwrap());
    }
    out
}

/// Whether anything Porteiro stored holds `needle` (any case).
async fn stored(app: &TestApp, needle: &str) -> bool {
    if is_pg() {
        pg_everything(app).await.to_lowercase().contains(&needle.to_lowercase())
    } else {
        porteiro::db::forget_freed(&app.state.db).await;
        contains(&sqlite_bytes(app), needle)
    }
}

#[tokio::test]
async fn the_document_phone_and_address_never_reach_the_disk() {
    let (app, _plan) = app_with_plan().await;
    let (status, _) = app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    assert_eq!(status, 200);
    app.process_inbox().await;
    assert_eq!(app.access(ANA).await[0]["status"], "ACTIVE", "access is as before");
    // A v1 postback carries them too.
    let v1 = fixture("legacy_v1_purchase_approved.txt");
    let (status, _) = app
        .post_hotmart_with(&v1, Some(HOTTOK), "application/x-www-form-urlencoded")
        .await;
    assert_eq!(status, 200);
    app.process_inbox().await;
    for secret in [CPF, PHONE, ZIP, STREET] {
        assert!(!stored(&app, secret).await, "{secret} reached the disk");
    }
    // What access and support need is kept.
    assert!(stored(&app, ANA).await);
    let events = app.events().await;
    let v2 = events
        .iter()
        .find(|e| e["eventId"] != events[0]["eventId"] || events.len() == 1)
        .unwrap();
    let d = app
        .gql(
            "query($id: ID!) { webhookEvent(id: $id) { format rawPayload } }",
            json!({"id": v2["id"]}),
        )
        .await;
    let raw = d["webhookEvent"]["rawPayload"].as_str().unwrap().to_string();
    assert!(!raw.contains(CPF) && raw.contains(ANA), "{raw}");
}

#[tokio::test]
async fn a_seller_who_keeps_them_can_mask_them_later() {
    let app = TestApp::spawn_with(|s| s.keep_personal_data = true).await;
    app.configure_hotmart().await;
    app.create_plan("Mensal", &["4100001"]).await;
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;
    assert!(stored(&app, CPF).await, "kept as asked");
    let n = porteiro::services::personal_data::mask_stored(&app.state.db)
        .await
        .unwrap();
    assert_eq!(n, 1);
    for secret in [CPF, PHONE, ZIP, STREET] {
        assert!(!stored(&app, secret).await, "{secret} is still stored");
    }
    assert_eq!(
        porteiro::services::personal_data::mask_stored(&app.state.db)
            .await
            .unwrap(),
        0,
        "nothing left to mask"
    );
    assert_eq!(app.access(ANA).await[0]["status"], "ACTIVE");
}

const ERASE: &str =
    "mutation($e: String!, $r: String!) { eraseBuyer(email: $e, reason: $r) { pseudonym revoked sources events } }";
const EXPORT: &str = "query($e: String!) { exportBuyerData(email: $e) }";

fn bia_sale(transaction: &str, id: &str) -> String {
    recent(
        "purchase_approved.json",
        &[
            ("id", json!(id)),
            ("data.purchase.transaction", json!(transaction)),
            ("data.buyer.email", json!("bia@example.com")),
            ("data.buyer.name", json!("Bia Outra")),
            ("data.subscription.subscriber.code", json!("SBBIA001")),
        ],
    )
}

#[tokio::test]
async fn an_export_holds_everything_about_the_person_and_nothing_about_another() {
    let (app, plan) = app_with_plan().await;
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.post_hotmart(&bia_sale("HPBIA0001", "bia-1")).await;
    app.process_inbox().await;
    app.gql(
        "mutation($e: String!, $p: ID!) { grantAccess(email: $e, target: {kind: PLAN, id: $p}, reason: \"cortesia\") { status } }",
        json!({"e": ANA, "p": plan}),
    )
    .await;
    let d = app.gql(EXPORT, json!({"e": ANA})).await;
    let x = &d["exportBuyerData"];
    let text = x.to_string();
    assert!(
        !text.contains("bia@example.com") && !text.contains("Bia Outra"),
        "{text}"
    );
    assert_eq!(x["buyers"][0]["email"], ANA);
    assert_eq!(x["buyers"][0]["name"], ANA_NAME);
    assert_eq!(x["subscriberCodes"], json!(["SBX7Q2LM"]));
    let ents = x["entitlements"].as_array().unwrap();
    assert_eq!(ents.len(), 2, "the sale and the courtesy: {x}");
    let facts = x["facts"].as_array().unwrap();
    assert!(facts.iter().any(|f| f["eventType"] == "PURCHASE_APPROVED"), "{x}");
    assert!(
        facts
            .iter()
            .any(|f| f["effect"] == "admin_grant" || f["actor"] != "rules"),
        "{x}"
    );
    let events = x["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{x}");
    assert!(events[0]["body"].as_str().unwrap().contains(ANA));
    assert!(
        !x["audit"].as_array().unwrap().is_empty(),
        "the grant's audit rows name her: {x}"
    );
    // Every row the test created for Ana is in it: compare with the tables.
    let db = &app.state.db;
    let all_facts = entity::access_fact::Entity::find().all(db).await.unwrap();
    let hers = all_facts.iter().filter(|f| f.email.as_deref() == Some(ANA)).count();
    assert_eq!(
        facts.iter().filter(|f| f["email"] == ANA).count(),
        hers,
        "every fact naming her"
    );
    // Viewers may not export.
    let viewer = app.token("default", porteiro::auth::Role::Viewer);
    let (_, v) = app
        .graphql_raw(Some(&viewer), &json!({"query": EXPORT, "variables": {"e": ANA}}))
        .await;
    assert_eq!(error_code(&v), "FORBIDDEN", "{v}");
}

#[tokio::test]
async fn an_erased_buyer_is_gone_from_the_disk_and_the_answers_and_does_not_come_back() {
    let (app, _plan) = app_with_plan().await;
    let receiver = Receiver::start(&[Reply::Status(200)]).await;
    endpoint(&app, &receiver.url, &[]).await;
    let sale = recent("purchase_approved.json", &[]);
    app.post_hotmart(&sale).await;
    app.post_hotmart(&bia_sale("HPBIA0001", "bia-1")).await;
    app.process_inbox().await;
    now_pump(&app).await;
    assert_eq!(app.access(ANA).await[0]["status"], "ACTIVE");
    // A backtest's report names her: her access would end under this draft.
    app.gql(
        "mutation { saveRule(eventType: \"PURCHASE_APPROVED\", source: \"fn decide(e, t, a) { ignore(\\\"paused\\\") }\", activate: false) { version } }",
        json!({}),
    )
    .await;
    let who = app.principal().await;
    let bt = porteiro::services::backtests::start(&app.state, &who, "PURCHASE_APPROVED", 1, Default::default())
        .await
        .unwrap();
    let bt = porteiro::services::backtests::wait(&app.state, who.app_id, bt.id, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert!(bt.report.unwrap().contains(ANA));

    let d = app
        .gql(
            ERASE,
            json!({"e": "Ana.Teste@Example.com", "r": "pedido da titular em 2026-12-05"}),
        )
        .await;
    let erased = &d["eraseBuyer"];
    assert_eq!(erased["revoked"], 1, "{d}");
    let pseudonym = erased["pseudonym"].as_str().unwrap().to_string();
    assert!(pseudonym.ends_with("@erased.invalid"));

    // The app heard that the access ended (naming the pseudonym, the same entitlement).
    now_pump(&app).await;
    let got = receiver.got();
    let last = crate::notifications::body(got.last().unwrap());
    assert_eq!(last["type"], "access.revoked", "{last}");
    assert!(!last.to_string().contains(ANA), "{last}");

    // Neither the database nor any answer holds her.
    for needle in [ANA, ANA_NAME, "Ana Teste", CPF] {
        assert!(!stored(&app, needle).await, "{needle} is still stored");
    }
    assert!(stored(&app, "bia@example.com").await, "another buyer is untouched");
    let answers = [
        app.gql("{ buyers(first: 50) { nodes { email name } } }", json!({}))
            .await,
        app.gql(
            "{ webhookEvents(first: 50) { nodes { id eventId email rawPayload error decision } } }",
            json!({}),
        )
        .await,
        app.gql(
            "{ auditLog(first: 100) { nodes { target before after reason } } }",
            json!({}),
        )
        .await,
        app.gql(EXPORT, json!({"e": pseudonym})).await,
    ];
    for a in &answers {
        let text = a.to_string().to_lowercase();
        assert!(!text.contains(ANA) && !text.contains("ana teste"), "{a}");
    }
    assert!(app.access(ANA).await.is_empty());
    let d = app.gql(EXPORT, json!({"e": ANA})).await;
    for part in ["buyers", "entitlements", "facts", "events", "notifications", "audit"] {
        assert_eq!(d["exportBuyerData"][part], json!([]), "{part}: {d}");
    }

    // Hotmart delivers her sale again, and once more under a new id: not applied, not stored in clear.
    app.post_hotmart(&sale).await;
    let again = recent("purchase_approved.json", &[("id", json!("reemitted-1"))]);
    let (status, _) = app.post_hotmart(&again).await;
    assert_eq!(status, 200);
    app.process_inbox().await;
    assert!(app.access(ANA).await.is_empty(), "she did not come back");
    let d = app
        .gql(
            "{ webhookEvents(first: 50) { nodes { eventId status error } } }",
            json!({}),
        )
        .await;
    let re = d["webhookEvents"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["eventId"] == "reemitted-1")
        .cloned()
        .unwrap();
    assert_eq!(re["status"], "ignored", "{re}");
    assert!(re["error"].as_str().unwrap().contains("erased"), "{re}");
    for needle in [ANA, ANA_NAME] {
        assert!(!stored(&app, needle).await, "{needle} came back with the redelivery");
    }

    // A backup taken now does not hold her.
    if !is_pg() {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("after-erasure");
        porteiro::ops::backup::create(
            &porteiro::ops::backup::Source::of(&app.state.settings),
            &to,
            porteiro::ops::backup::Keys::Exclude,
        )
        .await
        .unwrap();
        let bytes = std::fs::read(to.join("porteiro.db")).unwrap();
        assert!(
            !contains(&bytes, ANA) && !contains(&bytes, ANA_NAME),
            "the backup holds her"
        );
        assert!(contains(&bytes, "bia@example.com"));
    }

    // A new purchase under the same e-mail is a new buyer.
    let new = recent(
        "purchase_approved.json",
        &[
            ("id", json!("new-purchase")),
            ("data.purchase.transaction", json!("HPNEW0001")),
            ("data.subscription.subscriber.code", json!("SBNEW001")),
        ],
    );
    app.post_hotmart(&new).await;
    app.process_inbox().await;
    let access = app.access(ANA).await;
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["status"], "ACTIVE");

    // The erasure is audited without the erased values.
    let d = app
        .gql("{ auditLog(first: 100) { nodes { action target reason } } }", json!({}))
        .await;
    let row = d["auditLog"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["action"] == "buyer.erase")
        .cloned()
        .unwrap();
    assert_eq!(row["target"], format!("buyer:{pseudonym}"));
    assert_eq!(row["reason"], "pedido da titular em 2026-12-05");
}

#[tokio::test]
async fn erasing_needs_an_admin_a_reason_and_someone_to_erase() {
    let (app, _plan) = app_with_plan().await;
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;
    let (_, v) = app
        .graphql_raw(
            Some(&app.token("default", porteiro::auth::Role::Viewer)),
            &json!({"query": ERASE, "variables": {"e": ANA, "r": "x"}}),
        )
        .await;
    assert_eq!(error_code(&v), "FORBIDDEN", "{v}");
    let (_, v) = app
        .graphql_raw(
            Some(&app.admin()),
            &json!({"query": ERASE, "variables": {"e": ANA, "r": "  "}}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT", "{v}");
    let (_, v) = app
        .graphql_raw(
            Some(&app.admin()),
            &json!({"query": ERASE, "variables": {"e": "nobody@example.com", "r": "pedido"}}),
        )
        .await;
    assert_eq!(error_code(&v), "NOT_FOUND", "{v}");
    assert_eq!(app.access(ANA).await[0]["status"], "ACTIVE", "nothing happened");
    let _ = app.state.db.execute_unprepared("SELECT 1").await;
}

#[tokio::test]
async fn the_retention_empties_old_bodies_and_what_they_decided_stands() {
    use entity::webhook_event as we;
    use sea_orm::{ActiveModelTrait, Set};
    let (app, _plan) = app_with_plan().await;
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.post_hotmart(&bia_sale("HPBIA0001", "bia-1")).await;
    app.process_inbox().await;
    let db = &app.state.db;
    let rows = we::Entity::find().all(db).await.unwrap();
    let (old, young) = (rows[0].clone(), rows[1].clone());
    let mut am: we::ActiveModel = old.clone().into();
    am.processed_at = Set(Some(chrono::Utc::now() - chrono::Duration::days(40)));
    am.update(db).await.unwrap();

    let n = porteiro::services::personal_data::apply_retention(db, 30)
        .await
        .unwrap();
    assert_eq!(n, 1, "only the event decided 40 days ago");
    let old = we::Entity::find_by_id(old.id).one(db).await.unwrap().unwrap();
    assert!(old.raw_body.is_empty());
    assert!(
        old.email.is_some() && old.decision.is_some(),
        "the row and its decision stay"
    );
    let young = we::Entity::find_by_id(young.id).one(db).await.unwrap().unwrap();
    assert!(!young.raw_body.is_empty());
    assert_eq!(app.access(ANA).await[0]["status"], "ACTIVE", "its fact stands");

    // It cannot be replayed; a requeue that forgot to skip it leaves its facts alone.
    let (_, v) = app
        .graphql_raw(
            Some(&app.admin()),
            &json!({"query": "mutation($id: ID!) { replayWebhookEvent(id: $id) { status } }", "variables": {"id": old.id.to_string()}}),
        )
        .await;
    assert_eq!(error_code(&v), "CONFLICT", "{v}");
    let mut am: we::ActiveModel = old.clone().into();
    am.status = Set(entity::status::InboxStatus::Pending);
    am.update(db).await.unwrap();
    app.process_inbox().await;
    let old = we::Entity::find_by_id(old.id).one(db).await.unwrap().unwrap();
    assert_eq!(old.status, entity::status::InboxStatus::Failed);
    let why = old.error.unwrap();
    assert!(why.contains("retention"), "{why}");
    assert_eq!(app.access(ANA).await[0]["status"], "ACTIVE", "what it decided stands");
    assert_eq!(
        porteiro::services::personal_data::apply_retention(db, 30)
            .await
            .unwrap(),
        0
    );
}

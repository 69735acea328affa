//! The changes feed (`GET /v1/changes`): every announcement the notifications carry, with the
//! same ids, bodies and versions, in an order that never lets a reader skip a change that
//! committed late; a receiver that was down catches up from its last cursor.
use std::collections::HashMap;

use serde_json::{Value, json};

use crate::helpers::*;
use crate::notifications::{Receiver, Reply, body, endpoint, now_pump};

const GRANT: &str = "mutation($e: String!, $id: ID!) { grantAccess(email: $e, target: {kind: PLAN, id: $id}, reason: \"cortesia\") { status } }";
const REVOKE: &str =
    "mutation($e: String!, $id: ID!) { revokeAccess(email: $e, target: {kind: PLAN, id: $id}, reason: \"fraude\") }";

#[tokio::test]
async fn the_feed_lists_what_the_notifications_carry_in_order() {
    let (app, plan) = app_with_plan().await;
    let key = app.api_key(&["access:read", "changes:read"]).await;
    // A change before the app has any endpoint is in the feed all the same.
    app.gql(GRANT, json!({"e": "first@example.com", "id": plan})).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let rx = Receiver::start(&[Reply::Status(204)]).await;
    endpoint(&app, &rx.url, &[]).await;
    let sale = recent(
        "purchase_approved.json",
        &[("id", json!("e1")), ("data.buyer.email", json!("ana@example.com"))],
    );
    let (status, _) = app.post_hotmart(&sale).await;
    assert_eq!(status, 200);
    app.process_inbox().await;
    app.gql(GRANT, json!({"e": "bia@example.com", "id": plan})).await;
    app.gql(REVOKE, json!({"e": "bia@example.com", "id": plan})).await;
    app.gql(REVOKE, json!({"e": "first@example.com", "id": plan})).await;
    now_pump(&app).await;

    let feed = app.feed(&key, "0", 2).await;
    let stored: u64 = {
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        entity::notification::Entity::find()
            .filter(entity::notification::Column::EntitlementId.is_not_null())
            .count(&app.state.db)
            .await
            .unwrap()
    };
    assert_eq!(feed.len() as u64, stored, "{feed:?}");
    assert!(feed.len() >= 5, "{feed:?}");
    let cursors: Vec<i64> = feed
        .iter()
        .map(|c| c["cursor"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    // Versions of each entitlement run 1, 2, 3… in feed order.
    let mut versions: HashMap<i64, Vec<i64>> = HashMap::new();
    for c in &feed {
        let e = &c["data"]["entitlement"];
        versions
            .entry(e["id"].as_i64().unwrap())
            .or_default()
            .push(e["version"].as_i64().unwrap());
    }
    for (id, v) in &versions {
        assert_eq!(*v, (1..=v.len() as i64).collect::<Vec<_>>(), "entitlement {id}");
    }
    // What the endpoint received is the feed from its creation on, body for body.
    let heard: HashMap<String, Value> = rx
        .got()
        .iter()
        .map(|g| (g.headers["webhook-id"].to_str().unwrap().to_string(), body(g)))
        .collect();
    let first = &feed[0];
    assert_eq!(first["data"]["buyer"]["email"], "first@example.com");
    assert!(
        !heard.contains_key(first["id"].as_str().unwrap()),
        "created later, not told"
    );
    assert_eq!(heard.len(), feed.len() - 1);
    for c in &feed[1..] {
        let b = heard
            .get(c["id"].as_str().unwrap())
            .unwrap_or_else(|| panic!("not delivered: {c}"));
        assert_eq!(b["cursor"], c["cursor"], "{b}");
        assert_eq!(b["type"], c["type"], "{b}");
        assert_eq!(b["timestamp"], c["timestamp"], "{b}");
        assert_eq!(b["data"], c["data"], "{b}");
    }
    // Resuming from a cursor gives exactly what came after it.
    let resumed = app.feed(&key, feed[1]["cursor"].as_str().unwrap(), 100).await;
    assert_eq!(resumed, feed[2..]);
    let (_, end) = app
        .rest(&key, &format!("/v1/changes?after={}", cursors.last().unwrap()))
        .await;
    assert_eq!(end["data"], json!([]));
    assert_eq!(end["hasMore"], false);
    assert_eq!(
        end["nextCursor"],
        feed.last().unwrap()["cursor"],
        "resume where you are"
    );

    // The scope, and inputs that are not cursors or limits.
    let access_only = app.api_key(&["access:read"]).await;
    let (s, p) = app.rest(&access_only, "/v1/changes").await;
    assert_eq!((s, p["code"].as_str()), (403, Some("FORBIDDEN")), "{p}");
    for bad in [
        "after=abc",
        "after=-1",
        "after=99999999999999999999",
        "limit=0",
        "limit=1001",
    ] {
        let (s, p) = app.rest(&key, &format!("/v1/changes?{bad}")).await;
        assert_eq!(s, 400, "{bad}: {p}");
    }
    let (s, _) = app.rest("pk_nope", "/v1/changes").await;
    assert_eq!(s, 401);
}

/// Writers commit while a reader pages from its cursor and the feed is sequenced concurrently
/// (on PostgreSQL, transactions commit in another order than they took their ids): the reader
/// sees every change exactly once, in the order the whole feed lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_never_skips_a_change_that_committed_late() {
    let (app, plan) = app_with_plan().await;
    let key = app.api_key(&["changes:read"]).await;
    let app = std::sync::Arc::new(app);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Set once everything written is sequenced: the reader's next pass is its last.
    let sequenced = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (app, plan) = (app.clone(), plan.clone());
        writers.push(tokio::spawn(async move {
            for n in 0..15 {
                let e = format!("w{w}n{n}@example.com");
                app.gql(GRANT, json!({"e": e, "id": plan})).await;
                if n % 3 == 0 {
                    app.gql(REVOKE, json!({"e": e, "id": plan})).await;
                }
            }
        }));
    }
    let mut sequencers = Vec::new();
    for _ in 0..2 {
        let (app, done) = (app.clone(), done.clone());
        sequencers.push(tokio::spawn(async move {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                porteiro::pipeline::dispatch::fan_out(&app.state.notify).await.unwrap();
            }
        }));
    }
    let reader = {
        let (app, sequenced, key) = (app.clone(), sequenced.clone(), key.clone());
        tokio::spawn(async move {
            let (mut seen, mut cursor) = (Vec::<String>::new(), "0".to_string());
            loop {
                let last_pass = sequenced.load(std::sync::atomic::Ordering::SeqCst);
                let (_, page) = app.rest(&key, &format!("/v1/changes?after={cursor}&limit=7")).await;
                seen.extend(
                    page["data"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| c["id"].as_str().unwrap().to_string()),
                );
                cursor = page["nextCursor"].as_str().unwrap().to_string();
                if last_pass && page["hasMore"] == false {
                    return seen;
                }
            }
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for s in sequencers {
        s.await.unwrap();
    }
    porteiro::pipeline::dispatch::fan_out(&app.state.notify).await.unwrap();
    sequenced.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let all: Vec<String> = app
        .feed(&key, "0", 1000)
        .await
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all.len(), 4 * (15 + 5), "one grant per buyer, a revoke for every third");
    assert_eq!(seen, all, "the reader saw every change once, in the feed's order");
}

//! Backtests of rule versions: a backtest's list of changes is exactly what activating that
//! version then does, a backtest of the active version changes nothing, and a backtest writes
//! nothing. On SQLite, and on PostgreSQL when the suite runs there.
use std::collections::BTreeMap;

use chrono::Utc;
use porteiro::pipeline::backtest::{AccessState, Report, Window};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use sea_orm::{ConnectionTrait, EntityTrait};
use serde_json::json;

use crate::access_props::{EMAILS, arrivals, lifecycle, webhook};
use crate::helpers::*;

/// The rule families a candidate is drawn from: each decides differently from the defaults
/// on some events and the same on others.
fn candidate(family: u8, days: i64) -> String {
    let body = match family {
        0 => "ignore(\"backtest: ignored\")".to_string(),
        1 => "grant()".to_string(),
        2 => "revoke()".to_string(),
        3 => format!("grant_until(event.occurred_at + {days} * 86400000)"),
        4 => "if type_of(event.transaction) == \"string\" && event.transaction.ends_with(\"1\") { grant() } else { ignore(\"not the first charge\") }".to_string(),
        5 => "suspend()".to_string(),
        6 => "if event.email.starts_with(\"c1\") { revoke() } else { ignore(\"not ours\") }".to_string(),
        // Decided by what the source gives when the event is decided again.
        _ => format!(
            "if access == () || access.status != \"ACTIVE\" {{ grant_until(event.occurred_at + {days} * 86400000) }} else {{ ignore(\"already active\") }}"
        ),
    };
    format!("fn decide(event, target, access) {{ {body} }}")
}

const TYPES: [&str; 7] = [
    "PURCHASE_APPROVED",
    "PURCHASE_COMPLETE",
    "PURCHASE_PROTEST",
    "PURCHASE_REFUNDED",
    "PURCHASE_DELAYED",
    "PURCHASE_CHARGEBACK",
    "SUBSCRIPTION_CANCELLATION",
];

/// Every entitlement as a backtest reports one, by source: holder, target, status as of now,
/// end (the fleet test compares two databases with it).
pub(crate) async fn entitlements(app: &TestApp) -> BTreeMap<String, AccessState> {
    let db = &app.state.db;
    let buyers: BTreeMap<i32, String> = entity::buyer::Entity::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.id, b.email))
        .collect();
    let now = Utc::now();
    entity::entitlement::Entity::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.source.clone(),
                AccessState {
                    email: buyers[&e.buyer_id].clone(),
                    target_kind: e.target_kind.clone(),
                    target_id: e.target_id,
                    status: e.status.effective(e.expires_at, now),
                    expires_at: e.expires_at,
                },
            )
        })
        .collect()
}

async fn backtest(app: &TestApp, event_type: &str, version: i32) -> Report {
    let who = app.principal().await;
    let started = porteiro::services::backtests::start(&app.state, &who, event_type, version, Window::default())
        .await
        .unwrap();
    let done =
        porteiro::services::backtests::wait(&app.state, who.app_id, started.id, std::time::Duration::from_secs(120))
            .await
            .unwrap();
    porteiro::services::backtests::report_of(&done).unwrap_or_else(|| panic!("backtest did not finish: {done:?}"))
}

/// A backtest run in the test's task, `sources_per_chunk` sources decided together, or `None`
/// when `progress` stops it.
async fn run_directly(
    app: &TestApp,
    event_type: &str,
    version: i32,
    progress: &dyn porteiro::pipeline::backtest::Progress,
    sources_per_chunk: usize,
) -> Option<Report> {
    let app_id = app.principal().await.app_id;
    let script = porteiro::services::backtests::script(&app.state.db, app_id, event_type, version)
        .await
        .unwrap();
    porteiro::pipeline::backtest::run_in_chunks(
        &app.state.pipeline,
        app_id,
        event_type,
        &script,
        &Window::default(),
        progress,
        sources_per_chunk,
    )
    .await
    .unwrap()
}

/// Random histories are stored and processed; a random candidate of a random event type is
/// saved as a draft (nothing changes), backtested, then activated: the entitlements that
/// changed are the backtest's list, source by source, and a backtest of the version now active
/// reports no change.
#[tokio::test]
async fn a_backtest_predicts_exactly_what_activating_does() {
    let (cases, rounds) = if pg_base().is_some() { (10, 5) } else { (16, 8) };
    let app = TestApp::spawn().await;
    app.configure_hotmart().await;
    let q = "mutation($n: String!, $p: [String!], $h: [String!]) { createSubscriptionPlan(input: {name: $n, hotmartProductIds: $p, hotmartPlanIds: $h}) { id } }";
    app.gql(q, json!({"n": "A", "p": ["4100001"], "h": ["900101"]})).await;
    app.gql(q, json!({"n": "B", "p": [], "h": ["900102"]})).await;
    let (seed, mut runner) = seeded_runner("BACKTEST_PROPS_SEED");
    let now = Utc::now().timestamp_millis();
    let histories = lifecycle(now).prop_flat_map(|l| {
        let n = l.steps.len();
        (Just(l), arrivals(n))
    });
    for case in 0..cases {
        let (l, order) = histories.new_tree(&mut runner).unwrap().current();
        let code = format!("BT{case:04}");
        for d in &order {
            let body =
                webhook(&l.steps[d.step], &format!("{code}-{}", d.id), &code).replace("prop.", &format!("c{case}."));
            assert_eq!(app.post_hotmart(&body).await.0, 200);
        }
        app.process_inbox().await;
    }
    let _ = EMAILS;
    let save = "mutation($t: String!, $s: String!, $a: Boolean!) { saveRule(eventType: $t, source: $s, activate: $a) { version active } }";
    let round = (0..TYPES.len(), 0u8..8, 1i64..90);
    let (mut changed_total, mut decisions_total) = (0, 0);
    for r in 0..rounds {
        let (t, family, days) = round.new_tree(&mut runner).unwrap().current();
        let (event_type, source) = (TYPES[t], candidate(family, days));
        let ctx = format!("BACKTEST_PROPS_SEED={seed}, round {r}: {event_type} ← {source}");
        let before = entitlements(&app).await;
        let d = app.gql(save, json!({"t": event_type, "s": source, "a": false})).await;
        assert_eq!(d["saveRule"]["active"], false, "{ctx}");
        let version = d["saveRule"]["version"].as_i64().unwrap() as i32;
        app.process_inbox().await;
        assert_eq!(entitlements(&app).await, before, "a draft changed access: {ctx}");

        let report = backtest(&app, event_type, version).await;
        // Decided a few sources at a time, the report is the same.
        let small = run_directly(&app, event_type, version, &Quiet, 3).await.unwrap();
        assert_eq!(small, report, "chunks of 3 sources: {ctx}");
        app.gql(
            "mutation($t: String!, $v: Int!) { activateRuleVersion(eventType: $t, version: $v) }",
            json!({"t": event_type, "v": version}),
        )
        .await;
        app.process_inbox().await;
        let after = entitlements(&app).await;
        let mut sources: Vec<&String> = before.keys().chain(after.keys()).collect();
        sources.sort();
        sources.dedup();
        let actual: BTreeMap<String, Option<AccessState>> = sources
            .into_iter()
            .filter(|s| before.get(*s) != after.get(*s))
            .map(|s| (s.clone(), after.get(s).cloned()))
            .collect();
        let predicted: BTreeMap<String, Option<AccessState>> = report
            .changes
            .iter()
            .map(|c| (c.source.clone(), c.after.clone()))
            .collect();
        assert!(!report.truncated, "{ctx}");
        assert_eq!(
            predicted, actual,
            "the backtest's list is not what activation did: {ctx}"
        );
        // Each listed change starts where access was.
        for c in &report.changes {
            assert_eq!(c.before.as_ref(), before.get(&c.source), "{ctx}");
        }
        changed_total += actual.len();
        decisions_total += report.decisions_changed;

        // The version now active, tried again: nothing would change. (Not for a rule that
        // reads the access it is shown: deciding again sees what the first replay left.)
        if family == 7 {
            continue;
        }
        let again = backtest(&app, event_type, version).await;
        assert_eq!(
            (again.decisions_changed, again.changes.len()),
            (0, 0),
            "a backtest of the active version reports changes: {ctx}: {again:?}"
        );
        assert_eq!(again.events_evaluated, report.events_evaluated, "{ctx}");
    }
    eprintln!(
        "{cases} histories, {rounds} candidates: {decisions_total} decisions and {changed_total} sources changed, all predicted"
    );
}

/// A backtest reads only: every table's row count and, on SQLite, the database file's change
/// counter are the same before and after.
#[tokio::test]
async fn a_backtest_writes_nothing() {
    let (app, _) = app_with_plan().await;
    assert_eq!(app.post_hotmart(&recent("purchase_approved.json", &[])).await.0, 200);
    app.process_inbox().await;
    let d = app
        .gql(
            "mutation { saveRule(eventType: \"PURCHASE_APPROVED\", source: \"fn decide(e, t, a) { ignore(\\\"x\\\") }\", activate: false) { version } }",
            json!({}),
        )
        .await;
    let version = d["saveRule"]["version"].as_i64().unwrap() as i32;
    let who = app.principal().await;
    let started =
        porteiro::services::backtests::start(&app.state, &who, "PURCHASE_APPROVED", version, Window::default())
            .await
            .unwrap();
    porteiro::services::backtests::wait(&app.state, who.app_id, started.id, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    // What the backtest itself writes (its row, its audit row) is settled: now the run alone.
    let db = &app.state.db;
    let counts = || async {
        let mut out = Vec::new();
        for t in [
            "webhook_event",
            "access_fact",
            "entitlement",
            "buyer",
            "buyer_subscriber_code",
            "notification",
            "audit_log",
            "rollup",
            "rollup_delta",
            "rule_script",
        ] {
            let r = db
                .query_one_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    format!("SELECT COUNT(*) AS n FROM {t}"),
                ))
                .await
                .unwrap()
                .unwrap();
            out.push((t, r.try_get::<i64>("", "n").unwrap()));
        }
        out
    };
    let file_counter = || async {
        let path = app.sqlite_path()?;
        let bytes = std::fs::read(path).ok()?;
        // The header's file change counter (offset 24, big-endian), bumped by every commit that
        // changes the file; the WAL is checkpointed first so nothing waits in it.
        Some(u32::from_be_bytes(bytes[24..28].try_into().ok()?))
    };
    let checkpoint = || async {
        if db.get_database_backend() == sea_orm::DbBackend::Sqlite {
            db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)").await.unwrap();
        }
    };
    let entitlements_before = entitlements(&app).await;
    checkpoint().await;
    let (rows, counter) = (counts().await, file_counter().await);
    let report = run_directly(&app, "PURCHASE_APPROVED", version, &Quiet, 500)
        .await
        .unwrap();
    assert_eq!(report.events_evaluated, 1, "{report:?}");
    assert_eq!(report.lost, 1, "ignoring the approval would end the access: {report:?}");
    checkpoint().await;
    assert_eq!(counts().await, rows);
    assert_eq!(file_counter().await, counter);
    assert_eq!(entitlements(&app).await, entitlements_before);
    if db.get_database_backend() == sea_orm::DbBackend::Sqlite {
        assert!(counter.is_some(), "the SQLite file was read");
    }
}

struct Quiet;
impl porteiro::pipeline::backtest::Progress for Quiet {
    fn total(&self, _: u64) {}
    fn evaluated(&self, _: u64) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// A backtest asked to stop stops between chunks and reports nothing.
#[tokio::test]
async fn a_cancelled_backtest_stops_and_reports_nothing() {
    let (app, _) = app_with_plan().await;
    assert_eq!(app.post_hotmart(&recent("purchase_approved.json", &[])).await.0, 200);
    app.process_inbox().await;
    struct Stopped;
    impl porteiro::pipeline::backtest::Progress for Stopped {
        fn total(&self, _: u64) {}
        fn evaluated(&self, _: u64) {}
        fn cancelled(&self) -> bool {
            true
        }
    }
    let who = app.principal().await;
    let out = run_directly(&app, "PURCHASE_APPROVED", 0, &Stopped, 500).await;
    assert!(out.is_none());
    // Through the service, a backtest whose process died is finished as failed by the sweep.
    let started = porteiro::services::backtests::start(&app.state, &who, "PURCHASE_APPROVED", 0, Window::default())
        .await
        .unwrap();
    porteiro::services::backtests::wait(&app.state, who.app_id, started.id, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    use sea_orm::{ActiveModelTrait, Set};
    let db = &app.state.db;
    entity::rule_backtest::ActiveModel {
        id: Set(started.id),
        status: Set(entity::status::RunStatus::Running),
        heartbeat_at: Set(Some(Utc::now() - chrono::TimeDelta::minutes(2))),
        ..Default::default()
    }
    .update(db)
    .await
    .unwrap();
    assert_eq!(porteiro::services::backtests::sweep_orphans(db).await.unwrap(), 1);
    let r = porteiro::services::backtests::get(db, who.app_id, started.id)
        .await
        .unwrap();
    assert_eq!(r.status, entity::status::RunStatus::Failed);
    assert!(r.error.unwrap().contains("start it again"));
}

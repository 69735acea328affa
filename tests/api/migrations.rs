use migration::{Migrator, MigratorTrait};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn migrations_go_up_down_and_up_again() {
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    Migrator::down(db, None).await.expect("down");
    let gone = entity::app::Entity::find().all(db).await;
    assert!(gone.is_err(), "tables must be dropped by down");
    assert!(entity::reconciliation_run::Entity::find().all(db).await.is_err());
    Migrator::up(db, None).await.expect("up again");
    assert!(entity::app::Entity::find().all(db).await.unwrap().is_empty());
    assert!(entity::access_fact::Entity::find().all(db).await.unwrap().is_empty());
    let pg = db.get_database_backend() == sea_orm::DbBackend::Postgres;
    // On PostgreSQL the logs hold no key to `app` (`m20261206_000009`); one step down from
    // there puts the four back. SQLite keeps them throughout.
    let log_keys = || async {
        if !pg {
            return None;
        }
        let rows = exec(
            db,
            "SELECT count(*) AS n FROM pg_constraint WHERE contype = 'f' AND conname IN \
             ('fk_webhook_event_app', 'fk_access_fact_app', 'fk_audit_log_app', 'fk_notification_app')",
            vec![],
        )
        .await;
        Some(rows[0].try_get::<i64>("", "n").unwrap())
    };
    assert_eq!(log_keys().await, pg.then_some(0));
    // The latest: the fleet's job leases and schema floor; one step down they go.
    for probe in ["SELECT name FROM job_lease", "SELECT serves_from FROM schema_floor"] {
        assert!(db.execute_unprepared(probe).await.is_ok(), "{probe}");
    }
    Migrator::down(db, Some(1)).await.expect("the fleet");
    for probe in ["SELECT name FROM job_lease", "SELECT serves_from FROM schema_floor"] {
        assert!(db.execute_unprepared(probe).await.is_err(), "{probe}");
    }
    // Then entitlements' terms, the feed's cursor, targets' keys; one step down they go.
    for probe in [
        "SELECT term FROM entitlement",
        "SELECT seq FROM notification",
        "SELECT key FROM product_package",
        "SELECT key FROM subscription_plan",
    ] {
        assert!(db.execute_unprepared(probe).await.is_ok(), "{probe}");
    }
    Migrator::down(db, Some(1)).await.expect("the app API's depth");
    for probe in ["SELECT term FROM entitlement", "SELECT seq FROM notification"] {
        assert!(db.execute_unprepared(probe).await.is_err(), "{probe}");
    }
    // Then keys that expire; one step down the column goes.
    let expiry = || db.execute_unprepared("SELECT expires_at FROM api_key");
    assert!(expiry().await.is_ok());
    Migrator::down(db, Some(1)).await.expect("key expiry");
    assert!(expiry().await.is_err());
    // Then rule backtests; one step down their table goes.
    let backtests = || db.execute_unprepared("SELECT id FROM rule_backtest");
    assert!(backtests().await.is_ok());
    Migrator::down(db, Some(1)).await.expect("rule backtests");
    assert!(backtests().await.is_err());
    // Then access changes counted by hour in the rollups; one step down they are counted by
    // day again.
    let tally = || db.execute_unprepared("SELECT n FROM access_change_tally");
    assert!(tally().await.is_err());
    Migrator::down(db, Some(1)).await.expect("changes by hour");
    assert!(tally().await.is_ok());
    // Then the admin screens' indexes; one step down they go.
    let index_count = || async {
        let sql = if pg {
            "SELECT count(*) AS n FROM pg_indexes WHERE indexname = 'idx_webhook_event_app_status_id'"
        } else {
            "SELECT count(*) AS n FROM sqlite_master WHERE type = 'index' AND name = 'idx_webhook_event_app_status_id'"
        };
        exec(db, sql, vec![]).await[0].try_get::<i64>("", "n").unwrap()
    };
    assert_eq!(index_count().await, 1);
    Migrator::down(db, Some(1)).await.expect("the admin indexes");
    assert_eq!(index_count().await, 0);
    // Then the admin screens' counters and their triggers.
    let rollups = || db.execute_unprepared("SELECT n FROM rollup_delta");
    assert!(rollups().await.is_ok());
    Migrator::down(db, Some(1)).await.expect("the rollups");
    assert!(rollups().await.is_err());
    let triggers = if pg {
        "SELECT count(*) AS n FROM pg_trigger WHERE tgname LIKE '%rollup%'"
    } else {
        "SELECT count(*) AS n FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%rollup%'"
    };
    assert_eq!(exec(db, triggers, vec![]).await[0].try_get::<i64>("", "n").unwrap(), 0);
    // Then the integration's last refusal; one step down it goes.
    let refused = || db.execute_unprepared("SELECT last_rejected_reason FROM hotmart_integration");
    assert!(refused().await.is_ok());
    Migrator::down(db, Some(1)).await.expect("the last refusal");
    assert!(refused().await.is_err());
    // Then erased buyers' sources.
    let erased = || db.execute_unprepared("SELECT source FROM erased_source");
    assert!(erased().await.is_ok());
    Migrator::down(db, Some(1)).await.expect("the erased sources");
    assert!(erased().await.is_err());
    // Then the master key's check.
    let check = || db.execute_unprepared("SELECT key_id FROM key_check");
    assert!(check().await.is_ok());
    Migrator::down(db, Some(1)).await.expect("the key check");
    assert!(check().await.is_err());
    // Then payment facts keep their charge's approval date; one step down it goes.
    let paid_at = || db.execute_unprepared("SELECT paid_at FROM access_fact");
    assert!(paid_at().await.is_ok());
    Migrator::down(db, Some(1)).await.expect("the facts' approval dates");
    assert!(paid_at().await.is_err());
    // Then the inbox's unused index by source goes, and comes back one step down.
    let source_index = || async {
        let sql = if pg {
            "SELECT count(*) AS n FROM pg_indexes WHERE indexname = 'idx_webhook_event_source'"
        } else {
            "SELECT count(*) AS n FROM sqlite_master WHERE type = 'index' AND name = 'idx_webhook_event_source'"
        };
        exec(db, sql, vec![]).await[0].try_get::<i64>("", "n").unwrap()
    };
    assert_eq!(source_index().await, 0);
    Migrator::down(db, Some(1)).await.expect("the inbox's source index");
    assert_eq!(source_index().await, 1);
    // Then the counts of access changes.
    let tally = || db.execute_unprepared("SELECT COUNT(*) FROM access_change_tally");
    assert!(tally().await.is_ok());
    Migrator::down(db, Some(1)).await.expect("the access change tally");
    assert!(tally().await.is_err(), "the tally is gone");
    // Then the index of pending inbox rows, on PostgreSQL only.
    let pending_index = || async {
        let rows = exec(
            db,
            "SELECT count(*) AS n FROM pg_indexes WHERE indexname = 'idx_webhook_event_pending'",
            vec![],
        )
        .await;
        rows[0].try_get::<i64>("", "n").unwrap()
    };
    if pg {
        assert_eq!(pending_index().await, 1);
    }
    Migrator::down(db, Some(1)).await.expect("the pending index");
    if pg {
        assert_eq!(pending_index().await, 0);
    }
    assert_eq!(log_keys().await, pg.then_some(0));
    Migrator::down(db, Some(1)).await.expect("one step down");
    assert_eq!(log_keys().await, pg.then_some(4));
    // The next removes the inbox's (status, id) index.
    Migrator::down(db, Some(1)).await.expect("then the inbox index");
    assert!(entity::console_token::Entity::find().all(db).await.is_ok());
    Migrator::down(db, Some(1)).await.expect("then console sessions");
    assert!(
        entity::console_token::Entity::find().all(db).await.is_err(),
        "console sessions are gone"
    );
    assert!(entity::notification_endpoint::Entity::find().all(db).await.is_ok());
    Migrator::down(db, Some(1)).await.expect("then notifications");
    assert!(
        entity::notification_endpoint::Entity::find().all(db).await.is_err(),
        "notification tables are gone"
    );
    // (By SQL: the entity knows columns later migrations add.)
    let keys = || db.execute_unprepared("SELECT id FROM api_key");
    assert!(keys().await.is_ok());
    Migrator::down(db, Some(1)).await.expect("then api keys");
    assert!(keys().await.is_err(), "api keys are gone");
    assert!(entity::reconciliation_run::Entity::find().all(db).await.is_ok());
    Migrator::down(db, Some(1)).await.expect("one more step down");
    assert!(
        entity::reconciliation_run::Entity::find().all(db).await.is_err(),
        "its columns are gone"
    );
    Migrator::down(db, Some(1)).await.expect("another step down");
    assert!(entity::access_fact::Entity::find().all(db).await.is_err());
    assert!(entity::app::Entity::find().all(db).await.is_ok());
    Migrator::up(db, None).await.expect("up once more");
    assert!(entity::hotmart_integration::Entity::find().all(db).await.is_ok());
    let status = db.execute_unprepared("SELECT 1").await;
    assert!(status.is_ok());
}

/// Data written by the previous model (a shared `manual` source, an admin revoke that lived only
/// on the row, decided inbox rows) is carried into the history and recomputed: admin decisions
/// hold, Hotmart sources are rebuilt by the worker.
#[tokio::test]
async fn the_access_history_migration_recomputes_existing_data() {
    let app = TestApp::spawn().await;
    app.configure_hotmart().await;
    let plan: i32 = app.create_plan("Mensal", &["4100001"]).await.parse().unwrap();
    app.post_hotmart(&recent("purchase_approved.json", &[])).await;
    app.process_inbox().await;
    assert_eq!(app.access("ana.teste@example.com").await[0]["status"], "ACTIVE");
    let db = &app.state.db;

    // Back to the old schema, and data as the old code wrote it.
    // Every migration but the first two (the initial schema, reconciliation).
    let steps = Migrator::migrations().len() as u32 - 2;
    Migrator::down(db, Some(steps))
        .await
        .expect("back to before the access history");
    // The old schema, written as the old code wrote it (raw SQL: today's entities have columns
    // that did not exist then).
    let ana = exec(db, "SELECT id, app_id FROM entitlement", vec![]).await;
    let (ana_id, app_id): (i32, i32) = (ana[0].try_get("", "id").unwrap(), ana[0].try_get("", "app_id").unwrap());
    let now = chrono::Utc::now();
    exec(
        db,
        "UPDATE entitlement SET status = ?, reason = ?, revoked_at = ? WHERE id = ?",
        vec![
            "REVOKED".into(),
            "manual revoke: fraud".into(),
            now.into(),
            ana_id.into(),
        ],
    )
    .await;
    let bia = entity::buyer::ActiveModel {
        app_id: Set(app_id),
        email: Set("bia@example.com".into()),
        name: Set(String::new()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    exec(
        db,
        "INSERT INTO entitlement (app_id, buyer_id, target_kind, target_id, source, status, granted_at, reason, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            app_id.into(),
            bia.id.into(),
            "plan".into(),
            plan.into(),
            "manual".into(),
            "ACTIVE".into(),
            now.into(),
            "manual grant: partner".into(),
            now.into(),
            now.into(),
        ],
    )
    .await;

    Migrator::up(db, None).await.expect("up");
    let facts = entity::access_fact::Entity::find().all(db).await.unwrap();
    let mut effects: Vec<(String, String)> = facts.iter().map(|f| (f.source.clone(), f.effect.clone())).collect();
    effects.sort();
    assert_eq!(
        effects,
        [
            (format!("manual:plan:{plan}:{}", bia.id), "admin_grant".to_string()),
            ("sub:SBX7Q2LM".to_string(), "admin_revoke".to_string()),
        ]
    );
    let pending = entity::webhook_event::Entity::find()
        .filter(entity::webhook_event::Column::Status.eq("pending"))
        .all(db)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1, "decided events go back to the queue");
    app.process_inbox().await;
    // The admin's revoke holds against the rebuilt history; the manual grant is its own source.
    let ana = app.access("ana.teste@example.com").await;
    assert_eq!((ana.len(), ana[0]["status"].as_str()), (1, Some("REVOKED")));
    let bia = app.access("bia@example.com").await;
    assert_eq!(bia[0]["status"], "ACTIVE");
    assert_eq!(
        bia[0]["source"],
        json!(format!("manual:plan:{plan}:{}", bia_id(&app).await))
    );
}

/// The overview's counts of access changes moved from the outbox to a tally of their own: the
/// outbox's rows (not the test sends) are counted in, so the console's history carries over.
#[tokio::test]
async fn the_tally_migration_counts_the_outbox_in() {
    use chrono::{TimeDelta, Utc};
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    Migrator::down(db, Some(steps_to_before("m20261214_000011_access_change_tally")))
        .await
        .expect("before the tally");
    let app_id = app.app("default").await.id;
    let today = Utc::now();
    let yesterday = today - TimeDelta::days(1);
    let rows = [
        (today, "access.granted", Some(1)),
        (today, "access.granted", Some(2)),
        (today, "access.changed", Some(2)),
        (yesterday, "access.revoked", Some(1)),
        (today, "porteiro.test", None),
    ];
    for (i, (at, kind, entitlement)) in rows.into_iter().enumerate() {
        // Without RETURNING: today's entity has columns this schema has not yet.
        let row = entity::notification::ActiveModel {
            app_id: Set(app_id),
            msg_id: Set(format!("msg_{i}")),
            event_type: Set(kind.into()),
            entitlement_id: Set(entitlement),
            version: Set(1),
            payload: Set("{}".into()),
            fanned_out: Set(true),
            created_at: Set(at),
            ..Default::default()
        };
        entity::notification::Entity::insert(row)
            .exec_without_returning(db)
            .await
            .unwrap();
    }
    // Up to the tally (migration 11) first: migration 19 moves its counts into the rollups.
    Migrator::up(db, Some(1)).await.expect("the tally");
    let counted: Vec<(String, String, i64)> = exec(
        db,
        "SELECT day, kind, n FROM access_change_tally WHERE app_id = ? ORDER BY day, kind",
        vec![app_id.into()],
    )
    .await
    .iter()
    .map(|r| {
        (
            r.try_get("", "day").unwrap(),
            r.try_get("", "kind").unwrap(),
            r.try_get("", "n").unwrap(),
        )
    })
    .collect();
    let (d0, d1) = (
        yesterday.format("%Y-%m-%d").to_string(),
        today.format("%Y-%m-%d").to_string(),
    );
    assert_eq!(
        counted,
        [
            (d0.clone(), "access.revoked".into(), 1),
            (d1.clone(), "access.changed".into(), 1),
            (d1.clone(), "access.granted".into(), 2),
        ]
    );
    // Migration 19: the day counts become hour counts at 12:00 UTC (a date every time zone
    // from UTC−11 to UTC+11 shares), and the overview still tells the same days.
    Migrator::up(db, None).await.expect("changes by hour");
    let o = app
        .gql(
            "{ overview { changesPerDay { at kind count } changesPerHour { at kind count } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        o["overview"]["changesPerDay"],
        json!([
            {"at": d0, "kind": "access.revoked", "count": 1},
            {"at": d1, "kind": "access.granted", "count": 2},
        ])
    );
    assert_eq!(
        o["overview"]["changesPerHour"],
        json!([
            {"at": format!("{d0}T12"), "kind": "access.revoked", "count": 1},
            {"at": format!("{d1}T12"), "kind": "access.granted", "count": 2},
        ])
    );
    // And back: the hours fold into days again.
    Migrator::down(db, Some(steps_to_before("m20261220_000019_changes_by_hour")))
        .await
        .expect("down to days");
    let days = exec(
        db,
        "SELECT day, kind, n FROM access_change_tally WHERE app_id = ? ORDER BY day, kind",
        vec![app_id.into()],
    )
    .await
    .len();
    assert_eq!(days, 3, "every day count came back");
    Migrator::up(db, None).await.expect("up again");
}

/// How many `down` steps lead back to just before `name` ran.
fn steps_to_before(name: &str) -> u32 {
    let all = Migrator::migrations();
    let at = all
        .iter()
        .position(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no migration {name}"));
    u32::try_from(all.len() - at).unwrap()
}

async fn bia_id(app: &TestApp) -> i32 {
    entity::buyer::Entity::find()
        .filter(entity::buyer::Column::Email.eq("bia@example.com"))
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap()
        .id
}

/// Raw SQL with `?` placeholders on either backend.
/// Upgrading to facts that keep their charge's approval date sends the completions and disputes
/// already processed back to the queue, so their sources are recomputed under the new rules:
/// a dispute that a late renewal had lifted holds again.
#[tokio::test]
async fn the_paid_at_migration_recomputes_completions_and_disputes() {
    let (app, _) = app_with_plan().await;
    let db = &app.state.db;
    let day = 86_400_000i64;
    let now = chrono::Utc::now().timestamp_millis();
    let ev = |name: &str, id: &str, txn: &str, at: i64, next: Option<i64>| {
        let mut edits = vec![
            ("id", json!(id)),
            ("creation_date", json!(at)),
            ("data.purchase.approved_date", json!(at)),
            ("data.purchase.transaction", json!(txn)),
        ];
        if let Some(n) = next {
            edits.push(("data.purchase.date_next_charge", json!(n)));
        }
        fixture_with(name, &edits)
    };
    for body in [
        ev(
            "purchase_approved.json",
            "a1",
            "HPT1",
            now - 40 * day,
            Some(now - 10 * day),
        ),
        ev("purchase_protest.json", "p1", "HPT1", now - 20 * day, None),
        ev(
            "purchase_approved.json",
            "a2",
            "HPT2",
            now - 2 * day,
            Some(now + 28 * day),
        ),
    ] {
        assert_eq!(app.post_hotmart(&body).await.0, 200);
    }
    app.process_inbox().await;
    assert_eq!(app.access("ana.teste@example.com").await[0]["status"], "SUSPENDED");
    // What the old rules left: the late renewal had lifted the dispute.
    Migrator::down(db, Some(steps_to_before("m20261215_000013_fact_paid_at")))
        .await
        .expect("before paid_at");
    db.execute_unprepared("UPDATE entitlement SET status = 'ACTIVE'")
        .await
        .unwrap();
    // (Read raw: today's entity has columns this schema has not yet.)
    let status = exec(db, "SELECT status FROM entitlement", vec![]).await;
    assert_eq!(status[0].try_get::<String>("", "status").unwrap(), "ACTIVE");
    Migrator::up(db, None).await.expect("paid_at");
    app.state.access.forget_app(app.app("default").await.id);
    let pending = exec(
        db,
        "SELECT event_id FROM webhook_event WHERE status = 'pending' ORDER BY event_id",
        vec![],
    )
    .await;
    let ids: Vec<String> = pending.iter().map(|r| r.try_get("", "event_id").unwrap()).collect();
    assert_eq!(ids, ["p1"], "the dispute goes back to the queue");
    app.process_inbox().await;
    assert_eq!(app.access("ana.teste@example.com").await[0]["status"], "SUSPENDED");
}

/// Runs `sql` written with `?` placeholders (numbered `$1…` for PostgreSQL; these statements have
/// no `?` in a literal).
async fn exec(db: &sea_orm::DatabaseConnection, sql: &str, values: Vec<sea_orm::Value>) -> Vec<sea_orm::QueryResult> {
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            let mut n = 0;
            sql.split('?')
                .enumerate()
                .map(|(i, part)| {
                    if i == 0 {
                        part.to_string()
                    } else {
                        n += 1;
                        format!("${n}{part}")
                    }
                })
                .collect()
        }
        _ => sql.to_string(),
    };
    db.query_all_raw(sea_orm::Statement::from_sql_and_values(backend, sql, values))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_binary_older_than_the_schema_refuses_to_start() {
    let app = TestApp::spawn().await;
    let future = "m29991231_000001_from_a_newer_porteiro";
    app.state
        .db
        .execute_unprepared(&format!(
            "INSERT INTO seaql_migrations (version, applied_at) VALUES ('{future}', 0)"
        ))
        .await
        .unwrap();
    // The newer binary's migration breaks older ones: it moved the schema floor to itself.
    app.state
        .db
        .execute_unprepared(&format!("UPDATE schema_floor SET serves_from = '{future}'"))
        .await
        .unwrap();
    let settings = (*app.state.settings).clone();
    let err = match porteiro::AppState::init(settings).await {
        Ok(_) => panic!("started against a schema newer than it knows"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("migrated by a newer Porteiro") && err.contains(future),
        "{err}"
    );
    // The binary says the same and exits non-zero, whether asked to serve or to migrate.
    let dir = app.state.settings.data_dir.clone();
    for args in [&["serve"][..], &["migrate", "up"], &["migrate", "status"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_porteiro"))
            .args(args)
            .current_dir(&dir)
            .env("PORTEIRO_DATA_DIR", &dir)
            .env("PORTEIRO_BIND", "127.0.0.1:0")
            .env("DATABASE_URL", &app.state.settings.database_url)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started: {stderr}");
        assert!(
            stderr.contains("migrated by a newer Porteiro") && stderr.contains(future),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("restore the backup"), "{stderr}");
    }
}

#[tokio::test]
async fn during_a_rolling_upgrade_an_older_binary_serves_a_schema_that_only_expanded() {
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    let floor = |db: sea_orm::DatabaseConnection| async move {
        db.query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT serves_from FROM schema_floor WHERE id = 1",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "serves_from")
        .unwrap()
    };
    // The floor is the last migration older binaries cannot serve: every one before the fleet's
    // was a contract, the fleet's only expands.
    let known: Vec<String> = Migrator::migrations().iter().map(|m| m.name().to_string()).collect();
    let last_contract = known.iter().rfind(|n| !migration::expands_only(n)).unwrap().clone();
    assert_eq!(floor(db.clone()).await, last_contract);
    assert!(migration::expands_only("m20261224_000023_fleet"));
    // A newer release adds a table (an expansion) and keeps the floor where it was.
    let future = "m29991231_000002_an_expansion";
    db.execute_unprepared(&format!(
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('{future}', 0)"
    ))
    .await
    .unwrap();
    // This (older) binary serves beside it, and starts as a server.
    let settings = (*app.state.settings).clone();
    porteiro::AppState::init(settings)
        .await
        .expect("an older binary serves an expanded schema");
    // Doctor says so, as a warning rather than a failure.
    let report = porteiro::ops::doctor::examine((*app.state.settings).clone(), true).await;
    let found = report
        .findings
        .iter()
        .find(|f| f.check == "database")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(found.level, porteiro::ops::doctor::Level::Warn, "{report}");
    assert!(found.detail.contains("rolling upgrade"), "{report}");
    let dir = app.state.settings.data_dir.clone();
    let (server, addr) = crate::faults::start(&app.state.settings.database_url, &dir);
    let health = reqwest::get(format!("{addr}/healthz")).await.unwrap();
    assert!(health.status().is_success());
    drop(server);
    // But it never migrates a database it does not fully know.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_porteiro"))
        .args(["migrate", "up"])
        .current_dir(&dir)
        .env("PORTEIRO_DATA_DIR", &dir)
        .env("DATABASE_URL", &app.state.settings.database_url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("migrated by a newer Porteiro"));
    // A binary that misses a migration the floor needs refuses, even with the floor known.
    db.execute_unprepared("DELETE FROM seaql_migrations WHERE version = 'm20261224_000023_fleet'")
        .await
        .unwrap();
    assert!(!porteiro::db::serves_newer(db).await.unwrap());
}

#[tokio::test]
async fn a_migration_that_rewrites_data_says_so_before_it_runs() {
    let known: Vec<String> = Migrator::migrations().iter().map(|m| m.name().to_string()).collect();
    let rewriting: Vec<&String> = known.iter().filter(|n| migration::rewrites_data(n).is_some()).collect();
    assert_eq!(
        rewriting,
        [
            "m20261201_000003_access_history",
            "m20261203_000006_notifications",
            "m20261215_000013_fact_paid_at"
        ],
        "every migration named as rewriting data exists"
    );
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    assert!(porteiro::db::pending_rewrites(db).await.unwrap().is_empty());
    // Back to before paid_at, it is pending again: `migrate up` names it first.
    Migrator::down(db, Some(steps_to_before("m20261215_000013_fact_paid_at")))
        .await
        .unwrap();
    let pending = porteiro::db::pending_rewrites(db).await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].0, "m20261215_000013_fact_paid_at");
    let dir = app.state.settings.data_dir.clone();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_porteiro"))
        .args(["migrate", "up"])
        .current_dir(&dir)
        .env("PORTEIRO_DATA_DIR", &dir)
        .env("DATABASE_URL", &app.state.settings.database_url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("m20261215_000013_fact_paid_at rewrites stored data: stored purchase completions"),
        "{stdout}"
    );
    assert!(porteiro::db::pending_rewrites(db).await.unwrap().is_empty());
}

#[test]
fn the_version_names_the_commit_it_was_built_from() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_porteiro"))
        .arg("--version")
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        v.starts_with(&format!("porteiro {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    // Built from a git checkout, the commit is known (12 hex digits); from a source archive it
    // says "unknown".
    let commit = v.trim().trim_end_matches(')').rsplit(' ').next().unwrap_or_default();
    if std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".git").exists() {
        assert!(
            commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{v}"
        );
    } else {
        assert_eq!(commit, "unknown", "{v}");
    }
}

#[tokio::test]
async fn the_rollups_migration_counts_what_exists_and_the_triggers_keep_counting() {
    let (app, plan) = app_with_plan().await;
    let db = &app.state.db;
    let ctx = "rollups";
    let sale = |i: usize| {
        recent(
            "purchase_approved.json",
            &[
                ("id", json!(format!("rollup-{i}"))),
                ("data.buyer.email", json!(format!("r{i}@example.com"))),
                ("data.purchase.transaction", json!(format!("HPROLL{i:04}"))),
                ("data.subscription.subscriber.code", json!(format!("SBROLL{i:02}"))),
            ],
        )
    };
    for i in 0..4 {
        assert_eq!(app.post_hotmart(&sale(i)).await.0, 200);
    }
    app.process_inbox().await;
    // Rows written before the counters existed, some still pending.
    Migrator::down(db, Some(steps_to_before("m20261219_000017_rollups")))
        .await
        .expect("before the rollups");
    for i in 4..7 {
        assert_eq!(app.post_hotmart(&sale(i)).await.0, 200);
    }
    Migrator::up(db, None).await.expect("the rollups");
    the_rollups_equal_a_recount(db, false, ctx).await;
    let o = app
        .gql(
            "{ overview { backlog holders { target { id name } active suspended } } }",
            json!({}),
        )
        .await;
    assert_eq!(o["overview"]["backlog"], 3, "{o}");
    assert_eq!(
        o["overview"]["holders"],
        json!([{"target": {"id": plan, "name": "Mensal"}, "active": 4, "suspended": 0}])
    );
    // Processing, a dispute, a replay, a forced delete and a fold: still equal, the overview follows.
    app.process_inbox().await;
    let protest = recent(
        "purchase_protest.json",
        &[
            ("id", json!("rollup-protest")),
            ("data.buyer.email", json!("r1@example.com")),
            ("data.purchase.transaction", json!("HPROLL0001")),
            ("data.subscription.subscriber.code", json!("SBROLL01")),
        ],
    );
    assert_eq!(app.post_hotmart(&protest).await.0, 200);
    app.process_inbox().await;
    the_rollups_equal_a_recount(db, true, ctx).await;
    let o = app
        .gql("{ overview { backlog holders { active suspended } } }", json!({}))
        .await;
    assert_eq!(o["overview"]["holders"], json!([{"active": 6, "suspended": 1}]), "{o}");
    let unknown = recent(
        "purchase_approved.json",
        &[("id", json!("rollup-unknown")), ("data.product.id", json!(9_999_999))],
    );
    assert_eq!(app.post_hotmart(&unknown).await.0, 200);
    app.process_inbox().await;
    app.gql("mutation { replayWebhookEvents(status: \"unmapped\") }", json!({}))
        .await;
    the_rollups_equal_a_recount(db, false, ctx).await;
    app.process_inbox().await;
    let d = app
        .gql(
            "mutation($id: ID!) { deleteSubscriptionPlan(id: $id, force: true) { deleted } }",
            json!({"id": plan}),
        )
        .await;
    assert_eq!(d["deleteSubscriptionPlan"]["deleted"], true, "{d}");
    the_rollups_equal_a_recount(db, true, ctx).await;
    let o = app.gql("{ overview { backlog holders { active } } }", json!({})).await;
    assert_eq!(o["overview"], json!({"backlog": 0, "holders": []}), "{o}");
}

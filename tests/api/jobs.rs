//! The background jobs of `serve`: started together, each reporting its rounds in `/metrics`,
//! stopped together.
use crate::helpers::*;

/// The value of a sample in Prometheus text, if present.
fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn every_job_reports_its_last_run_and_all_stop_together() {
    let app = TestApp::spawn().await;
    app.configure_hotmart().await;
    app.create_package("Curso", &["4100001"], None).await;
    let before = chrono::Utc::now().timestamp() as f64 - 1.0;
    let jobs = porteiro::app::start_jobs(&app.state).unwrap();
    // On PostgreSQL, first the signals between instances.
    let mut expected = if app.state.db.get_database_backend() == sea_orm::DbBackend::Postgres {
        vec!["signals_out", "signals_in", "signals_here"]
    } else {
        vec![]
    };
    expected.extend([
        "maintenance",
        "worker",
        "dispatch",
        "expiry",
        "prune",
        "rollups",
        "reconcile_scheduler",
    ]);
    assert_eq!(jobs.names(), expected);
    // The worker job drains what arrives without anyone calling it.
    assert_eq!(app.post_hotmart(&recent("purchase_approved.json", &[])).await.0, 200);
    let mut seen = String::new();
    for _ in 0..100 {
        seen = app.metrics().await;
        let ran = |job: &str| {
            sample(
                &seen,
                "porteiro_job_last_run_timestamp_seconds",
                &format!("job=\"{job}\""),
            )
            .is_some_and(|t| t >= before)
        };
        let granted = app
            .access("ana.teste@example.com")
            .await
            .first()
            .is_some_and(|a| a["status"] == "ACTIVE");
        if ["maintenance", "worker", "dispatch", "expiry"].iter().all(|j| ran(j)) && granted {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for job in ["maintenance", "worker", "dispatch", "expiry"] {
        let t = sample(
            &seen,
            "porteiro_job_last_run_timestamp_seconds",
            &format!("job=\"{job}\""),
        );
        assert!(t.is_some_and(|t| t >= before), "{job} never reported a run:\n{seen}");
        assert!(
            sample(
                &seen,
                "porteiro_job_runs_total",
                &format!("job=\"{job}\",result=\"ok\"")
            )
            .is_some_and(|n| n >= 1.0),
            "{job}: {seen}"
        );
    }
    // The scheduler and the retention wait a period before their first round.
    assert!(sample(&seen, "porteiro_job_last_run_timestamp_seconds", "job=\"prune\"").is_none());
    // Stop returns once every loop has ended (that no round starts after it is a unit test of
    // the registry). Last: on PostgreSQL the connections the worker's own runtime opened end
    // with it.
    tokio::time::timeout(std::time::Duration::from_secs(10), jobs.stop())
        .await
        .expect("every job stops");
}

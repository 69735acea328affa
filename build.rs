//! Tests that only mean something on one database are marked for it at build time, so the test
//! runner reports them as ignored (not as passed) on the other: `cfg(pg_backend)` when the suite
//! is built to run on PostgreSQL (`PORTEIRO_TEST_DATABASE_URL`).
fn main() {
    // `porteiro --version` names the commit it was built from ("unknown" outside a git checkout).
    // Not PORTEIRO_*: cargo passes the variable on to what it runs, and the service refuses
    // PORTEIRO_ settings it does not know.
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo::rustc-env=BUILT_FROM_COMMIT={commit}");
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo::rerun-if-changed={path}");
        }
    }
    println!("cargo::rustc-check-cfg=cfg(pg_backend)");
    println!("cargo::rerun-if-env-changed=PORTEIRO_TEST_DATABASE_URL");
    if std::env::var("PORTEIRO_TEST_DATABASE_URL").is_ok_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=pg_backend");
    }
}

//! Tests that only mean something on one database are marked for it at build time, so the test
//! runner reports them as ignored (not as passed) on the other: `cfg(pg_backend)` when the suite
//! is built to run on PostgreSQL (`PORTEIRO_TEST_DATABASE_URL`).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(pg_backend)");
    println!("cargo::rerun-if-env-changed=PORTEIRO_TEST_DATABASE_URL");
    if std::env::var("PORTEIRO_TEST_DATABASE_URL").is_ok_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=pg_backend");
    }
}

//! `porteiro doctor`: looks at an installation the way support would and says what to fix.
//! It changes nothing (no migration, no key generated; its write probe rewrites a row as it is) and,
//! with `--offline`, sends no request off this machine.
use std::fmt;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use entity::status::{DeliveryStatus, InboxStatus};
use entity::{app, hotmart_integration as hi, notification_delivery as nd, webhook_event as we};
use migration::MigratorTrait;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::AppState;
use crate::config::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    pub check: String,
    pub detail: String,
    pub fix: Option<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    fn add(&mut self, level: Level, check: impl Into<String>, detail: impl Into<String>, fix: Option<String>) {
        self.findings.push(Finding {
            level,
            check: check.into(),
            detail: detail.into(),
            fix,
        });
    }

    fn ok(&mut self, check: impl Into<String>, detail: impl Into<String>) {
        self.add(Level::Ok, check, detail, None);
    }

    fn warn(&mut self, check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(Level::Warn, check, detail, Some(fix.into()));
    }

    fn fail(&mut self, check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(Level::Fail, check, detail, Some(fix.into()));
    }

    /// The worst finding's level.
    pub fn worst(&self) -> Level {
        self.findings.iter().map(|f| f.level).max().unwrap_or(Level::Ok)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for x in &self.findings {
            let tag = match x.level {
                Level::Ok => "ok  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            writeln!(f, "{tag}  {}: {}", x.check, x.detail)?;
            if let Some(fix) = &x.fix {
                writeln!(f, "      fix: {fix}")?;
            }
        }
        let (w, e) = self.findings.iter().fold((0, 0), |(w, e), x| match x.level {
            Level::Warn => (w + 1, e),
            Level::Fail => (w, e + 1),
            Level::Ok => (w, e),
        });
        write!(f, "{e} problem(s), {w} warning(s)")
    }
}

/// Examines the installation `settings` describe. `offline`: nothing leaves this machine (no DNS
/// lookup of the public URL, no call to Hotmart).
pub async fn examine(settings: Settings, offline: bool) -> Report {
    let mut r = Report::default();
    r.ok(
        "configuration",
        format!(
            "loaded; database {}, data directory {}",
            crate::config::redact_url(&settings.database_url),
            settings.data_dir.display()
        ),
    );
    data_dir(&mut r, &settings.data_dir);
    public_url(&mut r, &settings.public_url, offline).await;
    service(&mut r, &settings).await;
    backups(&mut r, &settings);
    let Some(db) = database(&mut r, &settings).await else {
        return r;
    };
    let state = AppState::with_db(db, settings);
    if !keys(&mut r, &state).await {
        return r;
    }
    if let Err(e) = apps(&mut r, &state, offline).await {
        r.fail("database", format!("cannot read the apps: {e}"), "see the error above");
    }
    if let Err(e) = backlog(&mut r, &state.db).await {
        r.fail("database", format!("cannot read the inbox: {e}"), "see the error above");
    }
    if let Err(e) = fleet(&mut r, &state.db).await {
        r.fail(
            "database",
            format!("cannot read the job leases: {e}"),
            "see the error above",
        );
    }
    r
}

/// PostgreSQL: which instances hold the fleet-wide jobs, and whether a holder stopped renewing
/// with nobody taking over (every instance is down, or they cannot reach the database).
async fn fleet(r: &mut Report, db: &DatabaseConnection) -> anyhow::Result<()> {
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    let leases = entity::job_lease::Entity::find().all(db).await?;
    let now = Utc::now();
    let stale: Vec<String> = leases
        .iter()
        .filter(|l| l.holder.is_some() && l.lease_until.is_some_and(|u| now - u > chrono::TimeDelta::minutes(1)))
        .map(|l| l.name.clone())
        .collect();
    let mut holders: Vec<&str> = leases.iter().filter_map(|l| l.holder.as_deref()).collect();
    holders.sort();
    holders.dedup();
    if stale.is_empty() {
        let held = leases.iter().filter(|l| l.holder.is_some()).count();
        let mut detail = format!("{held} fleet-wide job(s) held by {} instance(s)", holders.len());
        if !holders.is_empty() {
            detail = format!("{detail}: {}", holders.join(", "));
        }
        r.ok("instances", detail);
    } else {
        r.warn(
            "instances",
            format!("nobody renewed these jobs for over a minute: {}", stale.join(", ")),
            "no instance is running (or none reaches the database): start the service",
        );
    }
    Ok(())
}

fn data_dir(r: &mut Report, dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(dir) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => r.warn(
                "data directory",
                format!(
                    "{} is open to other users (mode {:o})",
                    dir.display(),
                    m.permissions().mode() & 0o777
                ),
                format!("chmod 700 {}", dir.display()),
            ),
            Ok(_) => r.ok("data directory", format!("{}: keys present, private", dir.display())),
            Err(e) => r.fail(
                "data directory",
                format!("{}: {e}", dir.display()),
                "set PORTEIRO_DATA_DIR to the directory holding master.key",
            ),
        }
    }
    #[cfg(not(unix))]
    r.ok("data directory", format!("{}: keys present", dir.display()));
}

async fn public_url(r: &mut Report, url: &str, offline: bool) {
    const CHECK: &str = "public URL";
    let fix = "set PORTEIRO_PUBLIC_URL to the https:// address your reverse proxy serves (README, Deploy)";
    let Ok(parsed) = url::Url::parse(url) else {
        r.fail(CHECK, format!("{url} does not parse"), fix);
        return;
    };
    if parsed.scheme() != "https" {
        r.fail(
            CHECK,
            format!("{url} is not HTTPS: Hotmart only posts to https:// URLs"),
            fix,
        );
        return;
    }
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        if !crate::pipeline::dispatch::is_public(ip) {
            r.fail(CHECK, format!("{url} is a private address Hotmart cannot reach"), fix);
            return;
        }
    } else if host == "localhost" || host.ends_with(".local") || host.ends_with(".internal") {
        r.fail(CHECK, format!("{url} is a local name Hotmart cannot reach"), fix);
        return;
    } else if !offline {
        let port = parsed.port_or_known_default().unwrap_or(443);
        match tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((host.as_str(), port))).await {
            Ok(Ok(addrs)) => {
                let addrs: Vec<_> = addrs.map(|a| a.ip()).collect();
                if !addrs.iter().any(|ip| crate::pipeline::dispatch::is_public(*ip)) {
                    r.fail(
                        CHECK,
                        format!("{host} resolves only to private addresses ({addrs:?})"),
                        fix,
                    );
                    return;
                }
            }
            _ => {
                r.fail(
                    CHECK,
                    format!("{host} does not resolve"),
                    "check the domain's DNS records",
                );
                return;
            }
        }
    }
    r.ok(CHECK, format!("{url} is HTTPS and public"));
}

/// Whether the service answers on its own address (loopback: allowed offline).
async fn service(r: &mut Report, settings: &Settings) {
    let mut addr = settings.bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let url = format!("http://{addr}/readyz");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .no_proxy()
        .build();
    let answer = match client {
        Ok(c) => c.get(&url).send().await,
        Err(e) => {
            r.warn("service", format!("cannot build an HTTP client: {e}"), "report this");
            return;
        }
    };
    match answer {
        Ok(resp) if resp.status().is_success() => r.ok("service", format!("answers ready at {url}")),
        Ok(resp) => {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            r.fail(
                "service",
                format!(
                    "{url} answered {status}: {}",
                    body.chars().take(200).collect::<String>()
                ),
                "read the service's log (journalctl -u porteiro)",
            );
        }
        Err(_) => r.warn(
            "service",
            format!("nothing answers at {url}"),
            "start it (systemctl start porteiro), or set PORTEIRO_BIND to where it listens",
        ),
    }
}

fn backups(r: &mut Report, settings: &Settings) {
    const CHECK: &str = "backups";
    let Some(plan) = &settings.backup else {
        r.warn(
            CHECK,
            "no scheduled backups",
            "set PORTEIRO_BACKUP_EVERY (and PORTEIRO_BACKUP_KEYS), or run `porteiro backup` from cron",
        );
        return;
    };
    match crate::ops::backup::scheduled(&plan.dir).pop() {
        None => r.warn(
            CHECK,
            format!("none yet in {}", plan.dir.display()),
            "the first is taken within a minute of the service's start; read its log if none comes",
        ),
        Some((path, m)) => {
            let age = (Utc::now() - m.created_at).to_std().unwrap_or_default();
            let text = format!(
                "newest {} ({} ago, {} events, keys {})",
                path.display(),
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                m.counts.map_or(0, |c| c.events),
                if m.keys_included { "included" } else { "not included" }
            );
            if age > plan.every * 2 {
                r.fail(
                    CHECK,
                    text,
                    "backups stopped: read the service's log for the backup job's error",
                );
            } else {
                r.ok(CHECK, text);
            }
        }
    }
}

async fn database(r: &mut Report, settings: &Settings) -> Option<DatabaseConnection> {
    const CHECK: &str = "database";
    // Connecting with `mode=rwc` would create an empty database where the real one is missing.
    if let Some(file) = crate::db::sqlite_file(&settings.database_url)
        && !file.exists()
    {
        r.fail(
            CHECK,
            format!("there is no database at {}", file.display()),
            "set DATABASE_URL to the database file, or restore one (porteiro restore --from)",
        );
        return None;
    }
    let db = match crate::db::connect(&settings.database_url).await {
        Ok(db) => db,
        Err(e) => {
            r.fail(
                CHECK,
                format!("cannot connect: {e}"),
                "check DATABASE_URL and that the database server runs",
            );
            return None;
        }
    };
    if let Err(e) = crate::db::refuse_newer_schema(&db).await {
        // A rolling upgrade: this binary still serves what the newer one added.
        if crate::db::serves_newer(&db).await.unwrap_or(false) {
            r.warn(
                CHECK,
                "migrated by a newer Porteiro whose changes this version still serves (a rolling upgrade)",
                "upgrade this instance to the version that migrated the database",
            );
            return Some(db);
        }
        r.fail(CHECK, e.to_string(), "run the newer Porteiro that migrated it");
        return None;
    }
    let pending = migration::Migrator::get_pending_migrations(&db)
        .await
        .map_or(0, |p| p.len());
    if pending > 0 {
        r.warn(
            CHECK,
            format!("{pending} migration(s) not applied yet"),
            "take a backup, then `porteiro migrate up` (or start the service, which migrates)",
        );
        return None;
    }
    match crate::db::probe_write(&db).await {
        Ok(()) => r.ok(CHECK, "reachable and writable, schema up to date"),
        Err(e) => {
            r.fail(
                CHECK,
                format!("does not take writes: {e}"),
                "check the disk's free space and the file's owner and mode",
            );
        }
    }
    Some(db)
}

async fn keys(r: &mut Report, state: &AppState) -> bool {
    const CHECK: &str = "master key";
    match crate::ops::key_check::recorded(&state.db).await {
        Ok(Some((id, sealed))) => match crate::ops::key_check::verify(&state.secrets, &id, &sealed) {
            Ok(()) => {
                r.ok(CHECK, format!("key {id} opens the database's secrets"));
                true
            }
            Err(e) => {
                r.fail(
                    CHECK,
                    e.to_string(),
                    "put back the master.key that belongs to this database",
                );
                false
            }
        },
        Ok(None) => {
            r.warn(
                CHECK,
                "the database has not recorded its key yet",
                "start the service once: it records it",
            );
            true
        }
        Err(e) => {
            r.fail(
                CHECK,
                format!("cannot read the key check: {e}"),
                "run `porteiro migrate up`",
            );
            false
        }
    }
}

async fn apps(r: &mut Report, state: &AppState, offline: bool) -> anyhow::Result<()> {
    for a in app::Entity::find().order_by_asc(app::Column::Id).all(&state.db).await? {
        let check = format!("app {}", a.slug);
        let url = crate::services::integration::webhook_url(&state.settings.public_url, &a.webhook_key);
        let integration = hi::Entity::find()
            .filter(hi::Column::AppId.eq(a.id))
            .one(&state.db)
            .await?;
        let last: Option<chrono::DateTime<Utc>> = we::Entity::find()
            .select_only()
            .column(we::Column::ReceivedAt)
            .filter(we::Column::AppId.eq(a.id))
            .order_by_desc(we::Column::Id)
            .into_tuple()
            .one(&state.db)
            .await?;
        match last {
            Some(t) => r.ok(
                format!("{check} webhooks"),
                format!(
                    "last received {} ({} ago)",
                    t.to_rfc3339(),
                    humantime::format_duration(Duration::from_secs(
                        (Utc::now() - t).to_std().unwrap_or_default().as_secs()
                    ))
                ),
            ),
            None => r.warn(
                format!("{check} webhooks"),
                "none received yet",
                format!("paste {url} into Hotmart (Ferramentas > Webhook) with the Hottok saved in the console"),
            ),
        }
        let has_api = integration
            .as_ref()
            .is_some_and(|i| i.basic_enc.is_some() && i.client_id_enc.is_some() && i.client_secret_enc.is_some());
        let check = format!("{check} Hotmart API");
        if !has_api {
            r.warn(
                check,
                "credentials not saved (reconciliation cannot run)",
                "save Basic, Client ID and Client Secret on the console's integration page",
            );
        } else if offline {
            r.ok(check, "credentials saved (not tried: --offline)");
        } else {
            match crate::services::integration::credentials(state, a.id).await {
                Ok(creds) => match state.hotmart.token(&creds).await {
                    Ok(_) => r.ok(check, "Hotmart accepted the credentials"),
                    Err(e) => r.fail(
                        check,
                        e.to_string(),
                        "save the credentials again from Hotmart's developer area",
                    ),
                },
                Err(e) => r.fail(check, e.to_string(), "save the credentials again"),
            }
        }
    }
    Ok(())
}

async fn backlog(r: &mut Report, db: &DatabaseConnection) -> anyhow::Result<()> {
    let pending = we::Entity::find()
        .filter(we::Column::Status.eq(InboxStatus::Pending))
        .count(db)
        .await?;
    let oldest: Option<chrono::DateTime<Utc>> = we::Entity::find()
        .select_only()
        .column(we::Column::ReceivedAt)
        .filter(we::Column::Status.eq(InboxStatus::Pending))
        .order_by_asc(we::Column::Id)
        .into_tuple()
        .one(db)
        .await?;
    let age = oldest.map(|t| (Utc::now() - t).to_std().unwrap_or_default());
    match age {
        Some(age) if age > Duration::from_secs(300) => r.warn(
            "inbox",
            format!(
                "{pending} event(s) waiting, the oldest for {}",
                humantime::format_duration(Duration::from_secs(age.as_secs()))
            ),
            "the worker is stopped or behind: is the service running? read its log",
        ),
        _ => r.ok("inbox", format!("{pending} event(s) waiting")),
    }
    let failed = we::Entity::find()
        .filter(we::Column::Status.eq(InboxStatus::Failed))
        .count(db)
        .await?;
    if failed > 0 {
        r.warn(
            "inbox",
            format!("{failed} event(s) failed"),
            "review them in the console (Eventos) and replay them: porteiro replay --app <slug>",
        );
    }
    let dead = nd::Entity::find()
        .filter(nd::Column::Status.eq(DeliveryStatus::Dead))
        .count(db)
        .await?;
    if dead > 0 {
        r.warn(
            "notifications",
            format!("{dead} delivery(ies) given up on"),
            "check the endpoints in the console and send them again",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_public_url_must_be_https_and_reachable_from_outside() {
        for (url, level) in [
            ("http://example.com", Level::Fail),
            ("https://127.0.0.1", Level::Fail),
            ("https://10.1.2.3:8443", Level::Fail),
            ("https://localhost", Level::Fail),
            ("https://[::1]", Level::Fail),
            ("https://porteiro.example.com", Level::Ok),
            ("https://203.0.114.9", Level::Ok),
        ] {
            let mut r = Report::default();
            public_url(&mut r, url, true).await;
            assert_eq!(r.worst(), level, "{url}: {r}");
        }
    }
}

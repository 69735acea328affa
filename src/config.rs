//! Typed settings from an optional `porteiro.toml` and `PORTEIRO_*` variables, validated at start-up.
//! Keys that are not configured are generated on first start and kept in the data directory.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    bind: String,
    database_url: Option<String>,
    public_url: Option<String>,
    data_dir: String,
    jwt_key: Option<String>,
    master_key: Option<String>,
    /// Older master keys (comma-separated hex), for reading values a rotation has not rewritten.
    master_key_previous: Option<String>,
    webhook_body_limit: usize,
    graphql_body_limit: usize,
    rule_timeout_ms: u64,
    worker_poll_ms: u64,
    worker_yield_ms: u64,
    default_app: String,
    hotmart_token_url: String,
    hotmart_api_url: String,
    hotmart_sandbox_api_url: String,
    hotmart_retry_base_ms: u64,
    scheduler_tick_secs: u64,
    /// `full` (default) or `normal`.
    sqlite_synchronous: String,
    /// Let notification endpoints point at loopback, private and link-local addresses.
    notify_allow_private_targets: bool,
    notify_retention_days: i64,
    /// Requests per minute one app API key may make (0: no limit).
    api_rate_limit: u32,
    /// `text` (default) or `json`; read by `main` before the rest (logging starts first).
    log_format: String,
    /// Store the buyer's document, phones, address and IP as Hotmart sent them.
    keep_personal_data: bool,
    /// Days after which the stored bodies of decided events are emptied (none: kept).
    event_body_retention_days: Option<u32>,
    /// Scheduled backups: how often (`6h`, `1d`); none unless set.
    backup_every: Option<String>,
    /// How many scheduled backups to keep.
    backup_keep: usize,
    /// Where scheduled backups go (default: `backups` in the data directory).
    backup_dir: Option<String>,
    /// `include` or `exclude`: whether scheduled backups carry the keys (required with `backup_every`).
    backup_keys: Option<String>,
    /// Connections this instance may open to the database (its pool; LISTEN takes one more).
    db_max_connections: Option<u32>,
    /// Where the cross-instance signals (`LISTEN`) connect, when the pool goes through a pooler
    /// in transaction mode (default: `database_url`).
    db_listen_url: Option<String>,
    /// How long a fleet-wide job's lease lasts without renewal (its holder's death is noticed
    /// within it).
    job_lease_secs: u64,
    /// On SIGTERM: seconds of answering webhooks 503 (readiness too) before the server stops.
    drain_secs: u64,
}

impl Default for RawSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            database_url: None,
            public_url: None,
            data_dir: ".porteiro".into(),
            jwt_key: None,
            master_key: None,
            master_key_previous: None,
            webhook_body_limit: 256 * 1024,
            graphql_body_limit: 256 * 1024,
            rule_timeout_ms: 250,
            sqlite_synchronous: "full".into(),
            worker_poll_ms: 500,
            worker_yield_ms: 5,
            default_app: "default".into(),
            hotmart_token_url: crate::hotmart::api::ApiEndpoints::default().token_url,
            hotmart_api_url: crate::hotmart::api::ApiEndpoints::default().production_base,
            hotmart_sandbox_api_url: crate::hotmart::api::ApiEndpoints::default().sandbox_base,
            hotmart_retry_base_ms: 500,
            scheduler_tick_secs: 60,
            notify_allow_private_targets: false,
            notify_retention_days: 30,
            api_rate_limit: 6000,
            log_format: "text".into(),
            keep_personal_data: false,
            event_body_retention_days: None,
            backup_every: None,
            backup_keep: 7,
            backup_dir: None,
            backup_keys: None,
            db_max_connections: None,
            db_listen_url: None,
            job_lease_secs: 15,
            drain_secs: 5,
        }
    }
}

#[derive(Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    pub database_url: String,
    pub public_url: String,
    pub data_dir: PathBuf,
    pub jwt_key: SecretString,
    pub master_key: [u8; 32],
    /// Decrypt-only keys: `PORTEIRO_MASTER_KEY_PREVIOUS`, and `master.key.previous` /
    /// `master.key.next` in the data directory (left by `porteiro keys rotate-master`).
    pub older_master_keys: Vec<[u8; 32]>,
    /// Whether the master key came from `PORTEIRO_MASTER_KEY` (else from the data directory).
    pub master_key_from_env: bool,
    /// Whether this process wrote a new `master.key` (none was there): start-up removes it again
    /// if the database turns out to belong to another key.
    pub master_key_generated: bool,
    pub webhook_body_limit: usize,
    pub graphql_body_limit: usize,
    pub rule_timeout_ms: u64,
    pub worker_poll_ms: u64,
    /// How long a worker batch may hold SQLite's write lock while a webhook waits for it, before
    /// it commits what it applied and leaves the rest for the next batch.
    pub worker_yield_ms: u64,
    pub default_app: String,
    pub hotmart: crate::hotmart::api::ApiEndpoints,
    pub scheduler_tick_secs: u64,
    /// SQLite `synchronous=FULL` (true, the default) or the `normal` opt-in.
    pub sqlite_durable: bool,
    /// `PORTEIRO_NOTIFY_ALLOW_PRIVATE_TARGETS`: endpoints may be on loopback or private networks
    /// (off by default: an admin could otherwise make the server probe its own network).
    pub notify_allow_private_targets: bool,
    /// Delivered and dead notifications older than this are deleted.
    pub notify_retention_days: i64,
    /// `PORTEIRO_API_RATE_LIMIT`: requests per minute per app API key, all at once if need be
    /// (`None`: no limit).
    pub api_rate_limit: Option<std::num::NonZeroU32>,
    /// One JSON object a line (`PORTEIRO_LOG_FORMAT=json`) instead of text.
    pub log_json: bool,
    /// Scheduled backups, when configured.
    pub backup: Option<BackupSchedule>,
    /// `PORTEIRO_KEEP_PERSONAL_DATA`: deliveries are stored with the buyer's document, phones,
    /// address and IP (masked by default: access never needs them).
    pub keep_personal_data: bool,
    /// `PORTEIRO_EVENT_BODY_RETENTION_DAYS`: the stored bodies of decided events older than this
    /// are emptied (their facts and decisions stay).
    pub event_body_retention_days: Option<u32>,
    /// `PORTEIRO_DB_MAX_CONNECTIONS`: the pool's size (default 16 on PostgreSQL, 8 on SQLite).
    pub db_max_connections: Option<u32>,
    /// `PORTEIRO_DB_LISTEN_URL`: the direct connection the signals listen on (PostgreSQL).
    pub db_listen_url: Option<String>,
    /// `PORTEIRO_JOB_LEASE_SECS`: a fleet-wide job's lease.
    pub job_lease: std::time::Duration,
    /// `PORTEIRO_DRAIN_SECS`: the drain before a stop.
    pub drain: std::time::Duration,
}

/// Whether a backup carries the data directory's keys: always the operator's explicit choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupKeys {
    Include,
    Exclude,
}

#[derive(Debug, Clone)]
pub struct BackupSchedule {
    pub every: std::time::Duration,
    pub keep: usize,
    pub dir: PathBuf,
    pub keys: BackupKeys,
}

/// Whether a missing key file is generated (a first start) or an error (commands that inspect an
/// installation: a key they generated would belong to nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFiles {
    Create,
    MustExist,
}

/// Where an installation keeps its data, read without touching any key.
#[derive(Debug, Clone)]
pub struct Locations {
    pub database_url: String,
    pub data_dir: PathBuf,
}

impl std::fmt::Debug for Settings {
    // Written by hand so the keys can never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("bind", &self.bind)
            .field("database_url", &redact_url(&self.database_url))
            .field("public_url", &self.public_url)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// Hides a password inside a database URL.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Settings {
    /// Reads `porteiro.toml` (if present) then the environment. `DATABASE_URL` is honoured as well as
    /// `PORTEIRO_DATABASE_URL`, since every tool around databases uses it.
    pub fn load() -> anyhow::Result<Self> {
        Self::from_raw(raw()?, KeyFiles::Create)
    }

    /// Like [`Settings::load`], but a missing key file is an error rather than generated.
    pub fn load_existing() -> anyhow::Result<Self> {
        Self::from_raw(raw()?, KeyFiles::MustExist)
    }

    /// The database and the data directory only (nothing read from or written to the keys).
    pub fn locations() -> anyhow::Result<Locations> {
        let raw = raw()?;
        Ok(Locations {
            database_url: raw.database_url.unwrap_or_else(default_database_url),
            data_dir: PathBuf::from(raw.data_dir),
        })
    }

    /// Settings for tests and embedding: everything explicit, nothing read from the environment.
    pub fn for_tests(database_url: &str, data_dir: &Path) -> anyhow::Result<Self> {
        let raw = RawSettings {
            bind: "127.0.0.1:0".into(),
            database_url: Some(database_url.into()),
            data_dir: data_dir.display().to_string(),
            public_url: Some("http://porteiro.test".into()),
            worker_poll_ms: 50,
            drain_secs: 0,
            // Tests' receivers listen on loopback.
            notify_allow_private_targets: true,
            ..RawSettings::default()
        };
        Self::from_raw(raw, KeyFiles::Create)
    }

    fn from_raw(raw: RawSettings, key_files: KeyFiles) -> anyhow::Result<Self> {
        let backup = backup_schedule(
            &raw,
            Path::new(&raw.data_dir),
            raw.database_url.as_deref().unwrap_or("sqlite:"),
        )?;
        let bind: SocketAddr = raw
            .bind
            .parse()
            .with_context(|| format!("PORTEIRO_BIND must be host:port, got {:?}", raw.bind))?;
        let database_url = raw.database_url.unwrap_or_else(default_database_url);
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            bail!("DATABASE_URL must start with sqlite: or postgres://");
        }
        let public_url = raw
            .public_url
            .unwrap_or_else(|| format!("http://{bind}"))
            .trim_end_matches('/')
            .to_string();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            bail!("PORTEIRO_PUBLIC_URL must start with http:// or https://, got {public_url:?}");
        }
        if raw.webhook_body_limit < 1024 || raw.graphql_body_limit < 1024 {
            bail!("body limits must be at least 1024 bytes");
        }
        for (name, url) in [
            ("PORTEIRO_HOTMART_TOKEN_URL", &raw.hotmart_token_url),
            ("PORTEIRO_HOTMART_API_URL", &raw.hotmart_api_url),
            ("PORTEIRO_HOTMART_SANDBOX_API_URL", &raw.hotmart_sandbox_api_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("{name} must be an http(s) URL, got {url:?}");
            }
        }
        let hotmart = crate::hotmart::api::ApiEndpoints {
            token_url: raw.hotmart_token_url.clone(),
            production_base: raw.hotmart_api_url.trim_end_matches('/').to_string(),
            sandbox_base: raw.hotmart_sandbox_api_url.trim_end_matches('/').to_string(),
            retry_base: std::time::Duration::from_millis(raw.hotmart_retry_base_ms),
            ..Default::default()
        };
        let data_dir = PathBuf::from(&raw.data_dir);
        let jwt_key = match raw.jwt_key {
            Some(k) => k,
            None => load_or_create_key(&data_dir, "jwt.key", key_files)?.0,
        };
        // The same check whether the key came from the environment or from the data directory.
        if jwt_key.len() < 32 {
            bail!("the JWT key (PORTEIRO_JWT_KEY or jwt.key in the data directory) must be at least 32 characters");
        }
        let jwt_key = SecretString::from(jwt_key);
        let master_key_from_env = raw.master_key.is_some();
        let (master_hex, master_key_generated) = match raw.master_key {
            Some(k) => (k, false),
            None => load_or_create_key(&data_dir, "master.key", key_files)?,
        };
        let master_key = parse_master_key(&master_hex)?;
        let mut older_master_keys = Vec::new();
        for k in raw
            .master_key_previous
            .iter()
            .flat_map(|s| s.split(','))
            .filter(|s| !s.trim().is_empty())
        {
            older_master_keys.push(parse_master_key(k).context("PORTEIRO_MASTER_KEY_PREVIOUS")?);
        }
        for name in ["master.key.previous", "master.key.next"] {
            if let Some(k) = read_key_if_present(&data_dir, name)? {
                older_master_keys.push(parse_master_key(&k).with_context(|| name.to_string())?);
            }
        }
        Ok(Self {
            bind,
            database_url,
            public_url,
            data_dir,
            jwt_key,
            master_key,
            older_master_keys,
            master_key_from_env,
            master_key_generated,
            webhook_body_limit: raw.webhook_body_limit,
            graphql_body_limit: raw.graphql_body_limit,
            rule_timeout_ms: raw.rule_timeout_ms.max(1),
            worker_poll_ms: raw.worker_poll_ms.max(10),
            worker_yield_ms: raw.worker_yield_ms,
            default_app: raw.default_app,
            hotmart,
            scheduler_tick_secs: raw.scheduler_tick_secs.max(1),
            notify_allow_private_targets: raw.notify_allow_private_targets,
            notify_retention_days: raw.notify_retention_days.max(1),
            api_rate_limit: std::num::NonZeroU32::new(raw.api_rate_limit),
            backup,
            keep_personal_data: raw.keep_personal_data,
            db_max_connections: match raw.db_max_connections {
                // The webhooks' writer and the worker each hold one while they work; reads need
                // a third.
                Some(n) if n < 3 => bail!("PORTEIRO_DB_MAX_CONNECTIONS must be at least 3, got {n}"),
                n => n,
            },
            db_listen_url: match raw.db_listen_url {
                Some(u) if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) => {
                    bail!("PORTEIRO_DB_LISTEN_URL must be a postgres:// URL")
                }
                u => u,
            },
            job_lease: std::time::Duration::from_secs(raw.job_lease_secs.clamp(2, 3600)),
            drain: std::time::Duration::from_secs(raw.drain_secs.min(300)),
            event_body_retention_days: match raw.event_body_retention_days {
                Some(0) => bail!("PORTEIRO_EVENT_BODY_RETENTION_DAYS must be at least 1 (unset keeps the bodies)"),
                d => d,
            },
            log_json: match raw.log_format.to_ascii_lowercase().as_str() {
                "text" => false,
                "json" => true,
                other => bail!("PORTEIRO_LOG_FORMAT must be text or json, got {other:?}"),
            },
            sqlite_durable: match raw.sqlite_synchronous.to_ascii_lowercase().as_str() {
                "full" => true,
                "normal" => false,
                other => bail!("PORTEIRO_SQLITE_SYNCHRONOUS must be full or normal, got {other:?}"),
            },
        })
    }

    pub fn jwt_secret(&self) -> &[u8] {
        self.jwt_key.expose_secret().as_bytes()
    }

    /// The master key ring: the current key, and older ones for reading what they sealed.
    pub fn secret_box(&self) -> crate::secrets::SecretBox {
        crate::secrets::SecretBox::new(self.master_key).with_older(self.older_master_keys.iter().copied())
    }
}

fn raw() -> anyhow::Result<RawSettings> {
    let fig = Figment::from(Serialized::defaults(RawSettings::default()))
        .merge(Toml::file("porteiro.toml"))
        .merge(Env::raw().only(&["DATABASE_URL"]))
        // PORTEIRO_TEST_DATABASE_URL belongs to the test suite, not to the service.
        .merge(Env::prefixed("PORTEIRO_").filter(|k| !k.as_str().eq_ignore_ascii_case("test_database_url")));
    fig.extract().context("invalid configuration")
}

fn default_database_url() -> String {
    "sqlite://porteiro.db?mode=rwc".to_string()
}

fn backup_schedule(raw: &RawSettings, data_dir: &Path, database_url: &str) -> anyhow::Result<Option<BackupSchedule>> {
    let Some(every) = &raw.backup_every else {
        return Ok(None);
    };
    let every = humantime::parse_duration(every)
        .with_context(|| format!("PORTEIRO_BACKUP_EVERY must be a duration such as 6h or 1d, got {every:?}"))?;
    if every < std::time::Duration::from_secs(60) {
        bail!("PORTEIRO_BACKUP_EVERY must be at least a minute");
    }
    if !database_url.starts_with("sqlite:") {
        bail!(
            "PORTEIRO_BACKUP_EVERY backs up SQLite; for PostgreSQL schedule `porteiro backup` (pg_dump) or use the \
             database's own backups"
        );
    }
    let keys = match raw.backup_keys.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("include") => BackupKeys::Include,
        Some("exclude") => BackupKeys::Exclude,
        other => bail!(
            "PORTEIRO_BACKUP_KEYS must be include or exclude when PORTEIRO_BACKUP_EVERY is set (got {other:?}): \
             a backup without master.key cannot read the Hotmart credentials, one with it must be kept as safe as the key"
        ),
    };
    Ok(Some(BackupSchedule {
        every,
        keep: raw.backup_keep.max(1),
        dir: raw
            .backup_dir
            .as_ref()
            .map_or_else(|| data_dir.join("backups"), PathBuf::from),
        keys,
    }))
}

fn parse_master_key(hex_key: &str) -> anyhow::Result<[u8; 32]> {
    let bytes =
        hex::decode(hex_key.trim()).context("PORTEIRO_MASTER_KEY must be 64 hexadecimal characters (32 bytes)")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("PORTEIRO_MASTER_KEY must be 64 hexadecimal characters (32 bytes)"))
}

/// A key file of the data directory, if there is one (checked like every key file).
pub fn read_key_if_present(dir: &Path, name: &str) -> anyhow::Result<Option<String>> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(None);
    }
    check_private(&path)?;
    let s = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(s.trim().to_string()))
}

/// Writes a new key file (mode 0600), replacing one left by an interrupted rotation.
pub fn write_key(dir: &Path, name: &str, hex_key: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    if path.exists() {
        std::fs::remove_file(&path).with_context(|| format!("cannot replace {}", path.display()))?;
    }
    write_private(&path, hex_key).with_context(|| format!("cannot write {}", path.display()))
}

pub fn parse_key_hex(hex_key: &str) -> anyhow::Result<[u8; 32]> {
    parse_master_key(hex_key)
}

/// Reads a 32-byte hex key from the data directory, creating it (mode 0600) on first start. A key
/// file other users can read refuses to start: whoever reads it can mint admin tokens or read
/// every stored secret.
fn load_or_create_key(dir: &Path, name: &str, key_files: KeyFiles) -> anyhow::Result<(String, bool)> {
    let path = dir.join(name);
    if path.exists() {
        check_private(&path)?;
        let s = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok((s.trim().to_string(), false));
    }
    if key_files == KeyFiles::MustExist {
        bail!(
            "{} does not exist: this is not the data directory of a Porteiro that has started \
             (PORTEIRO_DATA_DIR), or its keys were lost (put them back from a backup's keys/)",
            path.display()
        );
    }
    create_private_dir(dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = hex::encode(bytes);
    write_private(&path, &key).with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a new key");
    Ok((key, true))
}

/// The data directory holds the keys: only its owner may list it.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

#[cfg(unix)]
fn check_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} can be read by other users (mode {:o}); run `chmod 600 {}` and start again",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    std::fs::write(path, content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_database_passwords() {
        assert_eq!(redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn rejects_a_short_master_key() {
        assert!(parse_master_key("abcd").is_err());
        assert!(parse_master_key(&"ab".repeat(32)).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn key_files_others_can_read_refuse_to_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        load_or_create_key(dir.path(), "jwt.key", KeyFiles::Create).unwrap();
        let path = dir.path().join("jwt.key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_key(dir.path(), "jwt.key", KeyFiles::Create)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_short_jwt_key_file_is_refused_like_a_short_variable() {
        let dir = tempfile::tempdir().unwrap();
        write_private(&dir.path().join("jwt.key"), "short").unwrap();
        let err = Settings::for_tests("sqlite://x.db", dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("at least 32"), "{err}");
    }

    #[test]
    fn keys_are_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = load_or_create_key(dir.path(), "k", KeyFiles::MustExist)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("does not exist"), "{missing}");
        assert!(!dir.path().join("k").exists());
        let a = load_or_create_key(dir.path(), "k", KeyFiles::Create).unwrap();
        let b = load_or_create_key(dir.path(), "k", KeyFiles::MustExist).unwrap();
        assert_eq!(a.0, b.0);
        assert!(a.1 && !b.1, "only the first call generated it");
        assert_eq!(a.0.len(), 64);
    }

    #[test]
    fn scheduled_backups_need_an_explicit_choice_about_keys() {
        let dir = tempfile::tempdir().unwrap();
        let raw = |every: Option<&str>, keys: Option<&str>| RawSettings {
            backup_every: every.map(Into::into),
            backup_keys: keys.map(Into::into),
            ..RawSettings::default()
        };
        let sqlite = "sqlite://x.db";
        assert!(backup_schedule(&raw(None, None), dir.path(), sqlite).unwrap().is_none());
        let err = backup_schedule(&raw(Some("6h"), None), dir.path(), sqlite)
            .unwrap_err()
            .to_string();
        assert!(err.contains("PORTEIRO_BACKUP_KEYS"), "{err}");
        let s = backup_schedule(&raw(Some("6h"), Some("Include")), dir.path(), sqlite)
            .unwrap()
            .unwrap();
        assert_eq!(s.every, std::time::Duration::from_secs(6 * 3600));
        assert_eq!((s.keep, s.keys), (7, BackupKeys::Include));
        assert_eq!(s.dir, dir.path().join("backups"));
        assert!(backup_schedule(&raw(Some("10s"), Some("exclude")), dir.path(), sqlite).is_err());
        assert!(backup_schedule(&raw(Some("6h"), Some("exclude")), dir.path(), "postgres://x/y").is_err());
    }
}

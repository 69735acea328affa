//! Backups an operator can trust: a consistent snapshot taken while the service runs, written
//! atomically as a directory, checked after it is written, restorable into an empty data
//! directory, with the keys handled on purpose (a database without its master key cannot read
//! the Hotmart credentials it stores).
//!
//! A backup directory holds `manifest.json` (what, when, which schema, which master key, the
//! database file's SHA-256), the database (`porteiro.db`, or `porteiro.pgdump` from `pg_dump`),
//! and, when asked for, `keys/` with the data directory's key files (mode 0600).
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use sea_orm::sqlx::sqlite::SqliteConnectOptions;
use sea_orm::sqlx::{self, ConnectOptions as _, Row};
use serde::{Deserialize, Serialize};

use migration::MigratorTrait;

use crate::secrets::SecretBox;

pub const MANIFEST: &str = "manifest.json";
const SQLITE_FILE: &str = "porteiro.db";
const PG_FILE: &str = "porteiro.pgdump";
/// The data directory's key files a backup carries (those present).
const KEY_FILES: [&str; 3] = ["master.key", "jwt.key", "master.key.previous"];
const FORMAT: u32 = 1;

/// Whether the keys go into the backup: chosen by the operator, never by default, so a backup
/// is neither silently useless (no key) nor silently a key holder.
pub use crate::config::BackupKeys as Keys;

/// Where the installation keeps its data.
#[derive(Debug, Clone)]
pub struct Source {
    pub database_url: String,
    pub data_dir: PathBuf,
    /// `PORTEIRO_MASTER_KEY` when set (then there is no `master.key` file to copy).
    pub master_key_env: Option<[u8; 32]>,
}

impl Source {
    pub fn of(settings: &crate::config::Settings) -> Self {
        Source {
            database_url: settings.database_url.clone(),
            data_dir: settings.data_dir.clone(),
            master_key_env: settings.master_key_from_env.then_some(settings.master_key),
        }
    }

    fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    pub apps: i64,
    pub events: i64,
    pub buyers: i64,
    pub entitlements: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub porteiro: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// `sqlite` or `postgres`.
    pub backend: String,
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
    /// The last migration applied to the database.
    pub schema: Option<String>,
    /// The master key the database's secrets are sealed with (its public id).
    pub master_key_id: Option<String>,
    pub keys_included: bool,
    pub counts: Option<Counts>,
    pub seconds: f64,
}

/// Takes a backup into `to` (which must not exist). The snapshot is consistent while the service
/// keeps taking webhooks: SQLite's `VACUUM INTO` reads one transaction's view, `pg_dump` one
/// snapshot. Nothing appears at `to` until everything is written and synced.
pub async fn create(src: &Source, to: &Path, keys: Keys) -> anyhow::Result<Manifest> {
    let started = Instant::now();
    if to.exists() {
        bail!("{} already exists: a backup goes into a new directory", to.display());
    }
    let parent = parent_of(to);
    create_private_dir(&parent)?;
    let name = to
        .file_name()
        .context("the backup path needs a directory name")?
        .to_string_lossy()
        .to_string();
    let partial = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    create_private_dir(&partial)?;
    let result = write_into(src, &partial, keys, started).await;
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, to).with_context(|| format!("cannot move the backup into {}", to.display()))?;
    sync_dir(&parent)?;
    Ok(manifest)
}

async fn write_into(src: &Source, dir: &Path, keys: Keys, started: Instant) -> anyhow::Result<Manifest> {
    let (file, backend) = if src.is_sqlite() {
        let live = crate::db::sqlite_file(&src.database_url)
            .with_context(|| format!("{} names no database file", src.database_url))?;
        if !live.exists() {
            bail!("there is no database at {}", live.display());
        }
        snapshot_sqlite(&live, &dir.join(SQLITE_FILE)).await?;
        (SQLITE_FILE, "sqlite")
    } else {
        pg_dump(&src.database_url, &dir.join(PG_FILE)).await?;
        (PG_FILE, "postgres")
    };
    let path = dir.join(file);
    sync_file(&path)?;
    let facts = if src.is_sqlite() {
        read_sqlite(&path).await?
    } else {
        read_postgres(&src.database_url).await?
    };
    let keys_included = keys == Keys::Include;
    if keys_included {
        copy_keys(src, &dir.join("keys"))?;
    }
    let (bytes, sha256) = digest(&path)?;
    let manifest = Manifest {
        format: FORMAT,
        porteiro: crate::version().to_string(),
        created_at: chrono::Utc::now(),
        backend: backend.into(),
        file: file.into(),
        bytes,
        sha256,
        schema: facts.schema,
        master_key_id: facts.key.as_ref().map(|(id, _)| id.clone()),
        keys_included,
        counts: Some(facts.counts),
        seconds: started.elapsed().as_secs_f64(),
    };
    let manifest_path = dir.join(MANIFEST);
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest)?)?;
    sync_file(&manifest_path)?;
    sync_dir(dir)?;
    Ok(manifest)
}

/// `VACUUM INTO` from a connection of our own: it reads one snapshot (WAL readers never block
/// the service's writer) and writes a compact copy.
async fn snapshot_sqlite(live: &Path, out: &Path) -> anyhow::Result<()> {
    let mut conn = SqliteConnectOptions::new()
        .filename(live)
        .create_if_missing(false)
        .busy_timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("cannot open {}", live.display()))?;
    let target = out.to_str().context("the backup path is not valid UTF-8")?;
    sqlx::query("VACUUM INTO ?")
        .bind(target)
        .execute(&mut conn)
        .await
        .context("the snapshot failed")?;
    Ok(())
}

impl Counts {
    /// From the answers to [`COUNTS`], in its order.
    fn of(n: &[i64]) -> Self {
        let at = |i: usize| n.get(i).copied().unwrap_or(0);
        Counts {
            apps: at(0),
            events: at(1),
            buyers: at(2),
            entitlements: at(3),
        }
    }
}

/// What [`Counts`] counts, in its order.
const COUNTS: [&str; 4] = [
    "SELECT COUNT(*) FROM app",
    "SELECT COUNT(*) FROM webhook_event",
    "SELECT COUNT(*) FROM buyer",
    "SELECT COUNT(*) FROM entitlement",
];

/// What a database holds, read from it.
struct Facts {
    schema: Option<String>,
    key: Option<(String, String)>,
    counts: Counts,
    /// `PRAGMA integrity_check`'s answer (SQLite).
    integrity: String,
}

async fn read_sqlite(file: &Path) -> anyhow::Result<Facts> {
    // Immutable: nothing is written next to a backup, not even a lock or a journal.
    let mut conn = SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .immutable(true)
        .connect()
        .await
        .with_context(|| format!("cannot open {}", file.display()))?;
    let integrity: String = sqlx::query("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await?
        .try_get(0)?;
    let schema: Option<String> = sqlx::query("SELECT MAX(version) FROM seaql_migrations")
        .fetch_one(&mut conn)
        .await
        .context("this file is not a Porteiro database")?
        .try_get(0)?;
    let key = match sqlx::query("SELECT key_id, sealed FROM key_check WHERE id = 1")
        .fetch_optional(&mut conn)
        .await
    {
        Ok(row) => row.map(|r| (r.get::<String, _>(0), r.get::<String, _>(1))),
        Err(_) => None, // a schema from before the key check
    };
    let mut counts = Vec::new();
    for count in COUNTS {
        let n: i64 = sqlx::query(count).fetch_one(&mut conn).await?.try_get(0)?;
        counts.push(n);
    }
    Ok(Facts {
        schema,
        key,
        counts: Counts::of(&counts),
        integrity,
    })
}

/// The first column of a query's one row (PostgreSQL's facts for the manifest).
async fn pg_value<T: sea_orm::TryGetable>(db: &sea_orm::DatabaseConnection, sql: &str) -> anyhow::Result<Option<T>> {
    use sea_orm::ConnectionTrait;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql))
        .await?;
    Ok(row.map(|r| r.try_get_by_index::<T>(0)).transpose()?)
}

async fn read_postgres(url: &str) -> anyhow::Result<Facts> {
    let db = crate::db::connect(url).await?;
    let schema = pg_value::<Option<String>>(&db, "SELECT MAX(version) FROM seaql_migrations")
        .await?
        .flatten();
    let key = crate::ops::key_check::recorded(&db).await.ok().flatten();
    let mut counts = Vec::new();
    for count in COUNTS {
        counts.push(pg_value::<i64>(&db, count).await?.unwrap_or(0));
    }
    Ok(Facts {
        schema,
        key,
        counts: Counts::of(&counts),
        integrity: "ok".into(),
    })
}

/// `pg_dump --format=custom`, refused when the client is older than the server (its dump could
/// miss what it does not know). The password goes through `PGPASSWORD`, not the command line
/// other local users can list.
async fn pg_dump(url: &str, out: &Path) -> anyhow::Result<()> {
    let server = pg_server_major(url).await?;
    let client = pg_client_major("pg_dump")?;
    if client < server {
        bail!(
            "pg_dump {client} is older than the PostgreSQL server ({server}): install the client of version \
             {server} or newer (Debian: apt-get install postgresql-client-{server})"
        );
    }
    let (dbname, password) = split_password(url)?;
    let mut cmd = std::process::Command::new("pg_dump");
    cmd.args(["--format=custom", "--no-owner", "--file"])
        .arg(out)
        .arg("--dbname")
        .arg(dbname);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let status = tokio::task::spawn_blocking(move || cmd.status())
        .await?
        .context("cannot run pg_dump")?;
    if !status.success() {
        bail!("pg_dump failed ({status})");
    }
    Ok(())
}

async fn pg_server_major(url: &str) -> anyhow::Result<u32> {
    let db = crate::db::connect(url).await?;
    let v = pg_value::<i32>(&db, "SELECT current_setting('server_version_num')::int")
        .await?
        .context("the server did not say its version")?;
    Ok(u32::try_from(v / 10_000).unwrap_or(0))
}

/// The major version a PostgreSQL client tool prints (`pg_dump (PostgreSQL) 15.20 (Debian …)`).
fn pg_client_major(tool: &str) -> anyhow::Result<u32> {
    let out = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .with_context(|| format!("{tool} is not installed (Debian: apt-get install postgresql-client)"))?;
    parse_client_major(&String::from_utf8_lossy(&out.stdout)).with_context(|| format!("cannot read {tool}'s version"))
}

fn parse_client_major(version: &str) -> Option<u32> {
    let after = version.split(')').nth(1)?.trim();
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn split_password(url: &str) -> anyhow::Result<(String, Option<String>)> {
    let mut u = url::Url::parse(url).context("the database URL does not parse")?;
    let password = u
        .password()
        .map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy().to_string());
    let _ = u.set_password(None);
    Ok((u.to_string(), password))
}

fn copy_keys(src: &Source, to: &Path) -> anyhow::Result<()> {
    create_private_dir(to)?;
    for name in KEY_FILES {
        let value = match (name, src.master_key_env) {
            ("master.key", Some(k)) => Some(hex::encode(k)),
            _ => crate::config::read_key_if_present(&src.data_dir, name)?,
        };
        if let Some(v) = value {
            crate::config::write_key(to, name, &v)?;
            sync_file(&to.join(name))?;
        }
    }
    if !to.join("master.key").exists() {
        bail!(
            "there is no master key to back up in {} (nor PORTEIRO_MASTER_KEY)",
            src.data_dir.display()
        );
    }
    sync_dir(to)
}

/// What `verify` found.
#[derive(Debug)]
pub struct Verified {
    pub manifest: Manifest,
    /// Whether the included master key opens the database's key check (None: no keys included).
    pub keys_open: Option<bool>,
}

/// Checks a backup: the manifest, the file's size and SHA-256, SQLite's integrity check, the
/// schema, and that the included master key opens what the database sealed.
pub async fn verify(dir: &Path) -> anyhow::Result<Verified> {
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(dir.join(MANIFEST)).with_context(|| format!("{} is not a Porteiro backup", dir.display()))?,
    )
    .context("the manifest does not parse")?;
    if manifest.format != FORMAT {
        bail!("backup format {} is not one this Porteiro reads", manifest.format);
    }
    let file = dir.join(&manifest.file);
    let (bytes, sha256) = digest(&file).with_context(|| format!("cannot read {}", file.display()))?;
    if bytes != manifest.bytes || sha256 != manifest.sha256 {
        bail!(
            "{} is damaged: {bytes} bytes, SHA-256 {sha256}; the manifest says {} bytes, {}",
            file.display(),
            manifest.bytes,
            manifest.sha256
        );
    }
    let key = if manifest.backend == "sqlite" {
        let facts = read_sqlite(&file).await?;
        if facts.integrity != "ok" {
            bail!("SQLite's integrity check failed: {}", facts.integrity);
        }
        if facts.schema != manifest.schema {
            bail!("the database's schema is not the one the manifest names");
        }
        if let Some(name) = &facts.schema
            && !migration::Migrator::migrations().iter().any(|m| m.name() == name)
        {
            bail!("the backup's schema ({name}) is newer than this Porteiro: restore it with that version or newer");
        }
        facts.key
    } else {
        let out = std::process::Command::new("pg_restore")
            .arg("--list")
            .arg(&file)
            .output()
            .context("cannot run pg_restore (Debian: apt-get install postgresql-client)")?;
        if !out.status.success() {
            bail!(
                "pg_restore cannot read the dump: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        None
    };
    let keys_open = if manifest.keys_included {
        let ring = key_ring(&dir.join("keys"))?;
        Some(match &key {
            Some((id, sealed)) => crate::ops::key_check::verify(&ring, id, sealed).is_ok(),
            None => {
                manifest.master_key_id.is_none() || manifest.master_key_id.as_deref() == Some(ring.current_key_id())
            }
        })
    } else {
        None
    };
    if keys_open == Some(false) {
        bail!("the master key in the backup's keys/ does not open the database's secrets");
    }
    Ok(Verified { manifest, keys_open })
}

fn key_ring(dir: &Path) -> anyhow::Result<SecretBox> {
    let current = crate::config::read_key_if_present(dir, "master.key")?.context("keys/master.key is missing")?;
    let mut ring = SecretBox::new(crate::config::parse_key_hex(&current)?);
    if let Some(previous) = crate::config::read_key_if_present(dir, "master.key.previous")? {
        ring = ring.with_older([crate::config::parse_key_hex(&previous)?]);
    }
    Ok(ring)
}

/// What `restore` did.
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    pub database: PathBuf,
    pub keys_restored: bool,
}

/// Restores a SQLite backup into an empty place: it refuses to overwrite a database or a key
/// file that is already there, and checks the backup before touching anything.
pub async fn restore(from: &Path, database_url: &str, data_dir: &Path) -> anyhow::Result<Restored> {
    let Verified { manifest, .. } = verify(from).await?;
    if manifest.backend != "sqlite" || !database_url.starts_with("sqlite:") {
        bail!(
            "restore writes SQLite databases; restore a PostgreSQL backup with \
             `pg_restore --no-owner --dbname <DATABASE_URL> {}` into an empty database",
            from.join(&manifest.file).display()
        );
    }
    let target =
        crate::db::sqlite_file(database_url).with_context(|| format!("{database_url} names no database file"))?;
    for f in [target.clone(), with_suffix(&target, "-wal")] {
        if std::fs::metadata(&f).is_ok_and(|m| m.len() > 0) {
            bail!(
                "refusing to overwrite the database at {}: restore into an empty data directory \
                 (stop the service and move the old files away first)",
                f.display()
            );
        }
    }
    let keys = from.join("keys");
    let keys_restored = manifest.keys_included;
    if keys_restored {
        for name in KEY_FILES {
            if keys.join(name).exists() && data_dir.join(name).exists() {
                bail!(
                    "{} already exists: restore into an empty data directory",
                    data_dir.join(name).display()
                );
            }
        }
    }
    let parent = parent_of(&target);
    std::fs::create_dir_all(&parent)?;
    // Left over from a start against the missing database: nothing in them is ours.
    for f in [
        target.clone(),
        with_suffix(&target, "-wal"),
        with_suffix(&target, "-shm"),
    ] {
        if f.exists() {
            std::fs::remove_file(&f)?;
        }
    }
    let partial = with_suffix(&target, ".restoring");
    std::fs::copy(from.join(&manifest.file), &partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    sync_file(&partial)?;
    std::fs::rename(&partial, &target)?;
    sync_dir(&parent)?;
    if keys_restored {
        create_private_dir(data_dir)?;
        for name in KEY_FILES {
            if let Some(v) = crate::config::read_key_if_present(&keys, name)? {
                crate::config::write_key(data_dir, name, &v)?;
                sync_file(&data_dir.join(name))?;
            }
        }
        sync_dir(data_dir)?;
    }
    Ok(Restored {
        manifest,
        database: target,
        keys_restored,
    })
}

/// One round of the scheduled backups: a backup if the newest is older than the period, then the
/// oldest beyond the kept count deleted. `/metrics` carries the newest one's time.
pub async fn scheduled_round(src: &Source, plan: &crate::config::BackupSchedule) -> anyhow::Result<Option<Manifest>> {
    let now = chrono::Utc::now();
    if let Some((_, newest)) = scheduled(&plan.dir).pop() {
        note_success(newest.created_at);
        let age = (now - newest.created_at).to_std().unwrap_or_default();
        if age < plan.every {
            return Ok(None);
        }
    }
    create_private_dir(&plan.dir)?;
    let to = plan.dir.join(scheduled_name(now));
    let manifest = create(src, &to, plan.keys).await?;
    note_success(manifest.created_at);
    let removed = prune(&plan.dir, plan.keep)?;
    tracing::info!(
        path = %to.display(),
        events = manifest.counts.as_ref().map_or(0, |c| c.events),
        seconds = manifest.seconds,
        removed,
        "scheduled backup written"
    );
    Ok(Some(manifest))
}

fn note_success(at: chrono::DateTime<chrono::Utc>) {
    #[allow(clippy::cast_precision_loss)] // seconds since 1970 fit a double exactly
    metrics::gauge!("porteiro_backup_last_success_timestamp_seconds").set(at.timestamp() as f64);
}

/// The scheduled backups' directory names sort by time.
pub fn scheduled_name(at: chrono::DateTime<chrono::Utc>) -> String {
    format!("porteiro-{}", at.format("%Y%m%dT%H%M%SZ"))
}

/// The scheduled backups in `dir`, oldest first, with their manifests.
pub fn scheduled(dir: &Path) -> Vec<(PathBuf, Manifest)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, Manifest)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("porteiro-"))
        })
        .filter_map(|p| {
            let m = serde_json::from_slice(&std::fs::read(p.join(MANIFEST)).ok()?).ok()?;
            Some((p, m))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Deletes the oldest scheduled backups beyond `keep`, and what an interrupted one left.
pub fn prune(dir: &Path, keep: usize) -> anyhow::Result<usize> {
    let mut removed = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for p in entries.flatten().map(|e| e.path()) {
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".porteiro-"))
            {
                std::fs::remove_dir_all(&p)?;
            }
        }
    }
    let found = scheduled(dir);
    for (path, _) in found.iter().take(found.len().saturating_sub(keep)) {
        std::fs::remove_dir_all(path).with_context(|| format!("cannot delete {}", path.display()))?;
        removed += 1;
    }
    Ok(removed)
}

fn digest(path: &Path) -> anyhow::Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn sync_file(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path)?
        .sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))
}

/// Makes the new names (a rename, a new file) durable, not only the files' bytes.
#[cfg(unix)]
fn sync_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path)?
        .sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))
}

#[cfg(not(unix))]
fn sync_dir(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// A directory only its owner may list (it may hold keys), like the data directory.
fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    crate::config::create_private_dir(path).with_context(|| format!("cannot create {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_client_major_version() {
        assert_eq!(
            parse_client_major("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(parse_client_major("pg_dump (PostgreSQL) 17beta1"), Some(17));
        assert_eq!(parse_client_major("pg_dump"), None);
        assert_eq!(parse_client_major("pg_dump (PostgreSQL) 9.6.24"), Some(9));
    }

    #[test]
    fn the_password_leaves_the_url() {
        let (url, pw) = split_password("postgres://u:p%40ss@db:5432/x").unwrap();
        assert_eq!(url, "postgres://u@db:5432/x");
        assert_eq!(pw.as_deref(), Some("p@ss"));
        assert_eq!(split_password("postgres://u@db/x").unwrap().1, None);
    }
}

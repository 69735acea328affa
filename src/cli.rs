//! The command line: `serve` (default), `migrate`, `token`, `apps`, `rules`, `replay`,
//! `reconcile`, `keys`, `schema`, `backup`, `restore`, `doctor`.
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use migration::{Migrator, MigratorTrait};
use tokio::sync::watch;

use crate::auth::{self, Principal, Role};
use crate::config::{Settings, redact_url};
use crate::{AppState, services};

#[derive(Parser, Debug)]
#[command(
    name = "porteiro",
    version = crate::version(),
    about = "Delivers digital products sold on Hotmart"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Apply or roll back database migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Print a JWT for the admin API.
    Token {
        #[arg(long)]
        app: String,
        #[arg(long, default_value = "admin")]
        role: Role,
        /// Lifetime, e.g. 30m, 12h, 30d.
        #[arg(long, default_value = "12h")]
        ttl: String,
        #[arg(long, default_value = "cli")]
        subject: String,
    },
    /// Print a one-time link (valid 15 minutes) that signs this browser in to the console.
    Login {
        #[arg(long)]
        app: String,
        #[arg(long, default_value = "admin")]
        role: Role,
        /// Who is signing in, for the audit log.
        #[arg(long, default_value = "cli")]
        subject: String,
    },
    /// Manage apps (stores).
    Apps {
        #[command(subcommand)]
        action: AppsAction,
    },
    /// Export, import and check rule scripts kept in a directory.
    Rules {
        #[command(subcommand)]
        action: RulesAction,
    },
    /// Pull sales and subscriptions from Hotmart's API for a window and heal what webhooks missed.
    Reconcile {
        #[arg(long)]
        app: String,
        /// Start of the window: 2025-01-31 or an RFC 3339 time.
        #[arg(long)]
        since: String,
        /// End of the window (default: now).
        #[arg(long)]
        until: Option<String>,
        /// Only report the drift; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Queue failed, unmapped or ignored events again and process the inbox.
    Replay {
        #[arg(long)]
        app: String,
        #[arg(long, default_value = "failed")]
        status: String,
        #[arg(long)]
        event_type: Option<String>,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Print the apps' REST API as an OpenAPI document (JSON), as served at /v1/openapi.json.
    Openapi,
    /// Master key management.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// A buyer's personal data (LGPD): export it, erase it, mask what was stored before.
    Buyers {
        #[command(subcommand)]
        action: BuyersAction,
    },
    /// Back up the database (and, when asked, the keys) while the service runs, or check a backup.
    Backup {
        /// A new directory to write the backup into.
        #[arg(long, required_unless_present = "verify", conflicts_with = "verify")]
        to: Option<PathBuf>,
        /// Check a backup directory (manifest, checksum, integrity, keys) instead.
        #[arg(long, value_name = "PATH")]
        verify: Option<PathBuf>,
        /// Put the data directory's keys (master.key, jwt.key) in the backup: keep it as safe
        /// as the keys themselves.
        #[arg(long, conflicts_with = "without_keys")]
        with_keys: bool,
        /// Leave the keys out: the backup restores only next to the same master.key.
        #[arg(long)]
        without_keys: bool,
    },
    /// Restore a SQLite backup into an empty data directory (the service stopped).
    Restore {
        #[arg(long)]
        from: PathBuf,
    },
    /// Check this installation the way support would, and say what to fix.
    Doctor {
        /// Send nothing off this machine (no DNS lookup, no call to Hotmart).
        #[arg(long)]
        offline: bool,
    },
    /// Notification endpoints.
    Notify {
        #[command(subcommand)]
        action: NotifyAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum BuyersAction {
    /// Print everything the app holds about the person with this e-mail, as JSON.
    Export {
        #[arg(long)]
        app: String,
        #[arg(long)]
        email: String,
    },
    /// Erase the person with this e-mail on their request: access ends, their e-mail becomes a
    /// pseudonym and their name and personal fields are masked everywhere. Cannot be undone.
    Erase {
        #[arg(long)]
        app: String,
        #[arg(long)]
        email: String,
        /// Why (the request and its date), kept in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Mask the document, phones, address and IP in deliveries stored before they were masked
    /// at the door (or while PORTEIRO_KEEP_PERSONAL_DATA was on). Every app.
    MaskStored,
}

#[derive(Subcommand, Debug)]
pub enum NotifyAction {
    /// Send a signed `porteiro.test` notification to an endpoint now and print what it answered.
    Test {
        #[arg(long)]
        endpoint: i32,
        /// The endpoint's app (the default app unless said).
        #[arg(long)]
        app: Option<String>,
    },
    /// List an app's endpoints (never their secrets).
    List {
        #[arg(long)]
        app: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Re-encrypt every stored secret under a new master key. With the key in the data directory
    /// a new one is generated and swapped in (the old one kept as master.key.previous); with
    /// PORTEIRO_MASTER_KEY, give the new key with --new-key and set it before the next start.
    RotateMaster {
        /// The new key (64 hex characters); required when the key comes from the environment.
        #[arg(long)]
        new_key: Option<String>,
    },
    /// The master key that sealed this database is lost for good: record the configured key as
    /// the database's. Secrets only the lost key could read stay unreadable (webhooks for those
    /// apps answer 503 MISCONFIGURED) until an admin saves them again in the console.
    Reseal {
        /// Required: says you know those secrets are gone.
        #[arg(long)]
        forget_unreadable: bool,
    },
    /// Create an API key for an app's own software; the key is printed once.
    Create {
        #[arg(long)]
        app: String,
        #[arg(long)]
        name: String,
        /// Repeat for several; `access:read` by default.
        #[arg(long = "scope", default_value = "access:read")]
        scopes: Vec<String>,
        /// The key stops working after this long (30d, 12h…); none: until revoked.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// Rotate an API key: print a new key with the same name and scopes, while the old one keeps
    /// working for --overlap (24h by default), then stops.
    Rotate {
        #[arg(long)]
        app: String,
        #[arg(long)]
        id: i32,
        #[arg(long, default_value = "24h")]
        overlap: String,
    },
    /// List an app's API keys (never their secrets).
    List {
        #[arg(long)]
        app: String,
    },
    /// Revoke an API key by its id (from `keys list`).
    Revoke {
        #[arg(long)]
        app: String,
        #[arg(long)]
        id: i32,
    },
}

#[derive(Subcommand, Debug)]
pub enum MigrateAction {
    Up,
    /// Roll back the last migration, or all with --all.
    Down {
        #[arg(long)]
        all: bool,
    },
    Status,
}

#[derive(Subcommand, Debug)]
pub enum AppsAction {
    Create {
        #[arg(long)]
        slug: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    List,
}

#[derive(Subcommand, Debug)]
pub enum RulesAction {
    /// Write the app's active scripts as DIR/<EVENT_TYPE>.rhai.
    Export {
        #[arg(long)]
        app: String,
        dir: PathBuf,
    },
    /// Validate and save every DIR/<EVENT_TYPE>.rhai as a new version for the app, and activate
    /// it (the events of its type are decided again), or only save it with --draft.
    Import {
        #[arg(long)]
        app: String,
        dir: PathBuf,
        /// Save each new version as a draft: nothing changes until it is activated.
        #[arg(long)]
        draft: bool,
    },
    /// Put a saved version in shadow (decided beside the active one on live events, nothing
    /// applied), take it out (--off), or promote it (--promote); prints how it compared.
    Shadow {
        #[arg(long)]
        app: String,
        #[arg(long)]
        event_type: String,
        #[arg(long, conflicts_with_all = ["off", "promote"])]
        version: Option<i32>,
        #[arg(long)]
        off: bool,
        #[arg(long)]
        promote: bool,
    },
    /// Run a saved version over the stored events of its type, writing nothing, and print whose
    /// access activating it would change.
    Backtest {
        #[arg(long)]
        app: String,
        #[arg(long)]
        event_type: String,
        /// The version to try (0: the shipped default).
        #[arg(long)]
        version: i32,
        /// Only events received from then (2025-01-31 or an RFC 3339 time).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
    },
    /// Compile and dry-run every DIR/<EVENT_TYPE>.rhai; non-zero exit on the first failure.
    Check { dir: PathBuf },
    /// Run every DIR/<event_type>.rhai against its DIR/<event_type>.cases.json (payloads,
    /// targets, access and the decisions expected), offline; non-zero exit if any case fails.
    /// For CI in the seller's own repository.
    Test { dir: PathBuf },
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        auth::parse_role(s)
    }
}

pub fn parse_ttl(s: &str) -> anyhow::Result<chrono::Duration> {
    let s = s.trim();
    // A bare number is seconds, as it always was; anything else is humantime's ("30m", "12h",
    // "7days", "1h 30m").
    let parsed = match s.parse::<u64>() {
        Ok(secs) => Ok(std::time::Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(s),
    };
    let d = parsed.with_context(|| format!("--ttl {s:?}: expected a duration such as 30m, 12h or 7d"))?;
    let d = chrono::Duration::from_std(d).context("--ttl is too long")?;
    if d <= chrono::Duration::zero() || d > chrono::Duration::days(366) {
        bail!("--ttl must be between 1 second and 366 days");
    }
    Ok(d)
}

/// The cases file beside a script (`purchase_approved.rhai` → `purchase_approved.cases.json`).
fn cases_of(dir: &std::path::Path, script: &str) -> anyhow::Result<Option<String>> {
    let path = dir.join(format!("{}.cases.json", script.trim_end_matches(".rhai")));
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn test_rules(dir: &PathBuf) -> anyhow::Result<()> {
    let engine = crate::rules::RuleEngine::new(std::time::Duration::from_millis(100));
    let (mut passed, mut failed, mut without) = (0, 0, Vec::new());
    for (event_type, name, source) in rule_files(dir)? {
        let Some(text) = cases_of(dir, &name)? else {
            without.push(name);
            continue;
        };
        let cases = crate::rules::cases::parse(&text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        if let Some(c) = cases.iter().find(|c| c.payload.is_none()) {
            bail!(
                "{name}: case {:?} has no payload (a stored event's id only works on the server)",
                c.name
            );
        }
        match crate::rules::cases::run(&engine, &event_type, &source, &cases) {
            Ok(n) => {
                println!("ok {name}: {n} case(s)");
                passed += n;
            }
            Err(e) => {
                println!("FAILED {name}:\n{e}");
                failed += 1;
            }
        }
    }
    for name in &without {
        println!("no cases for {name}");
    }
    if failed > 0 {
        bail!("{failed} script(s) failed their cases");
    }
    println!("{passed} case(s) passed");
    Ok(())
}

/// `(EVENT_TYPE, file name, source)` for every `.rhai` file in `dir`.
fn rule_files(dir: &PathBuf) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("rhai") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_uppercase();
        let source = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let name = path
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        out.push((stem, name, source));
    }
    out.sort();
    Ok(out)
}

async fn app_principal(state: &AppState, slug: &str) -> anyhow::Result<Principal> {
    let app = services::apps::by_slug(&state.db, slug)
        .await?
        .with_context(|| format!("no app with slug {slug:?}"))?;
    Ok(Principal {
        app_id: app.id,
        app_slug: app.slug,
        role: Role::Admin,
        subject: "cli".into(),
    })
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    // Commands that touch no database need no settings (and create no keys).
    match command {
        Command::Rules {
            action: RulesAction::Check { dir },
        } => return check_rules(&dir),
        Command::Schema => {
            print!("{}", crate::graphql::sdl());
            return Ok(());
        }
        Command::Openapi => {
            println!("{}", crate::http::v1::spec());
            return Ok(());
        }
        Command::Backup {
            to,
            verify,
            with_keys,
            without_keys,
        } => return backup(to, verify, with_keys, without_keys).await,
        Command::Restore { from } => return restore(&from).await,
        Command::Doctor { offline } => {
            let report = match Settings::load_existing() {
                Ok(settings) => crate::ops::doctor::examine(settings, offline).await,
                Err(e) => bail!("{e:#}\nfix: point PORTEIRO_DATA_DIR and DATABASE_URL at the installation"),
            };
            println!("{report}");
            if report.worst() == crate::ops::doctor::Level::Fail {
                bail!("doctor found problems");
            }
            return Ok(());
        }
        _ => {}
    }
    let settings = Settings::load()?;
    match command {
        Command::Serve => serve(settings).await,
        Command::Migrate { action } => {
            let db = crate::db::connect(&settings.database_url).await?;
            crate::db::refuse_newer_schema(&db).await?;
            match action {
                MigrateAction::Up => {
                    for (name, what) in crate::db::pending_rewrites(&db).await? {
                        println!("{name} rewrites stored data: {what}");
                    }
                    Migrator::up(&db, None).await?;
                    crate::db::record_floor(&db).await?;
                }
                MigrateAction::Down { all } => Migrator::down(&db, if all { None } else { Some(1) }).await?,
                MigrateAction::Status => Migrator::status(&db).await?,
            }
            Ok(())
        }
        Command::Login { app, role, subject } => {
            let state = AppState::init(settings).await?;
            let token = services::console::issue_login(&state, &app, role, &subject).await?;
            eprintln!("open this link in your browser within 15 minutes (it works once):");
            println!("{}/console/login?token={token}", state.settings.public_url);
            Ok(())
        }
        Command::Token {
            app,
            role,
            ttl,
            subject,
        } => {
            let state = AppState::init(settings).await?;
            if services::apps::by_slug(&state.db, &app).await?.is_none() {
                bail!("no app with slug {app:?} (see `porteiro apps list`)");
            }
            println!(
                "{}",
                auth::issue(state.settings.jwt_secret(), &app, role, &subject, parse_ttl(&ttl)?)?
            );
            Ok(())
        }
        Command::Apps { action } => {
            let state = AppState::init(settings).await?;
            match action {
                AppsAction::Create { slug, name } => {
                    let a = services::apps::create(&state.db, &slug, &name).await?;
                    println!("created app {} ({})", a.slug, a.name);
                    println!(
                        "webhook URL: {}",
                        services::integration::webhook_url(&state.settings.public_url, &a.webhook_key)
                    );
                }
                AppsAction::List => {
                    for a in services::apps::list(&state.db).await? {
                        println!(
                            "{}\t{}\t{}",
                            a.slug,
                            a.name,
                            services::integration::webhook_url(&state.settings.public_url, &a.webhook_key)
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Rules { action } => rules(settings, action).await,
        Command::Replay {
            app,
            status,
            event_type,
        } => {
            let state = AppState::init(settings).await?;
            let who = app_principal(&state, &app).await?;
            let queued = services::events::replay_all(&state, &who, &status, event_type.as_deref()).await?;
            let processed = crate::pipeline::worker::drain(&state).await?;
            println!("queued {queued} event(s); processed {processed}");
            Ok(())
        }
        Command::Reconcile {
            app,
            since,
            until,
            dry_run,
        } => reconcile(settings, &app, &since, until.as_deref(), dry_run).await,
        Command::Keys {
            action: KeysAction::RotateMaster { new_key },
        } => rotate_master(settings, new_key.as_deref()).await,
        Command::Keys {
            action: KeysAction::Reseal { forget_unreadable },
        } => reseal(settings, forget_unreadable).await,
        Command::Keys { action } => api_keys(settings, action).await,
        Command::Notify { action } => notify(settings, action).await,
        Command::Buyers { action } => buyers(settings, action).await,
        Command::Schema
        | Command::Openapi
        | Command::Backup { .. }
        | Command::Restore { .. }
        | Command::Doctor { .. } => {
            unreachable!("handled above")
        }
    }
}

async fn api_keys(settings: Settings, action: KeysAction) -> anyhow::Result<()> {
    let state = AppState::init(settings).await?;
    let show = |k: &entity::api_key::Model| {
        let used = k
            .last_used_at
            .map_or("never used".to_string(), |t| format!("last used {t}"));
        let state = match (k.revoked_at, k.expires_at) {
            (Some(t), _) => format!("revoked {t}"),
            (None, Some(t)) if t <= chrono::Utc::now() => format!("expired {t}"),
            (None, Some(t)) => format!("active until {t}"),
            (None, None) => "active".to_string(),
        };
        format!(
            "{:>4}  pk_{}_…  {:<24} {:<14} {state}, {used}",
            k.id, k.key_id, k.name, k.scopes
        )
    };
    match action {
        KeysAction::Create {
            app,
            name,
            scopes,
            expires_in,
        } => {
            let who = app_principal(&state, &app).await?;
            let expires_at = expires_in
                .as_deref()
                .map(parse_ttl)
                .transpose()?
                .map(|d| chrono::Utc::now() + d);
            let (row, secret) = services::api_keys::create(&state, &who, &name, &scopes, expires_at).await?;
            eprintln!("{}", show(&row));
            eprintln!("the key (shown once; store it in the app's configuration now):");
            println!("{secret}");
        }
        KeysAction::Rotate { app, id, overlap } => {
            let who = app_principal(&state, &app).await?;
            let until = chrono::Utc::now() + parse_ttl(&overlap)?;
            let (row, secret) = services::api_keys::rotate(&state, &who, id, until).await?;
            eprintln!("{}", show(&row));
            eprintln!("the new key (shown once); the old one works until {until}:");
            println!("{secret}");
        }
        KeysAction::List { app } => {
            let who = app_principal(&state, &app).await?;
            for k in services::api_keys::list(&state.db, who.app_id).await? {
                println!("{}", show(&k));
            }
        }
        KeysAction::Revoke { app, id } => {
            let who = app_principal(&state, &app).await?;
            let row = services::api_keys::revoke(&state, &who, id).await?;
            println!("{}", show(&row));
        }
        KeysAction::RotateMaster { .. } | KeysAction::Reseal { .. } => unreachable!("handled above"),
    }
    Ok(())
}

async fn notify(settings: Settings, action: NotifyAction) -> anyhow::Result<()> {
    let default_app = settings.default_app.clone();
    let state = AppState::init(settings).await?;
    match action {
        NotifyAction::Test { endpoint, app } => {
            let who = app_principal(&state, app.as_deref().unwrap_or(&default_app)).await?;
            let d = services::notifications::send_test(&state, who.app_id, endpoint).await?;
            let r = &d.row;
            println!(
                "{} to endpoint {endpoint}: {} in {} ms{}",
                d.notification.msg_id,
                match r.last_status_code {
                    Some(code) => format!("answered {code}"),
                    None => "no answer".to_string(),
                },
                r.last_latency_ms.unwrap_or_default(),
                r.last_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
            );
            if r.status != entity::status::DeliveryStatus::Delivered {
                bail!("the endpoint did not accept the test notification");
            }
        }
        NotifyAction::List { app } => {
            let who = app_principal(&state, app.as_deref().unwrap_or(&default_app)).await?;
            for e in services::notifications::list_endpoints(&state.db, who.app_id).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    e.id,
                    e.uid,
                    if e.enabled { "enabled" } else { "disabled" },
                    e.url,
                    if e.event_types.is_empty() {
                        "all events"
                    } else {
                        &e.event_types
                    }
                );
            }
        }
    }
    Ok(())
}

async fn buyers(settings: Settings, action: BuyersAction) -> anyhow::Result<()> {
    let state = AppState::init(settings).await?;
    match action {
        BuyersAction::Export { app, email } => {
            let who = app_principal(&state, &app).await?;
            let data = services::personal_data::export(&state, &who, &email).await?;
            println!("{}", serde_json::to_string_pretty(&data)?);
        }
        BuyersAction::Erase { app, email, reason } => {
            let who = app_principal(&state, &app).await?;
            let e = services::personal_data::erase(&state, &who, &email, &reason).await?;
            println!(
                "erased: now {} ({} entitlement(s) revoked, {} purchase(s) closed, {} event(s) scrubbed)",
                e.pseudonym, e.revoked, e.sources, e.events
            );
            println!("backups taken before now still hold the person: see the README (LGPD) for what to do with them");
        }
        BuyersAction::MaskStored => {
            let n = services::personal_data::mask_stored(&state.db).await?;
            println!("masked the personal fields of {n} stored delivery(ies)");
        }
    }
    Ok(())
}

async fn backup(
    to: Option<PathBuf>,
    verify: Option<PathBuf>,
    with_keys: bool,
    without_keys: bool,
) -> anyhow::Result<()> {
    use crate::ops::backup::{self, Keys};
    if let Some(dir) = verify {
        let v = backup::verify(&dir).await?;
        let m = &v.manifest;
        println!(
            "{}: intact ({} {}, {} bytes, SHA-256 {}), taken {} by porteiro {}",
            dir.display(),
            m.backend,
            m.file,
            m.bytes,
            m.sha256,
            m.created_at.to_rfc3339(),
            m.porteiro
        );
        if let Some(c) = &m.counts {
            println!(
                "holds {} app(s), {} event(s), {} buyer(s), {} entitlement(s); schema {}",
                c.apps,
                c.events,
                c.buyers,
                c.entitlements,
                m.schema.as_deref().unwrap_or("none")
            );
        }
        match v.keys_open {
            Some(_) => println!("keys included: the master key opens the database's secrets"),
            None => println!(
                "keys not included: restoring needs master key {}",
                m.master_key_id.as_deref().unwrap_or("(none recorded)")
            ),
        }
        return Ok(());
    }
    let Some(to) = to else {
        bail!("say where: --to PATH");
    };
    // Keys are read, never generated: a key made now would belong to nothing.
    let settings = Settings::load_existing()?;
    let keys = match (with_keys, without_keys, settings.master_key_from_env) {
        (true, _, _) => Keys::Include,
        (false, true, _) | (false, false, true) => Keys::Exclude,
        (false, false, false) => bail!(
            "say whether the keys go into the backup: --with-keys (the backup then opens the Hotmart \
             credentials on its own: keep it as safe as the key) or --without-keys (it then restores only \
             next to {}, which you keep elsewhere)",
            settings.data_dir.join("master.key").display()
        ),
    };
    let m = backup::create(&backup::Source::of(&settings), &to, keys).await?;
    println!(
        "backup written to {} in {:.1}s: {} bytes, {} event(s), schema {}",
        to.display(),
        m.seconds,
        m.bytes,
        m.counts.as_ref().map_or(0, |c| c.events),
        m.schema.as_deref().unwrap_or("none")
    );
    if m.keys_included {
        println!("it holds the keys (keys/): whoever reads it can read the Hotmart credentials");
    } else {
        println!(
            "it does not hold the keys: restoring it needs master key {}{}",
            m.master_key_id.as_deref().unwrap_or("(none recorded)"),
            if settings.master_key_from_env {
                " (PORTEIRO_MASTER_KEY)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

async fn restore(from: &std::path::Path) -> anyhow::Result<()> {
    // Read without touching keys: the data directory is meant to be empty.
    let at = Settings::locations()?;
    let r = crate::ops::backup::restore(from, &at.database_url, &at.data_dir).await?;
    println!(
        "restored {} (taken {}, {} event(s)) into {}",
        from.display(),
        r.manifest.created_at.to_rfc3339(),
        r.manifest.counts.as_ref().map_or(0, |c| c.events),
        r.database.display()
    );
    if r.keys_restored {
        println!("keys restored into {}; start porteiro", at.data_dir.display());
    } else {
        println!(
            "the backup holds no keys: put master.key {} into {} (mode 0600) or set PORTEIRO_MASTER_KEY, then start porteiro",
            r.manifest.master_key_id.as_deref().unwrap_or("(none recorded)"),
            at.data_dir.display()
        );
    }
    Ok(())
}

async fn reseal(settings: Settings, forget_unreadable: bool) -> anyhow::Result<()> {
    if !forget_unreadable {
        bail!(
            "this gives up on the secrets the old master key sealed (Hotmart credentials, Hottoks, \
             notification signing secrets): if the old key can still be found, put it back instead. \
             To go ahead, add --forget-unreadable"
        );
    }
    let db = crate::db::connect(&settings.database_url).await?;
    crate::db::migrate(&db).await?;
    let ring = settings.secret_box();
    let before = crate::ops::key_check::recorded(&db).await?.map(|(id, _)| id);
    let txn = crate::db::write_txn(&db).await?;
    crate::ops::key_check::seal(&txn, &ring).await?;
    #[allow(clippy::disallowed_methods)] // an operator's key decision, not an app's change
    txn.commit().await?;
    tracing::warn!(
        from = before.as_deref().unwrap_or("none"),
        to = ring.current_key_id(),
        "the database's master key was replaced by an operator; secrets sealed by the old one stay unreadable"
    );
    println!(
        "this database now belongs with master key {} (was {}); have each app's admin save the Hotmart \
         credentials and notification secrets again",
        ring.current_key_id(),
        before.as_deref().unwrap_or("none")
    );
    Ok(())
}

/// Crash-safe order: the new key is on disk (as master.key.next, which start-up also reads)
/// before any value is rewritten; the rewrite is one transaction; only then is it swapped in.
async fn rotate_master(settings: Settings, new_key: Option<&str>) -> anyhow::Result<()> {
    use crate::config::{parse_key_hex, read_key_if_present, write_key};
    use crate::secrets::SecretBox;
    let dir = settings.data_dir.clone();
    let new: [u8; 32] = match (new_key, settings.master_key_from_env) {
        (Some(k), _) => parse_key_hex(k)?,
        (None, true) => bail!("the master key comes from PORTEIRO_MASTER_KEY: give the new one with --new-key"),
        // Resume an interrupted rotation with the key it had already written.
        (None, false) => match read_key_if_present(&dir, "master.key.next")? {
            Some(k) => parse_key_hex(&k)?,
            None => {
                let mut k = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rng(), &mut k);
                k
            }
        },
    };
    if !settings.master_key_from_env {
        write_key(&dir, "master.key.next", &hex::encode(new))?;
    }
    let from = settings.secret_box();
    let to = SecretBox::new(new);
    let db = crate::db::connect(&settings.database_url).await?;
    // Every other command starts by migrating too; the key check's table must exist.
    crate::db::migrate(&db).await?;
    let txn = crate::db::write_txn(&db).await?;
    let n = services::integration::reencrypt_all(&txn, &from, &to).await?
        + services::notifications::reencrypt_all(&txn, &from, &to).await?;
    crate::ops::key_check::seal(&txn, &to).await?;
    #[allow(clippy::disallowed_methods)] // an operator's key rotation, not an app's change
    txn.commit().await?;
    let old_id = from.current_key_id().to_string();
    if settings.master_key_from_env {
        println!(
            "re-encrypted {n} secret(s) from key {old_id} to key {}",
            to.current_key_id()
        );
        println!(
            "set PORTEIRO_MASTER_KEY to the new key before the next start (keep the old one as PORTEIRO_MASTER_KEY_PREVIOUS until then)"
        );
    } else {
        write_key(&dir, "master.key.previous", &hex::encode(settings.master_key))?;
        std::fs::rename(dir.join("master.key.next"), dir.join("master.key"))
            .context("cannot move master.key.next into place")?;
        println!(
            "re-encrypted {n} secret(s) from key {old_id} to key {}; the old key is kept in {} until you delete it",
            to.current_key_id(),
            dir.join("master.key.previous").display()
        );
    }
    Ok(())
}

fn check_rules(dir: &PathBuf) -> anyhow::Result<()> {
    let engine = crate::rules::RuleEngine::new(std::time::Duration::from_millis(250));
    let files = rule_files(dir)?;
    if files.is_empty() {
        bail!("no .rhai files in {}", dir.display());
    }
    for (event_type, name, source) in files {
        services::rules::check_event_type(&event_type).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let runs = crate::rules::validate(&engine, &event_type, &source).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        println!("ok  {name} ({runs} dry runs)");
    }
    Ok(())
}

async fn rules(settings: Settings, action: RulesAction) -> anyhow::Result<()> {
    match action {
        RulesAction::Check { dir } => check_rules(&dir),
        RulesAction::Test { dir } => test_rules(&dir),
        RulesAction::Export { app, dir } => {
            let state = AppState::init(settings).await?;
            let who = app_principal(&state, &app).await?;
            std::fs::create_dir_all(&dir)?;
            for t in crate::rules::scripted_event_types() {
                if let Some(a) = services::rules::active(&state.db, who.app_id, t).await? {
                    let path = dir.join(format!("{}.rhai", t.to_lowercase()));
                    std::fs::write(&path, a.source)?;
                    println!("{} (version {})", path.display(), a.version);
                }
            }
            Ok(())
        }
        RulesAction::Import { app, dir, draft } => {
            let state = AppState::init(settings).await?;
            let who = app_principal(&state, &app).await?;
            for (event_type, name, source) in rule_files(&dir)? {
                let current = services::rules::active(&state.db, who.app_id, &event_type).await?;
                if current.as_ref().is_some_and(|c| c.source == source) {
                    println!("unchanged {event_type}");
                    continue;
                }
                let cases = cases_of(&dir, &name)?;
                let v = services::rules::save(&state, &who, &event_type, &source, !draft, cases.as_deref())
                    .await
                    .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
                if draft {
                    println!("saved {event_type} version {} as a draft (not active)", v.version);
                } else {
                    println!(
                        "saved and activated {event_type} version {} (its stored events are decided again)",
                        v.version
                    );
                }
            }
            Ok(())
        }
        RulesAction::Shadow {
            app,
            event_type,
            version,
            off,
            promote,
        } => {
            let state = AppState::init(settings).await?;
            let who = app_principal(&state, &app).await?;
            if promote {
                let a = services::rules::promote_shadow(&state, &who, &event_type).await?;
                println!(
                    "activated {event_type} version {} (its stored events are decided again)",
                    a.version
                );
            } else if off || version.is_some() {
                services::rules::set_shadow(&state, &who, &event_type, version).await?;
            }
            for r in services::rules::shadow_records(&state.db, who.app_id, &event_type).await? {
                println!(
                    "version {}{}: {} agreed, {} disagreed",
                    r.version,
                    if r.current { " (in shadow)" } else { "" },
                    r.agreed,
                    r.disagreed
                );
                for s in &r.samples {
                    println!(
                        "  event {}: active {} | shadow {}",
                        s.webhook_event_id, s.active, s.shadow
                    );
                }
            }
            Ok(())
        }
        RulesAction::Backtest {
            app,
            event_type,
            version,
            since,
            until,
        } => {
            let state = AppState::init(settings).await?;
            let who = app_principal(&state, &app).await?;
            let window = services::backtests::Window {
                since: since.as_deref().map(parse_time).transpose()?,
                until: until.as_deref().map(parse_time).transpose()?,
            };
            backtest(&state, &who, &event_type, version, window).await
        }
    }
}

async fn backtest(
    state: &AppState,
    who: &auth::Principal,
    event_type: &str,
    version: i32,
    window: services::backtests::Window,
) -> anyhow::Result<()> {
    use entity::status::RunStatus;
    let started = services::backtests::start(state, who, event_type, version, window).await?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} events")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let done = loop {
        let r = services::backtests::get(&state.db, who.app_id, started.id).await?;
        bar.set_length(r.total as u64);
        bar.set_position(r.progress as u64);
        if r.status != RunStatus::Running {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    bar.finish_and_clear();
    let Some(report) = services::backtests::report_of(&done) else {
        bail!("backtest {}: {}", done.status, done.error.unwrap_or_default());
    };
    println!(
        "{event_type} version {version}: {} events evaluated, {} decisions would change, {} sources touched",
        report.events_evaluated, report.decisions_changed, report.sources_touched
    );
    for c in &report.decision_changes {
        println!("  {} -> {}: {}", c.from, c.to, c.count);
    }
    println!(
        "access: {} gained, {} lost, {} suspended, {} end moved, {} otherwise changed",
        report.gained, report.lost, report.suspended, report.end_moved, report.changed
    );
    let state_of = |s: &Option<services::backtests::AccessState>| match s {
        Some(s) => format!(
            "{} {}",
            s.status,
            s.expires_at.map_or("(no end)".to_string(), crate::domain::timestamp)
        ),
        None => "none".into(),
    };
    for c in &report.changes {
        let email = c.after.as_ref().or(c.before.as_ref()).map_or("", |s| s.email.as_str());
        println!(
            "{:?}\t{email}\t{}\t{} -> {}",
            c.kind,
            c.source,
            state_of(&c.before),
            state_of(&c.after)
        );
    }
    if report.truncated {
        println!(
            "(the list stops at {} sources; the counts cover all)",
            report.changes.len()
        );
    }
    Ok(())
}

pub fn parse_time(s: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .with_context(|| format!("{s:?} is neither a date (2025-01-31) nor an RFC 3339 time"))?;
    Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

/// A progress bar per stage of a reconciliation.
struct Bar(indicatif::ProgressBar);

impl services::reconcile::Progress for Bar {
    fn stage(&self, stage: entity::status::RunStage) {
        self.0.set_message(stage.as_str());
        self.0.set_position(0);
    }
    fn count(&self, n: u64) {
        self.0.set_position(n);
    }
}

async fn reconcile(
    settings: Settings,
    app: &str,
    since: &str,
    until: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<()> {
    let state = AppState::init(settings).await?;
    let who = app_principal(&state, app).await?;
    let until = until.map(parse_time).transpose()?.unwrap_or_else(chrono::Utc::now);
    let req = services::reconcile::Request {
        since: parse_time(since)?,
        until,
        dry_run,
        trigger: "cli",
        actor: "cli".into(),
    };
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}: {pos}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let run = services::reconcile::reconcile(&state, who.app_id, req, &Bar(bar.clone())).await?;
    bar.finish_and_clear();
    if let Some(e) = &run.error {
        bail!("reconciliation failed: {e}");
    }
    let report = services::reconcile::report_of(&run).unwrap_or_default();
    println!(
        "{} sales, {} subscriptions: {} events, {} new, {} already known",
        report.sales_seen, report.subscriptions_seen, report.events_found, report.events_new, report.events_known
    );
    if !report.unmapped_products.is_empty() {
        println!(
            "products not linked to any package or plan: {}",
            report.unmapped_products.join(", ")
        );
    }
    for d in &report.drift {
        println!(
            "{:?}\t{}\t{}\t{}: {} -> {}",
            d.kind,
            d.email,
            d.source,
            d.target,
            d.before_status.as_deref().unwrap_or("none"),
            d.after_status
        );
    }
    println!(
        "{} drift item(s); {}",
        report.drift.len(),
        if report.applied {
            "applied"
        } else {
            "dry run: nothing changed"
        }
    );
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    tracing::info!(bind = %settings.bind, database = %redact_url(&settings.database_url), "starting porteiro");
    let state = AppState::init(settings).await?;
    let acceptor = crate::http::bind(state.settings.bind)
        .await
        .with_context(|| format!("cannot listen on {}", state.settings.bind))?;
    let jobs = crate::app::start_jobs(&state).context("cannot start the worker thread")?;
    tracing::info!(jobs = jobs.names().join(","), "background jobs started");
    let (tx, rx) = watch::channel(false);
    let default_app = services::apps::ensure(&state.db, &state.settings.default_app).await?;
    let addr = crate::http::local_addr(&acceptor).unwrap_or(state.settings.bind);
    // The webhook key is a credential: the start-up banner (which ends up in logs) masks it.
    // Say how to sign in the way this process was started: through cargo, or the binary itself.
    let me = if std::env::var_os("CARGO").is_some() {
        "cargo run --release --".to_string()
    } else {
        std::env::args().next().unwrap_or_else(|| "porteiro".into())
    };
    let banner = [
        format!(
            "  admin console: http://{addr}/console/ (sign in: {me} login --app {})",
            default_app.slug
        ),
        format!("  GraphQL (GraphiQL in a browser): http://{addr}/graphql"),
        format!("  apps' access API: http://{addr}/v1/docs"),
        format!(
            "  Hotmart webhook URL of app '{}': {}{} (the whole URL: `porteiro apps list` or hotmartIntegration {{ webhookUrl }})",
            default_app.slug,
            state.settings.public_url,
            crate::http::loggable_path(&format!("/webhooks/hotmart/{}", default_app.webhook_key))
        ),
        format!(
            "  admin token: cargo run --release -- token --app {} --role admin",
            default_app.slug
        ),
    ];
    if state.settings.log_json {
        // Every line of the log is one JSON object, the banner's included.
        tracing::info!(address = %format!("http://{addr}"), "porteiro listening");
        for line in &banner {
            tracing::info!("{}", line.trim());
        }
    } else {
        eprintln!("porteiro listening on http://{addr}");
        for line in &banner {
            eprintln!("{line}");
        }
    }
    let (runs, backtests) = (state.runs.clone(), state.backtests.clone());
    let (draining, drain) = (state.draining.clone(), state.settings.drain);
    let fleet = state.fleet.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        // First the drain: webhooks and readiness answer 503 while the load balancer notices,
        // and requests already in go on.
        draining.store(true, std::sync::atomic::Ordering::Relaxed);
        if !drain.is_zero() {
            tracing::info!(
                seconds = drain.as_secs(),
                "draining: webhooks answer 503 until the stop"
            );
            tokio::time::sleep(drain).await;
        }
        tracing::info!("shutting down");
        // Running reconciliations and backtests finish as `cancelled` rather than `running`
        // forever.
        backtests.stop_all();
        let n = runs.stop_all();
        if n > 0 {
            tracing::info!(runs = n, "stopping reconciliation runs");
        }
        let _ = tx.send(true);
    });
    crate::http::serve(state, acceptor, rx).await?;
    // The server has drained its requests; the loops finish the round in hand.
    jobs.stop().await;
    // The other instances take this one's jobs at their next round, not after a lease.
    // A few tries: a connection that fails now would leave the others waiting out the leases.
    for attempt in 1..=5 {
        match fleet.release_all().await {
            Ok(n) => {
                tracing::info!(leases = n, "gave back this instance's jobs");
                break;
            }
            Err(e) => {
                e.log();
                tracing::warn!(attempt, "could not give back this instance's jobs yet");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn token_lifetimes_read_as_durations_within_bounds() {
        assert_eq!(parse_ttl("30m").unwrap(), chrono::Duration::minutes(30));
        assert_eq!(parse_ttl(" 12h ").unwrap(), chrono::Duration::hours(12));
        assert_eq!(parse_ttl("7d").unwrap(), chrono::Duration::days(7));
        assert_eq!(parse_ttl("1h 30m").unwrap(), chrono::Duration::minutes(90));
        assert_eq!(parse_ttl("3600").unwrap(), chrono::Duration::hours(1));
        for bad in ["", "0", "0s", "367d", "12 parsecs", "-1h"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }
}

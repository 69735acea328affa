//! Rhai rule scripts: the one place the engine is built and hardened, the script API, the AST
//! cache, and validation. Rules know nothing of the database: they get values and return a
//! [`Decision`].
pub mod cases;
mod defaults;

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use rhai::{AST, CallFnOptions, Dynamic, Engine, Map, Scope};
use serde_json::json;
use sha2::{Digest, Sha256};

pub use defaults::{FIXTURES, default_script, scripted_event_types};

use crate::domain::{Decision, EntitlementStatus, PaymentEvent, Target};

pub const ENTRY_POINT: &str = "decide";

/// A script error with where it happened, when Rhai knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", location(*line, *column))]
pub struct RuleError {
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

fn location(line: Option<usize>, col: Option<usize>) -> String {
    match (line, col) {
        (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
        (Some(l), None) => format!(" (line {l})"),
        _ => String::new(),
    }
}

impl RuleError {
    fn plain(message: impl Into<String>) -> Self {
        RuleError {
            message: message.into(),
            line: None,
            column: None,
        }
    }

    fn at(message: impl Into<String>, pos: rhai::Position) -> Self {
        RuleError {
            message: message.into(),
            line: pos.line(),
            column: pos.position(),
        }
    }
}

/// What the buyer currently holds from this source, as the script sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentAccess {
    pub status: EntitlementStatus,
    pub expires_at: Option<DateTime<Utc>>,
}

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

const MAX_OPERATIONS: u64 = 200_000;

/// Builds the engine with every limit set: operations, call depth, expression depth, sizes, no
/// `eval`, no imports, `print`/`debug` into tracing, and a wall-clock budget per call.
fn build_engine() -> Engine {
    let mut e = Engine::new();
    e.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    e.disable_symbol("eval");
    e.disable_symbol("import");
    e.set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(32)
        .set_max_expr_depths(64, 32)
        .set_max_string_size(16 * 1024)
        .set_max_array_size(1_000)
        .set_max_map_size(500)
        .set_max_variables(200)
        .set_max_functions(64)
        .set_max_modules(0);
    // Scripts print for their authors, not for operators: DEBUG, and a bounded line.
    e.on_print(|s| tracing::debug!(target: "porteiro::rules", "{}", capped(s)));
    e.on_debug(|s, src, pos| tracing::debug!(target: "porteiro::rules", ?src, %pos, "{s}"));
    e.on_progress(|_| {
        let late = DEADLINE.with(|d| d.get().is_some_and(|t| Instant::now() > t));
        late.then(|| Dynamic::from("time budget exceeded"))
    });

    e.register_fn("grant", || -> Map { decision_map("grant", None) });
    e.register_fn("grant_until", |ms: i64| -> Map { decision_map("grant", Some(ms)) });
    e.register_fn("revoke", || -> Map { decision_map("revoke", None) });
    e.register_fn("revoke_at", |ms: i64| -> Map { decision_map("revoke", Some(ms)) });
    e.register_fn("suspend", || -> Map { decision_map("suspend", None) });
    e.register_fn("ignore", |reason: &str| -> Map {
        let mut m = decision_map("ignore", None);
        m.insert("reason".into(), reason.into());
        m
    });
    e.register_fn("days", |n: i64| -> i64 { n.saturating_mul(86_400_000) });
    e.register_fn("hours", |n: i64| -> i64 { n.saturating_mul(3_600_000) });
    e
}

/// The longest `print` line kept in the log.
const PRINT_MAX_CHARS: usize = 500;

fn capped(s: &str) -> String {
    match s.char_indices().nth(PRINT_MAX_CHARS) {
        Some((i, _)) => format!("{}… ({} more bytes)", &s[..i], s.len() - i),
        None => s.to_string(),
    }
}

fn decision_map(action: &str, at: Option<i64>) -> Map {
    let mut m = Map::new();
    m.insert("action".into(), action.into());
    if let Some(ms) = at {
        m.insert("at".into(), ms.into());
    }
    m
}

fn ms(t: Option<DateTime<Utc>>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| json!(t.timestamp_millis()))
}

fn event_value(e: &PaymentEvent) -> serde_json::Value {
    json!({
        "type": e.kind.as_str(),
        "id": e.event_id,
        "occurred_at": e.occurred_at.timestamp_millis(),
        "transaction": e.transaction,
        "product_id": e.product_id,
        "product_name": e.product_name,
        "email": e.buyer_email,
        "name": e.buyer_name,
        "subscriber_code": e.subscriber_code,
        "plan_id": e.plan_id,
        "plan_name": e.plan_name,
        "offer_code": e.offer_code,
        "recurrence_number": e.recurrence_number,
        "approved_at": ms(e.approved_at),
        "next_charge_at": ms(e.next_charge_at),
        "price": e.price,
        "currency": e.currency,
        "payment_type": e.payment_type,
        "status": e.status,
        "is_test": e.is_test,
    })
}

fn target_value(t: &Target) -> serde_json::Value {
    json!({
        "kind": t.kind.as_str(),
        "id": t.id,
        "name": t.name,
        "access_days": t.access_days,
        "period_days": t.period_days,
        "grace_days": t.grace_days,
    })
}

fn access_value(a: Option<&CurrentAccess>) -> serde_json::Value {
    match a {
        Some(a) => json!({"status": a.status.as_str(), "expires_at": ms(a.expires_at)}),
        None => serde_json::Value::Null,
    }
}

/// How many compiled scripts are kept: every event type of many apps, with room for the
/// versions being edited; the least recently used go first.
pub const AST_CACHE_CAPACITY: u64 = 1_000;

/// The script in force for an app's event type, and its version (0: the shipped default).
#[derive(Debug, Clone)]
pub struct ActiveScript {
    pub version: i32,
    pub source: String,
}

/// Compiled scripts, cached by the hash of their source (so each version compiles once).
pub struct RuleEngine {
    engine: Engine,
    cache: moka::sync::Cache<[u8; 32], Arc<AST>>,
    budget: Duration,
}

impl RuleEngine {
    pub fn new(budget: Duration) -> Self {
        Self::with_cache_capacity(budget, AST_CACHE_CAPACITY)
    }

    pub fn with_cache_capacity(budget: Duration, capacity: u64) -> Self {
        RuleEngine {
            engine: build_engine(),
            cache: moka::sync::Cache::new(capacity),
            budget,
        }
    }

    /// How many compiled scripts the cache holds now.
    pub fn cached_scripts(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    pub fn compile(&self, source: &str) -> Result<Arc<AST>, RuleError> {
        let key: [u8; 32] = Sha256::digest(source.as_bytes()).into();
        if let Some(ast) = self.cache.get(&key) {
            return Ok(ast);
        }
        let ast = self
            .engine
            .compile(source)
            .map_err(|e| RuleError::at(e.0.to_string(), e.1))?;
        let has_entry = ast
            .iter_functions()
            .any(|f| f.name == ENTRY_POINT && f.params.len() == 3);
        if !has_entry {
            return Err(RuleError::plain(format!(
                "the script must define fn {ENTRY_POINT}(event, target, access)"
            )));
        }
        let ast = Arc::new(ast);
        self.cache.insert(key, ast.clone());
        Ok(ast)
    }

    /// Runs a script's `decide`. Any failure (error, loop, timeout, a value outside the decision
    /// vocabulary) is an error: it never becomes a change of access.
    pub fn decide(
        &self,
        source: &str,
        event: &PaymentEvent,
        target: &Target,
        access: Option<&CurrentAccess>,
    ) -> Result<Decision, RuleError> {
        let ast = self.compile(source)?;
        let to_dyn = |v: serde_json::Value| {
            rhai::serde::to_dynamic(v).map_err(|e| RuleError::plain(format!("cannot pass values to the script: {e}")))
        };
        let args = (
            to_dyn(event_value(event))?,
            to_dyn(target_value(target))?,
            to_dyn(access_value(access))?,
        );
        DEADLINE.with(|d| d.set(Some(Instant::now() + self.budget)));
        let out = self.engine.call_fn_with_options::<Dynamic>(
            CallFnOptions::new().rewind_scope(true),
            &mut Scope::new(),
            &ast,
            ENTRY_POINT,
            args,
        );
        DEADLINE.with(|d| d.set(None));
        let value = out.map_err(|e| {
            let pos = e.position();
            let msg = match *e {
                rhai::EvalAltResult::ErrorTerminated(..) => {
                    format!("script exceeded its time budget of {:?}", self.budget)
                }
                rhai::EvalAltResult::ErrorTooManyOperations(..) => {
                    format!("script exceeded {MAX_OPERATIONS} operations (a loop that never ends?)")
                }
                other => other.to_string(),
            };
            RuleError::at(msg, pos)
        })?;
        to_decision(value)
    }
}

fn to_decision(v: Dynamic) -> Result<Decision, RuleError> {
    let shown = v.to_string();
    let bad = || {
        RuleError::plain(format!(
            "decide returned {shown}; it must return grant(), grant_until(ms), revoke(), revoke_at(ms), suspend() or ignore(reason)"
        ))
    };
    let map = v.try_cast::<Map>().ok_or_else(bad)?;
    let action = map
        .get("action")
        .and_then(|a| a.clone().into_string().ok())
        .ok_or_else(bad)?;
    let at = match map.get("at") {
        None => None,
        Some(d) => {
            let ms = d.as_int().map_err(|_| bad())?;
            Some(
                Utc.timestamp_millis_opt(ms)
                    .single()
                    .ok_or_else(|| RuleError::plain(format!("{ms} is not a valid time in milliseconds")))?,
            )
        }
    };
    match action.as_str() {
        "grant" => Ok(Decision::Grant { until: at }),
        "revoke" => Ok(Decision::Revoke { at }),
        "suspend" => Ok(Decision::Suspend),
        "ignore" => {
            let reason = map
                .get("reason")
                .map(std::string::ToString::to_string)
                .unwrap_or_default();
            if reason.trim().is_empty() {
                return Err(RuleError::plain("ignore(reason) needs a reason"));
            }
            Ok(Decision::Ignore { reason })
        }
        _ => Err(bad()),
    }
}

/// Compiles a script and dry-runs it over every shipped fixture of its event type, against a
/// package and a plan. Returns how many runs passed.
pub fn validate(engine: &RuleEngine, event_type: &str, source: &str) -> Result<usize, RuleError> {
    engine.compile(source)?;
    let targets = [
        Target::package(1, "dry-run package", Some(30)),
        Target::package(3, "dry-run lifetime package", None),
        Target::plan(2, "dry-run plan", 30, 3),
    ];
    let mut runs = 0;
    for (name, body) in FIXTURES {
        let Ok(ev) = crate::hotmart::parse_event(crate::hotmart::Format::V2, body.as_bytes(), Utc::now()) else {
            continue;
        };
        if ev.kind.as_str() != event_type {
            continue;
        }
        for t in &targets {
            engine.decide(source, &ev, t, None).map_err(|e| RuleError {
                message: format!("dry run on fixture {name}: {}", e.message),
                ..e
            })?;
            runs += 1;
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> RuleEngine {
        RuleEngine::new(Duration::from_millis(200))
    }

    fn sample() -> PaymentEvent {
        let body = FIXTURES.iter().find(|(n, _)| *n == "purchase_approved.json").unwrap().1;
        crate::hotmart::parse_event(crate::hotmart::Format::V2, body.as_bytes(), Utc::now()).unwrap()
    }

    fn plan() -> Target {
        Target::plan(1, "p", 30, 3)
    }

    #[test]
    fn every_default_script_passes_its_own_validation() {
        let e = engine();
        for t in scripted_event_types() {
            validate(&e, t, default_script(t).unwrap()).unwrap_or_else(|err| panic!("{t}: {err}"));
        }
    }

    #[test]
    fn the_compiled_script_cache_is_bounded() {
        let e = RuleEngine::with_cache_capacity(Duration::from_millis(200), 10);
        for i in 0..100 {
            e.compile(&format!("fn decide(event, target, access) {{ ignore(\"v{i}\") }}"))
                .unwrap();
        }
        assert!(e.cached_scripts() <= 10, "{} scripts kept", e.cached_scripts());
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn printed_at(level: tracing::Level) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(sub, || {
            engine()
                .decide(
                    "fn decide(e, t, a) { print(\"hello from a script\"); grant() }",
                    &sample(),
                    &plan(),
                    None,
                )
                .unwrap();
        });
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn print_goes_to_debug_not_to_the_operators_log() {
        assert!(!printed_at(tracing::Level::INFO).contains("hello from a script"));
        assert!(printed_at(tracing::Level::DEBUG).contains("hello from a script"));
    }

    #[test]
    fn print_lines_are_capped() {
        let long = "x".repeat(10_000);
        let c = capped(&long);
        assert!(c.len() < 600 && c.ends_with("(9500 more bytes)"), "{c}");
        assert_eq!(capped("short"), "short");
    }

    #[test]
    fn a_looping_script_is_stopped() {
        let src = "fn decide(event, target, access) { loop { } }";
        let err = engine().decide(src, &sample(), &plan(), None).unwrap_err();
        assert!(
            err.message.contains("operations") || err.message.contains("budget"),
            "{err}"
        );
    }

    #[test]
    fn a_crashing_script_reports_its_line() {
        let src = "fn decide(event, target, access) {\n  let x = 1;\n  x.no_such_method()\n}";
        let err = engine().decide(src, &sample(), &plan(), None).unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let err = engine()
            .compile("fn decide(event, target, access) {\n  grant(\n}")
            .unwrap_err();
        assert!(err.line.is_some() && err.column.is_some(), "{err}");
    }

    #[test]
    fn nonsense_return_values_are_refused() {
        let err = engine()
            .decide("fn decide(e, t, a) { 42 }", &sample(), &plan(), None)
            .unwrap_err();
        assert!(err.message.contains("must return"), "{err}");
        let err = engine().compile("fn other(e) { grant() }").unwrap_err();
        assert!(err.message.contains("decide"), "{err}");
    }

    #[test]
    fn eval_and_import_are_unavailable() {
        assert!(
            engine().compile("fn decide(e, t, a) { eval(\"grant()\") }").is_err()
                || engine()
                    .decide("fn decide(e, t, a) { eval(\"grant()\") }", &sample(), &plan(), None)
                    .is_err()
        );
        assert!(
            engine()
                .compile("import \"x\" as y; fn decide(e, t, a) { grant() }")
                .is_err()
                || engine()
                    .decide(
                        "import \"x\" as y; fn decide(e, t, a) { grant() }",
                        &sample(),
                        &plan(),
                        None
                    )
                    .is_err()
        );
    }
}

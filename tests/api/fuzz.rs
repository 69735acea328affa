//! Whatever arrives at the webhook route: never a 5xx, never a panic, and the worker digests
//! whatever was stored. Random bytes, invalid UTF-8, deep nesting, huge numbers, wrong content
//! types, and real fixtures with one field replaced by something hostile.
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::helpers::*;
use porteiro::hotmart::{self, Format};

const FIXTURES: &[&str] = &[
    "purchase_approved.json",
    "purchase_refunded.json",
    "purchase_protest.json",
    "subscription_cancellation.json",
    "switch_plan.json",
    "purchase_complete.json",
];

/// Values meant to break a reader: wrong types, extremes, NULs, deep nesting, invalid UTF-8
/// (as JSON text, the nearest a JSON document gets to it: a lone surrogate escape).
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_string()),
        Just("1e400".to_string()),
        Just("-1e308".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("1.5".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("\"a\\u0000b\"".to_string()),
        Just("\"\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("true".to_string()),
        (1usize..300).prop_map(|d| format!("{}1{}", "[".repeat(d), "]".repeat(d))),
        "[ -~]{0,40}".prop_map(|s| Value::String(s).to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or("0".into(), |n| n.to_string())),
    ]
}

/// Every path to a leaf of a JSON document.
fn leaves(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                prefix.push(k.clone());
                leaves(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                prefix.push(i.to_string());
                leaves(x, prefix, out);
                prefix.pop();
            }
        }
        _ => out.push(prefix.clone()),
    }
}

/// A fixture with one leaf replaced by a hostile value, spliced in as text so the result can
/// be JSON that serde_json would never produce.
fn mutated_fixture() -> impl Strategy<Value = Vec<u8>> {
    (0..FIXTURES.len(), any::<prop::sample::Index>(), hostile()).prop_map(|(f, pick, bad)| {
        let mut v: Value = serde_json::from_str(&fixture(FIXTURES[f])).unwrap();
        v["hottok"] = json!(HOTTOK);
        let mut paths = Vec::new();
        leaves(&v, &mut Vec::new(), &mut paths);
        paths.retain(|p| p.first().map(String::as_str) != Some("hottok"));
        let path = &paths[pick.index(paths.len())];
        let marker = "\u{1}MARK\u{1}";
        let mut slot = &mut v;
        for k in path {
            slot = match slot {
                Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
                other => &mut other[k.as_str()],
            };
        }
        *slot = json!(marker);
        v.to_string()
            .replace(&Value::String(marker.into()).to_string(), &bad)
            .into_bytes()
    })
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => mutated_fixture(),
        1 => prop::collection::vec(any::<u8>(), 0..600),
        1 => "[ -~]{0,200}".prop_map(String::into_bytes),
        // A form with random fields, the right token among them.
        1 => prop::collection::vec(("[a-z_]{1,12}", "[ -~]{0,20}"), 0..8).prop_map(|kv| {
            let mut parts: Vec<String> = kv
                .into_iter()
                .map(|(k, v)| format!("{k}={}", percent(&v)))
                .collect();
            parts.push(format!("hottok={HOTTOK}"));
            parts.join("&").into_bytes()
        }),
        // Invalid UTF-8 inside an otherwise fine document.
        1 => Just({
            let mut b = fixture("purchase_approved.json").into_bytes();
            let at = b.iter().position(|c| *c == b'@').unwrap();
            b.splice(at..at, [0xff, 0xfe, 0xc3]);
            b
        }),
    ]
}

fn percent(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn content_type() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just("application/json"),
        2 => Just("application/x-www-form-urlencoded"),
        1 => Just("text/plain"),
        1 => Just("application/octet-stream"),
        1 => Just("multipart/form-data; boundary=x"),
        1 => Just(""),
    ]
}

#[test]
fn the_parser_never_panics_on_any_bytes() {
    let mut runner = TestRunner::new(Config::with_cases(3000));
    runner
        .run(&any_body(), |body| {
            for format in [Format::V2, Format::V1] {
                let _ = hotmart::intake(format, &body);
                let _ = hotmart::parse_event(format, &body, chrono::Utc::now());
            }
            let _ = hotmart::detect_format(Some("application/json"), &body);
            let _ = hotmart::redacted_body(Format::V2, &body);
            let _ = hotmart::redacted_body(Format::V1, &body);
            Ok(())
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_answers_any_delivery_without_a_5xx_and_the_worker_digests_it() {
    let app = TestApp::spawn().await;
    app.configure_hotmart().await;
    app.create_plan("Mensal", &["4100001"]).await;
    let url = app.webhook_url("default").await;
    let strategy = (any_body(), content_type(), any::<bool>());
    let mut runner = TestRunner::new(Config::default());
    let cases = if pg_base().is_some() { 150 } else { 300 };
    let mut seen = std::collections::BTreeMap::<u16, usize>::new();
    for case in 0..cases {
        let (body, ct, with_header) = strategy.new_tree(&mut runner).unwrap().current();
        let mut req = app.client.post(&url).body(body.clone());
        if !ct.is_empty() {
            req = req.header("content-type", ct);
        }
        if with_header {
            req = req.header("X-HOTMART-HOTTOK", HOTTOK);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        *seen.entry(status).or_default() += 1;
        assert!(
            [200, 400, 401, 413, 415].contains(&status),
            "case {case}: {status} {text} for {ct} {:?}",
            String::from_utf8_lossy(&body)
        );
        if status != 200 {
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("a JSON reason: {text}"));
            assert!(v["message"].is_string(), "{v}");
        }
        if case % 50 == 49 {
            // Panics (through unwrap) if the worker cannot get through what was stored.
            app.process_inbox().await;
        }
    }
    app.process_inbox().await;
    // Everything stored was decided: nothing pending, nothing stuck.
    let pending = porteiro::pipeline::inbox::pending_count(&app.state.db).await.unwrap();
    assert_eq!(pending, 0);
    assert!(seen.get(&200).copied().unwrap_or(0) > 10, "{seen:?}");
    assert!(seen.get(&400).copied().unwrap_or(0) > 0, "{seen:?}");
    let health = app.client.get(format!("{}/healthz", app.addr)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

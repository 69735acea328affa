//! A fake Hotmart REST API, served by poem on a local port, with the knobs the tests need:
//! token issuance and expiry, pagination, 429s, revoked tokens, subscription actions.
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{EndpointExt, Request, Response, Route, handler, post};
use serde_json::{Value, json};

use crate::helpers::{CLIENT_ID, CLIENT_SECRET};

#[derive(Default)]
pub struct Fake {
    pub token_requests: AtomicUsize,
    pub api_requests: AtomicUsize,
    pub expires_in: AtomicU64,
    /// Answer this many API calls with 429 before serving again.
    pub rate_limited: AtomicUsize,
    pub page_size: AtomicUsize,
    pub valid_tokens: Mutex<HashSet<String>>,
    pub sales: Mutex<Vec<Value>>,
    pub subscriptions: Mutex<Vec<Value>>,
    pub purchases: Mutex<HashMap<String, Vec<Value>>>,
    pub actions: Mutex<Vec<(String, String, Value)>>,
    pub queries: Mutex<Vec<String>>,
    /// When set, the sales history refuses this query parameter with a 400.
    pub refuse_parameter: Mutex<Option<String>>,
    /// Milliseconds the sales history takes to answer (a slow Hotmart).
    pub sales_delay_ms: AtomicU64,
}

impl Fake {
    pub fn revoke_tokens(&self) {
        self.valid_tokens.lock().unwrap().clear();
    }
}

pub fn api_fixture(name: &str) -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// A sales-history item from the shared fixture, with fields replaced.
pub fn sale(email: &str, transaction: &str, status: &str, approved_ms: i64, subscription: bool) -> Value {
    let mut s = api_fixture("api_sales_history_page.json")["items"][if subscription { 0 } else { 1 }].clone();
    s["buyer"]["email"] = json!(email);
    s["purchase"]["transaction"] = json!(transaction);
    s["purchase"]["status"] = json!(status);
    s["purchase"]["approved_date"] = json!(approved_ms);
    s["purchase"]["order_date"] = json!(approved_ms - 1000);
    s
}

/// The REST `transaction_status` values Hotmart documents.
const DOCUMENTED_SALE_STATUSES: &[&str] = &[
    "APPROVED",
    "BLOCKED",
    "CANCELLED",
    "CHARGEBACK",
    "COMPLETE",
    "EXPIRED",
    "NO_FUNDS",
    "OVERDUE",
    "PARTIALLY_REFUNDED",
    "PRE_ORDER",
    "PRINTED_BILLET",
    "PROCESSING_TRANSACTION",
    "PROTESTED",
    "REFUNDED",
    "STARTED",
    "UNDER_ANALISYS",
    "WAITING_PAYMENT",
];

fn json_response(status: StatusCode, body: Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

fn query(req: &Request) -> Vec<(String, String)> {
    serde_urlencoded::from_str(req.uri().query().unwrap_or("")).unwrap_or_default()
}

fn get<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

#[handler]
fn token(req: &Request, Data(f): Data<&Arc<Fake>>) -> Response {
    f.token_requests.fetch_add(1, Ordering::SeqCst);
    let q = query(req);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth != expected
        || get(&q, "client_secret") != Some(CLIENT_SECRET)
        || get(&q, "grant_type") != Some("client_credentials")
    {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": "unauthorized", "error_description": "Bad credentials"}),
        );
    }
    let n = f.token_requests.load(Ordering::SeqCst);
    let tok = format!("tok-{n}");
    f.valid_tokens.lock().unwrap().insert(tok.clone());
    let mut body = api_fixture("api_oauth_token_response.json");
    body["access_token"] = json!(tok);
    body["expires_in"] = json!(f.expires_in.load(Ordering::SeqCst));
    json_response(StatusCode::OK, body)
}

/// Bearer check and rate limit, shared by every API route.
fn gate(req: &Request, f: &Fake) -> Option<Response> {
    f.api_requests.fetch_add(1, Ordering::SeqCst);
    f.queries
        .lock()
        .unwrap()
        .push(format!("{}?{}", req.uri().path(), req.uri().query().unwrap_or("")));
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !f.valid_tokens.lock().unwrap().contains(bearer) {
        return Some(json_response(
            StatusCode::UNAUTHORIZED,
            api_fixture("api_error_401.json"),
        ));
    }
    if f.rate_limited.load(Ordering::SeqCst) > 0 {
        f.rate_limited.fetch_sub(1, Ordering::SeqCst);
        return Some(json_response(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": "too_many_requests"}),
        ));
    }
    None
}

fn page(items: Vec<Value>, q: &[(String, String)], size: usize) -> Value {
    let offset: usize = get(q, "page_token").and_then(|t| t.parse().ok()).unwrap_or(0);
    let end = (offset + size).min(items.len());
    let mut info = json!({"total_results": items.len(), "results_per_page": size});
    if end < items.len() {
        info["next_page_token"] = json!(end.to_string());
    }
    json!({"items": items[offset.min(end)..end].to_vec(), "page_info": info})
}

fn in_window(v: Option<i64>, q: &[(String, String)], from: &str, to: &str) -> bool {
    let (Some(a), Some(b)) = (
        get(q, from).and_then(|s| s.parse::<i64>().ok()),
        get(q, to).and_then(|s| s.parse::<i64>().ok()),
    ) else {
        return true;
    };
    v.is_some_and(|t| t >= a && t <= b)
}

#[handler]
async fn sales(req: &Request, Data(f): Data<&Arc<Fake>>) -> Response {
    if let Some(r) = gate(req, f) {
        return r;
    }
    let delay = f.sales_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let q = query(req);
    let statuses: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "transaction_status")
        .map(|(_, v)| v.as_str())
        .collect();
    if let Some(p) = f.refuse_parameter.lock().unwrap().clone() {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_parameter", "error_description": format!("The parameter {p} is not accepted")}),
        );
    }
    // Hotmart refuses values outside its documented list (REFERENCE §4.1).
    if let Some(bad) = statuses.iter().find(|s| !DOCUMENTED_SALE_STATUSES.contains(s)) {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_value_parameter", "error_description": format!("Invalid value {bad} for transaction_status")}),
        );
    }
    let items: Vec<Value> = f
        .sales
        .lock()
        .unwrap()
        .iter()
        .filter(|s| in_window(s["purchase"]["approved_date"].as_i64(), &q, "start_date", "end_date"))
        .filter(|s| {
            let st = s["purchase"]["status"].as_str().unwrap_or_default();
            // Hotmart's gotcha: without a status filter only approved and complete sales come back.
            if statuses.is_empty() {
                st == "APPROVED" || st == "COMPLETE"
            } else {
                statuses.contains(&st)
            }
        })
        .cloned()
        .collect();
    json_response(StatusCode::OK, page(items, &q, f.page_size.load(Ordering::SeqCst)))
}

#[handler]
fn subscriptions(req: &Request, Data(f): Data<&Arc<Fake>>) -> Response {
    if let Some(r) = gate(req, f) {
        return r;
    }
    let q = query(req);
    let items: Vec<Value> = f
        .subscriptions
        .lock()
        .unwrap()
        .iter()
        .filter(|s| in_window(s["accession_date"].as_i64(), &q, "accession_date", "end_accession_date"))
        // The fake takes a subscription's end of accession as its cancellation date.
        .filter(|s| {
            in_window(
                s["end_accession_date"].as_i64(),
                &q,
                "cancelation_date",
                "end_cancelation_date",
            )
        })
        .filter(|s| {
            in_window(
                s["date_next_charge"].as_i64(),
                &q,
                "date_next_charge",
                "end_date_next_charge",
            )
        })
        .filter(|s| get(&q, "subscriber_email").is_none_or(|e| s["subscriber"]["email"] == e))
        .filter(|s| {
            let id = &s["product"]["id"];
            let id = id.as_str().map(str::to_string).or(id.as_i64().map(|n| n.to_string()));
            get(&q, "product_id").is_none_or(|p| id.as_deref() == Some(p))
        })
        .cloned()
        .collect();
    json_response(StatusCode::OK, page(items, &q, f.page_size.load(Ordering::SeqCst)))
}

#[handler]
fn purchases(req: &Request, poem::web::Path(code): poem::web::Path<String>, Data(f): Data<&Arc<Fake>>) -> Response {
    if let Some(r) = gate(req, f) {
        return r;
    }
    let items = f.purchases.lock().unwrap().get(&code).cloned().unwrap_or_default();
    json_response(StatusCode::OK, Value::Array(items))
}

#[handler]
async fn action(
    req: &Request,
    poem::web::Path((code, verb)): poem::web::Path<(String, String)>,
    body: poem::Body,
    Data(f): Data<&Arc<Fake>>,
) -> Response {
    if let Some(r) = gate(req, f) {
        return r;
    }
    let body: Value = serde_json::from_slice(&body.into_vec().await.unwrap_or_default()).unwrap_or(Value::Null);
    let known = f
        .subscriptions
        .lock()
        .unwrap()
        .iter()
        .any(|s| s["subscriber_code"] == code.as_str());
    if !known {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "not_found", "error_description": "subscription not found"}),
        );
    }
    f.actions.lock().unwrap().push((verb.clone(), code.clone(), body));
    let status = if verb == "cancel" { "INACTIVE" } else { "ACTIVE" };
    json_response(
        StatusCode::OK,
        json!({"status": status, "subscriber_code": code, "date_next_charge": "2026-12-20 00:00:00"}),
    )
}

/// Starts the fake and returns it with its base URL.
pub async fn start() -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake::default());
    fake.expires_in.store(3600, Ordering::SeqCst);
    fake.page_size.store(500, Ordering::SeqCst);
    let app = Route::new()
        .at("/security/oauth/token", post(token))
        .at("/payments/api/v1/sales/history", poem::get(sales))
        .at("/payments/api/v1/subscriptions", poem::get(subscriptions))
        .at("/payments/api/v1/subscriptions/:code/purchases", poem::get(purchases))
        .at("/payments/api/v1/subscriptions/:code/:verb", post(action))
        .data(fake.clone());
    let acceptor = porteiro::http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = porteiro::http::local_addr(&acceptor).unwrap();
    tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
    });
    (fake, format!("http://{addr}"))
}

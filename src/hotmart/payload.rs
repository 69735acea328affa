//! Hotmart payloads, read leniently: fields move between events, numbers arrive as strings and
//! strings as numbers, `creation_date` is sometimes `creationDate`, dates are epoch-ms or ISO.
//! Only what a decision needs is strict, with a reason when it is missing.
use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::{EventKind, PaymentEvent};

pub use entity::status::Format;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn err(msg: impl Into<String>) -> ParseError {
    ParseError(msg.into())
}

/// What the receiver needs before storing: identity, type and time.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub event_id: String,
    pub event_type: String,
    pub occurred_at: Option<DateTime<Utc>>,
    pub is_test: bool,
}

/// The declared content type decides; without a usable one, the body's first byte does (some
/// proxies drop or rewrite the header of v1 postbacks).
pub fn detect_format(content_type: Option<&str>, body: &[u8]) -> Format {
    let ct = content_type.unwrap_or_default().to_ascii_lowercase();
    if ct.starts_with("application/x-www-form-urlencoded") {
        return Format::V1;
    }
    if ct.contains("json") {
        return Format::V2;
    }
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{' | b'[') | None => Format::V2,
        Some(_) => Format::V1,
    }
}

/// Hotmart's "send test" button uses product id 0 (`"00000"` in club events) and a fixed transaction.
const TEST_TRANSACTION: &str = "HP16015479281022";

fn is_test_product(id: Option<&str>) -> bool {
    id.is_some_and(|s| !s.is_empty() && s.trim_start_matches('0').is_empty())
}

fn envelope_of(ev: PaymentEvent) -> Envelope {
    Envelope {
        event_id: ev.event_id,
        event_type: ev.kind.as_str().to_string(),
        occurred_at: Some(ev.occurred_at),
        is_test: ev.is_test,
    }
}

/// What a verified delivery is, before it is stored: the body's own token (if any) and its
/// envelope, or why it cannot be read (no id, no event, a date that is no date…; such a
/// delivery is stored as `failed`, with the reason, for review and replay).
#[derive(Debug, Clone)]
pub struct Intake {
    pub body_hottok: Option<String>,
    pub envelope: Result<Envelope, ParseError>,
    /// The body with its personal fields masked (asked for, and there were some).
    pub minimised: Option<Vec<u8>>,
}

/// Reads a delivery once. `Err` only for bytes that are neither JSON nor a form: those are not
/// a delivery at all.
pub fn intake(format: Format, body: &[u8]) -> Result<Intake, ParseError> {
    intake_with(format, body, false)
}

/// [`intake`], masking the personal fields as well when `minimise` (read once for both).
pub fn intake_with(format: Format, body: &[u8], minimise: bool) -> Result<Intake, ParseError> {
    match format {
        Format::V2 => {
            let mut v: Value = serde_json::from_slice(body).map_err(|e| err(format!("body is not valid JSON: {e}")))?;
            let envelope = if v.is_object() {
                v2(&v).map(envelope_of)
            } else {
                Err(err("body must be a JSON object"))
            };
            let body_hottok = text(&v, &["hottok"]);
            let minimised = (minimise && super::personal::mask_json(&mut v)).then(|| v.to_string().into_bytes());
            Ok(Intake {
                body_hottok,
                envelope,
                minimised,
            })
        }
        Format::V1 => {
            let f = parse_form(body)?;
            Ok(Intake {
                body_hottok: f.get("hottok").cloned(),
                envelope: v1(&f).map(envelope_of),
                minimised: if minimise {
                    super::personal::minimise(format, body)
                } else {
                    None
                },
            })
        }
        Format::Api => Err(err("reconstructed events never arrive as webhooks")),
    }
}

/// The id an unreadable delivery is stored under: it has none of its own, so the (masked) body's
/// digest, and a redelivery is still one row.
pub fn unreadable_id(body: &[u8]) -> String {
    format!("unreadable-{}", hex::encode(&Sha256::digest(body)[..16]))
}

/// The body with every copy of `secret` (as is, and form-encoded) replaced by `***`: the Hottok
/// never reaches the disk in clear.
pub fn mask_secret(body: &[u8], secret: &str) -> Vec<u8> {
    fn replace(hay: &[u8], needle: &[u8]) -> Vec<u8> {
        if needle.is_empty() {
            return hay.to_vec();
        }
        // A vectorised search: this runs on every delivery's whole body before it is stored.
        let mut out = Vec::with_capacity(hay.len());
        let mut rest = 0;
        for at in memchr::memmem::find_iter(hay, needle) {
            out.extend_from_slice(&hay[rest..at]);
            out.extend_from_slice(b"***");
            rest = at + needle.len();
        }
        out.extend_from_slice(&hay[rest..]);
        out
    }
    let plain = replace(body, secret.as_bytes());
    let encoded: String = serde_urlencoded::to_string([("", secret)])
        .unwrap_or_default()
        .trim_start_matches('=')
        .to_string();
    if encoded != secret {
        replace(&plain, encoded.as_bytes())
    } else {
        plain
    }
}

/// Parses a stored body into a domain event. `fallback_time` is used only by v1 postbacks that
/// carry no date at all.
pub fn parse_event(format: Format, body: &[u8], fallback_time: DateTime<Utc>) -> Result<PaymentEvent, ParseError> {
    match format {
        Format::V2 => v2(&parse_json(body)?),
        Format::V1 => {
            let mut ev = v1(&parse_form(body)?)?;
            if ev.occurred_at.timestamp() == 0 {
                ev.occurred_at = fallback_time;
            }
            Ok(ev)
        }
        Format::Api => serde_json::from_slice(body).map_err(|e| err(format!("stored API event is unreadable: {e}"))),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ParseError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| err(format!("body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(err("body must be a JSON object"));
    }
    Ok(v)
}

fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, ParseError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| err(format!("body is not a valid form: {e}")))?;
    if pairs.is_empty() {
        return Err(err("form body is empty"));
    }
    Ok(pairs.into_iter().collect())
}

/// Follows a path of object keys and array indexes (`["line_items", "0", "product"]`).
fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| match cur {
        Value::Array(items) => k.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => cur.get(k),
    })
}

/// A string or a number, as text; empty strings, and strings with control characters (a NUL
/// cannot even be stored by PostgreSQL), count as absent.
fn text(v: &Value, path: &[&str]) -> Option<String> {
    match at(v, path)? {
        Value::String(s) if !s.trim().is_empty() && !s.chars().any(char::is_control) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn first_text(v: &Value, paths: &[&[&str]]) -> Option<String> {
    paths.iter().find_map(|p| text(v, p))
}

fn int(v: &Value, path: &[&str]) -> Option<i64> {
    match at(v, path)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn float(v: &Value, path: &[&str]) -> Option<f64> {
    match at(v, path)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Epoch milliseconds (integer, float or numeric string) or an ISO-8601 string.
fn time(v: &Value, path: &[&str]) -> Option<DateTime<Utc>> {
    match at(v, path)? {
        Value::Number(n) => n.as_f64().and_then(epoch),
        Value::String(s) => parse_time_str(s),
        _ => None,
    }
}

/// Hotmart dates are epoch milliseconds. A value that can only be seconds (a 2020s date in
/// seconds reads as January 1970 in milliseconds) is converted; anything outside 2000–2100 after
/// that is not a date we can trust, and reads as absent (the event then fails with its reason).
fn epoch(n: f64) -> Option<DateTime<Utc>> {
    const MS_2000: f64 = 946_684_800_000.0;
    const MS_2100: f64 = 4_102_444_800_000.0;
    if !n.is_finite() {
        return None;
    }
    let ms = if n.abs() < 1e11 { n * 1000.0 } else { n };
    if !(MS_2000..=MS_2100).contains(&ms) {
        return None;
    }
    Utc.timestamp_millis_opt(ms.round() as i64).single()
}

fn parse_time_str(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        return epoch(n);
    }
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.with_timezone(&Utc))
}

fn v2(v: &Value) -> Result<PaymentEvent, ParseError> {
    let event_id = text(v, &["id"]).ok_or_else(|| err("missing event id (\"id\")"))?;
    let event_name = text(v, &["event"]).ok_or_else(|| err("missing event name (\"event\")"))?;
    let occurred_at = time(v, &["creation_date"])
        .or_else(|| time(v, &["creationDate"]))
        .ok_or_else(|| err("missing creation_date"))?;
    let kind = EventKind::parse(&event_name);
    // Borrowed: a copy of the payload's largest subtree was a fifth of the webhook's parsing.
    let d = v.get("data").unwrap_or(&Value::Null);

    let mut ev = PaymentEvent::new(kind.clone(), event_id, occurred_at);
    match kind {
        EventKind::SubscriptionCancellation => {
            ev.product_id = text(d, &["product", "id"]);
            ev.product_name = text(d, &["product", "name"]);
            ev.buyer_email = text(d, &["subscriber", "email"]);
            ev.buyer_name = text(d, &["subscriber", "name"]);
            ev.subscriber_code = text(d, &["subscriber", "code"]);
            ev.plan_id = text(d, &["subscription", "plan", "id"]);
            ev.plan_name = text(d, &["subscription", "plan", "name"]);
            ev.next_charge_at = time(d, &["date_next_charge"]);
            ev.price = float(d, &["actual_recurrence_value"]);
        }
        EventKind::SwitchPlan => {
            let current = d
                .get("plans")
                .and_then(Value::as_array)
                .and_then(|ps| {
                    ps.iter()
                        .find(|p| p.get("current").and_then(Value::as_bool) == Some(true))
                })
                .unwrap_or(&Value::Null);
            ev.product_id = text(d, &["subscription", "product", "id"]);
            ev.product_name = text(d, &["subscription", "product", "name"]);
            ev.buyer_email = text(d, &["subscription", "user", "email"]);
            ev.subscriber_code = text(d, &["subscription", "subscriber_code"]);
            ev.plan_id = text(current, &["id"]);
            ev.plan_name = text(current, &["name"]);
            ev.offer_code = first_text(current, &[&["offer", "key"], &["offer", "code"]]);
            ev.next_charge_at = time(d, &["subscription", "date_next_charge"]);
            ev.status = text(d, &["subscription", "status"]);
        }
        EventKind::UpdateSubscriptionChargeDate => {
            ev.product_id = text(d, &["subscription", "product", "id"]);
            ev.product_name = text(d, &["subscription", "product", "name"]);
            ev.buyer_email = text(d, &["subscriber", "email"]);
            ev.buyer_name = text(d, &["subscriber", "name"]);
            ev.subscriber_code = text(d, &["subscriber", "code"]);
            ev.plan_id = text(d, &["plan", "id"]);
            ev.plan_name = text(d, &["plan", "name"]);
            ev.offer_code = text(d, &["plan", "offer", "code"]);
            ev.next_charge_at = time(d, &["subscription", "date_next_charge"]);
            ev.status = text(d, &["subscription", "status"]);
        }
        EventKind::ClubFirstAccess | EventKind::ClubModuleCompleted => {
            ev.product_id = text(d, &["product", "id"]);
            ev.product_name = text(d, &["product", "name"]);
            ev.buyer_email = text(d, &["user", "email"]);
            ev.buyer_name = text(d, &["user", "name"]);
        }
        EventKind::OrderFulfillment => {
            ev.transaction = text(d, &["purchase", "transaction"]);
            ev.product_id = text(d, &["line_items", "0", "product", "id"]);
            ev.status = text(d, &["purchase", "status"]);
        }
        EventKind::PurchaseOutOfShoppingCart => {
            ev.product_id = text(d, &["product", "id"]);
            ev.product_name = text(d, &["product", "name"]);
            ev.buyer_email = text(d, &["buyer", "email"]);
            ev.buyer_name = text(d, &["buyer", "name"]);
            ev.offer_code = text(d, &["offer", "code"]);
        }
        _ => {
            // The purchase family, and our best guess for event names we do not know yet.
            ev.transaction = text(d, &["purchase", "transaction"]);
            ev.product_id = text(d, &["product", "id"]);
            ev.product_name = text(d, &["product", "name"]);
            ev.buyer_email = text(d, &["buyer", "email"]);
            ev.buyer_name = text(d, &["buyer", "name"]);
            ev.subscriber_code = text(d, &["subscription", "subscriber", "code"]);
            ev.plan_id = text(d, &["subscription", "plan", "id"]);
            ev.plan_name = text(d, &["subscription", "plan", "name"]);
            ev.offer_code = text(d, &["purchase", "offer", "code"]);
            ev.recurrence_number = int(d, &["purchase", "recurrence_number"]);
            ev.approved_at = time(d, &["purchase", "approved_date"]);
            ev.next_charge_at = time(d, &["purchase", "date_next_charge"]);
            ev.price = float(d, &["purchase", "price", "value"]);
            ev.currency = text(d, &["purchase", "price", "currency_value"]);
            ev.payment_type = text(d, &["purchase", "payment", "type"]);
            ev.status = text(d, &["purchase", "status"]);
        }
    }
    ev.is_test = is_test_product(ev.product_id.as_deref()) || ev.transaction.as_deref() == Some(TEST_TRANSACTION);
    Ok(ev)
}

/// v1 statuses are lower-case and name the purchase state, not the event.
fn v1_kind(status: &str, callback_type: Option<&str>) -> EventKind {
    if callback_type == Some("2") {
        return EventKind::SubscriptionCancellation;
    }
    match status {
        "approved" => EventKind::PurchaseApproved,
        "completed" | "complete" => EventKind::PurchaseComplete,
        "canceled" | "cancelled" => EventKind::PurchaseCanceled,
        "refunded" => EventKind::PurchaseRefunded,
        "chargeback" => EventKind::PurchaseChargeback,
        "dispute" | "protested" => EventKind::PurchaseProtest,
        "expired" => EventKind::PurchaseExpired,
        "delayed" => EventKind::PurchaseDelayed,
        "billet_printed" | "printed_billet" => EventKind::PurchaseBilletPrinted,
        other => EventKind::Unsupported(format!("V1_{}", other.to_ascii_uppercase())),
    }
}

fn v1(f: &HashMap<String, String>) -> Result<PaymentEvent, ParseError> {
    let get = |k: &str| {
        f.get(k)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
    };
    let transaction = get("transaction").ok_or_else(|| err("v1 postback without a transaction"))?;
    let status = get("status")
        .ok_or_else(|| err("v1 postback without a status"))?
        .to_ascii_lowercase();
    let kind = v1_kind(&status, get("callback_type").as_deref());
    // v1 has no event id: the same transaction in the same status is the same event.
    let digest = Sha256::digest(format!("{transaction}:{status}:{}", kind.as_str()).as_bytes());
    let event_id = format!("v1-{}", &hex::encode(digest)[..32]);
    // v1 dates only the purchase: a later status (refund, dispute, cancellation) dated at the
    // purchase would sort before everything known of the sale and do nothing. Those are dated
    // when they arrive (the caller's fallback time) instead.
    let occurred_at = get("confirmation_purchase_date")
        .or_else(|| get("purchase_date"))
        .filter(|_| kind == EventKind::PurchaseApproved)
        .and_then(|s| parse_time_str(&s))
        .unwrap_or_else(|| Utc.timestamp_opt(0, 0).single().unwrap_or_default());
    let product_id = get("prod");
    Ok(PaymentEvent {
        kind,
        event_id,
        occurred_at,
        is_test: is_test_product(product_id.as_deref()) || transaction == TEST_TRANSACTION,
        transaction: Some(transaction),
        product_id,
        product_name: get("prod_name"),
        buyer_email: get("email"),
        buyer_name: get("name"),
        subscriber_code: get("subscriber_code"),
        plan_id: None,
        plan_name: get("name_subscription_plan"),
        offer_code: get("off"),
        recurrence_number: get("recurrency").and_then(|s| s.parse().ok()),
        approved_at: get("confirmation_purchase_date").and_then(|s| parse_time_str(&s)),
        next_charge_at: None,
        price: get("price").and_then(|s| s.parse().ok()),
        currency: get("currency"),
        payment_type: get("payment_type").map(|s| s.to_ascii_uppercase()),
        status: Some(status.to_ascii_uppercase()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The envelope of a delivery, or why there is none (not a delivery, or unreadable).
    fn envelope(format: Format, body: &[u8]) -> Result<Envelope, ParseError> {
        intake(format, body).and_then(|i| i.envelope)
    }

    #[test]
    fn reads_both_creation_date_spellings_and_string_product_ids() {
        let a = br#"{"id":"x","creationDate":1747900000000,"event":"CLUB_FIRST_ACCESS","data":{"product":{"id":"4100001"},"user":{"email":"A@B.com"}}}"#;
        let e = parse_event(Format::V2, a, Utc::now()).unwrap();
        assert_eq!(e.occurred_at.timestamp_millis(), 1747900000000);
        assert_eq!(e.product_id.as_deref(), Some("4100001"));
        assert!(!e.is_test);
    }

    #[test]
    fn test_events_are_recognised_by_product_zero() {
        let a = br#"{"id":"x","creation_date":1747900000000,"event":"PURCHASE_APPROVED","data":{"product":{"id":0},"purchase":{"transaction":"HP1"}}}"#;
        assert!(parse_event(Format::V2, a, Utc::now()).unwrap().is_test);
    }

    #[test]
    fn malformed_bodies_have_reasons() {
        assert!(envelope(Format::V2, b"{not json").unwrap_err().0.contains("JSON"));
        assert!(envelope(Format::V2, b"[1]").unwrap_err().0.contains("object"));
        assert!(
            envelope(Format::V2, br#"{"event":"X","creation_date":1}"#)
                .unwrap_err()
                .0
                .contains("id")
        );
        assert!(
            envelope(Format::V1, b"status=approved")
                .unwrap_err()
                .0
                .contains("transaction")
        );
    }

    #[test]
    fn the_format_follows_the_content_type_then_the_body() {
        assert_eq!(
            detect_format(Some("application/x-www-form-urlencoded; charset=UTF-8"), b"{"),
            Format::V1
        );
        assert_eq!(detect_format(Some("application/json"), b"a=b"), Format::V2);
        assert_eq!(detect_format(None, b"  {\"id\":1}"), Format::V2);
        assert_eq!(
            detect_format(Some("text/plain"), b"hottok=x&status=approved"),
            Format::V1
        );
    }

    #[test]
    fn dates_in_float_milliseconds_or_in_seconds_are_read_and_nonsense_is_absent() {
        let v: Value = serde_json::json!({
            "ms": 1747231245123i64, "float": 1747231245123.0, "secs": 1747231245,
            "secs_text": "1747231245", "neg": -1_000_000_000_000_000i64, "tiny": 5, "nan": "x"
        });
        let want = Utc.timestamp_millis_opt(1747231245123).unwrap();
        assert_eq!(time(&v, &["ms"]), Some(want));
        assert_eq!(time(&v, &["float"]), Some(want));
        assert_eq!(time(&v, &["secs"]).unwrap().timestamp(), 1747231245);
        assert_eq!(time(&v, &["secs_text"]).unwrap().timestamp(), 1747231245);
        assert_eq!(time(&v, &["neg"]), None);
        assert_eq!(time(&v, &["tiny"]), None);
        assert_eq!(time(&v, &["nan"]), None);
    }

    #[test]
    fn hottoks_are_masked_before_storage_plain_or_form_encoded() {
        let secret = "abc+def/123";
        let v1 = b"hottok=abc%2Bdef%2F123&transaction=HP1&status=approved";
        assert_eq!(mask_secret(v1, secret), b"hottok=***&transaction=HP1&status=approved");
        let v2 = br#"{"hottok":"abc+def/123","id":"x"}"#;
        assert_eq!(mask_secret(v2, secret), br#"{"hottok":"***","id":"x"}"#);
        // Every copy, back to back and at both ends, and no more than the copies.
        assert_eq!(mask_secret(b"TOKTOK-TOK", "TOK"), b"******-***");
        assert_eq!(mask_secret(b"TOTOK", "TOK"), b"TO***");
        assert_eq!(mask_secret(b"no secret here", "TOK"), b"no secret here");
    }

    #[test]
    fn unreadable_deliveries_are_told_apart_from_bytes_that_are_no_delivery() {
        assert!(intake(Format::V2, b"{not json").is_err());
        let no_id = br#"{"event":"PURCHASE_APPROVED","creation_date":1747900000000,"hottok":"T"}"#;
        let i = intake(Format::V2, no_id).unwrap();
        let reason = i.envelope.unwrap_err().0;
        assert!(reason.contains("id"), "{reason}");
        assert_eq!(i.body_hottok.as_deref(), Some("T"));
        let nul_id = br#"{"id":"a\u0000b","event":"PURCHASE_APPROVED","creation_date":1747900000000}"#;
        assert!(intake(Format::V2, nul_id).unwrap().envelope.is_err());
        let float_date = br#"{"id":"x","event":"PURCHASE_APPROVED","creation_date":-1e15}"#;
        assert!(intake(Format::V2, float_date).unwrap().envelope.is_err());
    }

    #[test]
    fn order_fulfillment_reads_the_first_line_item() {
        let body = include_str!("../../rules/fixtures/order_fulfillment.json");
        let ev = parse_event(Format::V2, body.as_bytes(), Utc::now()).unwrap();
        assert!(ev.product_id.is_some(), "line_items[0].product.id");
    }

    #[test]
    fn v1_status_changes_are_dated_when_they_arrive_not_at_the_purchase() {
        let arrived = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let body = b"transaction=HP1&status=refunded&prod=1&email=a%40b.com&purchase_date=2025-01-01T10:00:00Z";
        assert_eq!(parse_event(Format::V1, body, arrived).unwrap().occurred_at, arrived);
        let approved = b"transaction=HP1&status=approved&prod=1&email=a%40b.com&purchase_date=2025-01-01T10:00:00Z";
        let ev = parse_event(Format::V1, approved, arrived).unwrap();
        assert_eq!(ev.occurred_at.to_rfc3339(), "2025-01-01T10:00:00+00:00");
    }

    #[test]
    fn v1_ids_are_deterministic() {
        let body = b"transaction=HP1&status=approved&prod=1&email=a%40b.com";
        let a = envelope(Format::V1, body).unwrap();
        let b = envelope(Format::V1, body).unwrap();
        assert_eq!(a.event_id, b.event_id);
        let c = envelope(Format::V1, b"transaction=HP1&status=refunded&prod=1").unwrap();
        assert_ne!(a.event_id, c.event_id);
        assert_eq!(c.event_type, "PURCHASE_REFUNDED");
    }
}

/// The stored body with any Hottok inside it masked, for showing to admins (a body stored before
/// the Hottok was masked at the door may still hold one).
pub fn redacted_body(format: Format, body: &[u8]) -> String {
    const MASK: &str = "***";
    match format {
        Format::V1 => match serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) {
            Ok(pairs) => {
                let masked: Vec<(String, String)> = pairs
                    .into_iter()
                    .map(|(k, v)| {
                        if k.eq_ignore_ascii_case("hottok") {
                            (k, MASK.to_string())
                        } else {
                            (k, v)
                        }
                    })
                    .collect();
                serde_urlencoded::to_string(masked).unwrap_or_default()
            }
            Err(_) => String::from_utf8_lossy(body).into_owned(),
        },
        _ => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(mut m)) => {
                for (k, v) in &mut m {
                    if k.eq_ignore_ascii_case("hottok") {
                        *v = Value::String(MASK.into());
                    }
                }
                Value::Object(m).to_string()
            }
            // Not JSON we can read: show it only if no token could be inside.
            _ => {
                let text = String::from_utf8_lossy(body);
                if text.to_ascii_lowercase().contains("hottok") {
                    "(unreadable body containing a token, not shown)".into()
                } else {
                    text.into_owned()
                }
            }
        },
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn hottoks_inside_bodies_are_masked() {
        let v1 = redacted_body(Format::V1, b"hottok=SECRET123&transaction=HP1&status=approved");
        assert!(!v1.contains("SECRET123") && v1.contains("transaction=HP1"), "{v1}");
        let v2 = redacted_body(Format::V2, br#"{"id":"x","hottok":"SECRET123","data":{}}"#);
        assert!(!v2.contains("SECRET123") && v2.contains("\"id\":\"x\""), "{v2}");
        let broken = redacted_body(Format::V2, br#"{"hottok":"SECRET123""#);
        assert!(!broken.contains("SECRET123"));
    }
}

//! Personal data in Hotmart's payloads that access never needs (LGPD's minimisation): the
//! buyer's CPF/CNPJ, phones, address and IP, in v2 bodies and v1 forms. They are masked before a
//! delivery is written, unless the seller keeps them (`PORTEIRO_KEEP_PERSONAL_DATA`); e-mail,
//! name, transaction, product, subscription and dates stay, since access and support need them.
//! Erasing a buyer goes further: [`scrub`] also replaces their e-mail and names.
use serde_json::Value;

use entity::status::Format;

pub const MASK: &str = "***";

/// Whether a field holds personal data access does not need. Matched on the key anywhere in the
/// body, since Hotmart moves fields between events (buyer, subscriber, users, producer).
pub fn is_personal(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    matches!(
        k.as_str(),
        "doc"
            | "cpf"
            | "cnpj"
            | "ip"
            | "buyer_ip"
            | "zipcode"
            | "zip_code"
            | "zip"
            | "neighborhood"
            | "cell"
            | "dddcell"
            | "dddphone"
    ) || (k.contains("document") && !k.ends_with("_type"))
        || k.contains("phone")
        || k.starts_with("address")
}

/// Keys naming a person (erasure only: minimisation keeps them).
fn is_name(key: &str) -> bool {
    matches!(
        key.to_ascii_lowercase().as_str(),
        "name" | "first_name" | "last_name" | "trade_name" | "full_name"
    )
}

/// Objects whose `name` is a person's rather than a product's.
fn is_person(key: &str) -> bool {
    matches!(
        key.to_ascii_lowercase().as_str(),
        "buyer" | "subscriber" | "user" | "shopper" | "producer" | "affiliate" | "affiliates" | "users"
    )
}

/// Masks every value under `v`; whether one was not masked yet.
fn mask_all(v: &mut Value) -> bool {
    match v {
        Value::Object(m) => m.values_mut().fold(false, |changed, c| mask_all(c) | changed),
        Value::Array(a) => a.iter_mut().fold(false, |changed, c| mask_all(c) | changed),
        Value::Null => false,
        Value::String(s) if s == MASK => false,
        other => {
            *other = Value::String(MASK.into());
            true
        }
    }
}

/// Masks personal fields of a parsed v2 body in place; whether there was any.
pub fn mask_json(v: &mut Value) -> bool {
    let mut found = false;
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if is_personal(k) {
                    found |= mask_all(child);
                } else {
                    found |= mask_json(child);
                }
            }
        }
        Value::Array(a) => {
            for child in a {
                found |= mask_json(child);
            }
        }
        _ => {}
    }
    found
}

fn mask_pairs(pairs: &mut [(String, String)]) -> bool {
    let mut found = false;
    for (k, v) in pairs.iter_mut() {
        if is_personal(k) && !v.is_empty() && v != MASK {
            *v = MASK.into();
            found = true;
        }
    }
    found
}

/// The body with its personal fields masked, or `None` when it has none or cannot be read (a
/// body we cannot read is kept as received, for review).
pub fn minimise(format: Format, body: &[u8]) -> Option<Vec<u8>> {
    match format {
        Format::V2 => {
            let mut v: Value = serde_json::from_slice(body).ok()?;
            mask_json(&mut v).then(|| v.to_string().into_bytes())
        }
        Format::V1 => {
            let mut pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
            mask_pairs(&mut pairs).then(|| serde_urlencoded::to_string(&pairs).unwrap_or_default().into_bytes())
        }
        // Reconstructed from the REST API: holds only the fields Porteiro reads.
        Format::Api => None,
    }
}

/// Replaces every string equal to `email` (any case) by `pseudonym`, names of people by the mask.
fn scrub_json(v: &mut Value, email: &str, pseudonym: &str, in_person: bool) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if in_person && is_name(k) && child.is_string() {
                    *child = Value::String(MASK.into());
                } else {
                    scrub_json(child, email, pseudonym, is_person(k));
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| scrub_json(c, email, pseudonym, in_person)),
        Value::String(s) if s.trim().eq_ignore_ascii_case(email) => *s = pseudonym.to_string(),
        _ => {}
    }
}

/// A stored body with a person erased: their e-mail becomes `pseudonym`, names of people and
/// every personal field are masked. A body that cannot be read has the e-mail replaced where it
/// appears as bytes.
pub fn scrub(format: Format, body: &[u8], email: &str, pseudonym: &str) -> Vec<u8> {
    match format {
        Format::V2 | Format::Api => match serde_json::from_slice::<Value>(body) {
            Ok(mut v) => {
                mask_json(&mut v);
                scrub_json(&mut v, email, pseudonym, false);
                // The API's reconstructed events name the buyer at the top.
                if let (Format::Api, Value::Object(m)) = (format, &mut v)
                    && let Some(n) = m.get_mut("buyer_name")
                    && n.is_string()
                {
                    *n = Value::String(MASK.into());
                }
                v.to_string().into_bytes()
            }
            Err(_) => replace_ci(body, email, pseudonym),
        },
        Format::V1 => match serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) {
            Ok(mut pairs) => {
                mask_pairs(&mut pairs);
                for (k, v) in &mut pairs {
                    if v.trim().eq_ignore_ascii_case(email) {
                        *v = pseudonym.to_string();
                    } else if is_name(k) {
                        *v = MASK.into();
                    }
                }
                serde_urlencoded::to_string(&pairs).unwrap_or_default().into_bytes()
            }
            Err(_) => replace_ci(body, email, pseudonym),
        },
    }
}

/// `needle` replaced in `hay` whatever its case (e-mails are matched without case).
pub fn replace_ci(hay: &[u8], needle: &str, with: &str) -> Vec<u8> {
    let needle = needle.as_bytes();
    if needle.is_empty() || hay.len() < needle.len() {
        return hay.to_vec();
    }
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay.len() - i >= needle.len() && hay[i..i + needle.len()].eq_ignore_ascii_case(needle) {
            out.extend_from_slice(with.as_bytes());
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn personal_fields_are_masked_and_what_access_needs_is_kept() {
        let body = json!({
            "id": "e1", "event": "PURCHASE_APPROVED",
            "data": {
                "buyer": {
                    "email": "ana@example.com", "name": "Ana", "document": "123.456.789-09",
                    "document_type": "CPF", "checkout_phone": "11999990000", "checkout_phone_code": "11",
                    "address": {"zipcode": "01000-000", "city": "São Paulo", "number": 12}
                },
                "purchase": {"transaction": "HP1", "buyer_ip": "200.1.2.3"},
                "product": {"id": 1, "name": "Curso"},
                "subscription": {"subscriber": {"code": "S1", "phone": {"dddCell": "11", "cell": "9"}}}
            }
        })
        .to_string();
        let out: Value = serde_json::from_slice(&minimise(Format::V2, body.as_bytes()).unwrap()).unwrap();
        let b = &out["data"]["buyer"];
        assert_eq!(b["email"], "ana@example.com");
        assert_eq!(b["name"], "Ana");
        assert_eq!(b["document_type"], "CPF");
        assert_eq!(b["document"], MASK);
        assert_eq!(b["checkout_phone"], MASK);
        assert_eq!(b["address"]["city"], MASK);
        assert_eq!(b["address"]["number"], MASK);
        assert_eq!(out["data"]["purchase"]["buyer_ip"], MASK);
        assert_eq!(out["data"]["purchase"]["transaction"], "HP1");
        assert_eq!(out["data"]["subscription"]["subscriber"]["phone"]["cell"], MASK);
        assert_eq!(out["data"]["product"]["name"], "Curso");
        // Masked once, nothing left to mask.
        assert!(minimise(Format::V2, out.to_string().as_bytes()).is_none());
        assert!(minimise(Format::V2, br#"{"id":"x","data":{"buyer":{"email":"a@b.c"}}}"#).is_none());
        assert!(minimise(Format::V2, b"{not json").is_none());
    }

    #[test]
    fn v1_forms_are_masked_too() {
        let body = b"email=ana%40example.com&doc=12345678909&doc_type=CPF&phone_number=99999&address_city=Recife&producer_document=1&transaction=HP1";
        let out = String::from_utf8(minimise(Format::V1, body).unwrap()).unwrap();
        assert_eq!(
            out,
            "email=ana%40example.com&doc=***&doc_type=CPF&phone_number=***&address_city=***&producer_document=***&transaction=HP1"
        );
    }

    #[test]
    fn scrubbing_replaces_the_email_and_the_names_of_people_not_of_products() {
        let body = json!({
            "data": {
                "buyer": {"email": "Ana@Example.com", "name": "Ana Souza", "first_name": "Ana"},
                "subscription": {"subscriber": {"email": "ana@example.com", "name": "Ana Souza"}},
                "product": {"name": "Curso"}
            }
        })
        .to_string();
        let out = String::from_utf8(scrub(
            Format::V2,
            body.as_bytes(),
            "ana@example.com",
            "erased-1@erased.invalid",
        ))
        .unwrap();
        assert!(!out.to_lowercase().contains("ana"), "{out}");
        assert!(
            out.contains("Curso") && out.contains("erased-1@erased.invalid"),
            "{out}"
        );
        let v1 = scrub(
            Format::V1,
            b"email=ana%40example.com&name=Ana&prod=1",
            "ana@example.com",
            "p@erased.invalid",
        );
        assert_eq!(v1, b"email=p%40erased.invalid&name=***&prod=1");
        assert_eq!(replace_ci(b"x ANA@example.COM y", "ana@example.com", "p"), b"x p y");
    }
}

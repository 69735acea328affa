//! What the REST API says about past sales and subscriptions, turned into the same domain events
//! the webhook produces. Ids are deterministic, so running reconciliation twice adds nothing.
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::api::{ApiError, Credentials, HotmartApi, Sale, Subscription, SubscriptionPurchase};
use crate::domain::{EventKind, PaymentEvent};

/// Hotmart answers 502 on broad sales queries: ask in windows of this size.
const WINDOW_DAYS: i64 = 30;

/// How a long fetch tells the CLI (a progress bar) or nobody what it is doing.
pub trait Progress: Send + Sync {
    fn stage(&self, _name: &str) {}
    fn count(&self, _n: u64) {}
}

pub struct Silent;
impl Progress for Silent {}

/// What Hotmart says about a window, as domain events.
pub struct Snapshot {
    pub events: Vec<PaymentEvent>,
    pub sales_seen: usize,
    pub subscriptions_seen: usize,
}

fn windows(since: DateTime<Utc>, until: DateTime<Utc>) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut start = since;
    while start < until {
        let end = (start + Duration::days(WINDOW_DAYS)).min(until);
        out.push((start.timestamp_millis(), end.timestamp_millis()));
        start = end + Duration::milliseconds(1);
    }
    out
}

/// Pulls sales (every status) and subscriptions started in the window, and each subscription's
/// charges to know which transaction belongs to which subscriber. The payload types stay here.
pub async fn fetch(
    api: &HotmartApi,
    creds: &Credentials,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    progress: &dyn Progress,
) -> Result<Snapshot, ApiError> {
    progress.stage("sales");
    let mut sales = Vec::new();
    for (a, b) in windows(since, until) {
        let base = sales.len() as u64;
        sales.extend(
            api.sales_history(creds, a, b, |n| progress.count(base + n as u64))
                .await?,
        );
    }
    progress.stage("subscriptions");
    let mut subs = Vec::new();
    for (a, b) in windows(since, until) {
        let base = subs.len() as u64;
        subs.extend(
            api.subscriptions(creds, a, b, |n| progress.count(base + n as u64))
                .await?,
        );
    }
    progress.stage("subscription charges");
    let mut purchases = HashMap::new();
    for (i, s) in subs.iter().enumerate() {
        purchases.insert(
            s.subscriber_code.clone(),
            api.subscription_purchases(creds, &s.subscriber_code).await?,
        );
        progress.count(i as u64 + 1);
    }
    let index = subscriber_index(&subs, &purchases);
    let mut events = sale_events(&sales, &index);
    events.extend(subscription_events(&subs));
    let mut seen = HashSet::new();
    events.retain(|e| seen.insert(e.event_id.clone()));
    Ok(Snapshot {
        events,
        sales_seen: sales.len(),
        subscriptions_seen: subs.len(),
    })
}

fn ms(t: Option<i64>) -> Option<DateTime<Utc>> {
    t.and_then(|ms| Utc.timestamp_millis_opt(ms).single())
}

/// REST spellings (and their webhook twins) to the event that status corresponds to.
fn kind_of_sale_status(status: &str) -> Option<EventKind> {
    Some(match status.to_ascii_uppercase().as_str() {
        "APPROVED" => EventKind::PurchaseApproved,
        "COMPLETE" | "COMPLETED" => EventKind::PurchaseComplete,
        "REFUNDED" => EventKind::PurchaseRefunded,
        "CHARGEBACK" => EventKind::PurchaseChargeback,
        "PROTESTED" | "DISPUTE" => EventKind::PurchaseProtest,
        "CANCELLED" | "CANCELED" => EventKind::PurchaseCanceled,
        "EXPIRED" => EventKind::PurchaseExpired,
        "DELAYED" => EventKind::PurchaseDelayed,
        _ => return None,
    })
}

/// Which subscription (and Hotmart plan) each transaction belongs to.
fn subscriber_index(
    subs: &[Subscription],
    purchases: &HashMap<String, Vec<SubscriptionPurchase>>,
) -> HashMap<String, (String, Option<String>)> {
    let mut idx = HashMap::new();
    for s in subs {
        let plan = s.plan.as_ref().and_then(|p| p.id.clone());
        if let Some(t) = &s.transaction {
            idx.insert(t.clone(), (s.subscriber_code.clone(), plan.clone()));
        }
        for p in purchases.get(&s.subscriber_code).into_iter().flatten() {
            idx.insert(p.transaction.clone(), (s.subscriber_code.clone(), plan.clone()));
        }
    }
    idx
}

/// One event per sale, in the state Hotmart reports now. Refunds and chargebacks carry the sale's
/// own time: the precedence rules make them win over the approval of the same transaction.
fn sale_events(sales: &[Sale], subscribers: &HashMap<String, (String, Option<String>)>) -> Vec<PaymentEvent> {
    let mut out = Vec::new();
    for s in sales {
        let p = &s.purchase;
        let Some(kind) = kind_of_sale_status(&p.status) else {
            continue;
        };
        let Some(at) = ms(p.approved_date).or(ms(p.order_date)) else {
            continue;
        };
        let mut ev = PaymentEvent::new(kind.clone(), format!("api:{}:{}", p.transaction, kind.as_str()), at);
        ev.transaction = Some(p.transaction.clone());
        ev.product_id = s.product.as_ref().and_then(|x| x.id.clone());
        ev.product_name = s.product.as_ref().and_then(|x| x.name.clone());
        ev.buyer_email = s.buyer.as_ref().and_then(|b| b.email.clone());
        ev.buyer_name = s.buyer.as_ref().and_then(|b| b.name.clone());
        if let Some((code, plan)) = subscribers.get(&p.transaction) {
            ev.subscriber_code = Some(code.clone());
            ev.plan_id = plan.clone();
        }
        ev.offer_code = p.offer.as_ref().and_then(|o| o.code.clone());
        ev.recurrence_number = p.recurrency_number;
        ev.approved_at = ms(p.approved_date);
        ev.price = p.price.as_ref().and_then(|m| m.value);
        ev.currency = p.price.as_ref().and_then(|m| m.currency_code.clone());
        ev.payment_type = p.payment.as_ref().and_then(|x| x.kind.clone());
        ev.status = Some(p.status.clone());
        ev.is_test = ev
            .product_id
            .as_deref()
            .is_some_and(|id| id.trim_start_matches('0').is_empty());
        out.push(ev);
    }
    out
}

/// A cancellation for each cancelled subscription: access runs until its next charge date.
fn subscription_events(subs: &[Subscription]) -> Vec<PaymentEvent> {
    let mut out = Vec::new();
    for s in subs
        .iter()
        .filter(|s| s.status.to_ascii_uppercase().starts_with("CANCEL"))
    {
        let Some(at) = ms(s.end_accession_date)
            .or(ms(s.date_next_charge))
            .or(ms(s.request_date))
        else {
            continue;
        };
        let id = format!(
            "api:{}:{}:{}",
            s.subscriber_code,
            EventKind::SubscriptionCancellation.as_str(),
            at.timestamp_millis()
        );
        let mut ev = PaymentEvent::new(EventKind::SubscriptionCancellation, id, at);
        ev.subscriber_code = Some(s.subscriber_code.clone());
        ev.product_id = s.product.as_ref().and_then(|x| x.id.clone());
        ev.product_name = s.product.as_ref().and_then(|x| x.name.clone());
        ev.plan_id = s.plan.as_ref().and_then(|x| x.id.clone());
        ev.plan_name = s.plan.as_ref().and_then(|x| x.name.clone());
        ev.buyer_email = s.subscriber.as_ref().and_then(|b| b.email.clone());
        ev.buyer_name = s.subscriber.as_ref().and_then(|b| b.name.clone());
        ev.next_charge_at = ms(s.date_next_charge);
        ev.status = Some(s.status.clone());
        out.push(ev);
    }
    out
}

//! What the REST API says about past sales and subscriptions, turned into the same domain events
//! the webhook produces. Ids are deterministic, so running reconciliation twice adds nothing.
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::api::{ApiError, Credentials, HotmartApi, Sale, Subscription, SubscriptionPurchase};
use crate::domain::{EventKind, PaymentEvent};
use entity::status::RunStage;

/// Hotmart answers 502 on broad sales queries: ask in windows of this size.
const WINDOW_DAYS: i64 = 30;

/// How a long fetch tells the CLI (a progress bar) or nobody what it is doing.
pub trait Progress: Send + Sync {
    fn stage(&self, _stage: RunStage) {}
    fn count(&self, _n: u64) {}
}

pub struct Silent;
impl Progress for Silent {}

/// What Hotmart says about a window, as domain events.
pub struct Snapshot {
    pub events: Vec<PaymentEvent>,
    pub sales_seen: usize,
    pub subscriptions_seen: usize,
    /// Transactions Hotmart marks as subscription charges whose subscription was not found.
    pub unresolved_subscription_sales: Vec<String>,
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

/// How far ahead of the window a next charge may lie for its subscription to matter: a yearly
/// plan paid inside the window is due up to a year later.
const NEXT_CHARGE_HORIZON_DAYS: i64 = 400;

/// Pulls sales (every status) of the window, and every subscription they or the window touch:
/// started, cancelled or due in it (not only started: renewals of older subscriptions must join
/// their subscription), plus each subscription's charges to map transactions to subscriber codes.
/// A sale Hotmart marks as a subscription whose code cannot be found is left out (and counted),
/// never given a one-off source of its own. The payload types stay here.
pub async fn fetch(
    api: &HotmartApi,
    creds: &Credentials,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    progress: &dyn Progress,
) -> Result<Snapshot, ApiError> {
    progress.stage(RunStage::Sales);
    let mut sales = Vec::new();
    for (a, b) in windows(since, until) {
        let base = sales.len() as u64;
        sales.extend(
            api.sales_history(creds, a, b, |n| progress.count(base + n as u64))
                .await?,
        );
    }
    progress.stage(RunStage::Subscriptions);
    let mut subs: Vec<Subscription> = Vec::new();
    let mut known_codes = HashSet::new();
    let mut add = |found: Vec<Subscription>, subs: &mut Vec<Subscription>| {
        for s in found {
            if known_codes.insert(s.subscriber_code.clone()) {
                subs.push(s);
            }
        }
    };
    for (a, b) in windows(since, until) {
        for (from, to) in [
            ("accession_date", "end_accession_date"),
            ("cancelation_date", "end_cancelation_date"),
        ] {
            let base = subs.len() as u64;
            let found = api
                .subscriptions(creds, &[(from, a.to_string()), (to, b.to_string())], |n| {
                    progress.count(base + n as u64);
                })
                .await?;
            add(found, &mut subs);
        }
    }
    let horizon = (until + Duration::days(NEXT_CHARGE_HORIZON_DAYS)).timestamp_millis();
    let due = api
        .subscriptions(
            creds,
            &[
                ("date_next_charge", since.timestamp_millis().to_string()),
                ("end_date_next_charge", horizon.to_string()),
            ],
            |_| {},
        )
        .await?;
    add(due, &mut subs);
    progress.stage(RunStage::SubscriptionCharges);
    let mut purchases = HashMap::new();
    for (i, s) in subs.iter().enumerate() {
        purchases.insert(
            s.subscriber_code.clone(),
            api.subscription_purchases(creds, &s.subscriber_code).await?,
        );
        progress.count(i as u64 + 1);
    }
    let mut index = subscriber_index(&subs, &purchases);
    // Subscription sales still without a code: ask by buyer and product, once per pair.
    let mut asked = HashSet::new();
    for sale in sales.iter().filter(|s| s.purchase.is_subscription) {
        if index.contains_key(&sale.purchase.transaction) {
            continue;
        }
        let email = sale.buyer.as_ref().and_then(|b| b.email.clone()).unwrap_or_default();
        let product = sale.product.as_ref().and_then(|p| p.id.clone()).unwrap_or_default();
        if email.is_empty() || !asked.insert((email.clone(), product.clone())) {
            continue;
        }
        let mut filter = vec![("subscriber_email", email)];
        if !product.is_empty() {
            filter.push(("product_id", product));
        }
        let found = api.subscriptions(creds, &filter, |_| {}).await?;
        for s in found {
            if purchases.contains_key(&s.subscriber_code) {
                continue;
            }
            purchases.insert(
                s.subscriber_code.clone(),
                api.subscription_purchases(creds, &s.subscriber_code).await?,
            );
            subs.push(s);
        }
        index = subscriber_index(&subs, &purchases);
    }
    let (mut events, unresolved) = sale_events(&sales, &index);
    events.extend(subscription_events(&subs));
    let mut seen = HashSet::new();
    events.retain(|e| seen.insert(e.event_id.clone()));
    Ok(Snapshot {
        events,
        sales_seen: sales.len(),
        subscriptions_seen: subs.len(),
        unresolved_subscription_sales: unresolved,
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

/// One event per sale, in the state Hotmart reports now, dated at the sale (the reconciler moves
/// status changes after what is already known of the transaction). Subscription charges whose
/// subscription is unknown are returned apart, by transaction.
fn sale_events(
    sales: &[Sale],
    subscribers: &HashMap<String, (String, Option<String>)>,
) -> (Vec<PaymentEvent>, Vec<String>) {
    let mut out = Vec::new();
    let mut unresolved = Vec::new();
    for s in sales {
        let p = &s.purchase;
        let Some(kind) = kind_of_sale_status(&p.status) else {
            continue;
        };
        if p.is_subscription && !subscribers.contains_key(&p.transaction) {
            unresolved.push(p.transaction.clone());
            continue;
        }
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
    (out, unresolved)
}

/// Statuses of a subscription that has ended: cancelled (any spelling), never paid (INACTIVE),
/// run out of charges (OVERDUE), expired.
fn has_ended(status: &str) -> bool {
    let s = status.to_ascii_uppercase();
    s.starts_with("CANCEL") || matches!(s.as_str(), "INACTIVE" | "OVERDUE" | "EXPIRED")
}

/// A cancellation for each subscription that has ended: access runs until its paid-through date
/// (`date_next_charge`, the last day of access for an ended subscription), or ends now without it.
fn subscription_events(subs: &[Subscription]) -> Vec<PaymentEvent> {
    let mut out = Vec::new();
    for s in subs.iter().filter(|s| has_ended(&s.status)) {
        let Some(at) = ms(s.end_accession_date)
            .or(ms(s.request_date))
            .or(ms(s.date_next_charge))
        else {
            continue;
        };
        let id = format!(
            "api:{}:{}:{}:{}",
            s.subscriber_code,
            EventKind::SubscriptionCancellation.as_str(),
            s.status.to_ascii_uppercase(),
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

//! What the REST API says about past sales and subscriptions, turned into the same domain events
//! the webhook produces. Ids are deterministic, so running reconciliation twice adds nothing.
use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};

use super::api::{Sale, Subscription, SubscriptionPurchase};
use crate::domain::{EventKind, PaymentEvent};

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
pub fn subscriber_index(
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
pub fn sale_events(sales: &[Sale], subscribers: &HashMap<String, (String, Option<String>)>) -> Vec<PaymentEvent> {
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
pub fn subscription_events(subs: &[Subscription]) -> Vec<PaymentEvent> {
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

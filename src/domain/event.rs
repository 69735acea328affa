use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The closed set of events we understand, with an explicit case for everything else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    PurchaseApproved,
    PurchaseComplete,
    PurchaseCanceled,
    PurchaseRefunded,
    PurchaseChargeback,
    PurchaseProtest,
    PurchaseExpired,
    PurchaseDelayed,
    PurchaseBilletPrinted,
    PurchaseOutOfShoppingCart,
    SubscriptionCancellation,
    SwitchPlan,
    UpdateSubscriptionChargeDate,
    ClubFirstAccess,
    ClubModuleCompleted,
    OrderFulfillment,
    Unsupported(String),
}

impl EventKind {
    pub const KNOWN: [EventKind; 16] = [
        EventKind::PurchaseApproved,
        EventKind::PurchaseComplete,
        EventKind::PurchaseCanceled,
        EventKind::PurchaseRefunded,
        EventKind::PurchaseChargeback,
        EventKind::PurchaseProtest,
        EventKind::PurchaseExpired,
        EventKind::PurchaseDelayed,
        EventKind::PurchaseBilletPrinted,
        EventKind::PurchaseOutOfShoppingCart,
        EventKind::SubscriptionCancellation,
        EventKind::SwitchPlan,
        EventKind::UpdateSubscriptionChargeDate,
        EventKind::ClubFirstAccess,
        EventKind::ClubModuleCompleted,
        EventKind::OrderFulfillment,
    ];

    /// The event type name, as Hotmart spells it; also the key rule scripts are stored under.
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::PurchaseApproved => "PURCHASE_APPROVED",
            EventKind::PurchaseComplete => "PURCHASE_COMPLETE",
            EventKind::PurchaseCanceled => "PURCHASE_CANCELED",
            EventKind::PurchaseRefunded => "PURCHASE_REFUNDED",
            EventKind::PurchaseChargeback => "PURCHASE_CHARGEBACK",
            EventKind::PurchaseProtest => "PURCHASE_PROTEST",
            EventKind::PurchaseExpired => "PURCHASE_EXPIRED",
            EventKind::PurchaseDelayed => "PURCHASE_DELAYED",
            EventKind::PurchaseBilletPrinted => "PURCHASE_BILLET_PRINTED",
            EventKind::PurchaseOutOfShoppingCart => "PURCHASE_OUT_OF_SHOPPING_CART",
            EventKind::SubscriptionCancellation => "SUBSCRIPTION_CANCELLATION",
            EventKind::SwitchPlan => "SWITCH_PLAN",
            EventKind::UpdateSubscriptionChargeDate => "UPDATE_SUBSCRIPTION_CHARGE_DATE",
            EventKind::ClubFirstAccess => "CLUB_FIRST_ACCESS",
            EventKind::ClubModuleCompleted => "CLUB_MODULE_COMPLETED",
            EventKind::OrderFulfillment => "ORDER_FULFILLMENT",
            EventKind::Unsupported(s) => s,
        }
    }

    pub fn parse(s: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|k| k.as_str() == s)
            .cloned()
            .unwrap_or_else(|| EventKind::Unsupported(s.to_string()))
    }

    /// Whether the rules are asked about this event at all. Everything else is recorded and ignored
    /// with a reason, without running a script.
    pub fn concerns_access(&self) -> bool {
        matches!(
            self,
            EventKind::PurchaseApproved
                | EventKind::PurchaseComplete
                | EventKind::PurchaseCanceled
                | EventKind::PurchaseRefunded
                | EventKind::PurchaseChargeback
                | EventKind::PurchaseProtest
                | EventKind::PurchaseExpired
                | EventKind::PurchaseDelayed
                | EventKind::SubscriptionCancellation
                | EventKind::SwitchPlan
        )
    }
}

/// One payment-side happening, whatever provider or payload version it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentEvent {
    pub kind: EventKind,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub is_test: bool,
    pub transaction: Option<String>,
    pub product_id: Option<String>,
    pub product_name: Option<String>,
    pub buyer_email: Option<String>,
    pub buyer_name: Option<String>,
    pub subscriber_code: Option<String>,
    pub plan_id: Option<String>,
    pub plan_name: Option<String>,
    pub offer_code: Option<String>,
    pub recurrence_number: Option<i64>,
    pub approved_at: Option<DateTime<Utc>>,
    pub next_charge_at: Option<DateTime<Utc>>,
    pub price: Option<f64>,
    pub currency: Option<String>,
    pub payment_type: Option<String>,
    /// The purchase status as sent, both spellings accepted upstream; informational only.
    pub status: Option<String>,
}

impl PaymentEvent {
    /// An event with only its identity known; readers fill in what their payload has.
    pub fn new(kind: EventKind, event_id: String, occurred_at: DateTime<Utc>) -> Self {
        PaymentEvent {
            kind,
            event_id,
            occurred_at,
            is_test: false,
            transaction: None,
            product_id: None,
            product_name: None,
            buyer_email: None,
            buyer_name: None,
            subscriber_code: None,
            plan_id: None,
            plan_name: None,
            offer_code: None,
            recurrence_number: None,
            approved_at: None,
            next_charge_at: None,
            price: None,
            currency: None,
            payment_type: None,
            status: None,
        }
    }

    /// A subscription's access follows its subscriber code across renewals; a one-off purchase
    /// follows its transaction.
    pub fn source_key(&self) -> Option<String> {
        if let Some(code) = &self.subscriber_code {
            return Some(format!("sub:{code}"));
        }
        self.transaction.as_ref().map(|t| format!("txn:{t}"))
    }
}

/// What a rule script decided, from a closed vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Decision {
    /// Give access, open-ended or until a time.
    Grant {
        until: Option<DateTime<Utc>>,
    },
    /// Take access away now (`at` = None) or let it lapse at a time.
    Revoke {
        at: Option<DateTime<Utc>>,
    },
    Suspend,
    Ignore {
        reason: String,
    },
}

impl Decision {
    /// What it does, without its time or reason: grant, revoke, suspend or ignore.
    pub fn action(&self) -> &'static str {
        match self {
            Decision::Grant { .. } => "grant",
            Decision::Revoke { .. } => "revoke",
            Decision::Suspend => "suspend",
            Decision::Ignore { .. } => "ignore",
        }
    }

    pub fn label(&self) -> String {
        match self {
            Decision::Grant { until: None } => "grant".into(),
            Decision::Grant { until: Some(t) } => format!("grant until {}", super::timestamp(*t)),
            Decision::Revoke { at: None } => "revoke".into(),
            Decision::Revoke { at: Some(t) } => format!("revoke at {}", super::timestamp(*t)),
            Decision::Suspend => "suspend".into(),
            Decision::Ignore { reason } => format!("ignore: {reason}"),
        }
    }
}

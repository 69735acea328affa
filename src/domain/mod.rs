//! Provider-neutral types: what a payment event means and what the rules decided, with no trace of
//! Hotmart's field spellings or of the database.
mod access;
mod email;
mod event;

pub use access::{Effect, Fact, Projection, project, sorted};
pub use email::Email;
pub use event::{Decision, EventKind, PaymentEvent};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Package,
    Plan,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Package => "package",
            TargetKind::Plan => "plan",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "package" => Some(TargetKind::Package),
            "plan" => Some(TargetKind::Plan),
            _ => None,
        }
    }
}

/// What a product id resolved to: one package or one plan of the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub kind: TargetKind,
    pub id: i32,
    pub name: String,
    /// Packages only: `None` means lifetime access.
    pub access_days: Option<i32>,
    /// Plans only: days one charge covers when Hotmart omits the next charge date.
    pub period_days: Option<i32>,
    /// Plans only: days of access kept past a charge date that was not paid.
    pub grace_days: Option<i32>,
    /// The admin's stable key, if any.
    #[serde(default)]
    pub key: Option<String>,
}

impl Target {
    pub fn package(id: i32, name: &str, access_days: Option<i32>) -> Self {
        Target {
            kind: TargetKind::Package,
            id,
            name: name.to_string(),
            access_days,
            period_days: None,
            grace_days: None,
            key: None,
        }
    }

    pub fn with_key(mut self, key: Option<String>) -> Self {
        self.key = key;
        self
    }

    pub fn plan(id: i32, name: &str, period_days: i32, grace_days: i32) -> Self {
        Target {
            kind: TargetKind::Plan,
            id,
            name: name.to_string(),
            access_days: None,
            period_days: Some(period_days),
            grace_days: Some(grace_days),
            key: None,
        }
    }

    /// What one paid charge covers when the rule did not say: for a plan, up to the next charge
    /// (or the approval plus the plan's period) plus the grace; never open-ended.
    pub fn paid_through(&self, ev: &PaymentEvent) -> Option<chrono::DateTime<chrono::Utc>> {
        let start = ev.approved_at.unwrap_or(ev.occurred_at);
        match self.kind {
            TargetKind::Package => self.access_days.map(|d| start + chrono::Duration::days(d.into())),
            TargetKind::Plan => {
                let period = chrono::Duration::days(self.period_days.unwrap_or(DEFAULT_PERIOD_DAYS).into());
                let grace = chrono::Duration::days(self.grace_days.unwrap_or(DEFAULT_GRACE_DAYS).into());
                Some(ev.next_charge_at.unwrap_or(start + period) + grace)
            }
        }
    }
}

/// A moment as Porteiro writes it everywhere (REST, GraphQL, notifications, explanations):
/// RFC 3339, UTC with `Z`, milliseconds.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub const DEFAULT_PERIOD_DAYS: i32 = 30;
pub const DEFAULT_GRACE_DAYS: i32 = 3;

/// The fact a rule's decision on an event adds to the event's source, if any.
pub fn fact_of(
    ev: &PaymentEvent,
    target: &Target,
    decision: &Decision,
    event_row: i32,
    rule_version: Option<i32>,
) -> Option<Fact> {
    let (effect, until) = match decision {
        Decision::Grant { .. } if ev.kind == EventKind::SwitchPlan => (Effect::Move, None),
        // A plan's grant is never open-ended: without an explicit end it covers the charge.
        Decision::Grant { until: None } if target.kind == TargetKind::Plan => (Effect::Paid, target.paid_through(ev)),
        Decision::Grant { until } => (Effect::Paid, *until),
        Decision::Revoke { at: Some(t) } => (Effect::EndBy, Some(*t)),
        Decision::Revoke { at: None } => (Effect::Terminate, None),
        Decision::Suspend => (Effect::Suspend, None),
        Decision::Ignore { .. } => return None,
    };
    Some(Fact {
        effect,
        occurred_at: ev.occurred_at,
        // A charge covers from its approval, whichever event reports it.
        paid_at: ev.approved_at.filter(|p| effect == Effect::Paid && *p < ev.occurred_at),
        key: ev.event_id.clone(),
        event_type: ev.kind.as_str().to_string(),
        transaction: ev.transaction.clone(),
        until,
        email: ev
            .buyer_email
            .as_deref()
            .and_then(|e| Email::parse(e).ok())
            .map(|e| e.as_str().to_string()),
        target: (target.kind, target.id),
        event_row,
        rule_version,
        reason: decision.label(),
    })
}

pub use entity::status::{EntitlementStatus, Term};

/// A holding's subscription state, as apps read it (REST, GraphQL, notifications alike), from
/// its status as of now and its term. Each flag implies access is live, so none contradicts
/// `expiresAt`: past the end every flag is false.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionState {
    /// Active, and the next charge of its plan will extend it.
    pub will_renew: bool,
    /// The subscription was cancelled; access lasts until `expiresAt` (what was paid for).
    pub cancel_at_period_end: bool,
    /// A renewal charge failed; access lasts until `expiresAt` (the grace) unless one is paid.
    pub in_grace: bool,
    /// A dispute holds it until its transaction is settled.
    pub suspended: bool,
}

impl SubscriptionState {
    /// `status` as of now ([`EntitlementStatus::effective`]).
    pub fn of(status: EntitlementStatus, term: Term) -> Self {
        let live = matches!(status, EntitlementStatus::Active | EntitlementStatus::Suspended);
        SubscriptionState {
            will_renew: status == EntitlementStatus::Active && term == Term::Renews,
            cancel_at_period_end: live && term == Term::Cancelled,
            in_grace: live && term == Term::Delayed,
            suspended: status == EntitlementStatus::Suspended,
        }
    }
}

#[cfg(test)]
mod status_tests {
    use entity::status::{DeliveryStatus, EntitlementStatus, Format, InboxStatus, RunStage, RunStatus};
    use sea_orm::ActiveEnum;

    /// Each closed column reads back every value it lists, and nothing else.
    fn round_trips<T: ActiveEnum<Value = String> + PartialEq + std::fmt::Debug>(
        all: &[&str],
        parse: fn(&str) -> Option<T>,
    ) {
        for s in all {
            let v = T::try_from_value(&(*s).to_string()).unwrap();
            assert_eq!(v.to_value(), *s);
            assert_eq!(parse(s), Some(v));
        }
        assert!(T::try_from_value(&"no-such-value".to_string()).is_err());
    }

    #[test]
    fn every_stored_value_reads_back_and_an_unknown_one_is_an_error() {
        round_trips(InboxStatus::ALL, |s| InboxStatus::parse(s).ok());
        round_trips(Format::ALL, |s| Format::parse(s).ok());
        round_trips(RunStatus::ALL, |s| RunStatus::parse(s).ok());
        round_trips(RunStage::ALL, |s| RunStage::parse(s).ok());
        round_trips(DeliveryStatus::ALL, |s| DeliveryStatus::parse(s).ok());
        round_trips(EntitlementStatus::ALL, |s| EntitlementStatus::parse(s).ok());
        round_trips(entity::status::Term::ALL, |s| entity::status::Term::parse(s).ok());
        // One casing per column, as stored: another casing is another value.
        assert!(InboxStatus::try_from_value(&"PENDING".to_string()).is_err());
        let e = EntitlementStatus::parse("GONE").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"GONE\" is not a valid entitlement status (one of ACTIVE, SUSPENDED, REVOKED, EXPIRED)"
        );
    }
}

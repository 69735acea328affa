//! Provider-neutral types: what a payment event means and what the rules decided, with no trace of
//! Hotmart's field spellings or of the database.
mod access;
mod email;
mod event;

pub use access::{AccessState, SourceEvent, compute_access, precedence};
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EntitlementStatus {
    Active,
    Suspended,
    Revoked,
    Expired,
}

impl EntitlementStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EntitlementStatus::Active => "ACTIVE",
            EntitlementStatus::Suspended => "SUSPENDED",
            EntitlementStatus::Revoked => "REVOKED",
            EntitlementStatus::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "ACTIVE" => EntitlementStatus::Active,
            "SUSPENDED" => EntitlementStatus::Suspended,
            "EXPIRED" => EntitlementStatus::Expired,
            _ => EntitlementStatus::Revoked,
        }
    }

    /// Expiry is evaluated when read, so no sweeper is needed for correctness.
    pub fn effective(
        self,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        match (self, expires_at) {
            (EntitlementStatus::Active, Some(t)) if t <= now => EntitlementStatus::Expired,
            (s, _) => s,
        }
    }
}

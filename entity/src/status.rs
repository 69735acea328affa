//! The closed vocabularies of the status columns. Each is stored as the string it always was (no
//! data migration), and a value outside its list is an error when read, never a default.
use sea_orm::entity::prelude::*;

/// A stored or given value outside a closed list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind} (one of {})", known.join(", "))]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
    pub known: &'static [&'static str],
}

macro_rules! closed {
    ($(#[$m:meta])* $name:ident ($kind:literal) { $($(#[$vm:meta])* $v:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Serialize, serde::Deserialize)]
        #[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
        pub enum $name {
            $($(#[$vm])* #[sea_orm(string_value = $s)] #[serde(rename = $s)] $v),*
        }

        impl $name {
            pub const ALL: &'static [&'static str] = &[$($s),*];

            /// The stored string.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$v => $s),*
                }
            }

            /// The value a string names; anything else is an error listing the known ones.
            pub fn parse(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($s => Ok(Self::$v),)*
                    _ => Err(UnknownValue { kind: $kind, value: s.to_string(), known: Self::ALL }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

closed! {
    /// Where an inbox row is in processing.
    InboxStatus("event status") {
        /// Waiting for the worker.
        Pending = "pending",
        /// Decided and applied.
        Processed = "processed",
        /// Understood; no rule acts on it.
        Ignored = "ignored",
        /// Its Hotmart product is linked to no package or plan.
        Unmapped = "unmapped",
        /// Unreadable, or its rule failed: kept for review and replay.
        Failed = "failed",
        /// Hotmart's "send test".
        Test = "test",
    }
}

closed! {
    /// The shape a stored delivery came in.
    Format("payload format") {
        /// JSON webhooks (version 2.0.0).
        V2 = "v2",
        /// Legacy form postbacks.
        V1 = "v1",
        /// Built by a reconciliation from the REST API.
        Api = "api",
    }
}

closed! {
    /// A reconciliation run's outcome so far.
    RunStatus("run status") {
        Running = "running",
        Succeeded = "succeeded",
        Cancelled = "cancelled",
        Failed = "failed",
    }
}

closed! {
    /// What a reconciliation run is doing.
    RunStage("run stage") {
        Starting = "starting",
        Sales = "sales",
        Subscriptions = "subscriptions",
        SubscriptionCharges = "subscription charges",
        Comparing = "comparing",
        Storing = "storing",
        Applying = "applying",
        Done = "done",
    }
}

closed! {
    /// A notification's delivery to one endpoint.
    DeliveryStatus("delivery status") {
        /// Due now or after its backoff.
        Pending = "PENDING",
        Delivered = "DELIVERED",
        /// Given up on (re-sendable).
        Dead = "DEAD",
    }
}

closed! {
    /// What an entitlement gives, as stored (expiry is applied when read).
    EntitlementStatus("entitlement status") {
        Active = "ACTIVE",
        Suspended = "SUSPENDED",
        Revoked = "REVOKED",
        Expired = "EXPIRED",
    }
}

closed! {
    /// How a live entitlement's end comes about: what an app shows as its subscription state.
    Term("entitlement term") {
        /// It ends at `expires_at` (or never) and nothing renews it: a one-off package, a
        /// courtesy.
        Fixed = "fixed",
        /// A subscription whose charges keep coming: the next one extends it.
        Renews = "renews",
        /// The subscription was cancelled: it ends when what was paid for runs out.
        Cancelled = "cancelled",
        /// A renewal charge failed: it ends when the grace runs out unless a charge is paid.
        Delayed = "delayed",
    }
}

impl EntitlementStatus {
    /// The status as of `now`: an end that passed makes active or suspended access expired
    /// (evaluated when read, so no sweeper is needed for correctness).
    pub fn effective(self, expires_at: Option<DateTimeUtc>, now: DateTimeUtc) -> Self {
        match (self, expires_at) {
            (Self::Active | Self::Suspended, Some(t)) if t <= now => Self::Expired,
            (s, _) => s,
        }
    }
}

//! Everything shaped like Hotmart: token verification, the v2 and v1 payloads, and their
//! conversion into provider-neutral [`crate::domain::PaymentEvent`]s.
pub mod api;
mod payload;
pub mod personal;
pub mod snapshot;
mod verify;

pub use payload::{
    Envelope, Format, Intake, ParseError, detect_format, intake, intake_with, mask_secret, parse_event, redacted_body,
    unreadable_id,
};
pub use verify::{VerifyError, verify_hottok};

//! The GraphQL `DateTime` scalar: read in any RFC 3339 offset, written as every Porteiro API
//! writes a moment (UTC with `Z`, milliseconds), so GraphQL, REST and notifications agree.
use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::Utc;

/// A moment (see the scalar's description).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateTime(pub chrono::DateTime<Utc>);

/// A moment, RFC 3339. Written in UTC with `Z` and milliseconds (`2026-12-04T18:07:15.123Z`),
/// as the REST API and notifications write it; read in any offset.
#[Scalar(
    name = "DateTime",
    specified_by_url = "https://datatracker.ietf.org/doc/html/rfc3339"
)]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => Ok(DateTime(chrono::DateTime::parse_from_rfc3339(s)?.with_timezone(&Utc))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(crate::domain::timestamp(self.0))
    }
}

impl From<chrono::DateTime<Utc>> for DateTime {
    fn from(t: chrono::DateTime<Utc>) -> Self {
        DateTime(t)
    }
}

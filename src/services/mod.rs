//! Business logic and transactions. Resolvers and handlers call one function here each.
pub mod api_keys;
pub mod app_access;
pub mod apps;
pub mod buyers;
pub mod catalog;
pub mod console;
pub mod entitlements;
pub mod events;
pub mod hotmart_account;
pub mod integration;
pub mod notifications;
pub mod overview;
pub mod reconcile;
pub mod rules;

use chrono::{DateTime, Utc};

/// Cursor pagination shared by every list: `after` is the last id seen.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub first: u64,
    pub after: Option<i32>,
}

impl Page {
    pub const MAX: u64 = 200;

    pub fn new(first: Option<i32>, after: Option<&str>) -> crate::AppResult<Self> {
        let first = first.unwrap_or(50);
        if !(1..=Self::MAX as i32).contains(&first) {
            return Err(crate::AppError::bad(format!(
                "first must be between 1 and {}",
                Self::MAX
            )));
        }
        let after = match after {
            None | Some("") => None,
            Some(c) => Some(
                c.parse::<i32>()
                    .map_err(|_| crate::AppError::bad("after is not a cursor from this list"))?,
            ),
        };
        Ok(Page {
            first: first as u64,
            after,
        })
    }
}

/// A page of rows and whether more follow.
#[derive(Debug, Clone)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub has_next: bool,
}

impl<T> Paged<T> {
    /// Takes `first + 1` rows fetched by the caller and trims the probe row.
    pub fn from_probe(mut rows: Vec<T>, first: u64) -> Self {
        let has_next = rows.len() as u64 > first;
        rows.truncate(first as usize);
        Paged { items: rows, has_next }
    }
}

pub fn now() -> DateTime<Utc> {
    Utc::now()
}

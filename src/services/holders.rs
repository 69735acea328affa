//! Who holds a package or plan: the app's holder lists (`/v1/packages/{key}/holders`,
//! `/v1/plans/{key}/holders`). A holder is a buyer, once, with the verdict the access check
//! would give for the target (their entitlements to it folded as `check` folds them). Pages
//! walk buyers by id, so a page stays the same cost at any depth and a walk returns every buyer
//! that matches throughout it exactly once, whatever is granted or revoked meanwhile.
use chrono::{DateTime, Utc};
use entity::{buyer, entitlement};
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Func, Query};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::api_keys::{ACCESS_READ, AppKey};
use super::app_access::{self, Verdict};
use crate::domain::{EntitlementStatus, TargetKind};
use crate::pipeline::access_cache::AccessView;
use crate::{AppError, AppResult, AppState};

pub const PAGE_MAX: u64 = 1000;
pub const PAGE_DEFAULT: u64 = 100;

/// Which holders to list, by the verdict the check gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Active,
    Suspended,
    Expired,
    Revoked,
    Any,
}

impl Filter {
    pub fn parse(raw: Option<&str>) -> AppResult<Filter> {
        Ok(match raw.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None | Some("active") => Filter::Active,
            Some("suspended") => Filter::Suspended,
            Some("expired") => Filter::Expired,
            Some("revoked") => Filter::Revoked,
            Some("any") => Filter::Any,
            Some(other) => {
                return Err(AppError::InvalidFields(vec![(
                    "status".into(),
                    format!("{other:?} is not a status: active, suspended, expired, revoked or any"),
                )]));
            }
        })
    }

    /// The verdicts ranked as the check ranks them: a buyer is listed under the best status
    /// any of their entitlements has.
    fn rank(self) -> u8 {
        match self {
            Filter::Active => 4,
            Filter::Suspended => 3,
            Filter::Expired => 2,
            Filter::Revoked => 1,
            Filter::Any => 0,
        }
    }

    fn status(self) -> Option<&'static str> {
        match self {
            Filter::Active => Some("ACTIVE"),
            Filter::Suspended => Some("SUSPENDED"),
            Filter::Expired => Some("EXPIRED"),
            Filter::Revoked => Some("REVOKED"),
            Filter::Any => None,
        }
    }

    /// Rows (of table `t`) whose status as of `now` is this one.
    fn rows(self, t: &str, now: DateTime<Utc>) -> Condition {
        let col = |c: &str| Expr::col((Alias::new(t), Alias::new(c)));
        let live_until_now = Condition::any()
            .add(col("expires_at").is_null())
            .add(col("expires_at").gt(now));
        match self {
            Filter::Active | Filter::Suspended => Condition::all()
                .add(col("status").eq(self.status().unwrap_or_default()))
                .add(live_until_now),
            Filter::Expired => Condition::any().add(col("status").eq("EXPIRED")).add(
                Condition::all()
                    .add(col("status").is_in(["ACTIVE", "SUSPENDED"]))
                    .add(col("expires_at").lte(now)),
            ),
            Filter::Revoked => Condition::all().add(col("status").eq("REVOKED")),
            Filter::Any => Condition::all(),
        }
    }
}

/// One holder: the buyer, and the verdict for the target.
#[derive(Debug, Clone)]
pub struct Holder {
    pub buyer_id: i32,
    pub email: String,
    pub verdict: Verdict,
    /// Their entitlements to the target (ids, as in `/v1/access`).
    pub entitlements: Vec<i32>,
}

pub struct HoldersPage {
    pub target: (TargetKind, i32),
    pub holders: Vec<Holder>,
    /// Where the next page starts (`None` at the end).
    pub next_cursor: Option<String>,
    /// How many buyers the filter matches now (when asked for: it counts them all).
    pub total: Option<u64>,
}

fn parse_cursor(raw: Option<&str>) -> AppResult<i32> {
    match raw {
        None => Ok(0),
        Some(r) => r.parse::<i32>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            AppError::InvalidFields(vec![(
                "after".into(),
                format!("{r:?} is not a cursor of this list (give nextCursor from a page)"),
            )])
        }),
    }
}

const SCAN: u64 = 2000;

/// A page of the target's holders under `filter`, after `after`.
#[allow(clippy::too_many_arguments)] // one per query parameter of the call
pub async fn page(
    state: &AppState,
    key: &AppKey,
    kind: TargetKind,
    raw_target: &str,
    filter: Filter,
    after: Option<&str>,
    limit: Option<u64>,
    with_total: bool,
) -> AppResult<HoldersPage> {
    key.require(ACCESS_READ)?;
    let limit = limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(AppError::InvalidFields(vec![(
            "limit".into(),
            format!("give a limit from 1 to {PAGE_MAX}"),
        )]));
    }
    let mut cursor = parse_cursor(after)?;
    let target = app_access::resolve(state, key.app_id, kind, raw_target).await?;
    if super::catalog::target(&state.db, key.app_id, target.0, target.1)
        .await?
        .is_none()
    {
        return Err(AppError::NotFound(format!(
            "{} {raw_target} does not exist in this app",
            kind.as_str()
        )));
    }
    let now = super::now();
    let db = &state.db;
    use entitlement::Column as C;
    let base = || {
        entitlement::Entity::find()
            .filter(C::AppId.eq(key.app_id))
            .filter(C::TargetKind.eq(target.0.as_str()))
            .filter(C::TargetId.eq(target.1))
    };
    let mut holders: Vec<Holder> = Vec::new();
    let mut exhausted = false;
    // Candidates are buyers with a row of the wanted status; the verdict (which counts all of
    // their rows) decides. Active candidates always qualify; the others may be outranked.
    for _ in 0..16 {
        // Each candidate of an active (or any) list is listed; others may be outranked, so a
        // wider scan fills the page in fewer rounds.
        let needed = limit + 1 - holders.len() as u64;
        let asked = if matches!(filter, Filter::Active | Filter::Any) {
            needed
        } else {
            Ord::max(needed, SCAN)
        };
        let ids: Vec<i32> = base()
            .select_only()
            .column(C::BuyerId)
            .distinct()
            .filter(C::BuyerId.gt(cursor))
            .filter(filter.rows("entitlement", now))
            .order_by_asc(C::BuyerId)
            .limit(asked)
            .into_tuple()
            .all(db)
            .await?;
        exhausted = (ids.len() as u64) < asked;
        let Some(&last) = ids.last() else { break };
        holders.extend(fold(db, key.app_id, target, &ids, filter, now).await?);
        cursor = last;
        if holders.len() as u64 > limit || exhausted {
            break;
        }
    }
    let full = holders.len() as u64 > limit;
    holders.truncate(limit as usize);
    // After the page's last holder when it is full; else after the last buyer scanned.
    let next_cursor = if full {
        holders.last().map(|h| h.buyer_id.to_string())
    } else {
        (!exhausted).then(|| cursor.to_string())
    };
    let total = if with_total {
        Some(count(db, key.app_id, target, filter, now).await?)
    } else {
        None
    };
    Ok(HoldersPage {
        target,
        holders,
        next_cursor,
        total,
    })
}

/// The verdicts of these buyers for the target, those `filter` keeps, in buyer order.
async fn fold(
    db: &sea_orm::DatabaseConnection,
    app_id: i32,
    target: (TargetKind, i32),
    ids: &[i32],
    filter: Filter,
    now: DateTime<Utc>,
) -> AppResult<Vec<Holder>> {
    use entitlement::Column as C;
    let rows = entitlement::Entity::find()
        .filter(C::AppId.eq(app_id))
        .filter(C::TargetKind.eq(target.0.as_str()))
        .filter(C::TargetId.eq(target.1))
        .filter(C::BuyerId.is_in(ids.iter().copied()))
        .all(db)
        .await?;
    let emails: std::collections::HashMap<i32, String> = buyer::Entity::find()
        .filter(buyer::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|b| (b.id, b.email))
        .collect();
    let mut by_buyer: std::collections::BTreeMap<i32, Vec<AccessView>> = Default::default();
    for e in rows {
        let status = e.status.effective(e.expires_at, now);
        by_buyer.entry(e.buyer_id).or_default().push(AccessView {
            active: status == EntitlementStatus::Active,
            status,
            target: None,
            entitlement: e,
        });
    }
    Ok(by_buyer
        .into_iter()
        .filter_map(|(buyer_id, views)| {
            let verdict = app_access::verdict(&views, target);
            let keep = filter.status().is_none_or(|s| s == verdict.status);
            let email = emails.get(&buyer_id)?.clone();
            keep.then(|| Holder {
                buyer_id,
                email,
                entitlements: views.iter().map(|v| v.entitlement.id).collect(),
                verdict,
            })
        })
        .collect())
}

/// How many buyers `filter` lists: those with a row of its status and none that ranks higher.
async fn count(
    db: &sea_orm::DatabaseConnection,
    app_id: i32,
    target: (TargetKind, i32),
    filter: Filter,
    now: DateTime<Utc>,
) -> AppResult<u64> {
    use entitlement::Column as C;
    let mut q = entitlement::Entity::find()
        .select_only()
        .expr_as(Func::count_distinct(Expr::col((entitlement::Entity, C::BuyerId))), "n")
        .filter(C::AppId.eq(app_id))
        .filter(C::TargetKind.eq(target.0.as_str()))
        .filter(C::TargetId.eq(target.1))
        .filter(filter.rows("entitlement", now));
    let higher: Vec<Filter> = [Filter::Active, Filter::Suspended, Filter::Expired]
        .into_iter()
        .filter(|h| filter != Filter::Any && h.rank() > filter.rank())
        .collect();
    if !higher.is_empty() {
        let h = Alias::new("h");
        let col = |c: &str| Expr::col((h.clone(), Alias::new(c)));
        let mut outranked = Condition::any();
        for f in higher {
            outranked = outranked.add(f.rows("h", now));
        }
        let sub = Query::select()
            .expr(Expr::val(1))
            .from_as(entitlement::Entity, h.clone())
            .and_where(col("app_id").eq(app_id))
            .and_where(col("target_kind").eq(target.0.as_str()))
            .and_where(col("target_id").eq(target.1))
            .and_where(col("buyer_id").equals((entitlement::Entity, C::BuyerId)))
            .cond_where(outranked)
            .to_owned();
        q = q.filter(Expr::exists(sub).not());
    }
    let n: Option<i64> = q.into_tuple().one(db).await?;
    Ok(u64::try_from(n.unwrap_or(0)).unwrap_or(0))
}

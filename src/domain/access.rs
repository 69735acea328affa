//! Access as a pure function of one source's history of facts.
//!
//! A **source** is what gives access: one one-off sale (`txn:<transaction>`), one subscription
//! (`sub:<subscriber code>`) or one manual grant (`manual:…`). Its history is a set of [`Fact`]s
//! (payments, cancellations, disputes, refunds, admin decisions). [`project`] sorts them by when
//! they happened (ties broken by [`Effect::precedence`], then by a stable key) and folds them, so
//! whatever order Hotmart delivered them in, and however many copies arrived, the result is the same.
//!
//! The semantics, in words (the README has the table admins read):
//! - A transaction grants once, at its approval date, whichever event first reports it (a
//!   PURCHASE_COMPLETE whose approval was lost grants as the approval would have): a later report
//!   of a transaction only lifts a dispute on that same transaction; it never extends access nor
//!   lifts an end, a cancellation or a revoke.
//! - Only a new paid transaction extends access (to the later of the current end and its cover).
//! - A dispute holds the source suspended until its own transaction is settled (paid again,
//!   refunded or charged back), whatever other charges arrive and whether or not the cover
//!   lapsed meanwhile; only an admin grant lifts it otherwise.
//! - Ends only move earlier (cancellations, delayed charges); an end already past at a point of the
//!   history has lapsed there, and only a new paid transaction revives it.
//! - A refund or chargeback ends access and makes its transaction final: it never grants again.
//! - An admin revoke outranks every later Hotmart fact until an admin grants again.
//! - The holder is the e-mail of the latest fact that carries one, until an admin moves the
//!   source to another e-mail: from then on only another admin move changes it (the buyer who
//!   "bought with another e-mail" keeps what support moved, whatever Hotmart sends later).
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{EntitlementStatus, TargetKind, Term};

/// What a fact does to a source's access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// A transaction was paid: it covers access until `until` (`None` only for lifetime packages).
    Paid,
    /// A plan switch: access that exists moves to the fact's target; nothing is granted.
    Move,
    /// Access ends no later than `until` (a cancellation, a delayed charge's grace).
    EndBy,
    /// A dispute on the fact's transaction pauses access until it is settled.
    Suspend,
    /// Access ends now; the fact's transaction (a refund, a chargeback) is final.
    Terminate,
    /// An admin gives access until `until` (`None`: for good), lifting an admin revoke.
    AdminGrant,
    /// An admin takes access away; later Hotmart facts cannot bring it back.
    AdminRevoke,
    /// An admin moves the source to the fact's e-mail; later Hotmart facts do not move it back.
    AdminMove,
}

impl Effect {
    pub const ALL: [Effect; 8] = [
        Effect::Paid,
        Effect::Move,
        Effect::EndBy,
        Effect::Suspend,
        Effect::Terminate,
        Effect::AdminGrant,
        Effect::AdminRevoke,
        Effect::AdminMove,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Paid => "paid",
            Effect::Move => "move",
            Effect::EndBy => "end_by",
            Effect::Suspend => "suspend",
            Effect::Terminate => "terminate",
            Effect::AdminGrant => "admin_grant",
            Effect::AdminRevoke => "admin_revoke",
            Effect::AdminMove => "admin_move",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// Tie-break for facts of the same instant: whatever takes access away sorts last, so it
    /// wins (a refund stamped in the same millisecond as its approval is never undone by it).
    pub fn precedence(self) -> u8 {
        match self {
            Effect::Paid => 0,
            Effect::Move => 1,
            Effect::EndBy => 2,
            Effect::Suspend => 3,
            Effect::Terminate => 4,
            Effect::AdminGrant => 5,
            Effect::AdminRevoke => 6,
            // It changes who holds, never what is held.
            Effect::AdminMove => 7,
        }
    }
}

/// One fact of a source's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub effect: Effect,
    /// When it happened at Hotmart (or when the admin acted).
    pub occurred_at: DateTime<Utc>,
    /// Payments only: when the charge was approved, if earlier than `occurred_at` (a COMPLETE
    /// reports a charge approved days before). The charge's cover starts there.
    pub paid_at: Option<DateTime<Utc>>,
    /// Stable, arrival-independent tie-break: the Hotmart event id, or `admin:<n>`.
    pub key: String,
    /// The Hotmart event type (or `ADMIN_GRANT` / `ADMIN_REVOKE`), for explanations.
    pub event_type: String,
    pub transaction: Option<String>,
    pub until: Option<DateTime<Utc>>,
    /// The buyer this fact names, normalised; `None` for facts that name nobody.
    pub email: Option<String>,
    pub target: (TargetKind, i32),
    /// The inbox row the fact came from (0 for admin facts).
    pub event_row: i32,
    pub rule_version: Option<i32>,
    /// Why, in words (the rule's decision, or the admin's reason).
    pub reason: String,
}

impl Fact {
    fn sort_key(&self) -> (DateTime<Utc>, u8, &str) {
        (self.occurred_at, self.effect.precedence(), &self.key)
    }
}

/// What a source gives, after its whole history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    pub target: (TargetKind, i32),
    /// ACTIVE, SUSPENDED, REVOKED, or EXPIRED when an end passed within the history itself.
    pub status: EntitlementStatus,
    pub granted_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The e-mail of the latest fact that names one.
    pub holder: Option<String>,
    /// Whether an admin revoke is in force.
    pub admin_revoked: bool,
    /// How the end comes about: the latest paid charge of a plan renews, a cancellation or a
    /// delayed charge ends it, an admin grant or a package just ends.
    pub term: Term,
    /// The fact that last changed the outcome.
    pub last_event_row: i32,
    pub rule_version: Option<i32>,
    pub reason: String,
}

impl Projection {
    fn fresh(target: (TargetKind, i32), status: EntitlementStatus) -> Self {
        Projection {
            target,
            status,
            granted_at: None,
            revoked_at: None,
            expires_at: None,
            holder: None,
            admin_revoked: false,
            term: Term::Fixed,
            last_event_row: 0,
            rule_version: None,
            reason: String::new(),
        }
    }
}

/// Facts in the order they happened (how explanations list them).
pub fn sorted(facts: &[Fact]) -> Vec<&Fact> {
    let mut v: Vec<&Fact> = facts.iter().collect();
    v.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    v
}

/// What a step of the fold may do with a payment fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    /// A payment reported when it was approved: it may grant (once per transaction) or settle.
    Whole,
    /// The charge a late report stands for, at its approval date: it may only grant.
    Charge,
    /// The late report itself, at its own date: it may only settle its transaction's dispute.
    Report,
}

/// The fold's steps in order: every fact once, but a payment reported after its approval twice
/// (its charge at the approval date, its report at its own), so the cover is the same whether
/// the approval's own event arrived or was lost.
fn steps(facts: &[Fact]) -> Vec<(DateTime<Utc>, Role, &Fact)> {
    let mut v = Vec::with_capacity(facts.len());
    for f in facts {
        match f.paid_at.filter(|p| f.effect == Effect::Paid && *p < f.occurred_at) {
            Some(p) => {
                v.push((p, Role::Charge, f));
                v.push((f.occurred_at, Role::Report, f));
            }
            None => v.push((f.occurred_at, Role::Whole, f)),
        }
    }
    v.sort_by(|a, b| {
        (a.0, a.2.effect.precedence(), a.2.key.as_str(), a.1).cmp(&(
            b.0,
            b.2.effect.precedence(),
            b.2.key.as_str(),
            b.1,
        ))
    });
    v
}

fn later_end(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        _ => None,
    }
}

fn earlier_end(a: Option<DateTime<Utc>>, b: DateTime<Utc>) -> DateTime<Utc> {
    a.map_or(b, |x| x.min(b))
}

fn live(s: &Projection) -> bool {
    matches!(s.status, EntitlementStatus::Active | EntitlementStatus::Suspended)
}

/// Folds a source's facts into what it gives. `None` when nothing was ever granted or revoked.
pub fn project(facts: &[Fact]) -> Option<Projection> {
    let mut state: Option<Projection> = None;
    let mut holder: Option<String> = None;
    let mut paid: HashSet<&str> = HashSet::new();
    let mut finals: HashSet<&str> = HashSet::new();
    let mut disputes: HashSet<&str> = HashSet::new();
    let mut admin_revoked = false;
    // Set by an admin move: Hotmart facts no longer decide who holds.
    let mut moved_by_admin = false;

    for (at, role, f) in steps(facts) {
        if role != Role::Charge
            && (!moved_by_admin || f.effect == Effect::AdminMove)
            && let Some(e) = &f.email
        {
            holder = Some(e.clone());
        }
        // An end that passed before this step has lapsed here: only a new payment revives it
        // (open disputes stay open: they outlive the cover).
        if let Some(s) = state.as_mut()
            && live(s)
            && s.expires_at.is_some_and(|end| end <= at)
        {
            s.status = EntitlementStatus::Expired;
        }
        let why = format!("{} ({})", f.event_type, f.reason);
        let txn = f.transaction.as_deref();
        let touch = |s: &mut Projection| {
            s.last_event_row = f.event_row;
            s.rule_version = f.rule_version;
            s.reason = why.clone();
        };
        match f.effect {
            Effect::Paid => {
                if txn.is_some_and(|t| finals.contains(t)) {
                    continue;
                }
                let new = role != Role::Report && txn.is_none_or(|t| paid.insert(t));
                if admin_revoked || (!new && role == Role::Charge) {
                    continue;
                }
                // Paid (again) after its own dispute: that dispute is settled.
                let settled = txn.is_some_and(|t| disputes.remove(t));
                if !new {
                    // The same transaction again: it may only settle its own dispute.
                    if let Some(s) = state.as_mut()
                        && settled
                        && s.status == EntitlementStatus::Suspended
                        && disputes.is_empty()
                    {
                        s.status = EntitlementStatus::Active;
                        touch(s);
                    }
                    continue;
                }
                // A new charge of a plan renews it, whatever ended it before.
                let term = if f.target.0 == TargetKind::Plan {
                    Term::Renews
                } else {
                    Term::Fixed
                };
                // Disputes still open hold whatever this charge gives.
                let held = if disputes.is_empty() {
                    EntitlementStatus::Active
                } else {
                    EntitlementStatus::Suspended
                };
                match state.as_mut().filter(|s| live(s)) {
                    Some(s) => {
                        s.expires_at = later_end(s.expires_at, f.until);
                        s.target = f.target;
                        s.status = held;
                        s.term = term;
                        touch(s);
                    }
                    None => {
                        let mut s = Projection::fresh(f.target, held);
                        s.granted_at = Some(at);
                        s.expires_at = f.until;
                        s.term = term;
                        touch(&mut s);
                        state = Some(s);
                    }
                }
            }
            Effect::Move => {
                if let Some(s) = state.as_mut().filter(|s| live(s)) {
                    s.target = f.target;
                    touch(s);
                }
            }
            Effect::EndBy => {
                if let Some(s) = state.as_mut().filter(|s| live(s)) {
                    s.expires_at = Some(earlier_end(s.expires_at, f.until.unwrap_or(f.occurred_at)));
                    // A cancellation is final until a new charge; a delayed charge is not.
                    s.term = match (s.term, f.event_type == "PURCHASE_DELAYED") {
                        (Term::Cancelled, _) | (_, false) => Term::Cancelled,
                        (_, true) => Term::Delayed,
                    };
                    touch(s);
                }
            }
            Effect::Suspend => {
                // A dispute of a settled transaction changes nothing; any other stays open
                // until its transaction is settled, even while nothing is live.
                if txn.is_some_and(|t| finals.contains(t)) {
                    continue;
                }
                disputes.insert(txn.unwrap_or(""));
                if admin_revoked {
                    continue;
                }
                if let Some(s) = state.as_mut().filter(|s| live(s)) {
                    s.status = EntitlementStatus::Suspended;
                    touch(s);
                }
            }
            Effect::Terminate | Effect::AdminRevoke => {
                if f.effect == Effect::Terminate {
                    // Lost for good: this transaction's dispute is over, others stay open.
                    if let Some(t) = txn {
                        finals.insert(t);
                    }
                    disputes.remove(txn.unwrap_or(""));
                } else {
                    admin_revoked = true;
                    disputes.clear();
                }
                // Recorded even when nothing was granted yet: the grant may be on its way.
                let s = state.get_or_insert_with(|| Projection::fresh(f.target, EntitlementStatus::Revoked));
                if s.status != EntitlementStatus::Revoked {
                    s.revoked_at = Some(f.occurred_at);
                }
                s.status = EntitlementStatus::Revoked;
                s.revoked_at.get_or_insert(f.occurred_at);
                touch(s);
            }
            Effect::AdminMove => {
                moved_by_admin = true;
                if let Some(s) = state.as_mut() {
                    touch(s);
                }
            }
            Effect::AdminGrant => {
                admin_revoked = false;
                disputes.clear();
                let granted_at = state
                    .as_ref()
                    .filter(|s| s.status == EntitlementStatus::Active)
                    .and_then(|s| s.granted_at)
                    .or(Some(f.occurred_at));
                let mut s = Projection::fresh(f.target, EntitlementStatus::Active);
                s.granted_at = granted_at;
                s.expires_at = f.until;
                touch(&mut s);
                state = Some(s);
            }
        }
    }
    state.map(|mut s| {
        s.holder = holder;
        s.admin_revoked = admin_revoked;
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(day: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + day * 86_400, 0).unwrap()
    }

    fn fact(effect: Effect, day: i64, txn: Option<&str>, until: Option<i64>) -> Fact {
        Fact {
            effect,
            occurred_at: t(day),
            paid_at: None,
            key: format!("{}-{day}-{txn:?}", effect.as_str()),
            event_type: effect.as_str().to_uppercase(),
            transaction: txn.map(str::to_string),
            until: until.map(t),
            email: Some("a@example.com".into()),
            target: (TargetKind::Plan, 1),
            event_row: 1,
            rule_version: Some(0),
            reason: String::new(),
        }
    }

    fn outcome(facts: &[Fact]) -> (EntitlementStatus, Option<DateTime<Utc>>) {
        let p = project(facts).unwrap();
        (p.status, p.expires_at)
    }

    #[test]
    fn a_cancellation_inside_the_warranty_is_not_undone_by_the_complete() {
        let facts = [
            fact(Effect::Paid, 0, Some("T1"), Some(33)),
            fact(Effect::EndBy, 3, None, Some(30)),
            fact(Effect::Paid, 7, Some("T1"), Some(33)),
        ];
        assert_eq!(outcome(&facts), (EntitlementStatus::Active, Some(t(30))));
    }

    #[test]
    fn a_second_delay_never_revives_lapsed_access() {
        let facts = [
            fact(Effect::Paid, 0, Some("T1"), Some(33)),
            fact(Effect::EndBy, 30, Some("T2"), Some(33)),
            fact(Effect::EndBy, 60, Some("T3"), Some(63)),
        ];
        assert_eq!(outcome(&facts), (EntitlementStatus::Expired, Some(t(33))));
    }

    #[test]
    fn a_dispute_is_lifted_only_by_its_own_transaction_coming_back() {
        let base = [
            fact(Effect::Paid, 0, Some("T1"), Some(33)),
            fact(Effect::Suspend, 2, Some("T1"), None),
        ];
        let mut won = base.to_vec();
        won.push(fact(Effect::Paid, 5, Some("T1"), Some(33)));
        assert_eq!(outcome(&won), (EntitlementStatus::Active, Some(t(33))));
        let mut other = base.to_vec();
        other.push(fact(Effect::Paid, 5, Some("T2"), Some(63)));
        assert_eq!(outcome(&other), (EntitlementStatus::Suspended, Some(t(63))));
    }

    #[test]
    fn an_admin_revoke_holds_against_later_payments_until_an_admin_grant() {
        let mut facts = vec![
            fact(Effect::Paid, 0, Some("T1"), None),
            fact(Effect::AdminRevoke, 1, None, None),
            fact(Effect::Paid, 2, Some("T1"), None),
            fact(Effect::Paid, 3, Some("T2"), None),
        ];
        assert_eq!(outcome(&facts).0, EntitlementStatus::Revoked);
        facts.push(fact(Effect::AdminGrant, 4, None, Some(40)));
        assert_eq!(outcome(&facts), (EntitlementStatus::Active, Some(t(40))));
    }

    #[test]
    fn a_dispute_outlives_a_lapse_and_another_charges_refund() {
        let late_renewal = [
            fact(Effect::Paid, 0, Some("T1"), Some(10)),
            fact(Effect::Suspend, 5, Some("T1"), None),
            fact(Effect::Paid, 20, Some("T2"), Some(50)),
        ];
        assert_eq!(outcome(&late_renewal), (EntitlementStatus::Suspended, Some(t(50))));
        let mut other_refunded = late_renewal.to_vec();
        other_refunded.push(fact(Effect::Terminate, 25, Some("T2"), None));
        other_refunded.push(fact(Effect::Paid, 30, Some("T3"), Some(60)));
        assert_eq!(outcome(&other_refunded).0, EntitlementStatus::Suspended);
        other_refunded.push(fact(Effect::Paid, 35, Some("T1"), Some(10)));
        assert_eq!(outcome(&other_refunded), (EntitlementStatus::Active, Some(t(60))));
    }

    #[test]
    fn a_late_report_pays_from_the_approval_date() {
        let mut complete = fact(Effect::Paid, 9, Some("T2"), Some(40));
        complete.paid_at = Some(t(0));
        let cancel = fact(Effect::EndBy, 5, None, Some(30));
        let lost = [complete.clone(), cancel.clone()];
        let mut approval = fact(Effect::Paid, 0, Some("T2"), Some(40));
        approval.key = "approval".into();
        let both = [approval, cancel, complete];
        assert_eq!(outcome(&lost), (EntitlementStatus::Active, Some(t(30))));
        assert_eq!(outcome(&lost), outcome(&both));
    }

    #[test]
    fn refunds_are_final_for_their_transaction_only() {
        let facts = [
            fact(Effect::Paid, 0, Some("T1"), Some(33)),
            fact(Effect::Terminate, 2, Some("T1"), None),
            fact(Effect::Paid, 4, Some("T1"), Some(33)),
        ];
        assert_eq!(outcome(&facts).0, EntitlementStatus::Revoked);
        let mut renewed = facts.to_vec();
        renewed.push(fact(Effect::Paid, 30, Some("T2"), Some(63)));
        assert_eq!(outcome(&renewed), (EntitlementStatus::Active, Some(t(63))));
    }

    #[test]
    fn same_instant_refund_beats_approval_whatever_the_keys() {
        let mut a = fact(Effect::Paid, 0, Some("T1"), None);
        a.key = "zzz".into();
        let mut r = fact(Effect::Terminate, 0, Some("T1"), None);
        r.key = "aaa".into();
        assert_eq!(outcome(&[a, r]).0, EntitlementStatus::Revoked);
    }

    #[test]
    fn the_holder_is_the_email_of_the_latest_fact() {
        let mut late = fact(Effect::EndBy, 5, None, Some(30));
        late.email = Some("new@example.com".into());
        let mut admin = fact(Effect::AdminRevoke, 9, None, None);
        admin.email = None;
        let p = project(&[late, fact(Effect::Paid, 0, Some("T1"), Some(33)), admin]).unwrap();
        assert_eq!(p.holder.as_deref(), Some("new@example.com"));
    }

    #[test]
    fn an_admin_move_holds_against_later_facts_under_the_old_email() {
        let mut moved = fact(Effect::AdminMove, 3, None, None);
        moved.email = Some("other@example.com".into());
        let mut renewal = fact(Effect::Paid, 30, Some("T2"), Some(63));
        renewal.email = Some("a@example.com".into());
        let facts = [fact(Effect::Paid, 0, Some("T1"), Some(33)), moved.clone(), renewal];
        let p = project(&facts).unwrap();
        assert_eq!(p.holder.as_deref(), Some("other@example.com"));
        assert_eq!((p.status, p.expires_at), (EntitlementStatus::Active, Some(t(63))));
        // A later move by an admin still moves it.
        let mut back = fact(Effect::AdminMove, 40, None, None);
        back.email = Some("a@example.com".into());
        let mut again = facts.to_vec();
        again.push(back);
        assert_eq!(project(&again).unwrap().holder.as_deref(), Some("a@example.com"));
    }

    #[test]
    fn nothing_granted_means_no_row_but_a_refund_still_records_one() {
        assert!(project(&[fact(Effect::EndBy, 1, None, Some(3))]).is_none());
        assert_eq!(
            outcome(&[fact(Effect::Terminate, 1, Some("T1"), None)]).0,
            EntitlementStatus::Revoked
        );
    }
}

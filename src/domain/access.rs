//! The access one source gives is a pure function of the *set* of its events: sort them by
//! occurred-at (ties broken by [`precedence`]) and fold their decisions. Whatever order Hotmart
//! delivered them in, the result is the same.
use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::{Decision, EntitlementStatus, EventKind, TargetKind};

#[derive(Debug, Clone)]
pub struct SourceEvent {
    pub row_id: i32,
    pub event_id: String,
    pub kind: EventKind,
    pub occurred_at: DateTime<Utc>,
    pub transaction: Option<String>,
    pub target: (TargetKind, i32),
    pub decision: Decision,
    pub rule_version: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessState {
    pub target: (TargetKind, i32),
    pub status: EntitlementStatus,
    pub granted_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_event_row: i32,
    pub rule_version: Option<i32>,
    pub reason: String,
}

/// Tie-break for events with the same occurred-at: the one that takes access away wins, so a
/// refund stamped in the same millisecond as its approval is never undone by it.
pub fn precedence(kind: &EventKind) -> u8 {
    match kind {
        EventKind::PurchaseApproved => 0,
        EventKind::PurchaseComplete => 1,
        EventKind::SwitchPlan => 2,
        EventKind::PurchaseDelayed => 3,
        EventKind::SubscriptionCancellation => 4,
        EventKind::PurchaseProtest => 5,
        EventKind::PurchaseRefunded => 6,
        EventKind::PurchaseChargeback => 7,
        _ => 8,
    }
}

/// REFUNDED and CHARGEBACK are final for their transaction, when the rules revoked on them.
fn is_final(e: &SourceEvent) -> bool {
    matches!(e.kind, EventKind::PurchaseRefunded | EventKind::PurchaseChargeback)
        && matches!(e.decision, Decision::Revoke { at: None })
}

/// Folds a source's events into its access. `None` when no event granted or revoked anything.
pub fn compute_access(events: &[SourceEvent]) -> Option<AccessState> {
    let mut sorted: Vec<&SourceEvent> = events.iter().collect();
    sorted.sort_by(|a, b| {
        (a.occurred_at, precedence(&a.kind), &a.event_id).cmp(&(b.occurred_at, precedence(&b.kind), &b.event_id))
    });
    // Transactions already refunded or charged back at this point of the history.
    let mut finished: HashSet<&str> = HashSet::new();
    let mut state: Option<AccessState> = None;
    for e in sorted {
        if is_final(e)
            && let Some(t) = e.transaction.as_deref()
        {
            finished.insert(t);
        }
        let why = format!("{} ({})", e.kind.as_str(), e.decision.label());
        match &e.decision {
            // A plan switch moves access that exists; it never grants by itself (Hotmart sends
            // switches for refunded subscriptions too).
            Decision::Grant { .. } if e.kind == EventKind::SwitchPlan => {
                if let Some(s) = state.as_mut().filter(|s| s.status != EntitlementStatus::Revoked) {
                    s.target = e.target;
                    s.last_event_row = e.row_id;
                    s.rule_version = e.rule_version;
                    s.reason = why;
                }
            }
            Decision::Grant { until } => {
                if e.transaction.as_deref().is_some_and(|t| finished.contains(t)) {
                    continue;
                }
                let granted_at = match &state {
                    Some(s) if s.status == EntitlementStatus::Active && s.target == e.target => s.granted_at,
                    _ => Some(e.occurred_at),
                };
                state = Some(AccessState {
                    target: e.target,
                    status: EntitlementStatus::Active,
                    granted_at,
                    revoked_at: None,
                    expires_at: *until,
                    last_event_row: e.row_id,
                    rule_version: e.rule_version,
                    reason: why,
                });
            }
            // Recorded even when nothing was granted yet: the grant may have been written before
            // this refund was known (another source of the same facts), and it must end too.
            Decision::Revoke { at: None } => {
                let s = state.get_or_insert_with(|| AccessState {
                    target: e.target,
                    status: EntitlementStatus::Revoked,
                    granted_at: None,
                    revoked_at: None,
                    expires_at: None,
                    last_event_row: e.row_id,
                    rule_version: e.rule_version,
                    reason: String::new(),
                });
                s.status = EntitlementStatus::Revoked;
                s.revoked_at = Some(e.occurred_at);
                s.last_event_row = e.row_id;
                s.rule_version = e.rule_version;
                s.reason = why;
            }
            Decision::Revoke { at: Some(t) } => {
                if let Some(s) = state.as_mut().filter(|s| s.status == EntitlementStatus::Active) {
                    s.expires_at = Some(*t);
                    s.last_event_row = e.row_id;
                    s.rule_version = e.rule_version;
                    s.reason = why;
                }
            }
            Decision::Suspend => {
                if let Some(s) = state.as_mut().filter(|s| s.status == EntitlementStatus::Active) {
                    s.status = EntitlementStatus::Suspended;
                    s.last_event_row = e.row_id;
                    s.rule_version = e.rule_version;
                    s.reason = why;
                }
            }
            Decision::Ignore { .. } => {}
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ev(row: i32, kind: EventKind, t: i64, txn: &str, decision: Decision) -> SourceEvent {
        SourceEvent {
            row_id: row,
            event_id: format!("e{row}"),
            kind,
            occurred_at: Utc.timestamp_opt(t, 0).unwrap(),
            transaction: Some(txn.into()),
            target: (TargetKind::Plan, 1),
            decision,
            rule_version: Some(1),
        }
    }

    fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut out = vec![];
        for i in 0..items.len() {
            let mut rest = items.to_vec();
            let x = rest.remove(i);
            for mut p in permutations(&rest) {
                p.insert(0, x.clone());
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn refund_is_final_even_when_a_late_duplicate_approval_arrives() {
        let events = vec![
            ev(
                1,
                EventKind::PurchaseApproved,
                100,
                "T1",
                Decision::Grant { until: None },
            ),
            ev(2, EventKind::PurchaseRefunded, 200, "T1", Decision::Revoke { at: None }),
            ev(
                3,
                EventKind::PurchaseApproved,
                300,
                "T1",
                Decision::Grant { until: None },
            ),
        ];
        let s = compute_access(&events).unwrap();
        assert_eq!(s.status, EntitlementStatus::Revoked);
    }

    #[test]
    fn a_renewal_after_cancellation_restores_open_ended_access() {
        let at = Utc.timestamp_opt(1000, 0).unwrap();
        let events = vec![
            ev(
                1,
                EventKind::PurchaseApproved,
                100,
                "T1",
                Decision::Grant { until: None },
            ),
            ev(
                2,
                EventKind::SubscriptionCancellation,
                200,
                "",
                Decision::Revoke { at: Some(at) },
            ),
            ev(
                3,
                EventKind::PurchaseApproved,
                300,
                "T2",
                Decision::Grant { until: None },
            ),
        ];
        let s = compute_access(&events).unwrap();
        assert_eq!((s.status, s.expires_at), (EntitlementStatus::Active, None));
        let s = compute_access(&events[..2]).unwrap();
        assert_eq!((s.status, s.expires_at), (EntitlementStatus::Active, Some(at)));
    }

    #[test]
    fn every_arrival_order_of_a_lifecycle_ends_in_the_same_state() {
        let grace = Utc.timestamp_opt(900, 0).unwrap();
        let lifecycle = vec![
            ev(
                1,
                EventKind::PurchaseApproved,
                100,
                "T1",
                Decision::Grant { until: None },
            ),
            ev(
                2,
                EventKind::PurchaseDelayed,
                200,
                "T2",
                Decision::Revoke { at: Some(grace) },
            ),
            ev(
                3,
                EventKind::PurchaseApproved,
                300,
                "T2",
                Decision::Grant { until: None },
            ),
            ev(
                4,
                EventKind::PurchaseChargeback,
                400,
                "T2",
                Decision::Revoke { at: None },
            ),
        ];
        let expected = compute_access(&lifecycle);
        assert_eq!(expected.as_ref().unwrap().status, EntitlementStatus::Revoked);
        for p in permutations(&lifecycle) {
            assert_eq!(compute_access(&p), expected);
        }
    }

    #[test]
    fn same_instant_refund_beats_approval() {
        let events = vec![
            ev(2, EventKind::PurchaseRefunded, 100, "T9", Decision::Revoke { at: None }),
            ev(
                1,
                EventKind::PurchaseApproved,
                100,
                "T8",
                Decision::Grant { until: None },
            ),
        ];
        assert_eq!(compute_access(&events).unwrap().status, EntitlementStatus::Revoked);
    }

    #[test]
    fn a_refund_before_the_approval_it_cancels_arrived_still_wins() {
        let events = vec![
            ev(2, EventKind::PurchaseRefunded, 200, "T1", Decision::Revoke { at: None }),
            ev(
                1,
                EventKind::PurchaseApproved,
                100,
                "T1",
                Decision::Grant { until: None },
            ),
        ];
        assert_eq!(compute_access(&events).unwrap().status, EntitlementStatus::Revoked);
    }

    #[test]
    fn a_plan_switch_moves_access_but_never_resurrects_it() {
        let mut switch = ev(3, EventKind::SwitchPlan, 300, "", Decision::Grant { until: None });
        switch.target = (TargetKind::Plan, 2);
        let active = vec![
            ev(
                1,
                EventKind::PurchaseApproved,
                100,
                "T1",
                Decision::Grant { until: None },
            ),
            switch.clone(),
        ];
        let s = compute_access(&active).unwrap();
        assert_eq!((s.status, s.target), (EntitlementStatus::Active, (TargetKind::Plan, 2)));
        let refunded = vec![
            ev(
                1,
                EventKind::PurchaseApproved,
                100,
                "T1",
                Decision::Grant { until: None },
            ),
            ev(2, EventKind::PurchaseRefunded, 200, "T1", Decision::Revoke { at: None }),
            switch,
        ];
        let s = compute_access(&refunded).unwrap();
        assert_eq!(
            (s.status, s.target),
            (EntitlementStatus::Revoked, (TargetKind::Plan, 1))
        );
    }

    #[test]
    fn nothing_granted_means_no_access_row() {
        let at = Utc.timestamp_opt(5, 0).unwrap();
        let cancelled = vec![ev(
            1,
            EventKind::SubscriptionCancellation,
            100,
            "",
            Decision::Revoke { at: Some(at) },
        )];
        assert!(compute_access(&cancelled).is_none());
        let refunded = vec![ev(
            1,
            EventKind::PurchaseRefunded,
            100,
            "T1",
            Decision::Revoke { at: None },
        )];
        assert_eq!(compute_access(&refunded).unwrap().status, EntitlementStatus::Revoked);
    }
}

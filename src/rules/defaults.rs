//! The default scripts in `rules/` and the fixtures used to dry-run scripts, shipped inside the
//! binary.
pub const DEFAULT_SCRIPTS: &[(&str, &str)] = &[
    ("PURCHASE_APPROVED", include_str!("../../rules/purchase_approved.rhai")),
    ("PURCHASE_COMPLETE", include_str!("../../rules/purchase_complete.rhai")),
    ("PURCHASE_CANCELED", include_str!("../../rules/purchase_canceled.rhai")),
    ("PURCHASE_REFUNDED", include_str!("../../rules/purchase_refunded.rhai")),
    (
        "PURCHASE_CHARGEBACK",
        include_str!("../../rules/purchase_chargeback.rhai"),
    ),
    ("PURCHASE_PROTEST", include_str!("../../rules/purchase_protest.rhai")),
    ("PURCHASE_EXPIRED", include_str!("../../rules/purchase_expired.rhai")),
    ("PURCHASE_DELAYED", include_str!("../../rules/purchase_delayed.rhai")),
    (
        "SUBSCRIPTION_CANCELLATION",
        include_str!("../../rules/subscription_cancellation.rhai"),
    ),
    ("SWITCH_PLAN", include_str!("../../rules/switch_plan.rhai")),
];

pub const FIXTURES: &[(&str, &str)] = &[
    (
        "purchase_approved.json",
        include_str!("../../rules/fixtures/purchase_approved.json"),
    ),
    (
        "purchase_approved_renewal.json",
        include_str!("../../rules/fixtures/purchase_approved_renewal.json"),
    ),
    (
        "purchase_approved_single.json",
        include_str!("../../rules/fixtures/purchase_approved_single.json"),
    ),
    (
        "purchase_complete.json",
        include_str!("../../rules/fixtures/purchase_complete.json"),
    ),
    (
        "purchase_canceled.json",
        include_str!("../../rules/fixtures/purchase_canceled.json"),
    ),
    (
        "purchase_refunded.json",
        include_str!("../../rules/fixtures/purchase_refunded.json"),
    ),
    (
        "purchase_chargeback.json",
        include_str!("../../rules/fixtures/purchase_chargeback.json"),
    ),
    (
        "purchase_protest.json",
        include_str!("../../rules/fixtures/purchase_protest.json"),
    ),
    (
        "purchase_expired.json",
        include_str!("../../rules/fixtures/purchase_expired.json"),
    ),
    (
        "purchase_delayed.json",
        include_str!("../../rules/fixtures/purchase_delayed.json"),
    ),
    (
        "subscription_cancellation.json",
        include_str!("../../rules/fixtures/subscription_cancellation.json"),
    ),
    (
        "switch_plan.json",
        include_str!("../../rules/fixtures/switch_plan.json"),
    ),
];

pub fn default_script(event_type: &str) -> Option<&'static str> {
    DEFAULT_SCRIPTS.iter().find(|(t, _)| *t == event_type).map(|(_, s)| *s)
}

pub fn scripted_event_types() -> impl Iterator<Item = &'static str> {
    DEFAULT_SCRIPTS.iter().map(|(t, _)| *t)
}

/// `schema.graphql` is the contract admin panels build on; it must match the code.
#[test]
fn schema_graphql_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let sdl = porteiro::graphql::sdl();
    if std::env::var("UPDATE_SCHEMA").is_ok() {
        std::fs::write(&path, &sdl).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == sdl,
        "schema.graphql is out of date; regenerate it with: UPDATE_SCHEMA=1 cargo test --test api schema"
    );
}

#[test]
fn the_public_operation_names_are_in_the_schema() {
    let sdl = porteiro::graphql::sdl();
    for op in [
        "hotmartIntegration",
        "saveHotmartIntegration",
        "createProductPackage",
        "updateProductPackage",
        "deleteProductPackage",
        "productPackages",
        "productPackage",
        "createSubscriptionPlan",
        "updateSubscriptionPlan",
        "deleteSubscriptionPlan",
        "subscriptionPlans",
        "subscriptionPlan",
        "buyers",
        "buyer",
        "access",
        "grantAccess",
        "revokeAccess",
        "auditLog",
        "rules",
        "saveRule",
        "activateRuleVersion",
        "simulateWebhook",
        "webhookEvents",
        "replayWebhookEvent",
        "explainAccess",
    ] {
        assert!(
            sdl.contains(&format!("\t{op}(")) || sdl.contains(&format!("\t{op}:")),
            "{op} is missing from the schema"
        );
    }
}

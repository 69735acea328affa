use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn packages_and_plans_are_created_listed_and_updated() {
    let app = TestApp::spawn().await;
    let id = app
        .create_package("Curso de Fotografia", &["4100001", " 4100002 "], Some(365))
        .await;
    let d = app
        .gql(
            "query($id: ID!) { productPackage(id: $id) { name accessDays lifetime hotmartProductIds } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        d["productPackage"],
        json!({"name": "Curso de Fotografia", "accessDays": 365, "lifetime": false, "hotmartProductIds": ["4100001", "4100002"]})
    );

    let d = app
        .gql("mutation($id: ID!) { updateProductPackage(id: $id, input: {accessDays: null, hotmartProductIds: [\"4100003\"]}) { accessDays lifetime hotmartProductIds name } }", json!({"id": id}))
        .await;
    assert_eq!(
        d["updateProductPackage"],
        json!({"accessDays": null, "lifetime": true, "hotmartProductIds": ["4100003"], "name": "Curso de Fotografia"})
    );

    app.create_plan("Plano Mensal", &["5100001"]).await;
    let d = app
        .gql(
            "{ productPackages { name } subscriptionPlans { name hotmartProductIds } }",
            json!({}),
        )
        .await;
    assert_eq!(d["productPackages"].as_array().unwrap().len(), 1);
    assert_eq!(d["subscriptionPlans"][0]["hotmartProductIds"], json!(["5100001"]));
}

#[tokio::test]
async fn a_product_id_links_to_only_one_package_or_plan_and_the_conflict_names_the_holder() {
    let app = TestApp::spawn().await;
    app.create_package("Pacote A", &["4100001"], None).await;
    let q =
        "mutation($p: [String!]) { createProductPackage(input: {name: \"Pacote B\", hotmartProductIds: $p}) { id } }";
    let v = app.gql_as(&app.admin(), q, json!({"p": ["4100001"]})).await;
    assert_eq!(error_code(&v), "CONFLICT");
    assert!(error_message(&v).contains("Pacote A"), "{v}");
    // Across a package and a plan too.
    let q =
        "mutation($p: [String!]) { createSubscriptionPlan(input: {name: \"Plano\", hotmartProductIds: $p}) { id } }";
    let v = app.gql_as(&app.admin(), q, json!({"p": ["4100001"]})).await;
    assert_eq!(error_code(&v), "CONFLICT");
    assert!(error_message(&v).contains("package \"Pacote A\""), "{v}");
    // The refused creations left nothing behind.
    let d = app
        .gql("{ productPackages { name } subscriptionPlans { name } }", json!({}))
        .await;
    assert_eq!(d["productPackages"].as_array().unwrap().len(), 1);
    assert_eq!(d["subscriptionPlans"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_database_itself_refuses_a_second_link() {
    let app = TestApp::spawn().await;
    let id: i32 = app.create_package("A", &["777"], None).await.parse().unwrap();
    use sea_orm::{ActiveModelTrait, Set};
    let dup = entity::external_product_link::ActiveModel {
        app_id: Set(app.app("default").await.id),
        provider: Set("hotmart".into()),
        external_id: Set("777".into()),
        package_id: Set(Some(id)),
        plan_id: Set(None),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    };
    assert!(dup.insert(&app.state.db).await.is_err(), "the unique index must hold");
}

#[tokio::test]
async fn bad_catalog_input_is_explained() {
    let app = TestApp::spawn().await;
    let q = "mutation($n: String!, $p: [String!], $d: Int) { createProductPackage(input: {name: $n, hotmartProductIds: $p, accessDays: $d}) { id } }";
    for (vars, field, needle) in [
        (json!({"n": " ", "p": []}), "name", "required"),
        (json!({"n": "x", "p": ["abc"]}), "hotmartProductIds", "digits"),
        (json!({"n": "x", "p": ["0"]}), "hotmartProductIds", "test"),
        (json!({"n": "x", "p": [], "d": 0}), "accessDays", "between"),
    ] {
        let v = app.gql_as(&app.admin(), q, vars).await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{v}");
        assert_eq!(v["errors"][0]["extensions"]["fields"][0]["field"], field, "{v}");
        assert!(error_message(&v).contains(needle), "{v}");
    }
}

#[tokio::test]
async fn deleting_what_buyers_hold_is_refused_unless_forced() {
    let app = TestApp::spawn().await;
    let id = app.create_package("Curso", &["4100001"], None).await;
    let grant = "mutation($id: ID!, $e: String!) { grantAccess(email: $e, target: {kind: PACKAGE, id: $id}, reason: \"gift\") { active } }";
    app.gql(grant, json!({"id": id, "e": "a@example.com"})).await;
    app.gql(grant, json!({"id": id, "e": "b@example.com"})).await;
    let v = app
        .gql_as(
            &app.admin(),
            "mutation($id: ID!) { deleteProductPackage(id: $id) { deleted } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(error_code(&v), "CONFLICT");
    assert!(error_message(&v).contains("2 buyer"), "{v}");
    let d = app
        .gql(
            "mutation($id: ID!) { deleteProductPackage(id: $id, force: true) { deleted revokedAccess } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(d["deleteProductPackage"], json!({"deleted": true, "revokedAccess": 2}));
    assert!(app.access("a@example.com").await.is_empty());
    let d = app.gql("{ productPackages { id } }", json!({})).await;
    assert_eq!(d["productPackages"], json!([]));
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    let app = TestApp::spawn().await;
    let v = app
        .gql_as(
            &app.admin(),
            "mutation { updateSubscriptionPlan(id: \"999\", input: {name: \"x\"}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&v), "NOT_FOUND");
    let d = app.gql("{ productPackage(id: \"999\") { id } }", json!({})).await;
    assert_eq!(d["productPackage"], json!(null));
}

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, EntityTrait};

use crate::helpers::*;

#[tokio::test]
async fn migrations_go_up_down_and_up_again() {
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    Migrator::down(db, None).await.expect("down");
    let gone = entity::app::Entity::find().all(db).await;
    assert!(gone.is_err(), "tables must be dropped by down");
    assert!(entity::reconciliation_run::Entity::find().all(db).await.is_err());
    Migrator::up(db, None).await.expect("up again");
    assert!(entity::app::Entity::find().all(db).await.unwrap().is_empty());
    assert!(
        entity::reconciliation_run::Entity::find()
            .all(db)
            .await
            .unwrap()
            .is_empty()
    );
    // One step down removes only the latest migration, and its column goes with it.
    Migrator::down(db, Some(1)).await.expect("one step down");
    assert!(entity::reconciliation_run::Entity::find().all(db).await.is_err());
    assert!(entity::app::Entity::find().all(db).await.is_ok());
    Migrator::up(db, None).await.expect("up once more");
    assert!(entity::hotmart_integration::Entity::find().all(db).await.is_ok());
    let status = db.execute_unprepared("SELECT 1").await;
    assert!(status.is_ok());
}

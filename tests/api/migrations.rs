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
    Migrator::up(db, None).await.expect("up again");
    assert!(entity::app::Entity::find().all(db).await.unwrap().is_empty());
    let status = db.execute_unprepared("SELECT 1").await;
    assert!(status.is_ok());
}

//! Access changes counted by hour instead of by UTC day, so the console draws its "per day"
//! chart in the seller's own days (a sale at 22:00 in São Paulo is 01:00 UTC the next day).
//! The counts move into `rollup` (family `changes`, bucket `YYYY-MM-DDTHH|kind`, UTC hours).
//! The day counts kept so far have no hour: each is placed at 12:00 UTC, which falls on the
//! same date in every time zone from UTC−11 to UTC+11.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared(
            "INSERT INTO rollup (app_id, family, bucket, n) \
             SELECT app_id, 'changes', day || 'T12|' || kind, n FROM access_change_tally",
        )
        .await?;
        db.execute_unprepared("DROP TABLE access_change_tally").await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared(
            "CREATE TABLE access_change_tally (app_id integer NOT NULL, day varchar(10) NOT NULL, \
             kind varchar(40) NOT NULL, n bigint NOT NULL, PRIMARY KEY (app_id, day, kind))",
        )
        .await?;
        // `YYYY-MM-DDTHH|kind`: the kind starts at the 15th character.
        db.execute_unprepared(
            "INSERT INTO access_change_tally (app_id, day, kind, n) \
             SELECT app_id, substr(bucket, 1, 10), substr(bucket, 15), SUM(n) FROM rollup \
             WHERE family = 'changes' GROUP BY app_id, substr(bucket, 1, 10), substr(bucket, 15)",
        )
        .await?;
        db.execute_unprepared("DELETE FROM rollup WHERE family = 'changes'")
            .await?;
        Ok(())
    }
}

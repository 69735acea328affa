//! The worker's read of the oldest pending inbox rows (`status = 'pending' ORDER BY id LIMIT n`)
//! gets an index holding only pending rows. Once PostgreSQL has statistics (autovacuum analyses
//! a growing inbox after a minute or so), it sees pending rows as a share of the table spread
//! evenly over the ids and walks the primary key from the start, past every processed row,
//! instead of using (status, id): measured during a flood, that read took 41 ms on average and
//! was the largest part of the database's time (50 ms with 50,000 processed rows ahead, against
//! 0.06 ms with this index). An index of pending rows alone is the cheapest way to the batch
//! whatever the statistics say. PostgreSQL only: SQLite keeps no statistics unless asked, walks
//! (status, id) as before, and would not use this index for the worker's query anyway (its
//! status is a bound parameter, which SQLite does not match against an index's WHERE); there the
//! index would only be one more write per webhook under its single write lock.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookEvent {
    Table,
    Id,
    Status,
}

const NAME: &str = "idx_webhook_event_pending";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        m.create_index(
            Index::create()
                .name(NAME)
                .table(WebhookEvent::Table)
                .col(WebhookEvent::Id)
                .and_where(Expr::col(WebhookEvent::Status).eq("pending"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        m.drop_index(Index::drop().name(NAME).table(WebhookEvent::Table).to_owned())
            .await
    }
}

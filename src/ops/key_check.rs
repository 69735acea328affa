//! The database remembers which master key sealed its secrets: a value sealed under it (table
//! `key_check`). Start-up opens it before serving, so a database restored without its
//! `master.key`, or a mistyped `PORTEIRO_MASTER_KEY`, stops the start with a message that says
//! what is missing, instead of serving with Hotmart credentials it cannot read.
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbErr};

use crate::secrets::{SecretBox, Slot};

const TABLE: &str = "key_check";
const PLAIN: &str = "porteiro key check";
const SLOT: Slot<'static> = Slot {
    app_id: 0,
    field: "key_check",
};

/// The key id recorded in the database, if one was.
pub async fn recorded(db: &impl ConnectionTrait) -> Result<Option<(String, String)>, DbErr> {
    let q = Query::select()
        .columns([Alias::new("key_id"), Alias::new("sealed")])
        .from(Alias::new(TABLE))
        .and_where(Expr::col(Alias::new("id")).eq(1))
        .to_owned();
    let Some(row) = db.query_one_raw(db.get_database_backend().build(&q)).await? else {
        return Ok(None);
    };
    Ok(Some((row.try_get("", "key_id")?, row.try_get("", "sealed")?)))
}

/// Seals the check under `ring`'s current key (first start, or after a rotation re-encrypted
/// every secret).
pub async fn seal(db: &impl ConnectionTrait, ring: &SecretBox) -> anyhow::Result<()> {
    let sealed = ring.encrypt(PLAIN, SLOT)?;
    let q = Query::insert()
        .into_table(Alias::new(TABLE))
        .columns([
            Alias::new("id"),
            Alias::new("key_id"),
            Alias::new("sealed"),
            Alias::new("created_at"),
        ])
        .values_panic([
            1.into(),
            ring.current_key_id().into(),
            sealed.into(),
            chrono::Utc::now().into(),
        ])
        .on_conflict(
            OnConflict::column(Alias::new("id"))
                .update_columns([Alias::new("key_id"), Alias::new("sealed")])
                .to_owned(),
        )
        .to_owned();
    db.execute_raw(db.get_database_backend().build(&q)).await?;
    Ok(())
}

/// Whether `ring` opens what the database's secrets were sealed with; the check is sealed on a
/// database that has none yet.
pub async fn verify_or_seal(db: &impl ConnectionTrait, ring: &SecretBox) -> anyhow::Result<()> {
    match recorded(db).await? {
        None => seal(db, ring).await,
        Some((key_id, sealed)) => verify(ring, &key_id, &sealed),
    }
}

/// Opens the sealed value, or says which key is missing.
pub fn verify(ring: &SecretBox, key_id: &str, sealed: &str) -> anyhow::Result<()> {
    match ring.decrypt(sealed, SLOT) {
        Ok(plain) if plain == PLAIN => Ok(()),
        _ => anyhow::bail!(
            "this database's secrets were sealed with master key {key_id}, and this installation's key is {} \
             (PORTEIRO_MASTER_KEY or master.key in the data directory): the Hotmart credentials could not be \
             read. Put back the master.key that belongs to this database (a backup made with --with-keys has it \
             in keys/) or set PORTEIRO_MASTER_KEY to it, then start again",
            ring.current_key_id()
        ),
    }
}

//! Buyers (the app's end users) and what they can access.
use entity::{buyer, buyer_subscriber_code as subcode};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{Page, Paged};
use crate::domain::Email;
use crate::{AppError, AppResult};

pub use crate::pipeline::access_cache::{AccessView, Holdings};

pub fn parse_email(raw: &str) -> AppResult<Email> {
    Email::parse(raw).map_err(|m| AppError::InvalidFields(vec![("email".into(), m)]))
}

pub use crate::pipeline::history::buyer as find;

/// The buyer who holds a subscription now (the code follows the holder when the e-mail changes).
pub async fn find_by_subscriber_code(
    db: &impl ConnectionTrait,
    app_id: i32,
    code: &str,
) -> AppResult<Option<buyer::Model>> {
    let Some(link) = subcode::Entity::find()
        .filter(subcode::Column::AppId.eq(app_id))
        .filter(subcode::Column::Code.eq(code.trim().to_ascii_uppercase()))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    Ok(buyer::Entity::find_by_id(link.buyer_id).one(db).await?)
}

/// The e-mails holding several subscriber codes now (code as given, upper-cased), in two
/// queries per 500.
pub async fn emails_by_subscriber_codes(
    db: &impl ConnectionTrait,
    app_id: i32,
    codes: &[String],
) -> AppResult<std::collections::HashMap<String, String>> {
    let mut out = std::collections::HashMap::new();
    for chunk in codes.chunks(500) {
        let links = subcode::Entity::find()
            .filter(subcode::Column::AppId.eq(app_id))
            .filter(subcode::Column::Code.is_in(chunk.to_vec()))
            .all(db)
            .await?;
        if links.is_empty() {
            continue;
        }
        let ids: Vec<i32> = links.iter().map(|l| l.buyer_id).collect();
        let emails: std::collections::HashMap<i32, String> = buyer::Entity::find()
            .filter(buyer::Column::Id.is_in(ids))
            .all(db)
            .await?
            .into_iter()
            .map(|b| (b.id, b.email))
            .collect();
        for l in links {
            if let Some(e) = emails.get(&l.buyer_id) {
                out.insert(l.code, e.clone());
            }
        }
    }
    Ok(out)
}

/// The subscriber codes of several buyers, in one query per 500.
pub async fn subscriber_codes(
    db: &impl ConnectionTrait,
    buyer_ids: &[i32],
) -> AppResult<std::collections::HashMap<i32, Vec<String>>> {
    let mut out: std::collections::HashMap<i32, Vec<String>> = std::collections::HashMap::new();
    for chunk in buyer_ids.chunks(500) {
        let rows = subcode::Entity::find()
            .filter(subcode::Column::BuyerId.is_in(chunk.to_vec()))
            .order_by_asc(subcode::Column::Code)
            .all(db)
            .await?;
        for r in rows {
            out.entry(r.buyer_id).or_default().push(r.code);
        }
    }
    Ok(out)
}

/// Buyers, by id; or those a search finds, by e-mail. A search matches, through indexes on both
/// databases: an e-mail that starts with it (case-insensitive, as e-mails are stored in lower
/// case), a subscriber code or a transaction equal to it.
pub async fn list(
    db: &impl ConnectionTrait,
    app_id: i32,
    search: Option<&str>,
    page: Page,
) -> AppResult<Paged<buyer::Model>> {
    use sea_orm::sea_query::Expr;
    let mut q = buyer::Entity::find().filter(buyer::Column::AppId.eq(app_id));
    let Some(s) = search.map(str::trim).filter(|s| !s.is_empty()) else {
        if let Some(after) = page.after {
            q = q.filter(buyer::Column::Id.gt(after));
        }
        let rows = q.order_by_asc(buyer::Column::Id).limit(page.first + 1).all(db).await?;
        return Ok(Paged::from_probe(rows, page.first));
    };
    let prefix = s.to_lowercase();
    // Every string that starts with the prefix sorts, byte by byte, between it and it followed
    // by the highest code point.
    let upper = format!("{prefix}\u{10FFFF}");
    let email = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => Expr::cust_with_values(
            r#""buyer"."email" COLLATE "C" >= $1 AND "buyer"."email" COLLATE "C" < $2"#,
            [prefix.clone(), upper],
        ),
        _ => Expr::cust_with_values(
            r#""buyer"."email" >= ? AND "buyer"."email" < ?"#,
            [prefix.clone(), upper],
        ),
    };
    // Exact codes and transactions first, each one indexed lookup: the page's query then ORs
    // the e-mail range with a short list of ids, which both databases serve by index (an OR of
    // subqueries makes PostgreSQL read every buyer).
    let code = s.to_uppercase();
    let mut ids: Vec<i32> = subcode::Entity::find()
        .select_only()
        .column(subcode::Column::BuyerId)
        .filter(subcode::Column::AppId.eq(app_id))
        .filter(subcode::Column::Code.eq(code.clone()))
        .into_tuple()
        .all(db)
        .await?;
    ids.extend(
        entity::entitlement::Entity::find()
            .select_only()
            .column(entity::entitlement::Column::BuyerId)
            .filter(entity::entitlement::Column::AppId.eq(app_id))
            .filter(entity::entitlement::Column::Source.eq(format!("txn:{code}")))
            .into_tuple::<i32>()
            .all(db)
            .await?,
    );
    // A subscription's charges are transactions too: whoever their events name.
    let charged: Vec<Option<String>> = entity::webhook_event::Entity::find()
        .select_only()
        .column(entity::webhook_event::Column::Email)
        .filter(entity::webhook_event::Column::AppId.eq(app_id))
        .filter(entity::webhook_event::Column::Transaction.eq(code))
        .limit(100)
        .into_tuple()
        .all(db)
        .await?;
    let charged: Vec<String> = charged.into_iter().flatten().collect();
    if !charged.is_empty() {
        ids.extend(
            buyer::Entity::find()
                .select_only()
                .column(buyer::Column::Id)
                .filter(buyer::Column::AppId.eq(app_id))
                .filter(buyer::Column::Email.is_in(charged))
                .into_tuple::<i32>()
                .all(db)
                .await?,
        );
    }
    let mut found = sea_orm::Condition::any().add(email);
    if !ids.is_empty() {
        found = found.add(buyer::Column::Id.is_in(ids));
    }
    q = q.filter(found);
    // Pages of a search go by e-mail (unique per app) in byte order, the index's order on both
    // databases, so each page reads only itself.
    let pg = db.get_database_backend() == sea_orm::DbBackend::Postgres;
    if let Some(after) = page.after {
        let last = buyer::Entity::find_by_id(after)
            .filter(buyer::Column::AppId.eq(app_id))
            .one(db)
            .await?
            .ok_or_else(|| crate::AppError::bad("after is not a cursor from this list"))?;
        q = q.filter(if pg {
            Expr::cust_with_values(r#""buyer"."email" COLLATE "C" > $1"#, [last.email])
        } else {
            Expr::cust_with_values(r#""buyer"."email" > ?"#, [last.email])
        });
    }
    let order = if pg {
        Expr::cust(r#""buyer"."email" COLLATE "C""#)
    } else {
        Expr::cust(r#""buyer"."email""#)
    };
    let rows = q
        .order_by(order, sea_orm::Order::Asc)
        .limit(page.first + 1)
        .all(db)
        .await?;
    Ok(Paged::from_probe(rows, page.first))
}

/// What these buyers hold, from the access cache where it can (the loaders' batch read).
pub async fn holdings(
    state: &crate::AppState,
    app_id: i32,
    emails: &[Email],
) -> AppResult<std::collections::HashMap<String, std::sync::Arc<Holdings>>> {
    crate::pipeline::access_cache::holdings(&state.access, &state.db, app_id, emails).await
}

/// One buyer's access as of now, through the cache.
pub async fn access(state: &crate::AppState, app_id: i32, email: &Email) -> AppResult<Vec<AccessView>> {
    crate::pipeline::access_cache::access(&state.access, &state.db, app_id, email).await
}

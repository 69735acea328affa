//! Signing in to the browser console without pasting a JWT: `porteiro login` makes a one-time
//! link (valid minutes); opening it and pressing "sign in" trades it for a session, which the
//! browser keeps in an HttpOnly cookie. Only hashes of both tokens are stored.
use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use entity::console_token as ct;
use rand::RngCore;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};

use crate::auth::{Principal, Role};
use crate::secrets::token_hash as hash;
use crate::{AppError, AppResult, AppState};

const LOGIN: &str = "login";
const SESSION: &str = "session";
pub const LOGIN_TTL: TimeDelta = TimeDelta::minutes(15);
pub const SESSION_TTL: TimeDelta = TimeDelta::hours(12);

fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A one-time sign-in link's token for the app's console.
pub async fn issue_login(state: &AppState, app_slug: &str, role: Role, subject: &str) -> AppResult<String> {
    let app = super::apps::by_slug(&state.db, app_slug)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no app with slug {app_slug:?}")))?;
    let token = new_token();
    let now = super::now();
    let txn = crate::db::write_txn(&state.db).await?;
    ct::ActiveModel {
        kind: Set(LOGIN.into()),
        token_hash: Set(hash(&token)),
        app_id: Set(app.id),
        role: Set(role.as_str().into()),
        subject: Set(subject.into()),
        created_at: Set(now),
        expires_at: Set(now + LOGIN_TTL),
        used_at: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    #[allow(clippy::disallowed_methods)] // a sign-in link, not a change to the app
    txn.commit().await?;
    Ok(token)
}

/// Trades a sign-in link's token (once) for a session token and its end.
pub async fn redeem(state: &AppState, login_token: &str) -> AppResult<(String, DateTime<Utc>)> {
    let refused = || {
        AppError::Unauthenticated(
            "this sign-in link is unknown, used or expired: ask for a new one with `porteiro login`".into(),
        )
    };
    let now = super::now();
    let txn = crate::db::write_txn(&state.db).await?;
    let row = ct::Entity::find()
        .filter(ct::Column::TokenHash.eq(hash(login_token.trim())))
        .filter(ct::Column::Kind.eq(LOGIN))
        .one(&txn)
        .await?
        .ok_or_else(refused)?;
    if row.used_at.is_some() || row.expires_at <= now {
        return Err(refused());
    }
    // Used only if nobody used it meanwhile: a link opens one session.
    let used = ct::Entity::update_many()
        .col_expr(ct::Column::UsedAt, Some(now).into())
        .filter(ct::Column::Id.eq(row.id))
        .filter(ct::Column::UsedAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected;
    if used != 1 {
        return Err(refused());
    }
    let token = new_token();
    let expires = now + SESSION_TTL;
    ct::ActiveModel {
        kind: Set(SESSION.into()),
        token_hash: Set(hash(&token)),
        app_id: Set(row.app_id),
        role: Set(row.role.clone()),
        subject: Set(row.subject.clone()),
        created_at: Set(now),
        expires_at: Set(expires),
        used_at: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    #[allow(clippy::disallowed_methods)] // a session, not a change to the app
    txn.commit().await?;
    Ok((token, expires))
}

/// Who a session cookie belongs to.
pub async fn authenticate(state: &AppState, session_token: &str) -> AppResult<Principal> {
    let refused = || AppError::Unauthenticated("the console session ended: sign in again".into());
    let row = ct::Entity::find()
        .filter(ct::Column::TokenHash.eq(hash(session_token)))
        .filter(ct::Column::Kind.eq(SESSION))
        .one(&state.db)
        .await?
        .ok_or_else(refused)?;
    if row.expires_at <= super::now() {
        return Err(refused());
    }
    let app = entity::app::Entity::find_by_id(row.app_id)
        .one(&state.db)
        .await?
        .ok_or_else(refused)?;
    Ok(Principal {
        app_id: app.id,
        app_slug: app.slug,
        role: crate::auth::parse_role(&row.role).map_err(|_| refused())?,
        subject: format!("console:{}", row.subject),
    })
}

/// Ends a session (sign out); unknown tokens are fine.
pub async fn end(state: &AppState, session_token: &str) -> AppResult<()> {
    let txn = crate::db::write_txn(&state.db).await?;
    ct::Entity::delete_many()
        .filter(ct::Column::TokenHash.eq(hash(session_token)))
        .filter(ct::Column::Kind.eq(SESSION))
        .exec(&txn)
        .await?;
    // Old links and sessions go too, so the table stays small.
    ct::Entity::delete_many()
        .filter(ct::Column::ExpiresAt.lt(super::now() - TimeDelta::days(1)))
        .exec(&txn)
        .await?;
    #[allow(clippy::disallowed_methods)] // a sign-out, not a change to the app
    txn.commit().await?;
    Ok(())
}

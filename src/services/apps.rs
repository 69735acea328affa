use entity::app;
use rand::RngCore;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::{AppError, AppResult};

pub fn new_webhook_key() -> String {
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

pub fn validate_slug(slug: &str) -> AppResult<()> {
    let ok = !slug.is_empty()
        && slug.len() <= 40
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !slug.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(AppError::bad("slug must be 1-40 characters of a-z, 0-9 and '-'"))
    }
}

pub async fn create(db: &impl ConnectionTrait, slug: &str, name: &str) -> AppResult<app::Model> {
    validate_slug(slug)?;
    if by_slug(db, slug).await?.is_some() {
        return Err(AppError::Conflict(format!("an app with slug {slug:?} already exists")));
    }
    let now = super::now();
    let m = app::ActiveModel {
        slug: Set(slug.to_string()),
        name: Set(if name.trim().is_empty() {
            slug.to_string()
        } else {
            name.trim().to_string()
        }),
        webhook_key: Set(new_webhook_key()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    Ok(m.insert(db).await?)
}

/// Makes sure the default app exists, so a first start needs no setup.
pub async fn ensure(db: &impl ConnectionTrait, slug: &str) -> AppResult<app::Model> {
    match by_slug(db, slug).await? {
        Some(a) => Ok(a),
        None => create(db, slug, "Default store").await,
    }
}

pub async fn list(db: &impl ConnectionTrait) -> AppResult<Vec<app::Model>> {
    Ok(app::Entity::find().order_by_asc(app::Column::Id).all(db).await?)
}

pub async fn by_slug(db: &impl ConnectionTrait, slug: &str) -> AppResult<Option<app::Model>> {
    Ok(app::Entity::find().filter(app::Column::Slug.eq(slug)).one(db).await?)
}

/// The app of a slug, from a cache (a slug never changes its app). Only found apps are kept.
pub async fn by_slug_cached(state: &crate::AppState, slug: &str) -> AppResult<Option<app::Model>> {
    if let Some(a) = state.hot.apps_by_slug.get(slug) {
        return Ok(Some(a));
    }
    let found = by_slug(&state.db, slug).await?;
    if let Some(a) = &found {
        state.hot.apps_by_slug.insert(slug.to_string(), a.clone());
    }
    Ok(found)
}

//! Admin API tokens: HS256 JWTs pinned to one algorithm, with `exp`, `iss` and `aud` checked.
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::AppError;

pub const ISSUER: &str = "porteiro";
pub const AUDIENCE: &str = "porteiro-admin";
const LEEWAY_SECS: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

pub fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "admin" => Ok(Role::Admin),
        "viewer" => Ok(Role::Viewer),
        other => Err(format!("role must be admin or viewer, got {other:?}")),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub app: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
}

/// Who is calling, once the token checked out.
#[derive(Debug, Clone)]
pub struct Principal {
    pub app_id: i32,
    pub app_slug: String,
    pub role: Role,
    pub subject: String,
}

impl Principal {
    pub fn actor(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.subject)
    }

    pub fn require_admin(&self) -> Result<(), AppError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Viewer => Err(AppError::Forbidden("this operation needs the admin role".into())),
        }
    }
}

pub fn issue(secret: &[u8], app: &str, role: Role, subject: &str, ttl: chrono::Duration) -> anyhow::Result<String> {
    let now = Utc::now().timestamp();
    let claims = Claims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: subject.into(),
        app: app.into(),
        role,
        iat: now,
        exp: now + ttl.num_seconds(),
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret)?,
    )?)
}

pub fn verify(secret: &[u8], token: &str) -> Result<Claims, AppError> {
    let mut v = Validation::new(Algorithm::HS256);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[AUDIENCE]);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v.leeway = LEEWAY_SECS;
    // A token meant for later is not valid now.
    v.validate_nbf = true;
    let key = DecodingKey::from_secret(secret).map_err(|_| AppError::Unauthenticated("token key unusable".into()))?;
    jsonwebtoken::decode::<Claims>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match e.kind() {
                ErrorKind::ExpiredSignature => "token expired",
                ErrorKind::ImmatureSignature => "token is not valid yet (nbf)",
                ErrorKind::InvalidAudience => "token audience is not porteiro-admin",
                ErrorKind::InvalidIssuer => "token issuer is not porteiro",
                ErrorKind::InvalidAlgorithm => "token algorithm must be HS256",
                ErrorKind::InvalidSignature => "token signature is invalid",
                ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
                _ => "token is malformed",
            };
            AppError::Unauthenticated(why.into())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn issued_tokens_verify() {
        let t = issue(KEY, "shop", Role::Viewer, "cli", chrono::Duration::hours(1)).unwrap();
        let c = verify(KEY, &t).unwrap();
        assert_eq!(c.app, "shop");
        assert_eq!(c.role, Role::Viewer);
    }

    #[test]
    fn expired_and_foreign_tokens_fail() {
        let t = issue(KEY, "shop", Role::Admin, "cli", chrono::Duration::hours(-1)).unwrap();
        assert!(matches!(verify(KEY, &t), Err(AppError::Unauthenticated(m)) if m.contains("expired")));
        let t = issue(
            b"another-key-another-key-another-k",
            "shop",
            Role::Admin,
            "cli",
            chrono::Duration::hours(1),
        )
        .unwrap();
        assert!(verify(KEY, &t).is_err());
    }

    #[test]
    fn rejects_other_algorithms() {
        let now = Utc::now().timestamp();
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: "x".into(),
            app: "a".into(),
            role: Role::Admin,
            iat: now,
            exp: now + 60,
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(KEY).unwrap(),
        )
        .unwrap();
        assert!(verify(KEY, &t).is_err());
    }
}

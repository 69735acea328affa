//! One error type for the whole service. Its mapping to HTTP statuses and GraphQL codes lives here
//! and nowhere else.
use sea_orm::DbErr;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadInput(String),
    /// Several fields wrong at once: each keeps its own message.
    #[error("invalid input: {}", .0.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; "))]
    InvalidFields(Vec<(String, String)>),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Hotmart (or another service we call) failed; the message says how.
    #[error("{0}")]
    Upstream(String),
    #[error("database unavailable")]
    Unavailable(#[source] DbErr),
    /// Over a rate limit: try again in this many seconds.
    #[error("too many requests for this API key: retry in {0} s")]
    RateLimited(u64),
    /// The service cannot do this until an operator fixes its set-up (e.g. a lost master key);
    /// the message says what to fix and carries no secret.
    #[error("{0}")]
    Misconfigured(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    /// The stable machine-readable code admin panels switch on.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadInput(_) | AppError::InvalidFields(_) => "BAD_USER_INPUT",
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::Conflict(_) => "CONFLICT",
            AppError::Upstream(_) => "UPSTREAM",
            AppError::Unavailable(_) => "UNAVAILABLE",
            AppError::RateLimited(_) => "RATE_LIMITED",
            AppError::Misconfigured(_) => "MISCONFIGURED",
            AppError::Internal(_) => "INTERNAL",
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            AppError::BadInput(_) | AppError::InvalidFields(_) => 400,
            AppError::Unauthenticated(_) => 401,
            AppError::Forbidden(_) => 403,
            AppError::NotFound(_) => 404,
            AppError::Conflict(_) => 409,
            AppError::Upstream(_) => 502,
            AppError::RateLimited(_) => 429,
            AppError::Unavailable(_) | AppError::Misconfigured(_) => 503,
            AppError::Internal(_) => 500,
        }
    }

    /// The message safe to show a client: internals are replaced by a generic sentence.
    pub fn public_message(&self) -> String {
        self.to_string()
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(e.into())
    }

    pub fn bad(msg: impl Into<String>) -> Self {
        AppError::BadInput(msg.into())
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        AppError::NotFound(msg.into())
    }

    /// Log the error chain of server-side failures once, where they are turned into a response.
    pub fn log(&self) {
        match self {
            AppError::Internal(e) => tracing::error!(error = ?e, "internal error"),
            AppError::Unavailable(e) => tracing::warn!(error = %e, "database unavailable"),
            AppError::Misconfigured(why) => tracing::error!(reason = %why, "misconfigured"),
            _ => {}
        }
    }
}

impl From<crate::hotmart::api::ApiError> for AppError {
    fn from(e: crate::hotmart::api::ApiError) -> Self {
        use crate::hotmart::api::ApiError;
        match e {
            ApiError::NotFound(_) => AppError::NotFound(e.to_string()),
            ApiError::BadCredentials(_) | ApiError::Forbidden(_) => AppError::BadInput(e.to_string()),
            _ => AppError::Upstream(e.to_string()),
        }
    }
}

/// The storage cannot take writes right now (disk full, read-only, locked, I/O error, the server
/// shutting down): a 503 to retry later, not a bug.
fn storage_unavailable(e: &DbErr) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    [
        "database or disk is full",
        "disk i/o error",
        "attempt to write a readonly database",
        "database is locked",
        "unable to open database file",
        "terminating connection",
        "the database system is shutting down",
        "the database system is starting up",
        "connection reset",
        "broken pipe",
        "pool timed out",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

impl From<DbErr> for AppError {
    fn from(e: DbErr) -> Self {
        match &e {
            DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => AppError::Unavailable(e),
            _ if storage_unavailable(&e) => AppError::Unavailable(e),
            _ => AppError::Internal(e.into()),
        }
    }
}

//! Hotmart's REST API: OAuth client-credentials tokens (cached per app, refreshed once on 401), a
//! client-side rate limit (500 requests/minute), backoff with jitter on 429 and 5xx, cursor
//! pagination, and typed errors that never carry a secret.
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultKeyedRateLimiter, Quota};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;

/// Where the API lives; overridable so tests can point at a local fake.
#[derive(Debug, Clone)]
pub struct ApiEndpoints {
    pub token_url: String,
    pub production_base: String,
    pub sandbox_base: String,
    /// First backoff step; doubled per retry, with jitter.
    pub retry_base: Duration,
    pub max_retries: u32,
    pub requests_per_minute: usize,
}

impl Default for ApiEndpoints {
    fn default() -> Self {
        ApiEndpoints {
            token_url: "https://api-sec-vlc.hotmart.com/security/oauth/token".into(),
            production_base: "https://developers.hotmart.com".into(),
            sandbox_base: "https://sandbox.hotmart.com".into(),
            retry_base: Duration::from_millis(500),
            max_retries: 4,
            requests_per_minute: 500,
        }
    }
}

/// The credentials of one app. Debug never shows the secrets.
#[derive(Clone)]
pub struct Credentials {
    pub app_id: i32,
    pub client_id: String,
    pub client_secret: SecretString,
    pub basic: SecretString,
    pub sandbox: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("app_id", &self.app_id)
            .field("sandbox", &self.sandbox)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error(
        "Hotmart refused the credentials ({0}): check Basic, Client ID and Client Secret, and that sandbox credentials are not used in production (or the reverse)"
    )]
    BadCredentials(String),
    #[error("Hotmart says this account may not do that ({0})")]
    Forbidden(String),
    #[error("not found at Hotmart ({0})")]
    NotFound(String),
    #[error("Hotmart's rate limit was hit and retries ran out")]
    RateLimited,
    /// A 400 on a query parameter (`invalid_parameter`, `invalid_value_parameter`): names it.
    #[error("Hotmart refused the parameter {parameter} of {path} ({error}: {description})")]
    InvalidParameter {
        path: String,
        parameter: String,
        error: String,
        description: String,
    },
    #[error("Hotmart answered {status}: {error} {description}")]
    Hotmart {
        status: u16,
        error: String,
        description: String,
    },
    #[error("cannot reach Hotmart: {0}")]
    Network(String),
    #[error("unexpected answer from Hotmart: {0}")]
    Decode(String),
}

impl ApiError {
    /// A stable name for the kind of failure (consoles say it in their own language).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadCredentials(_) => "BAD_CREDENTIALS",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::RateLimited => "RATE_LIMITED",
            ApiError::InvalidParameter { .. } | ApiError::Hotmart { .. } | ApiError::Decode(_) => "HOTMART_ERROR",
            ApiError::Network(_) => "UNREACHABLE",
        }
    }
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default = "default_expiry")]
    expires_in: u64,
}

fn default_expiry() -> u64 {
    3600
}

#[derive(Clone)]
struct CachedToken {
    token: SecretString,
    valid_until: Instant,
}

/// A page of a cursor-paginated listing.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
    #[serde(default)]
    pub page_info: Option<PageInfo>,
}

#[derive(Debug, Deserialize)]
pub struct PageInfo {
    pub next_page_token: Option<String>,
}

/// The sales-history item, as much as reconciliation needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Sale {
    pub product: Option<IdName>,
    pub buyer: Option<Person>,
    pub purchase: SalePurchase,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IdName {
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Person {
    pub name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SalePurchase {
    pub transaction: String,
    pub status: String,
    pub order_date: Option<i64>,
    pub approved_date: Option<i64>,
    pub recurrency_number: Option<i64>,
    #[serde(default)]
    pub is_subscription: bool,
    pub offer: Option<Offer>,
    pub price: Option<Money>,
    pub payment: Option<Payment>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Offer {
    pub code: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Money {
    pub value: Option<f64>,
    pub currency_code: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Payment {
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Subscription {
    pub subscriber_code: String,
    pub status: String,
    pub request_date: Option<i64>,
    pub accession_date: Option<i64>,
    pub end_accession_date: Option<i64>,
    pub date_next_charge: Option<i64>,
    pub transaction: Option<String>,
    pub plan: Option<IdName>,
    pub product: Option<IdName>,
    pub subscriber: Option<Person>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionPurchase {
    pub transaction: String,
    pub status: Option<String>,
    pub approved_date: Option<i64>,
    pub recurrency_number: Option<i64>,
}

fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// Sliding-window limiter: at most `limit` requests in any 60 seconds.
/// The statuses reconciliation asks for explicitly: without them Hotmart hides every sale that is
/// not APPROVED or COMPLETE.
pub const ALL_SALE_STATUSES: &[&str] = &[
    "APPROVED",
    "COMPLETE",
    "REFUNDED",
    "CHARGEBACK",
    "PROTESTED",
    "CANCELLED",
    "EXPIRED",
    "PARTIALLY_REFUNDED",
    "BLOCKED",
    "OVERDUE",
];

pub const ALL_SUBSCRIPTION_STATUSES: &[&str] = &[
    "ACTIVE",
    "INACTIVE",
    "DELAYED",
    "CANCELLED_BY_CUSTOMER",
    "CANCELLED_BY_SELLER",
    "CANCELLED_BY_ADMIN",
    "STARTED",
    "OVERDUE",
];

pub struct HotmartApi {
    http: reqwest::Client,
    endpoints: ApiEndpoints,
    tokens: Mutex<HashMap<i32, CachedToken>>,
    /// Hotmart's limit is per account, so per app.
    limiter: DefaultKeyedRateLimiter<i32>,
}

/// What one attempt ended with, for the retry policy.
enum Attempt {
    /// 429 or 5xx: retry, after `RateLimit-Reset` seconds when Hotmart says.
    Busy {
        response: reqwest::Response,
        reset: Option<Duration>,
    },
    Network(reqwest::Error),
}

impl HotmartApi {
    pub fn new(endpoints: ApiEndpoints) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(40))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("porteiro/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let per_minute = NonZeroU32::new(endpoints.requests_per_minute.clamp(1, u32::MAX as usize) as u32)
            .unwrap_or(NonZeroU32::MIN);
        HotmartApi {
            http,
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_minute)),
            endpoints,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets a cached token, e.g. after the credentials changed.
    pub async fn forget(&self, app_id: i32) {
        self.tokens.lock().await.remove(&app_id);
    }

    /// Sends with pacing (per app) and retries on 429, 5xx, timeouts and refused connections:
    /// exponential backoff with jitter, or Hotmart's `RateLimit-Reset` when it is longer. Errors
    /// never include URLs: the token URL carries the client secret as a query parameter.
    async fn send(
        &self,
        app_id: i32,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let policy = ExponentialBuilder::default()
            .with_min_delay(self.endpoints.retry_base)
            .with_max_delay(Duration::from_secs(60))
            .with_max_times(self.endpoints.max_retries as usize)
            .with_jitter();
        let attempt = || async {
            self.limiter.until_key_ready(&app_id).await;
            match build().send().await {
                Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS || r.status().is_server_error() => {
                    let reset = r
                        .headers()
                        .get("RateLimit-Reset")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(60)));
                    Err(Attempt::Busy { response: r, reset })
                }
                Ok(r) => Ok(r),
                Err(e) => Err(Attempt::Network(e)),
            }
        };
        let res = attempt
            .retry(policy)
            .when(|a| match a {
                Attempt::Busy { .. } => true,
                Attempt::Network(e) => e.is_timeout() || e.is_connect(),
            })
            .adjust(|a, backoff| match (a, backoff) {
                (Attempt::Busy { reset: Some(r), .. }, Some(b)) => Some(b.max(*r)),
                (_, b) => b,
            })
            .notify(|_, wait| {
                tracing::warn!(wait_ms = wait.as_millis() as u64, "Hotmart API busy; retrying");
            })
            .await;
        match res {
            Ok(r) => Ok(r),
            Err(Attempt::Busy { response, .. }) if response.status() == StatusCode::TOO_MANY_REQUESTS => {
                Err(ApiError::RateLimited)
            }
            Err(Attempt::Busy { response, .. }) => Ok(response),
            Err(Attempt::Network(e)) => Err(ApiError::Network(e.without_url().to_string())),
        }
    }

    async fn error_from(res: reqwest::Response) -> ApiError {
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        let env: ErrorEnvelope = serde_json::from_str(&body).unwrap_or(ErrorEnvelope {
            error: String::new(),
            error_description: String::new(),
        });
        let what = if env.error.is_empty() {
            status.to_string()
        } else {
            env.error.clone()
        };
        match status {
            StatusCode::UNAUTHORIZED => ApiError::BadCredentials(what),
            StatusCode::FORBIDDEN => ApiError::Forbidden(what),
            StatusCode::NOT_FOUND => ApiError::NotFound(what),
            _ => ApiError::Hotmart {
                status: status.as_u16(),
                error: what,
                description: env.error_description,
            },
        }
    }

    /// A bearer token for the app, from the cache while it is fresh.
    pub async fn token(&self, creds: &Credentials) -> Result<SecretString, ApiError> {
        if let Some(t) = self
            .tokens
            .lock()
            .await
            .get(&creds.app_id)
            .filter(|t| t.valid_until > Instant::now())
        {
            return Ok(t.token.clone());
        }
        let basic = creds.basic.expose_secret().trim();
        let basic = if basic.starts_with("Basic ") {
            basic.to_string()
        } else {
            format!("Basic {basic}")
        };
        let res = self
            .send(creds.app_id, || {
                self.http
                    .post(&self.endpoints.token_url)
                    .query(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", creds.client_id.as_str()),
                        ("client_secret", creds.client_secret.expose_secret()),
                    ])
                    .header("Authorization", basic.clone())
                    .header("Content-Type", "application/json")
            })
            .await?;
        if !res.status().is_success() {
            return Err(match Self::error_from(res).await {
                ApiError::Hotmart { status: 400, error, .. } => ApiError::BadCredentials(error),
                other => other,
            });
        }
        let t: TokenResponse = res
            .json()
            .await
            .map_err(|e| ApiError::Decode(e.without_url().to_string()))?;
        // Refresh a little before Hotmart would refuse it.
        let margin = (t.expires_in / 10).clamp(1, 300);
        let cached = CachedToken {
            token: SecretString::from(t.access_token),
            valid_until: Instant::now() + Duration::from_secs(t.expires_in.saturating_sub(margin)),
        };
        self.tokens.lock().await.insert(creds.app_id, cached.clone());
        Ok(cached.token)
    }

    fn base(&self, creds: &Credentials) -> &str {
        if creds.sandbox {
            &self.endpoints.sandbox_base
        } else {
            &self.endpoints.production_base
        }
    }

    /// Calls an endpoint; on 401 the token is refreshed once and the call repeated.
    async fn call<T: DeserializeOwned>(
        &self,
        creds: &Credentials,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<Value>,
    ) -> Result<T, ApiError> {
        let url = format!("{}{}", self.base(creds), path);
        for refreshed in [false, true] {
            let token = self.token(creds).await?;
            let res = self
                .send(creds.app_id, || {
                    let mut r = self
                        .http
                        .request(method.clone(), &url)
                        .query(query)
                        .bearer_auth(token.expose_secret());
                    if let Some(b) = &body {
                        r = r.json(b);
                    }
                    r
                })
                .await?;
            if res.status() == StatusCode::UNAUTHORIZED && !refreshed {
                self.forget(creds.app_id).await;
                continue;
            }
            if !res.status().is_success() {
                return Err(match Self::error_from(res).await {
                    ApiError::Hotmart {
                        status: 400,
                        error,
                        description,
                    } if error.starts_with("invalid_") && error.ends_with("parameter") => ApiError::InvalidParameter {
                        parameter: refused_parameter(query, &description),
                        path: path.to_string(),
                        error,
                        description,
                    },
                    other => other,
                });
            }
            let text = res
                .text()
                .await
                .map_err(|e| ApiError::Decode(e.without_url().to_string()))?;
            let text = if text.trim().is_empty() { "{}".to_string() } else { text };
            return serde_json::from_str(&text).map_err(|e| ApiError::Decode(format!("{path}: {e}")));
        }
        Err(ApiError::BadCredentials("token refused twice".into()))
    }

    /// Follows `page_token` until the last page.
    async fn all_pages<T: DeserializeOwned>(
        &self,
        creds: &Credentials,
        path: &str,
        mut query: Vec<(String, String)>,
        mut on_page: impl FnMut(usize),
    ) -> Result<Vec<T>, ApiError> {
        let mut out = Vec::new();
        query.push(("max_results".into(), "500".into()));
        let mut token: Option<String> = None;
        loop {
            let mut q = query.clone();
            if let Some(t) = &token {
                q.push(("page_token".into(), t.clone()));
            }
            let page: Page<T> = self.call(creds, Method::GET, path, &q, None).await?;
            out.extend(page.items);
            on_page(out.len());
            token = page.page_info.and_then(|p| p.next_page_token).filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Sales in `[start_ms, end_ms]` in every status.
    pub async fn sales_history(
        &self,
        creds: &Credentials,
        start_ms: i64,
        end_ms: i64,
        on_page: impl FnMut(usize),
    ) -> Result<Vec<Sale>, ApiError> {
        let mut q = vec![
            ("start_date".to_string(), start_ms.to_string()),
            ("end_date".to_string(), end_ms.to_string()),
        ];
        q.extend(
            ALL_SALE_STATUSES
                .iter()
                .map(|s| ("transaction_status".to_string(), s.to_string())),
        );
        self.all_pages(creds, "/payments/api/v1/sales/history", q, on_page)
            .await
    }

    /// Subscriptions matching `filter`, in every status (Hotmart's default filters would hide
    /// everything older than 30 days).
    pub async fn subscriptions(
        &self,
        creds: &Credentials,
        filter: &[(&str, String)],
        on_page: impl FnMut(usize),
    ) -> Result<Vec<Subscription>, ApiError> {
        let mut q: Vec<(String, String)> = filter.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        q.extend(
            ALL_SUBSCRIPTION_STATUSES
                .iter()
                .map(|s| ("status".to_string(), s.to_string())),
        );
        self.all_pages(creds, "/payments/api/v1/subscriptions", q, on_page)
            .await
    }

    pub async fn subscription_purchases(
        &self,
        creds: &Credentials,
        code: &str,
    ) -> Result<Vec<SubscriptionPurchase>, ApiError> {
        let path = format!("/payments/api/v1/subscriptions/{}/purchases", urlencode(code));
        self.call(creds, Method::GET, &path, &[], None).await
    }

    pub async fn cancel_subscription(
        &self,
        creds: &Credentials,
        code: &str,
        send_mail: bool,
    ) -> Result<Value, ApiError> {
        let path = format!("/payments/api/v1/subscriptions/{}/cancel", urlencode(code));
        self.call(
            creds,
            Method::POST,
            &path,
            &[],
            Some(serde_json::json!({"send_mail": send_mail})),
        )
        .await
    }

    pub async fn reactivate_subscription(
        &self,
        creds: &Credentials,
        code: &str,
        charge: bool,
    ) -> Result<Value, ApiError> {
        let path = format!("/payments/api/v1/subscriptions/{}/reactivate", urlencode(code));
        self.call(
            creds,
            Method::POST,
            &path,
            &[],
            Some(serde_json::json!({"charge": charge})),
        )
        .await
    }
}

/// Subscriber codes are alphanumeric; anything else is escaped so it cannot change the path.
/// Everything but letters, digits and `-._~` is escaped in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

fn urlencode(s: &str) -> String {
    // `.` stays escaped too, so `..` can never climb out of the path.
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// The query parameter a 400 is about: the one Hotmart's description names, or every filter sent.
fn refused_parameter(query: &[(String, String)], description: &str) -> String {
    let mut names: Vec<&str> = query.iter().map(|(k, _)| k.as_str()).collect();
    names.dedup();
    match names.iter().find(|n| description.contains(**n)) {
        Some(n) => n.to_string(),
        None => format!("(one of: {})", names.join(", ")),
    }
}

pub type SharedApi = Arc<HotmartApi>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_limiter_lets_a_burst_of_the_quota_through_then_waits_per_app() {
        crate::install_crypto_provider();
        let api = HotmartApi::new(ApiEndpoints {
            requests_per_minute: 2,
            ..Default::default()
        });
        assert!(api.limiter.check_key(&1).is_ok());
        assert!(api.limiter.check_key(&1).is_ok());
        assert!(
            api.limiter.check_key(&1).is_err(),
            "the third request of the minute waits"
        );
        assert!(api.limiter.check_key(&2).is_ok(), "another account has its own quota");
    }

    #[test]
    fn a_refused_filter_is_named() {
        let q = vec![
            ("start_date".to_string(), "1".to_string()),
            ("transaction_status".to_string(), "A".to_string()),
            ("transaction_status".to_string(), "B".to_string()),
        ];
        assert_eq!(
            refused_parameter(&q, "Invalid value for transaction_status"),
            "transaction_status"
        );
        assert_eq!(refused_parameter(&q, "bad"), "(one of: start_date, transaction_status)");
    }

    #[test]
    fn credentials_never_debug_print_secrets() {
        let c = Credentials {
            app_id: 1,
            client_id: "id".into(),
            client_secret: SecretString::from("very-secret"),
            basic: SecretString::from("basic-secret"),
            sandbox: false,
        };
        let s = format!("{c:?}");
        assert!(!s.contains("very-secret") && !s.contains("basic-secret"));
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(urlencode("SBX7Q2LM"), "SBX7Q2LM");
        assert_eq!(urlencode("../x"), "%2E%2E%2Fx");
        assert_eq!(urlencode("a b/ç"), "a%20b%2F%C3%A7");
    }
}

//! The apps' REST API (`/v1`): access reads with an app API key, described by an OpenAPI
//! document at `/v1/openapi.json` and browsable at `/v1/docs` (assets inside the binary). Every
//! error, the framework's own included, is `application/problem+json` (RFC 9457).
use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Endpoint, EndpointExt, Request, Response, Route};
use poem_openapi::auth::Bearer;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, OpenApiService, SecurityScheme, Tags};

use crate::domain::TargetKind;
use crate::services::api_keys::{self, AppKey};
use crate::services::app_access::{self, BuyerAccess, Verdict, Who};
use crate::services::buyers::AccessView;
use crate::{AppError, AppState};

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Tags)]
enum Tag {
    /// Whether a buyer may open what they bought.
    Access,
    /// Every access change, in order: catch up on what the notifications said.
    Changes,
}

/// An app API key (`pk_…`), created by an admin with `createApiKey` or `porteiro keys create`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "pk_<id>_<secret>", checker = "check_key")]
struct AppApiKey(AppKey);

async fn check_key(req: &Request, bearer: Bearer) -> poem::Result<AppKey> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| poem::Error::from_status(StatusCode::SERVICE_UNAVAILABLE))?;
    let key = api_keys::authenticate(state, &bearer.token)
        .await
        .map_err(|e| poem::Error::from(Problem::from(e)))?;
    if let Some(limiter) = state.api_limit.as_ref() {
        let (info, over) = match limiter.take(key.id) {
            Ok(info) => (info, None),
            Err((info, retry)) => (info, Some(retry)),
        };
        if let Some(slot) = req.extensions().get::<RateSlot>() {
            *slot.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((info, over));
        }
        if let Some(retry) = over {
            return Err(Problem::from(AppError::RateLimited(retry)).into());
        }
    }
    Ok(key)
}

/// Where the key check leaves what the rate limit said, for the answer's headers.
#[derive(Clone, Default)]
struct RateSlot(std::sync::Arc<std::sync::Mutex<Option<RateSaid>>>);

/// The allowance, and the seconds to wait when over it.
type RateSaid = (crate::rate_limit::RateInfo, Option<u64>);

/// `RateLimit-Limit/Remaining/Reset` on every answer to an authenticated key, and `Retry-After`
/// on a 429.
fn with_rate_headers(mut res: Response, slot: &RateSlot) -> Response {
    use poem::http::HeaderValue;
    let said = *slot.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some((info, over)) = said else {
        return res;
    };
    let h = res.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(info.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(info.remaining));
    h.insert("ratelimit-reset", HeaderValue::from(info.reset_secs));
    if let Some(retry) = over {
        h.insert(poem::http::header::RETRY_AFTER, HeaderValue::from(retry));
    }
    res
}

/// A problem report (RFC 9457) with Porteiro's stable error code and, for invalid input, one
/// message per field.
#[derive(Object, Debug)]
struct ProblemDetails {
    /// Always `about:blank`: `code` is the machine-readable kind.
    #[oai(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    /// BAD_USER_INPUT, UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, UNAVAILABLE…
    code: String,
    /// One entry per wrong field (empty unless the input was invalid).
    errors: Vec<FieldError>,
}

#[derive(Object, Debug)]
struct FieldError {
    field: String,
    message: String,
}

#[derive(ApiResponse, Debug)]
enum Problem {
    /// GET only: the answer has not changed since the `ETag` given in `If-None-Match` (no body).
    /// Every GET answer carries a strong `ETag` and `Cache-Control: private, no-cache`.
    #[oai(status = 304)]
    #[allow(dead_code)] // answered by the conditional layer in `routes`; here for the document
    NotModified,
    /// The request is malformed; `errors` names each wrong field.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<ProblemDetails>),
    /// No API key, or an unknown or revoked one.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<ProblemDetails>),
    /// The key lacks the scope this call needs.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<ProblemDetails>),
    /// The package or plan does not exist in this app.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<ProblemDetails>),
    /// `POST` only: the body is not sent as `application/json`.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<ProblemDetails>),
    /// Over the key's rate limit (`PORTEIRO_API_RATE_LIMIT` a minute): retry after
    /// `Retry-After` seconds. Every answer to a key carries `RateLimit-Limit`,
    /// `RateLimit-Remaining` and `RateLimit-Reset`.
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<ProblemDetails>),
    /// The database is unreachable for now; retry.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<ProblemDetails>),
}

fn details(status: StatusCode, code: &str, detail: String, errors: Vec<FieldError>) -> ProblemDetails {
    ProblemDetails {
        kind: "about:blank".into(),
        title: status.canonical_reason().unwrap_or("Error").into(),
        status: status.as_u16(),
        detail,
        code: code.into(),
        errors,
    }
}

impl From<AppError> for Problem {
    fn from(e: AppError) -> Self {
        e.log();
        let errors = match &e {
            AppError::InvalidFields(f) => f
                .iter()
                .map(|(field, message)| FieldError {
                    field: field.clone(),
                    message: message.clone(),
                })
                .collect(),
            _ => Vec::new(),
        };
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let body = Json(details(status, e.code(), e.public_message(), errors));
        match e.http_status() {
            400 => Problem::BadRequest(body),
            401 => Problem::Unauthorized(body),
            403 => Problem::Forbidden(body),
            404 => Problem::NotFound(body),
            415 => Problem::UnsupportedMediaType(body),
            429 => Problem::TooManyRequests(body),
            // Everything else is on our side and temporary from the app's point of view: an
            // app retries a 503, and no user input can produce a 500 here.
            _ => {
                let mut b = body.0;
                b.status = 503;
                b.title = "Service Unavailable".into();
                Problem::Unavailable(Json(b))
            }
        }
    }
}

type Answer<T> = Result<Json<T>, Problem>;

/// Declares a newtype over a value the document shows as a string of `format` (`None`: any
/// string), so one shape of `Type` serves all of them.
macro_rules! string_type {
    ($ty:ident, $name:literal, $format:expr) => {
        impl poem_openapi::types::Type for $ty {
            const IS_REQUIRED: bool = true;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }

            fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
                use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
                MetaSchemaRef::Inline(Box::new(match $format {
                    Some(format) => MetaSchema::new_with_format("string", format),
                    None => MetaSchema::new("string"),
                }))
            }

            fn as_raw_value(&self) -> Option<&Self> {
                Some(self)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
                Box::new(self.as_raw_value().into_iter())
            }
        }
    };
}

string_type!(Timestamp, "string_date-time", Some("date-time"));
string_type!(EmailParam, "string_idn-email", Some("idn-email"));
string_type!(Text, "string", None::<&'static str>);

/// A moment, written as everywhere in Porteiro: RFC 3339, UTC with `Z`, milliseconds
/// (`2026-12-04T18:07:15.123Z`).
struct Timestamp(DateTime<Utc>);

impl poem_openapi::types::ToJSON for Timestamp {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(crate::domain::timestamp(self.0)))
    }
}

impl poem_openapi::types::ParseFromJSON for Timestamp {
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        let parsed = DateTime::<Utc>::parse_from_json(value).map_err(poem_openapi::types::ParseError::propagate)?;
        Ok(Timestamp(parsed))
    }
}

/// An e-mail address as a query parameter (`format: idn-email`: other scripts than Latin are
/// accepted, RFC 6531). Any text is taken here; the
/// service checks it and answers a 400 that names the field.
struct EmailParam(String);

/// A JSON string, and only a string (poem-openapi's `String` also takes numbers and booleans,
/// which the document does not allow).
struct Text(String);

impl poem_openapi::types::ParseFromJSON for Text {
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        match value {
            Some(serde_json::Value::String(s)) => Ok(Text(s)),
            other => Err(poem_openapi::types::ParseError::expected_type(
                other.unwrap_or_default(),
            )),
        }
    }
}

impl poem_openapi::types::ToJSON for Text {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}

impl poem_openapi::types::ToJSON for EmailParam {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}

/// The document's examples: one buyer asked about one plan.
fn example_email() -> Option<EmailParam> {
    Some(EmailParam("ana.teste@example.com".into()))
}

fn example_plan_key() -> String {
    "mensal".into()
}

fn example_kind() -> HoldersOf {
    HoldersOf::Plans
}

fn example_plan() -> Option<String> {
    Some("1".into())
}

impl poem_openapi::types::ParseFromParameter for EmailParam {
    fn parse_from_parameter(value: &str) -> poem_openapi::types::ParseResult<Self> {
        Ok(EmailParam(value.to_string()))
    }
}

/// One entitlement: what it opens, whether it does now, and until when.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct Entitlement {
    /// The entitlement: the notifications' `data.entitlement.id`.
    id: i32,
    /// Grows with every change an app is told of: the notifications'
    /// `data.entitlement.version`. Keep the highest you applied; a notification with a lower one
    /// is older than what you read here.
    version: i64,
    /// When it last changed.
    updated_at: Timestamp,
    /// `package` (Pacote de Produtos) or `plan` (Plano de Assinatura).
    target_kind: String,
    target_id: i32,
    /// `null` if the package or plan was deleted since.
    #[oai(nullable)]
    target_name: Option<String>,
    /// The package's or plan's key, when an admin gave it one.
    #[oai(nullable)]
    target_key: Option<String>,
    /// Whether it opens the target now.
    active: bool,
    /// ACTIVE, SUSPENDED (a dispute or unpaid charge), EXPIRED or REVOKED.
    status: String,
    /// When it ends (`null`: no end date).
    #[oai(nullable)]
    expires_at: Option<Timestamp>,
    #[oai(nullable)]
    granted_at: Option<Timestamp>,
    #[oai(nullable)]
    revoked_at: Option<Timestamp>,
    /// Where it comes from: `sub:<subscriber code>`, `txn:<transaction>` or `manual:…`.
    source: String,
    /// The subscription behind it, when there is one.
    #[oai(nullable)]
    subscriber_code: Option<String>,
    /// Why it is in this state (the last event or admin decision).
    reason: String,
    #[oai(flatten)]
    state: StateBody,
}

/// A subscription's state. Each flag holds only while access is live (active or suspended), so
/// none contradicts `expiresAt`: past the end, all are false.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct StateBody {
    /// Active, and the next charge of its plan will extend it.
    will_renew: bool,
    /// The subscription was cancelled: access lasts until `expiresAt` (what was paid for).
    cancel_at_period_end: bool,
    /// A renewal charge failed: access lasts until `expiresAt` (the grace) unless one is paid.
    in_grace: bool,
    /// A dispute holds it (`status` SUSPENDED) until its transaction is settled.
    suspended: bool,
}

impl From<crate::domain::SubscriptionState> for StateBody {
    fn from(s: crate::domain::SubscriptionState) -> Self {
        StateBody {
            will_renew: s.will_renew,
            cancel_at_period_end: s.cancel_at_period_end,
            in_grace: s.in_grace,
            suspended: s.suspended,
        }
    }
}

impl From<&AccessView> for Entitlement {
    fn from(a: &AccessView) -> Self {
        let e = &a.entitlement;
        Entitlement {
            id: e.id,
            version: e.version,
            updated_at: Timestamp(e.updated_at),
            target_kind: e.target_kind.clone(),
            target_id: e.target_id,
            target_name: a.target.as_ref().map(|t| t.name.clone()),
            target_key: a.target.as_ref().and_then(|t| t.key.clone()),
            active: a.active,
            status: a.status.as_str().into(),
            expires_at: e.expires_at.map(Timestamp),
            granted_at: e.granted_at.map(Timestamp),
            revoked_at: e.revoked_at.map(Timestamp),
            source: e.source.clone(),
            subscriber_code: e.source.strip_prefix("sub:").map(str::to_string),
            reason: e.reason.clone(),
            state: a.state().into(),
        }
    }
}

/// A buyer's access. A buyer never seen is `known: false` with no entitlements.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct BuyerAccessBody {
    /// The buyer's e-mail as stored (trimmed, lower-case); `null` for a subscriber code nobody
    /// holds.
    #[oai(nullable)]
    email: Option<String>,
    /// The code asked about, when the question was by subscriber code.
    #[oai(nullable)]
    subscriber_code: Option<String>,
    known: bool,
    /// Whether any entitlement is active now.
    active: bool,
    entitlements: Vec<Entitlement>,
}

impl From<BuyerAccess> for BuyerAccessBody {
    fn from(b: BuyerAccess) -> Self {
        BuyerAccessBody {
            active: b.access.iter().any(|a| a.active),
            entitlements: b.access.iter().map(Entitlement::from).collect(),
            email: b.email,
            subscriber_code: b.subscriber_code,
            known: b.known,
        }
    }
}

/// Whether the buyer may open one package or plan now.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct CheckBody {
    active: bool,
    /// ACTIVE, SUSPENDED, EXPIRED, REVOKED, or NONE when the buyer never held it.
    status: String,
    /// While active: when it ends (`null`: no end). Otherwise: when it ended, if it had an end.
    #[oai(nullable)]
    expires_at: Option<Timestamp>,
    /// The state of the entitlement this answer stands on (the active one that lasts longest).
    #[oai(flatten)]
    state: StateBody,
}

impl From<Verdict> for CheckBody {
    fn from(v: Verdict) -> Self {
        CheckBody {
            active: v.active,
            status: v.status.into(),
            expires_at: v.expires_at.map(Timestamp),
            state: v.state.into(),
        }
    }
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct LookupRequest {
    /// Up to 500 e-mails and subscriber codes together (`null` or absent: none).
    #[oai(default, nullable)]
    emails: Vec<Text>,
    #[oai(default, nullable)]
    subscriber_codes: Vec<Text>,
}

#[derive(Object)]
struct LookupBody {
    /// One per e-mail, then one per subscriber code, in the order asked.
    results: Vec<BuyerAccessBody>,
}

/// A product package or subscription plan of the app.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct TargetBody {
    /// `package` (Pacote de Produtos) or `plan` (Plano de Assinatura).
    kind: String,
    /// Its id in Porteiro: `package=` or `plan=` in `GET /access/check`, `targetId` in
    /// entitlements.
    id: i32,
    /// The key an admin gave it: apps may use it wherever an id goes (`plan=curso-mensal`,
    /// `/plans/curso-mensal/holders`); it stays the same between installations.
    #[oai(nullable)]
    key: Option<String>,
    name: String,
    /// Packages: days of access from the purchase (`null`: lifetime). Plans: `null`.
    #[oai(nullable)]
    access_days: Option<i32>,
    /// Plans: days one charge covers when Hotmart omits the next charge date.
    #[oai(nullable)]
    period_days: Option<i32>,
    /// Plans: days access is kept past a charge date that was not paid.
    #[oai(nullable)]
    grace_days: Option<i32>,
}

#[derive(Object)]
struct TargetsBody {
    /// Packages first, then plans, each by id.
    targets: Vec<TargetBody>,
}

/// Whose holders: a package's or a plan's.
#[derive(poem_openapi::Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
enum HoldersOf {
    Packages,
    Plans,
}

/// One buyer who holds (or held) the package or plan, with the check's verdict for it.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct HolderBody {
    email: String,
    /// Whether the buyer may open it now.
    active: bool,
    /// ACTIVE, SUSPENDED, EXPIRED or REVOKED: the best any of their entitlements to it gives.
    status: String,
    /// While active: when it ends (`null`: no end). Otherwise: when it ended, if it had an end.
    #[oai(nullable)]
    expires_at: Option<Timestamp>,
    #[oai(flatten)]
    state: StateBody,
    /// Their entitlements to it (ids, as in `GET /access`).
    entitlements: Vec<i32>,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct HoldersBody {
    /// `package` or `plan`.
    target_kind: String,
    target_id: i32,
    /// By buyer, in a stable order.
    data: Vec<HolderBody>,
    /// Give it as `after` for the next page; `null` at the end.
    #[oai(nullable)]
    next_cursor: Option<String>,
    /// With `includeTotal=true`: how many buyers the filter matches now (it counts them all,
    /// so ask once, not on every page). Otherwise `null`.
    #[oai(nullable)]
    total: Option<u64>,
}

/// One access change: a notification's body, with its cursor and `webhook-id`.
#[derive(Object)]
struct ChangeBody {
    /// Its place in the feed: give it as `after` to read what came next.
    cursor: String,
    /// The notification's `webhook-id` (the same on every delivery): deduplicate on it.
    id: String,
    /// `access.granted`, `access.revoked`, `access.suspended`, `access.expired` or
    /// `access.changed`.
    #[oai(rename = "type")]
    kind: String,
    /// When it was announced.
    timestamp: String,
    /// As in the notification: `buyer`, `target`, `entitlement` (`id`, `source`, `version`),
    /// `access`, `previous`, `cause`.
    data: serde_json::Value,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct ChangesBody {
    /// Oldest first.
    data: Vec<ChangeBody>,
    /// Give it as `after` for the next page (the last change's cursor, or `after` itself when
    /// nothing came after it). Keep it: it is where to resume.
    next_cursor: String,
    /// Whether more changes follow right away.
    has_more: bool,
}

struct AccessApi;

#[OpenApi(tag = "Tag::Access")]
impl AccessApi {
    /// A buyer's entitlements
    ///
    /// Every package and plan the buyer holds or held, with whether each opens now. Ask by
    /// exactly one of `email` (an e-mail address) or `subscriberCode`: neither or both is a 400.
    /// An unknown buyer is an empty list, not an error.
    #[oai(path = "/access", method = "get")]
    async fn access(
        &self,
        state: Data<&AppState>,
        key: AppApiKey,
        /// The buyer's e-mail; exactly one of `email` and `subscriberCode`.
        #[oai(example = "example_email")]
        email: Query<Option<EmailParam>>,
        /// The buyer's Hotmart subscriber code; exactly one of `email` and `subscriberCode`.
        #[oai(name = "subscriberCode")]
        subscriber_code: Query<Option<String>>,
        /// The `ETag` of an answer you hold: if it is still the answer, a 304 without a body.
        #[oai(name = "If-None-Match")]
        _if_none_match: Header<Option<String>>,
    ) -> Answer<BuyerAccessBody> {
        let who = Who::from_params(email.0.map(|e| e.0), subscriber_code.0)?;
        Ok(Json(app_access::of(&state, &key.0, who).await?.into()))
    }

    /// May this buyer open this package or plan now?
    ///
    /// The hot path, answered from memory. Give exactly one of `email` (an e-mail address) or
    /// `subscriberCode`, and exactly one of `package` or `plan` (their ids in Porteiro): neither
    /// or both is a 400. A package or plan this app does not have is a 404 (a mistyped id must
    /// not deny everyone in silence). A revocation is visible to the next check.
    #[oai(path = "/access/check", method = "get")]
    #[allow(clippy::too_many_arguments)] // one per documented parameter
    async fn check(
        &self,
        state: Data<&AppState>,
        key: AppApiKey,
        /// The buyer's e-mail; exactly one of `email` and `subscriberCode`.
        #[oai(example = "example_email")]
        email: Query<Option<EmailParam>>,
        /// The buyer's Hotmart subscriber code; exactly one of `email` and `subscriberCode`.
        #[oai(name = "subscriberCode")]
        subscriber_code: Query<Option<String>>,
        /// A product package's id or key in Porteiro; exactly one of `package` and `plan`.
        package: Query<Option<String>>,
        /// A subscription plan's id or key in Porteiro; exactly one of `package` and `plan`.
        #[oai(example = "example_plan")]
        plan: Query<Option<String>>,
        /// The `ETag` of an answer you hold: if it is still the answer, a 304 without a body.
        #[oai(name = "If-None-Match")]
        _if_none_match: Header<Option<String>>,
    ) -> Answer<CheckBody> {
        let who = Who::from_params(email.0.map(|e| e.0), subscriber_code.0)?;
        let (kind, raw) = match (package.0, plan.0) {
            (Some(p), None) => (crate::domain::TargetKind::Package, p),
            (None, Some(p)) => (crate::domain::TargetKind::Plan, p),
            _ => return Err(AppError::bad("give package or plan (one of them)").into()),
        };
        let target = app_access::resolve(&state, key.0.app_id, kind, &raw).await?;
        Ok(Json(app_access::check(&state, &key.0, who, target).await?.into()))
    }

    /// The app's packages and plans
    ///
    /// Every product package and subscription plan of the app, with the id to ask about.
    #[oai(path = "/targets", method = "get")]
    async fn targets(
        &self,
        state: Data<&AppState>,
        key: AppApiKey,
        /// The `ETag` of an answer you hold: if it is still the answer, a 304 without a body.
        #[oai(name = "If-None-Match")]
        _if_none_match: Header<Option<String>>,
    ) -> Answer<TargetsBody> {
        let targets = app_access::targets(&state, &key.0).await?;
        Ok(Json(TargetsBody {
            targets: targets
                .into_iter()
                .map(|t| TargetBody {
                    kind: t.kind.as_str().to_string(),
                    id: t.id,
                    key: t.key,
                    name: t.name,
                    access_days: t.access_days,
                    period_days: t.period_days,
                    grace_days: t.grace_days,
                })
                .collect(),
        }))
    }

    /// Who holds a package or plan
    ///
    /// The buyers of a product package (`/packages/{key}/holders`) or the subscribers of a
    /// subscription plan (`/plans/{key}/holders`), a page at a time: by buyer, each once, stable
    /// while access changes during the walk, with the verdict `GET /access/check` would give
    /// each (subscription state included). `{key}` is the package's or plan's id or its key.
    #[oai(path = "/:kind/:key/holders", method = "get")]
    #[allow(clippy::too_many_arguments)] // one per documented parameter
    async fn holders(
        &self,
        state: Data<&AppState>,
        api_key: AppApiKey,
        /// `packages` or `plans`.
        #[oai(example = "example_kind")]
        kind: Path<HoldersOf>,
        /// The package's or plan's id or key.
        #[oai(example = "example_plan_key")]
        key: Path<String>,
        /// `active` (the default), `suspended`, `expired`, `revoked` or `any`.
        status: Query<Option<String>>,
        /// `nextCursor` of the previous page.
        after: Query<Option<String>>,
        /// How many buyers at most (1 to 1,000; 100 by default).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u64>>,
        /// Count every buyer the filter matches (`total`).
        #[oai(name = "includeTotal")]
        include_total: Query<Option<bool>>,
        /// The `ETag` of an answer you hold: if it is still the answer, a 304 without a body.
        #[oai(name = "If-None-Match")]
        _if_none_match: Header<Option<String>>,
    ) -> Answer<HoldersBody> {
        use crate::services::holders;
        let kind = match kind.0 {
            HoldersOf::Packages => TargetKind::Package,
            HoldersOf::Plans => TargetKind::Plan,
        };
        let filter = holders::Filter::parse(status.0.as_deref())?;
        let page = holders::page(
            &state,
            &api_key.0,
            kind,
            &key.0,
            filter,
            after.0.as_deref(),
            limit.0,
            include_total.0.unwrap_or(false),
        )
        .await?;
        Ok(Json(HoldersBody {
            target_kind: page.target.0.as_str().to_string(),
            target_id: page.target.1,
            data: page
                .holders
                .into_iter()
                .map(|h| HolderBody {
                    email: h.email,
                    active: h.verdict.active,
                    status: h.verdict.status.to_string(),
                    expires_at: h.verdict.expires_at.map(Timestamp),
                    state: h.verdict.state.into(),
                    entitlements: h.entitlements,
                })
                .collect(),
            next_cursor: page.next_cursor,
            total: page.total,
        }))
    }

    /// The changes feed
    ///
    /// Every access change the app's notifications announce (the same ids, bodies and versions),
    /// in order, from `after` on (from the start without it). An app that was down reads from the
    /// last cursor it kept until `hasMore` is false, then relies on notifications, each of which
    /// carries its `cursor` too. Needs the `changes:read` scope.
    #[oai(path = "/changes", method = "get", tag = "Tag::Changes")]
    async fn changes(
        &self,
        state: Data<&AppState>,
        key: AppApiKey,
        /// A cursor this feed returned (`nextCursor`, or a change's `cursor`); `0` or absent: from
        /// the start.
        after: Query<Option<String>>,
        /// How many changes at most (1 to 1,000; 100 by default).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u64>>,
        /// The `ETag` of an answer you hold: if it is still the answer, a 304 without a body.
        #[oai(name = "If-None-Match")]
        _if_none_match: Header<Option<String>>,
    ) -> Answer<ChangesBody> {
        let page = crate::services::changes::page(&state, &key.0, after.0.as_deref(), limit.0).await?;
        Ok(Json(ChangesBody {
            data: page
                .changes
                .into_iter()
                .map(|c| ChangeBody {
                    cursor: c.cursor,
                    id: c.id,
                    kind: c.event_type,
                    timestamp: c.timestamp,
                    data: c.data,
                })
                .collect(),
            next_cursor: page.next_cursor,
            has_more: page.has_more,
        }))
    }

    /// Many buyers at once
    ///
    /// Up to 500 e-mails and subscriber codes in one call; each gets the same answer as
    /// `GET /access`. Invalid entries are all named in one 400. The body must be sent as
    /// `application/json` (otherwise 415).
    #[oai(path = "/access/lookup", method = "post")]
    async fn lookup(&self, state: Data<&AppState>, key: AppApiKey, body: Json<LookupRequest>) -> Answer<LookupBody> {
        let texts = |v: Vec<Text>| v.into_iter().map(|t| t.0).collect::<Vec<_>>();
        let (emails, codes) = (texts(body.0.emails), texts(body.0.subscriber_codes));
        let found = app_access::lookup(&state, &key.0, &emails, &codes).await?;
        Ok(Json(LookupBody {
            results: found.into_iter().map(Into::into).collect(),
        }))
    }
}

fn service() -> OpenApiService<AccessApi, ()> {
    OpenApiService::new(AccessApi, "Porteiro app API", env!("CARGO_PKG_VERSION"))
        .description(
            "Read a buyer's access to the app's product packages and subscription plans. \
             Authenticate with an app API key as a bearer token.",
        )
        .server("/v1")
}

/// The OpenAPI document, for tests and `porteiro openapi`.
pub fn spec() -> String {
    service().spec()
}

/// `/v1`: the API, its document and its page. Any error becomes a problem report.
pub fn routes() -> impl Endpoint {
    let api = service();
    let docs = offline(api.rapidoc_html());
    let spec = api.spec_endpoint();
    Route::new()
        .at("/openapi.json", spec)
        .at(
            "/docs",
            poem::endpoint::make_sync(move |_| poem::web::Html(docs.clone())),
        )
        .nest("/", api)
        .catch_all_error(as_problem)
        .around(|ep, mut req| async move {
            let slot = RateSlot::default();
            req.extensions_mut().insert(slot.clone());
            let post_only = req.uri().path().ends_with("/access/lookup");
            let get = req.method() == poem::http::Method::GET;
            let if_none_match = req
                .headers()
                .get(poem::http::header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let res = ep.call(req).await.unwrap_or_else(poem::Error::into_response);
            let res = with_rate_headers(res, &slot);
            let res = with_allow(res, if post_only { "POST" } else { "GET" });
            Ok(if get {
                conditional(res, if_none_match.as_deref()).await
            } else {
                res
            })
        })
}

/// GET answers carry a strong ETag (a hash of the body), and one whose ETag the caller already
/// has (`If-None-Match`) is a 304 without a body. `Cache-Control: private, no-cache`: a client
/// may keep an answer but must ask again (cheaply, with its ETag) before using it.
async fn conditional(res: Response, if_none_match: Option<&str>) -> Response {
    use poem::http::{HeaderValue, header};
    use sha2::Digest;
    let (mut parts, body) = res.into_parts();
    parts
        .headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    if parts.status != StatusCode::OK {
        return Response::from_parts(parts, body);
    }
    let Ok(bytes) = body.into_bytes().await else {
        return Response::builder().status(StatusCode::SERVICE_UNAVAILABLE).finish();
    };
    let tag = format!("\"{}\"", &hex::encode(sha2::Sha256::digest(&bytes))[..32]);
    let matches = if_none_match.is_some_and(|v| {
        v.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == tag || t == "*")
    });
    if let Ok(v) = HeaderValue::from_str(&tag) {
        parts.headers.insert(header::ETAG, v);
    }
    if matches {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_TYPE);
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, poem::Body::empty());
    }
    Response::from_parts(parts, poem::Body::from(bytes))
}

/// RapiDoc's page (its script is inlined by poem-openapi) without what it fetches from elsewhere,
/// Google's fonts (a stylesheet link, and `FontFace`s the script loads unless `load-fonts` is
/// false): an offline or locked-down server must still show it, and no viewer's browser may be
/// sent anywhere but here.
fn offline(html: String) -> String {
    html.lines()
        .filter(|l| !l.contains("fonts.googleapis.com"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(
            "regular-font=\"Open Sans\"",
            "load-fonts=\"false\" regular-font=\"system-ui, sans-serif\"",
        )
        .replace("mono-font = \"Roboto Mono\"", "mono-font=\"ui-monospace, monospace\"")
        .replace("<title>RapiDoc</title>", "<title>Porteiro app API</title>")
}

/// A 405 says which method the path takes (RFC 9110 requires `Allow`).
fn with_allow(mut res: Response, methods: &'static str) -> Response {
    if res.status() == StatusCode::METHOD_NOT_ALLOWED {
        res.headers_mut()
            .insert(poem::http::header::ALLOW, poem::http::HeaderValue::from_static(methods));
    }
    res
}

/// The framework's own errors (a missing key, an unparsable parameter or body, an unknown path)
/// in the same shape as ours; ours already are problem reports and pass unchanged.
async fn as_problem(err: poem::Error) -> Response {
    let status = err.status();
    let message = err.to_string();
    let resp = err.into_response();
    let is_problem = resp
        .headers()
        .get(poem::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return resp;
    }
    let code = match status.as_u16() {
        401 => "UNAUTHENTICATED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        415 => "UNSUPPORTED_MEDIA_TYPE",
        s if s >= 500 => "UNAVAILABLE",
        _ => "BAD_USER_INPUT",
    };
    let detail = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        message
    };
    let body = details(status, code, detail, Vec::new());
    let json = serde_json::json!({
        "type": body.kind, "title": body.title, "status": body.status,
        "detail": body.detail, "code": body.code, "errors": [],
    });
    Response::builder()
        .status(status)
        .content_type(PROBLEM_JSON)
        .body(json.to_string())
}

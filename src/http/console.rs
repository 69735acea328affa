//! The admin console: static files inside the binary (no CDN, works offline) that talk to the
//! server only through the public GraphQL API, plus sign-in by one-time link and sign-out.
//!
//! The session is an HttpOnly, SameSite=Strict cookie. GraphQL accepts it only together with the
//! `x-porteiro-console` header, which a page on another site cannot add to a request without a
//! CORS preflight this server never grants: that is the CSRF guard.
use poem::http::{HeaderMap, StatusCode, header};
use poem::web::{Data, Form, Query};
use poem::{IntoResponse, Response, Route, get, handler, post};
use serde::Deserialize;

use crate::AppState;

pub const COOKIE: &str = "porteiro_session";
pub const CSRF_HEADER: &str = "x-porteiro-console";

const INDEX: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const APP_CSS: &str = include_str!("console/app.css");

/// What the console's own pages may load: themselves, and nothing else.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn routes() -> Route {
    Route::new()
        .at("/", get(index))
        .at("/app.js", get(app_js))
        .at("/app.css", get(app_css))
        .at("/login", get(login_page).post(login))
        .at("/logout", post(logout))
}

#[handler]
pub fn to_console() -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, "/console/")
        .finish()
}

fn page(status: StatusCode, content_type: &str, body: &'static str) -> Response {
    Response::builder()
        .status(status)
        .content_type(content_type)
        .header("content-security-policy", CSP)
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
}

#[handler]
fn index() -> Response {
    page(StatusCode::OK, "text/html; charset=utf-8", INDEX)
}

#[handler]
fn app_js() -> Response {
    page(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS)
}

#[handler]
fn app_css() -> Response {
    page(StatusCode::OK, "text/css; charset=utf-8", APP_CSS)
}

/// The session token the browser sent, if any.
pub fn session_of(headers: &HeaderMap) -> Option<String> {
    // Only requests made by the console's own script carry this header.
    headers.get(CSRF_HEADER)?;
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn small_page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"pt-BR\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title} · Porteiro</title><link rel=\"stylesheet\" href=\"/console/app.css\"></head>\
         <body class=\"signin\"><main class=\"card\"><h1>Porteiro</h1>{body}</main></body></html>",
    );
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header("content-security-policy", CSP)
        .header("referrer-policy", "no-referrer")
        .header(header::CACHE_CONTROL, "no-store")
        .body(html)
}

#[derive(Deserialize)]
struct LoginLink {
    token: Option<String>,
}

/// The link `porteiro login` prints. It does not sign in by itself (a mail scanner or a link
/// preview fetching it would spend it): it shows a button that does.
#[handler]
fn login_page(Query(q): Query<LoginLink>) -> Response {
    let Some(token) = q.token.filter(|t| !t.is_empty() && t.len() < 200) else {
        return small_page(
            StatusCode::BAD_REQUEST,
            "Entrar",
            "<p>Este link de acesso está incompleto. Peça outro com <code>porteiro login --app SLUG</code>.</p>\
             <p lang=\"en\">This sign-in link is incomplete. Ask for another with <code>porteiro login --app SLUG</code>.</p>",
        );
    };
    small_page(
        StatusCode::OK,
        "Entrar",
        &format!(
            "<form method=\"post\" action=\"/console/login\"><input type=\"hidden\" name=\"token\" value=\"{}\">\
             <p>Você abriu um link de acesso ao console. <span lang=\"en\">You opened a console sign-in link.</span></p>\
             <button type=\"submit\" id=\"signin\">Entrar / Sign in</button></form>",
            escape(&token)
        ),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

fn cookie(state: &AppState, value: &str, max_age: i64) -> String {
    let secure = if state.settings.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

#[handler]
async fn login(state: Data<&AppState>, Form(f): Form<LoginForm>) -> Response {
    match crate::services::console::redeem(&state, &f.token).await {
        Ok((session, _expires)) => {
            let max_age = crate::services::console::SESSION_TTL.num_seconds();
            Response::builder()
                .status(StatusCode::SEE_OTHER)
                .header(header::LOCATION, "/console/")
                .header(header::SET_COOKIE, cookie(&state, &session, max_age))
                .header(header::CACHE_CONTROL, "no-store")
                .finish()
        }
        Err(e) => {
            e.log();
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            small_page(
                status,
                "Entrar",
                &format!(
                    "<p role=\"alert\">{}</p><p>Peça outro link com <code>porteiro login --app SLUG</code>.</p>\
                     <p lang=\"en\">{}</p>",
                    // The seller reads Portuguese first; the server's words follow for support.
                    if e.http_status() == 401 || e.http_status() == 404 {
                        "Este link de acesso não vale mais: já foi usado, expirou ou não existe."
                    } else {
                        "Não foi possível entrar agora: tente de novo em instantes."
                    },
                    escape(&e.public_message())
                ),
            )
        }
    }
}

#[handler]
async fn logout(state: Data<&AppState>, headers: &HeaderMap) -> Response {
    let Some(session) = session_of(headers) else {
        return StatusCode::FORBIDDEN.into_response();
    };
    if let Err(e) = crate::services::console::end(&state, &session).await {
        e.log();
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::SET_COOKIE, cookie(&state, "", 0))
        .finish()
}

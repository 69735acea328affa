//! Actions on the producer's Hotmart account: checking the credentials, cancelling and
//! reactivating subscriptions. Access changes still come from the webhook Hotmart sends after
//! them (unless support asks for an immediate revoke).
use serde_json::json;

use super::{AdminWrite, Change, Then};
use super::{entitlements, integration};
use crate::audit::{self, Entry};
use crate::auth::Principal;
use crate::{AppError, AppResult, AppState};

#[derive(Debug, Clone)]
pub struct ConnectionTest {
    pub ok: bool,
    /// `OK`, or the kind of failure ([`crate::hotmart::api::ApiError::code`]).
    pub code: &'static str,
    pub environment: String,
    pub message: String,
}

/// Calls Hotmart with the app's credentials (and drops its cached token): an admin action, like
/// every other call to Hotmart.
pub async fn test_connection(state: &AppState, who: &Principal) -> AppResult<ConnectionTest> {
    who.require_admin()?;
    let creds = integration::credentials(state, who.app_id).await?;
    let environment = if creds.sandbox { "sandbox" } else { "production" }.to_string();
    // Always ask Hotmart, not the cache: the point is to prove the saved credentials work now.
    state.hotmart.forget(who.app_id).await;
    Ok(match state.hotmart.token(&creds).await {
        Ok(_) => ConnectionTest {
            ok: true,
            code: "OK",
            message: format!("Hotmart accepted the {environment} credentials"),
            environment,
        },
        Err(e) => ConnectionTest {
            ok: false,
            code: e.code(),
            message: e.to_string(),
            environment,
        },
    })
}

fn check_code(code: &str) -> AppResult<String> {
    let c = code.trim().to_uppercase();
    if c.is_empty() || c.len() > 32 || !c.chars().all(|ch| ch.is_ascii_alphanumeric()) {
        return Err(AppError::InvalidFields(vec![(
            "subscriberCode".into(),
            format!("{code:?} is not a Hotmart subscriber code (letters and digits, like SBX7Q2LM)"),
        )]));
    }
    Ok(c)
}

#[derive(Debug, Clone)]
pub struct SubscriptionAction {
    pub subscriber_code: String,
    pub status: Option<String>,
    pub revoked_access: i32,
}

pub async fn cancel(
    state: &AppState,
    who: &Principal,
    code: &str,
    send_mail: bool,
    revoke_now: bool,
) -> AppResult<SubscriptionAction> {
    who.require_admin()?;
    let code = check_code(code)?;
    let creds = integration::credentials(state, who.app_id).await?;
    let res = state.hotmart.cancel_subscription(&creds, &code, send_mail).await?;
    let status = res.get("status").and_then(|s| s.as_str()).map(str::to_string);
    let txn = AdminWrite::begin(state, who).await?;

    let (revoked, changed) = if revoke_now {
        entitlements::revoke_source(
            &txn,
            who.app_id,
            &format!("sub:{code}"),
            &who.actor(),
            "subscription cancelled by support with immediate revoke",
        )
        .await?
    } else {
        (0, Default::default())
    };
    txn.commit(
        Change::new("subscription.cancel", format!("subscription:{code}"))
            .after(json!({"hotmartStatus": status, "sendMail": send_mail, "revokeNow": revoke_now})),
        [Then::Access(changed)],
    )
    .await?;
    Ok(SubscriptionAction {
        subscriber_code: code,
        status,
        revoked_access: revoked,
    })
}

pub async fn reactivate(state: &AppState, who: &Principal, code: &str, charge: bool) -> AppResult<SubscriptionAction> {
    who.require_admin()?;
    let code = check_code(code)?;
    let creds = integration::credentials(state, who.app_id).await?;
    let res = state.hotmart.reactivate_subscription(&creds, &code, charge).await?;
    let status = res.get("status").and_then(|s| s.as_str()).map(str::to_string);
    audit::record(
        &state.db,
        Entry {
            app_id: who.app_id,
            actor: &who.actor(),
            action: "subscription.reactivate",
            target: format!("subscription:{code}"),
            before: None,
            after: Some(json!({"hotmartStatus": status, "charge": charge})),
            reason: "",
        },
    )
    .await?;
    Ok(SubscriptionAction {
        subscriber_code: code,
        status,
        revoked_access: 0,
    })
}

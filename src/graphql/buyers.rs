use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{ComplexObject, Context, Enum, ID, InputObject, Object, SimpleObject};

use super::catalog::{ProductPackage, SubscriptionPlan};
use super::{GqlResult, caller, gql, gql_shared, parse_id};
use crate::domain::{EntitlementStatus, TargetKind};
use crate::services::{Page, buyers as svc, catalog, entitlements};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum AccessStatus {
    Active,
    Suspended,
    Revoked,
    Expired,
}

impl From<EntitlementStatus> for AccessStatus {
    fn from(s: EntitlementStatus) -> Self {
        match s {
            EntitlementStatus::Active => AccessStatus::Active,
            EntitlementStatus::Suspended => AccessStatus::Suspended,
            EntitlementStatus::Revoked => AccessStatus::Revoked,
            EntitlementStatus::Expired => AccessStatus::Expired,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum TargetType {
    Package,
    Plan,
}

impl From<TargetType> for TargetKind {
    fn from(t: TargetType) -> Self {
        match t {
            TargetType::Package => TargetKind::Package,
            TargetType::Plan => TargetKind::Plan,
        }
    }
}

impl From<TargetKind> for TargetType {
    fn from(t: TargetKind) -> Self {
        match t {
            TargetKind::Package => TargetType::Package,
            TargetKind::Plan => TargetType::Plan,
        }
    }
}

/// A package or a plan.
#[derive(InputObject)]
pub struct TargetInput {
    pub kind: TargetType,
    pub id: ID,
}

impl TargetInput {
    fn parse(&self) -> GqlResult<(TargetKind, i32)> {
        Ok((self.kind.into(), parse_id(&self.id)?))
    }
}

#[derive(SimpleObject, Clone)]
pub struct AccessTarget {
    pub kind: TargetType,
    pub id: ID,
    pub name: String,
}

/// One entitlement: what a buyer may access, from which source, and until when.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Access {
    pub id: ID,
    /// Null only if the package or plan was deleted meanwhile.
    pub target: Option<AccessTarget>,
    pub status: AccessStatus,
    /// True only when this grants access now (counting expiry).
    pub active: bool,
    pub granted_at: Option<super::DateTime>,
    pub revoked_at: Option<super::DateTime>,
    pub expires_at: Option<super::DateTime>,
    /// `txn:<transaction>`, `sub:<subscriber code>` or `manual:<kind>:<id>:<buyer>`.
    pub source: String,
    pub reason: String,
    pub rule_version: Option<i32>,
    pub last_event_id: Option<ID>,
    /// Grows with every change an app is told of: the notifications' `data.entitlement.version`.
    /// Keep the highest you applied.
    pub version: i64,
    pub updated_at: super::DateTime,
    /// Active, and the next charge of its plan will extend it.
    pub will_renew: bool,
    /// The subscription was cancelled: access lasts until `expiresAt`, what was paid for.
    pub cancel_at_period_end: bool,
    /// A renewal charge failed: access lasts until `expiresAt` (the grace) unless one is paid.
    pub in_grace: bool,
    /// A dispute holds it until its transaction is settled.
    pub suspended: bool,
    #[graphql(skip)]
    pub app_id: i32,
    #[graphql(skip)]
    pub target_ref: (TargetKind, i32),
}

#[ComplexObject]
impl Access {
    /// The product package, when this is access to one.
    async fn package(&self, ctx: &Context<'_>) -> GqlResult<Option<ProductPackage>> {
        if self.target_ref.0 != TargetKind::Package {
            return Ok(None);
        }
        caller(ctx)?;
        let loader = ctx.data_unchecked::<DataLoader<Loaders>>();
        Ok(loader
            .load_one(TargetKey(self.app_id, TargetKind::Package, self.target_ref.1))
            .await
            .map_err(gql_shared)?
            .and_then(|t| match t {
                TargetView::Package(p) => Some(p.into()),
                TargetView::Plan(_) => None,
            }))
    }

    /// For an admin's grant (a courtesy): who gave it, when and why. Null for Hotmart sources.
    async fn courtesy(&self, ctx: &Context<'_>) -> GqlResult<Option<Courtesy>> {
        if !self.source.starts_with("manual:") {
            return Ok(None);
        }
        let (state, _) = caller(ctx)?;
        let grant = crate::pipeline::history::last_admin_grant(&state.db, self.app_id, &self.source)
            .await
            .map_err(gql)?;
        Ok(grant.map(|f| Courtesy {
            granted_by: f.actor,
            granted_at: f.occurred_at.into(),
            reason: f.reason,
        }))
    }

    /// The subscription plan, when this is access to one.
    async fn plan(&self, ctx: &Context<'_>) -> GqlResult<Option<SubscriptionPlan>> {
        if self.target_ref.0 != TargetKind::Plan {
            return Ok(None);
        }
        caller(ctx)?;
        let loader = ctx.data_unchecked::<DataLoader<Loaders>>();
        Ok(loader
            .load_one(TargetKey(self.app_id, TargetKind::Plan, self.target_ref.1))
            .await
            .map_err(gql_shared)?
            .and_then(|t| match t {
                TargetView::Plan(p) => Some(p.into()),
                TargetView::Package(_) => None,
            }))
    }
}

/// An admin's grant, in the words a seller reads: "Cortesia de ana@loja — motivo".
#[derive(SimpleObject)]
pub struct Courtesy {
    /// Who granted it (`admin:<subject>`, `admin:console:<who>`).
    pub granted_by: String,
    pub granted_at: super::DateTime,
    pub reason: String,
}

impl From<svc::AccessView> for Access {
    fn from(a: svc::AccessView) -> Self {
        let state = a.state();
        let e = a.entitlement;
        Access {
            id: ID(e.id.to_string()),
            target: a.target.map(|t| AccessTarget {
                kind: t.kind.into(),
                id: ID(t.id.to_string()),
                name: t.name,
            }),
            status: a.status.into(),
            active: a.active,
            granted_at: e.granted_at.map(Into::into),
            revoked_at: e.revoked_at.map(Into::into),
            expires_at: e.expires_at.map(Into::into),
            source: e.source,
            reason: e.reason,
            rule_version: e.rule_version,
            last_event_id: e.last_event_id.map(|i| ID(i.to_string())),
            version: e.version,
            updated_at: e.updated_at.into(),
            will_renew: state.will_renew,
            cancel_at_period_end: state.cancel_at_period_end,
            in_grace: state.in_grace,
            suspended: state.suspended,
            app_id: e.app_id,
            target_ref: (
                TargetKind::parse(&e.target_kind).unwrap_or(TargetKind::Package),
                e.target_id,
            ),
        }
    }
}

/// A buyer's entitlements as the API shows them: through the request's loader, so a list of
/// buyers costs a few queries (or none, from the access cache), not one per buyer.
async fn access_of(ctx: &Context<'_>, app_id: i32, email: &str) -> GqlResult<Vec<Access>> {
    let email = svc::parse_email(email).map_err(gql)?;
    let loader = ctx.data_unchecked::<DataLoader<Loaders>>();
    let held = loader
        .load_one(AccessKey(app_id, email.as_str().to_string()))
        .await
        .map_err(gql_shared)?;
    Ok(held
        .map(|h| h.views(chrono::Utc::now()))
        .unwrap_or_default()
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Batches the reads of one GraphQL request.
pub struct Loaders(pub crate::AppState);

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AccessKey(i32, String);

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CodesKey(i32);

impl Loader<AccessKey> for Loaders {
    type Value = std::sync::Arc<svc::Holdings>;
    type Error = std::sync::Arc<crate::AppError>;

    async fn load(&self, keys: &[AccessKey]) -> Result<HashMap<AccessKey, Self::Value>, Self::Error> {
        let mut by_app: HashMap<i32, Vec<crate::domain::Email>> = HashMap::new();
        for k in keys {
            if let Ok(e) = crate::domain::Email::parse(&k.1) {
                by_app.entry(k.0).or_default().push(e);
            }
        }
        let mut out = HashMap::new();
        for (app_id, emails) in by_app {
            let held = svc::holdings(&self.0, app_id, &emails).await.map_err(|e| {
                e.log();
                std::sync::Arc::new(e)
            })?;
            out.extend(held.into_iter().map(|(e, h)| (AccessKey(app_id, e), h)));
        }
        Ok(out)
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TargetKey(i32, TargetKind, i32);

#[derive(Clone)]
pub enum TargetView {
    Package(catalog::PackageView),
    Plan(catalog::PlanView),
}

/// The packages and plans behind a page of access rows: the app's whole catalogue in four
/// queries (it is small), not two queries per row.
impl Loader<TargetKey> for Loaders {
    type Value = TargetView;
    type Error = std::sync::Arc<crate::AppError>;

    async fn load(&self, keys: &[TargetKey]) -> Result<HashMap<TargetKey, Self::Value>, Self::Error> {
        let shared = |e: crate::AppError| {
            e.log();
            std::sync::Arc::new(e)
        };
        let apps: std::collections::BTreeSet<i32> = keys.iter().map(|k| k.0).collect();
        let mut out = HashMap::new();
        for app_id in apps {
            for p in catalog::list_packages(&self.0.db, app_id).await.map_err(shared)? {
                out.insert(TargetKey(app_id, TargetKind::Package, p.row.id), TargetView::Package(p));
            }
            for p in catalog::list_plans(&self.0.db, app_id).await.map_err(shared)? {
                out.insert(TargetKey(app_id, TargetKind::Plan, p.row.id), TargetView::Plan(p));
            }
        }
        Ok(out)
    }
}

impl Loader<CodesKey> for Loaders {
    type Value = Vec<String>;
    type Error = std::sync::Arc<crate::AppError>;

    async fn load(&self, keys: &[CodesKey]) -> Result<HashMap<CodesKey, Self::Value>, Self::Error> {
        let ids: Vec<i32> = keys.iter().map(|k| k.0).collect();
        let codes = svc::subscriber_codes(&self.0.db, &ids).await.map_err(|e| {
            e.log();
            std::sync::Arc::new(e)
        })?;
        Ok(codes.into_iter().map(|(id, c)| (CodesKey(id), c)).collect())
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Buyer {
    pub id: ID,
    pub email: String,
    pub name: String,
    pub created_at: super::DateTime,
    #[graphql(skip)]
    pub app_id: i32,
    #[graphql(skip)]
    pub row_id: i32,
}

#[ComplexObject]
impl Buyer {
    async fn subscriber_codes(&self, ctx: &Context<'_>) -> GqlResult<Vec<String>> {
        caller(ctx)?;
        let loader = ctx.data_unchecked::<DataLoader<Loaders>>();
        Ok(loader
            .load_one(CodesKey(self.row_id))
            .await
            .map_err(gql_shared)?
            .unwrap_or_default())
    }

    async fn access(&self, ctx: &Context<'_>) -> GqlResult<Vec<Access>> {
        caller(ctx)?;
        access_of(ctx, self.app_id, &self.email).await
    }
}

impl From<entity::buyer::Model> for Buyer {
    fn from(b: entity::buyer::Model) -> Self {
        Buyer {
            id: ID(b.id.to_string()),
            email: b.email,
            name: b.name,
            created_at: b.created_at.into(),
            app_id: b.app_id,
            row_id: b.id,
        }
    }
}

#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    /// Pass as `after` to get the next page.
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct BuyerConnection {
    pub nodes: Vec<Buyer>,
    pub page_info: PageInfo,
}

/// One fact of a source's history: a Hotmart event's decision or an admin's grant or revoke.
#[derive(SimpleObject)]
pub struct ExplainStep {
    pub source: String,
    /// The inbox row the fact came from; null for admin facts.
    pub webhook_event_id: Option<ID>,
    /// Hotmart's event id, or `admin:…` for admin facts.
    pub event_id: String,
    /// The Hotmart event type, or ADMIN_GRANT / ADMIN_REVOKE / ADMIN_MOVE.
    pub event_type: String,
    pub occurred_at: super::DateTime,
    pub transaction: Option<String>,
    /// What the fact does: PAID, MOVE, END_BY, SUSPEND, TERMINATE, ADMIN_GRANT, ADMIN_REVOKE,
    /// ADMIN_MOVE (the source moved to this fact's e-mail).
    pub effect: String,
    /// The end the fact sets (PAID: what the charge covers; END_BY: the latest end).
    pub until: Option<super::DateTime>,
    /// The buyer the fact names; the latest one holds the access.
    pub email: Option<String>,
    /// The rule's decision, or the admin's reason.
    pub decision: String,
    pub rule_version: Option<i32>,
}

#[derive(SimpleObject)]
pub struct AccessExplanation {
    pub email: String,
    /// The buyer's entitlements to the target (one per source).
    pub access: Vec<Access>,
    /// Every fact behind them, in the order they are applied (occurred-at, then precedence).
    pub steps: Vec<ExplainStep>,
}

/// Exactly one of e-mail and subscriber code identifies a buyer.
async fn find_buyer(
    state: &crate::AppState,
    app_id: i32,
    email: Option<String>,
    code: Option<String>,
) -> GqlResult<Option<Buyer>> {
    let found = match (email, code) {
        (Some(e), None) => {
            let email = svc::parse_email(&e).map_err(gql)?;
            svc::find(&state.db, app_id, &email).await
        }
        (None, Some(c)) => svc::find_by_subscriber_code(&state.db, app_id, &c).await,
        _ => {
            return Err(gql(crate::AppError::bad(
                "give either email or subscriberCode (exactly one)",
            )));
        }
    };
    Ok(found.map_err(gql)?.map(Into::into))
}

#[derive(Default)]
pub struct BuyerQuery;

#[Object]
impl BuyerQuery {
    /// Buyers by id; with `search`, those whose e-mail starts with it (any case), or whose
    /// subscriber code or transaction is exactly it, by e-mail. Both served by indexes, so a page
    /// costs the same however many buyers there are; a part in the middle of an e-mail or a name
    /// does not match.
    async fn buyers(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<BuyerConnection> {
        let (state, who) = caller(ctx)?;
        let page = Page::new(first, after.as_deref()).map_err(gql)?;
        let rows = svc::list(&state.db, who.app_id, search.as_deref(), page)
            .await
            .map_err(gql)?;
        let end_cursor = rows.items.last().map(|b| b.id.to_string());
        Ok(BuyerConnection {
            nodes: rows.items.into_iter().map(Into::into).collect(),
            page_info: PageInfo {
                has_next_page: rows.has_next,
                end_cursor,
            },
        })
    }

    /// A buyer by e-mail, or by the subscriber code of a subscription they hold now.
    async fn buyer(
        &self,
        ctx: &Context<'_>,
        email: Option<String>,
        subscriber_code: Option<String>,
    ) -> GqlResult<Option<Buyer>> {
        let (state, who) = caller(ctx)?;
        find_buyer(state, who.app_id, email, subscriber_code).await
    }

    /// Everything the buyer holds, by e-mail or by a subscriber code they hold. Someone who never
    /// bought (or an unknown code) gets an empty list.
    async fn access(
        &self,
        ctx: &Context<'_>,
        email: Option<String>,
        subscriber_code: Option<String>,
    ) -> GqlResult<Vec<Access>> {
        let (state, who) = caller(ctx)?;
        match (email, subscriber_code) {
            // The hot path: straight to the cache (an unknown buyer is cached as holding nothing),
            // without the loader's batching delay.
            (Some(e), None) => {
                let email = svc::parse_email(&e).map_err(gql)?;
                let views = svc::access(state, who.app_id, &email).await.map_err(gql)?;
                Ok(views.into_iter().map(Into::into).collect())
            }
            (email, code) => match find_buyer(state, who.app_id, email, code).await? {
                Some(b) => access_of(ctx, who.app_id, &b.email).await,
                None => Ok(vec![]),
            },
        }
    }

    /// Everything this app holds about the person with this e-mail (LGPD art. 18): buyer rows,
    /// subscriber codes, entitlements and their facts, events received (as stored, Hottok
    /// masked), notifications sent about them and audit rows naming them. Admins only.
    async fn export_buyer_data(
        &self,
        ctx: &Context<'_>,
        email: String,
    ) -> GqlResult<async_graphql::Json<serde_json::Value>> {
        let (state, who) = caller(ctx)?;
        crate::services::personal_data::export(state, who, &email)
            .await
            .map(async_graphql::Json)
            .map_err(gql)
    }

    async fn explain_access(
        &self,
        ctx: &Context<'_>,
        email: String,
        target: TargetInput,
    ) -> GqlResult<AccessExplanation> {
        let (state, who) = caller(ctx)?;
        let (access, steps) = entitlements::explain(&state.db, who.app_id, &email, target.parse()?)
            .await
            .map_err(gql)?;
        Ok(AccessExplanation {
            email: email.trim().to_lowercase(),
            access: access.into_iter().map(Into::into).collect(),
            steps: steps
                .into_iter()
                .map(|s| ExplainStep {
                    source: s.source,
                    webhook_event_id: (s.fact.event_row > 0).then(|| ID(s.fact.event_row.to_string())),
                    event_type: s.fact.event_type,
                    event_id: s.fact.key,
                    occurred_at: s.fact.occurred_at.into(),
                    transaction: s.fact.transaction,
                    effect: s.fact.effect.as_str().to_uppercase(),
                    until: s.fact.until.map(Into::into),
                    email: s.fact.email,
                    decision: s.fact.reason,
                    rule_version: s.fact.rule_version,
                })
                .collect(),
        })
    }
}

/// What erasing a buyer did.
#[derive(SimpleObject)]
pub struct BuyerErasure {
    /// What replaced their e-mail in every row (their name is masked).
    pub pseudonym: String,
    /// Entitlements that gave access and were revoked (announced to the app as revoked).
    pub revoked: i32,
    /// Purchases and subscriptions whose later events will not be applied.
    pub sources: i32,
    /// Stored events scrubbed.
    pub events: i32,
}

#[derive(Default)]
pub struct AccessMutation;

#[Object]
impl AccessMutation {
    /// Gives access by hand (support, gifts, partners). Written to the audit log with the reason.
    async fn grant_access(
        &self,
        ctx: &Context<'_>,
        email: String,
        target: TargetInput,
        expires_at: Option<super::DateTime>,
        reason: String,
    ) -> GqlResult<Vec<Access>> {
        let (state, who) = caller(ctx)?;
        entitlements::grant_manual(state, who, &email, target.parse()?, expires_at.map(|t| t.0), &reason)
            .await
            .map_err(gql)?;
        access_of(ctx, who.app_id, &email).await
    }

    /// Moves everything the buyer with `email` holds (sales, subscriptions, courtesies, ended ones
    /// too) to `newEmail`, the support case "comprei com outro e-mail". The app is told
    /// `access.revoked` for the old e-mail and `access.granted` for the new one; Hotmart events
    /// that later arrive under the old e-mail for those sources leave them with the new one.
    /// Audited; admins only. Returns the new e-mail's access.
    async fn change_buyer_email(
        &self,
        ctx: &Context<'_>,
        email: String,
        new_email: String,
        reason: String,
    ) -> GqlResult<Vec<Access>> {
        let (state, who) = caller(ctx)?;
        entitlements::change_email(state, who, &email, &new_email, &reason)
            .await
            .map_err(gql)?;
        access_of(ctx, who.app_id, &new_email).await
    }

    /// Erases the person with this e-mail on their request (LGPD art. 18, VI): their access ends
    /// (announced to the app as revoked), then their e-mail is replaced by a pseudonym and their
    /// name and personal fields are masked in every row and stored event. Later deliveries of
    /// their purchases are not applied; a new purchase under the same e-mail is a new buyer.
    /// Cannot be undone. Admins only.
    async fn erase_buyer(&self, ctx: &Context<'_>, email: String, reason: String) -> GqlResult<BuyerErasure> {
        let (state, who) = caller(ctx)?;
        let e = crate::services::personal_data::erase(state, who, &email, &reason)
            .await
            .map_err(gql)?;
        Ok(BuyerErasure {
            pseudonym: e.pseudonym,
            revoked: e.revoked,
            sources: i32::try_from(e.sources).unwrap_or(i32::MAX),
            events: i32::try_from(e.events).unwrap_or(i32::MAX),
        })
    }

    /// Takes access away by hand. With `source` (an `Access.source`: one sale, subscription or
    /// courtesy), only what that source gives; without it, everything the buyer holds to the
    /// target, whatever gave it. Returns how many entitlements were revoked.
    async fn revoke_access(
        &self,
        ctx: &Context<'_>,
        email: String,
        target: TargetInput,
        reason: String,
        source: Option<String>,
    ) -> GqlResult<i32> {
        let (state, who) = caller(ctx)?;
        entitlements::revoke_manual(state, who, &email, target.parse()?, source.as_deref(), &reason)
            .await
            .map_err(gql)
    }
}

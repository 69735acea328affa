//! The admin API. The only module that knows async-graphql: resolvers are thin and call one
//! service each; errors are mapped to `extensions.code` in one place.
mod api_keys;
mod audit;
mod buyers;
mod catalog;
mod console;
mod events;
mod integration;
mod notifications;
mod reconcile;
mod rules;
mod time;

pub use time::DateTime;

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, EmptySubscription, ErrorExtensions, ID, MergedObject, Schema};
use serde_json::json;

use crate::auth::{self, Principal};
use crate::{AppError, AppState};

#[derive(MergedObject, Default)]
pub struct Query(
    integration::IntegrationQuery,
    catalog::CatalogQuery,
    buyers::BuyerQuery,
    events::EventQuery,
    rules::RuleQuery,
    audit::AuditQuery,
    reconcile::ReconcileQuery,
    api_keys::ApiKeyQuery,
    notifications::NotificationQuery,
    console::ConsoleQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    integration::IntegrationMutation,
    catalog::CatalogMutation,
    buyers::AccessMutation,
    events::EventMutation,
    rules::RuleMutation,
    reconcile::ReconcileMutation,
    api_keys::ApiKeyMutation,
    notifications::NotificationMutation,
);

type PorteiroSchema = Schema<Query, Mutation, EmptySubscription>;

const MAX_DEPTH: usize = 12;
const MAX_COMPLEXITY: usize = 1_000;
/// The standard introspection query (graphql-js `getIntrospectionQuery`) nests `ofType` nine
/// times under `__schema.types.fields.type`: about 15 levels. Only operations made of
/// introspection fields alone get this depth; the complexity limit stays the same.
const MAX_INTROSPECTION_DEPTH: usize = 20;

fn builder() -> async_graphql::SchemaBuilder<Query, Mutation, EmptySubscription> {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
}

/// One schema per kind of caller: anonymous callers get no introspection and no "did you mean"
/// suggestions (they would describe the API to anyone); authenticated callers get both, and
/// introspection-only operations a depth limit that fits the standard introspection query.
#[derive(Clone)]
pub struct ApiSchemas {
    authenticated: PorteiroSchema,
    introspection: PorteiroSchema,
    anonymous: PorteiroSchema,
}

pub fn schema(state: AppState) -> ApiSchemas {
    ApiSchemas {
        authenticated: builder().data(state.clone()).finish(),
        introspection: builder()
            .limit_depth(MAX_INTROSPECTION_DEPTH)
            .data(state.clone())
            .finish(),
        anonymous: builder()
            .disable_introspection()
            .disable_suggestions()
            .data(state)
            .finish(),
    }
}

/// Whether every operation of the document selects introspection fields only (`__schema`,
/// `__type`, `__typename`), through fragments too. The request keeps the parsed document, so
/// the schema does not parse the query a second time.
fn introspection_only(request: &mut async_graphql::Request) -> bool {
    use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
    fn only(doc: &ExecutableDocument, set: &SelectionSet, depth: usize) -> bool {
        depth < 8
            && set.items.iter().all(|s| match &s.node {
                Selection::Field(f) => f.node.name.node.starts_with("__"),
                Selection::InlineFragment(f) => only(doc, &f.node.selection_set.node, depth + 1),
                Selection::FragmentSpread(f) => doc
                    .fragments
                    .get(&f.node.fragment_name.node)
                    .is_some_and(|d| only(doc, &d.node.selection_set.node, depth + 1)),
            })
    }
    match request.parsed_query() {
        Ok(doc) => {
            let ops: Vec<_> = doc.operations.iter().map(|(_, op)| op).collect();
            !ops.is_empty() && ops.iter().all(|op| only(doc, &op.node.selection_set.node, 0))
        }
        Err(_) => false,
    }
}

/// The SDL, without any data: what `schema.graphql` holds.
pub fn sdl() -> String {
    builder().finish().sdl()
}

pub fn error_body(code: &str, message: &str) -> String {
    json!({"errors": [{"message": message, "extensions": {"code": code}}]}).to_string()
}

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    None,
    /// An admin JWT (`Authorization: Bearer`).
    Bearer(&'a str),
    /// The browser console's session cookie (sent with its CSRF header).
    Session(&'a str),
}

/// Runs one operation. Returns whether the request itself was well-formed, and the JSON body.
pub async fn execute(
    schemas: &ApiSchemas,
    state: &AppState,
    credential: Credential<'_>,
    body: &[u8],
) -> (bool, String) {
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return (
                false,
                error_body("BAD_USER_INPUT", &format!("body is not valid JSON: {e}")),
            );
        }
    };
    if has_nul(&value) {
        // PostgreSQL cannot store a NUL in text; refusing it here answers the same on both
        // databases, and names the problem instead of failing deep inside a write.
        return (
            true,
            error_body("BAD_USER_INPUT", "text cannot contain NUL (\\u0000) characters"),
        );
    }
    if value.is_array() {
        return (
            false,
            error_body(
                "BAD_USER_INPUT",
                "batched requests are not supported: send one operation per request",
            ),
        );
    }
    let mut request: async_graphql::Request = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => {
            return (
                false,
                error_body("BAD_USER_INPUT", &format!("not a GraphQL request: {e}")),
            );
        }
    };
    let principal = match credential {
        Credential::None | Credential::Bearer("") | Credential::Session("") => None,
        Credential::Bearer(token) => match authenticate(state, token).await {
            Ok(p) => Some(p),
            Err(e) => return (true, error_body(e.code(), &e.public_message())),
        },
        Credential::Session(token) => match crate::services::console::authenticate(state, token).await {
            Ok(p) => Some(p),
            Err(e) => return (true, error_body(e.code(), &e.public_message())),
        },
    };
    let (schema, request) = match principal {
        Some(p) if introspection_only(&mut request) => (&schemas.introspection, request.data(p)),
        Some(p) => (
            &schemas.authenticated,
            request
                .data(p)
                .data(DataLoader::new(buyers::Loaders(state.clone()), tokio::spawn)),
        ),
        None => (&schemas.anonymous, request),
    };
    let response = schema.execute(request).await;
    (
        true,
        serde_json::to_string(&response).unwrap_or_else(|_| error_body("INTERNAL", "internal error")),
    )
}

fn has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(a) => a.iter().any(has_nul),
        serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

async fn authenticate(state: &AppState, token: &str) -> Result<Principal, AppError> {
    let claims = auth::verify(state.settings.jwt_secret(), token)?;
    // Every request carries the token: its app comes from memory, not a database read.
    let app = crate::services::apps::by_slug_cached(state, &claims.app)
        .await?
        .ok_or_else(|| AppError::Unauthenticated(format!("the token's app {:?} does not exist", claims.app)))?;
    Ok(Principal {
        app_id: app.id,
        app_slug: app.slug,
        role: claims.role,
        subject: claims.sub,
    })
}

/// The one mapping from our errors to GraphQL errors. Internals are logged, never sent.
/// A loader's error: shared by every field that waited on the batch, logged once, by the loader.
pub(crate) fn gql_shared(e: std::sync::Arc<AppError>) -> async_graphql::Error {
    async_graphql::Error::new(e.public_message()).extend_with(|_, ext| ext.set("code", e.code()))
}

pub(crate) fn gql(e: AppError) -> async_graphql::Error {
    e.log();
    let code = e.code();
    let fields = match &e {
        AppError::InvalidFields(f) => Some(f.clone()),
        _ => None,
    };
    async_graphql::Error::new(e.public_message()).extend_with(|_, ext| {
        ext.set("code", code);
        if let Some(fields) = &fields {
            let list: Vec<async_graphql::Value> = fields
                .iter()
                .map(|(f, m)| {
                    let mut obj = async_graphql::indexmap::IndexMap::new();
                    obj.insert(
                        async_graphql::Name::new("field"),
                        async_graphql::Value::from(f.as_str()),
                    );
                    obj.insert(
                        async_graphql::Name::new("message"),
                        async_graphql::Value::from(m.as_str()),
                    );
                    async_graphql::Value::Object(obj)
                })
                .collect();
            ext.set("fields", async_graphql::Value::List(list));
        }
    })
}

pub(crate) type GqlResult<T> = async_graphql::Result<T>;

/// The state and the caller; every resolver needs both, and anonymous callers get nothing.
pub(crate) fn caller<'a>(ctx: &'a Context<'_>) -> GqlResult<(&'a AppState, &'a Principal)> {
    let state = ctx
        .data::<AppState>()
        .map_err(|_| gql(AppError::internal(anyhow::anyhow!("state missing"))))?;
    let who = ctx.data_opt::<Principal>().ok_or_else(|| {
        gql(AppError::Unauthenticated(
            "send Authorization: Bearer <token> (porteiro token --app <slug> --role admin)".into(),
        ))
    })?;
    Ok((state, who))
}

pub(crate) fn parse_id(id: &ID) -> GqlResult<i32> {
    id.parse::<i32>()
        .map_err(|_| gql(AppError::bad(format!("{:?} is not a valid id", id.as_str()))))
}

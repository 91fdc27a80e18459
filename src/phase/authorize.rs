//! Phase 4, authorize: the request's credential checked against the route's policy, ending in
//! the identity the request is forwarded with or the refusal it is answered with. Both
//! transports and forward auth (`api::verify`) decide here; each reads the credential from its
//! own view of the head with `auth::credential_in`.

use crate::auth::{self, Credential, Decision, Identity, Oversized};
use crate::config::Policy;
use crate::error::GatewayError;
use crate::gateway::GatewayState;
use std::borrow::Cow;

/// What phase 4 is asked about one request.
pub struct Ask<'a> {
    pub policy: &'a Policy,
    /// The credential presented: a bearer token, else the session cookie.
    pub credential: Result<Option<Credential<'a>>, Oversized>,
    /// A safe method (GET, HEAD, OPTIONS, TRACE): never refused as cross-site.
    pub safe: bool,
    /// A browser navigation: without a valid credential it goes to the login page, not a 401.
    pub navigation: bool,
    /// Where the login page brings the browser back: the path and query as sent.
    pub path: &'a str,
    pub query: Option<&'a str>,
}

/// Decides `ask`: the identity to forward with (none on a public route without one), or the
/// refusal. An identity a browser attaches by itself (a cookie's, or single-user mode's) on an
/// unsafe request that `cross_site` says comes from another site is refused (403
/// `cross_site`); `cross_site` is asked only then.
pub async fn authorize(
    shared: &GatewayState,
    ask: Ask<'_>,
    cross_site: impl FnOnce() -> bool,
) -> Result<Option<Identity>, GatewayError> {
    let by_cookie = matches!(ask.credential, Ok(Some(Credential::Cookie(_))));
    // Boxed: inline, the lookup's future made every caller's future kilobytes larger.
    let decision = Box::pin(auth::decide(
        &shared.sessions,
        &shared.jwt_issuers,
        shared.local_user.as_ref(),
        ask.policy,
        ask.credential,
    ))
    .await;
    let identity = allowed(shared, decision, ask.navigation, ask.path, ask.query)?;
    if !ask.safe && auth::ambient(by_cookie, identity.as_ref(), shared.local_user.as_ref()) && cross_site() {
        return Err(GatewayError::CrossSite);
    }
    Ok(identity)
}

/// Phase 4's decision as an answer: the identity an allowed request is forwarded with, or the
/// error a refused one gets. A browser navigation (asked only then) without a valid credential
/// is sent to the login page, which brings it back to `path` and `query`.
fn allowed(
    shared: &GatewayState,
    decision: Decision,
    navigation: bool,
    path: &str,
    query: Option<&str>,
) -> Result<Option<auth::Identity>, GatewayError> {
    match decision {
        Decision::Allow(identity) => Ok(identity),
        Decision::Unauthenticated { .. } if navigation => {
            let target = match query {
                Some(q) => Cow::Owned(format!("{path}?{q}")),
                None => Cow::Borrowed(path),
            };
            Err(GatewayError::LoginRedirect(format!(
                "{}?rd={}",
                shared.api.url("/auth/login"),
                auth::encode_component(&target)
            )))
        }
        Decision::Unauthenticated { presented } => Err(GatewayError::Unauthenticated { presented }),
        Decision::Forbidden => Err(GatewayError::Forbidden),
        Decision::StoreUnavailable => Err(GatewayError::StoreUnavailable),
    }
}

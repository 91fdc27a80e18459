//! Signing in through an identity provider (SPEC §4a): the `[[oidc]]` providers as the gateway
//! runs them. Each `Provider` has its HTTP client (`client`), what discovery found (`discovery`),
//! and the protocol's steps: the authorization URL and the code's exchange into a verified
//! identity (`signin`, with the claims read by `claims`), and the check of a back-channel
//! logout token (`logout`). A sign-in's state between start and callback is `state`.
//! The endpoints people and providers call are the session API's (`api/oidc.rs`); this module
//! knows nothing of requests, and is rebuilt with the configuration on a reload.

pub mod claims;
pub mod client;
pub mod discovery;
pub mod logout;
pub mod signin;
pub mod state;

use crate::config::OidcConfig;
use http::StatusCode;
use openidconnect::core::CoreJwsSigningAlgorithm;
use std::sync::Arc;

/// The `Session::extra` key holding the provider's session id (`sid`), which a back-channel
/// logout may name.
pub const SID: &str = "oidc_sid";

/// The configured providers, in the config's order (the login page's).
#[derive(Default)]
pub struct Providers(Vec<Arc<Provider>>);

/// Whom the providers in `configs` admit (`Sessions::admit`).
pub fn admission(configs: &[Arc<OidcConfig>]) -> crate::session::cache::Admission {
    configs
        .iter()
        .map(|c| (c.name.clone(), c.allowed_roles.clone()))
        .collect()
}

impl Providers {
    pub fn new(configs: &[Arc<OidcConfig>]) -> Providers {
        Providers(
            configs
                .iter()
                .map(|c| Arc::new(Provider::new(c.clone())))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.0.iter().find(|p| p.config.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.0.iter()
    }
}

pub struct Provider {
    pub config: Arc<OidcConfig>,
    http: client::Http,
    discovery: discovery::Discovery,
    /// `config.algorithms` for openidconnect (ID tokens) and jsonwebtoken (logout tokens).
    id_token_algorithms: Vec<CoreJwsSigningAlgorithm>,
    logout_algorithms: Vec<jsonwebtoken::Algorithm>,
}

impl Provider {
    fn new(config: Arc<OidcConfig>) -> Provider {
        let names = || {
            config
                .algorithms
                .iter()
                .map(|a| serde_json::Value::String(a.clone()))
        };
        Provider {
            http: client::Http::new(config.tls.clone()),
            discovery: discovery::Discovery::new(),
            id_token_algorithms: names().filter_map(|a| serde_json::from_value(a).ok()).collect(),
            logout_algorithms: config
                .algorithms
                .iter()
                .filter_map(|a| crate::auth::jwt::algorithm(a).ok())
                .collect(),
            config,
        }
    }

    /// The provider's discovery document, or why there is none (`Failure::Unreachable`).
    async fn discovered(&self) -> Result<Arc<discovery::Discovered>, Failure> {
        self.discovery
            .get(&self.config, &self.http)
            .await
            .map_err(Failure::Unreachable)
    }
}

/// Why a sign-in or a logout did not happen: each is a page that says so (never a 500), and
/// none makes a session. Texts name the problem, never a secret or a token.
#[derive(Debug)]
pub enum Failure {
    /// Discovery, the key set, the token or UserInfo endpoint could not be reached.
    Unreachable(String),
    /// The provider answered the person with an error (`error=` on the callback).
    Refused {
        error: String,
        description: Option<String>,
    },
    /// The code was refused at the token endpoint (used twice, expired, not ours).
    CodeRefused(String),
    /// The provider answered, but not with what the protocol promises.
    BadAnswer(String),
    /// The ID token did not verify (signature, issuer, audience, expiry, nonce).
    BadIdToken(String),
    /// The provider did not say who the person is in a form the gateway can forward.
    NoIdentity(String),
    /// The person is not in `allowed_roles`.
    RoleNotAllowed { username: String, allowed: Vec<String> },
}

impl Failure {
    pub fn status(&self) -> StatusCode {
        match self {
            Failure::Unreachable(_) => StatusCode::BAD_GATEWAY,
            Failure::Refused { .. } | Failure::RoleNotAllowed { .. } => StatusCode::FORBIDDEN,
            Failure::CodeRefused(_) => StatusCode::BAD_REQUEST,
            Failure::BadAnswer(_) | Failure::BadIdToken(_) | Failure::NoIdentity(_) => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// The page's heading and its text, for a person (`provider`: the provider's name).
    pub fn words(&self, provider: &str) -> (&'static str, String) {
        match self {
            // Why (host names, connection errors) is for the log, not for anyone's browser.
            Failure::Unreachable(_) => (
                "Sign-in provider unavailable",
                format!(
                    "{provider} cannot be reached right now. Try again shortly, or sign in with a password."
                ),
            ),
            Failure::Refused { error, description } => (
                "Sign-in refused",
                match description {
                    Some(d) => format!("{provider} did not sign you in: {d} ({error})."),
                    None => format!("{provider} did not sign you in ({error})."),
                },
            ),
            Failure::CodeRefused(why) => (
                "Sign-in expired",
                format!(
                    "{provider} no longer accepts this sign-in ({why}); it may have been used already. Start again."
                ),
            ),
            Failure::BadAnswer(why) => (
                "Sign-in failed",
                format!("{provider} answered in a way this site cannot use: {why}."),
            ),
            Failure::BadIdToken(why) => (
                "Sign-in failed",
                format!("The identity {provider} sent could not be verified: {why}."),
            ),
            Failure::NoIdentity(why) => (
                "Sign-in failed",
                format!("{provider} did not say who you are in a way this site can use: {why}."),
            ),
            Failure::RoleNotAllowed { username, allowed } => (
                "Not allowed here",
                format!(
                    "{provider} signed you in as {username}, but this site admits only people with the role {}. Ask your administrator for access.",
                    allowed.join(" or ")
                ),
            ),
        }
    }

    /// What went wrong, for the log (the page may say less).
    pub fn detail(&self) -> String {
        match self {
            Failure::Unreachable(why)
            | Failure::CodeRefused(why)
            | Failure::BadAnswer(why)
            | Failure::BadIdToken(why)
            | Failure::NoIdentity(why) => why.clone(),
            Failure::Refused { error, description } => {
                format!("{error}: {}", description.as_deref().unwrap_or(""))
            }
            Failure::RoleNotAllowed { username, .. } => format!("user {username}"),
        }
    }

    /// The word for the log line.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Unreachable(_) => "provider_unreachable",
            Failure::Refused { .. } => "provider_refused",
            Failure::CodeRefused(_) => "code_refused",
            Failure::BadAnswer(_) => "bad_answer",
            Failure::BadIdToken(_) => "bad_id_token",
            Failure::NoIdentity(_) => "no_identity",
            Failure::RoleNotAllowed { .. } => "role_not_allowed",
        }
    }
}

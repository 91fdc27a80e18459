//! The authorization code flow's two steps with a provider (openidconnect does the protocol):
//! `authorize_url` (PKCE S256, `state`, `nonce`, the scopes) and `finish`, which exchanges the
//! code, verifies the ID token (signature by the provider's keys with the configured
//! algorithms, `iss`, `aud`, `azp`, `exp`, `nonce`; the key set fetched again once when it names
//! an unknown key), reads the person from the ID token and UserInfo (`claims`), and applies
//! `allowed_roles`.

use super::claims::{self, OtherClaims};
use super::client::chain;
use super::discovery::Discovered;
use super::{Failure, Provider};
use crate::session::User;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AccessToken, AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    IdToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError,
    Scope, SignatureVerificationError, UserInfoClaims,
};
use serde_json::{Map, Value};

/// openidconnect's client as built from discovery (authorization and, maybe, token and
/// UserInfo endpoints).
type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

type FullIdToken =
    IdToken<OtherClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;

/// Who a provider signed in, and its session there (`sid`, for back-channel logout).
pub struct SignedIn {
    pub user: User,
    pub sid: Option<String>,
}

impl Provider {
    /// The URL that sends the person to the provider for this sign-in.
    pub async fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: String,
        pkce_verifier: String,
    ) -> Result<String, Failure> {
        let d = self.discovered().await?;
        let client = self.client(&d, redirect_uri)?;
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(pkce_verifier));
        let state = state.to_string();
        let (url, _, _) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            // openidconnect adds `openid` itself.
            .add_scopes(
                self.config
                    .scopes
                    .iter()
                    .filter(|s| *s != "openid")
                    .map(|s| Scope::new(s.clone())),
            )
            .set_pkce_challenge(challenge)
            .url();
        Ok(url.to_string())
    }

    /// The callback's `code` made into the person it signs in.
    pub async fn finish(
        &self,
        redirect_uri: &str,
        code: &str,
        nonce: &str,
        pkce_verifier: String,
    ) -> Result<SignedIn, Failure> {
        let d = self.discovered().await?;
        let client = self.client(&d, redirect_uri)?;
        let answer = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| Failure::BadAnswer(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => Failure::CodeRefused(r.to_string()),
                RequestTokenError::Request(e) => Failure::Unreachable(e.to_string()),
                other => Failure::BadAnswer(format!("the token endpoint's answer: {}", chain(&other))),
            })?;
        let id_token = answer
            .extra_fields()
            .id_token()
            .ok_or_else(|| Failure::BadAnswer("no ID token came with the access token".into()))?;
        let id_token: FullIdToken = id_token
            .to_string()
            .parse()
            .map_err(|e: serde_json::Error| Failure::BadIdToken(e.to_string()))?;
        let nonce = Nonce::new(nonce.to_string());
        let (id_claims, client) = match self.verify(&client, &id_token, &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => match self
                .discovery
                .refetch_keys(&d, super::discovery::Asker::IdToken, &self.config, &self.http)
                .await
            {
                Some(newer) => {
                    let client = self.client(&newer, redirect_uri)?;
                    (self.verify(&client, &id_token, &nonce), client)
                }
                None => {
                    return Err(Failure::BadIdToken(
                        "it is signed by a key the provider does not publish".into(),
                    ));
                }
            },
            other => (other, client),
        };
        let id_claims = id_claims.map_err(|e| Failure::BadIdToken(chain(&e)))?;
        let sub = id_claims.subject().to_string();
        let from_id_token = as_map(&id_claims);
        let needs_userinfo = claims::find(&from_id_token, &self.config.username_claim).is_none()
            || self
                .config
                .roles_claim
                .as_ref()
                .is_some_and(|r| claims::find(&from_id_token, r).is_none());
        let from_userinfo = match needs_userinfo && client.user_info_url().is_some() {
            true => self.userinfo(&client, answer.access_token(), &sub).await?,
            false => Map::new(),
        };
        let claim =
            |name: &str| claims::find(&from_id_token, name).or_else(|| claims::find(&from_userinfo, name));
        self.person(sub, claim)
    }

    fn verify<'t>(
        &self,
        client: &Client,
        id_token: &'t FullIdToken,
        nonce: &Nonce,
    ) -> Result<&'t openidconnect::IdTokenClaims<OtherClaims, CoreGenderClaim>, ClaimsVerificationError> {
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs(self.id_token_algorithms.iter().cloned());
        id_token.claims(&verifier, nonce)
    }

    async fn userinfo(
        &self,
        client: &Client,
        access_token: &AccessToken,
        sub: &str,
    ) -> Result<Map<String, Value>, Failure> {
        let request = client
            .user_info(
                access_token.clone(),
                Some(openidconnect::SubjectIdentifier::new(sub.to_string())),
            )
            .map_err(|e| Failure::BadAnswer(e.to_string()))?;
        let info: UserInfoClaims<OtherClaims, CoreGenderClaim> =
            request.request_async(&self.http).await.map_err(|e| match e {
                openidconnect::UserInfoError::Request(e) => Failure::Unreachable(e.to_string()),
                other => Failure::BadAnswer(format!("UserInfo: {}", chain(&other))),
            })?;
        Ok(as_map(&info))
    }

    /// The user from the claims, if the provider said enough and `allowed_roles` admits them.
    fn person<'c>(
        &self,
        sub: String,
        claim: impl Fn(&str) -> Option<&'c Value>,
    ) -> Result<SignedIn, Failure> {
        if !claims::header_text(&sub) {
            return Err(Failure::NoIdentity(
                "its subject (sub) is empty, too long or not plain ASCII".into(),
            ));
        }
        let name_claim = &self.config.username_claim;
        let username = match claim(name_claim) {
            Some(v) => claims::username(v)
                .map_err(|why| Failure::NoIdentity(format!("the {name_claim} claim: {why}")))?,
            None => {
                return Err(Failure::NoIdentity(format!(
                    "it sent no {name_claim} claim (username_claim), neither in the ID token nor from UserInfo"
                )));
            }
        };
        // An address the provider has not verified is not a name to be known by.
        if name_claim == "email" && claim("email_verified").and_then(Value::as_bool) == Some(false) {
            return Err(Failure::NoIdentity(
                "its email address is not verified (email_verified is false)".into(),
            ));
        }
        let mut roles = Vec::new();
        if let Some(roles_claim) = &self.config.roles_claim
            && let Some(v) = claim(roles_claim)
        {
            let (found, dropped) = claims::roles(v);
            if dropped > 0 {
                tracing::warn!(provider = %self.config.name, claim = %roles_claim, dropped, "oidc: roles that cannot be a header value were left out");
            }
            roles = found;
        }
        if let Some(allowed) = &self.config.allowed_roles
            && !roles.iter().any(|r| allowed.contains(r))
        {
            return Err(Failure::RoleNotAllowed {
                username,
                allowed: allowed.clone(),
            });
        }
        let sid = claim("sid").and_then(Value::as_str).map(str::to_string);
        Ok(SignedIn {
            user: User {
                id: 0,
                username,
                uuid: sub,
                roles,
                provider: Some(self.config.name.clone()),
            },
            sid,
        })
    }

    /// openidconnect's client for this provider as discovered, answering at `redirect_uri`.
    fn client(&self, d: &Discovered, redirect_uri: &str) -> Result<Client, Failure> {
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| Failure::BadAnswer(format!("the redirect URI {redirect_uri}: {e}")))?;
        let auth_type = match self.config.secret_in_body {
            true => AuthType::RequestBody,
            false => AuthType::BasicAuth,
        };
        Ok(CoreClient::from_provider_metadata(
            d.metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.config.client_secret.clone())),
        )
        .set_redirect_uri(redirect)
        .set_auth_type(auth_type))
    }
}

/// Claims as one JSON object: openidconnect's standard claims and the others together.
fn as_map(claims: &impl serde::Serialize) -> Map<String, Value> {
    match serde_json::to_value(claims) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

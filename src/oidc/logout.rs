//! OpenID Connect Back-Channel Logout 1.0, the token's side: a `logout_token` is accepted when
//! it is a JWT signed by the provider's published keys with an allowed algorithm (the key set
//! fetched again, bounded, for an unknown `kid`), `iss` is the provider, `aud` holds our client
//! id, `iat` is recent, `events` holds the back-channel logout event, there is no `nonce` (so
//! an ID token is never taken for one), and `sub` names the person (`sid` optionally narrows it
//! to one provider session). A `sid` alone is refused: sessions are found by `sub`.

use super::Provider;
use super::discovery::Discovered;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Clock difference tolerated between the provider and the gateway.
const LEEWAY: u64 = 60;
/// How old a logout token may be: it is sent the moment the person logs out.
const MAX_AGE: u64 = 300;
/// The most of a logout token this reads.
pub const MAX_TOKEN: usize = 16 * 1024;

/// What a valid logout token orders: end `sub`'s sessions made up to `iat` (only the one of
/// provider session `sid`, when given).
#[derive(Debug)]
pub struct Order {
    pub sub: String,
    pub sid: Option<String>,
    pub iat: u64,
}

#[derive(Deserialize)]
struct LogoutClaims {
    iat: u64,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    events: Option<Map<String, Value>>,
    #[serde(default)]
    nonce: Option<Value>,
}

impl Provider {
    /// The order in `token`, or why it is refused (the text names the problem, not the token).
    pub async fn logout_order(&self, token: &str, now: u64) -> Result<Order, Refused> {
        let discovered = self
            .discovered()
            .await
            .map_err(|f| Refused::Unavailable(f.detail()))?;
        self.check(&discovered, token, now)
            .await
            .map_err(Refused::Invalid)
    }

    async fn check(&self, d: &Arc<Discovered>, token: &str, now: u64) -> Result<Order, String> {
        if token.len() > MAX_TOKEN || token.bytes().filter(|&b| b == b'.').count() != 2 {
            return Err("logout_token is not a signed JWT".into());
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("logout_token: {e}"))?;
        if !self.logout_algorithms.contains(&header.alg) {
            return Err(format!("logout_token: algorithm {:?} is not allowed", header.alg));
        }
        if let Some(typ) = header.typ.as_deref()
            && !typ.eq_ignore_ascii_case("logout+jwt")
            && !typ.eq_ignore_ascii_case("jwt")
        {
            return Err(format!("logout_token: type {typ} is not a logout token"));
        }
        let claims = match self.decode(d, token, &header) {
            Err(Unverified::NoKey) => {
                let newer = self
                    .discovery
                    .refetch_keys(d, super::discovery::Asker::LogoutToken, &self.config, &self.http)
                    .await
                    .ok_or("logout_token: signed by a key the provider does not publish")?;
                self.decode(&newer, token, &header)
            }
            other => other,
        }
        .map_err(|e| match e {
            Unverified::NoKey => "logout_token: signed by a key the provider does not publish".to_string(),
            Unverified::Invalid(why) => format!("logout_token: {why}"),
        })?;
        if claims.nonce.is_some() {
            return Err("logout_token: has a nonce (an ID token is not a logout token)".into());
        }
        if !claims
            .events
            .as_ref()
            .is_some_and(|e| e.get(EVENT).is_some_and(Value::is_object))
        {
            return Err("logout_token: events does not hold the back-channel logout event".into());
        }
        if claims.iat > now + LEEWAY || claims.iat + MAX_AGE + LEEWAY < now {
            return Err("logout_token: iat is not recent".into());
        }
        let sub = claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or("logout_token: no sub (a sid alone is not supported: sessions are found by sub)")?;
        Ok(Order {
            sub,
            sid: claims.sid.filter(|s| !s.is_empty()),
            iat: claims.iat,
        })
    }

    fn decode(
        &self,
        d: &Discovered,
        token: &str,
        header: &jsonwebtoken::Header,
    ) -> Result<LogoutClaims, Unverified> {
        let set: JwkSet = serde_json::to_value(d.metadata.jwks())
            .and_then(serde_json::from_value)
            .map_err(|e| Unverified::Invalid(format!("the provider's key set: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.client_id]);
        validation.set_required_spec_claims(&["iss", "aud"]);
        validation.leeway = LEEWAY;
        let mut tried = false;
        for jwk in &set.keys {
            if header.kid.is_some() && jwk.common.key_id != header.kid {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            tried = true;
            match jsonwebtoken::decode::<LogoutClaims>(token, &key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) if header.kid.is_some() => return Err(Unverified::Invalid(e.to_string())),
                Err(_) => {}
            }
        }
        match tried && header.kid.is_none() {
            true => Err(Unverified::Invalid(
                "no published key verifies its signature".into(),
            )),
            false => Err(Unverified::NoKey),
        }
    }
}

/// Why a logout token was not acted on.
#[derive(Debug)]
pub enum Refused {
    /// The provider's keys are not known and cannot be fetched now: it may send it again.
    Unavailable(String),
    /// The token is not a valid logout token (the text says what is wrong).
    Invalid(String),
}

enum Unverified {
    NoKey,
    Invalid(String),
}

//! JWTs, both ways. Security rules:
//! - Outgoing (`X-Auth-Jwt`): signed with the `[assertion]` private key (EdDSA, ES256 or RS256),
//!   iss = `assertion.issuer`, aud = the route's name, sub = the user's uuid, exp ≤ `ttl`
//!   (at most 60 s); upstreams verify it with the public keys at `/.well-known/jwks.json`.
//! - Incoming (`policy = "jwt"`): only issuers listed in `[[jwt_issuers]]`, only their listed
//!   algorithms (never `none`, never HMAC: no shared secrets are configured), the signature
//!   checked against their keys, and iss, aud, exp and nbf validated with the issuer's leeway.
//! - Nothing here panics on hostile tokens; a bad token is simply not an identity.

use http::HeaderValue;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Parses an algorithm name; HMAC and unknown names are refused.
pub fn algorithm(name: &str) -> Result<Algorithm, String> {
    match name {
        "EdDSA" => Ok(Algorithm::EdDSA),
        "ES256" => Ok(Algorithm::ES256),
        "ES384" => Ok(Algorithm::ES384),
        "RS256" => Ok(Algorithm::RS256),
        "RS384" => Ok(Algorithm::RS384),
        "RS512" => Ok(Algorithm::RS512),
        "PS256" => Ok(Algorithm::PS256),
        "PS384" => Ok(Algorithm::PS384),
        "PS512" => Ok(Algorithm::PS512),
        "none" => Err("\"none\" is never accepted".into()),
        "HS256" | "HS384" | "HS512" => Err(format!(
            "{name} needs a shared secret; use an asymmetric algorithm"
        )),
        other => Err(format!("unknown algorithm \"{other}\"")),
    }
}

/// The public JWK of a private key. jsonwebtoken derives RSA and EC ones (and panics for
/// Ed25519), so the Ed25519 one is made here from the PKCS#8 key.
fn public_jwk(key: &EncodingKey, alg: Algorithm, pem: &[u8]) -> Result<Jwk, String> {
    if alg != Algorithm::EdDSA {
        return Jwk::from_encoding_key(key, alg).map_err(|e| e.to_string());
    }
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("{e:?}"))?;
    let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_der())
        .map_err(|e| e.to_string())?;
    let x = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        aws_lc_rs::signature::KeyPair::public_key(&pair).as_ref(),
    );
    serde_json::from_value(serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA"}))
        .map_err(|e| e.to_string())
}

/// The claims of `X-Auth-Jwt`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AssertionClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub name: String,
    pub roles: Vec<String>,
    pub sid: String,
    pub iat: u64,
    pub exp: u64,
    /// The `[[oidc]]` provider that signed the user in: its `sub` is unique only within it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
}

/// Signs `X-Auth-Jwt` and publishes the matching JWKS.
pub struct AssertionSigner {
    algorithm: Algorithm,
    key: EncodingKey,
    kid: String,
    issuer: String,
    pub ttl: Duration,
    /// `{"keys": [...]}`, the public key only.
    pub jwks: String,
    /// Unique per load: assertions cached under one signer are never reused after a reload
    /// brought another (new key, issuer or lifetime).
    pub id: u64,
}

impl AssertionSigner {
    pub fn load(algorithm_name: &str, key_path: &Path, issuer: &str, ttl: Duration) -> Result<Self, String> {
        let alg = match algorithm_name {
            "EdDSA" | "ES256" | "RS256" => algorithm(algorithm_name)?,
            other => {
                return Err(format!(
                    "algorithm: expected EdDSA, ES256 or RS256, not \"{other}\""
                ));
            }
        };
        let pem = std::fs::read(key_path).map_err(|e| format!("cannot read {}: {e}", key_path.display()))?;
        let key = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_rsa_pem(&pem),
        }
        .map_err(|e| {
            format!(
                "{} is not a {algorithm_name} private key (PKCS#8 PEM): {e}",
                key_path.display()
            )
        })?;
        let mut jwk = public_jwk(&key, alg, &pem)
            .map_err(|e| format!("cannot derive the public key of {}: {e}", key_path.display()))?;
        let public = serde_json::to_vec(&jwk.algorithm).map_err(|e| e.to_string())?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &public);
        let kid = crate::session::token::hex(&digest.as_ref()[..8]);
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        let jwks = serde_json::to_string(&JwkSet { keys: vec![jwk] }).map_err(|e| e.to_string())?;
        // Sign once now so a key that cannot sign fails the config check, not a request.
        static LOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let signer = AssertionSigner {
            id: LOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            algorithm: alg,
            key,
            kid,
            issuer: issuer.to_string(),
            ttl,
            jwks,
        };
        signer
            .sign_claims(&AssertionClaims {
                iss: signer.issuer.clone(),
                aud: "check".into(),
                sub: "check".into(),
                name: "check".into(),
                roles: vec![],
                sid: "check".into(),
                iat: 0,
                exp: 0,
                idp: None,
            })
            .map_err(|e| format!("{}: signing failed: {e}", key_path.display()))?;
        Ok(signer)
    }

    fn sign_claims(&self, claims: &AssertionClaims) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
    }

    /// A fresh assertion for `user` on route `aud`; returns its expiry and the header value.
    pub fn sign(
        &self,
        aud: &str,
        user: &crate::session::User,
        sid: &str,
        now: u64,
    ) -> Option<(u64, HeaderValue)> {
        let exp = now + self.ttl.as_secs();
        let claims = AssertionClaims {
            iss: self.issuer.clone(),
            aud: aud.to_string(),
            sub: user.uuid.clone(),
            name: user.username.clone(),
            roles: user.roles.clone(),
            sid: sid.to_string(),
            iat: now,
            exp,
            idp: user.provider.clone(),
        };
        match self.sign_claims(&claims) {
            Ok(jwt) => HeaderValue::from_str(&jwt).ok().map(|v| (exp, v)),
            Err(e) => {
                tracing::error!(error = %e, "cannot sign X-Auth-Jwt");
                None
            }
        }
    }
}

/// An identity proven by an external issuer's JWT.
#[derive(Debug, Clone)]
pub struct JwtIdentity {
    pub issuer: String,
    pub subject: String,
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub expires: u64,
}

#[derive(Deserialize)]
struct IncomingClaims {
    iss: String,
    sub: Option<String>,
    exp: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// One trusted external issuer.
pub struct Issuer {
    issuer: String,
    validation: Validation,
    /// (kid, key); a key without kid is tried for any token.
    keys: Vec<(Option<String>, DecodingKey)>,
}

impl Issuer {
    /// Builds an issuer from PEM public keys and/or a JWKS file; errors name what is wrong.
    pub fn load(
        issuer: &str,
        audiences: &[String],
        algorithms: &[Algorithm],
        pem_keys: &[std::path::PathBuf],
        jwks_file: Option<&Path>,
        leeway: Duration,
    ) -> Result<Issuer, String> {
        let mut keys = Vec::new();
        for path in pem_keys {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let key = DecodingKey::from_ed_pem(&pem)
                .or_else(|_| DecodingKey::from_ec_pem(&pem))
                .or_else(|_| DecodingKey::from_rsa_pem(&pem))
                .map_err(|_| format!("{}: not an Ed25519, EC or RSA public key in PEM", path.display()))?;
            keys.push((None, key));
        }
        if let Some(path) = jwks_file {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let set: JwkSet =
                serde_json::from_str(&text).map_err(|e| format!("{}: not a JWKS: {e}", path.display()))?;
            for jwk in &set.keys {
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| format!("{}: unusable key: {e}", path.display()))?;
                keys.push((jwk.common.key_id.clone(), key));
            }
        }
        if keys.is_empty() {
            return Err("needs keys (PEM public keys) or jwks_file".into());
        }
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms.to_vec();
        validation.set_issuer(&[issuer]);
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = leeway.as_secs();
        Ok(Issuer {
            issuer: issuer.to_string(),
            validation,
            keys,
        })
    }

    /// The identity in `token` if this issuer signed it and it is valid now.
    pub fn verify(&self, token: &str) -> Option<JwtIdentity> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if !self.validation.algorithms.contains(&header.alg) {
            return None;
        }
        self.keys
            .iter()
            .filter(|(kid, _)| kid.is_none() || header.kid.is_none() || *kid == header.kid)
            .find_map(|(_, key)| jsonwebtoken::decode::<IncomingClaims>(token, key, &self.validation).ok())
            .map(|data| {
                let c = data.claims;
                JwtIdentity {
                    issuer: c.iss,
                    subject: c.sub.unwrap_or_default(),
                    name: c.preferred_username.or(c.name),
                    roles: c.roles,
                    expires: c.exp,
                }
            })
    }

    pub fn name(&self) -> &str {
        &self.issuer
    }
}

/// Verifies against every configured issuer.
pub fn verify_external(issuers: &[Issuer], token: &str) -> Option<JwtIdentity> {
    // A JWT has exactly two dots; anything else is not worth parsing.
    if token.len() > crate::session::token::MAX_CREDENTIAL_LEN
        || token.bytes().filter(|&b| b == b'.').count() != 2
    {
        return None;
    }
    issuers.iter().find_map(|i| i.verify(token))
}

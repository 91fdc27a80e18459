//! Keys the gateway signs and checks with: `[tokens] secrets` (token tags), `[assertion]` (the
//! `X-Auth-Jwt` it signs) and `[[jwt_issuers]]` (external JWTs it accepts).

use super::parse::{duration, positive, resolve};
use crate::auth::jwt::{self, AssertionSigner, Issuer};
use crate::config::model::ConfigError;
use crate::config::raw::{RawAssertion, RawJwtIssuer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(super) fn secrets(secrets: Vec<String>) -> Result<Vec<Vec<u8>>, ConfigError> {
    let mut token_secrets = Vec::new();
    for (i, secret) in secrets.into_iter().enumerate() {
        if secret.len() < 32 {
            return Err(ConfigError::new(
                format!("tokens.secrets[{i}]"),
                "must be at least 32 characters of random data",
            ));
        }
        token_secrets.push(secret.into_bytes());
    }
    Ok(token_secrets)
}

pub(super) fn assertion(
    assertion: Option<RawAssertion>,
    base: &Path,
) -> Result<Option<Arc<AssertionSigner>>, ConfigError> {
    let Some(a) = assertion else {
        return Ok(None);
    };
    let ttl = positive("assertion.ttl", &a.ttl)?;
    if ttl > Duration::from_secs(60) {
        return Err(ConfigError::new("assertion.ttl", "must be at most 60s"));
    }
    let signer = AssertionSigner::load(&a.algorithm, &resolve(base, &a.key), &a.issuer, ttl)
        .map_err(|e| ConfigError::new("assertion.key", e))?;
    Ok(Some(Arc::new(signer)))
}

pub(super) fn jwt_issuers(issuers: Vec<RawJwtIssuer>, base: &Path) -> Result<Vec<Issuer>, ConfigError> {
    let mut jwt_issuers = Vec::new();
    for (i, raw_issuer) in issuers.into_iter().enumerate() {
        jwt_issuers.push(jwt_issuer(&format!("jwt_issuers[{i}]"), raw_issuer, base)?);
    }
    Ok(jwt_issuers)
}

fn jwt_issuer(key: &str, raw_issuer: RawJwtIssuer, base: &Path) -> Result<Issuer, ConfigError> {
    if raw_issuer.issuer.is_empty() {
        return Err(ConfigError::new(format!("{key}.issuer"), "must not be empty"));
    }
    if raw_issuer.audiences.is_empty() {
        return Err(ConfigError::new(
            format!("{key}.audiences"),
            "at least one audience is needed",
        ));
    }
    if raw_issuer.algorithms.is_empty() {
        return Err(ConfigError::new(
            format!("{key}.algorithms"),
            "list the accepted algorithms, e.g. [\"RS256\"]",
        ));
    }
    let algorithms = raw_issuer
        .algorithms
        .iter()
        .enumerate()
        .map(|(j, a)| jwt::algorithm(a).map_err(|e| ConfigError::new(format!("{key}.algorithms[{j}]"), e)))
        .collect::<Result<Vec<_>, _>>()?;
    let leeway = duration(&format!("{key}.leeway"), &raw_issuer.leeway)?;
    let pem_keys: Vec<PathBuf> = raw_issuer.keys.iter().map(|k| resolve(base, k)).collect();
    let jwks = raw_issuer.jwks_file.as_deref().map(|f| resolve(base, f));
    Issuer::load(
        &raw_issuer.issuer,
        &raw_issuer.audiences,
        &algorithms,
        &pem_keys,
        jwks.as_deref(),
        leeway,
    )
    .map_err(|e| ConfigError::new(format!("{key}.keys"), e))
}

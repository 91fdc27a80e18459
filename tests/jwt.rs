//! JWTs both ways: `X-Auth-Jwt` verifies against the gateway's JWKS (and not against another
//! key); external issuers' tokens are accepted on `jwt` routes only when signature, algorithm,
//! iss, aud, exp and nbf are all right — `alg: none` never.
//! Every test runs on both HTTP/1.1 paths (`PATHS`: the fast path, then hyper's).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use portcullis::auth::jwt::AssertionClaims;

fn assertion_toml() -> String {
    format!(
        "\n[assertion]\nalgorithm = \"EdDSA\"\nkey = \"{}\"\nttl = \"60s\"\n",
        repo_path("certs/assertion-key.pem").display()
    )
}

#[tokio::test]
async fn x_auth_jwt_verifies_against_the_jwks() {
    let (up, _stop) = upstream::whoami().await;
    let toml = base_toml()
        + &assertion_toml()
        + USERS
        + &route("app", "/", &[up], "").replace("policy = \"public\"", "policy = \"authenticated\"");
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let gw = Gateway::start(&on_path(&toml, fast));
        let token = mint(gw.admin, "alice", 1).await.remove(0);
        let seen = json_of(&get_with_token(gw.http, "/x", &token).await);
        let jwt = seen["headers"]["x-auth-jwt"].as_str().unwrap().to_string();
        let sid = seen["headers"]["x-auth-session-id"].as_str().unwrap().to_string();

        let jwks_resp = get_raw(gw.http, "/.well-known/jwks.json", "").await;
        assert_eq!(status_of(&jwks_resp), 200);
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(json_of(&jwks_resp)).unwrap();
        assert!(!jwks_resp.contains("\"d\""), "the JWKS holds no private part");
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .expect("the kid is in the JWKS");
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["app"]);
        validation.set_issuer(&["portcullis"]);
        let claims =
            jsonwebtoken::decode::<AssertionClaims>(&jwt, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
                .expect("verifies with the published key")
                .claims;
        assert_eq!(claims.sub, "11111111-1111-4111-8111-111111111111");
        assert_eq!(claims.name, "alice");
        assert_eq!(claims.roles, vec!["admin", "dev"]);
        assert_eq!(claims.sid, sid);
        assert!(claims.exp - claims.iat <= 60);

        // A different key (same algorithm) does not verify it.
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let other_key = DecodingKey::from_ed_pem(other.public_key_pem().as_bytes()).unwrap();
        assert!(jsonwebtoken::decode::<AssertionClaims>(&jwt, &other_key, &validation).is_err());
        gw.stop().await;
    }
}

struct Idp {
    key: EncodingKey,
    _dir: tempfile::TempDir,
    public_pem: std::path::PathBuf,
}

fn new_idp() -> Idp {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let public_pem = dir.path().join("idp.pub.pem");
    std::fs::write(&public_pem, pair.public_key_pem()).unwrap();
    Idp {
        key: EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap(),
        _dir: dir,
        public_pem,
    }
}

fn sign(key: &EncodingKey, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, key).unwrap()
}

#[tokio::test]
async fn external_issuers_on_jwt_routes() {
    let (up, _stop) = upstream::whoami().await;
    let idp = new_idp();
    let toml = base_toml()
        + USERS
        + &format!(
            "\n[[jwt_issuers]]\nissuer = \"https://idp.test\"\naudiences = [\"orders\"]\nalgorithms = [\"EdDSA\"]\nkeys = [\"{}\"]\nleeway = \"0s\"\n",
            idp.public_pem.display()
        )
        + &route("svc", "/svc", &[up], "").replace("policy = \"public\"", "policy = \"jwt\"")
        + &route("app", "/app", &[up], "").replace("policy = \"public\"", "policy = \"authenticated\"");
    for fast in PATHS {
        println!("http1_fast_path = {fast}");
        let gw = Gateway::start(&on_path(&toml, fast));
        let now = portcullis::session::now();
        let good = serde_json::json!({
            "iss": "https://idp.test", "aud": "orders", "sub": "svc-billing",
            "preferred_username": "billing", "roles": ["reader"], "exp": now + 300, "nbf": now - 10,
        });
        let valid = sign(&idp.key, good.clone());
        let resp = get_with_token(gw.http, "/svc/orders", &valid).await;
        assert_eq!(status_of(&resp), 200, "{resp}");
        let h = &json_of(&resp)["headers"];
        assert_eq!(h["x-auth-user"], "billing");
        assert_eq!(h["x-auth-user-uuid"], "svc-billing");
        assert_eq!(h["x-auth-roles"], "reader");
        assert!(h.get("x-auth-session-id").is_none());
        assert_eq!(
            h["authorization"],
            format!("Bearer {valid}"),
            "an external JWT is the upstream's business"
        );

        let with = |k: &str, v: serde_json::Value| {
            let mut c = good.clone();
            c[k] = v;
            c
        };
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let alg_none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&good.to_string())
        );
        let hs256 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &good,
            &EncodingKey::from_secret(b"guess"),
        )
        .unwrap();
        let cases = [
            ("alg none", alg_none),
            ("HS256 with a guessed secret", hs256),
            (
                "wrong issuer",
                sign(&idp.key, with("iss", "https://evil.test".into())),
            ),
            ("wrong audience", sign(&idp.key, with("aud", "payments".into()))),
            ("expired", sign(&idp.key, with("exp", (now - 5).into()))),
            ("not yet valid", sign(&idp.key, with("nbf", (now + 120).into()))),
            ("another key", sign(&new_idp().key, good.clone())),
            ("garbage", "a.b.c".to_string()),
        ];
        for (what, token) in &cases {
            let resp = get_with_token(gw.http, "/svc/orders", token).await;
            assert_eq!(status_of(&resp), 401, "{what}: {resp}");
        }
        // A JWT is not a session: routes with other policies refuse it.
        assert_eq!(status_of(&get_with_token(gw.http, "/app/x", &valid).await), 401);
        // Sessions work on jwt routes too.
        let session = mint(gw.admin, "alice", 1).await.remove(0);
        assert_eq!(status_of(&get_with_token(gw.http, "/svc/x", &session).await), 200);
        gw.stop().await;
    }
}

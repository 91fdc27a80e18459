//! Every config error names its key; the CLI exits non-zero with that message; the CLI's other
//! verbs (check-config, cert generate) do what they say.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use portcullis::config::Config;

const OIDC: &str = "[[oidc]]\nname = \"corp\"\nissuer = \"https://idp.example.com\"\nclient_id = \"portcullis\"\nclient_secret = \"s\"\n";
const ROUTE: &str = "[[routes]]\nname = \"app\"\nupstreams = [\"http://127.0.0.1:9\"]\npolicy = \"public\"\n";

fn error_for(toml: &str) -> String {
    match Config::from_toml(toml, &repo_path("")) {
        Ok(_) => panic!("accepted a bad config:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_bad_config_names_its_key() {
    let http = "[server]\nhttp_listen = \"127.0.0.1:0\"\n";
    let cases: Vec<(String, &str)> = vec![
        (format!("{http}{ROUTE}").replace("http://127.0.0.1:9", "htp:/x"), "routes[0].upstreams[0]: invalid URL \"htp:/x\""),
        (format!("{http}{ROUTE}").replace("http://127.0.0.1:9", "http://u:p@h:1"), "routes[0].upstreams[0]"),
        (format!("{http}{ROUTE}").replace("http://127.0.0.1:9", "http://h:1/base"), "routes[0].upstreams[0]"),
        (format!("{http}{ROUTE}{ROUTE}"), "routes[1].name: duplicate route name"),
        (format!("{http}{ROUTE}").replace("policy = \"public\"", "policy = \"open\""), "routes[0].policy: unknown policy"),
        (format!("{http}{ROUTE}").replace("policy = \"public\"", "policy = \"roles\""), "routes[0].roles: policy = \"roles\" needs"),
        (format!("{http}{ROUTE}").replace("policy = \"public\"", "policy = \"jwt\""), "routes[0].policy"),
        (format!("{http}[store]\nkind = \"disk\"\n{ROUTE}"), "store.kind: unknown store"),
        (format!("{http}[store]\nkind = \"redis\"\n{ROUTE}"), "store.url: required"),
        (format!("{http}[store]\nkind = \"redis\"\nurl = \"http://x\"\n{ROUTE}"), "store.url: expected redis://"),
        (format!("{http}[store]\nkind = \"redis\"\nurl = \"redis-sentinel://a:26379\"\n{ROUTE}"), "store.url: redis-sentinel:// needs the service's name"),
        (format!("{http}[store]\nkind = \"redis\"\nurl = \"redis-sentinel://a/mymaster\"\n{ROUTE}"), "store.url: each sentinel is host:port"),
        (format!("{http}[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:1\"\n{ROUTE}"), "tokens.secrets: required with the redis store"),
        (format!("{http}[tokens]\nsecrets = [\"short\"]\n{ROUTE}"), "tokens.secrets[0]: must be at least 32"),
        (format!("{http}[cache]\nttl = \"0s\"\n{ROUTE}"), "cache.ttl"),
        (format!("{http}[cache]\nmax_entries = 0\n{ROUTE}"), "cache.max_entries"),
        (format!("{http}[sessions]\nttl = \"a while\"\n{ROUTE}"), "sessions.ttl"),
        (format!("{http}[cookie]\nname = \"bad name;\"\n{ROUTE}"), "cookie.name"),
        (format!("mode = \"solo\"\n{http}{ROUTE}"), "mode: unknown mode \"solo\""),
        (format!("{http}[api]\nprefix = \"auth\"\n{ROUTE}"), "api.prefix: \"auth\" is not a plain absolute path"),
        (format!("{http}[api]\nprefix = \"/a/../b\"\n{ROUTE}"), "api.prefix"),
        (format!("mode = \"single-user\"\n{http}{ROUTE}"), "mode: \"single-user\" needs one [[users]] entry"),
        (format!("{http}[sessions]\nreissue_grace = \"5m\"\n{ROUTE}"), "sessions.reissue_grace: must be at most 60s"),
        (format!("{http}[sessions]\nidle_ttl = \"0s\"\n{ROUTE}"), "sessions.idle_ttl: must be greater than zero"),
        (format!("{http}[sessions]\npending_ttl = \"soon\"\n{ROUTE}"), "sessions.pending_ttl: invalid duration"),
        (format!("users_file = \"/nonexistent/users.toml\"\n{http}{ROUTE}"), "users_file: cannot read /nonexistent/users.toml"),
        (format!("{http}[[users]]\nusername = \"a b\"\nuser_id = 1\nuser_uuid = \"u\"\n{ROUTE}"), "users[0].username"),
        (
            format!("{http}[[users]]\nusername = \"a\"\nuser_id = 1\nuser_uuid = \"u\"\n[[users]]\nusername = \"b\"\nuser_id = 1\nuser_uuid = \"v\"\n{ROUTE}"),
            "users[1].user_id: duplicate",
        ),
        (format!("{http}[[users]]\nusername = \"a\"\nuser_id = 1\nuser_uuid = \"u\"\nroles = [\"a,b\"]\n{ROUTE}"), "users[0].roles[0]"),
        (format!("{http}[[users]]\nusername = \"a\"\nuser_uuid = \"u\"\n{ROUTE}"), "users[0]: missing field `user_id`"),
        (format!("{http}{ROUTE}path_prefix = \"/a/../b\"\n"), "routes[0].path_prefix"),
        (format!("{http}{ROUTE}path_prefix = \"api\"\n"), "routes[0].path_prefix"),
        (format!("{http}{ROUTE}host = \"bad host\"\n"), "routes[0].host"),
        (format!("{http}{ROUTE}host = \"a.example:80\"\n"), "routes[0].host"),
        (format!("{http}{ROUTE}").replace("name = \"app\"", "name = \"bad name!\""), "routes[0].name: invalid route name"),
        (format!("{http}{ROUTE}timeout = \"soon\"\n"), "routes[0].timeout: invalid duration"),
        (format!("{http}{ROUTE}timeout = \"0s\"\n"), "routes[0].timeout: must be greater than zero"),
        (format!("{http}{ROUTE}max_body = \"10 parsecs\"\n"), "routes[0].max_body"),
        (format!("{http}{ROUTE}upgrades = [\"websocket\", \"h2c\"]\n"), "routes[0].upgrades[1]: \"h2c\" cannot be tunnelled"),
        (format!("{http}{ROUTE}upgrades = [\"HTTP/2.0\"]\n"), "routes[0].upgrades[0]: \"HTTP/2.0\" cannot be tunnelled"),
        (format!("{http}{ROUTE}upgrades = [\"web socket\"]\n"), "routes[0].upgrades[0]: \"web socket\" is not an Upgrade protocol"),
        (format!("{http}{ROUTE}roles = [\"admin\"]\n"), "routes[0].roles"),
        (format!("{http}{ROUTE}upstream_ca = \"/nonexistent/ca.pem\"\n"), "routes[0].upstream_ca"),
        (format!("{http}{ROUTE}").replace("upstreams = [\"http://127.0.0.1:9\"]", "upstreams = []"), "routes[0].upstreams"),
        (format!("{http}{ROUTE}").replace("upstreams = [\"http://127.0.0.1:9\"]\n", ""), "routes[0]"),
        (format!("{http}{ROUTE}colour = \"red\"\n"), "routes[0].colour: unknown field `colour`"),
        (format!("{http}listn = \"x\"\n{ROUTE}"), "server.listn: unknown field `listn`"),
        (format!("{http}{OIDC}").replace("https://idp.example.com", "http://idp.example.com"), "oidc[0].issuer: \"http://idp.example.com\": must be https:// (http:// only on a loopback address)"),
        (format!("{http}{OIDC}").replace("name = \"corp\"", "name = \"Corp IdP\""), "oidc[0].name"),
        (format!("{http}{OIDC}{OIDC}"), "oidc[1].name: duplicate provider \"corp\""),
        (format!("{http}{OIDC}").replace("client_secret = \"s\"", "client_secret_env = \"PORTCULLIS_TEST_UNSET_VARIABLE\""), "oidc[0].client_secret_env: the environment variable PORTCULLIS_TEST_UNSET_VARIABLE is not set"),
        (format!("{http}{OIDC}").replace("client_secret = \"s\"\n", ""), "oidc[0].client_secret: needed"),
        (format!("{http}{OIDC}scopes = [\"profile\"]\n"), "oidc[0].scopes: must include \"openid\""),
        (format!("{http}{OIDC}allowed_roles = [\"staff\"]\n"), "oidc[0].allowed_roles: needs roles_claim"),
        (format!("{http}{OIDC}token_auth = \"private_key_jwt\"\n"), "oidc[0].token_auth"),
        (format!("{http}{OIDC}algorithms = [\"HS256\"]\n"), "oidc[0].algorithms: HS256 needs a shared secret"),
        (format!("{http}{OIDC}client_secret_post = true\n"), "oidc[0].client_secret_post: unknown field"),
        (format!("{http}workers = 0\n{ROUTE}"), "server.workers"),
        (format!("{http}workers = \"two\"\n{ROUTE}"), "server.workers"),
        (format!("{http}idle_timeout = \"forever\"\n{ROUTE}"), "server.idle_timeout"),
        (format!("{http}max_header_bytes = 100\n{ROUTE}"), "server.max_header_bytes"),
        (format!("{http}trusted_proxies = [\"10.0.0.0/33\"]\n{ROUTE}"), "server.trusted_proxies[0]"),
        ("[server]\nhttp_listen = \"localhost\"\n".to_string() + ROUTE, "server.http_listen: invalid address"),
        ("[server]\nlisten = \"127.0.0.1:0\"\n".to_string() + ROUTE, "server.tls_cert: required"),
        (
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"nope.pem\"\ntls_key = \"nope-key.pem\"\n".to_string() + ROUTE,
            "server.tls_cert: cannot read",
        ),
        (
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"certs/localhost.pem\"\ntls_key = \"certs/ca-key.pem\"\n".to_string()
                + ROUTE,
            "server.tls_cert: certificate",
        ),
        (ROUTE.to_string(), "server: no listener"),
        (http.to_string(), "routes: at least one"),
        (format!("{http}[admin]\ntoken = \"short\"\n{ROUTE}"), "admin.token: must be at least 16"),
        (format!("{http}[admin]\ntoken_env = \"PORTCULLIS_TEST_UNSET_VAR\"\n{ROUTE}"), "admin.token_env"),
        (format!("{http}[admin]\nlisten = \"nowhere\"\n{ROUTE}"), "admin.listen"),
        (format!("{http}[headers]\nuser = \"bad header\"\n{ROUTE}"), "headers.user"),
        (format!("{http}[demo]\nwhoami_listen = \"x\"\n{ROUTE}"), "demo.whoami_listen"),
        (format!("{http}[mystery]\n{ROUTE}"), "unknown field `mystery`"),
        (format!("{http}[assertion]\nkey = \"nope.pem\"\n{ROUTE}"), "assertion.key: cannot read"),
        (format!("{http}[assertion]\nkey = \"certs/localhost.pem\"\n{ROUTE}"), "assertion.key"),
        (format!("{http}[assertion]\nalgorithm = \"HS256\"\nkey = \"certs/assertion-key.pem\"\n{ROUTE}"), "assertion.key: algorithm"),
        (format!("{http}[assertion]\nkey = \"certs/assertion-key.pem\"\nttl = \"5m\"\n{ROUTE}"), "assertion.ttl: must be at most 60s"),
        (
            format!("{http}[[jwt_issuers]]\nissuer = \"i\"\naudiences = [\"a\"]\nalgorithms = [\"none\"]\nkeys = [\"k.pem\"]\n{ROUTE}"),
            "jwt_issuers[0].algorithms[0]: \"none\" is never accepted",
        ),
        (
            format!("{http}[[jwt_issuers]]\nissuer = \"i\"\naudiences = [\"a\"]\nalgorithms = [\"HS256\"]\nkeys = [\"k.pem\"]\n{ROUTE}"),
            "jwt_issuers[0].algorithms[0]: HS256 needs a shared secret",
        ),
        (
            format!("{http}[[jwt_issuers]]\nissuer = \"i\"\naudiences = [\"a\"]\nalgorithms = [\"RS256\"]\n{ROUTE}"),
            "jwt_issuers[0].keys: needs keys",
        ),
        (
            format!("{http}[[jwt_issuers]]\nissuer = \"i\"\naudiences = []\nalgorithms = [\"RS256\"]\n{ROUTE}"),
            "jwt_issuers[0].audiences",
        ),
        (
            format!("{http}[[jwt_issuers]]\nissuer = \"i\"\naudiences = [\"a\"]\nalgorithms = [\"RS256\"]\nkeys = [\"certs/ca-key.pem\"]\n{ROUTE}"),
            "jwt_issuers[0].keys",
        ),
        (format!("{http}{ROUTE}timeout = ["), "invalid TOML"),
    ];
    for (toml, want) in cases {
        let got = error_for(&toml);
        assert!(got.contains(want), "wanted {want:?} in {got:?} for:\n{toml}");
    }
}

#[test]
fn es256_assertion_keys_publish_their_public_half() {
    let dir = tempfile::tempdir().unwrap();
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let path = dir.path().join("ec.pem");
    std::fs::write(&path, ec.serialize_pem()).unwrap();
    let signer = portcullis::auth::jwt::AssertionSigner::load(
        "ES256",
        &path,
        "gw",
        std::time::Duration::from_secs(30),
    )
    .unwrap();
    let jwks: serde_json::Value = serde_json::from_str(&signer.jwks).unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert!(jwks["keys"][0].get("d").is_none());
    // The Ed25519 key given as ES256 is refused with a message, not a panic.
    let err = portcullis::auth::jwt::AssertionSigner::load(
        "ES256",
        &repo_path("certs/assertion-key.pem"),
        "gw",
        std::time::Duration::from_secs(30),
    )
    .err()
    .unwrap();
    assert!(err.contains("not a ES256 private key"), "{err}");
}

#[test]
fn jwt_routes_need_an_issuer() {
    let toml = format!("[server]\nhttp_listen = \"127.0.0.1:0\"\n{ROUTE}")
        .replace("policy = \"public\"", "policy = \"jwt\"");
    assert!(
        error_for(&toml).contains("routes[0].policy: policy = \"jwt\" needs at least one [[jwt_issuers]]")
    );
}

#[test]
fn routes_default_to_authenticated() {
    let toml =
        format!("[server]\nhttp_listen = \"127.0.0.1:0\"\n{ROUTE}").replace("policy = \"public\"\n", "");
    let config = Config::from_toml(&toml, &repo_path("")).unwrap();
    assert_eq!(config.routes[0].policy, portcullis::config::Policy::Authenticated);
}

#[test]
fn the_example_config_is_valid() {
    Config::load(&repo_path("config.example.toml")).unwrap();
}

#[test]
fn check_config_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!("[server]\nhttp_listen = \"127.0.0.1:0\"\n{ROUTE}").replace("http://127.0.0.1:9", "htp:/x"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check-config", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("routes[0].upstreams[0]: invalid URL \"htp:/x\""),
        "{stderr}"
    );

    let good = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check-config", "-c"])
        .arg(repo_path("config.example.toml"))
        .output()
        .unwrap();
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));

    // `run` refuses the bad file before binding anything.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("routes[0].upstreams[0]"));
}

#[test]
fn cert_generate_makes_a_chain_the_gateway_serves() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["cert", "generate", "--hosts", "localhost,127.0.0.1", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["ca.pem", "ca-key.pem", "localhost.pem", "localhost-key.pem"] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n{ROUTE}",
        dir.path().join("localhost.pem").display(),
        dir.path().join("localhost-key.pem").display()
    );
    Config::from_toml(&toml, dir.path()).expect("the generated pair loads");
}

#[test]
fn users_file_adds_users_and_names_its_bad_entries() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    let http = "[server]\nhttp_listen = \"127.0.0.1:0\"\n";
    let config = |users_text: &str| {
        std::fs::write(&users, users_text).unwrap();
        Config::from_toml(
            &format!("users_file = \"{}\"\n{http}{USERS}{ROUTE}", users.display()),
            &repo_path(""),
        )
    };
    let ok = config("[[users]]\nusername = \"carol\"\nuser_id = 3\nuser_uuid = \"c\"\n").unwrap();
    let names: Vec<&str> = ok.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "carol"]);

    let bad = config("[[users]]\nusername = \"a b\"\nuser_id = 3\nuser_uuid = \"c\"\n")
        .err()
        .unwrap();
    assert!(bad.to_string().starts_with("users_file[0].username"), "{bad}");
    let dup = config("[[users]]\nusername = \"alice\"\nuser_id = 3\nuser_uuid = \"c\"\n")
        .err()
        .unwrap();
    assert!(dup.to_string().contains("duplicate user \"alice\""), "{dup}");
    let typo = config("[[users]]\nusername = \"carol\"\nuser_id = 3\nuser_uuid = \"c\"\nrole = [\"x\"]\n")
        .err()
        .unwrap();
    assert!(typo.to_string().contains("unknown field `role`"), "{typo}");
    let unreadable = config("[[users]\n").err().unwrap();
    assert!(unreadable.to_string().contains("invalid TOML"), "{unreadable}");
}

/// Config errors reach logs and reload answers: they never quote a value from the file.
#[test]
fn errors_never_quote_secrets() {
    for toml in [
        "[admin]\ntoken = \"SUPERSECRET-admin-token-123\n",
        "[tokens]\nsecrets = \"SUPERSECRET-0123456789abcdef0123456789\"\n",
        "[store]\nkind = \"redis\"\nurl = 5\nprefix = [\"SUPERSECRET\"]\n",
        "[admin]\ntoken = [\"SUPERSECRET-admin-token-123\"]\n",
    ] {
        let e = error_for(toml);
        assert!(!e.contains("SUPERSECRET"), "{e}");
    }
    let e = error_for("[admin]\ntoken = \"SUPERSECRET-admin-token-123\n");
    assert!(e.contains("line 2"), "the position is named instead: {e}");
}

//! A real OpenID Provider for tests: node-oidc-provider running tests/oidc/provider.mjs on a
//! given port, with the test's client metadata, a fresh signing key at every (re)start, and a
//! scripted sign-in page. This module owns that child process (its log in a temp dir, killed on
//! drop), the registration of the gateway's clients (`client_registration`), the provider's
//! test control endpoints (`/test/sids`, `/test/backchannel`) and a small user agent
//! (`sign_in`, `ProviderJar`) that walks the provider's side of a login without a browser.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use super::{Answer, http_request, repo_path};

/// How long a start may take before the test fails with the provider's log.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The client secret of every test client registration (and of the gateway's `[[oidc]]`).
pub const CLIENT_SECRET: &str = "oidc-test-client-secret-0123456789abcdef";

/// The provider's registration of one gateway client, for `Provider::start`'s array: the code
/// flow, `auth` as its token endpoint auth method, the gateway's callback addresses (as the
/// browser will name them: the gateway derives its redirect URI from the request's Host and
/// listener), and its back-channel logout address (sid required).
pub fn client_registration(
    client_id: &str,
    auth: &str,
    redirect_uris: &[String],
    backchannel_logout_uri: &str,
) -> serde_json::Value {
    serde_json::json!({
        "client_id": client_id,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": redirect_uris,
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": auth,
        "backchannel_logout_uri": backchannel_logout_uri,
        "backchannel_logout_session_required": true
    })
}

/// `[[oidc]]` for the test provider on `port`: `idp` (client_secret_basic, everyone) and
/// `staff` (client_secret_post, only the staff role), both with roles from `groups`.
pub fn providers_toml(port: u16) -> String {
    format!(
        r#"
[[oidc]]
name = "idp"
display_name = "Test IdP"
issuer = "http://127.0.0.1:{port}"
client_id = "portcullis"
client_secret = "{CLIENT_SECRET}"
scopes = ["openid", "profile", "email", "groups"]
roles_claim = "groups"
[[oidc]]
name = "staff"
display_name = "Staff IdP"
issuer = "http://127.0.0.1:{port}"
client_id = "staff-only"
client_secret = "{CLIENT_SECRET}"
token_auth = "client_secret_post"
scopes = ["openid", "profile", "groups"]
roles_claim = "groups"
allowed_roles = ["staff"]
"#
    )
}

pub struct Provider {
    pub port: u16,
    clients: String,
    dir: tempfile::TempDir,
    log: PathBuf,
    child: Option<Child>,
}

impl Provider {
    /// Starts node tests/oidc/provider.mjs on `port` with these client metadata objects; waits
    /// for its `listening` line (panics with its log if it does not come within 15 s). Panics
    /// with a message naming scripts/test.sh if tests/oidc/node_modules/oidc-provider is missing.
    pub fn start(port: u16, clients: serde_json::Value) -> Provider {
        assert!(
            clients.is_array(),
            "Provider::start: clients must be a JSON array of client metadata objects"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut p = Provider {
            port,
            clients: clients.to_string(),
            log: dir.path().join("provider.log"),
            dir,
            child: None,
        };
        p.spawn();
        p
    }

    /// `http://127.0.0.1:<port>`, exactly as the provider's `iss`.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the provider and waits for it (all its sessions, grants and keys are gone).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port with the same clients, and a NEW signing key (new kid).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The provider's log (stdout and stderr of every start so far).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the provider is already running");
        let dir = repo_path("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "tests/oidc/node_modules/oidc-provider is missing: run scripts/test.sh (it runs `npm ci` in tests/oidc)"
        );
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        // Only a `listening` line written after this point counts (the log is kept across restarts).
        let from = log.seek(SeekFrom::End(0)).unwrap();
        let child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .env("PORT", self.port.to_string())
            .env("CLIENTS", &self.clients)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("node is installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let ready = format!("listening {}", self.issuer());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.log_since(from).lines().any(|l| l.trim() == ready) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "the OpenID Provider on port {} exited ({status}) before listening; its log:\n{}",
                    self.port,
                    self.log_since(from)
                );
            }
            if Instant::now() > deadline {
                self.stop();
                panic!(
                    "the OpenID Provider on port {} did not print `{ready}` within {START_TIMEOUT:?}; its log:\n{}",
                    self.port,
                    self.log_since(from)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn log_since(&self, from: u64) -> String {
        let mut f = std::fs::File::open(&self.log).unwrap();
        f.seek(SeekFrom::Start(from)).unwrap();
        let mut s = String::new();
        let _ = f.read_to_string(&mut s);
        s
    }

    /// One request to the provider (Host 127.0.0.1:<port>).
    pub async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let mut b = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("host", format!("127.0.0.1:{}", self.port));
        for (name, value) in headers {
            b = b.header(*name, *value);
        }
        http_request(self.addr(), b.body(Full::new(body.into())).unwrap()).await
    }

    /// The `sid` claims of the ID tokens the provider issued for `sub` so far, oldest first.
    pub async fn sids(&self, sub: &str) -> Vec<String> {
        let path = format!("/test/sids?sub={}", encode(sub));
        let a = self.request("GET", &path, &[], Bytes::new()).await;
        assert_eq!(a.status, 200, "GET {path}: {}", describe(&a));
        serde_json::from_value(a.json()).unwrap()
    }

    /// Asks the provider to send its back-channel logout for (`sub`, `sid`) to `client_id`'s
    /// backchannel_logout_uri; returns the status of `/test/backchannel` (200 when the RP
    /// answered 200/204, 502 when it refused or failed) and its JSON body.
    pub async fn backchannel(
        &self,
        client_id: &str,
        sub: &str,
        sid: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut body = serde_json::json!({ "client_id": client_id, "sub": sub });
        if let Some(sid) = sid {
            body["sid"] = sid.into();
        }
        let a = self
            .request(
                "POST",
                "/test/backchannel",
                &[("content-type", "application/json")],
                body.to_string(),
            )
            .await;
        let json = serde_json::from_slice(&a.body).unwrap_or_else(|e| {
            panic!(
                "POST /test/backchannel answered no JSON ({e}): {}\nprovider log:\n{}",
                describe(&a),
                self.log_tail(30)
            )
        });
        (a.status, json)
    }

    /// Follows a login at the provider like a browser would: GET `authorize_url` (the Location
    /// the gateway's /auth/oidc/<name>/start answered), follow redirects within the provider
    /// (keeping the provider's cookies in `jar`), POST `username` to the interaction form, and
    /// follow redirects until one points OUTSIDE the provider (to the gateway's callback).
    /// Returns that final URL (with code & state, or error=...). When the jar already holds a
    /// session at the provider, the provider may not show the form at all: the first redirect
    /// that leaves it is returned. A page that a browser's script would submit at once (the
    /// provider ending the jar's previous session when another account signs in, which also
    /// sends that session's back-channel logouts) is submitted. Panics with the last response
    /// if anything else happens.
    pub async fn sign_in(&self, jar: &mut ProviderJar, authorize_url: &str, username: &str) -> String {
        let origin = self.issuer();
        let mut next = ("GET", authorize_url.to_string(), None::<String>);
        let mut form_posted = false;
        for _ in 0..20 {
            let (method, url, body) = next;
            let Some(path) = within(&origin, &url) else {
                return url;
            };
            let cookies = jar.header();
            let mut headers: Vec<(&str, &str)> = Vec::new();
            if !cookies.is_empty() {
                headers.push(("cookie", &cookies));
            }
            if body.is_some() {
                headers.push(("content-type", "application/x-www-form-urlencoded"));
            }
            let answer = self
                .request(method, path, &headers, body.unwrap_or_default())
                .await;
            jar.store(&answer.headers);
            if (300..400).contains(&answer.status) {
                let location = answer
                    .headers
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or_else(|| {
                        panic!(
                            "{method} {url}: a redirect without Location: {}",
                            describe(&answer)
                        )
                    });
                next = ("GET", absolute(&origin, location), None);
                continue;
            }
            let page = String::from_utf8_lossy(&answer.body);
            if answer.status == 200
                && !form_posted
                && let Some(action) = login_form_action(&page)
            {
                form_posted = true;
                let form = form_urlencoded::Serializer::new(String::new())
                    .append_pair("username", username)
                    .finish();
                next = ("POST", absolute(&origin, &action), Some(form));
                continue;
            }
            // A page that a browser's script submits at once, e.g. the provider ending the
            // previous session (/session/end/confirm) when another account signs in.
            if answer.status == 200
                && let Some((action, fields)) = auto_submit_form(&page)
            {
                let mut form = form_urlencoded::Serializer::new(String::new());
                for (name, value) in &fields {
                    form.append_pair(name, value);
                }
                next = ("POST", absolute(&origin, &action), Some(form.finish()));
                continue;
            }
            panic!(
                "sign_in({username}) got stuck at {method} {url}: {}\nprovider log:\n{}",
                describe(&answer),
                self.log_tail(30)
            );
        }
        panic!("sign_in({username}): more than 20 requests at the provider");
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The provider's cookies, as a browser keeps them for its origin: by name, attributes ignored,
/// all of them sent on every request to the provider.
#[derive(Default, Debug, Clone)]
pub struct ProviderJar {
    pub cookies: BTreeMap<String, String>,
}

impl ProviderJar {
    /// The `Cookie` header value ("" when empty).
    pub fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Takes every Set-Cookie of an answer: keeps name=value, drops the cookie when the value is
    /// empty, Max-Age is 0 or less, or Expires is in the past.
    pub fn store(&mut self, headers: &http::HeaderMap) {
        for value in headers.get_all("set-cookie") {
            let Ok(value) = value.to_str() else { continue };
            let mut parts = value.split(';');
            let Some((name, val)) = parts.next().and_then(|nv| nv.split_once('=')) else {
                continue;
            };
            let (name, val) = (name.trim(), val.trim());
            let expired = parts.any(|attr| {
                let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
                match k.trim().to_ascii_lowercase().as_str() {
                    "max-age" => v.trim().parse::<i64>().is_ok_and(|s| s <= 0),
                    "expires" => httpdate::parse_http_date(v.trim()).is_ok_and(|t| t <= SystemTime::now()),
                    _ => false,
                }
            });
            if val.is_empty() || expired {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), val.to_string());
            }
        }
    }
}

/// The path and query of `url` when it is on `origin` ("http://127.0.0.1:<port>").
fn within<'a>(origin: &str, url: &'a str) -> Option<&'a str> {
    let rest = url.strip_prefix(origin)?;
    if rest.is_empty() {
        Some("/")
    } else {
        rest.starts_with('/').then_some(rest)
    }
}

/// A Location made absolute against the provider's origin.
fn absolute(origin: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if location.starts_with('/') {
        format!("{origin}{location}")
    } else {
        panic!("a relative Location this user agent does not resolve: {location}")
    }
}

/// The action of provider.mjs's sign-in form, when `page` is that form.
fn login_form_action(page: &str) -> Option<String> {
    let start = page.find("<form method=\"post\" action=\"")? + "<form method=\"post\" action=\"".len();
    let action = &page[start..start + page[start..].find('"')?];
    (action.starts_with("/interaction/") && action.ends_with("/login")).then(|| action.to_string())
}

/// The action and hidden fields of a page whose script posts its first form on load.
fn auto_submit_form(page: &str) -> Option<(String, Vec<(String, String)>)> {
    if !page.contains("document.forms[0].submit()") {
        return None;
    }
    let form = &page[page.find("<form method=\"post\"")?..];
    let form = &form[..form.find("</form>")?];
    let action = unescape(attribute(form, "action")?);
    let mut fields = Vec::new();
    let mut rest = form;
    while let Some(i) = rest.find("<input ") {
        rest = &rest[i + "<input".len()..]; // keeps the space attribute() looks for
        let tag = &rest[..rest.find('>')?];
        if attribute(tag, "type") == Some("hidden")
            && let Some(name) = attribute(tag, "name")
        {
            fields.push((unescape(name), unescape(attribute(tag, "value").unwrap_or(""))));
        }
    }
    Some((action, fields))
}

/// The double-quoted value of `name="..."` in an HTML tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    Some(&tag[start..start + tag[start..].find('"')?])
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An answer for failure messages: status, Location and the start of the body.
pub fn describe(a: &Answer) -> String {
    let body = String::from_utf8_lossy(&a.body);
    let body: String = body.chars().take(2000).collect();
    format!(
        "{} (location: {:?})\n{body}",
        a.status,
        a.headers.get("location").and_then(|l| l.to_str().ok())
    )
}

//! The person a provider signed in, read from claims: `sub` (→ `X-Auth-User-Uuid`), the
//! username claim (→ `X-Auth-User`) and the roles claim (→ `X-Auth-Roles`), each from the ID
//! token or, where it is absent there, from UserInfo (SPEC §4a). A claim name is looked up as
//! written, then as a path of `.`-separated names (Keycloak's `realm_access.roles`). Values go
//! into request headers, so what a header cannot carry is refused here, not mangled.

use openidconnect::AdditionalClaims;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Every claim openidconnect does not model itself (`groups`, `roles`, `sid`, …).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OtherClaims {
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl AdditionalClaims for OtherClaims {}

/// The claim `name` in a claims object: as written, else as a dotted path.
pub fn find<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut at = claims.get(parts.next()?)?;
    for part in parts {
        at = at.as_object()?.get(part)?;
    }
    Some(at)
}

/// A value fit for an identity header: 1-256 visible ASCII characters or spaces.
pub fn header_text(text: &str) -> bool {
    !text.is_empty() && text.len() <= 256 && text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The username claim's value, if it is a string a header can carry.
pub fn username(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) if header_text(s) => Ok(s.clone()),
        Value::String(_) => Err("it is empty, too long, or not plain ASCII".into()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err("it is not a string".into()),
    }
}

/// Roles from the roles claim: an array of strings (or one string). Strings that cannot be a
/// role (empty, with a comma, not plain ASCII) are left out and counted.
pub fn roles(value: &Value) -> (Vec<String>, usize) {
    let all: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        one @ Value::String(_) => vec![one],
        _ => return (Vec::new(), 1),
    };
    let mut roles = Vec::new();
    let mut dropped = 0;
    for item in all {
        match item.as_str() {
            Some(r) if header_text(r) && !r.contains(',') && r.len() <= 128 => {
                if !roles.iter().any(|have| have == r) {
                    roles.push(r.to_string());
                }
            }
            _ => dropped += 1,
        }
    }
    (roles, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_are_found_as_written_then_as_paths() {
        let claims = json!({
            "groups": ["a"],
            "realm_access": {"roles": ["admin", "user"]},
            "https://example.com/roles": ["x"],
        });
        let claims = claims.as_object().unwrap();
        assert_eq!(find(claims, "groups"), Some(&json!(["a"])));
        assert_eq!(
            find(claims, "realm_access.roles"),
            Some(&json!(["admin", "user"]))
        );
        assert_eq!(find(claims, "https://example.com/roles"), Some(&json!(["x"])));
        assert_eq!(find(claims, "realm_access.missing"), None);
        assert_eq!(find(claims, "groups.0"), None);
    }

    #[test]
    fn only_what_a_header_can_carry() {
        assert_eq!(
            username(&json!("alice@example.com")).unwrap(),
            "alice@example.com"
        );
        assert!(username(&json!("é")).is_err());
        assert!(username(&json!("a\r\nX-Evil: 1")).is_err());
        assert!(username(&json!("")).is_err());
        assert!(username(&json!(["a"])).is_err());
        let (r, dropped) = roles(&json!(["admin", "a,b", "", "admin", "ü", 7, "staff"]));
        assert_eq!(r, ["admin", "staff"]);
        assert_eq!(dropped, 4);
        assert_eq!(roles(&json!("solo")).0, ["solo"]);
    }
}

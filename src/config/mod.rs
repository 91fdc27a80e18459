//! Configuration. The flow is: TOML text → `raw::RawConfig` (serde, `deny_unknown_fields`,
//! defaults) → `validate` → `Config`, the checked form the gateway runs on. Durations are parsed,
//! addresses resolved, certificates and keys loaded here, before any port is bound, and every
//! error names the key it is about (`routes[1].upstreams[0]: invalid URL "htp:/x"`).

mod model;
mod raw;
mod units;
mod users;
mod validate;

pub use model::*;
pub use units::parse_duration;
pub use validate::oidc::{DEFAULT_ALGORITHMS, check_url, is_loopback};

use model::{syntax_error, without_values};
use raw::RawConfig;
use std::path::Path;

impl Config {
    /// Reads and validates a config file; relative paths in it are relative to its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Config::from_toml(&text, base)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Validates config text; relative paths are resolved against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::new("", syntax_error(text, &e)))?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            ConfigError::new(key, without_values(e.into_inner().message()))
        })?;
        validate::validate(raw, base)
    }
}

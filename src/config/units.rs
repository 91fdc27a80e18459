//! Units in the config file: durations ("90s", "10m", "14d") and byte sizes (1048576, "512KiB", "10MiB").

use serde::Deserialize;
use std::time::Duration;

/// Parses a duration such as "90s", "10m", "14d" or "1h 30m". Zero is allowed; callers that
/// need a positive value check it themselves so the message can name the key.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration (expected e.g. \"90s\", \"10m\", \"14d\")".into());
    }
    humantime::parse_duration(trimmed)
        .map_err(|e| format!("invalid duration \"{text}\": {e} (expected e.g. \"90s\", \"10m\", \"14d\")"))
}

/// A byte size as written in the file: a plain integer, or a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

impl RawSize {
    /// Bytes, from an integer or from "512KiB", "10MiB", "1GiB" (powers of 1024) or "10KB", "10MB",
    /// "1GB" (powers of 1000) or "100B".
    pub fn bytes(&self) -> Result<u64, String> {
        let text = match self {
            RawSize::Bytes(n) => return Ok(*n),
            RawSize::Text(t) => t.trim(),
        };
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("invalid size \"{text}\" (expected e.g. 1048576, \"512KiB\", \"10MiB\")"))?;
        let multiplier: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(format!(
                    "invalid size unit \"{other}\" in \"{text}\" (expected B, KiB, MiB, GiB, KB, MB or GB)"
                ));
            }
        };
        number
            .checked_mul(multiplier)
            .ok_or_else(|| format!("size \"{text}\" is too large"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("14d"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("ten seconds").is_err());
        assert!(parse_duration("5").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(RawSize::Bytes(7).bytes(), Ok(7));
        assert_eq!(RawSize::Text("10MiB".into()).bytes(), Ok(10 << 20));
        assert_eq!(RawSize::Text("512KiB".into()).bytes(), Ok(512 << 10));
        assert_eq!(RawSize::Text("2 KB".into()).bytes(), Ok(2_000));
        assert_eq!(RawSize::Text("100".into()).bytes(), Ok(100));
        assert!(RawSize::Text("10 parsecs".into()).bytes().is_err());
        assert!(RawSize::Text("MiB".into()).bytes().is_err());
        assert!(RawSize::Text("99999999999999GiB".into()).bytes().is_err());
    }
}

//! How a log line reads: the access log's request lines and the dropped-lines report, written
//! by hand as JSON or in `tracing`'s human layout (`--log-format`), timestamps included. Pure
//! formatting into a byte buffer — no I/O, no shared state; the buffering and the writer thread
//! are the parent module's.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Human,
}

/// What one request's line says. Strings are written escaped, so nothing in a path or a
/// name can end the line or forge a field.
pub struct Record<'a> {
    pub method: &'a str,
    pub route: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub upstream: &'a str,
    pub latency: Duration,
    pub request_id: &'a str,
    pub session: &'a str,
    pub peer: SocketAddr,
}

/// The line that says how many lines were lost since the last such line.
pub(super) fn dropped_line(format: Format, count: u64) -> Vec<u8> {
    let mut line = Vec::with_capacity(160);
    let head = Head {
        level: "WARN",
        target: "portcullis::log",
        message: Some("log lines dropped: the log's destination could not keep up"),
    };
    write_line(
        &mut line,
        &mut Clock::default(),
        format,
        &head,
        [("dropped", Value::Number(count))],
    );
    line
}

/// One value of a line.
enum Value<'a> {
    Text(&'a str),
    Number(u64),
    Millis(Duration),
    Peer(SocketAddr),
}

/// The fields of a line, in the order they are written.
fn fields<'a>(r: &Record<'a>) -> [(&'static str, Value<'a>); 9] {
    [
        ("method", Value::Text(r.method)),
        ("route", Value::Text(r.route)),
        ("path", Value::Text(r.path)),
        ("status", Value::Number(u64::from(r.status))),
        ("upstream", Value::Text(r.upstream)),
        ("latency_ms", Value::Millis(r.latency)),
        ("request_id", Value::Text(r.request_id)),
        ("session", Value::Text(r.session)),
        ("peer", Value::Peer(r.peer)),
    ]
}

/// What starts and ends a line besides its fields.
struct Head {
    level: &'static str,
    target: &'static str,
    message: Option<&'static str>,
}

const ACCESS: Head = Head {
    level: "INFO",
    target: "portcullis::access",
    message: None,
};

/// One request's line; returns the time it was written (since 1970).
pub(super) fn format_line(out: &mut Vec<u8>, clock: &mut Clock, format: Format, r: &Record<'_>) -> Duration {
    write_line(out, clock, format, &ACCESS, fields(r))
}

/// `{"timestamp":…,"level":…[,"message":…],<fields>,"target":…}` or
/// `<timestamp>  LEVEL target:[ message] name=value …`, and a newline; returns the time it
/// was written (since 1970).
fn write_line<'a>(
    out: &mut Vec<u8>,
    clock: &mut Clock,
    format: Format,
    head: &Head,
    fields: impl IntoIterator<Item = (&'static str, Value<'a>)>,
) -> Duration {
    let json = format == Format::Json;
    let now;
    if json {
        out.extend_from_slice(b"{\"timestamp\":\"");
        now = clock.push_now(out);
        out.extend_from_slice(b"\",\"level\":\"");
        out.extend_from_slice(head.level.as_bytes());
        out.push(b'"');
        if let Some(message) = head.message {
            out.extend_from_slice(b",\"message\":");
            push_str(out, message);
        }
    } else {
        now = clock.push_now(out);
        out.extend_from_slice(b"  ");
        out.extend_from_slice(head.level.as_bytes());
        out.push(b' ');
        out.extend_from_slice(head.target.as_bytes());
        out.push(b':');
        if let Some(message) = head.message {
            out.push(b' ');
            out.extend_from_slice(message.as_bytes());
        }
    }
    for (name, value) in fields {
        out.extend_from_slice(if json { b",\"" } else { b" " });
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(if json { b"\":" } else { b"=" });
        match value {
            Value::Text(text) => push_str(out, text),
            Value::Number(n) => push_u64(out, n),
            Value::Millis(d) => push_millis(out, d),
            // A socket address has no characters that need escaping.
            Value::Peer(peer) if json => {
                let _ = write!(out, "\"{peer}\"");
            }
            Value::Peer(peer) => {
                let _ = write!(out, "{peer}");
            }
        }
    }
    if json {
        out.extend_from_slice(b",\"target\":\"");
        out.extend_from_slice(head.target.as_bytes());
        out.extend_from_slice(b"\"}\n");
    } else {
        out.push(b'\n');
    }
    now
}

/// A JSON string: quoted, with `"`, `\` and control characters escaped.
fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escaped.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escaped);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Milliseconds with three decimals (microseconds): `12.345`.
fn push_millis(out: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros().min(u128::from(u64::MAX)) as u64;
    push_u64(out, micros / 1000);
    out.push(b'.');
    push_padded(out, micros % 1000, 3);
}

fn push_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut n = n;
    for slot in digits[..width].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits[..width]);
}

/// RFC 3339 UTC timestamps with microseconds; the date and time of day are formatted once
/// per second.
#[derive(Default)]
pub(super) struct Clock {
    second: u64,
    prefix: Vec<u8>,
}

impl Clock {
    /// Writes the time now; returns it (since 1970).
    fn push_now(&mut self, out: &mut Vec<u8>) -> Duration {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = now.as_secs();
        if second != self.second || self.prefix.is_empty() {
            self.second = second;
            self.prefix.clear();
            push_civil(&mut self.prefix, second);
        }
        out.extend_from_slice(&self.prefix);
        out.push(b'.');
        push_padded(out, u64::from(now.subsec_micros()), 6);
        out.push(b'Z');
        now
    }
}

/// `YYYY-MM-DDTHH:MM:SS` for seconds since 1970 (Howard Hinnant's civil-from-days).
fn push_civil(out: &mut Vec<u8>, secs: u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    push_padded(out, year.max(0) as u64, 4);
    out.push(b'-');
    push_padded(out, month as u64, 2);
    out.push(b'-');
    push_padded(out, day as u64, 2);
    out.push(b'T');
    push_padded(out, rem / 3600, 2);
    out.push(b':');
    push_padded(out, rem % 3600 / 60, 2);
    out.push(b':');
    push_padded(out, rem % 60, 2);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        let mut out = Vec::new();
        push_civil(&mut out, 0);
        assert_eq!(out, b"1970-01-01T00:00:00");
        out.clear();
        // 2026-11-30T05:31:25Z
        push_civil(&mut out, 1_796_016_685);
        assert_eq!(String::from_utf8_lossy(&out), "2026-11-30T05:31:25");
        out.clear();
        // 2000-02-29T23:59:59Z (a leap day)
        push_civil(&mut out, 951_868_799);
        assert_eq!(String::from_utf8_lossy(&out), "2000-02-29T23:59:59");
    }

    fn line(format: Format, path: &str) -> String {
        let mut out = Vec::new();
        let record = Record {
            method: "GET",
            route: "app",
            path,
            status: 200,
            upstream: "http://127.0.0.1:8081",
            latency: Duration::from_micros(12_345),
            request_id: "r-1",
            session: "-",
            peer: "127.0.0.1:5000".parse().unwrap_or_else(|_| unreachable!()),
        };
        format_line(&mut out, &mut Clock::default(), format, &record);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn json_lines_parse_and_escape_what_could_forge_a_field() {
        let text = line(Format::Json, "/a\"b\\c\n\u{1}\u{7f}é");
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(v["path"], "/a\"b\\c\n\u{1}\u{7f}é");
        assert_eq!(v["status"], 200);
        assert_eq!(v["latency_ms"], 12.345);
        assert_eq!(v["target"], "portcullis::access");
        assert_eq!(v["peer"], "127.0.0.1:5000");
    }

    #[test]
    fn human_lines_are_one_line() {
        let text = line(Format::Human, "/x\ny");
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(
            text.contains(
                " INFO portcullis::access: method=\"GET\" route=\"app\" path=\"/x\\ny\" status=200 "
            )
        );
        assert!(text.contains("latency_ms=12.345 "));
    }

    #[test]
    fn dropped_lines_say_how_many_in_both_formats() {
        let json = String::from_utf8_lossy(&dropped_line(Format::Json, 7)).into_owned();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["dropped"], 7);
        assert_eq!(v["target"], "portcullis::log");
        let human = String::from_utf8_lossy(&dropped_line(Format::Human, 7)).into_owned();
        assert!(
            human.contains("  WARN portcullis::log: log lines dropped: the log's destination could not keep up dropped=7\n"),
            "{human}"
        );
    }
}

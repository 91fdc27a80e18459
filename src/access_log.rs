//! The log's one writer: access-log lines and every other log line reach stdout through one
//! thread, so a request never waits for the log and lines never interleave.
//!
//! - An access-log line is formatted by hand (JSON or human, as `--log-format` says) into its
//!   worker thread's buffer: no allocation per line, no lock, no system call. A buffer goes to
//!   the writer thread when it holds 32 KiB (a quarter of `log.buffer` if that is less), or
//!   every 100 ms (`flush_local`, run by each worker), and when its worker ends.
//! - Other log lines (`tracing`'s, rare) go to the writer thread one by one (`Writer`).
//! - The writer thread writes what it receives in order. A destination that cannot keep up
//!   lets lines wait, up to `log.buffer` bytes (4 MiB by default); what does not fit is
//!   dropped, never waited for: counted in `portcullis_log_dropped_lines_total` and said in the
//!   log itself once it moves again.
//! - `Guard` (held by `main`) drains everything sent before it is dropped: a stop loses no
//!   line, unless the destination takes none for 5 s (then the stop goes on without them). A
//!   reload (SIGHUP) does not touch any of this.
//!
//! Lines carry no secrets: the callers pass the path without its query, a session's id (not
//! its token) and nothing of the headers.

use prometheus_client::metrics::counter::Counter;
use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A worker's buffer is sent once it holds this much.
const BATCH_BYTES: usize = 32 * 1024;
/// Or once its first line is this old.
pub const BATCH_AGE: Duration = Duration::from_millis(100);
/// Messages the writer may be behind by (a bound on top of `log.buffer`'s bytes).
const CHANNEL: usize = 64 * 1024;
/// `log.buffer`'s default.
pub const DEFAULT_BUFFER: usize = 4 * 1024 * 1024;

/// Bytes sent to the writer and not written yet, and how many may be.
static QUEUED: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_BUFFER);

/// Sets how many bytes of log may wait for a slow destination (`log.buffer`).
pub fn set_buffer(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Human,
}

enum Msg {
    /// Complete lines.
    Lines(Vec<u8>),
    /// Everything sent before this is written: answer.
    Drain(SyncSender<()>),
}

struct Sink {
    tx: SyncSender<Msg>,
    format: Format,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Lines dropped because the destination could not keep up (process-wide; every `Metrics`
/// registers this one counter).
pub static DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Starts the writer thread over `out`. Returns `None` if it was started already.
pub fn init(format: Format, out: Box<dyn Write + Send>) -> Option<Guard> {
    let (tx, rx) = sync_channel(CHANNEL);
    // The writer first: lines are only ever sent where a thread reads them (without one,
    // `tracing`'s lines fall back to stderr).
    std::thread::Builder::new()
        .name("portcullis-log".into())
        .spawn(move || write_all(rx, out, format))
        .ok()?;
    let sink = Sink {
        tx: tx.clone(),
        format,
    };
    SINK.set(sink).ok()?;
    Some(Guard { tx })
}

/// Follows `RUST_LOG`'s verdict on the access log (`portcullis::access=off`), read once the
/// subscriber is installed.
pub fn set_access_enabled(enabled: bool) {
    ACCESS_OFF.store(!enabled, Ordering::Relaxed);
}

static ACCESS_OFF: AtomicBool = AtomicBool::new(false);

/// The writer thread: writes messages in order, flushing whenever it has caught up, and says
/// how many lines were dropped since it last said so.
fn write_all(rx: Receiver<Msg>, mut out: Box<dyn Write + Send>, format: Format) {
    let mut reported = 0;
    let mut report = |out: &mut Box<dyn Write + Send>| {
        let dropped = DROPPED.get();
        if dropped > reported {
            let _ = out.write_all(&dropped_line(format, dropped - reported));
            reported = dropped;
        }
    };
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Lines(bytes) => {
                    let _ = out.write_all(&bytes);
                    QUEUED.fetch_sub(bytes.len(), Ordering::Relaxed);
                }
                Msg::Drain(done) => {
                    report(&mut out);
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        report(&mut out);
        let _ = out.flush();
    }
}

/// The line that says how many lines were lost since the last such line.
fn dropped_line(format: Format, count: u64) -> Vec<u8> {
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

/// Drains the log when dropped (at the end of `main`): every line sent before is written.
pub struct Guard {
    tx: SyncSender<Msg>,
}

/// How long a stop waits for the destination to take the last lines.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

impl Drop for Guard {
    fn drop(&mut self) {
        flush_local();
        let deadline = Instant::now() + DRAIN_LIMIT;
        let (done, wait) = sync_channel(1);
        let mut drain = Msg::Drain(done);
        // Never blocks past the deadline, even with the channel full and the writer stuck.
        loop {
            match self.tx.try_send(drain) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    drain = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let _ = wait.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// Flushes the thread's lines when dropped: a worker holds one, so its lines are sent however
/// it ends (a panic included).
pub struct FlushOnExit;

impl Drop for FlushOnExit {
    fn drop(&mut self) {
        flush_local();
    }
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

struct Local {
    bytes: Vec<u8>,
    lines: u64,
    /// When the first line in `bytes` was written (since 1970, the lines' own clock).
    since: Option<Duration>,
    clock: Clock,
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local {
        bytes: Vec::new(),
        lines: 0,
        since: None,
        clock: Clock::default(),
    });
}

/// Whether access-log lines are written at all (the writer runs and `RUST_LOG` allows them).
pub fn enabled() -> bool {
    SINK.get().is_some() && !ACCESS_OFF.load(Ordering::Relaxed)
}

/// Adds one request's line to this thread's buffer.
pub fn record(r: &Record<'_>) {
    let Some(sink) = SINK.get() else {
        return;
    };
    if ACCESS_OFF.load(Ordering::Relaxed) {
        return;
    }
    let full = LOCAL.with(|local| {
        let Ok(mut local) = local.try_borrow_mut() else {
            return false;
        };
        let local = &mut *local;
        if local.bytes.capacity() == 0 {
            local.bytes.reserve(BATCH_BYTES + 1024);
        }
        // The line's timestamp is also the batch's clock: one clock read per line. (Should
        // the wall clock step back, the worker's 100 ms flush still sends the batch.)
        let now = format_line(&mut local.bytes, &mut local.clock, sink.format, r);
        local.lines += 1;
        let since = *local.since.get_or_insert(now);
        local.bytes.len() >= batch_bytes() || now.saturating_sub(since) >= BATCH_AGE
    });
    if full {
        flush_local();
    }
}

/// A batch is sent at 32 KiB, or at a quarter of `log.buffer` when that is smaller (a batch
/// larger than the budget could never be queued).
fn batch_bytes() -> usize {
    BATCH_BYTES.min(LIMIT.load(Ordering::Relaxed) / 4)
}

/// Sends this thread's buffered lines to the writer (workers call it every `BATCH_AGE`, and
/// when they stop).
pub fn flush_local() {
    let Some(sink) = SINK.get() else {
        return;
    };
    let batch = LOCAL.with(|local| {
        let mut local = local.try_borrow_mut().ok()?;
        if local.lines == 0 {
            return None;
        }
        // A copy of what is used (what `log.buffer` counts is what the batch holds); the
        // buffer's capacity stays with the worker.
        let bytes = local.bytes.clone();
        local.bytes.clear();
        let lines = std::mem::take(&mut local.lines);
        local.since = None;
        Some((bytes, lines))
    });
    if let Some((bytes, lines)) = batch {
        send(&sink.tx, bytes, lines);
    }
}

/// Queues complete lines for the writer, or drops them (counted) when `log.buffer` is full.
fn send(tx: &SyncSender<Msg>, bytes: Vec<u8>, lines: u64) {
    let len = bytes.len();
    let queued = QUEUED.fetch_add(len, Ordering::Relaxed);
    if queued + len > LIMIT.load(Ordering::Relaxed) {
        QUEUED.fetch_sub(len, Ordering::Relaxed);
        DROPPED.inc_by(lines);
        return;
    }
    if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(Msg::Lines(bytes)) {
        QUEUED.fetch_sub(len, Ordering::Relaxed);
        DROPPED.inc_by(lines);
    }
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
fn format_line(out: &mut Vec<u8>, clock: &mut Clock, format: Format, r: &Record<'_>) -> Duration {
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
struct Clock {
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

/// `tracing`'s writer: each event's bytes go to the writer thread as one message.
#[derive(Clone, Copy, Default)]
pub struct MakeWriter;

pub struct Writer(Vec<u8>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for MakeWriter {
    type Writer = Writer;
    fn make_writer(&'a self) -> Writer {
        Writer(Vec::new())
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.0);
        match SINK.get() {
            Some(sink) => send(&sink.tx, bytes, 1),
            None => {
                let _ = std::io::stderr().write_all(&bytes);
            }
        }
    }
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

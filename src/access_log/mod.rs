//! The log's one writer: access-log lines and every other log line reach stdout through one
//! thread, so a request never waits for the log and lines never interleave.
//!
//! - An access-log line is formatted by hand (JSON or human, as `--log-format` says; `format`)
//!   into its worker thread's buffer: no allocation per line, no lock, no system call. A buffer
//!   goes to the writer thread when it holds 32 KiB (a quarter of `log.buffer` if that is
//!   less), or every 100 ms (`flush_local`, run by each worker), and when its worker ends.
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

mod format;

pub use format::{Format, Record};

use format::{Clock, dropped_line, format_line};
use prometheus_client::metrics::counter::Counter;
use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

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

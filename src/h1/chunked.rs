//! Where a chunked body ends. The fast path relays an upstream's chunks byte for byte; this
//! tracker reads along to know where the message ends, so the next response on the connection
//! starts where the client and the gateway both think it does, and to leave out the trailer
//! section (as the general path does: the client gets the last chunk and a blank line). It is
//! strict where lenient parsers disagree: CRLF only (no bare LF), hex sizes of at most 15
//! digits, extension and trailer lines without control characters, trailers of at most 16 KiB.

const MAX_SIZE_DIGITS: u8 = 15;
const MAX_TRAILERS: usize = 16 * 1024;
/// Chunk-extension bytes in one body, as hyper's decoder counts them (the general path's).
const MAX_EXTENSIONS: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In the hex size; `digits` read so far.
    Size {
        digits: u8,
        size: u64,
    },
    /// After the size digits: only whitespace, then `;` or CR.
    Space {
        size: u64,
    },
    /// After `;`: extensions up to CR.
    Extension {
        size: u64,
    },
    /// CR of the size line seen; LF next.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final blank line).
    TrailerStart,
    /// In a trailer's name (a token, then `:`).
    TrailerName,
    /// In a trailer's value.
    Trailer,
    TrailerLf,
    /// CR of the final blank line seen.
    EndLf,
    Done,
}

/// What `feed` found in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Bytes that belong to the body (all of the buffer unless the body ends inside it).
    pub used: usize,
    /// Of those, the leading bytes to relay: all but trailer lines and the final blank line,
    /// which the relay writes itself (`END`) once the body is done.
    pub relay: usize,
}

/// What ends a relayed chunked body after its last chunk.
pub const END: &[u8] = b"\r\n";

/// A malformed chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadChunk(pub &'static str);

#[derive(Debug)]
pub struct Chunked {
    state: State,
    trailer_bytes: usize,
    extension_bytes: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size { digits: 0, size: 0 },
            trailer_bytes: 0,
            extension_bytes: 0,
        }
    }
}

impl Chunked {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads along `buf`.
    pub fn feed(&mut self, buf: &[u8]) -> Result<Fed, BadChunk> {
        // Where the trailer section starts in `buf`, if it does (0: it started before).
        let mut tail = self.in_tail().then_some(0);
        let used = self.walk(buf, &mut tail)?;
        Ok(Fed {
            used,
            relay: tail.unwrap_or(used),
        })
    }

    fn in_tail(&self) -> bool {
        matches!(
            self.state,
            State::TrailerStart
                | State::TrailerName
                | State::Trailer
                | State::TrailerLf
                | State::EndLf
                | State::Done
        )
    }

    fn walk(&mut self, buf: &[u8], tail: &mut Option<usize>) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            self.state = match self.state {
                State::Data { left } => {
                    // Bulk: skip what the buffer holds of this chunk at once.
                    let take = (buf.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { left }
                    };
                    continue;
                }
                State::Size { digits, size } => match hex(b) {
                    Some(d) if digits < MAX_SIZE_DIGITS => State::Size {
                        digits: digits + 1,
                        size: size << 4 | u64::from(d),
                    },
                    Some(_) => return Err(BadChunk("chunk size too large")),
                    None if digits == 0 => return Err(BadChunk("chunk size missing")),
                    None => after_size(b, size)?,
                },
                State::Space { size } => after_size(b, size)?,
                State::Extension { size } => match b {
                    b'\r' => State::SizeLf { size },
                    b'\t' | b' '..=b'~' | 0x80..=0xff => {
                        self.extension_bytes += 1;
                        if self.extension_bytes >= MAX_EXTENSIONS {
                            return Err(BadChunk("chunk extensions over 16 KiB"));
                        }
                        State::Extension { size }
                    }
                    _ => return Err(BadChunk("control character in a chunk extension")),
                },
                State::SizeLf { size } => match (b, size) {
                    (b'\n', 0) => {
                        *tail = Some(i + 1);
                        State::TrailerStart
                    }
                    (b'\n', left) => State::Data { left },
                    _ => return Err(BadChunk("CR without LF after a chunk size")),
                },
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    _ => return Err(BadChunk("chunk data longer than its size")),
                },
                State::DataLf => match b {
                    b'\n' => State::Size { digits: 0, size: 0 },
                    _ => return Err(BadChunk("CR without LF after chunk data")),
                },
                State::TrailerStart => match b {
                    b'\r' => State::EndLf,
                    _ => self.trailer_name(b)?,
                },
                State::TrailerName => match b {
                    b':' => self.trailer_byte(b)?,
                    _ => self.trailer_name(b)?,
                },
                State::Trailer => match b {
                    b'\r' => State::TrailerLf,
                    _ => self.trailer_byte(b)?,
                },
                State::TrailerLf => match b {
                    b'\n' => State::TrailerStart,
                    _ => return Err(BadChunk("CR without LF in a trailer")),
                },
                State::EndLf => match b {
                    b'\n' => {
                        self.state = State::Done;
                        return Ok(i + 1);
                    }
                    _ => return Err(BadChunk("CR without LF at the end")),
                },
                State::Done => return Ok(i),
            };
            i += 1;
        }
        Ok(i)
    }

    /// A byte of a trailer's name: a token (RFC 9110 §5.1), as the header grammar has it.
    fn trailer_name(&mut self, b: u8) -> Result<State, BadChunk> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILERS {
            return Err(BadChunk("trailers too large"));
        }
        if crate::proxy::framing::is_tchar(b) {
            Ok(State::TrailerName)
        } else {
            Err(BadChunk("a trailer line that is not a field"))
        }
    }

    fn trailer_byte(&mut self, b: u8) -> Result<State, BadChunk> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILERS {
            return Err(BadChunk("trailers too large"));
        }
        match b {
            b'\t' | b' '..=b'~' | 0x80..=0xff => Ok(State::Trailer),
            _ => Err(BadChunk("control character in a trailer")),
        }
    }
}

/// A byte after the size digits (or whitespace after them).
fn after_size(b: u8, size: u64) -> Result<State, BadChunk> {
    match b {
        b'\r' => Ok(State::SizeLf { size }),
        b' ' | b'\t' => Ok(State::Space { size }),
        b';' => Ok(State::Extension { size }),
        _ => Err(BadChunk("unexpected byte after a chunk size")),
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in pieces of `step` bytes: the body's length if it ended, and what is relayed.
    fn end(body: &[u8], step: usize) -> Result<(Option<usize>, Vec<u8>), BadChunk> {
        let mut c = Chunked::default();
        let mut at = 0;
        let mut relayed = Vec::new();
        for piece in body.chunks(step) {
            let fed = c.feed(piece)?;
            at += fed.used;
            relayed.extend_from_slice(&piece[..fed.relay]);
            if c.is_done() {
                relayed.extend_from_slice(END);
                return Ok((Some(at), relayed));
            }
            assert_eq!(fed.used, piece.len());
        }
        Ok((None, relayed))
    }

    #[test]
    fn finds_the_end_however_the_bytes_arrive_and_leaves_out_trailers() {
        let body = b"5\r\nhello\r\n1A;ext=\"x\"\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: t\r\n\r\nNEXT";
        let len = body.len() - 4;
        let relayed = b"5\r\nhello\r\n1A;ext=\"x\"\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n".to_vec();
        for step in [1, 2, 3, 7, 64, body.len()] {
            assert_eq!(end(body, step), Ok((Some(len), relayed.clone())), "step {step}");
        }
        assert_eq!(end(b"0\r\n\r\n", 1), Ok((Some(5), b"0\r\n\r\n".to_vec())));
        assert_eq!(end(b"5\r\nhel", 2), Ok((None, b"5\r\nhel".to_vec())));
    }

    #[test]
    fn random_bytes_never_panic_and_never_overrun() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..2000 {
            let mut c = Chunked::default();
            for _ in 0..8 {
                let len = (x % 40) as usize;
                let buf: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        b"0123456789abcdefAF;= \t\r\nxyz\x01"[(x % 28) as usize]
                    })
                    .collect();
                match c.feed(&buf) {
                    Ok(fed) => assert!(fed.relay <= fed.used && fed.used <= buf.len()),
                    Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn refuses_what_parsers_disagree_on() {
        let bad: [&[u8]; 9] = [
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"\r\n",
            b"1000000000000000\r\n",
            b"0\r\n\r\r",
            b"0\r\nA: b\n\r\n",
            b"5;\x01\r\nhello\r\n0\r\n\r\n",
        ];
        for body in bad {
            assert!(end(body, 1).is_err(), "{:?}", String::from_utf8_lossy(body));
            assert!(
                end(body, body.len()).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let mut huge = b"0\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_TRAILERS + 1));
        assert_eq!(end(&huge, 4096), Err(BadChunk("trailers too large")));
    }
}

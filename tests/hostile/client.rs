//! The hostile client's side: writes a case's bytes (in parts, with pauses between them) and
//! reads every answer the gateway gives, framed as a careful client frames them, until the
//! gateway closes, goes quiet after the answers expected, or a deadline passes (a hang).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// A final answer as the client read it.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
pub struct Exchange {
    pub answers: Vec<Answer>,
    /// 1xx answers (100 Continue, hints) seen.
    pub interim: Vec<u16>,
    /// The gateway closed the connection.
    pub closed: bool,
    /// Neither the answers expected nor a close came before the deadline.
    pub hung: bool,
    /// A 101 came: what followed it is tunnelled bytes, not answers.
    pub switched: bool,
    /// Bytes that could not be read as an answer.
    pub garbage: Option<String>,
}

impl Exchange {
    pub fn statuses(&self) -> Vec<u16> {
        self.answers.iter().map(|a| a.status).collect()
    }
}

/// How long a connection may stay silent before its case counts as hung.
const DEADLINE: Duration = Duration::from_secs(4);
/// After the answers expected, how long to wait for anything more.
const GRACE: Duration = Duration::from_millis(120);
/// The pause between a case's parts.
pub const PAUSE: Duration = Duration::from_millis(60);

/// Sends `parts` to `addr` (from `source`, a loopback address) and reads the answers; `heads`
/// says, answer by answer, which were to HEAD requests (no body); `want` answers are expected.
pub async fn exchange(
    addr: SocketAddr,
    source: [u8; 4],
    parts: &[Vec<u8>],
    heads: &[bool],
    want: usize,
) -> Exchange {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    let mut s: TcpStream = socket.connect(addr).await.unwrap();
    let mut ex = Exchange::default();
    let mut buf: Vec<u8> = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // Read what came meanwhile (a 100 Continue, an early refusal).
            let until = Instant::now() + PAUSE;
            while let Ok(Ok(n)) = tokio::time::timeout_at(until, read(&mut s, &mut buf)).await {
                if n == 0 {
                    break;
                }
            }
        }
        if s.write_all(part).await.is_err() {
            break;
        }
    }
    let mut quiet_after: Option<Instant> = None;
    loop {
        if let Err(why) = parse_answers(&mut buf, &mut ex, heads, false) {
            ex.garbage = Some(why);
            return ex;
        }
        if ex.switched {
            return ex;
        }
        let until = if ex.answers.len() >= want {
            *quiet_after.get_or_insert_with(|| Instant::now() + GRACE)
        } else {
            deadline
        };
        match tokio::time::timeout_at(until, read(&mut s, &mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                ex.closed = true;
                if let Err(why) = parse_answers(&mut buf, &mut ex, heads, true) {
                    ex.garbage = Some(why);
                }
                if !buf.is_empty() && ex.garbage.is_none() {
                    ex.garbage = Some(format!(
                        "closed inside an answer: {:?}",
                        String::from_utf8_lossy(&buf)
                    ));
                }
                return ex;
            }
            Ok(Ok(_)) => {}
            Err(_) => {
                ex.hung = ex.answers.len() < want;
                return ex;
            }
        }
    }
}

async fn read(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 16384];
    let n = s.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Takes every complete answer off the front of `buf`. A body that ends at the close (HTTP/1.0)
/// stays in `buf` until then (`closed`).
fn parse_answers(buf: &mut Vec<u8>, ex: &mut Exchange, heads: &[bool], closed: bool) -> Result<(), String> {
    loop {
        if buf.is_empty() || ex.switched {
            return Ok(());
        }
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(()),
            Err(e) => return Err(format!("{e}: {:?}", String::from_utf8_lossy(buf))),
        };
        let status = resp.code.unwrap_or(0);
        let fields: Vec<(String, String)> = resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let field = |n: &'static str| {
            fields
                .iter()
                .filter(move |(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        if (100..200).contains(&status) {
            ex.interim.push(status);
            buf.drain(..len);
            if status == 101 {
                ex.switched = true;
            }
            continue;
        }
        let head_request = heads.get(ex.answers.len()).copied().unwrap_or(false);
        let te: Vec<&str> = field("transfer-encoding").collect();
        let cl: Vec<&str> = field("content-length").collect();
        if !te.is_empty() && !cl.is_empty() {
            return Err("an answer with both Transfer-Encoding and Content-Length".into());
        }
        if cl.len() > 1 || cl.iter().any(|v| v.contains(',')) {
            return Err(format!("an answer with Content-Length {cl:?}"));
        }
        let (body, used) = if head_request || status == 204 || status == 304 {
            (Vec::new(), len)
        } else if !te.is_empty() {
            if te != ["chunked"] {
                return Err(format!("an answer with Transfer-Encoding {te:?}"));
            }
            match super::upstream::dechunk(&buf[len..]) {
                super::upstream::Dechunked::Partial => return Ok(()),
                super::upstream::Dechunked::Bad(why) => return Err(format!("answer chunks: {why}")),
                super::upstream::Dechunked::Done { body, used, .. } => (body, len + used),
            }
        } else if let Some(n) = cl.first() {
            let n: usize = n.trim().parse().map_err(|_| format!("Content-Length {n}"))?;
            if buf.len() < len + n {
                return Ok(());
            }
            (buf[len..len + n].to_vec(), len + n)
        } else if closed {
            (buf[len..].to_vec(), buf.len())
        } else {
            // Until the close: complete once the connection ended.
            return Ok(());
        };
        buf.drain(..used);
        ex.answers.push(Answer {
            status,
            headers: fields,
            body,
        });
    }
}

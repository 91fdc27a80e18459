//! HTTP/2 requests held to the `Host` rule (second round): a request without `:authority`
//! goes by `Host`, which must be one valid host; one with both must name one host. Raw frames,
//! since HTTP/2 clients always send `:authority`.

use super::upstream::Strict;
use crate::common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn int(out: &mut Vec<u8>, mut v: usize) {
    if v < 127 {
        out.push(v as u8);
        return;
    }
    out.push(127);
    v -= 127;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

/// A header block of literal fields without indexing (new names).
fn hpack(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in headers {
        out.push(0x00);
        int(&mut out, n.len());
        out.extend_from_slice(n.as_bytes());
        int(&mut out, v.len());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Sends one GET on stream 1 with prior knowledge; the `:status` of the answer (from hyper's
/// HPACK: static-table indexed), or 0 if the stream was reset or the connection closed.
async fn status(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    out.extend(frame(1, 0x5, 1, &hpack(headers)));
    s.write_all(&out).await.unwrap();
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        while buf.len() >= 9 {
            let len = (buf[0] as usize) << 16 | (buf[1] as usize) << 8 | buf[2] as usize;
            if buf.len() < 9 + len {
                break;
            }
            let kind = buf[3];
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            match kind {
                1 => {
                    return match payload.first() {
                        Some(0x88) => 200,
                        Some(0x8c) => 400,
                        Some(0x8d) => 404,
                        other => panic!("an unexpected :status encoding {other:?}"),
                    };
                }
                3 | 7 => return 0,
                _ => {}
            }
        }
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return 0,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_round_http2_requests_are_held_to_the_host_rule() {
    let up = Strict::start().await;
    let gw = Gateway::start(&super::config(up.addr, true));
    let base = [(":method", "GET"), (":scheme", "http"), (":path", "/h2")];
    let cases: &[(&[(&str, &str)], u16)] = &[
        (&[("host", "localhost")], 200),
        (&[(":authority", "localhost")], 200),
        (&[(":authority", "localhost"), ("host", "localhost")], 200),
        (&[("host", "eve@localhost")], 400),
        (&[("host", "local host")], 400),
        (&[("host", "hosted.example, localhost")], 400),
        (&[], 400),
        (&[(":authority", "localhost"), ("host", "hosted.example")], 400),
        (&[(":authority", "eve@localhost")], 400),
    ];
    for (extra, want) in cases {
        // Pseudo-headers first, as HTTP/2 requires.
        let mut headers: Vec<(&str, &str)> = base.to_vec();
        headers.extend(extra.iter().filter(|(n, _)| n.starts_with(':')));
        headers.extend(extra.iter().filter(|(n, _)| !n.starts_with(':')));
        let got = status(gw.http, &headers).await;
        let forwarded = up.reset().len();
        assert_eq!(got, *want, "{extra:?}");
        assert_eq!(forwarded, usize::from(*want == 200), "{extra:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    gw.stop().await;
}

//! Watches the store protocol's status socket (SPEC §2.1) and prints every frame, so seed 000
//! can be followed from a terminal without a browser's WebSocket:
//!
//!   cargo run -q --example status_socket -- "ws://127.0.0.1:8080/auth/status?token=$TOKEN"
//!
//! Plain `ws://` only (point it at the plain listener); exits when the server closes.

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: status_socket ws://HOST:PORT/auth/status?token=TOKEN");
        std::process::exit(2);
    };
    let mut ws = match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok((ws, _)) => ws,
        Err(e) => {
            eprintln!("cannot connect to {url}: {e}");
            std::process::exit(1);
        }
    };
    while let Some(frame) = ws.next().await {
        match frame {
            Ok(Message::Text(t)) => println!("{t}"),
            Ok(Message::Close(f)) => {
                println!(
                    "(closed: {})",
                    f.map_or("no reason".into(), |f| f.code.to_string())
                );
                break;
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("socket error: {e}");
                std::process::exit(1);
            }
        }
    }
}

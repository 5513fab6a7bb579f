//! A chat room: every message a member sends goes to every other member. The message is
//! encoded once (its body is a shared `Bytes`) and a member too slow to keep up is dropped with
//! 1013 instead of growing the server's memory.
//!
//! ```sh
//! cargo run --example chat -- 127.0.0.1:9002
//! cargo run --example client -- ws://127.0.0.1:9002/ hi   # in two terminals
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wsx::{AcceptOptions, CloseCode, PreparedMessage, Socket};

type Members = Arc<Mutex<HashMap<u64, Socket>>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    let members: Members = Arc::default();
    let ids = Arc::new(AtomicU64::new(0));
    loop {
        let (tcp, _) = listener.accept().await?;
        let (members, id) = (members.clone(), ids.fetch_add(1, Ordering::Relaxed));
        tokio::spawn(async move {
            let Ok((socket, _)) = wsx::accept(tcp, &AcceptOptions::default()).await else {
                return;
            };
            members.lock().unwrap().insert(id, socket.clone());
            while let Ok(msg) = socket.recv().await {
                // Framed once; every member's socket queues the same bytes.
                let Ok(prepared) = PreparedMessage::new(msg) else {
                    continue;
                };
                let others: Vec<(u64, Socket)> = members
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| **k != id)
                    .map(|(k, s)| (*k, s.clone()))
                    .collect();
                for (other_id, other) in others {
                    // Never wait on one member: one whose write buffer is full is dropped.
                    if !matches!(other.try_send_prepared(&prepared), Ok(true)) {
                        other.close(CloseCode::TRY_AGAIN_LATER, "too slow");
                        members.lock().unwrap().remove(&other_id);
                    }
                }
            }
            members.lock().unwrap().remove(&id);
        });
    }
}

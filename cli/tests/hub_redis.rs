//! The Redis hub end to end: `wsx serve --hub redis://...` nodes on a real `redis-server`.
//!
//! `WSX_TEST_REDIS_SERVER` names the redis-server binary (`scripts/redis.sh test` sets it; then
//! a missing or broken one fails the tests). Unset, each test says it is skipped and returns.
//! Each test starts its own Redis on a free port of 127.0.0.1 (no persistence) and its own
//! nodes, and kills them by PID when done.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};
use wsx::{ConnectOptions, Socket};

const WSX: &str = env!("CARGO_BIN_EXE_wsx");

/// The redis-server to run, or `None` (after saying so) when the tests are not asked for.
fn redis_server() -> Option<String> {
    match std::env::var("WSX_TEST_REDIS_SERVER") {
        Ok(path) if !path.is_empty() => Some(path),
        _ => {
            eprintln!("SKIPPED: set WSX_TEST_REDIS_SERVER (scripts/redis.sh test does)");
            None
        }
    }
}

async fn bounded<F: Future<Output = ()>>(limit_secs: u64, body: F) {
    tokio::time::timeout(Duration::from_secs(limit_secs), body)
        .await
        .expect("the test took too long");
}

/// A redis-server on 127.0.0.1 that the test can kill and start again on the same port.
struct Redis {
    bin: String,
    port: u16,
    child: Option<Child>,
}

impl Redis {
    async fn start(bin: String) -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Redis {
            bin,
            port,
            child: None,
        };
        redis.spawn().await;
        redis
    }

    async fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin));
        self.child = Some(child);
        for _ in 0..100 {
            if self.ping().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    async fn ping(&self) -> bool {
        let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut buf = [0u8; 7];
        tcp.write_all(b"PING\r\n").await.is_ok()
            && tcp.read_exact(&mut buf).await.is_ok()
            && &buf == b"+PONG\r\n"
    }

    /// Kills the server (SIGKILL to its PID) and waits for it to be gone.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// A running `wsx serve --hub`; its log goes to a file the test can read.
struct Node {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    addr: String,
    log: PathBuf,
}

static NODES: AtomicUsize = AtomicUsize::new(0);

impl Node {
    async fn start(redis: &Redis, extra: &[&str]) -> Node {
        let n = NODES.fetch_add(1, Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!("wsx-hub-{}-{n}.log", std::process::id()));
        let mut child = Command::new(WSX)
            .args(["serve", "--listen", "127.0.0.1:0", "--hub", &redis.url()])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn wsx serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), stdout.read_line(&mut line))
            .await
            .expect("serve printed nothing")
            .unwrap();
        let addr = line
            .trim_end()
            .strip_prefix("listening on ws://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Node {
            child,
            _stdout: stdout,
            addr,
            log,
        }
    }

    async fn open(&self, path: &str) -> Socket {
        let url = format!("ws://{}{path}", self.addr);
        Socket::open(&url, ConnectOptions::default()).await.unwrap()
    }

    /// Resident memory, in KiB.
    fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("the node is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "a node exited; its log:\n{}",
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

async fn recv_text(socket: &Socket, within: Duration) -> Option<String> {
    match tokio::time::timeout(within, socket.recv()).await {
        Ok(Ok(msg)) => Some(msg.as_text().expect("a text message").to_owned()),
        Ok(Err(e)) => panic!("the connection ended: {e}"),
        Err(_) => None,
    }
}

async fn next_text(socket: &Socket) -> String {
    recv_text(socket, Duration::from_secs(10))
        .await
        .expect("no message in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_messages_reach_every_other_member_once_in_publisher_order() {
    let Some(bin) = redis_server() else { return };
    bounded(120, async {
        let redis = Redis::start(bin).await;
        let nodes = [
            Node::start(&redis, &[]).await,
            Node::start(&redis, &[]).await,
            Node::start(&redis, &[]).await,
        ];
        // Three members on each of two nodes, one alone on the third.
        let mut clients = Vec::new();
        for (node, count) in nodes.iter().zip([3, 3, 1]) {
            for _ in 0..count {
                clients.push(node.open("/room/fanout").await);
            }
        }
        // Two publishers on each of the first two nodes: 4 x 2,500 = 10,000 messages.
        const PER_PUBLISHER: u32 = 2_500;
        let publishers = [0usize, 1, 3, 4];
        let readers: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(me, socket)| {
                let socket = socket.clone();
                let others = publishers.iter().filter(|&&p| p != me).count() as u32;
                tokio::spawn(async move {
                    let mut last: HashMap<usize, u32> = HashMap::new();
                    for _ in 0..others * PER_PUBLISHER {
                        let text = recv_text(&socket, Duration::from_secs(30))
                            .await
                            .unwrap_or_else(|| panic!("client {me} stalled at {last:?}"));
                        let (from, seq) = text.split_once(' ').unwrap();
                        let (from, seq): (usize, u32) =
                            (from.parse().unwrap(), seq.parse().unwrap());
                        assert_ne!(from, me, "client {me} got its own message back");
                        let expected = last.get(&from).map_or(0, |s| s + 1);
                        assert_eq!(seq, expected, "client {me}: publisher {from} out of order");
                        last.insert(from, seq);
                    }
                    // Nothing more: every message came exactly once.
                    let extra = recv_text(&socket, Duration::from_millis(500)).await;
                    assert_eq!(extra, None, "client {me} got a message twice");
                })
            })
            .collect();
        let sending: Vec<_> = publishers
            .iter()
            .map(|&p| {
                let socket = clients[p].clone();
                tokio::spawn(async move {
                    for seq in 0..PER_PUBLISHER {
                        socket.send(format!("{p} {seq}")).await.unwrap();
                    }
                })
            })
            .collect();
        for task in sending {
            task.await.unwrap();
        }
        for reader in readers {
            reader.await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_outage_keeps_local_delivery_and_cross_node_delivery_resumes() {
    let Some(bin) = redis_server() else { return };
    bounded(120, async {
        let mut redis = Redis::start(bin).await;
        let mut a = Node::start(&redis, &[]).await;
        let mut b = Node::start(&redis, &[]).await;
        let (a1, a2, b1) = (
            a.open("/chat").await,
            a.open("/chat").await,
            b.open("/chat").await,
        );
        a1.send("before").await.unwrap();
        assert_eq!(next_text(&a2).await, "before");
        assert_eq!(next_text(&b1).await, "before");

        redis.kill().await;
        let rss_before = [a.rss_kib(), b.rss_kib()];
        // Local delivery goes on; nothing crosses to the other node.
        let filler = "x".repeat(1000);
        for i in 0..2000 {
            a1.send(format!("during {i} {filler}")).await.unwrap();
        }
        for i in 0..2000 {
            let text = next_text(&a2).await;
            assert!(text.starts_with(&format!("during {i} ")), "{text:.20}");
        }
        assert_eq!(recv_text(&b1, Duration::from_millis(300)).await, None);
        a.assert_alive();
        b.assert_alive();
        for (node, before) in [&a, &b].iter().zip(rss_before) {
            let grown = node.rss_kib().saturating_sub(before);
            assert!(
                grown < 64 << 10,
                "a node grew by {grown} KiB during the outage"
            );
        }

        // Redis comes back on the same port: both directions resume, no node restarted.
        redis.spawn().await;
        let resumed = async |from: &Socket, to: &Socket| {
            for k in 0.. {
                from.send(format!("probe {k}")).await.unwrap();
                if let Some(text) = recv_text(to, Duration::from_millis(200)).await {
                    assert!(text.starts_with("probe"), "{text}");
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), resumed(&a1, &b1))
            .await
            .expect("cross-node delivery did not resume");
        tokio::time::timeout(Duration::from_secs(30), resumed(&b1, &a1))
            .await
            .expect("cross-node delivery did not resume");
        // Exactly once and in order again.
        for i in 0..100 {
            b1.send(format!("after {i}")).await.unwrap();
        }
        for socket in [&a1, &a2] {
            let mut got = Vec::new();
            while got.len() < 100 {
                let text = next_text(socket).await;
                if !text.starts_with("probe") {
                    got.push(text);
                }
            }
            let want: Vec<String> = (0..100).map(|i| format!("after {i}")).collect();
            assert_eq!(got, want);
        }
        a.assert_alive();
        b.assert_alive();
        for node in [&a, &b] {
            let log = node.log();
            assert!(log.contains("hub connected to Redis"), "{log}");
            assert!(log.contains("hub lost its Redis connection"), "{log}");
            assert!(log.contains("hub reconnected to Redis"), "{log}");
        }
    })
    .await;
}

/// Splits a delivered message of a room with history: `(offset, text)`.
fn with_offset(text: &str) -> (String, String) {
    let (offset, body) = text.split_once('\n').expect("an offset line");
    (offset.to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_recovery_returns_exactly_the_missed_messages() {
    let Some(bin) = redis_server() else { return };
    bounded(60, async {
        let redis = Redis::start(bin).await;
        let history = ["--history", "1000"];
        let (a, b) = (
            Node::start(&redis, &history).await,
            Node::start(&redis, &history).await,
        );
        let x = a.open("/room/hist").await;
        let watcher = a.open("/room/hist").await;
        let y = b.open("/room/hist").await;
        for i in 0..10 {
            y.send(format!("m{i}")).await.unwrap();
        }
        let mut offsets = Vec::new();
        for i in 0..10 {
            let (offset, body) = with_offset(&next_text(&x).await);
            assert_eq!(body, format!("m{i}"));
            offsets.push(offset);
        }
        x.close(wsx::CloseCode::NORMAL, "").await;
        for i in 10..15 {
            y.send(format!("m{i}")).await.unwrap();
        }
        // The watcher saw all fifteen, with the offsets the history holds.
        let mut seen = Vec::new();
        for _ in 0..15 {
            seen.push(with_offset(&next_text(&watcher).await));
        }
        assert_eq!(
            &seen[..10].iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
            &offsets
        );

        // x comes back with the offset of m4: m5..m14, each once, then live messages.
        let since = &offsets[4];
        let x = a.open(&format!("/room/hist?since={since}")).await;
        assert_eq!(next_text(&x).await, "#recovered 10");
        for want in &seen[5..] {
            assert_eq!(&with_offset(&next_text(&x).await), want);
        }
        y.send("m15").await.unwrap();
        assert_eq!(with_offset(&next_text(&x).await).1, "m15");
        assert_eq!(recv_text(&x, Duration::from_millis(300)).await, None);

        // An offset the history does not hold.
        let old = a.open("/room/hist?since=1-0").await;
        assert_eq!(next_text(&old).await, "#gap");
        // A malformed one is refused before the upgrade.
        let url = format!("ws://{}/room/hist?since=yesterday", a.addr);
        let e = Socket::open(&url, ConnectOptions::default())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("400"), "{e}");
    })
    .await;
}

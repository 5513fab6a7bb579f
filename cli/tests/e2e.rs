//! End-to-end tests: the built `wsx` binary driven over real sockets.
//!
//! Each test starts `wsx serve --listen 127.0.0.1:0`, reads the port from the first stdout line
//! and talks to it with the wsx library (or runs `wsx connect` / `wsx bench` against it). Every
//! test runs under a time limit, and child processes are killed when their handle drops.

use std::future::Future;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};
use wsx::{CloseCode, ConnectOptions, Error, Message, OpCode, Socket};

const WSX: &str = env!("CARGO_BIN_EXE_wsx");

/// Runs a test body under a time limit.
async fn bounded<F: Future<Output = ()>>(limit_secs: u64, body: F) {
    tokio::time::timeout(Duration::from_secs(limit_secs), body)
        .await
        .expect("the test took too long");
}

/// A running `wsx serve`.
struct Server {
    child: Child,
    /// Keeps the pipe open so the server never writes into a closed stdout.
    _stdout: BufReader<ChildStdout>,
    /// `host:port`.
    addr: String,
    /// `ws` or `wss`.
    scheme: String,
}

impl Server {
    async fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(WSX)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn wsx serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), stdout.read_line(&mut line))
            .await
            .expect("serve printed nothing")
            .expect("read serve stdout");
        let rest = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let (scheme, addr) = rest.split_once("://").expect("a URL");
        let port: u16 = addr.rsplit(':').next().unwrap().parse().expect("a port");
        assert_ne!(port, 0);
        Server {
            child,
            _stdout: stdout,
            addr: addr.to_owned(),
            scheme: scheme.to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("the server is running")
    }

    async fn wait(&mut self, limit: Duration) -> ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("the server did not exit")
            .expect("wait for the server")
    }
}

fn plain() -> ConnectOptions {
    ConnectOptions::default()
}

async fn recv(socket: &Socket) -> Message {
    tokio::time::timeout(Duration::from_secs(5), socket.recv())
        .await
        .expect("no message in time")
        .expect("the connection ended")
}

/// Sends a raw HTTP request and returns the whole response (the server closes after it).
async fn http_get(addr: &str, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: e2e\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.expect("read");
    String::from_utf8(out).expect("UTF-8 response")
}

/// Starts `wsx ARGS` with stdin and stdout piped (stderr too, so a failure message is kept);
/// killed when dropped.
fn spawn_piped(args: &[&str]) -> tokio::process::Child {
    Command::new(WSX)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_text_and_binary() {
    bounded(30, async {
        let server = Server::start(&[]).await;
        let socket = Socket::open(&server.url("/echo"), plain()).await.unwrap();
        socket.send("hello").await.unwrap();
        let m = recv(&socket).await;
        assert_eq!(m.kind(), OpCode::Text);
        assert_eq!(m.as_text(), Some("hello"));

        let blob: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        socket.send(Message::binary(blob.clone())).await.unwrap();
        let m = recv(&socket).await;
        assert_eq!(m.kind(), OpCode::Binary);
        assert_eq!(&m.body()[..], &blob[..]);

        // Any path but /chat echoes.
        let other = Socket::open(&server.url("/anything?x=1"), plain().no_deflate())
            .await
            .unwrap();
        other.send("x").await.unwrap();
        assert_eq!(recv(&other).await.as_text(), Some("x"));

        socket.close(CloseCode::NORMAL, "").await;
        other.close(CloseCode::NORMAL, "").await;
    })
    .await;
}

/// The next chat text, skipping the "sync" probes of [`wait_until_joined`].
async fn recv_chat(socket: &Socket) -> String {
    loop {
        let m = recv(socket).await;
        let text = m.as_text().expect("a text message").to_owned();
        if text != "sync" {
            return text;
        }
    }
}

/// A client on `/chat` whose TCP receive buffer is fixed at 32 KiB (the kernel would otherwise
/// grow it to tens of MiB on loopback, enough to swallow everything a test sends).
async fn small_window_client(addr: &str) -> Socket {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(32 * 1024).unwrap();
    let mut tcp = socket.connect(addr.parse().unwrap()).await.unwrap();
    let request = format!(
        "GET /chat HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    // The response head, byte by byte so that no frame byte is taken.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tcp.read_u8().await.unwrap();
        head.push(byte);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    Socket::from_stream(
        tcp.into(),
        wsx::Role::Client,
        wsx::Negotiated::default(),
        wsx::SocketConfig::default(),
        format!("ws://{addr}/chat"),
        "",
    )
}

/// Returns once every member is in the room (the server joins a member just after its 101,
/// so a client can be open a moment before it is a member): member 0 probes until the others
/// hear it, then member 1 probes member 0.
async fn wait_until_joined(members: &[Socket]) {
    let mut heard = vec![false; members.len()];
    heard[0] = true;
    while heard.iter().any(|h| !h) {
        members[0].send("sync").await.unwrap();
        for (i, m) in members.iter().enumerate().skip(1) {
            if !heard[i] {
                heard[i] = tokio::time::timeout(Duration::from_millis(100), m.recv())
                    .await
                    .is_ok();
            }
        }
    }
    members[1].send("sync").await.unwrap();
    assert_eq!(recv(&members[0]).await.as_text(), Some("sync"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_among_three_clients() {
    bounded(30, async {
        let server = Server::start(&[]).await;
        let mut members = Vec::new();
        for _ in 0..3 {
            members.push(Socket::open(&server.url("/chat"), plain()).await.unwrap());
        }
        wait_until_joined(&members).await;
        for (i, m) in members.iter().enumerate() {
            m.send(format!("hello from {i}")).await.unwrap();
        }
        for (i, m) in members.iter().enumerate() {
            let mut got = vec![recv_chat(m).await, recv_chat(m).await];
            got.sort();
            let expected: Vec<String> = (0..3)
                .filter(|&j| j != i)
                .map(|j| format!("hello from {j}"))
                .collect();
            assert_eq!(got, expected, "member {i}");
        }
        // Nobody gets a copy of their own message, and nothing else is on the way.
        for m in &members {
            let extra = tokio::time::timeout(Duration::from_millis(200), recv_chat(m)).await;
            assert!(extra.is_err(), "unexpected message {extra:?}");
        }
        // Binary messages are relayed as binary.
        members[0]
            .send(Message::binary(vec![1u8, 2, 3]))
            .await
            .unwrap();
        for m in &members[1..] {
            let got = recv(m).await;
            assert_eq!(got.kind(), OpCode::Binary);
            assert_eq!(&got.body()[..], &[1, 2, 3]);
        }
        for m in &members {
            m.close(CloseCode::NORMAL, "").await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_root_returns_the_page() {
    bounded(30, async {
        let server = Server::start(&[]).await;
        let response = http_get(&server.addr, "/").await;
        let (head, body) = response.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("content-type: text/html"), "{head}");
        assert!(lower.contains("connection: close"), "{head}");
        assert!(
            lower.contains(&format!("content-length: {}\r\n", body.len())),
            "{head}"
        );
        for id in [
            "id=\"state\"",
            "id=\"log\"",
            "id=\"msg\"",
            "id=\"send\"",
            "id=\"chat-log\"",
            "id=\"chat-msg\"",
            "id=\"chat-send\"",
        ] {
            assert!(body.contains(id), "the page lacks {id}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_requests_to_endpoints_get_426_and_unknown_paths_404() {
    bounded(30, async {
        let server = Server::start(&[]).await;
        let r = http_get(&server.addr, "/echo").await;
        assert!(r.starts_with("HTTP/1.1 426 "), "{r}");
        assert!(r.to_ascii_lowercase().contains("upgrade: websocket"), "{r}");
        let r = http_get(&server.addr, "/chat").await;
        assert!(r.starts_with("HTTP/1.1 426 "), "{r}");
        let r = http_get(&server.addr, "/no/such/page").await;
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_round_trip_through_pipes() {
    bounded(30, async {
        let server = Server::start(&[]).await;
        let mut child = spawn_piped(&["connect", &server.url("/echo")]);
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdin.write_all(b"hello\nworld\r\n").await.unwrap();
        stdin.flush().await.unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).await.unwrap();
        assert_eq!(line, "hello\n");
        line.clear();
        stdout.read_line(&mut line).await.unwrap();
        assert_eq!(line, "world\n");
        // EOF: the client closes with 1000 and exits 0 once the server answered.
        drop(stdin);
        let status = child.wait().await.unwrap();
        assert!(status.success(), "{status}");
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_binary_base64() {
    bounded(30, async {
        let server = Server::start(&[]).await;
        let mut child = spawn_piped(&["connect", "--binary", "--base64", &server.url("/echo")]);
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdin.write_all(&[0, 1, 2, 255]).await.unwrap();
        stdin.flush().await.unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).await.unwrap();
        assert_eq!(line, "AAEC/w==\n");
        drop(stdin);
        assert!(child.wait().await.unwrap().success());
    })
    .await;
}

/// A WebSocket server written by hand on 127.0.0.1:0 for one client: it completes the opening
/// handshake, then, when the client's CLOSE comes, answers it if `answer_close` (or not), and
/// in both cases keeps the TCP connection open for a minute.
async fn lingering_server(answer_close: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let accept = wsx::proto::handshake::accept_key(key.trim().as_bytes());
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        tcp.write_all(answer.as_bytes()).await.unwrap();
        // Client frames: small and masked (2-byte header, 4-byte key, payload).
        let mut header = [0u8; 6];
        while tcp.read_exact(&mut header).await.is_ok() {
            let mut payload = vec![0u8; usize::from(header[1] & 0x7f)];
            tcp.read_exact(&mut payload).await.unwrap();
            if header[0] & 0x0f == 8 && answer_close {
                tcp.write_all(&[0x88, 2, 0x03, 0xe8]).await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    format!("ws://{addr}/")
}

/// Runs `wsx ARGS` to its end, with stdin closed at once.
async fn run_wsx(args: &[&str]) -> std::process::Output {
    Command::new(WSX)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

/// Runs `wsx connect ARGS` with stdin closed at once; returns (status, stderr, seconds taken).
async fn connect_with_no_input(args: &[&str]) -> (ExitStatus, String, f64) {
    let started = std::time::Instant::now();
    let out = run_wsx(&[&["connect"], args].concat()).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status, stderr, started.elapsed().as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_exits_non_zero_soon_when_the_server_never_answers_the_close() {
    bounded(30, async {
        let url = lingering_server(false).await;
        // The default close timeout (2 s); it used to wait 10 s and exit 0 silently.
        let (status, stderr, secs) = connect_with_no_input(&[&url]).await;
        assert!(!status.success(), "{status}");
        assert!(
            stderr.contains("1006") && stderr.contains("CLOSE"),
            "{stderr}"
        );
        assert!(secs < 6.0, "took {secs} s");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_exits_0_after_the_close_handshake_without_waiting_for_tcp() {
    bounded(60, async {
        let url = lingering_server(true).await;
        // A long close timeout: only not waiting for the server's TCP close exits this soon.
        let (status, stderr, secs) = connect_with_no_input(&["--close-timeout", "30", &url]).await;
        assert!(status.success(), "{status}: {stderr}");
        assert!(secs < 6.0, "took {secs} s");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_closed_port_fails() {
    bounded(30, async {
        // A port that was free a moment ago and has no listener now.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let out = run_wsx(&["connect", &format!("ws://127.0.0.1:{port}/")]).await;
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("cannot connect"), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(out.stdout.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_produces_a_sane_json_report() {
    bounded(60, async {
        let server = Server::start(&[]).await;
        let out = run_wsx(&[
            "bench",
            &server.url("/echo"),
            "--conns",
            "4",
            "--size",
            "64",
            "--pipeline",
            "2",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--json",
        ])
        .await;
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout.trim_end().lines().count(), 1, "{stdout}");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["conns"], 4);
        assert_eq!(report["size"], 64);
        assert_eq!(report["pipeline"], 2);
        assert_eq!(report["duration_secs"].as_f64(), Some(2.0));
        assert_eq!(report["errors"], 0, "{report}");
        let messages = report["messages"].as_u64().unwrap();
        assert!(messages > 0, "{report}");
        let rate = report["messages_per_sec"].as_f64().unwrap();
        assert!((rate - messages as f64 / 2.0).abs() < 1.0, "{report}");
        let mib = report["mib_per_sec"].as_f64().unwrap();
        assert!((mib - rate * 64.0 / 1048576.0).abs() < 1e-6, "{report}");
        let lat = &report["latency_us"];
        let (p50, p99, p999, max) = (
            lat["p50"].as_u64().unwrap(),
            lat["p99"].as_u64().unwrap(),
            lat["p999"].as_u64().unwrap(),
            lat["max"].as_u64().unwrap(),
        );
        assert!(
            0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
            "{report}"
        );
    })
    .await;
}

/// A test CA and a server certificate for 127.0.0.1 / localhost, written as PEM files.
fn make_certs(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("wsx-e2e-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let (ca_path, cert_path, key_path) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_path, cert_path, key_path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serve_and_connect_with_ca() {
    bounded(30, async {
        let (ca, cert, key) = make_certs("tls");
        let server = Server::start(&[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
        .await;
        assert_eq!(server.scheme, "wss");
        connect_echoes_a_line(
            &[
                "connect",
                "--ca",
                ca.to_str().unwrap(),
                &server.url("/echo"),
            ],
            "over tls\n",
        )
        .await;

        // Without the CA the certificate is refused and connect fails.
        let out = run_wsx(&["connect", &server.url("/echo")]).await;
        assert!(!out.status.success());

        // The library client with the same CA.
        let tls = wsx::tls::client_config_with_ca(&ca).unwrap();
        let socket = Socket::open(&server.url("/echo"), plain().tls(tls))
            .await
            .unwrap();
        socket.send("lib").await.unwrap();
        assert_eq!(recv(&socket).await.as_text(), Some("lib"));
        socket.close(CloseCode::NORMAL, "").await;
    })
    .await;
}

/// Opens a socket, trying again for a while (2.5 s) while the server refuses it (a slot is
/// freed only once the closed connection is gone).
async fn open_when_free(url: &str, options: ConnectOptions) -> Option<Socket> {
    for _ in 0..50 {
        if let Ok(s) = Socket::open(url, options.clone()).await {
            return Some(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_with_503() {
    bounded(30, async {
        let server = Server::start(&["--max-connections", "1"]).await;
        let first = Socket::open(&server.url("/echo"), plain()).await.unwrap();
        let second = Socket::open(&server.url("/echo"), plain()).await;
        let err = second.expect_err("the second upgrade must be refused");
        assert!(err.to_string().contains("503"), "{err}");
        // The first one still works; once it is gone, a new one gets in.
        first.send("still here").await.unwrap();
        assert_eq!(recv(&first).await.as_text(), Some("still here"));
        first.close(CloseCode::NORMAL, "").await;
        open_when_free(&server.url("/echo"), plain())
            .await
            .expect("a slot frees up after a close");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_closes_clients_with_1001_and_exits_0() {
    bounded(30, async {
        let mut server = Server::start(&[]).await;
        let echo = Socket::open(&server.url("/echo"), plain()).await.unwrap();
        let chat = Socket::open(&server.url("/chat"), plain()).await.unwrap();
        echo.send("ping").await.unwrap();
        assert_eq!(recv(&echo).await.as_text(), Some("ping"));
        let status = std::process::Command::new("kill")
            .args(["-INT", &server.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for socket in [&echo, &chat] {
            let end = tokio::time::timeout(Duration::from_secs(5), socket.recv()).await;
            match end {
                Ok(Err(Error::Closed { code, .. })) => assert_eq!(code, 1001),
                other => panic!("expected a close with 1001, got {other:?}"),
            }
            let ev = socket.closed().await;
            assert_eq!(ev.code, 1001);
            assert!(ev.clean, "{ev:?}");
        }
        let status = server.wait(Duration::from_secs(5)).await;
        assert!(status.success(), "{status}");
    })
    .await;
}

/// The names of a process's threads (Linux: /proc/PID/task/*/comm).
#[cfg(target_os = "linux")]
fn thread_names(pid: u32) -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let comm = task.unwrap().path().join("comm");
        if let Ok(name) = std::fs::read_to_string(comm) {
            names.push(name.trim().to_owned());
        }
    }
    names
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_share_the_port_rooms_span_them_and_sigterm_closes_all() {
    bounded(60, async {
        let mut server = Server::start(&["--threads", "3"]).await;
        // A thread names itself once it runs, which may be a moment after "listening".
        let mut names = Vec::new();
        for _ in 0..100 {
            names = thread_names(server.pid());
            names.retain(|n| n.starts_with("wsx-serve-"));
            if names.len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        names.sort();
        assert_eq!(
            names,
            ["wsx-serve-1", "wsx-serve-2", "wsx-serve-3"],
            "three server threads"
        );
        // Enough connections that the kernel hands some to every listener.
        let mut echoes = Vec::new();
        for i in 0..24 {
            let s = Socket::open(&server.url("/echo"), plain()).await.unwrap();
            s.send(format!("m{i}")).await.unwrap();
            assert_eq!(recv(&s).await.as_text(), Some(format!("m{i}").as_str()));
            echoes.push(s);
        }
        let mut members = Vec::new();
        for _ in 0..6 {
            members.push(Socket::open(&server.url("/chat"), plain()).await.unwrap());
        }
        wait_until_joined(&members).await;
        members[0].send("to everyone").await.unwrap();
        for m in &members[1..] {
            assert_eq!(recv_chat(m).await, "to everyone");
        }
        let status = std::process::Command::new("kill")
            .args(["-TERM", &server.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for socket in echoes.iter().chain(&members) {
            let ev = tokio::time::timeout(Duration::from_secs(5), socket.closed())
                .await
                .expect("closed by the server");
            assert_eq!((ev.code, ev.clean), (1001, true), "{ev:?}");
        }
        let status = server.wait(Duration::from_secs(5)).await;
        assert!(status.success(), "{status}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_drops_a_member_that_does_not_read() {
    bounded(60, async {
        let server = Server::start(&["--no-deflate"]).await;
        let url = server.url("/chat");
        let open = || Socket::open(&url, plain().no_deflate());
        let (talker, slow, reader) = (
            open().await.unwrap(),
            small_window_client(&server.addr).await,
            open().await.unwrap(),
        );
        wait_until_joined(&[talker.clone(), slow.clone(), reader.clone()]).await;
        // Far more than the slow member's receive queue and socket buffers and the server's write
        // buffer hold.
        const COUNT: usize = 400;
        let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
        let reading = tokio::spawn(async move {
            let mut n = 0;
            while n < COUNT {
                let m = reader.recv().await.expect("the reader keeps up");
                if m.as_text() == Some("sync") {
                    continue;
                }
                assert_eq!(m.len(), 64 * 1024);
                n += 1;
            }
            reader
        });
        for _ in 0..COUNT {
            talker.send(Message::binary(chunk.clone())).await.unwrap();
        }
        let reader = reading.await.unwrap();
        // The slow member now reads what was queued for it, then the server's 1013.
        let mut got = 0;
        let code = loop {
            match slow.recv().await {
                Ok(_) => got += 1,
                Err(Error::Closed { code, .. }) => break code,
                Err(e) => panic!("unexpected {e}"),
            }
        };
        assert_eq!(code, 1013);
        assert!(got < COUNT, "the slow member got everything ({got})");
        // The room goes on without it.
        talker.send("still on").await.unwrap();
        assert_eq!(recv_chat(&reader).await, "still on");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_room_name_or_offset_gets_a_clear_refusal() {
    bounded(30, async {
        let server = Server::start(&[]).await;
        let upgrade = |path: String| {
            let addr = server.addr.clone();
            async move {
                let mut tcp = TcpStream::connect(&addr).await.unwrap();
                let req = format!(
                    "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                     Sec-WebSocket-Version: 13\r\n\r\n"
                );
                tcp.write_all(req.as_bytes()).await.unwrap();
                let mut out = Vec::new();
                tcp.read_to_end(&mut out).await.unwrap();
                String::from_utf8(out).unwrap()
            }
        };
        let long = upgrade(format!("/room/{}", "x".repeat(65))).await;
        assert!(long.starts_with("HTTP/1.1 400"), "{long}");
        assert!(
            long.contains("invalid room name: longer than 64 bytes"),
            "{long}"
        );
        let bad = upgrade("/room/a*b".into()).await;
        assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
        assert!(
            bad.contains("only A-Z a-z 0-9 - _ . : are allowed"),
            "{bad}"
        );
        let since = upgrade("/room/ok?since=1-0".into()).await;
        assert!(since.starts_with("HTTP/1.1 400"), "{since}");
        assert!(since.contains("keeps no room history"), "{since}");
        // A good name is a room: its members hear each other.
        let url = server.url("/room/ok.1");
        let (x, y) = (
            Socket::open(&url, plain()).await.unwrap(),
            Socket::open(&url, plain()).await.unwrap(),
        );
        x.send("hi").await.unwrap();
        assert_eq!(recv(&y).await.as_text(), Some("hi"));
    })
    .await;
}

/// Runs `wsx ARGS` (a `connect` to an echo endpoint), sends `line` and checks that it comes back
/// and that connect exits 0 once stdin ends.
async fn connect_echoes_a_line(args: &[&str], line: &str) {
    let mut child = spawn_piped(args);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdin.write_all(line.as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    let mut back = String::new();
    stdout.read_line(&mut back).await.unwrap();
    assert_eq!(back, line);
    drop(stdin);
    assert!(child.wait().await.unwrap().success());
}

/// An h2c connection to `addr` (HTTP/2 with prior knowledge), driven on its own task.
async fn h2c(addr: &str) -> hyper::client::conn::http2::SendRequest<String> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    // The server's SETTINGS (extended CONNECT on) come first; it takes the requests whenever.
    tokio::time::sleep(Duration::from_millis(100)).await;
    sender
}

/// An extended CONNECT (RFC 8441) for `path` on `sender`: the response, and the stream as a
/// client socket when it was accepted.
async fn h2_websocket(
    sender: &mut hyper::client::conn::http2::SendRequest<String>,
    addr: &str,
    path: &str,
    protocol: &'static str,
) -> (http::StatusCode, Option<Socket>) {
    let req = http::Request::builder()
        .method(http::Method::CONNECT)
        .version(http::Version::HTTP_2)
        .uri(format!("http://{addr}{path}"))
        .extension(hyper::ext::Protocol::from_static(protocol))
        .header("sec-websocket-version", "13")
        .body(String::new())
        .unwrap();
    let mut resp = sender.send_request(req).await.expect("a response");
    let status = resp.status();
    if status != http::StatusCode::OK {
        return (status, None);
    }
    let upgraded = hyper::upgrade::on(&mut resp).await.expect("the stream");
    let socket = Socket::from_stream(
        wsx::WsStream::from_transport(hyper_util::rt::TokioIo::new(upgraded), Default::default()),
        wsx::Role::Client,
        Default::default(),
        Default::default(),
        path,
        "",
    );
    (status, Some(socket))
}

/// `wsx serve` over h2c: the page, echo and the chat room as streams of one HTTP/2 connection;
/// closing one stream leaves the others up; a bad extended CONNECT gets 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_over_h2c_multiplexes_page_echo_and_chat() {
    bounded(30, async {
        let server = Server::start(&[]).await;
        let mut h2 = h2c(&server.addr).await;
        let page = http::Request::builder()
            .uri(format!("http://{}/", server.addr))
            .version(http::Version::HTTP_2)
            .body(String::new())
            .unwrap();
        let resp = h2.send_request(page).await.unwrap();
        assert_eq!(resp.status(), http::StatusCode::OK);
        use http_body_util::BodyExt as _;
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("id=\"state\""));

        let (_, echo) = h2_websocket(&mut h2, &server.addr, "/echo", "websocket").await;
        let (_, alice) = h2_websocket(&mut h2, &server.addr, "/chat", "websocket").await;
        let (_, bob) = h2_websocket(&mut h2, &server.addr, "/chat", "websocket").await;
        let (echo, alice, bob) = (echo.unwrap(), alice.unwrap(), bob.unwrap());
        echo.send("over h2").await.unwrap();
        assert_eq!(recv(&echo).await.as_text(), Some("over h2"));
        alice.send("hi bob").await.unwrap();
        assert_eq!(recv(&bob).await.as_text(), Some("hi bob"));

        let ev = echo.close(CloseCode::NORMAL, "done").await;
        assert!(ev.clean, "{ev:?}");
        bob.send("hi alice").await.unwrap();
        assert_eq!(recv(&alice).await.as_text(), Some("hi alice"));

        let (status, _) = h2_websocket(&mut h2, &server.addr, "/echo", "chat").await;
        assert_eq!(status, http::StatusCode::BAD_REQUEST);
        let (status, again) = h2_websocket(&mut h2, &server.addr, "/echo", "websocket").await;
        assert_eq!(status, http::StatusCode::OK);
        let again = again.unwrap();
        again.send("same connection").await.unwrap();
        assert_eq!(recv(&again).await.as_text(), Some("same connection"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_flag_values_are_refused_at_start_or_taken_as_is() {
    bounded(60, async {
        // `--handshake-timeout 1e19` used to make every connection reset (a deadline overflow).
        for (flag, value) in [
            ("--handshake-timeout", "1e19"),
            ("--idle-timeout", "1e19"),
            ("--message-timeout", "1e19"),
            ("--handshake-timeout", "0"),
            ("--idle-timeout", "0"),
            ("--message-timeout", "-1"),
            ("--max-payload", "0"),
            ("--max-payload", "18446744073709551616"),
        ] {
            let out = run_wsx(&["serve", "--listen", "127.0.0.1:0", flag, value]).await;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{flag} {value} was taken");
            assert!(stderr.contains(value), "{flag} {value}: {stderr}");
        }
        // The largest payload limit there is, and a year-long handshake timeout: served.
        let server = Server::start(&[
            "--max-payload",
            "18446744073709551615",
            "--handshake-timeout",
            "31536000",
        ])
        .await;
        let socket = Socket::open(&server.url("/"), plain()).await.unwrap();
        socket.send("big limits").await.unwrap();
        assert_eq!(recv(&socket).await.as_text(), Some("big limits"));
        socket.close(CloseCode::NORMAL, "").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leniency_connect_host_header_is_refused_with_a_message() {
    bounded(30, async {
        let server = Server::start(&[]).await;
        let out = run_wsx(&["connect", &server.url("/"), "-H", "Host: x"]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("Host"), "{stderr}");
        assert!(stderr.contains("URL"), "{stderr}");
    })
    .await;
}

/// `wsx serve --tls-cert` offers h2 by ALPN; `wsx connect --http2` and the library client with
/// `http2` go over it, and `--max-connections` counts WebSockets, not HTTP/2 connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_over_h2_tls_with_connect_http2_and_max_connections() {
    bounded(30, async {
        let (ca, cert, key) = make_certs("h2");
        let server = Server::start(&[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--max-connections",
            "2",
        ])
        .await;
        connect_echoes_a_line(
            &[
                "connect",
                "--http2",
                "--ca",
                ca.to_str().unwrap(),
                &server.url("/echo"),
            ],
            "over h2 and tls\n",
        )
        .await;

        let tls = wsx::tls::client_config_with_ca(&ca).unwrap();
        let options = plain().tls(tls).http2();
        let a = Socket::open(&server.url("/echo"), options.clone())
            .await
            .unwrap();
        let b = Socket::open(&server.url("/echo"), options.clone())
            .await
            .unwrap();
        let err = Socket::open(&server.url("/echo"), options.clone())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("503"), "{err}");
        b.close(CloseCode::NORMAL, "").await;
        a.send("a is fine").await.unwrap();
        assert_eq!(recv(&a).await.as_text(), Some("a is fine"));
        // b's slot is free again.
        let c = open_when_free(&server.url("/echo"), options)
            .await
            .expect("a slot after b closed");
        c.send("c").await.unwrap();
        assert_eq!(recv(&c).await.as_text(), Some("c"));
    })
    .await;
}

/// Reads `stream` until the server ends the connection (EOF or a reset); panics after `limit`.
async fn read_until_closed(stream: &mut (impl tokio::io::AsyncRead + Unpin), limit: Duration) {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server kept the connection open");
}

/// An HTTP/2 connection that sends the preface (and its SETTINGS) and then nothing is closed
/// once the handshake timeout has passed, as an HTTP/1.1 connection that sends no request
/// head is; over h2c and over h2 by ALPN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_preface_then_silence_is_closed_after_the_handshake_timeout() {
    bounded(30, async {
        let server = Server::start(&["--handshake-timeout", "1"]).await;
        let mut tcp = TcpStream::connect(&server.addr).await.unwrap();
        // The preface and an empty SETTINGS frame (length 0, type 4, no flags, stream 0).
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        read_until_closed(&mut tcp, Duration::from_secs(6)).await;

        let (ca, cert, key) = make_certs("h2-silence");
        let server = Server::start(&[
            "--handshake-timeout",
            "1",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
        .await;
        let mut config = (*wsx::tls::client_config_with_ca(&ca).unwrap()).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = TcpStream::connect(&server.addr).await.unwrap();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        read_until_closed(&mut tls, Duration::from_secs(6)).await;
    })
    .await;
}

/// An HTTP/2 connection is kept while a WebSocket stream is open on it, however long, and
/// closed once its streams have ended and it stayed idle for the handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connection_with_no_open_stream_is_closed_when_idle() {
    bounded(30, async {
        let server = Server::start(&["--handshake-timeout", "1"]).await;
        let mut h2 = h2c(&server.addr).await;
        let (status, echo) = h2_websocket(&mut h2, &server.addr, "/echo", "websocket").await;
        assert_eq!(status, http::StatusCode::OK);
        let echo = echo.unwrap();
        // Well past the timeout: the open stream keeps the connection.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!h2.is_closed());
        echo.send("still here").await.unwrap();
        assert_eq!(recv(&echo).await.as_text(), Some("still here"));
        let ev = echo.close(CloseCode::NORMAL, "done").await;
        assert!(ev.clean, "{ev:?}");
        // A plain request too, then nothing: closed a timeout later.
        let page = http::Request::builder()
            .uri(format!("http://{}/", server.addr))
            .version(http::Version::HTTP_2)
            .body(String::new())
            .unwrap();
        assert_eq!(
            h2.send_request(page).await.unwrap().status(),
            http::StatusCode::OK
        );
        tokio::time::timeout(Duration::from_secs(6), async {
            while !h2.is_closed() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the idle HTTP/2 connection was kept open");
    })
    .await;
}

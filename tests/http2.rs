//! WebSockets over HTTP/2 (RFC 8441): `wsx::upgrade` under hyper's HTTP/2 server (h2c and h2 over
//! TLS) with the client's `ConnectOptions::http2`, and raw extended CONNECTs for what the client
//! never sends.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::LIMIT;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::{ClientConfig, ServerConfig};
use wsx::{AcceptOptions, CloseCode, ConnectOptions, Message, Role, Socket, WsStream};

/// What a test server saw.
#[derive(Default)]
struct Seen {
    /// TCP connections accepted.
    connections: AtomicUsize,
    /// HTTP versions of the upgrade requests.
    versions: Mutex<Vec<http::Version>>,
    /// Close codes of finished server sockets.
    closes: Mutex<Vec<u16>>,
    /// Bytes the `/flood` path managed to queue.
    flooded: AtomicUsize,
}

/// An HTTP/2-only server (h2c, or h2 over TLS when `tls` is given) running `wsx::upgrade`:
/// `/flood` sends 1 MiB messages until blocked, every other path echoes.
async fn h2_server(tls: Option<Arc<ServerConfig>>, options: AcceptOptions) -> (u16, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen2 = seen.clone();
    let service = wsx::upgrade(move |socket: Socket, parts: http::request::Parts| {
        let seen = seen2.clone();
        async move {
            seen.versions.lock().unwrap().push(parts.version);
            if parts.uri.path() == "/flood" {
                let chunk = Message::binary(vec![1u8; 1 << 20]);
                while socket.send(chunk.clone()).await.is_ok() {
                    seen.flooded.fetch_add(1 << 20, Ordering::SeqCst);
                }
            } else {
                while let Ok(m) = socket.recv().await {
                    if socket.send(m).await.is_err() {
                        break;
                    }
                }
            }
            let ev = socket.closed().await;
            seen.closes.lock().unwrap().push(ev.code);
        }
    })
    .options(options);
    let seen3 = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            seen3.connections.fetch_add(1, Ordering::SeqCst);
            let service = service.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let mut service = service.clone();
                    tower_service::Service::call(&mut service, req)
                });
                let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                builder.enable_connect_protocol();
                match tls {
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                    }
                    Some(config) => {
                        let tls = tokio_rustls::TlsAcceptor::from(config)
                            .accept(tcp)
                            .await
                            .unwrap();
                        let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// A self-signed certificate for localhost: the server config (ALPN `h2, http/1.1`) and a client
/// config trusting it.
fn tls_pair() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = cert.cert.pem();
    let key_pem = cert.signing_key.serialize_pem();
    let server = wsx::tls::server_config_from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    let client = wsx::tls::client_config_with_ca_pem(cert_pem.as_bytes()).unwrap();
    (wsx::tls::with_h2(server), client)
}

fn h2_options() -> ConnectOptions {
    ConnectOptions::default().http2()
}

/// Echo of every size class, text and binary, fragmentation-free and compressed, ping, and a
/// close code, over one socket; the server saw an HTTP/2 request.
async fn echo_round(url: &str, options: ConnectOptions, seen: &Seen) {
    let socket = Socket::open(url, options).await.unwrap();
    for size in [0usize, 125, 126, 65_536, 1 << 20] {
        let text = "é".repeat(size / 2);
        socket.send(text.clone()).await.unwrap();
        assert_eq!(socket.recv().await.unwrap().as_text(), Some(text.as_str()));
        let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        socket.send(bytes.clone()).await.unwrap();
        assert_eq!(socket.recv().await.unwrap().body(), &bytes[..]);
    }
    socket.ping("are you there").await.unwrap();
    socket.send("after ping").await.unwrap();
    assert_eq!(socket.recv().await.unwrap().as_text(), Some("after ping"));
    let ev = socket.close(CloseCode::new(4001).unwrap(), "bye").await;
    assert!(ev.clean, "{ev:?}");
    assert_eq!(ev.code, 4001);
    assert_eq!(*seen.versions.lock().unwrap(), vec![http::Version::HTTP_2]);
    wait_for(|| seen.closes.lock().unwrap().contains(&4001)).await;
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met in 5 s");
}

#[tokio::test]
async fn h2c_echo_of_every_size_ping_and_close_code() {
    tokio::time::timeout(LIMIT, async {
        let (port, seen) = h2_server(None, AcceptOptions::default()).await;
        echo_round(&format!("ws://127.0.0.1:{port}/echo"), h2_options(), &seen).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn h2_over_tls_echo_of_every_size_ping_and_close_code() {
    tokio::time::timeout(LIMIT, async {
        let (server, client) = tls_pair();
        let (port, seen) = h2_server(Some(server), AcceptOptions::default()).await;
        echo_round(
            &format!("wss://localhost:{port}/echo"),
            h2_options().tls(client),
            &seen,
        )
        .await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn h2_negotiates_subprotocol_and_permessage_deflate() {
    tokio::time::timeout(LIMIT, async {
        let (server, client) = tls_pair();
        let (port, _seen) =
            h2_server(Some(server), AcceptOptions::default().protocol("chat")).await;
        let options = h2_options()
            .tls(client)
            .protocol("superchat")
            .protocol("chat");
        let socket = Socket::open(&format!("wss://localhost:{port}/"), options)
            .await
            .unwrap();
        assert_eq!(socket.protocol(), "chat");
        assert!(socket.extensions().contains("permessage-deflate"));
        let big = "compress me ".repeat(10_000);
        socket.send(big.clone()).await.unwrap();
        let back = socket.recv().await.unwrap();
        assert_eq!(back.as_text(), Some(big.as_str()));
        assert!(back.compress(), "the echo came back compressed");
        socket.close(CloseCode::NORMAL, "").await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_hundred_sockets_share_one_connection() {
    tokio::time::timeout(LIMIT, async {
        let (port, seen) = h2_server(None, AcceptOptions::default()).await;
        let url = format!("ws://127.0.0.1:{port}/many");
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let url = url.clone();
                tokio::spawn(async move {
                    let socket = Socket::open(&url, h2_options()).await.unwrap();
                    for j in 0..10 {
                        let msg = format!("{i}-{j}");
                        socket.send(msg.clone()).await.unwrap();
                        assert_eq!(socket.recv().await.unwrap().as_text(), Some(msg.as_str()));
                    }
                    socket
                })
            })
            .collect();
        let mut sockets = Vec::new();
        for t in tasks {
            sockets.push(t.await.unwrap());
        }
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
        assert_eq!(seen.versions.lock().unwrap().len(), 100);
        // Closing one stream leaves the connection and the others up.
        let first = sockets.remove(0);
        assert!(first.close(CloseCode::NORMAL, "").await.clean);
        for s in &sockets {
            s.send("still here").await.unwrap();
            assert_eq!(s.recv().await.unwrap().as_text(), Some("still here"));
        }
        let again = Socket::open(&url, h2_options()).await.unwrap();
        again.send("new stream").await.unwrap();
        assert_eq!(again.recv().await.unwrap().as_text(), Some("new stream"));
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    })
    .await
    .unwrap();
}

/// A raw HTTP/2 connection to `port` (h2c) whose server advertised extended CONNECT.
async fn raw_h2(port: u16) -> SendRequest<String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    // The server's SETTINGS (with extended CONNECT) come at once; the server takes the requests
    // below whenever they come, as it advertises the setting.
    tokio::time::sleep(Duration::from_millis(100)).await;
    sender
}

fn connect_request(
    port: u16,
    protocol: Option<&'static str>,
    version: Option<&str>,
) -> http::Request<String> {
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .version(http::Version::HTTP_2)
        .uri(format!("http://127.0.0.1:{port}/raw"));
    if let Some(p) = protocol {
        req = req.extension(hyper::ext::Protocol::from_static(p));
    }
    if let Some(v) = version {
        req = req.header("sec-websocket-version", v);
    }
    req.body(String::new()).unwrap()
}

#[tokio::test]
async fn bad_extended_connects_get_400() {
    tokio::time::timeout(LIMIT, async {
        let (port, seen) = h2_server(None, AcceptOptions::default()).await;
        let mut sender = raw_h2(port).await;
        let cases = [
            (Some("chat"), Some("13"), "websocket"),
            (Some("websocket"), None, "Sec-WebSocket-Version"),
            (Some("websocket"), Some("12"), "version"),
        ];
        for (protocol, version, says) in cases {
            sender.ready().await.unwrap();
            let resp = sender
                .send_request(connect_request(port, protocol, version))
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                http::StatusCode::BAD_REQUEST,
                "{protocol:?} {version:?}"
            );
            assert!(resp.headers().get("connection").is_none());
            if version == Some("12") {
                assert_eq!(resp.headers()["sec-websocket-version"], "13");
            }
            use http_body_util::BodyExt as _;
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains(says), "{body}");
        }
        // A plain GET over HTTP/2 is no WebSocket request either.
        let get = http::Request::builder()
            .uri(format!("http://127.0.0.1:{port}/raw"))
            .version(http::Version::HTTP_2)
            .body(String::new())
            .unwrap();
        let resp = sender.send_request(get).await.unwrap();
        assert_eq!(resp.status(), http::StatusCode::BAD_REQUEST);
        // The connection is still good for a valid one.
        let resp = sender
            .send_request(connect_request(port, Some("websocket"), Some("13")))
            .await
            .unwrap();
        assert_eq!(resp.status(), http::StatusCode::OK);
        assert!(resp.headers().get("sec-websocket-accept").is_none());
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    })
    .await
    .unwrap();
}

/// A raw extended CONNECT stream.
async fn raw_stream(sender: &mut SendRequest<String>, port: u16) -> hyper::upgrade::Upgraded {
    let mut resp = sender
        .send_request(connect_request(port, Some("websocket"), Some("13")))
        .await
        .unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    hyper::upgrade::on(&mut resp).await.unwrap()
}

#[tokio::test]
async fn a_reset_stream_leaves_the_others_up() {
    tokio::time::timeout(LIMIT, async {
        let (port, seen) = h2_server(None, AcceptOptions::default().no_deflate()).await;
        let mut sender = raw_h2(port).await;
        let stream = raw_stream(&mut sender, port).await;
        let socket = Socket::from_stream(
            WsStream::from_transport(TokioIo::new(stream), Default::default()),
            Role::Client,
            Default::default(),
            Default::default(),
            "raw",
            "",
        );
        let doomed = raw_stream(&mut sender, port).await;
        socket.send("before").await.unwrap();
        assert_eq!(socket.recv().await.unwrap().as_text(), Some("before"));
        // Dropped without a close handshake: the stream is reset (RST_STREAM), not ended.
        drop(doomed);
        wait_for(|| seen.closes.lock().unwrap().contains(&1006)).await;
        socket.send("after").await.unwrap();
        assert_eq!(socket.recv().await.unwrap().as_text(), Some("after"));
        assert!(!sender.is_closed());
        assert!(socket.close(CloseCode::NORMAL, "").await.clean);
        wait_for(|| seen.closes.lock().unwrap().contains(&1000)).await;
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    })
    .await
    .unwrap();
}

/// HTTP/2 flow control is per stream: a client socket that stops reading stalls its own stream
/// (the server's sends stop, so memory stays bounded) while another socket on the same
/// connection goes on.
#[tokio::test]
async fn a_reader_that_does_not_read_stalls_only_its_stream() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let (port, seen) = h2_server(None, AcceptOptions::default().no_deflate()).await;
        let options = h2_options().no_deflate();
        let flooded = Socket::open(&format!("ws://127.0.0.1:{port}/flood"), options.clone())
            .await
            .unwrap();
        let echo = Socket::open(&format!("ws://127.0.0.1:{port}/echo"), options)
            .await
            .unwrap();
        // The flood stops once the windows, socket queues and buffers are full.
        let mut last = usize::MAX;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = seen.flooded.load(Ordering::SeqCst);
            if now == last {
                break;
            }
            last = now;
        }
        assert!(
            last < 256 << 20,
            "the server queued {last} bytes for a reader that does not read"
        );
        for i in 0..20 {
            let msg = vec![i as u8; 10_000];
            echo.send(msg.clone()).await.unwrap();
            assert_eq!(echo.recv().await.unwrap().body(), &msg[..]);
        }
        // Reading again lets the flood go on.
        for _ in 0..4 {
            assert_eq!(flooded.recv().await.unwrap().body().len(), 1 << 20);
        }
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn falls_back_to_http1_without_extended_connect() {
    tokio::time::timeout(LIMIT, async {
        // A plain HTTP/1.1 server (no HTTP/2 at all) over ws://.
        let addr = common::echo_server(AcceptOptions::default()).await;
        let socket = Socket::open(&format!("ws://{addr}/"), h2_options())
            .await
            .unwrap();
        socket.send("over 1.1").await.unwrap();
        assert_eq!(socket.recv().await.unwrap().as_text(), Some("over 1.1"));

        // A TLS server that picks http/1.1 by ALPN: the upgrade goes over that connection.
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let server = wsx::tls::server_config_from_pem(
            cert.cert.pem().as_bytes(),
            cert.signing_key.serialize_pem().as_bytes(),
        )
        .unwrap();
        let client = wsx::tls::client_config_with_ca_pem(cert.cert.pem().as_bytes()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = tokio_rustls::TlsAcceptor::from(server)
                .accept(tcp)
                .await
                .unwrap();
            let (socket, _) = wsx::accept(tls, &AcceptOptions::default()).await.unwrap();
            while let Ok(m) = socket.recv().await {
                let _ = socket.send(m).await;
            }
        });
        let socket = Socket::open(
            &format!("wss://localhost:{port}/"),
            h2_options().tls(client),
        )
        .await
        .unwrap();
        socket.send("alpn 1.1").await.unwrap();
        assert_eq!(socket.recv().await.unwrap().as_text(), Some("alpn 1.1"));
    })
    .await
    .unwrap();
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_serve_takes_websockets_over_http2() {
    tokio::time::timeout(LIMIT, async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let echo = wsx::upgrade(move |socket: Socket, parts: http::request::Parts| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(parts.version);
                while let Ok(m) = socket.recv().await {
                    if socket.send(m).await.is_err() {
                        break;
                    }
                }
            }
        });
        let app = axum::Router::new().route_service("/ws", echo);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let socket = Socket::open(&format!("ws://{addr}/ws"), h2_options())
            .await
            .unwrap();
        socket.send("axum h2").await.unwrap();
        assert_eq!(socket.recv().await.unwrap().as_text(), Some("axum h2"));
        assert_eq!(rx.recv().await, Some(http::Version::HTTP_2));
    })
    .await
    .unwrap();
}

/// Over HTTP/2 a bad extended CONNECT gets 400 through both server doors, the axum extractor and
/// `wsx::upgrade` (under `axum::serve`): a missing or wrong version with
/// `Sec-WebSocket-Version: 13`, never the HTTP/1.1 answer 426 (whose `Upgrade` header HTTP/2
/// forbids); a wrong `:protocol` with the reason.
#[cfg(feature = "axum")]
#[tokio::test]
async fn bad_version_over_http2_gets_400_through_the_extractor_and_the_service() {
    use axum::response::Response;
    use http_body_util::BodyExt as _;
    async fn extract(ws: wsx::axum::WebSocketUpgrade) -> Response {
        ws.on_upgrade(|socket| async move {
            while let Ok(m) = socket.recv().await {
                if socket.send(m).await.is_err() {
                    break;
                }
            }
        })
    }
    tokio::time::timeout(LIMIT, async {
        let service = wsx::upgrade(|socket: Socket, _| async move {
            let _ = socket.closed().await;
        });
        let app = axum::Router::new()
            .route("/extractor", axum::routing::any(extract))
            .route_service("/service", service);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let mut sender = raw_h2(port).await;
        for path in ["/extractor", "/service"] {
            let cases = [
                (Some("websocket"), None, "Sec-WebSocket-Version"),
                (Some("websocket"), Some("8"), "version"),
                (Some("chat"), Some("13"), "websocket"),
            ];
            for (protocol, version, says) in cases {
                let mut req = connect_request(port, protocol, version);
                *req.uri_mut() = format!("http://127.0.0.1:{port}{path}").parse().unwrap();
                sender.ready().await.unwrap();
                let resp = sender.send_request(req).await.unwrap();
                let what = format!("{path} {protocol:?} {version:?}");
                assert_eq!(resp.status(), http::StatusCode::BAD_REQUEST, "{what}");
                if protocol == Some("websocket") {
                    assert_eq!(resp.headers()["sec-websocket-version"], "13", "{what}");
                }
                assert!(resp.headers().get("upgrade").is_none(), "{what}");
                assert!(resp.headers().get("connection").is_none(), "{what}");
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                let body = String::from_utf8_lossy(&body);
                assert!(body.contains(says), "{what}: {body}");
            }
            // The same connection still opens a WebSocket there.
            let mut req = connect_request(port, Some("websocket"), Some("13"));
            *req.uri_mut() = format!("http://127.0.0.1:{port}{path}").parse().unwrap();
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.status(), http::StatusCode::OK, "{path}");
        }
    })
    .await
    .unwrap();
}

//! The client in the real world: abort, proxies (tiny in-process fakes), redirects and cookies,
//! over loopback connections.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use wsx::{AcceptOptions, ConnectOptions, Error, Proxy, ProxyError, RedirectError, Socket};

#[tokio::test]
async fn abort_from_a_message_handler_drops_the_connection_as_if_lost() {
    tokio::time::timeout(LIMIT, async {
        // The server reports how its side ended.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = Arc::new(Mutex::new(Some(tx)));
        let addr = serve(AcceptOptions::default(), move |socket| {
            let tx = tx.clone();
            async move {
                socket.send("kill me").await.unwrap();
                let ev = socket.closed().await;
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(ev);
                }
            }
        })
        .await;
        let socket = Socket::open(&format!("ws://{addr}/"), ConnectOptions::default())
            .await
            .unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let (e1, e2, e3) = (events.clone(), events.clone(), events.clone());
        let weak = socket.downgrade();
        socket.on_message(move |m| {
            e1.lock()
                .unwrap()
                .push(format!("message {}", m.as_text().unwrap()));
            if let Some(s) = weak.upgrade() {
                s.abort();
            }
        });
        socket.on_error(move |e| e2.lock().unwrap().push(format!("error {}", e.code)));
        socket.on_close(move |c| {
            e3.lock()
                .unwrap()
                .push(format!("close {} {}", c.code, c.clean))
        });
        let ev = socket.closed().await;
        assert_eq!((ev.code, ev.clean), (1006, false));
        for _ in 0..200 {
            if events.lock().unwrap().len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            *events.lock().unwrap(),
            vec!["message kill me", "error 1006", "close 1006 false"]
        );
        // No CLOSE went out: the server saw the connection drop.
        let server_ev = rx.await.unwrap();
        assert_eq!((server_ev.code, server_ev.clean), (1006, false));
        // A second abort, a close and a send after it do nothing harmful.
        socket.abort();
        assert!(socket.send("late").await.is_err());
    })
    .await
    .unwrap();
}

/// An echo server that records the request head of each handshake.
async fn recording_echo_server() -> (std::net::SocketAddr, Arc<Mutex<Vec<http::Request<()>>>>) {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                if let Ok((socket, req)) = wsx::accept(tcp, &AcceptOptions::default()).await {
                    seen.lock().unwrap().push(req);
                    while let Ok(m) = socket.recv().await {
                        if socket.send(m).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    (addr, requests)
}

/// Options that go through the proxy at `url`.
fn via(url: &str) -> ConnectOptions {
    ConnectOptions::default().proxy(Proxy::parse(url).unwrap())
}

/// The error of a connection attempt to an unresolvable target through `options`' proxy.
async fn fails(options: ConnectOptions) -> Error {
    Socket::open("ws://target.test:9/", options)
        .await
        .unwrap_err()
}

async fn echo_once(socket: &Socket) {
    socket.send("through").await.unwrap();
    assert_eq!(socket.recv().await.unwrap().as_text(), Some("through"));
}

#[tokio::test]
async fn http_connect_proxy_with_basic_auth_carries_the_connection() {
    tokio::time::timeout(LIMIT, async {
        let (server, _) = recording_echo_server().await;
        let (proxy, heads) = connect_proxy().await;
        let proxy = Proxy::parse(&format!("http://alice:s%3Acret@{proxy}")).unwrap();
        let socket = Socket::open(
            &format!("ws://{server}/via"),
            ConnectOptions::default().proxy(proxy.clone()),
        )
        .await
        .unwrap();
        echo_once(&socket).await;
        let head = heads.lock().unwrap()[0].clone();
        assert!(
            head.starts_with(&format!("CONNECT {server} HTTP/1.1\r\n")),
            "{head}"
        );
        // base64("alice:s:cret")
        assert!(
            head.contains("Proxy-Authorization: Basic YWxpY2U6czpjcmV0\r\n"),
            "{head}"
        );
        assert!(!format!("{proxy:?} {proxy}").contains("cret"));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_environment_opt_in_uses_the_proxy_and_no_proxy() {
    tokio::time::timeout(LIMIT, async {
        let (server, _) = recording_echo_server().await;
        let (proxy, heads) = connect_proxy().await;
        let url = format!("ws://{server}/");
        let var = |no_proxy: &'static str| {
            let proxy = format!("http://{proxy}");
            move |name: &str| match name {
                "http_proxy" => Some(proxy.clone()),
                "no_proxy" => Some(no_proxy.to_owned()),
                _ => None,
            }
        };
        let chosen = Proxy::from_env_with(&url, var("example.com"))
            .unwrap()
            .unwrap();
        let socket = Socket::open(&url, ConnectOptions::default().proxy(chosen))
            .await
            .unwrap();
        echo_once(&socket).await;
        assert_eq!(heads.lock().unwrap().len(), 1);
        assert_eq!(Proxy::from_env_with(&url, var("127.0.0.1")).unwrap(), None);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn refusing_proxies_give_typed_errors_naming_the_proxy_without_credentials() {
    tokio::time::timeout(LIMIT, async {
        for (answer, status) in [
            (&b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n"[..], "407 Proxy Authentication Required"),
            (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", "403 Forbidden"),
            (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", "502 Bad Gateway"),
        ] {
            let proxy = fake_peer(FakePeer::HttpAnswer(answer)).await;
            let options = via(&format!("http://bob:hunter2@{proxy}"));
            let err = fails(options).await;
            let text = err.to_string();
            assert!(
                matches!(&err, Error::Proxy(ProxyError::Refused { answer, .. }) if answer == status),
                "{err:?}"
            );
            assert!(text.contains(&format!("http://{proxy}")), "{text}");
            assert!(text.contains("target.test:9"), "{text}");
            assert!(!text.contains("hunter2") && !format!("{err:?}").contains("hunter2"));
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_closing_proxy_and_a_hanging_proxy_fail_within_the_connect_timeout() {
    tokio::time::timeout(LIMIT, async {
        let proxy = fake_peer(FakePeer::HttpClose).await;
        let options = via(&format!("http://{proxy}"));
        let err = fails(options).await;
        assert!(
            matches!(err, Error::Proxy(ProxyError::Closed { .. })),
            "{err:?}"
        );

        let proxy = fake_peer(FakePeer::Hang).await;
        let mut options = via(&format!("http://u:pw@{proxy}"));
        options.connect_timeout = Duration::from_millis(500);
        let started = std::time::Instant::now();
        let err = fails(options).await;
        assert!(
            matches!(err, Error::Proxy(ProxyError::Timeout { .. })),
            "{err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "bounded by the connect timeout"
        );
        assert!(err.to_string().contains(&proxy.to_string()));

        // Nobody listening: unreachable, naming the proxy.
        let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = gone.local_addr().unwrap();
        drop(gone);
        let options = via(&format!("socks5h://{addr}"));
        let err = fails(options).await;
        assert!(
            matches!(err, Error::Proxy(ProxyError::Unreachable { .. })),
            "{err:?}"
        );
    })
    .await
    .unwrap();
}

#[cfg(feature = "socks")]
#[tokio::test]
async fn a_socks5_refusal_is_reported_with_its_reply() {
    tokio::time::timeout(LIMIT, async {
        let proxy = fake_peer(FakePeer::SocksReply(5)).await;
        let options = via(&format!("socks5h://{proxy}"));
        let err = fails(options).await;
        assert!(
            matches!(&err, Error::Proxy(ProxyError::Refused { answer, .. }) if answer == "Connection refused"),
            "{err:?}"
        );
        assert!(err.to_string().contains(&format!("socks5h://{proxy}")));
    })
    .await
    .unwrap();
}

/// A server that answers every request with a redirect to `location` (and sets a cookie).
async fn redirector(location: String) -> std::net::SocketAddr {
    let answer = format!(
        "HTTP/1.1 302 Found\r\nLocation: {location}\r\nSet-Cookie: sid=abc; Path=/\r\nContent-Length: 0\r\n\r\n"
    );
    let answer: &'static [u8] = Box::leak(answer.into_bytes().into_boxed_slice());
    fake_peer(FakePeer::HttpAnswer(answer)).await
}

#[tokio::test]
async fn redirects_are_an_error_unless_followed_and_credentials_stay_home() {
    tokio::time::timeout(LIMIT, async {
        let (server, requests) = recording_echo_server().await;
        // To another origin ("localhost" is not "127.0.0.1").
        let to = format!("ws://localhost:{}/moved", server.port());
        let from = redirector(to.clone()).await;
        let url = format!("ws://{from}/old");
        let mut options = ConnectOptions::default();
        options.headers.insert("authorization", "Bearer t0ken".parse().unwrap());
        options.headers.insert("x-trace", "1".parse().unwrap());

        let err = Socket::open(&url, options.clone()).await.unwrap_err();
        assert!(
            matches!(&err, Error::Redirect(RedirectError::NotFollowed { status: 302, location }) if *location == to),
            "{err:?}"
        );
        assert!(err.to_string().contains(&to), "the error says where it pointed: {err}");

        let socket = Socket::open(&url, options.clone().follow_redirects(2)).await.unwrap();
        echo_once(&socket).await;
        let req = requests.lock().unwrap()[0].clone();
        assert_eq!(req.uri().path(), "/moved");
        assert!(req.headers().get("authorization").is_none(), "stripped across origins");
        assert_eq!(req.headers()["x-trace"], "1");

    })
    .await
    .unwrap();
}

#[tokio::test]
async fn redirects_past_the_limit_are_refused() {
    tokio::time::timeout(LIMIT, async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        // Two redirects in a row (the second to a port nobody listens on) with a limit of one.
        let second = redirector(format!("ws://{addr}/")).await;
        let first = redirector(format!("ws://{second}/")).await;
        let err = Socket::open(
            &format!("ws://{first}/"),
            ConnectOptions::default().follow_redirects(1),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Redirect(RedirectError::TooMany { limit: 1, .. })
            ),
            "{err:?}"
        );
    })
    .await
    .unwrap();
}

#[cfg(feature = "cookies")]
#[tokio::test]
async fn the_cookie_jar_sends_cookies_set_earlier_to_the_same_site() {
    tokio::time::timeout(LIMIT, async {
        let (server, requests) = recording_echo_server().await;
        // Same host, another port: the same site for cookies.
        let from = redirector(format!("ws://127.0.0.1:{}/in", server.port())).await;
        let jar = Arc::new(wsx::CookieJar::new());
        // A cookie from an earlier HTTP response the application had.
        assert!(jar.store("http://127.0.0.1/login", "app=1"));
        let options = ConnectOptions::default()
            .follow_redirects(1)
            .cookie_jar(jar.clone());
        let socket = Socket::open(&format!("ws://{from}/"), options)
            .await
            .unwrap();
        echo_once(&socket).await;
        let req = requests.lock().unwrap()[0].clone();
        let cookie = req.headers()["cookie"].to_str().unwrap().to_owned();
        assert!(
            cookie.contains("sid=abc") && cookie.contains("app=1"),
            "{cookie}"
        );
        assert!(jar.cookie_header("ws://localhost/").is_none());
    })
    .await
    .unwrap();
}

//! The client through real proxies: tinyproxy (HTTP CONNECT, with and without Basic auth) and
//! microsocks (SOCKS5, with and without user/password), started on 127.0.0.1 by
//! `scripts/proxy_test.sh`, which `.ci/run` calls. The tests are ignored in a plain
//! `cargo test` (no proxies there); the script runs them with `--ignored` and these variables:
//!
//! | variable | proxy |
//! |---|---|
//! | `WSX_TEST_HTTP_PROXY` | tinyproxy, no auth (`http://127.0.0.1:PORT`) |
//! | `WSX_TEST_HTTP_PROXY_AUTH` | tinyproxy with `BasicAuth` (`http://user:pw@127.0.0.1:PORT`) |
//! | `WSX_TEST_SOCKS_PROXY` | microsocks, no auth (`127.0.0.1:PORT`) |
//! | `WSX_TEST_SOCKS_PROXY_AUTH` | microsocks with `-u`/`-P` (`user:pw@127.0.0.1:PORT`) |

mod common;

use common::*;
use wsx::{AcceptOptions, ConnectOptions, Error, Proxy, ProxyError, Socket};

/// The proxy URL a variable names; a missing variable fails the test (the script sets them all).
fn proxy_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/proxy_test.sh"))
}

fn through(url: &str) -> ConnectOptions {
    ConnectOptions::default().proxy(Proxy::parse(url).unwrap())
}

async fn echo_through(url: &str, options: ConnectOptions) {
    let socket = Socket::open(url, options).await.unwrap();
    socket.send("through the proxy").await.unwrap();
    assert_eq!(
        socket.recv().await.unwrap().as_text(),
        Some("through the proxy")
    );
    socket.close(wsx::CloseCode::NORMAL, "").await;
}

/// The same proxy URL with a wrong password.
fn wrong_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (creds, host) = rest.split_once('@').unwrap();
    let user = creds.split(':').next().unwrap();
    let prefix = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    format!("{prefix}{user}:not-the-password@{host}")
}

/// An echo over `ws://` through `ws_proxy`, then over `wss://` through `wss_proxy`: TLS end to
/// end through the tunnel, checked against the name "localhost" (SNI), which the proxy
/// resolves.
async fn ws_and_wss_through(ws_proxy: &str, wss_proxy: &str) {
    let addr = echo_server(AcceptOptions::default()).await;
    echo_through(&format!("ws://{addr}/plain"), through(ws_proxy)).await;
    let (port, tls) = tls_echo_server(AcceptOptions::default()).await;
    echo_through(
        &format!("wss://localhost:{port}/secure"),
        through(wss_proxy).tls(tls),
    )
    .await;
}

/// `proxy` (with credentials) carries an echo; with a wrong password it refuses, and the error
/// does not show the password. Returns that error.
async fn right_password_only(proxy: &str) -> Error {
    let addr = echo_server(AcceptOptions::default()).await;
    echo_through(&format!("ws://{addr}/"), through(proxy)).await;
    let err = Socket::open(&format!("ws://{addr}/"), through(&wrong_password(proxy)))
        .await
        .unwrap_err();
    assert!(
        !format!("{err} {err:?}").contains("not-the-password"),
        "{err}"
    );
    err
}

#[tokio::test]
#[ignore = "needs the proxies of scripts/proxy_test.sh"]
async fn tinyproxy_carries_ws_and_wss() {
    tokio::time::timeout(LIMIT, async {
        let proxy = proxy_var("WSX_TEST_HTTP_PROXY");
        ws_and_wss_through(&proxy, &proxy).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
#[ignore = "needs the proxies of scripts/proxy_test.sh"]
async fn tinyproxy_with_basic_auth_accepts_the_right_password_only() {
    tokio::time::timeout(LIMIT, async {
        let proxy = proxy_var("WSX_TEST_HTTP_PROXY_AUTH");
        let err = right_password_only(&proxy).await;
        // tinyproxy 1.11 answers 401 Unauthorized where RFC 9110 says 407.
        assert!(
            matches!(&err, Error::Proxy(ProxyError::Refused { answer, .. })
                if answer.starts_with("407") || answer.starts_with("401")),
            "{err:?}"
        );
        // No credentials at all: refused the same way.
        let bare = format!("http://{}", proxy.rsplit('@').next().unwrap());
        let err = Socket::open("ws://127.0.0.1:9/", through(&bare))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Proxy(ProxyError::Refused { .. })),
            "{err:?}"
        );
    })
    .await
    .unwrap();
}

#[cfg(feature = "socks")]
#[tokio::test]
#[ignore = "needs the proxies of scripts/proxy_test.sh"]
async fn microsocks_carries_ws_and_wss_with_local_and_remote_dns() {
    tokio::time::timeout(LIMIT, async {
        let proxy = proxy_var("WSX_TEST_SOCKS_PROXY");
        ws_and_wss_through(&format!("socks5://{proxy}"), &format!("socks5h://{proxy}")).await;
    })
    .await
    .unwrap();
}

#[cfg(feature = "socks")]
#[tokio::test]
#[ignore = "needs the proxies of scripts/proxy_test.sh"]
async fn microsocks_with_a_password_accepts_the_right_one_only() {
    tokio::time::timeout(LIMIT, async {
        let proxy = format!("socks5h://{}", proxy_var("WSX_TEST_SOCKS_PROXY_AUTH"));
        let err = right_password_only(&proxy).await;
        assert!(
            matches!(err, Error::Proxy(ProxyError::Refused { .. })),
            "{err:?}"
        );
    })
    .await
    .unwrap();
}

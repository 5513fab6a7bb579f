//! wss:// with a certificate made in the test.

mod common;

use common::{tls_echo_server, LIMIT};
use wsx::{AcceptOptions, CloseCode, ConnectOptions, Socket};

#[tokio::test]
async fn wss_round_trip_with_a_self_signed_certificate() {
    tokio::time::timeout(LIMIT, async {
        // Trusting only the test certificate; the name checked is "localhost" (SNI too).
        let (port, client_config) = tls_echo_server(AcceptOptions::default()).await;
        let url = format!("wss://localhost:{port}/secure");
        let socket = Socket::open(&url, ConnectOptions::default().tls(client_config))
            .await
            .unwrap();
        socket.send("secret").await.unwrap();
        assert_eq!(socket.recv().await.unwrap().as_text(), Some("secret"));
        socket.send(vec![7u8; 100_000]).await.unwrap();
        assert_eq!(socket.recv().await.unwrap().body().len(), 100_000);
        socket.close(CloseCode::NORMAL, "").await;

        // Without trusting it, the connection fails with a TLS error.
        let err = Socket::open(&url, ConnectOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, wsx::Error::Tls(_) | wsx::Error::Io(_)),
            "{err}"
        );
    })
    .await
    .unwrap();
}

/// Over TLS, large and small messages from several tasks on both ends (so that writes often
/// find the socket full while records wait in the TLS buffer) all arrive whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_concurrent_large_messages_stay_byte_exact() {
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let (port, client_config) = tls_echo_server(AcceptOptions::default().no_deflate()).await;
        let options = ConnectOptions {
            deflate: None,
            ..ConnectOptions::default().tls(client_config)
        };
        let url = format!("wss://localhost:{port}/");
        let socket = Socket::open(&url, options).await.unwrap();
        common::send_and_check_order(&socket, 0..3, 0..3, 32, 400_000).await;
        socket.close(CloseCode::NORMAL, "").await;
    })
    .await
    .unwrap();
}

/// Over TLS too, a peer that announces a large frame after a large message and trickles it
/// holds a read buffer of about what it sent, not of what it announced.
#[tokio::test]
async fn amplification_trickle_over_tls_keeps_the_read_buffer_small() {
    use tokio::io::AsyncWriteExt;

    tokio::time::timeout(LIMIT, async {
        let (acceptor, cert_pem) = common::localhost_acceptor();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            let options = AcceptOptions::default().no_deflate();
            let (socket, _) = wsx::accept(tls, &options).await.unwrap();
            let _ = tx.send(socket.clone());
            while let Ok(m) = socket.recv().await {
                if socket.send(m).await.is_err() {
                    break;
                }
            }
        });

        let client_config = wsx::tls::client_config_with_ca_pem(cert_pem.as_bytes()).unwrap();
        let connector = tokio_rustls::TlsConnector::from(client_config);
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(common::upgrade_request("/", "").as_bytes())
            .await
            .unwrap();
        let head = common::read_head(&mut tls).await;
        assert!(head.starts_with("HTTP/1.1 101"));
        let socket = rx.await.unwrap();
        common::trickle_after_a_large_message(&mut tls, || socket).await;
    })
    .await
    .unwrap();
}

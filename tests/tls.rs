//! wss:// with a certificate made in the test.

mod common;

use common::LIMIT;
use tokio::net::TcpListener;
use wsx::{AcceptOptions, ConnectOptions, Socket};

#[tokio::test]
async fn wss_round_trip_with_a_self_signed_certificate() {
    tokio::time::timeout(LIMIT, async {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert_pem = cert.cert.pem();
        let key_pem = cert.signing_key.serialize_pem();
        let server_config =
            wsx::tls::server_config_from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            let (socket, _) = wsx::accept(tls, &AcceptOptions::default()).await.unwrap();
            while let Ok(m) = socket.recv().await {
                socket.send(m).await.unwrap();
            }
        });
        // Trusting only the test certificate; the name checked is "localhost" (SNI too).
        let client_config = wsx::tls::client_config_with_ca_pem(cert_pem.as_bytes()).unwrap();
        let url = format!("wss://localhost:{port}/secure");
        let socket = Socket::open(&url, ConnectOptions::default().tls(client_config))
            .await
            .unwrap();
        socket.send("secret").await.unwrap();
        assert_eq!(socket.recv().await.unwrap().as_text(), Some("secret"));
        socket.send(vec![7u8; 100_000]).await.unwrap();
        assert_eq!(socket.recv().await.unwrap().body().len(), 100_000);
        socket.close(1000, "").await.unwrap();

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

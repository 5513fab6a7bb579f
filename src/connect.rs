//! [`connect`]: the seed's `ws.connect(url, origin)`: the client side of the opening handshake
//! over `ws://` (TCP) or `wss://` (TLS), returning the handshaken byte stream.

#[cfg(any(feature = "rustls", feature = "cookies"))]
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::HeaderMap;
use tokio::net::TcpStream;
#[cfg(feature = "rustls")]
use tokio_rustls::rustls::ClientConfig;
use url::Url;

#[cfg(feature = "cookies")]
use crate::cookies::CookieJar;
use crate::error::{Error, Result};
use crate::http_io::{read_head, write_all};
use crate::proto::deflate::{DeflateConfig, DeflateParams};
use crate::proto::handshake::{self, ClientRequest, HandshakeError, HandshakeLimits};
use crate::proto::Role;
use crate::proxy::Proxy;
use crate::redirect;
use crate::socket::{Negotiated, OwnedSocket, Socket, SocketConfig};
use crate::transport::{Transport, WsStream};

/// Client settings for [`crate::Socket::open`] and [`crate::Socket::connect`] (and the lower-level [`handshake()`]).
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Subprotocols to offer, in order of preference.
    pub protocols: Vec<String>,
    /// The `Origin` header to send.
    pub origin: Option<String>,
    /// Extra request headers (authorization, cookies, ...).
    pub headers: HeaderMap,
    /// permessage-deflate to offer (`None`: no compression). On by default.
    pub deflate: Option<DeflateConfig>,
    /// The TLS configuration for `wss://` (default: the bundled web PKI roots with feature
    /// `webpki-roots`, else the platform's with `native-roots`).
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub tls: Option<Arc<ClientConfig>>,
    /// The TCP (and TLS) connect timeout. Default 10 s.
    pub connect_timeout: Duration,
    /// The opening handshake timeout. Default 10 s.
    pub handshake_timeout: Duration,
    /// Limits on the handshake response.
    pub handshake_limits: HandshakeLimits,
    /// Settings of the socket once open.
    pub socket: SocketConfig,
    /// The proxy to go through (see [`Proxy`]); it wins over
    /// [`ConnectOptions::proxy_from_env`].
    pub proxy: Option<Proxy>,
    /// Opt-in: choose the proxy from the environment the way curl does
    /// ([`Proxy::from_env`]: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`). Off by
    /// default.
    pub proxy_from_env: bool,
    /// How many redirects (301, 302, 307, 308) of the opening handshake to follow. Default 0:
    /// a redirect is an [`Error::Redirect`] that says where it pointed.
    pub max_redirects: usize,
    /// The cookie jar: its cookies go out with each handshake, and the cookies handshake
    /// responses set go into it.
    #[cfg(feature = "cookies")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cookies")))]
    pub cookie_jar: Option<Arc<CookieJar>>,
    /// Open the socket as a stream of an HTTP/2 connection (RFC 8441) when the server supports
    /// it: `wss://` offers `h2` by ALPN, `ws://` speaks HTTP/2 with prior knowledge (h2c).
    /// Sockets to the same server (scheme, host, port, TLS configuration) share one connection.
    /// When the server does not advertise extended CONNECT (or does not speak HTTP/2), the
    /// socket opens over HTTP/1.1 instead. Over HTTP/2 there are no redirects and no cookies (the
    /// answer is 200 or an error). Off by default.
    #[cfg(feature = "http2")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
    pub http2: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            protocols: Vec::new(),
            origin: None,
            headers: HeaderMap::new(),
            deflate: crate::proto::deflate::AVAILABLE.then(DeflateConfig::default),
            #[cfg(feature = "rustls")]
            tls: None,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            handshake_limits: HandshakeLimits::default(),
            socket: SocketConfig::default(),
            proxy: None,
            proxy_from_env: false,
            max_redirects: 0,
            #[cfg(feature = "cookies")]
            cookie_jar: None,
            #[cfg(feature = "http2")]
            http2: false,
        }
    }
}

impl ConnectOptions {
    /// Adds a subprotocol to offer.
    pub fn protocol(mut self, name: impl Into<String>) -> Self {
        self.protocols.push(name.into());
        self
    }

    /// Sets the origin.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Turns permessage-deflate off.
    pub fn no_deflate(mut self) -> Self {
        self.deflate = None;
        self
    }

    /// Asks for HTTP/2 (see [`ConnectOptions::http2`]).
    #[cfg(feature = "http2")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http2")))]
    pub fn http2(mut self) -> Self {
        self.http2 = true;
        self
    }

    /// Sets the TLS configuration.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls(mut self, config: Arc<ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Goes through `proxy`, e.g. `.proxy(Proxy::parse("http://user:pw@127.0.0.1:3128")?)`.
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// Chooses the proxy from the environment, as curl does (see [`Proxy::from_env`]).
    pub fn proxy_from_env(mut self) -> Self {
        self.proxy_from_env = true;
        self
    }

    /// Follows up to `max` redirects of the opening handshake.
    pub fn follow_redirects(mut self, max: usize) -> Self {
        self.max_redirects = max;
        self
    }

    /// Uses `jar` for cookies.
    #[cfg(feature = "cookies")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cookies")))]
    pub fn cookie_jar(mut self, jar: Arc<CookieJar>) -> Self {
        self.cookie_jar = Some(jar);
        self
    }
}

/// A completed client handshake.
#[derive(Debug)]
pub struct Connected {
    /// The handshaken stream (with any bytes the server sent right behind its response).
    pub stream: WsStream,
    /// The server's 101 response.
    pub response: http::Response<()>,
    /// The subprotocol the server chose.
    pub protocol: Option<String>,
    /// The permessage-deflate parameters, when the server accepted compression.
    pub deflate: Option<DeflateParams>,
    /// The `Sec-WebSocket-Extensions` response value ("" when none).
    pub extensions: String,
}

/// Opens a WebSocket connection to `url` (`ws://` or `wss://`) with `origin` ("" for none) and
/// returns the handshaken stream, as the seed's `ws.connect`. It offers no subprotocol and no
/// compression; use [`crate::Socket::open`] for more.
///
/// Cancel safety: dropping the future abandons the attempt and closes its TCP connection.
pub async fn connect(url: &str, origin: &str) -> Result<WsStream> {
    let mut options = ConnectOptions::default().no_deflate();
    if !origin.is_empty() {
        options.origin = Some(origin.to_owned());
    }
    Ok(handshake(url, &options).await?.stream)
}

pub(crate) struct Target {
    pub(crate) url: Url,
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) host_header: String,
}

/// The host of `url` as a name or address to connect to (an IPv6 address without brackets).
pub(crate) fn url_host(url: &Url) -> Option<String> {
    Some(match url.host()? {
        url::Host::Domain(d) => d.to_owned(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    })
}

fn parse_target(url: &str) -> Result<Target> {
    let url = Url::parse(url).map_err(|e| Error::InvalidUrl(format!("{url}: {e}")))?;
    let tls = match url.scheme() {
        "ws" => false,
        "wss" => true,
        other => return Err(Error::UnknownProtocol(other.to_owned())),
    };
    let Some(host) = url_host(&url) else {
        return Err(Error::InvalidUrl(format!("{url}: no host")));
    };
    let default_port = if tls { 443 } else { 80 };
    let port = url.port().unwrap_or(default_port);
    let host_str = url.host_str().unwrap_or_default();
    let host_header = if port == default_port {
        host_str.to_owned()
    } else {
        format!("{host_str}:{port}")
    };
    Ok(Target {
        url,
        tls,
        host,
        port,
        host_header,
    })
}

/// Connects to `url` with `options`: TCP (TCP_NODELAY on; through the proxy, if any), TLS
/// for `wss://` (SNI, ALPN http/1.1), then the opening handshake, each under its timeout; and
/// again for each redirect followed. With [`ConnectOptions::http2`], the socket is a stream of
/// an HTTP/2 connection when the server allows it.
///
/// Cancel safety: dropping the future abandons the attempt and closes its TCP connection.
pub async fn handshake(url: &str, options: &ConnectOptions) -> Result<Connected> {
    let mut target = parse_target(url)?;
    let mut headers = options.headers.clone();
    let mut hop = 0;
    // A connection made for HTTP/2 whose server chose HTTP/1.1 by ALPN.
    #[allow(unused_mut)]
    let mut connected = None;
    #[cfg(feature = "http2")]
    if options.http2 {
        match crate::h2::open(&target, options).await? {
            crate::h2::Attempt::Open(done) => return Ok(done),
            crate::h2::Attempt::Http1(transport) => connected = Some(transport),
            crate::h2::Attempt::Fallback => {}
        }
    }
    loop {
        let response = match handshake_once(&target, &headers, options, connected.take()).await? {
            Attempt::Done(connected) => return Ok(connected),
            Attempt::Redirect(response) => response,
        };
        hop += 1;
        let next = redirect::next_url(&target.url, &response, hop, options.max_redirects)?;
        tracing::debug!(from = %target.url, to = %next, "following a redirect");
        if !redirect::same_origin(&target.url, &next) {
            redirect::strip_credentials(&mut headers);
        }
        target = parse_target(next.as_str())?;
    }
}

/// What one handshake attempt gave.
enum Attempt {
    Done(Connected),
    /// A redirect (the response, for its `Location`).
    Redirect(http::Response<()>),
}

/// A TCP connection to `target`, through the proxy the options choose, within the connect
/// timeout.
pub(crate) async fn dial(target: &Target, options: &ConnectOptions) -> Result<TcpStream> {
    let timeout = options.connect_timeout;
    let proxy = match &options.proxy {
        Some(p) => Some(p.clone()),
        None if options.proxy_from_env => Proxy::from_env(target.url.as_str())?,
        None => None,
    };
    if let Some(proxy) = proxy {
        tracing::debug!(%proxy, "connecting through a proxy");
        return proxy
            .tunnel(
                &target.host,
                target.port,
                &options.handshake_limits,
                timeout,
            )
            .await;
    }
    let tcp = tokio::time::timeout(
        timeout,
        TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    .map_err(|_| Error::Timeout {
        what: "connect",
        after: timeout,
    })??;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// One connection (or `connected`, when already made) and opening handshake to `target` with
/// `headers`.
async fn handshake_once(
    target: &Target,
    headers: &HeaderMap,
    options: &ConnectOptions,
    connected: Option<Transport>,
) -> Result<Attempt> {
    let timeout = options.connect_timeout;
    let inner = match connected {
        Some(inner) => inner,
        None => {
            let tcp = dial(target, options).await?;
            if target.tls {
                tls_connect(tcp, target, options, timeout, false).await?
            } else {
                Transport::Tcp(tcp)
            }
        }
    };
    let stream = WsStream::new(inner, BytesMut::new());
    let hs_timeout = options.handshake_timeout;
    tokio::time::timeout(
        hs_timeout,
        client_handshake(stream, target, headers, options),
    )
    .await
    .map_err(|_| Error::Timeout {
        what: "opening handshake",
        after: hs_timeout,
    })?
}

/// TLS over `tcp` for a `wss://` target (SNI, ALPN http/1.1, or `h2, http/1.1` when
/// `offer_h2`), within `timeout`.
#[cfg(feature = "rustls")]
pub(crate) async fn tls_connect(
    tcp: TcpStream,
    target: &Target,
    options: &ConnectOptions,
    timeout: Duration,
    offer_h2: bool,
) -> Result<Transport> {
    let mut config = match &options.tls {
        Some(c) => c.clone(),
        None => default_tls()?,
    };
    if offer_h2 {
        let mut with_h2 = (*config).clone();
        with_h2.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config = Arc::new(with_h2);
    }
    let name = rustls_pki_types::ServerName::try_from(target.host.clone())
        .map_err(|e| Error::Tls(format!("invalid server name {}: {e}", target.host)))?;
    let tls = tokio::time::timeout(
        timeout,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| Error::Timeout {
        what: "TLS handshake",
        after: timeout,
    })?
    .map_err(|e| Error::Tls(e.to_string()))?;
    Ok(Transport::ClientTls(Box::new(tls)))
}

/// The roots a `wss://` client trusts when given no TLS configuration.
#[cfg(feature = "rustls")]
fn default_tls() -> Result<Arc<ClientConfig>> {
    #[cfg(feature = "webpki-roots")]
    return crate::tls::client_config_webpki();
    #[cfg(all(not(feature = "webpki-roots"), feature = "native-roots"))]
    return crate::tls::client_config_native();
    #[cfg(not(any(feature = "webpki-roots", feature = "native-roots")))]
    return Err(Error::Tls(
        "no root certificates: build with feature `webpki-roots` or `native-roots`, or set ConnectOptions::tls".into(),
    ));
}

/// Without TLS support, a `wss://` URL is refused with what to enable.
#[cfg(not(feature = "rustls"))]
pub(crate) async fn tls_connect(
    _tcp: TcpStream,
    _target: &Target,
    _options: &ConnectOptions,
    _timeout: Duration,
    _offer_h2: bool,
) -> Result<Transport> {
    Err(Error::Tls(
        "wss:// needs TLS: build wsx with feature `rustls`".into(),
    ))
}

async fn client_handshake(
    mut stream: WsStream,
    target: &Target,
    headers: &HeaderMap,
    options: &ConnectOptions,
) -> Result<Attempt> {
    let mut headers = headers.clone();
    crate::cookies::add_request_cookies(options, &target.url, &mut headers);
    let request = request_for(target, headers, options);
    let key = request.key.clone();
    request.validate()?;
    let mut out = Vec::with_capacity(256);
    request.encode(&mut out);
    write_all(&mut stream, &out).await?;

    let mut buf = BytesMut::with_capacity(1024);
    let end = read_head(&mut stream, &mut buf, &options.handshake_limits).await?;
    let head = buf.split_to(end);
    let response = handshake::parse_response(&head, &options.handshake_limits)?;
    crate::cookies::store_response_cookies(options, &target.url, response.headers());
    if redirect::is_redirect(response.status()) {
        return Ok(Attempt::Redirect(response));
    }
    let checked = handshake::check_response(&response, &key, &options.protocols)?;
    let (deflate, extensions) = negotiate_extensions(options, &checked.extensions)?;
    // Whatever followed the head is WebSocket data: replay it first.
    Ok(Attempt::Done(Connected {
        stream: WsStream::new(stream.into_inner(), buf),
        response,
        protocol: checked.protocol,
        deflate,
        extensions,
    }))
}

/// The upgrade request for `target` with `headers` (and a fresh key) as `options` ask.
pub(crate) fn request_for(
    target: &Target,
    headers: HeaderMap,
    options: &ConnectOptions,
) -> ClientRequest {
    let mut path = target.url.path().to_owned();
    if let Some(q) = target.url.query() {
        path.push('?');
        path.push_str(q);
    }
    ClientRequest {
        host: target.host_header.clone(),
        path_and_query: path,
        key: handshake::encode_key(rand::random::<[u8; 16]>()),
        origin: options.origin.clone(),
        protocols: options.protocols.clone(),
        extensions: options
            .deflate
            .as_ref()
            .filter(|_| crate::proto::deflate::AVAILABLE)
            .map(DeflateConfig::client_offer),
        headers,
    }
}

/// The compression the server's `Sec-WebSocket-Extensions` values enable (checked against the
/// offer), and those values joined.
pub(crate) fn negotiate_extensions(
    options: &ConnectOptions,
    values: &[String],
) -> Result<(Option<DeflateParams>, String)> {
    let deflate = match &options.deflate {
        Some(config) => config.client_accept(values.iter().map(String::as_str))?,
        None if values.iter().any(|v| !v.trim().is_empty()) => {
            return Err(HandshakeError::Malformed(format!(
                "the server enabled an extension that was not offered: {}",
                values.join(", ")
            ))
            .into());
        }
        None => None,
    };
    Ok((deflate, values.join(", ")))
}

impl Socket {
    /// Starts connecting to `url` and returns at once, in the CONNECTING state; the `open` event
    /// (or `error` then `close`) follows. Must be called inside a tokio runtime.
    pub fn connect(url: &str, options: ConnectOptions) -> Socket {
        let origin = options.origin.clone().unwrap_or_default();
        let socket =
            Socket::new_connecting(Role::Client, url.to_owned(), origin, options.socket.clone());
        let task_socket = socket.clone();
        let url = url.to_owned();
        tokio::spawn(async move {
            match handshake(&url, &options).await {
                Ok(conn) => {
                    let negotiated = negotiated(&conn, &options);
                    let connection = task_socket.start(conn.stream, negotiated);
                    // The connection runs in this task; this handle must not keep the socket
                    // open once the application's handles are gone.
                    drop(task_socket);
                    connection.await;
                }
                Err(e) => task_socket.fail_connect(e.to_string()),
            }
        });
        socket
    }

    /// Connects and returns once the socket is OPEN, or with the error that stopped it.
    ///
    /// Cancel safety: dropping the future abandons the attempt and closes its TCP connection.
    pub async fn open(url: &str, options: ConnectOptions) -> Result<Socket> {
        let conn = handshake(url, &options).await?;
        let origin = options.origin.clone().unwrap_or_default();
        let negotiated = negotiated(&conn, &options);
        Ok(Socket::from_stream(
            conn.stream,
            Role::Client,
            negotiated,
            options.socket,
            url,
            origin,
        ))
    }
}

impl OwnedSocket {
    /// Connects like [`Socket::open`], for a client served from one task (see
    /// [`OwnedSocket`]).
    ///
    /// Cancel safety: dropping the future abandons the attempt and closes its TCP connection.
    pub async fn open(url: &str, options: ConnectOptions) -> Result<OwnedSocket> {
        let conn = handshake(url, &options).await?;
        let negotiated = negotiated(&conn, &options);
        Ok(OwnedSocket::new(
            conn.stream,
            Role::Client,
            negotiated,
            &options.socket,
        ))
    }
}

fn negotiated(conn: &Connected, options: &ConnectOptions) -> Negotiated {
    Negotiated {
        protocol: conn.protocol.clone(),
        deflate: conn.deflate,
        deflate_config: options.deflate.clone().unwrap_or_default(),
        extensions: conn.extensions.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_target("ws://example.com/chat?x=1").unwrap();
        assert_eq!(
            (t.tls, t.port, t.host_header.as_str()),
            (false, 80, "example.com")
        );
        let t = parse_target("wss://example.com:8443/").unwrap();
        assert_eq!(
            (t.tls, t.port, t.host_header.as_str()),
            (true, 8443, "example.com:8443")
        );
        let t = parse_target("ws://[::1]:9000/x").unwrap();
        assert_eq!(
            (t.host.as_str(), t.host_header.as_str()),
            ("::1", "[::1]:9000")
        );
        assert!(matches!(parse_target("http://x/"), Err(Error::UnknownProtocol(s)) if s == "http"));
        assert!(matches!(
            parse_target("not a url"),
            Err(Error::InvalidUrl(_))
        ));
    }
}

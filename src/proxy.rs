//! [`Proxy`]: the client's way out of a company network. An HTTP proxy opens a tunnel with
//! `CONNECT host:port` (Basic `Proxy-Authorization` when the URL has credentials); a SOCKS5
//! proxy (feature `socks`, through `tokio-socks`) does the same with or without user/password,
//! resolving the target itself for `socks5h://`. TLS for `wss://` runs end to end inside the
//! tunnel, so the proxy sees only ciphertext.
//!
//! Credentials go to the proxy and nowhere else: `Debug`, `Display` and every error name the
//! proxy by scheme, host and port only.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use bytes::BytesMut;
use http::header::{HeaderMap, HeaderValue, HOST, PROXY_AUTHORIZATION};
use tokio::net::TcpStream;
use url::Url;

use crate::error::{Error, Result};
use crate::http_io::{read_head, write_all};
use crate::proto::handshake::{self, HandshakeError, HandshakeLimits};

/// Why going through a proxy failed. Every variant names the proxy (without credentials).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The proxy URL cannot be used (the text says why).
    #[error("invalid proxy URL: {0}")]
    InvalidUrl(String),
    /// The proxy could not be reached.
    #[error("cannot reach proxy {proxy}: {source}")]
    Unreachable {
        /// The proxy.
        proxy: String,
        /// What the connection attempt gave.
        source: std::io::Error,
    },
    /// The proxy refused to open the tunnel: its HTTP status and reason, or its SOCKS reply.
    #[error("proxy {proxy} refused the tunnel to {target}: {answer}")]
    Refused {
        /// The proxy.
        proxy: String,
        /// The `host:port` asked for.
        target: String,
        /// What the proxy answered (`407 Proxy Authentication Required`, `Connection refused`).
        answer: String,
    },
    /// The proxy closed the connection (or reset it) before answering.
    #[error("proxy {proxy} closed the connection before opening the tunnel")]
    Closed {
        /// The proxy.
        proxy: String,
    },
    /// The proxy took longer than the connect timeout.
    #[error("proxy {proxy} did not open the tunnel within {after:?}")]
    Timeout {
        /// The proxy.
        proxy: String,
        /// The connect timeout in force.
        after: Duration,
    },
    /// The proxy's answer is not what its protocol allows.
    #[error("proxy {proxy} sent an invalid answer: {detail}")]
    Malformed {
        /// The proxy.
        proxy: String,
        /// What was wrong.
        detail: String,
    },
    /// This build cannot use the proxy (a SOCKS proxy without feature `socks`).
    #[error("proxy {proxy}: {detail}")]
    Unsupported {
        /// The proxy.
        proxy: String,
        /// What to enable.
        detail: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Http,
    /// `remote_dns`: `socks5h://`, the proxy resolves the target's name.
    Socks5 {
        remote_dns: bool,
    },
}

/// A proxy for [`crate::ConnectOptions::proxy`]: `http://[user:password@]host[:port]`
/// (port 80 by default; no scheme means `http://`, as in curl), `socks5://` or `socks5h://`
/// (port 1080). Credentials are percent-decoded and never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: Kind,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("url", &self.to_string())
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The proxy's URL without credentials.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            Kind::Http => "http",
            Kind::Socks5 { remote_dns: false } => "socks5",
            Kind::Socks5 { remote_dns: true } => "socks5h",
        };
        write!(f, "{scheme}://{}", authority(&self.host, self.port))
    }
}

impl Proxy {
    /// Parses a proxy URL (see [`Proxy`]). The error never repeats the credentials.
    pub fn parse(url: &str) -> Result<Proxy> {
        let with_scheme;
        let url = if url.contains("://") {
            url
        } else {
            with_scheme = format!("http://{url}");
            &with_scheme
        };
        // The parser's message does not quote the input, so credentials cannot leak through it.
        let parsed = Url::parse(url).map_err(|e| ProxyError::InvalidUrl(e.to_string()))?;
        let (kind, default_port) = match parsed.scheme() {
            "http" => (Kind::Http, 80),
            "socks5" => (Kind::Socks5 { remote_dns: false }, 1080),
            "socks5h" => (Kind::Socks5 { remote_dns: true }, 1080),
            other => {
                return Err(ProxyError::InvalidUrl(format!(
                    "scheme `{other}` is not supported: use http://, socks5:// or socks5h://"
                ))
                .into())
            }
        };
        let Some(host) = crate::connect::url_host(&parsed) else {
            return Err(ProxyError::InvalidUrl("no host".into()).into());
        };
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| {
                Error::from(ProxyError::InvalidUrl(
                    "the credentials are not valid percent-encoded UTF-8".into(),
                ))
            })
        };
        let credentials = if parsed.username().is_empty() && parsed.password().is_none() {
            None
        } else {
            Some((
                decode(parsed.username())?,
                decode(parsed.password().unwrap_or(""))?,
            ))
        };
        Ok(Proxy {
            kind,
            host,
            port: parsed.port().unwrap_or(default_port),
            credentials,
        })
    }

    /// Whether the proxy URL carried credentials.
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// The proxy curl would use for `target` (a `ws://` or `wss://` URL) from the environment:
    /// `wss://` takes `https_proxy`/`HTTPS_PROXY`, `ws://` takes `http_proxy`/`HTTP_PROXY`,
    /// either falls back to `all_proxy`/`ALL_PROXY` (lowercase first; an empty value counts as
    /// unset), and `no_proxy`/`NO_PROXY` exempts hosts (see [`Proxy::from_env_with`]).
    ///
    /// The uppercase `HTTP_PROXY` is read too (curl ignores it, because CGI servers put a
    /// request's `Proxy:` header there); this is an opt-in for clients, not for CGI scripts.
    pub fn from_env(target: &str) -> Result<Option<Proxy>> {
        Proxy::from_env_with(target, |name| std::env::var(name).ok())
    }

    /// [`Proxy::from_env`] with the variables read through `var`. `NO_PROXY` is a
    /// comma-separated list: `*` exempts every host; an entry exempts the host equal to it and
    /// its subdomains (a leading `.` is ignored, so `example.com` and `.example.com` both
    /// exempt `example.com` and `a.example.com`); an entry with `:port` only that port; IP
    /// addresses match exactly.
    pub fn from_env_with(
        target: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Proxy>> {
        let url = Url::parse(target).map_err(|e| Error::InvalidUrl(format!("{target}: {e}")))?;
        let get = |lower: &str| {
            [lower.to_owned(), lower.to_ascii_uppercase()]
                .iter()
                .find_map(|n| var(n).filter(|v| !v.trim().is_empty()))
        };
        let scheme_var = match url.scheme() {
            "wss" | "https" => "https_proxy",
            _ => "http_proxy",
        };
        let Some(value) = get(scheme_var).or_else(|| get("all_proxy")) else {
            return Ok(None);
        };
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(match url.scheme() {
            "wss" => 443,
            _ => 80,
        });
        if let Some(no_proxy) = get("no_proxy") {
            if no_proxy_matches(&no_proxy, host, port) {
                return Ok(None);
            }
        }
        Proxy::parse(value.trim()).map(Some)
    }

    /// Opens a TCP connection to `host:port` through this proxy, within `timeout` in all.
    pub(crate) async fn tunnel(
        &self,
        host: &str,
        port: u16,
        limits: &HandshakeLimits,
        timeout: Duration,
    ) -> Result<TcpStream> {
        let work = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|source| ProxyError::Unreachable {
                    proxy: self.to_string(),
                    source,
                })?;
            tcp.set_nodelay(true)?;
            match self.kind {
                Kind::Http => self.http_connect(tcp, host, port, limits).await,
                Kind::Socks5 { remote_dns } => self.socks5(tcp, host, port, remote_dns).await,
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| ProxyError::Timeout {
                proxy: self.to_string(),
                after: timeout,
            })?
    }

    /// `CONNECT host:port`, then a 2xx answer with nothing behind it.
    async fn http_connect(
        &self,
        mut tcp: TcpStream,
        host: &str,
        port: u16,
        limits: &HandshakeLimits,
    ) -> Result<TcpStream> {
        let authority = authority(host, port);
        let mut headers = HeaderMap::new();
        let invalid =
            |_| ProxyError::InvalidUrl(format!("target `{authority}` is not a valid authority"));
        headers.insert(HOST, HeaderValue::from_str(&authority).map_err(invalid)?);
        if let Some((user, password)) = &self.credentials {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let mut value = HeaderValue::from_str(&format!("Basic {token}"))
                .map_err(|_| ProxyError::InvalidUrl("unusable credentials".into()))?;
            value.set_sensitive(true);
            headers.insert(PROXY_AUTHORIZATION, value);
        }
        let mut out = Vec::with_capacity(128);
        handshake::write_request("CONNECT", &authority, &headers, &mut out);
        let closed = || ProxyError::Closed {
            proxy: self.to_string(),
        };
        write_all(&mut tcp, &out).await.map_err(|_| closed())?;
        let mut buf = BytesMut::with_capacity(512);
        let end = match read_head(&mut tcp, &mut buf, limits).await {
            Ok(end) => end,
            Err(Error::Io(_)) => return Err(closed().into()),
            Err(Error::Handshake(HandshakeError::Malformed(_))) if buf.is_empty() => {
                return Err(closed().into())
            }
            Err(e) => return Err(self.malformed(e.to_string())),
        };
        let response = handshake::parse_response(&buf[..end], limits)
            .map_err(|e| self.malformed(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let reason = handshake::reason_phrase(&response);
            return Err(ProxyError::Refused {
                proxy: self.to_string(),
                target: authority,
                answer: format!("{} {reason}", status.as_u16()),
            }
            .into());
        }
        if buf.len() > end {
            // The server of a WebSocket speaks only after our request: anything here came from
            // the proxy, and would be taken for the server's answer.
            return Err(self.malformed("bytes after the CONNECT answer".into()));
        }
        Ok(tcp)
    }

    fn malformed(&self, detail: String) -> Error {
        ProxyError::Malformed {
            proxy: self.to_string(),
            detail,
        }
        .into()
    }

    #[cfg(feature = "socks")]
    async fn socks5(
        &self,
        tcp: TcpStream,
        host: &str,
        port: u16,
        remote_dns: bool,
    ) -> Result<TcpStream> {
        use tokio_socks::tcp::Socks5Stream;
        use tokio_socks::TargetAddr;

        let target = if remote_dns {
            TargetAddr::Domain(host.into(), port)
        } else {
            // socks5://: resolve here, as curl does.
            let addr = tokio::net::lookup_host((host, port))
                .await?
                .next()
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{host} has no address"),
                    )
                })?;
            TargetAddr::Ip(addr)
        };
        let result = match &self.credentials {
            Some((user, password)) => {
                Socks5Stream::connect_with_password_and_socket(tcp, target, user, password).await
            }
            None => Socks5Stream::connect_with_socket(tcp, target).await,
        };
        match result {
            Ok(stream) => Ok(stream.into_inner()),
            Err(tokio_socks::Error::Io(_)) => Err(ProxyError::Closed {
                proxy: self.to_string(),
            }
            .into()),
            Err(
                e @ (tokio_socks::Error::InvalidResponseVersion
                | tokio_socks::Error::InvalidReservedByte
                | tokio_socks::Error::UnknownAddressType
                | tokio_socks::Error::UnknownAuthMethod),
            ) => Err(self.malformed(e.to_string())),
            Err(e) => Err(ProxyError::Refused {
                proxy: self.to_string(),
                target: authority(host, port),
                answer: e.to_string(),
            }
            .into()),
        }
    }

    #[cfg(not(feature = "socks"))]
    async fn socks5(
        &self,
        _tcp: TcpStream,
        _host: &str,
        _port: u16,
        _remote_dns: bool,
    ) -> Result<TcpStream> {
        Err(ProxyError::Unsupported {
            proxy: self.to_string(),
            detail: "SOCKS5 needs wsx built with feature `socks`".into(),
        }
        .into())
    }
}

/// `host:port`, with brackets around an IPv6 address.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Whether `NO_PROXY` (see [`Proxy::from_env_with`]) exempts `host:port`.
fn no_proxy_matches(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    no_proxy.split(',').map(str::trim).any(|entry| {
        if entry == "*" {
            return true;
        }
        // `name:port` (an IPv6 entry is bracketed when it has a port).
        let (name, entry_port) = match entry.rsplit_once(':') {
            Some((n, p)) if !n.contains(':') || n.ends_with(']') => (n, p.parse::<u16>().ok()),
            _ => (entry, None),
        };
        if entry_port.is_some_and(|p| p != port) {
            return false;
        }
        let name = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_start_matches('.');
        if name.is_empty() {
            return false;
        }
        host.eq_ignore_ascii_case(name)
            || (host.len() > name.len()
                && host.as_bytes()[host.len() - name.len() - 1] == b'.'
                && host[host.len() - name.len()..].eq_ignore_ascii_case(name))
    })
}

/// Decodes `%XX` escapes (URL user info); `None` when the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes_ports_and_credentials_and_never_shows_them() {
        let p = Proxy::parse("http://us%40er:p%3Aw@127.0.0.1:3128").unwrap();
        assert_eq!(p.to_string(), "http://127.0.0.1:3128");
        assert_eq!(p.credentials, Some(("us@er".to_owned(), "p:w".to_owned())));
        let debug = format!("{p:?}");
        assert!(
            !debug.contains("p:w") && !debug.contains("p%3Aw"),
            "{debug}"
        );
        assert!(debug.contains("<redacted>"));
        assert_eq!(
            Proxy::parse("proxy.local").unwrap().to_string(),
            "http://proxy.local:80"
        );
        assert_eq!(
            Proxy::parse("socks5h://[::1]").unwrap().to_string(),
            "socks5h://[::1]:1080"
        );
        assert_eq!(
            Proxy::parse("socks5://h:9").unwrap().kind,
            Kind::Socks5 { remote_dns: false }
        );
        let err = Proxy::parse("ftp://user:secret@h").unwrap_err().to_string();
        assert!(err.contains("ftp") && !err.contains("secret"), "{err}");
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn chosen(target: &str, vars: &[(&str, &str)]) -> Option<String> {
        Proxy::from_env_with(target, env(vars))
            .unwrap()
            .map(|p| p.to_string())
    }

    #[test]
    fn environment_is_read_like_curl() {
        let vars = [
            ("http_proxy", "http://plain:1"),
            ("HTTPS_PROXY", "http://secure:2"),
            ("ALL_PROXY", "socks5h://all:3"),
        ];
        assert_eq!(
            chosen("ws://a.test/", &vars).as_deref(),
            Some("http://plain:1")
        );
        assert_eq!(
            chosen("wss://a.test/", &vars).as_deref(),
            Some("http://secure:2")
        );
        assert_eq!(
            chosen("wss://a.test/", &[("all_proxy", "socks5h://all:3")]).as_deref(),
            Some("socks5h://all:3")
        );
        // Lowercase wins; an empty value counts as unset.
        assert_eq!(
            chosen(
                "ws://a/",
                &[("http_proxy", "low:1"), ("HTTP_PROXY", "up:2")]
            )
            .as_deref(),
            Some("http://low:1")
        );
        assert_eq!(
            chosen("ws://a/", &[("http_proxy", " "), ("HTTP_PROXY", "up:2")]).as_deref(),
            Some("http://up:2")
        );
        assert_eq!(chosen("ws://a/", &[]), None);
    }

    #[test]
    fn no_proxy_rules() {
        let with = |no: &'static str| [("all_proxy", "http://p:1"), ("NO_PROXY", no)];
        assert_eq!(chosen("ws://a.test/", &with("*")), None);
        assert_eq!(chosen("ws://a.test/", &with("x.test, a.test")), None);
        assert_eq!(chosen("ws://deep.a.test/", &with(".a.test")), None);
        assert_eq!(chosen("ws://deep.a.test/", &with("a.test")), None);
        assert!(chosen("ws://nota.test/", &with("a.test")).is_some());
        assert_eq!(chosen("ws://127.0.0.1:9/", &with("127.0.0.1")), None);
        assert_eq!(chosen("ws://127.0.0.1:9/", &with("127.0.0.1:9")), None);
        assert!(chosen("ws://127.0.0.1:9/", &with("127.0.0.1:10")).is_some());
        assert_eq!(chosen("wss://[::1]/", &with("::1")), None);
        assert_eq!(chosen("wss://[::1]:443/", &with("[::1]:443")), None);
        assert!(chosen("ws://a.test/", &with("")).is_some());
    }

    #[test]
    fn authorities() {
        assert_eq!(authority("::1", 80), "[::1]:80");
        assert_eq!(authority("a.test", 443), "a.test:443");
    }
}

//! [`CookieJar`] (feature `cookies`): cookies for client handshakes, as fibjs's `httpClient`
//! option gives its WebSocket. The jar is `cookie_store`'s (domain, path, expiry and `Secure`
//! rules); `ws://` counts as `http://` and `wss://` as `https://`, so a `Secure` cookie goes
//! only over `wss://`. Without the feature the hooks below do nothing.

use http::HeaderMap;
use url::Url;

use crate::connect::ConnectOptions;

#[cfg(feature = "cookies")]
pub use jar::CookieJar;

#[cfg(feature = "cookies")]
mod jar {
    use std::sync::{Mutex, MutexGuard};

    use http::header::SET_COOKIE;
    use http::HeaderMap;
    use url::Url;

    /// A cookie jar shared by handshakes ([`crate::ConnectOptions::cookie_jar`]): cookies
    /// that handshake responses set (and those the application stores from its own HTTP
    /// responses) are sent on later handshakes to the same site.
    #[derive(Debug, Default)]
    pub struct CookieJar {
        store: Mutex<cookie_store::CookieStore>,
    }

    /// `ws`/`wss` as the `http`/`https` URL the cookie rules are written for.
    pub(super) fn as_http(url: &Url) -> Url {
        let mut url = url.clone();
        let scheme = match url.scheme() {
            "wss" | "https" => "https",
            _ => "http",
        };
        let _ = url.set_scheme(scheme);
        url
    }

    impl CookieJar {
        /// An empty jar.
        pub fn new() -> Self {
            Self::default()
        }

        fn lock(&self) -> MutexGuard<'_, cookie_store::CookieStore> {
            self.store.lock().unwrap_or_else(|p| p.into_inner())
        }

        /// Stores one `Set-Cookie` value received from `url` (any of `ws`, `wss`, `http`,
        /// `https`); returns whether it was accepted (a malformed cookie, or one for another
        /// domain, is not).
        pub fn store(&self, url: &str, set_cookie: &str) -> bool {
            let Ok(url) = Url::parse(url) else {
                return false;
            };
            self.lock().parse(set_cookie, &as_http(&url)).is_ok()
        }

        /// Stores every `Set-Cookie` of a response received from `url`.
        pub(crate) fn store_headers(&self, url: &Url, headers: &HeaderMap) {
            let url = as_http(url);
            let mut store = self.lock();
            for value in headers.get_all(SET_COOKIE) {
                if let Ok(v) = value.to_str() {
                    let _ = store.parse(v, &url);
                }
            }
        }

        /// The `Cookie` header value for a request to `url`, if any cookie applies.
        pub fn cookie_header(&self, url: &str) -> Option<String> {
            Url::parse(url).ok().and_then(|u| self.header_for(&u))
        }

        pub(crate) fn header_for(&self, url: &Url) -> Option<String> {
            let url = as_http(url);
            let store = self.lock();
            let value = store
                .get_request_values(&url)
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ");
            (!value.is_empty()).then_some(value)
        }
    }
}

/// Adds the jar's cookies for `url` to the request headers (after any `Cookie` header the
/// application set itself).
pub(crate) fn add_request_cookies(options: &ConnectOptions, url: &Url, headers: &mut HeaderMap) {
    #[cfg(feature = "cookies")]
    if let Some(value) = options
        .cookie_jar
        .as_ref()
        .and_then(|jar| jar.header_for(url))
    {
        use http::header::{HeaderValue, COOKIE};
        let joined = match headers.get(COOKIE).and_then(|v| v.to_str().ok()) {
            Some(own) if !own.is_empty() => format!("{own}; {value}"),
            _ => value,
        };
        if let Ok(v) = HeaderValue::from_str(&joined) {
            headers.insert(COOKIE, v);
        }
    }
    #[cfg(not(feature = "cookies"))]
    let _ = (options, url, headers);
}

/// Stores the cookies a handshake response from `url` set.
pub(crate) fn store_response_cookies(options: &ConnectOptions, url: &Url, headers: &HeaderMap) {
    #[cfg(feature = "cookies")]
    if let Some(jar) = &options.cookie_jar {
        jar.store_headers(url, headers);
    }
    #[cfg(not(feature = "cookies"))]
    let _ = (options, url, headers);
}

#[cfg(all(test, feature = "cookies"))]
mod tests {
    use super::*;

    #[test]
    fn cookies_follow_the_site_and_secure_ones_only_tls() {
        let jar = CookieJar::new();
        assert!(jar.store("https://a.test/login", "sid=1; Path=/"));
        assert!(jar.store("ws://a.test/", "plain=2"));
        assert!(jar.store("wss://a.test/", "sec=3; Secure"));
        assert!(!jar.store("ws://a.test/", "evil=1; Domain=b.test"));
        let mut got = jar.cookie_header("wss://a.test/chat").unwrap();
        for c in ["sid=1", "plain=2", "sec=3"] {
            assert!(got.contains(c), "{got}");
        }
        got = jar.cookie_header("ws://a.test/chat").unwrap();
        assert!(!got.contains("sec=3"), "Secure only over wss: {got}");
        assert_eq!(jar.cookie_header("ws://b.test/"), None);
    }
}

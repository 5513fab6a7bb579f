//! Redirects of the opening handshake: whether a response is one, where it points, whether it
//! may be followed (a bounded count; `ws://` to `wss://` yes, `wss://` to `ws://` never), and
//! which request headers must not follow it to another origin.

use http::header::{HeaderMap, AUTHORIZATION, COOKIE, LOCATION, PROXY_AUTHORIZATION};
use http::StatusCode;
use url::Url;

/// Why a redirect of the opening handshake was not followed.
#[derive(Debug, thiserror::Error)]
pub enum RedirectError {
    /// The server redirected and following is off ([`crate::ConnectOptions::max_redirects`]
    /// is 0).
    #[error("the server redirected the handshake ({status}) to {location}; set ConnectOptions::max_redirects to follow redirects")]
    NotFollowed {
        /// The 3xx status.
        status: u16,
        /// Where it pointed (the `Location` header, resolved against the request URL).
        location: String,
    },
    /// More redirects than [`crate::ConnectOptions::max_redirects`].
    #[error("more than {limit} redirects; the last one pointed to {location}")]
    TooMany {
        /// The limit in force.
        limit: usize,
        /// Where the last redirect pointed.
        location: String,
    },
    /// A `wss://` handshake was redirected to a URL without TLS.
    #[error("refused a redirect from wss:// to {location}: it would drop TLS")]
    Downgrade {
        /// Where it pointed.
        location: String,
    },
    /// The redirect has no `Location`, or one that is no ws/wss/http/https URL.
    #[error("the server redirected the handshake ({status}) without a usable Location: {detail}")]
    BadLocation {
        /// The 3xx status.
        status: u16,
        /// What was wrong.
        detail: String,
    },
}

/// Whether `status` is a redirect this client follows (301, 302, 307, 308).
pub(crate) fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 307 | 308)
}

/// Where the redirect `response` to a request for `from` points, as a `ws://` or `wss://` URL
/// (`http`/`https` become `ws`/`wss`), if it may be followed as hop number `hop` (1 for the
/// first) under `limit`.
pub(crate) fn next_url(
    from: &Url,
    response: &http::Response<()>,
    hop: usize,
    limit: usize,
) -> Result<Url, RedirectError> {
    let status = response.status().as_u16();
    let bad = |detail: &str| RedirectError::BadLocation {
        status,
        detail: detail.to_owned(),
    };
    let location = response
        .headers()
        .get(LOCATION)
        .ok_or_else(|| bad("no Location header"))?
        .to_str()
        .map_err(|_| bad("the Location header is not ASCII"))?;
    let mut next = from
        .join(location)
        .map_err(|e| bad(&format!("`{location}`: {e}")))?;
    let scheme = match next.scheme() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => {
            return Err(bad(&format!(
                "scheme `{other}` is not ws, wss, http or https"
            )))
        }
    };
    // ws/wss/http/https are all "special" schemes: switching among them always succeeds.
    let _ = next.set_scheme(scheme);
    next.set_fragment(None);
    let location = next.to_string();
    if limit == 0 {
        return Err(RedirectError::NotFollowed { status, location });
    }
    if hop > limit {
        return Err(RedirectError::TooMany { limit, location });
    }
    if from.scheme() == "wss" && scheme == "ws" {
        return Err(RedirectError::Downgrade { location });
    }
    Ok(next)
}

/// Whether `a` and `b` share scheme, host and port.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Removes the request headers that carry credentials (`Authorization`, `Cookie`,
/// `Proxy-Authorization`): they must not follow a redirect to another origin. Cookies from a
/// [`crate::CookieJar`] are chosen anew for each URL, by the jar's own rules.
pub(crate) fn strip_credentials(headers: &mut HeaderMap) {
    for name in [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(status: u16, location: Option<&str>) -> http::Response<()> {
        let mut b = http::Response::builder().status(status);
        if let Some(l) = location {
            b = b.header(LOCATION, l);
        }
        b.body(()).unwrap()
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn locations_resolve_and_map_to_websocket_schemes() {
        let from = url("ws://a.test/chat?x=1");
        let to = |loc| next_url(&from, &redirect(302, Some(loc)), 1, 5).map(|u| u.to_string());
        assert_eq!(to("/other").unwrap(), "ws://a.test/other");
        assert_eq!(to("wss://b.test:8443/x").unwrap(), "wss://b.test:8443/x");
        assert_eq!(to("https://b.test/x#frag").unwrap(), "wss://b.test/x");
        assert_eq!(to("http://b.test/").unwrap(), "ws://b.test/");
        assert!(matches!(
            to("ftp://b.test/"),
            Err(RedirectError::BadLocation { status: 302, .. })
        ));
        assert!(matches!(
            next_url(&from, &redirect(301, None), 1, 5),
            Err(RedirectError::BadLocation { .. })
        ));
    }

    #[test]
    fn limits_and_downgrades() {
        let from = url("wss://a.test/");
        let r = redirect(308, Some("ws://a.test/"));
        assert!(matches!(
            next_url(&from, &r, 1, 5),
            Err(RedirectError::Downgrade { location }) if location == "ws://a.test/"
        ));
        let r = redirect(307, Some("/next"));
        let err = next_url(&from, &r, 1, 0).unwrap_err();
        assert!(
            err.to_string().contains("wss://a.test/next"),
            "the error says where it pointed: {err}"
        );
        assert!(matches!(
            next_url(&from, &r, 3, 2),
            Err(RedirectError::TooMany { limit: 2, .. })
        ));
        assert!(next_url(&from, &r, 2, 2).is_ok());
        assert!(is_redirect(StatusCode::MOVED_PERMANENTLY));
        assert!(!is_redirect(StatusCode::NOT_MODIFIED));
    }

    #[test]
    fn origins_and_stripping() {
        assert!(same_origin(&url("ws://a.test/x"), &url("ws://a.test:80/y")));
        assert!(!same_origin(&url("ws://a.test/"), &url("wss://a.test/")));
        assert!(!same_origin(&url("ws://a.test/"), &url("ws://b.test/")));
        assert!(!same_origin(&url("ws://a.test/"), &url("ws://a.test:81/")));
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Bearer t".parse().unwrap());
        h.insert(COOKIE, "a=b".parse().unwrap());
        h.insert(PROXY_AUTHORIZATION, "Basic x".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_credentials(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }
}

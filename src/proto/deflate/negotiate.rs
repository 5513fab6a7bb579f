//! The permessage-deflate negotiation (RFC 7692 §5, §7.1): the client's offer, the server's
//! answer, the client's check of that answer.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::{clamp_bits, DeflateConfig, DeflateParams, MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use crate::proto::handshake::parse_elements;

/// The extension token of RFC 7692.
const EXTENSION_NAME: &str = "permessage-deflate";
const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

impl DeflateConfig {
    /// Client: the Sec-WebSocket-Extensions header value to offer, e.g.
    /// `"permessage-deflate; client_max_window_bits"`.
    pub fn client_offer(&self) -> String {
        let mut out = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            out.push_str("; ");
            out.push_str(SERVER_NO_CONTEXT_TAKEOVER);
        }
        if self.client_no_context_takeover {
            out.push_str("; ");
            out.push_str(CLIENT_NO_CONTEXT_TAKEOVER);
        }
        if let Some(bits) = self.server_max_window_bits {
            let _ = write!(out, "; {SERVER_MAX_WINDOW_BITS}={}", ask_bits(bits));
        }
        out.push_str("; ");
        out.push_str(CLIENT_MAX_WINDOW_BITS);
        if let Some(bits) = self.client_max_window_bits {
            let _ = write!(out, "={}", clamp_bits(bits));
        }
        out
    }

    /// Server: given every Sec-WebSocket-Extensions header value of the request (in order),
    /// picks the first acceptable permessage-deflate offer and returns the negotiated
    /// parameters with the response header value, or `None` when nothing is acceptable (or
    /// nothing was offered).
    ///
    /// An offer with a parameter we cannot honour is skipped and the next one tried (RFC 7692
    /// §5 fallbacks). A malformed offer — bad syntax, a duplicate or unknown parameter, a bad
    /// value such as window bits `7`, `16`, `08` or `abc` — is declined the same way rather
    /// than failing the handshake: RFC 7692 §7 says a server MUST decline such an offer, and a
    /// client whose offers we all decline still gets an uncompressed connection. Other
    /// extensions in the header are ignored.
    pub fn server_negotiate<'a>(
        &self,
        header_values: impl IntoIterator<Item = &'a str>,
    ) -> Option<(DeflateParams, String)> {
        if !super::AVAILABLE {
            return None;
        }
        for value in header_values {
            for element in parse_elements(value) {
                let Ok(element) = element else { continue };
                if !element.name.eq_ignore_ascii_case(EXTENSION_NAME) {
                    continue;
                }
                let Ok(offer) = PmdParams::interpret(&element.params, false) else {
                    continue;
                };
                if let Some(accepted) = self.accept_offer(&offer) {
                    return Some(accepted);
                }
            }
        }
        None
    }

    /// Builds the answer to one well-formed offer (every well-formed offer is acceptable,
    /// see the module docs on window bits 8).
    fn accept_offer(&self, offer: &PmdParams) -> Option<(DeflateParams, String)> {
        let mut response = String::from(EXTENSION_NAME);

        let server_no_context_takeover =
            offer.server_no_context_takeover || self.server_no_context_takeover;
        if server_no_context_takeover {
            response.push_str("; ");
            response.push_str(SERVER_NO_CONTEXT_TAKEOVER);
        }
        let client_no_context_takeover =
            offer.client_no_context_takeover || self.client_no_context_takeover;
        if client_no_context_takeover {
            response.push_str("; ");
            response.push_str(CLIENT_NO_CONTEXT_TAKEOVER);
        }

        // Our own compressor's window: the offer's limit (answered with the same or a smaller
        // value, §7.1.2.1) and our own; announcing our own limit unasked is allowed.
        let own = self.server_max_window_bits.map(clamp_bits);
        let server_bits = match (offer.server_max_window_bits, own) {
            (Some(asked), Some(own)) => Some(asked.min(own)),
            (Some(asked), None) => Some(asked),
            (None, own) => own,
        };
        if let Some(bits) = server_bits {
            let _ = write!(response, "; {SERVER_MAX_WINDOW_BITS}={bits}");
        }

        // The peer's window: we may only ask when the offer carried client_max_window_bits.
        let hint = offer.client_max_window_bits.flatten();
        let client_bits = match (offer.client_max_window_bits, self.client_max_window_bits) {
            (Some(_), Some(want)) => {
                let ask = ask_bits(want);
                let _ = write!(response, "; {CLIENT_MAX_WINDOW_BITS}={ask}");
                hint.map_or(ask, |hint| hint.min(ask))
            }
            _ => hint.unwrap_or(MAX_WINDOW_BITS),
        };

        let params = DeflateParams {
            server_no_context_takeover,
            client_no_context_takeover,
            server_max_window_bits: server_bits.unwrap_or(MAX_WINDOW_BITS),
            client_max_window_bits: client_bits,
        };
        Some((params, response))
    }

    /// Client: checks the server's Sec-WebSocket-Extensions response values against what
    /// [`client_offer`](Self::client_offer) offered.
    ///
    /// `Ok(None)`: the server did not enable permessage-deflate. `Err`: the answer is one the
    /// client must fail the connection for (RFC 7692 §7): an extension we did not offer, more
    /// than one permessage-deflate, bad syntax, an unknown or duplicate parameter, a missing or
    /// invalid value, a `server_max_window_bits` larger than the one we asked for.
    ///
    /// The server may add `server_no_context_takeover`, `client_no_context_takeover` and
    /// `server_max_window_bits` unasked (§7.1.1, §7.1.2.1), and always `client_max_window_bits`,
    /// which our offer always carries. If it omits a parameter we asked for, we accept the
    /// answer as it stands: our decompressor copes with any window and with context takeover.
    pub fn client_accept<'a>(
        &self,
        header_values: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<DeflateParams>, NegotiationError> {
        let mut accepted: Option<DeflateParams> = None;
        for value in header_values {
            for element in parse_elements(value) {
                let element = element.map_err(|reason| NegotiationError::Malformed {
                    header: value.to_owned(),
                    reason,
                })?;
                if !element.name.eq_ignore_ascii_case(EXTENSION_NAME) {
                    return Err(NegotiationError::UnknownExtension(element.name.to_owned()));
                }
                if accepted.is_some() {
                    return Err(NegotiationError::DuplicateExtension);
                }
                let answer = PmdParams::interpret(&element.params, true)?;
                let server_bits = match (answer.server_max_window_bits, self.server_max_window_bits)
                {
                    (Some(got), Some(asked)) if got > ask_bits(asked) => {
                        return Err(NegotiationError::WindowBitsTooLarge {
                            requested: ask_bits(asked),
                            got,
                        });
                    }
                    (got, _) => got.unwrap_or(MAX_WINDOW_BITS),
                };
                let limit = answer.client_max_window_bits.flatten();
                let own = self
                    .client_max_window_bits
                    .map_or(MAX_WINDOW_BITS, clamp_bits);
                accepted = Some(DeflateParams {
                    server_no_context_takeover: answer.server_no_context_takeover,
                    client_no_context_takeover: answer.client_no_context_takeover
                        || self.client_no_context_takeover,
                    server_max_window_bits: server_bits,
                    client_max_window_bits: limit.map_or(own, |limit| limit.min(own)),
                });
            }
        }
        Ok(accepted)
    }
}

/// Window bits we ask the *peer* for: never 8 (see the module docs).
fn ask_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS + 1, MAX_WINDOW_BITS)
}

/// Why a client fails the connection over the server's Sec-WebSocket-Extensions answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// The header does not follow the RFC 6455 §9.1 grammar.
    #[error("malformed Sec-WebSocket-Extensions header `{header}`: {reason}")]
    Malformed {
        /// The offending header value.
        header: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server enabled an extension the client never offered.
    #[error("the server enabled extension `{0}`, which the client did not offer")]
    UnknownExtension(String),
    /// The server enabled permessage-deflate more than once.
    #[error("the server enabled permessage-deflate more than once")]
    DuplicateExtension,
    /// A parameter RFC 7692 does not define.
    #[error("unknown permessage-deflate parameter `{0}`")]
    UnknownParameter(String),
    /// The same parameter given twice.
    #[error("permessage-deflate parameter `{0}` given more than once")]
    DuplicateParameter(String),
    /// A value on a parameter that takes none.
    #[error("permessage-deflate parameter `{0}` must not have a value")]
    UnexpectedValue(String),
    /// A parameter that needs a value came without one.
    #[error("permessage-deflate parameter `{0}` needs a value (8 to 15)")]
    MissingValue(String),
    /// Window bits that are not a decimal 8..=15 without leading zeros.
    #[error(
        "permessage-deflate parameter `{param}` must be a decimal integer from 8 to 15 \
         without leading zeros, got `{value}`"
    )]
    InvalidWindowBits {
        /// The parameter name.
        param: String,
        /// The value received.
        value: String,
    },
    /// The server announced a larger `server_max_window_bits` than the client asked for.
    #[error(
        "the server answered server_max_window_bits={got}, larger than the {requested} \
         the client asked for"
    )]
    WindowBitsTooLarge {
        /// What the client asked for.
        requested: u8,
        /// What the server answered.
        got: u8,
    },
}

/// The permessage-deflate parameters of one offer or answer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct PmdParams {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (only valid in an offer).
    client_max_window_bits: Option<Option<u8>>,
}

impl PmdParams {
    /// Validates the parameters of one element; `response` selects the server-answer rules
    /// (both window parameters need a value there).
    fn interpret(
        params: &[(&str, Option<Cow<'_, str>>)],
        response: bool,
    ) -> Result<PmdParams, NegotiationError> {
        let mut out = PmdParams::default();
        let mut seen = [false; 4];
        for (name, value) in params {
            let index = [
                SERVER_NO_CONTEXT_TAKEOVER,
                CLIENT_NO_CONTEXT_TAKEOVER,
                SERVER_MAX_WINDOW_BITS,
                CLIENT_MAX_WINDOW_BITS,
            ]
            .iter()
            .position(|known| known.eq_ignore_ascii_case(name))
            .ok_or_else(|| NegotiationError::UnknownParameter((*name).to_owned()))?;
            if std::mem::replace(&mut seen[index], true) {
                return Err(NegotiationError::DuplicateParameter((*name).to_owned()));
            }
            let value = value.as_deref();
            match index {
                0 | 1 => {
                    if value.is_some() {
                        return Err(NegotiationError::UnexpectedValue((*name).to_owned()));
                    }
                    if index == 0 {
                        out.server_no_context_takeover = true;
                    } else {
                        out.client_no_context_takeover = true;
                    }
                }
                _ => {
                    let bits = match value {
                        Some(value) => Some(parse_window_bits(name, value)?),
                        None if index == 2 || response => {
                            return Err(NegotiationError::MissingValue((*name).to_owned()));
                        }
                        None => None,
                    };
                    if index == 2 {
                        out.server_max_window_bits = bits;
                    } else {
                        out.client_max_window_bits = Some(bits);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// RFC 7692 §7.1.2: "a decimal integer value without leading zeroes between 8 to 15".
fn parse_window_bits(param: &str, value: &str) -> Result<u8, NegotiationError> {
    let invalid = || NegotiationError::InvalidWindowBits {
        param: param.to_owned(),
        value: value.to_owned(),
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 2 || bytes[0] == b'0' {
        return Err(invalid());
    }
    let bits = value.parse::<u8>().map_err(|_| invalid())?;
    if (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&bits) {
        Ok(bits)
    } else {
        Err(invalid())
    }
}

#[cfg(all(test, feature = "deflate"))]
mod tests {
    use super::super::test_support::*;
    use super::super::{Deflater, Inflater};
    use super::*;
    use crate::proto::Role;

    fn negotiate(config: &DeflateConfig, offer: &str) -> Option<(DeflateParams, String)> {
        config.server_negotiate([offer])
    }

    #[test]
    fn client_offer_default_and_full() {
        assert_eq!(
            DeflateConfig::default().client_offer(),
            "permessage-deflate; client_max_window_bits"
        );
        let config = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: Some(10),
            client_max_window_bits: Some(12),
            ..DeflateConfig::default()
        };
        assert_eq!(
            config.client_offer(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=12"
        );
    }

    #[test]
    fn client_offer_never_asks_for_8_and_clamps() {
        let config = DeflateConfig {
            server_max_window_bits: Some(8),
            client_max_window_bits: Some(30),
            ..DeflateConfig::default()
        };
        assert_eq!(
            config.client_offer(),
            "permessage-deflate; server_max_window_bits=9; client_max_window_bits=15"
        );
    }

    #[test]
    fn client_offer_is_accepted_by_our_server_and_roundtrips() {
        let client = DeflateConfig {
            client_no_context_takeover: true,
            server_max_window_bits: Some(11),
            ..DeflateConfig::default()
        };
        let server = DeflateConfig {
            client_max_window_bits: Some(10),
            ..DeflateConfig::default()
        };
        let (server_params, response) = server
            .server_negotiate([client.client_offer().as_str()])
            .unwrap();
        let client_params = client.client_accept([response.as_str()]).unwrap().unwrap();
        assert_eq!(server_params, client_params);
        assert_eq!(client_params, params(false, true, 11, 10));
    }

    #[test]
    fn server_nothing_offered() {
        let config = DeflateConfig::default();
        assert_eq!(config.server_negotiate(std::iter::empty()), None);
        assert_eq!(negotiate(&config, ""), None);
        assert_eq!(
            negotiate(&config, "x-webkit-deflate-frame, foo; bar=1"),
            None
        );
    }

    #[test]
    fn server_plain_offer() {
        let (p, r) = negotiate(&DeflateConfig::default(), "permessage-deflate").unwrap();
        assert_eq!(p, DeflateParams::default());
        assert_eq!(r, "permessage-deflate");
    }

    #[test]
    fn server_extension_name_and_params_case_insensitive() {
        let (p, r) = negotiate(
            &DeflateConfig::default(),
            "PerMessage-DEFLATE; Server_No_Context_Takeover",
        )
        .unwrap();
        assert!(p.server_no_context_takeover);
        assert_eq!(r, "permessage-deflate; server_no_context_takeover");
    }

    #[test]
    fn server_no_context_takeover_params() {
        let config = DeflateConfig::default();
        let (p, r) = negotiate(&config, "permessage-deflate; server_no_context_takeover").unwrap();
        assert_eq!(p, params(true, false, 15, 15));
        assert_eq!(r, "permessage-deflate; server_no_context_takeover");

        let (p, r) = negotiate(&config, "permessage-deflate; client_no_context_takeover").unwrap();
        assert_eq!(p, params(false, true, 15, 15));
        assert_eq!(r, "permessage-deflate; client_no_context_takeover");

        // Configured: announced even when not offered.
        let config = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        let (p, r) = negotiate(&config, "permessage-deflate").unwrap();
        assert_eq!(p, params(true, true, 15, 15));
        assert_eq!(
            r,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }

    #[test]
    fn server_max_window_bits_negotiation() {
        let config = DeflateConfig::default();
        let (p, r) = negotiate(&config, "permessage-deflate; server_max_window_bits=10").unwrap();
        assert_eq!(p.server_max_window_bits, 10);
        assert_eq!(r, "permessage-deflate; server_max_window_bits=10");

        // Our own limit is smaller: answer the smaller one.
        let small = DeflateConfig {
            server_max_window_bits: Some(9),
            ..DeflateConfig::default()
        };
        let (p, r) = negotiate(&small, "permessage-deflate; server_max_window_bits=12").unwrap();
        assert_eq!(p.server_max_window_bits, 9);
        assert_eq!(r, "permessage-deflate; server_max_window_bits=9");

        // Our own limit is announced unasked.
        let (p, r) = negotiate(&small, "permessage-deflate").unwrap();
        assert_eq!(p.server_max_window_bits, 9);
        assert_eq!(r, "permessage-deflate; server_max_window_bits=9");

        // The offer's smaller value wins over ours.
        let (p, _) = negotiate(&small, "permessage-deflate; server_max_window_bits=8").unwrap();
        assert_eq!(p.server_max_window_bits, 8);
    }

    #[test]
    fn server_accepts_window_8_with_stored_blocks() {
        let (p, r) = negotiate(
            &DeflateConfig::default(),
            "permessage-deflate; server_max_window_bits=8",
        )
        .unwrap();
        assert_eq!(r, "permessage-deflate; server_max_window_bits=8");
        let mut deflater = Deflater::new(p, Role::Server, 6, 8);
        assert!(deflater.is_stored_only());
        let payload = b"hello hello hello hello hello hello".repeat(10);
        let out = deflate(&mut deflater, &payload);
        // Stored: the payload appears verbatim, no zlib stream was created.
        assert!(out.windows(payload.len()).any(|w| w == payload.as_slice()));
        assert_eq!(deflater.memory_usage(), 0);
        let mut inflater = Inflater::new(p, Role::Client);
        assert_eq!(inflate_all(&mut inflater, &out), payload);
    }

    #[test]
    fn server_client_max_window_bits() {
        // The client allows a limit, we ask for one.
        let ask = DeflateConfig {
            client_max_window_bits: Some(10),
            ..DeflateConfig::default()
        };
        let (p, r) = negotiate(&ask, "permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(p.client_max_window_bits, 10);
        assert_eq!(r, "permessage-deflate; client_max_window_bits=10");

        // The client did not allow it: we must not ask.
        let (p, r) = negotiate(&ask, "permessage-deflate").unwrap();
        assert_eq!(p.client_max_window_bits, 15);
        assert_eq!(r, "permessage-deflate");

        // A hint without our asking: recorded, not answered.
        let (p, r) = negotiate(
            &DeflateConfig::default(),
            "permessage-deflate; client_max_window_bits=12",
        )
        .unwrap();
        assert_eq!(p.client_max_window_bits, 12);
        assert_eq!(r, "permessage-deflate");

        // Hint smaller than our ask.
        let (p, r) = negotiate(&ask, "permessage-deflate; client_max_window_bits=9").unwrap();
        assert_eq!(p.client_max_window_bits, 9);
        assert_eq!(r, "permessage-deflate; client_max_window_bits=10");

        // We never ask a peer for 8.
        let ask8 = DeflateConfig {
            client_max_window_bits: Some(8),
            ..DeflateConfig::default()
        };
        let (p, r) = negotiate(&ask8, "permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(p.client_max_window_bits, 9);
        assert_eq!(r, "permessage-deflate; client_max_window_bits=9");
    }

    #[test]
    fn server_quoted_values() {
        let config = DeflateConfig::default();
        let (p, r) =
            negotiate(&config, "permessage-deflate; server_max_window_bits=\"10\"").unwrap();
        assert_eq!(p.server_max_window_bits, 10);
        assert_eq!(r, "permessage-deflate; server_max_window_bits=10");
        // quoted-pair inside the string
        let (p, _) = negotiate(
            &config,
            "permessage-deflate; client_max_window_bits=\"1\\1\"",
        )
        .unwrap();
        assert_eq!(p.client_max_window_bits, 11);
        // Whitespace around `=` and `;`
        let (p, _) =
            negotiate(&config, "permessage-deflate ;server_max_window_bits = 12 ").unwrap();
        assert_eq!(p.server_max_window_bits, 12);
        // A quoted value that is not a token after unescaping is malformed.
        assert_eq!(
            negotiate(
                &config,
                "permessage-deflate; server_max_window_bits=\"1 0\""
            ),
            None
        );
        assert_eq!(
            negotiate(&config, "permessage-deflate; server_max_window_bits=\"\""),
            None
        );
        assert_eq!(
            negotiate(&config, "permessage-deflate; server_max_window_bits=\"10"),
            None
        );
    }

    #[test]
    fn server_declines_malformed_offers() {
        let config = DeflateConfig::default();
        let bad = [
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits=abc",
            "permessage-deflate; server_max_window_bits=-9",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=0x9",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"x\"",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; foo",
            "permessage-deflate; foo=1",
            "permessage-deflate;",
            "permessage-deflate; ;",
            "permessage-deflate x",
            "permessage-deflate; server_max_window_bits=",
            "permessage-deflate; =10",
            "permessage-deflate; server_max_window_bits=1=0",
        ];
        for offer in bad {
            assert_eq!(negotiate(&config, offer), None, "{offer}");
            // ... and each one falls back to the next offer, in the same header value
            let with_fallback = format!("{offer}, permessage-deflate; client_no_context_takeover");
            let (p, r) = negotiate(&config, &with_fallback).unwrap_or_else(|| panic!("{offer}"));
            assert!(p.client_no_context_takeover, "{offer}");
            assert_eq!(r, "permessage-deflate; client_no_context_takeover");
            // ... or in a later header value.
            let (p, _) = config
                .server_negotiate([offer, "permessage-deflate; server_no_context_takeover"])
                .unwrap();
            assert!(p.server_no_context_takeover, "{offer}");
        }
    }

    #[test]
    fn server_takes_the_first_acceptable_offer() {
        // RFC 7692 §7.1.3 style fallback: the first offer is acceptable, so it wins.
        let config = DeflateConfig::default();
        let (p, r) = negotiate(
            &config,
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10, \
             permessage-deflate; client_max_window_bits",
        )
        .unwrap();
        assert_eq!(p.server_max_window_bits, 10);
        assert_eq!(r, "permessage-deflate; server_max_window_bits=10");
        // Other extensions and empty list elements before it are skipped.
        let (p, _) = config
            .server_negotiate([
                "foo; a=\"b,c\", , bar",
                "permessage-deflate; server_max_window_bits=11",
            ])
            .unwrap();
        assert_eq!(p.server_max_window_bits, 11);
    }

    #[test]
    fn client_accept_not_enabled() {
        let config = DeflateConfig::default();
        assert_eq!(config.client_accept(std::iter::empty()), Ok(None));
        assert_eq!(config.client_accept([""]), Ok(None));
        assert_eq!(config.client_accept([" , "]), Ok(None));
    }

    #[test]
    fn client_accept_plain_and_full() {
        let config = DeflateConfig::default();
        assert_eq!(
            config.client_accept(["permessage-deflate"]),
            Ok(Some(DeflateParams::default()))
        );
        assert_eq!(
            config.client_accept(["PERMESSAGE-DEFLATE; SERVER_NO_CONTEXT_TAKEOVER"]),
            Ok(Some(params(true, false, 15, 15)))
        );
        assert_eq!(
            config.client_accept([
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=10; client_max_window_bits=\"9\""
            ]),
            Ok(Some(params(true, true, 10, 9)))
        );
    }

    #[test]
    fn client_accept_applies_own_limits() {
        let config = DeflateConfig {
            client_no_context_takeover: true,
            client_max_window_bits: Some(10),
            server_max_window_bits: Some(12),
            ..DeflateConfig::default()
        };
        // We offered no context takeover and window 10 for ourselves: we keep to it.
        assert_eq!(
            config.client_accept(["permessage-deflate; client_max_window_bits=13"]),
            Ok(Some(params(false, true, 15, 10)))
        );
        assert_eq!(
            config.client_accept(["permessage-deflate; server_max_window_bits=12"]),
            Ok(Some(params(false, true, 12, 10)))
        );
        assert_eq!(
            config.client_accept(["permessage-deflate; server_max_window_bits=9"]),
            Ok(Some(params(false, true, 9, 10)))
        );
    }

    #[test]
    fn client_accept_rejections() {
        let config = DeflateConfig {
            server_max_window_bits: Some(10),
            ..DeflateConfig::default()
        };
        let cases: &[(&[&str], NegotiationError)] = &[
            (
                &["x-foo"],
                NegotiationError::UnknownExtension("x-foo".into()),
            ),
            (
                &["permessage-deflate, x-foo"],
                NegotiationError::UnknownExtension("x-foo".into()),
            ),
            (
                &["permessage-deflate, permessage-deflate"],
                NegotiationError::DuplicateExtension,
            ),
            (
                &["permessage-deflate", "permessage-deflate"],
                NegotiationError::DuplicateExtension,
            ),
            (
                &["permessage-deflate; foo"],
                NegotiationError::UnknownParameter("foo".into()),
            ),
            (
                &["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
                NegotiationError::DuplicateParameter("server_no_context_takeover".into()),
            ),
            (
                &["permessage-deflate; client_no_context_takeover=1"],
                NegotiationError::UnexpectedValue("client_no_context_takeover".into()),
            ),
            (
                &["permessage-deflate; server_max_window_bits"],
                NegotiationError::MissingValue("server_max_window_bits".into()),
            ),
            (
                &["permessage-deflate; client_max_window_bits"],
                NegotiationError::MissingValue("client_max_window_bits".into()),
            ),
            (
                &["permessage-deflate; client_max_window_bits=16"],
                NegotiationError::InvalidWindowBits {
                    param: "client_max_window_bits".into(),
                    value: "16".into(),
                },
            ),
            (
                &["permessage-deflate; server_max_window_bits=7"],
                NegotiationError::InvalidWindowBits {
                    param: "server_max_window_bits".into(),
                    value: "7".into(),
                },
            ),
            (
                &["permessage-deflate; server_max_window_bits=09"],
                NegotiationError::InvalidWindowBits {
                    param: "server_max_window_bits".into(),
                    value: "09".into(),
                },
            ),
            (
                &["permessage-deflate; server_max_window_bits=11"],
                NegotiationError::WindowBitsTooLarge {
                    requested: 10,
                    got: 11,
                },
            ),
        ];
        for (values, expected) in cases {
            assert_eq!(
                config.client_accept(values.iter().copied()).as_ref(),
                Err(expected),
                "{values:?}"
            );
        }
        for malformed in [
            "permessage-deflate;",
            "permessage-deflate x",
            "permessage-deflate; a=\"b",
        ] {
            let err = config.client_accept([malformed]).unwrap_err();
            assert!(
                matches!(err, NegotiationError::Malformed { .. }),
                "{malformed}: {err:?}"
            );
            assert!(err.to_string().contains(malformed), "{err}");
        }
    }

    #[test]
    fn client_accepts_unasked_server_window() {
        // §7.1.2.1: the server may limit its own window unasked.
        assert_eq!(
            DeflateConfig::default()
                .client_accept(["permessage-deflate; server_max_window_bits=8"]),
            Ok(Some(params(false, false, 8, 15)))
        );
    }

    #[test]
    fn errors_display_actionably() {
        let err = NegotiationError::WindowBitsTooLarge {
            requested: 10,
            got: 12,
        };
        assert!(err.to_string().contains("server_max_window_bits=12"));
        let err = NegotiationError::InvalidWindowBits {
            param: "client_max_window_bits".into(),
            value: "16".into(),
        };
        assert!(err.to_string().contains("8 to 15"));
    }
}

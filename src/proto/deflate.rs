//! permessage-deflate (RFC 7692), sans-I/O: negotiation, the per-connection compressor
//! ([`Deflater`]) and the bounded per-connection decompressor ([`Inflater`]).
//!
//! # Negotiation
//!
//! A client sends [`DeflateConfig::client_offer`] and checks the answer with
//! [`DeflateConfig::client_accept`]; a server answers with [`DeflateConfig::server_negotiate`].
//! Both produce the [`DeflateParams`] the two ends agreed on, which the [`Deflater`] and
//! [`Inflater`] of each end are built from.
//!
//! # Window bits 8
//!
//! zlib (and zlib-rs, which this crate uses) cannot produce raw DEFLATE with a 256-byte window:
//! `deflateInit2` refuses `windowBits = -8`, and silently using 9 would break RFC 7692 §7.1.2,
//! since the peer may have sized its decompressor for 256 bytes. Answering an offer of
//! `server_max_window_bits=8` with `server_max_window_bits=9` is not allowed either (the answer
//! must be "the same or smaller"). So an end whose compressor is limited to 8 bits stays
//! RFC-compliant by emitting DEFLATE *stored* blocks only: they never reference earlier data,
//! hence satisfy every window limit, and cost 5 bytes per 64 KiB plus 1 byte per message.
//! [`Deflater::is_stored_only`] tells the caller, who may then rather send such messages
//! uncompressed (RSV1 is per message). This keeps those offers acceptable — the peer's direction
//! is still compressed — instead of declining them. When *we* ask the peer for a window, 8 is
//! raised to 9, because many zlib-based peers cannot honour 8 and would fail the connection.
//!
//! Decompression always runs with a 15-bit window: inflating with a larger window than the
//! peer's is always correct, zlib-rs allocates the 32 KiB window regardless, and it keeps
//! `reset()` allocation-free.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::error::{ProtocolError, SendError};
use super::Role;

/// The extension token of RFC 7692.
const EXTENSION_NAME: &str = "permessage-deflate";
const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// The tail of a sync flush (an empty stored block) that RFC 7692 §7.2.1 strips from every
/// message and §7.2.2 appends again before inflating.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest and largest LZ77 window (base-2 logarithm) RFC 7692 allows.
const MIN_WINDOW_BITS: u8 = 8;
const MAX_WINDOW_BITS: u8 = 15;

/// The largest payload of one DEFLATE stored block.
const STORED_BLOCK_MAX: usize = 65_535;

/// First output chunk of the decompressor, and the cap its doubling stops at: output space is
/// zero-filled before zlib writes to it (no `unsafe` here), so chunks stay moderate.
const INFLATE_MIN_CHUNK: usize = 1024;
const INFLATE_MAX_CHUNK: usize = 256 * 1024;

/// Heap bytes zlib-rs allocates for one inflate stream: its state (about 7 KiB) plus a 32 KiB
/// window (+64 bytes SIMD padding), in one allocation, whatever the window bits.
const INFLATE_STATE_BYTES: usize = 7 * 1024 + 32 * 1024 + 64 + 128;
/// Fixed heap bytes of one zlib-rs deflate stream: its state (about 6 KiB), the hash head table
/// (65 536 two-byte entries) and, at memLevel 8, the pending buffer and the symbol buffer
/// (4 + 3 times 16 KiB). The window (2 << bits bytes) and `prev` (2 << bits bytes) come on top.
const DEFLATE_FIXED_BYTES: usize = 6 * 1024 + 128 * 1024 + 7 * 16 * 1024 + 256;

// ---------------------------------------------------------------------------------------------
// Configuration and negotiation
// ---------------------------------------------------------------------------------------------

/// What an endpoint is willing to negotiate (client: what it offers; server: what it accepts).
///
/// Out-of-range values are clamped rather than rejected: window bits to `8..=15`,
/// `compression_level` to `0..=9`, `mem_level` to `1..=9`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Client: ask the server not to keep its LZ77 window between messages. Server: always
    /// answer with it (our compressor resets after every message), even when not asked.
    pub server_no_context_takeover: bool,
    /// Client: offer it (we then reset our compressor after every message). Server: ask the
    /// client for it (allowed even when the client did not offer it).
    pub client_no_context_takeover: bool,
    /// Client: ask the server to limit its window to this many bits (8 is asked as 9, see the
    /// module docs). Server: the largest window our compressor uses; an offer asking for less is
    /// honoured, and with `Some` we announce it even when not asked.
    pub server_max_window_bits: Option<u8>,
    /// Client: the largest window our compressor uses (the offer always carries
    /// `client_max_window_bits`, with this value as hint, since we honour any limit the server
    /// sets). Server: ask the client to limit its window (only when its offer allowed it; 8 is
    /// asked as 9).
    pub client_max_window_bits: Option<u8>,
    /// zlib compression level, `0..=9`. Default 1. Measured with zlib-rs on a stream of
    /// JSON-like messages with context takeover: 1 KiB messages compress to 14% at level 1
    /// against 10% at level 6, but 8 times faster (~650 MB/s against ~80 MB/s); 64 KiB
    /// messages to 24% against 14%, 6 times faster (~260 against ~45 MB/s). A server sending
    /// to many clients is CPU-bound long before its links are full at these ratios; pick 6 to
    /// favour bandwidth. Level 0 sends stored blocks without creating a zlib stream at all.
    pub compression_level: u32,
    /// Messages shorter than this are sent uncompressed. Default 64: below it, a message
    /// compressed on its own rarely gets smaller once the block header and flush bits are
    /// paid, and the zlib call costs more than the bytes saved. The compressor itself does not
    /// look at it: the caller checks it before calling [`Deflater::compress`].
    pub threshold: usize,
    /// zlib `memLevel`, `1..=9` (default 8). The flate2 API this crate uses always builds its
    /// compressors at memLevel 8, so the value does not size the hash chains; a value below 8
    /// instead selects "memory over speed": a [`Deflater`] without context takeover then frees
    /// its zlib state after every message (an idle connection holds no compressor at all) and
    /// re-creates it, at the cost of an allocation, for the next one.
    pub mem_level: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: None,
            compression_level: 1,
            threshold: 64,
            mem_level: 8,
        }
    }
}

impl DeflateConfig {
    /// A preset for many mostly idle connections: no context takeover in either direction,
    /// 11-bit windows, level 1, a threshold of 128 bytes and `mem_level` 4.
    ///
    /// With zlib-rs a compressor needs about `DEFLATE_FIXED` (~246 KiB: hash heads 128 KiB,
    /// pending and symbol buffers 112 KiB, state ~6 KiB) plus `4 << window_bits` bytes, so
    /// ~254 KiB at 11 bits against ~374 KiB at 15; a decompressor ~39 KiB whatever the window.
    /// The real saving is that, without context takeover and with `mem_level < 8`, the
    /// compressor is freed after every message: an idle connection holds 0 bytes for it
    /// (and the decompressor, ~39 KiB, is only allocated once a compressed message arrives).
    pub fn low_memory() -> Self {
        DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: Some(11),
            client_max_window_bits: Some(11),
            compression_level: 1,
            threshold: 128,
            mem_level: 4,
        }
    }

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
        for value in header_values {
            for element in parse_header(value) {
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
            for element in parse_header(value) {
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

/// Clamps configured window bits into the RFC range.
fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

/// Window bits we ask the *peer* for: never 8 (see the module docs).
fn ask_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS + 1, MAX_WINDOW_BITS)
}

/// The parameters both ends agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The largest LZ77 window of the server's compressor, `8..=15` (15 when not negotiated).
    pub server_max_window_bits: u8,
    /// The largest LZ77 window of the client's compressor, `8..=15` (15 when not negotiated).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// Plain `permessage-deflate`: context takeover both ways, 15-bit windows.
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

impl DeflateParams {
    /// `(no_context_takeover, max_window_bits)` of the compressor run by `sender`.
    fn side(&self, sender: Role) -> (bool, u8) {
        match sender {
            Role::Server => (self.server_no_context_takeover, self.server_max_window_bits),
            Role::Client => (self.client_no_context_takeover, self.client_max_window_bits),
        }
    }
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
        params: &[(&str, Option<String>)],
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

/// One element of an extension list: `name *( ";" param [ "=" value ] )`.
#[derive(Debug, PartialEq, Eq)]
struct Element<'a> {
    name: &'a str,
    params: Vec<(&'a str, Option<String>)>,
}

/// Splits one header value into its elements (RFC 6455 §9.1, with the usual optional
/// whitespace and empty list elements). A malformed element yields `Err(reason)`; parsing
/// resumes at the next comma outside a quoted string.
fn parse_header(value: &str) -> Vec<Result<Element<'_>, String>> {
    let mut parser = Parser { src: value, pos: 0 };
    let mut out = Vec::new();
    loop {
        parser.skip_ows();
        match parser.peek() {
            None => break,
            Some(b',') => {
                parser.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        match parser.element() {
            Ok(element) => out.push(Ok(element)),
            Err(reason) => {
                out.push(Err(reason));
                parser.skip_to_next_element();
            }
        }
    }
    out
}

/// A cursor over one header value.
struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self, what: &str) -> Result<&'a str, String> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(match self.peek() {
                Some(c) => format!("expected {what}, found `{}`", char::from(c)),
                None => format!("expected {what}, found the end of the header"),
            });
        }
        Ok(&self.src[start..self.pos])
    }

    /// A quoted-string (the opening quote is current); returns it unescaped.
    fn quoted(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string".to_owned()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) if c == b'\t' || (0x20..0x7f).contains(&c) => {
                            out.push(char::from(c));
                            self.pos += 1;
                        }
                        _ => return Err("bad escape in quoted string".to_owned()),
                    }
                }
                Some(c) if c == b'\t' || (0x20..0x7f).contains(&c) => {
                    out.push(char::from(c));
                    self.pos += 1;
                }
                Some(_) => return Err("invalid character in quoted string".to_owned()),
            }
        }
    }

    fn element(&mut self) -> Result<Element<'a>, String> {
        let name = self.token("an extension name")?;
        let mut params = Vec::new();
        loop {
            self.skip_ows();
            match self.peek() {
                None | Some(b',') => return Ok(Element { name, params }),
                Some(b';') => {
                    self.pos += 1;
                    self.skip_ows();
                    let param = self.token("a parameter name")?;
                    self.skip_ows();
                    let value = if self.peek() == Some(b'=') {
                        self.pos += 1;
                        self.skip_ows();
                        if self.peek() == Some(b'"') {
                            let value = self.quoted()?;
                            // RFC 6455 §9.1: the unescaped value must still be a token.
                            if value.is_empty() || !value.bytes().all(is_tchar) {
                                return Err(format!(
                                    "quoted value of `{param}` is not a token: \"{value}\""
                                ));
                            }
                            Some(value)
                        } else {
                            Some(self.token("a parameter value")?.to_owned())
                        }
                    } else {
                        None
                    };
                    params.push((param, value));
                }
                Some(c) => {
                    return Err(format!(
                        "expected `;` or `,` after `{name}`, found `{}`",
                        char::from(c)
                    ))
                }
            }
        }
    }

    /// After an error: moves past the next comma that is not inside a quoted string.
    fn skip_to_next_element(&mut self) {
        let mut quoted = false;
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'\\' if quoted => self.pos += 1,
                b'"' => quoted = !quoted,
                b',' if !quoted => return,
                _ => {}
            }
        }
        self.pos = self.pos.min(self.src.len());
    }
}

/// RFC 7230 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

// ---------------------------------------------------------------------------------------------
// Compressor
// ---------------------------------------------------------------------------------------------

/// The compressor of one connection (or one standalone message).
pub struct Deflater {
    /// Created on first use; `None` again after a message when `release_after_message`.
    stream: Option<Compress>,
    /// Negotiated window of our compressor, 8..=15.
    window_bits: u8,
    level: u32,
    no_context_takeover: bool,
    /// Free the zlib state after each message (no context takeover and `mem_level < 8`).
    release_after_message: bool,
    /// Emit stored blocks only: window 8 (zlib cannot honour it) or level 0.
    stored_only: bool,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("window_bits", &self.window_bits)
            .field("level", &self.level)
            .field("no_context_takeover", &self.no_context_takeover)
            .field("stored_only", &self.stored_only)
            .field("allocated", &self.stream.is_some())
            .finish()
    }
}

impl Deflater {
    /// `role` = which end we are: a Server compresses with the `server_*` params, a Client
    /// with the `client_*` ones. The zlib stream is created lazily on first use.
    ///
    /// `level` is clamped to `0..=9`. A `mem_level` below 8 frees the zlib state after every
    /// message when our side has no context takeover (see [`DeflateConfig::mem_level`]).
    pub fn new(params: DeflateParams, role: Role, level: u32, mem_level: u8) -> Self {
        let (no_context_takeover, bits) = params.side(role);
        let window_bits = clamp_bits(bits);
        let level = level.min(9);
        Deflater {
            stream: None,
            window_bits,
            level,
            no_context_takeover,
            release_after_message: no_context_takeover && mem_level < 8,
            stored_only: window_bits == MIN_WINDOW_BITS || level == 0,
        }
    }

    /// Whether this compressor only emits stored (uncompressed) DEFLATE blocks, because the
    /// negotiated window is 8 bits (see the module docs) or the level is 0. A caller may then
    /// rather send messages uncompressed (RSV1 clear), which saves the few bytes of framing.
    pub fn is_stored_only(&self) -> bool {
        self.stored_only
    }

    /// Compresses one whole message, appending the raw DEFLATE bytes to `dst` without the
    /// trailing `0x00 0x00 0xff 0xff` (RFC 7692 §7.2.1: sync flush, then strip the 4 bytes).
    /// Resets the window afterwards when our side has no context takeover.
    pub fn compress(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), SendError> {
        // Stored blocks; also for an empty payload, where zlib would emit nothing at all after
        // an earlier sync flush (RFC 7692 §7.2.3.6: an empty message is the octet 0x00).
        if self.stored_only || payload.is_empty() {
            write_stored(payload, dst);
            return Ok(());
        }
        let (level, bits) = (self.level, self.window_bits);
        let stream = self.stream.get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(level), false, bits)
        });

        let start = dst.len();
        let result = deflate_sync(stream, payload, dst);
        if result.is_err() {
            // The stream state is unknown now; drop it and the partial output.
            self.stream = None;
            dst.truncate(start);
            return result;
        }
        if dst.len() < start + TRAILER.len() || dst[dst.len() - TRAILER.len()..] != TRAILER {
            self.stream = None;
            dst.truncate(start);
            return Err(SendError::Compress(
                "sync flush did not end with 00 00 ff ff".to_owned(),
            ));
        }
        dst.truncate(dst.len() - TRAILER.len());

        if self.no_context_takeover {
            if self.release_after_message {
                self.stream = None;
            } else if let Some(stream) = self.stream.as_mut() {
                stream.reset();
            }
        }
        Ok(())
    }

    /// Approximate heap bytes held right now (0 before first use).
    pub fn memory_usage(&self) -> usize {
        match self.stream {
            // zlib-rs allocates window and prev (2 bytes each per window byte) with the rest.
            Some(_) => DEFLATE_FIXED_BYTES + (4usize << self.window_bits.max(9)),
            None => 0,
        }
    }
}

/// Runs `payload` through `stream` with a sync flush, appending everything to `dst`.
fn deflate_sync(
    stream: &mut Compress,
    payload: &[u8],
    dst: &mut BytesMut,
) -> Result<(), SendError> {
    let mut input = payload;
    // Compressible messages (the point of compressing) shrink to well under half; incompressible
    // ones take one or two more rounds. Each round zero-fills only the chunk it offers.
    let mut chunk = payload.len() / 2 + 64;
    loop {
        let len = dst.len();
        dst.resize(len + chunk, 0);
        let (in_before, out_before) = (stream.total_in(), stream.total_out());
        let result = stream.compress(input, &mut dst[len..], FlushCompress::Sync);
        let consumed = (stream.total_in() - in_before) as usize;
        let produced = (stream.total_out() - out_before) as usize;
        dst.truncate(len + produced);
        result.map_err(|e| SendError::Compress(e.to_string()))?;
        input = input.get(consumed..).unwrap_or_default();
        // zlib: the flush is complete once a call returns with output space left over.
        if produced < chunk && input.is_empty() {
            return Ok(());
        }
        if consumed == 0 && produced == 0 {
            return Err(SendError::Compress("deflate made no progress".to_owned()));
        }
        chunk = (chunk * 2).min(INFLATE_MAX_CHUNK.max(payload.len() + 64));
    }
}

/// Appends `payload` as DEFLATE stored blocks, already minus the stripped sync-flush tail:
/// every block is byte-aligned, and the empty block `00 00 00 ff ff` that would end the
/// message becomes `00` after stripping.
fn write_stored(payload: &[u8], dst: &mut BytesMut) {
    let blocks = payload.len().div_ceil(STORED_BLOCK_MAX);
    dst.reserve(payload.len() + blocks * 5 + 1);
    for block in payload.chunks(STORED_BLOCK_MAX) {
        // BFINAL=0, BTYPE=00, then padding to the byte boundary: one zero byte.
        let len = block.len() as u16;
        dst.put_u8(0);
        dst.put_u16_le(len);
        dst.put_u16_le(!len);
        dst.extend_from_slice(block);
    }
    dst.put_u8(0);
}

// ---------------------------------------------------------------------------------------------
// Decompressor
// ---------------------------------------------------------------------------------------------

/// The decompressor of one connection.
pub struct Inflater {
    /// Created on first use.
    stream: Option<Decompress>,
    /// The peer resets its compressor after every message.
    no_context_takeover: bool,
    /// The peer ended the DEFLATE stream (BFINAL) inside the current message: the rest of the
    /// message is ignored and the stream restarts with the next one.
    ended: bool,
    /// Some compressed byte of the current message was fed.
    fed: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("no_context_takeover", &self.no_context_takeover)
            .field("allocated", &self.stream.is_some())
            .finish()
    }
}

impl Inflater {
    /// A Server inflates with the `client_*` params (the peer's), a Client with the
    /// `server_*` ones. The zlib stream is created lazily on first use, always with a 15-bit
    /// window (see the module docs).
    pub fn new(params: DeflateParams, role: Role) -> Self {
        let peer = match role {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        };
        Inflater {
            stream: None,
            no_context_takeover: params.side(peer).0,
            ended: false,
            fed: false,
        }
    }

    /// Inflates one fragment of a compressed message (fragments come in order; `fin` marks the
    /// last one, after which the `0x00 0x00 0xff 0xff` tail is fed), appending the output to
    /// `dst`. A message made of no byte at all is taken as empty.
    ///
    /// The window is *not* reset after a message of a peer without context takeover: that peer
    /// resets its compressor, so its messages cannot refer back, and skipping the reset makes
    /// small messages inflate about 40% faster. (A non-compliant peer that refers back anyway
    /// is decoded as it meant rather than failed.) After a block with BFINAL set, the rest of
    /// the message is ignored and the stream restarts with the next message (RFC 7692 §7.2.3.4).
    ///
    /// Fails with [`ProtocolError::MessageTooBig`]`{ limit: max_len }` as soon as `dst.len()`
    /// would exceed `max_len`; `dst` never grows beyond `max(dst.capacity(), max_len)`, so a
    /// few KB that would inflate to GBs cost at most `max_len` bytes and a bounded amount of
    /// work. Corrupt data fails with [`ProtocolError::BadCompressedData`]. After an error the
    /// inflater must not be used for further messages (the connection is failing anyway).
    pub fn decompress(
        &mut self,
        fragment: &[u8],
        fin: bool,
        dst: &mut BytesMut,
        max_len: usize,
    ) -> Result<(), ProtocolError> {
        let stream = self
            .stream
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, MAX_WINDOW_BITS));
        if !self.ended && !fragment.is_empty() {
            self.fed = true;
            self.ended = inflate_bounded(stream, fragment, FlushDecompress::None, dst, max_len)?;
        }
        if fin {
            // A message without any compressed byte is taken as empty (the RFC form is 0x00;
            // the tail alone would not be valid DEFLATE).
            let fed = std::mem::take(&mut self.fed);
            if !self.ended && fed {
                self.ended =
                    inflate_bounded(stream, &TRAILER, FlushDecompress::Sync, dst, max_len)?;
            }
            // A peer without context takeover resets its own compressor, so its next message
            // cannot reference this one: resetting our side as well would only cost time (about
            // a third of the throughput on 1 KiB messages), so only a finished stream restarts.
            if self.ended {
                stream.reset(false);
                self.ended = false;
            }
        }
        Ok(())
    }

    /// Approximate heap bytes held right now (0 before first use).
    pub fn memory_usage(&self) -> usize {
        match self.stream {
            Some(_) => INFLATE_STATE_BYTES,
            None => 0,
        }
    }
}

/// Inflates `input` into `dst` without letting `dst.len()` exceed `max_len` nor its capacity
/// grow beyond `max(capacity, max_len)`. Returns whether the DEFLATE stream ended (BFINAL).
fn inflate_bounded(
    stream: &mut Decompress,
    mut input: &[u8],
    flush: FlushDecompress,
    dst: &mut BytesMut,
    max_len: usize,
) -> Result<bool, ProtocolError> {
    let mut chunk = input
        .len()
        .saturating_mul(4)
        .clamp(INFLATE_MIN_CHUNK, INFLATE_MAX_CHUNK);
    // Small stack buffer for the probe at the limit and for the sync-flush tail, which
    // produces no output for well-formed data: neither may make `dst` grow for nothing.
    let mut scratch = [0u8; 256];
    let mut use_scratch = flush == FlushDecompress::Sync;
    loop {
        let len = dst.len();
        let at_limit = len >= max_len;
        let (in_before, out_before) = (stream.total_in(), stream.total_out());
        let (result, offered) = if at_limit || use_scratch {
            let result = stream.decompress(input, &mut scratch, flush);
            (result, scratch.len())
        } else {
            let want = chunk.min(max_len - len);
            reserve_bounded(dst, want, max_len);
            dst.resize(len + want, 0);
            let result = stream.decompress(input, &mut dst[len..], flush);
            (result, want)
        };
        let consumed = (stream.total_in() - in_before) as usize;
        let produced = (stream.total_out() - out_before) as usize;
        if at_limit || use_scratch {
            if produced > 0 {
                if at_limit || produced > max_len - len {
                    return Err(ProtocolError::MessageTooBig { limit: max_len });
                }
                reserve_bounded(dst, produced, max_len);
                dst.extend_from_slice(scratch.get(..produced).unwrap_or_default());
            }
            use_scratch = false;
        } else {
            dst.truncate(len + produced);
        }
        let status = result.map_err(|e| ProtocolError::BadCompressedData(e.to_string()))?;
        input = input.get(consumed..).unwrap_or_default();
        if status == Status::StreamEnd {
            return Ok(true);
        }
        if produced < offered && input.is_empty() {
            // Everything this input can give is out.
            return Ok(false);
        }
        if consumed == 0 && produced == 0 {
            if input.is_empty() {
                return Ok(false);
            }
            return Err(ProtocolError::BadCompressedData(
                "inflate made no progress".to_owned(),
            ));
        }
        if produced == offered {
            chunk = (chunk * 2).min(INFLATE_MAX_CHUNK);
        }
    }
}

/// Makes room for `additional` more bytes in `dst` (with `dst.len() + additional <=
/// hard_cap`) without the capacity ever exceeding `max(dst.capacity(), hard_cap)`:
/// amortized doubling while that stays under the cap, one exact allocation otherwise.
fn reserve_bounded(dst: &mut BytesMut, additional: usize, hard_cap: usize) {
    if dst.capacity() - dst.len() >= additional {
        return;
    }
    if dst.capacity().saturating_mul(2) <= hard_cap {
        dst.reserve(additional);
    } else {
        let mut grown = BytesMut::with_capacity(hard_cap.max(dst.len() + additional));
        grown.extend_from_slice(dst);
        *dst = grown;
    }
}

// ---------------------------------------------------------------------------------------------
// One-shot helpers
// ---------------------------------------------------------------------------------------------

/// Parameters of a standalone message: no context on either side, full windows.
const STANDALONE: DeflateParams = DeflateParams {
    server_no_context_takeover: true,
    client_no_context_takeover: true,
    server_max_window_bits: MAX_WINDOW_BITS,
    client_max_window_bits: MAX_WINDOW_BITS,
};

/// Compresses one standalone message (no context takeover, 15-bit window) the way
/// [`Deflater::compress`] does, appending to `dst`. Creates and drops a zlib stream (about
/// 370 KiB) per call: for a stream of messages keep a [`Deflater`].
pub fn compress_message(payload: &[u8], level: u32, dst: &mut BytesMut) -> Result<(), SendError> {
    Deflater::new(STANDALONE, Role::Server, level, 8).compress(payload, dst)
}

/// Inflates one standalone compressed message (no context takeover), appending to `dst`
/// under the same `max_len` rule as [`Inflater::decompress`].
pub fn decompress_message(
    data: &[u8],
    max_len: usize,
    dst: &mut BytesMut,
) -> Result<(), ProtocolError> {
    Inflater::new(STANDALONE, Role::Client).decompress(data, true, dst, max_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- helpers ----------------------------------------------------------------------------

    /// xorshift64*: a tiny seeded RNG, so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
        /// Text-like data: words from a small vocabulary.
        fn text(&mut self, len: usize) -> Vec<u8> {
            const WORDS: [&str; 8] = [
                "{\"id\":",
                "\"name\":",
                "\"value\"",
                "true,",
                "null",
                "websocket ",
                "deflate ",
                "42}",
            ];
            let mut out = Vec::with_capacity(len + 16);
            while out.len() < len {
                out.extend_from_slice(WORDS[self.below(WORDS.len())].as_bytes());
            }
            out.truncate(len);
            out
        }
    }

    fn inflate_all(inflater: &mut Inflater, data: &[u8]) -> Vec<u8> {
        let mut dst = BytesMut::new();
        inflater
            .decompress(data, true, &mut dst, usize::MAX)
            .unwrap();
        dst.to_vec()
    }

    fn deflate(deflater: &mut Deflater, payload: &[u8]) -> Vec<u8> {
        let mut dst = BytesMut::new();
        deflater.compress(payload, &mut dst).unwrap();
        dst.to_vec()
    }

    fn negotiate(config: &DeflateConfig, offer: &str) -> Option<(DeflateParams, String)> {
        config.server_negotiate([offer])
    }

    fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
        }
    }

    // ---- client offer -----------------------------------------------------------------------

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

    // ---- server negotiation -----------------------------------------------------------------

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

    // ---- client acceptance ------------------------------------------------------------------

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

    // ---- RFC 7692 §7.2.3 examples -----------------------------------------------------------

    #[test]
    fn rfc_hello_single_and_fragmented() {
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Client);
        assert_eq!(inflate_all(&mut inflater, &hello), b"Hello");

        // §7.2.3.1, fragmented as in the RFC: 3 bytes, then 4.
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Client);
        let mut dst = BytesMut::new();
        inflater
            .decompress(&hello[..3], false, &mut dst, 100)
            .unwrap();
        inflater
            .decompress(&hello[3..], true, &mut dst, 100)
            .unwrap();
        assert_eq!(&dst[..], b"Hello");

        // Our compressor produces exactly this (level 6, full window).
        let mut deflater = Deflater::new(DeflateParams::default(), Role::Server, 6, 8);
        assert_eq!(deflate(&mut deflater, b"Hello"), hello);
    }

    #[test]
    fn rfc_context_takeover_second_message() {
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Server);
        assert_eq!(
            inflate_all(&mut inflater, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
            b"Hello"
        );
        assert_eq!(
            inflate_all(&mut inflater, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
            b"Hello"
        );

        // Without context takeover on the peer's side the window is kept (not needed, and
        // faster): a back-reference of a non-compliant peer still decodes.
        let no_ctx = params(true, true, 15, 15);
        let mut inflater = Inflater::new(no_ctx, Role::Server);
        assert_eq!(
            inflate_all(&mut inflater, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
            b"Hello"
        );
        assert_eq!(
            inflate_all(&mut inflater, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
            b"Hello"
        );

        // A fresh inflater has no context: the same bytes are a bad back-reference.
        let mut fresh = Inflater::new(DeflateParams::default(), Role::Server);
        let mut dst = BytesMut::new();
        let err = fresh
            .decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut dst, 100)
            .unwrap_err();
        assert!(
            matches!(err, ProtocolError::BadCompressedData(_)),
            "{err:?}"
        );

        // And our compressor uses the context: the second message is the RFC's 5 bytes.
        let mut deflater = Deflater::new(DeflateParams::default(), Role::Client, 6, 8);
        deflate(&mut deflater, b"Hello");
        assert_eq!(
            deflate(&mut deflater, b"Hello"),
            [0xf2, 0x00, 0x11, 0x00, 0x00]
        );
    }

    #[test]
    fn rfc_no_compression_block() {
        let data = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Client);
        assert_eq!(inflate_all(&mut inflater, &data), b"Hello");
        // Our stored-only compressor writes exactly this.
        let mut deflater = Deflater::new(DeflateParams::default(), Role::Client, 0, 8);
        assert!(deflater.is_stored_only());
        assert_eq!(deflate(&mut deflater, b"Hello"), data);
    }

    #[test]
    fn rfc_bfinal_block() {
        // §7.2.3.4: a block with BFINAL set, then a 0x00 octet; the stream restarts next message.
        let data = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Client);
        assert_eq!(inflate_all(&mut inflater, &data), b"Hello");
        assert_eq!(inflate_all(&mut inflater, &data), b"Hello");
        assert_eq!(
            inflate_all(&mut inflater, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
            b"Hello"
        );
    }

    #[test]
    fn rfc_two_deflate_blocks() {
        let data = [
            0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ];
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Client);
        assert_eq!(inflate_all(&mut inflater, &data), b"Hello");
    }

    #[test]
    fn empty_message() {
        // §7.2.3.6: an empty message is the single octet 0x00.
        let mut deflater = Deflater::new(DeflateParams::default(), Role::Client, 6, 8);
        let out = deflate(&mut deflater, b"");
        assert_eq!(out, [0x00]);
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Server);
        assert_eq!(inflate_all(&mut inflater, &out), b"");
        assert_eq!(inflate_all(&mut inflater, &[]), b"");
        // ...and the context still works afterwards.
        let out = deflate(&mut deflater, b"after");
        assert_eq!(inflate_all(&mut inflater, &out), b"after");
    }

    // ---- round trips ------------------------------------------------------------------------

    fn roundtrip_session(p: DeflateParams, sender: Role, level: u32, mem_level: u8, seed: u64) {
        let receiver = match sender {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        };
        let mut rng = Rng(seed);
        let mut deflater = Deflater::new(p, sender, level, mem_level);
        let mut inflater = Inflater::new(p, receiver);
        let mut wire = BytesMut::new();
        let mut out = BytesMut::new();
        for i in 0..20 {
            let len = match rng.below(4) {
                0 => rng.below(100),
                1 => rng.below(5_000),
                2 => rng.below(20_000),
                _ => rng.below(70_000),
            };
            let payload = if i % 3 == 0 {
                rng.bytes(len)
            } else {
                rng.text(len)
            };
            wire.clear();
            deflater.compress(&payload, &mut wire).unwrap();
            out.clear();
            // Feed in random fragments.
            let mut rest = &wire[..];
            while rest.len() > 1 && rng.below(3) == 0 {
                let cut = rng.below(rest.len());
                inflater
                    .decompress(&rest[..cut], false, &mut out, payload.len())
                    .unwrap();
                rest = &rest[cut..];
            }
            inflater
                .decompress(rest, true, &mut out, payload.len())
                .unwrap();
            assert_eq!(out.len(), payload.len(), "{p:?} {sender:?} message {i}");
            assert!(out[..] == payload[..], "{p:?} {sender:?} message {i}");
        }
    }

    #[test]
    fn roundtrip_every_window_and_context_mode() {
        let mut seed = 1;
        for bits in 8..=15 {
            for no_ctx in [false, true] {
                for sender in [Role::Client, Role::Server] {
                    let p = match sender {
                        Role::Client => params(false, no_ctx, 15, bits),
                        Role::Server => params(no_ctx, false, bits, 15),
                    };
                    roundtrip_session(p, sender, 1, 8, seed);
                    seed += 1;
                }
            }
        }
    }

    #[test]
    fn roundtrip_levels_and_low_memory() {
        for (seed, level) in (0..=9).enumerate() {
            roundtrip_session(
                params(false, false, 15, 15),
                Role::Client,
                level,
                8,
                100 + seed as u64,
            );
        }
        roundtrip_session(params(true, true, 11, 11), Role::Server, 1, 4, 7);
    }

    #[test]
    fn compresses_and_uses_context() {
        let mut rng = Rng(3);
        let text = rng.text(10_000);
        let mut with_ctx = Deflater::new(DeflateParams::default(), Role::Client, 6, 8);
        let first = deflate(&mut with_ctx, &text);
        assert!(
            first.len() < text.len() / 3,
            "{} of {}",
            first.len(),
            text.len()
        );
        let second = deflate(&mut with_ctx, &text);
        assert!(
            second.len() < first.len() / 4,
            "{} vs {}",
            second.len(),
            first.len()
        );

        let mut no_ctx = Deflater::new(params(false, true, 15, 15), Role::Client, 6, 8);
        let a = deflate(&mut no_ctx, &text);
        let b = deflate(&mut no_ctx, &text);
        assert_eq!(a, b);
        assert_eq!(a, first);
        // The window bits bound what the compressor can reach: data repeating at an 8 KiB
        // distance compresses well with 15 bits and not at all with 9.
        let block = Rng(4).bytes(8 * 1024);
        let doubled = [block.as_slice(), block.as_slice()].concat();
        let mut w15 = Deflater::new(DeflateParams::default(), Role::Client, 6, 8);
        let mut w9 = Deflater::new(params(false, false, 15, 9), Role::Client, 6, 8);
        assert!(deflate(&mut w15, &doubled).len() < 9 * 1024);
        assert!(deflate(&mut w9, &doubled).len() > 16 * 1024);
    }

    #[test]
    fn one_shot_helpers() {
        let text = Rng(5).text(50_000);
        let mut wire = BytesMut::new();
        compress_message(&text, 6, &mut wire).unwrap();
        assert!(wire.len() < text.len() / 3);
        // Readable by any inflater, including one with context takeover.
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Client);
        assert_eq!(inflate_all(&mut inflater, &wire), text);
        let mut out = BytesMut::from(&b"prefix"[..]);
        decompress_message(&wire, usize::MAX, &mut out).unwrap();
        assert_eq!(&out[..6], b"prefix");
        assert!(out[6..] == text[..]);
        let mut out = BytesMut::new();
        let err = decompress_message(&wire, 1000, &mut out).unwrap_err();
        assert_eq!(err, ProtocolError::MessageTooBig { limit: 1000 });
    }

    // ---- limits and corrupt data ------------------------------------------------------------

    #[test]
    fn zip_bomb_is_stopped_early() {
        let zeros = vec![0u8; 16 << 20];
        let mut wire = BytesMut::new();
        compress_message(&zeros, 9, &mut wire).unwrap();
        assert!(wire.len() < 64 * 1024, "{}", wire.len());
        let limit = 1 << 20;
        for fragment_size in [wire.len(), 1000] {
            let mut inflater = Inflater::new(DeflateParams::default(), Role::Server);
            let mut dst = BytesMut::new();
            let chunks: Vec<&[u8]> = wire.chunks(fragment_size).collect();
            let mut result = Ok(());
            for (i, chunk) in chunks.iter().enumerate() {
                result = inflater.decompress(chunk, i + 1 == chunks.len(), &mut dst, limit);
                if result.is_err() {
                    break;
                }
            }
            assert_eq!(result, Err(ProtocolError::MessageTooBig { limit }));
            assert!(dst.len() <= limit);
            assert!(
                dst.capacity() <= limit + 4096,
                "capacity {}",
                dst.capacity()
            );
        }
    }

    #[test]
    fn limit_is_exact() {
        let payload = Rng(6).text(10_000);
        let mut wire = BytesMut::new();
        compress_message(&payload, 6, &mut wire).unwrap();
        let mut dst = BytesMut::new();
        decompress_message(&wire, 10_000, &mut dst).unwrap();
        assert_eq!(dst.len(), 10_000);
        assert!(dst.capacity() <= 10_000 + 1024, "{}", dst.capacity());
        let mut dst = BytesMut::new();
        assert_eq!(
            decompress_message(&wire, 9_999, &mut dst),
            Err(ProtocolError::MessageTooBig { limit: 9_999 })
        );
        // The limit counts what `dst` already holds.
        let mut dst = BytesMut::from(&[1u8; 10][..]);
        assert_eq!(
            decompress_message(&wire, 10_005, &mut dst),
            Err(ProtocolError::MessageTooBig { limit: 10_005 })
        );
    }

    #[test]
    fn corrupt_data_is_rejected() {
        for data in [
            &[0xff, 0xff, 0xff, 0xff][..],
            &[0x07],
            &[0x00, 0x05, 0x00, 0x00, 0x00, b'x'],
        ] {
            let mut dst = BytesMut::new();
            let err = decompress_message(data, 1000, &mut dst).unwrap_err();
            assert!(
                matches!(err, ProtocolError::BadCompressedData(_)),
                "{data:?}: {err:?}"
            );
            assert_eq!(err.close_code(), crate::proto::CloseCode::INVALID_PAYLOAD);
        }
    }

    #[test]
    fn fragmented_at_every_byte_position() {
        let payload = Rng(8).text(3_000);
        let mut deflater = Deflater::new(DeflateParams::default(), Role::Client, 6, 8);
        // Two messages, so the second one uses the context.
        let first = deflate(&mut deflater, &payload);
        let second = deflate(&mut deflater, &payload);
        for split in 0..=first.len() {
            let mut inflater = Inflater::new(DeflateParams::default(), Role::Server);
            let mut out = BytesMut::new();
            inflater
                .decompress(&first[..split], false, &mut out, usize::MAX)
                .unwrap();
            inflater
                .decompress(&first[split..], true, &mut out, usize::MAX)
                .unwrap();
            assert!(out[..] == payload[..], "split {split}");
            for split2 in [0, second.len() / 2, second.len()] {
                let mut tmp = Inflater::new(DeflateParams::default(), Role::Server);
                inflate_all(&mut tmp, &first);
                let mut out = BytesMut::new();
                tmp.decompress(&second[..split2], false, &mut out, usize::MAX)
                    .unwrap();
                tmp.decompress(&second[split2..], true, &mut out, usize::MAX)
                    .unwrap();
                assert!(out[..] == payload[..], "second split {split2}");
            }
        }
        // One byte per fragment.
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Server);
        let mut out = BytesMut::new();
        for byte in first.chunks(1) {
            inflater
                .decompress(byte, false, &mut out, usize::MAX)
                .unwrap();
        }
        inflater
            .decompress(&[], true, &mut out, usize::MAX)
            .unwrap();
        assert!(out[..] == payload[..]);
    }

    // ---- memory -----------------------------------------------------------------------------

    #[test]
    fn lazy_state_and_release() {
        let p = DeflateParams::default();
        let mut deflater = Deflater::new(p, Role::Client, 1, 8);
        let mut inflater = Inflater::new(p, Role::Server);
        assert_eq!(deflater.memory_usage(), 0);
        assert_eq!(inflater.memory_usage(), 0);
        let wire = deflate(&mut deflater, b"some message");
        inflate_all(&mut inflater, &wire);
        assert!(deflater.memory_usage() > 300 * 1024);
        assert!(inflater.memory_usage() > 32 * 1024);

        // Low-memory: a smaller window, and the compressor is freed after each message.
        let low = DeflateConfig::low_memory();
        let (params, response) = low.server_negotiate([low.client_offer().as_str()]).unwrap();
        assert_eq!(low.client_accept([response.as_str()]), Ok(Some(params)));
        assert_eq!(params, self::params(true, true, 11, 11));
        let mut deflater =
            Deflater::new(params, Role::Client, low.compression_level, low.mem_level);
        let wire = deflate(&mut deflater, &Rng(9).text(1000));
        assert_eq!(deflater.memory_usage(), 0);
        let mut inflater = Inflater::new(params, Role::Server);
        assert_eq!(inflate_all(&mut inflater, &wire), Rng(9).text(1000));
        // Keeping the state (mem_level 8): reported, and smaller than with 15 bits.
        let mut kept = Deflater::new(params, Role::Client, 1, 8);
        deflate(&mut kept, b"x");
        assert!(kept.memory_usage() > 0);
        assert!(kept.memory_usage() < 300 * 1024);
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

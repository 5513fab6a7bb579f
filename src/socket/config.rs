//! [`SocketConfig`]: the settings of a socket, and [`Negotiated`]: what its handshake settled.

use std::time::Duration;

use crate::proto::deflate::{DeflateConfig, DeflateParams};
use crate::proto::{Config, Limits};

/// Settings of an open socket (both sides).
#[derive(Clone, Debug)]
pub struct SocketConfig {
    /// The largest message (and frame) accepted; larger ones close the connection with 1009.
    /// Default 64 MiB, as the seed's `maxSize`.
    pub max_payload: usize,
    /// The most frames one message may be split into.
    pub max_fragments: usize,
    /// How long `close()` waits for the peer's CLOSE (and a client for the server to end TCP)
    /// before dropping the connection. Default 10 s.
    pub close_timeout: Duration,
    /// Send a PING after this long without hearing from the peer; `None` turns keepalive off.
    pub ping_interval: Option<Duration>,
    /// Close the connection (code 1006 locally) when a keepalive PING is not answered in time.
    pub ping_timeout: Duration,
    /// `send` waits while this many bytes are queued and not yet written. Default 1 MiB.
    pub write_buffer_limit: usize,
    /// How many received messages may wait for the application before reading stops (at least
    /// one: 0 acts as 1).
    pub recv_queue_limit: usize,
    /// How many bytes of received messages may wait before reading stops (one message is
    /// always let through, whatever its size). Default 4 MiB.
    pub recv_buffer_limit: usize,
    /// Drop a connection whose peer accepts no bytes for this long while we have data for it.
    pub write_timeout: Option<Duration>,
    /// Client side: after the close handshake, wait (up to `close_timeout`) for the server to
    /// end TCP, as RFC 6455 §7.1.1 advises. Default `true`; `false` ends the connection as soon
    /// as the handshake is done (command-line tools that must give the prompt back).
    pub await_server_close: bool,
    /// Fail the connection with 1008 when a message is not complete this long after its first
    /// frame header arrived (a peer trickling a large message). `None` (the default): no limit;
    /// `wsx serve` sets 300 s.
    pub message_timeout: Option<Duration>,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            max_payload: crate::proto::codec::DEFAULT_MAX_MESSAGE_SIZE,
            max_fragments: crate::proto::codec::DEFAULT_MAX_FRAGMENTS,
            close_timeout: Duration::from_secs(10),
            ping_interval: None,
            ping_timeout: Duration::from_secs(20),
            write_buffer_limit: 1 << 20,
            recv_queue_limit: 256,
            recv_buffer_limit: 4 << 20,
            write_timeout: Some(Duration::from_secs(60)),
            await_server_close: true,
            message_timeout: None,
        }
    }
}

impl SocketConfig {
    /// The protocol core's settings for these.
    pub(crate) fn protocol(&self) -> Config {
        Config {
            limits: Limits {
                max_frame_size: self.max_payload,
                max_message_size: self.max_payload,
                max_fragments: self.max_fragments,
            },
            close_timeout: self.close_timeout,
            ping_interval: self.ping_interval,
            ping_timeout: self.ping_timeout,
            write_timeout: self.write_timeout,
            message_timeout: self.message_timeout,
            recv_queue_limit: self.recv_queue_limit,
            recv_buffer_limit: self.recv_buffer_limit,
            client_awaits_server_eof: self.await_server_close,
        }
    }
}

/// What the handshake settled, handed to [`crate::Socket::from_stream`].
#[derive(Clone, Debug, Default)]
pub struct Negotiated {
    /// The subprotocol both ends agreed on, if any.
    pub protocol: Option<String>,
    /// The permessage-deflate parameters, when compression was negotiated.
    pub deflate: Option<DeflateParams>,
    /// The compressor settings (level, threshold, memory) to use with them.
    pub deflate_config: DeflateConfig,
    /// The `Sec-WebSocket-Extensions` value of the handshake response.
    pub extensions: String,
}

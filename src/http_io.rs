//! HTTP/1.1 head I/O over a tokio stream, shared by the client ([`crate::connect`]) and the
//! server ([`crate::upgrade`]): read a head up to its empty line under the size limit, write
//! bytes and flush.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::Result;
use crate::proto::handshake::{self, HandshakeError, HandshakeLimits};

/// Reads an HTTP head (up to and including the empty line) from `io` into `buf`, enforcing the
/// size limit; returns where the head ends. Bytes after it stay in `buf`. Bytes that cannot
/// begin an HTTP head fail at once ([`handshake::could_start_head`]).
pub(crate) async fn read_head<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    limits: &HandshakeLimits,
) -> Result<usize> {
    let mut scanned = 0;
    loop {
        if let Some(end) = handshake::find_head_end(buf, scanned) {
            return Ok(end);
        }
        scanned = buf.len();
        if buf.len() >= limits.max_header_bytes {
            return Err(HandshakeError::HeadersTooLarge {
                limit: limits.max_header_bytes,
            }
            .into());
        }
        // Grow only when the room is nearly used up: a usual head fits in the caller's first
        // allocation, and a connection that sends part of a head and stalls holds no more.
        if buf.capacity() - buf.len() < 256 {
            buf.reserve(
                4096.min(limits.max_header_bytes.saturating_sub(buf.len()))
                    .max(1),
            );
        }
        let n = io.read_buf(buf).await?;
        if n == 0 {
            return Err(HandshakeError::Malformed(
                "the connection closed before the HTTP head was complete".into(),
            )
            .into());
        }
        if !handshake::could_start_head(buf) {
            return Err(HandshakeError::Malformed(
                "the first bytes cannot begin an HTTP/1.1 head (TLS sent to a plain port?)".into(),
            )
            .into());
        }
    }
}

/// Writes all of `bytes` and flushes: a head must be on the wire before we wait for the answer.
pub(crate) async fn write_all<S: AsyncWrite + Unpin>(io: &mut S, bytes: &[u8]) -> Result<()> {
    io.write_all(bytes).await?;
    io.flush().await?;
    Ok(())
}

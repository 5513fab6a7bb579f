//! The "ceiling": an echo server with no WebSocket library, to show what this machine and the
//! load generator allow.
//!
//! A fixed handshake by hand (`wsx_bench::server_handshake`: answer 101, no extension), then per
//! connection: wait for readability, read as much as there is into a per-thread 256 KiB buffer,
//! turn every frame in it into its unmasked echo in one per-thread output buffer (cut-through:
//! a frame's header goes out as soon as it is complete, its payload as it arrives, so nothing
//! waits for a whole message and a connection keeps no read buffer), and write that buffer in one
//! `write`. PING gets a PONG, PONG is dropped, CLOSE is echoed and ends the connection. No UTF-8
//! check, no limits, no fragmentation rules: this is not a WebSocket implementation, it is the
//! bound on one.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::io::{self, ErrorKind};

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

/// Bytes read per `read` call.
const READ: usize = 256 * 1024;

thread_local! {
    /// The read buffer and the output buffer of the worker thread (connections keep none).
    static BUFS: RefCell<(Vec<u8>, Vec<u8>)> =
        RefCell::new((vec![0; READ], Vec::with_capacity(READ + READ / 2)));
}

/// What to do with the frame being decoded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Echo,
    Drop,
    Close,
}

/// The decoder state of one connection: the header bytes of the frame being read (a header may
/// straddle two reads) and how much of its payload is still to come.
struct Conn {
    hdr: [u8; 14],
    hdr_len: usize,
    remaining: u64,
    mask: [u8; 4],
    mask_off: usize,
    in_payload: bool,
    action: Action,
    closing: bool,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            hdr: [0; 14],
            hdr_len: 0,
            remaining: 0,
            mask: [0; 4],
            mask_off: 0,
            in_payload: false,
            action: Action::Echo,
            closing: false,
        }
    }

    /// The header length once its first two bytes are known.
    fn header_len(&self) -> usize {
        let ext = match self.hdr[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.hdr[1] & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask
    }

    /// Turns `input` into echoes appended to `out`.
    fn process(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() && !self.closing {
            if !self.in_payload {
                let need = if self.hdr_len < 2 {
                    2
                } else {
                    self.header_len()
                };
                let take = (need - self.hdr_len).min(input.len());
                self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&input[..take]);
                self.hdr_len += take;
                input = &input[take..];
                if self.hdr_len < 2 || self.hdr_len < self.header_len() {
                    continue;
                }
                self.start_frame(out);
                continue;
            }
            let n = usize::try_from(self.remaining)
                .unwrap_or(usize::MAX)
                .min(input.len());
            if self.action != Action::Drop {
                unmask_into(&input[..n], self.mask, self.mask_off, out);
            }
            self.mask_off = (self.mask_off + n) & 3;
            self.remaining -= n as u64;
            input = &input[n..];
            if self.remaining == 0 {
                self.end_frame();
            }
        }
    }

    /// A complete header: writes the echo's header (unmasked) and starts the payload.
    fn start_frame(&mut self, out: &mut Vec<u8>) {
        let h = &self.hdr[..self.hdr_len];
        let len_code = h[1] & 0x7f;
        let ext_len = match len_code {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mut len = u64::from(len_code);
        if ext_len > 0 {
            len = h[2..2 + ext_len]
                .iter()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        }
        self.mask = [0; 4];
        if h[1] & 0x80 != 0 {
            self.mask.copy_from_slice(&h[2 + ext_len..6 + ext_len]);
        }
        let opcode = h[0] & 0x0f;
        self.action = match opcode {
            0x8 => Action::Close,
            0xa => Action::Drop,
            _ => Action::Echo,
        };
        if self.action != Action::Drop {
            let b0 = if opcode == 0x9 {
                (h[0] & 0xf0) | 0xa
            } else {
                h[0]
            };
            out.push(b0);
            out.push(len_code);
            out.extend_from_slice(&h[2..2 + ext_len]);
        }
        self.remaining = len;
        self.mask_off = 0;
        self.in_payload = true;
        if len == 0 {
            self.end_frame();
        }
    }

    fn end_frame(&mut self) {
        if self.action == Action::Close {
            self.closing = true;
        }
        self.in_payload = false;
        self.hdr_len = 0;
    }
}

/// XORs `src` with the mask (starting at byte `off` of it) onto the end of `out`, 8 bytes at a
/// time.
fn unmask_into(src: &[u8], mask: [u8; 4], off: usize, out: &mut Vec<u8>) {
    let m = [
        mask[off & 3],
        mask[(off + 1) & 3],
        mask[(off + 2) & 3],
        mask[(off + 3) & 3],
    ];
    let m8 = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    out.reserve(src.len());
    let mut chunks = src.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ m8;
        out.extend_from_slice(&w.to_ne_bytes());
    }
    for (i, b) in chunks.remainder().iter().enumerate() {
        out.push(b ^ m[i & 3]);
    }
}

async fn serve(mut tcp: TcpStream) -> io::Result<()> {
    let leftover = wsx_bench::server_handshake(&mut tcp).await?;
    let mut conn = Conn::new();
    // Echoes the transport did not take yet (empty unless the peer is slow to read).
    let mut pending = Vec::new();
    conn.process(&leftover, &mut pending);
    drop(leftover);
    loop {
        if !pending.is_empty() {
            tcp.write_all(&pending).await?;
            pending = Vec::new();
        }
        if conn.closing {
            let _ = tcp.shutdown().await;
            return Ok(());
        }
        tcp.readable().await?;
        let eof = BUFS.with(|bufs| -> io::Result<bool> {
            let (input, out) = &mut *bufs.borrow_mut();
            let n = match tcp.try_read(input) {
                Ok(0) => return Ok(true),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            out.clear();
            conn.process(&input[..n], out);
            let mut written = 0;
            while written < out.len() {
                match tcp.try_write(&out[written..]) {
                    Ok(k) => written += k,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if written < out.len() {
                pending.extend_from_slice(&out[written..]);
            }
            if out.capacity() > 4 * READ {
                // One huge frame arrived: do not keep its buffer.
                *out = Vec::with_capacity(READ + READ / 2);
            }
            Ok(false)
        })?;
        if eof {
            return Ok(());
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = wsx_bench::ServerArgs::parse("echo-ceiling", false);
    let listener = wsx_bench::listen(&args.listen).await?;
    loop {
        let tcp = wsx_bench::accept(&listener).await;
        tokio::spawn(async move {
            let _ = serve(tcp).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(b0: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut f = vec![b0];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        f
    }

    fn unmasked(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = masked(b0, payload, [0; 4]);
        f[1] &= 0x7f;
        let hl = f.len() - payload.len() - 4;
        f.drain(hl..hl + 4);
        f
    }

    #[test]
    fn echoes_frames_split_anywhere() {
        let big: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
        let mut wire = masked(0x82, b"hello world, sixteen", [1, 2, 3, 4]);
        wire.extend(masked(0x89, b"p", [9, 9, 9, 9]));
        wire.extend(masked(0x8a, b"ignored", [5, 6, 7, 8]));
        wire.extend(masked(0x82, &big, [0xde, 0xad, 0xbe, 0xef]));
        wire.extend(masked(0x81, &big[..300], [3, 1, 4, 1]));
        wire.extend(masked(0x88, &[0x03, 0xe8], [7, 7, 7, 7]));
        let mut expect = unmasked(0x82, b"hello world, sixteen");
        expect.extend(unmasked(0x8a, b"p"));
        expect.extend(unmasked(0x82, &big));
        expect.extend(unmasked(0x81, &big[..300]));
        expect.extend(unmasked(0x88, &[0x03, 0xe8]));
        for step in [1, 3, 7, 13, 4096, wire.len()] {
            let mut conn = Conn::new();
            let mut out = Vec::new();
            for chunk in wire.chunks(step) {
                conn.process(chunk, &mut out);
            }
            assert!(conn.closing);
            assert_eq!(out, expect, "step {step}");
        }
    }
}

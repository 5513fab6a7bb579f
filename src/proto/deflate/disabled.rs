//! A build without feature `deflate`: the compressor and decompressor types exist so that the
//! codec keeps one shape, but hold no value (permessage-deflate is never negotiated), so every
//! path that would use them is statically unreachable.

use bytes::BytesMut;

use crate::proto::error::{ProtocolError, SendError};

/// No compressor in this build.
#[derive(Debug)]
pub(crate) enum Deflater {}

/// No decompressor in this build.
#[derive(Debug)]
pub(crate) enum Inflater {}

impl Deflater {
    pub(crate) fn compress(
        &mut self,
        _payload: &[u8],
        _dst: &mut BytesMut,
    ) -> Result<(), SendError> {
        match *self {}
    }

    pub(crate) fn memory_usage(&self) -> usize {
        match *self {}
    }

    pub(crate) fn release(&mut self) -> bool {
        match *self {}
    }

    pub(crate) fn uses(&self) -> u64 {
        match *self {}
    }

    pub(crate) fn no_context_takeover(&self) -> bool {
        match *self {}
    }

    pub(crate) fn settings(&self) -> super::DeflateSettings {
        match *self {}
    }
}

impl Inflater {
    pub(crate) fn decompress(
        &mut self,
        _fragment: &[u8],
        _fin: bool,
        _dst: &mut BytesMut,
        _max_len: usize,
    ) -> Result<(), ProtocolError> {
        match *self {}
    }

    pub(crate) fn memory_usage(&self) -> usize {
        match *self {}
    }

    pub(crate) fn release(&mut self) -> bool {
        match *self {}
    }

    pub(crate) fn uses(&self) -> u64 {
        match *self {}
    }
}

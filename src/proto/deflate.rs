//! TEMPORARY STUB (replaced by the real module)
#![allow(missing_docs, dead_code, unused)]
use super::error::ProtocolError;
use super::Role;
use bytes::BytesMut;
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    pub client_max_window_bits: Option<u8>,
    pub compression_level: u32,
    pub threshold: usize,
    pub mem_level: u8,
}
impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: None,
            compression_level: 6,
            threshold: 64,
            mem_level: 8,
        }
    }
}
impl DeflateConfig {
    pub fn client_offer(&self) -> String {
        String::new()
    }
    pub fn server_negotiate<'a>(
        &self,
        _h: impl IntoIterator<Item = &'a str>,
    ) -> Option<(DeflateParams, String)> {
        None
    }
    pub fn client_accept<'a>(
        &self,
        _h: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<DeflateParams>, NegotiationError> {
        Ok(None)
    }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: u8,
    pub client_max_window_bits: u8,
}
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("x")]
    X,
}
#[derive(Debug)]
pub struct Deflater;
impl Deflater {
    pub fn new(_p: DeflateParams, _r: Role, _l: u32, _m: u8) -> Self {
        Deflater
    }
    pub fn compress(&mut self, _p: &[u8], _d: &mut BytesMut) -> Result<(), ProtocolError> {
        Ok(())
    }
    pub fn memory_usage(&self) -> usize {
        0
    }
}
#[derive(Debug)]
pub struct Inflater;
impl Inflater {
    pub fn new(_p: DeflateParams, _r: Role) -> Self {
        Inflater
    }
    pub fn decompress(
        &mut self,
        _f: &[u8],
        _fin: bool,
        _d: &mut BytesMut,
        _m: usize,
    ) -> Result<(), ProtocolError> {
        Ok(())
    }
    pub fn memory_usage(&self) -> usize {
        0
    }
}
pub fn compress_message(_p: &[u8], _l: u32, _d: &mut BytesMut) -> Result<(), ProtocolError> {
    Ok(())
}
pub fn decompress_message(_d: &[u8], _m: usize, _o: &mut BytesMut) -> Result<(), ProtocolError> {
    Ok(())
}

//! Masking (RFC 6455 §5.3): XOR of the payload with a repeating 4-byte key.
//!
//! Done a block at a time over fixed-size arrays so the compiler emits wide vector XORs, in safe
//! code. `benches/proto.rs` compares it with `memcpy` of the same size.

/// XORs `buf` with `key`, starting at position `offset` of the key stream (the number of payload
/// bytes of this frame already masked). Applying it twice restores the data.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // The key as it stands at `offset` (a rotation: cheaper than picking bytes).
    let shift = (offset & 3) as u32;
    let key = u32::from_le_bytes(key)
        .rotate_right(8 * shift)
        .to_le_bytes();
    // Blocks and words are multiples of 4 bytes long, so the key phase is the same at the start
    // of each.
    const BLOCK: usize = 64;
    if buf.len() < BLOCK {
        // (Small payloads, the usual message, skip the block loop's setup.)
        mask_words(buf, key);
        return;
    }
    // The key repeated over a block, built a word at a time (a byte at a time costs as much as
    // masking a kilobyte's worth of blocks).
    let mut wide = [0u8; BLOCK];
    let key64 = key_word(key).to_ne_bytes();
    for w in wide.chunks_exact_mut(8) {
        w.copy_from_slice(&key64);
    }
    let mut blocks = buf.chunks_exact_mut(BLOCK);
    for block in &mut blocks {
        // A fixed-size array lets the compiler emit full-width vector XORs.
        if let Ok(block) = <&mut [u8; BLOCK]>::try_from(block) {
            for (b, m) in block.iter_mut().zip(wide.iter()) {
                *b ^= m;
            }
        }
    }
    mask_words(blocks.into_remainder(), key);
}

/// The key twice over as a word, in memory order (the same on either byte order).
#[inline]
fn key_word(key: [u8; 4]) -> u64 {
    let half = u64::from(u32::from_ne_bytes(key));
    half | (half << 32)
}

/// Masks `buf` a word at a time with `key` as it stands at the start of `buf`.
#[inline]
fn mask_words(buf: &mut [u8], key: [u8; 4]) {
    let key64 = key_word(key);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        if let Ok(word) = <&mut [u8; 8]>::try_from(word) {
            *word = (u64::from_ne_bytes(*word) ^ key64).to_ne_bytes();
        }
    }
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// The byte-at-a-time reference the fast version is checked against.
#[doc(hidden)]
pub fn apply_mask_reference(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_for_every_length_and_offset() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..300u32).map(|i| (i * 31 + 7) as u8).collect();
        for len in 0..=300 {
            for offset in 0..8 {
                let mut fast = data[..len].to_vec();
                let mut slow = data[..len].to_vec();
                apply_mask(&mut fast, key, offset);
                apply_mask_reference(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
                if len > 0 && key != [0; 4] {
                    apply_mask(&mut fast, key, offset);
                    assert_eq!(fast, &data[..len]);
                }
            }
        }
    }

    #[test]
    fn rfc_masked_hello() {
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn split_masking_equals_whole() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        for cut in [1usize, 3, 5, 64, 65, 999] {
            let mut parts = data.clone();
            let (a, b) = parts.split_at_mut(cut);
            apply_mask(a, key, 0);
            apply_mask(b, key, cut);
            assert_eq!(parts, whole, "cut {cut}");
        }
    }
}

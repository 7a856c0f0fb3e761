//! Lowercase hex encoding for the digests this crate prints. Private helper:
//! it must stay a formatter and never grow a parser.

/// `bytes` as lowercase hex, two digits per byte.
pub(crate) fn lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// 16 bytes (an event id) as 32 lowercase hex digits.
pub(crate) fn lower_16(bytes: [u8; 16]) -> [u8; 32] {
    let words = u128::from_le_bytes(bytes);
    let mut out = [0u8; 32];
    let (first, second) = out.split_at_mut(16);
    first.copy_from_slice(&lower_8(words as u64).to_le_bytes());
    second.copy_from_slice(&lower_8((words >> 64) as u64).to_le_bytes());
    out
}

/// [`lower_16`] appended to `out`, each half stored straight from its word
/// (assembling the digits on the stack and copying them out stalls on
/// store forwarding).
pub(crate) fn lower_16_into(bytes: [u8; 16], out: &mut Vec<u8>) {
    let words = u128::from_le_bytes(bytes);
    out.extend_from_slice(&lower_8(words as u64).to_le_bytes());
    out.extend_from_slice(&lower_8((words >> 64) as u64).to_le_bytes());
}

/// Eight bytes (`half`, the first in its lowest bits) as 16 lowercase hex
/// digits in one 128-bit word (the first digit in the lowest byte): each
/// byte spread to a 16-bit lane, its two nibbles put in the lane's two
/// bytes, and every nibble turned into its digit at once (`'0' + n`, plus
/// `'a' - '0' - 10` where `n > 9`). No table reads, no per-digit stores.
#[inline]
fn lower_8(half: u64) -> u128 {
    const LOW_BYTES: u128 = 0x00ff_00ff_00ff_00ff_00ff_00ff_00ff_00ff;
    const NIBBLES: u128 = 0x000f_000f_000f_000f_000f_000f_000f_000f;
    const ONES: u128 = 0x0101_0101_0101_0101_0101_0101_0101_0101;
    // Byte i of the input at bits 8i; spread to bits 16i..16i+8.
    let mut x = u128::from(half);
    x = (x | (x << 32)) & 0x0000_0000_ffff_ffff_0000_0000_ffff_ffff;
    x = (x | (x << 16)) & 0x0000_ffff_0000_ffff_0000_ffff_0000_ffff;
    x = (x | (x << 8)) & LOW_BYTES;
    // The high nibble first (the lane's low byte), then the low one.
    let nibbles = ((x >> 4) & NIBBLES) | ((x & NIBBLES) << 8);
    // Bit 4 of n + 6 is set exactly for n in 10..=15; no byte carries.
    let letters = ((nibbles + 6 * ONES) >> 4) & ONES;
    nibbles + u128::from(b'0') * ONES + letters * u128::from(b'a' - b'0' - 10)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lower_hex() {
        assert_eq!(super::lower(&[]), "");
        assert_eq!(super::lower(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    /// Every byte value at every position, against the per-digit writer.
    #[test]
    fn lower_16_equals_lower() {
        for v in 0..=255u8 {
            for at in 0..16 {
                let mut bytes: [u8; 16] = std::array::from_fn(|i| (i as u8).wrapping_mul(37));
                bytes[at] = v;
                let fast = super::lower_16(bytes);
                assert_eq!(
                    std::str::from_utf8(&fast).unwrap(),
                    super::lower(&bytes),
                    "{v} at {at}"
                );
                let mut appended = b"x".to_vec();
                super::lower_16_into(bytes, &mut appended);
                assert_eq!(appended[0], b'x');
                assert_eq!(&appended[1..], fast.as_slice(), "{v} at {at}");
            }
        }
    }
}

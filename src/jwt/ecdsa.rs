//! ECDSA signature canonicality: only the low-S form of a signature is accepted.
//!
//! An ECDSA signature `(r, s)` has a twin `(r, n − s)` that verifies just as well (`n` is the
//! curve order). Neither AWS-LC nor RustCrypto's `p256`/`p384` refuse the twin, so without this
//! check every ES256/ES384 token has a second valid spelling: the claims are the same, but a
//! deny list, replay cache or log correlation keyed on the token bytes sees two tokens. We accept
//! only `s <= (n − 1) / 2` ("low S", as Bitcoin's BIP 62 and libsecp256k1 do) and refuse the rest.
//!
//! This reads the fixed-width `R || S` encoding of RFC 7518 §3.4; it is a comparison of two
//! big-endian numbers, not cryptography. An issuer whose signer does not normalize S produces a
//! high-S signature about half the time: such tokens are refused, so such an issuer must be
//! configured to normalize (most libraries offer it; the mock issuer does it).

use jsonwebtoken::Algorithm;

/// `(n − 1) / 2` for P-256 (SEC 2 §2.4.2), big-endian.
const P256_HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// `(n − 1) / 2` for P-384 (SEC 2 §2.5.1), big-endian.
const P384_HALF_ORDER: [u8; 48] = [
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xe3, 0xb1, 0xa6, 0xc0, 0xfa, 0x1b, 0x96, 0xef,
    0xac, 0x0d, 0x06, 0xd9, 0x24, 0x58, 0x53, 0xbd, 0x76, 0x76, 0x0c, 0xb5, 0x66, 0x62, 0x94, 0xb9,
];

/// The half order of `alg`'s curve, for the ECDSA algorithms.
fn half_order(alg: Algorithm) -> Option<&'static [u8]> {
    match alg {
        Algorithm::ES256 => Some(&P256_HALF_ORDER),
        Algorithm::ES384 => Some(&P384_HALF_ORDER),
        _ => None,
    }
}

/// Whether `signature` may be checked for `alg`: true for every non-ECDSA algorithm, and for an
/// ECDSA signature whose S is at most half the curve order.
///
/// A signature of the wrong length passes here; the backend refuses it (RFC 7518 §3.4).
pub(crate) fn is_canonical(alg: Algorithm, signature: &[u8]) -> bool {
    let Some(half) = half_order(alg) else {
        return true;
    };
    if signature.len() != 2 * half.len() {
        return true;
    }
    // Equal-length big-endian byte strings compare like the numbers they encode.
    signature[half.len()..] <= *half
}

/// Replaces a high S by `n − S`, so a signer that does not normalize yields the low-S twin.
#[cfg(feature = "test-util")]
pub(crate) fn normalize(alg: Algorithm, signature: &mut [u8]) {
    let Some(half) = half_order(alg) else {
        return;
    };
    if signature.len() != 2 * half.len() || is_canonical(alg, signature) {
        return;
    }
    // n = 2 * half + 1, so n − s = (2 * half + 1) − s, computed byte by byte from the right.
    let s = &mut signature[half.len()..];
    let mut carry = 1u16; // the "+ 1"
    let mut borrow = 0i16;
    for i in (0..half.len()).rev() {
        let doubled = u16::from(half[i]) * 2 + carry;
        carry = doubled >> 8;
        let digit = i16::from((doubled & 0xff) as u8) - i16::from(s[i]) - borrow;
        borrow = i16::from(digit < 0);
        s[i] = (digit + 256 * borrow) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s_is_compared_against_half_the_order() {
        let mut sig = [0u8; 64];
        sig[32..].copy_from_slice(&P256_HALF_ORDER);
        assert!(is_canonical(Algorithm::ES256, &sig));
        sig[63] += 1;
        assert!(!is_canonical(Algorithm::ES256, &sig));
        // Only ES* and only the fixed-width encoding are judged here.
        assert!(is_canonical(Algorithm::RS256, &[0xff; 64]));
        assert!(is_canonical(Algorithm::ES256, &[0xff; 63]));
        assert!(!is_canonical(Algorithm::ES384, &[0xff; 96]));
    }

    #[test]
    #[cfg(feature = "test-util")]
    fn normalize_yields_n_minus_s() {
        // s = half + 1 (high) becomes n − s = half.
        let mut sig = [0u8; 64];
        sig[32..].copy_from_slice(&P256_HALF_ORDER);
        sig[63] += 1;
        normalize(Algorithm::ES256, &mut sig);
        assert_eq!(sig[32..], P256_HALF_ORDER);
        // s = n − 1 (the highest) becomes 1; n − 1 = 2 * half.
        let mut sig = [0u8; 96];
        let mut carry = 0u8;
        for i in (0..48).rev() {
            sig[48 + i] = (P384_HALF_ORDER[i] << 1) | carry;
            carry = P384_HALF_ORDER[i] >> 7;
        }
        let mut expected = [0u8; 48];
        expected[47] = 1;
        normalize(Algorithm::ES384, &mut sig);
        assert_eq!(sig[48..], expected);
    }
}

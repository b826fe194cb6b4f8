//! STUN message integrity (HMAC-SHA1, RFC 8489 §14.5) on ring.
//!
//! str0m's OpenSSL provider builds an `EVP_PKEY` and a signer for every message: with a
//! thousand peers' consent checks and their answers, that was 2 % of a media worker's CPU.
//! ring keys the HMAC on the stack.

use ring::hmac;
use str0m_proto::Sha1HmacProvider;

#[derive(Debug)]
pub(super) struct RingSha1Hmac;

impl Sha1HmacProvider for RingSha1Hmac {
    fn sha1_hmac(&self, key: &[u8], payloads: &[&[u8]]) -> [u8; 20] {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
        let mut ctx = hmac::Context::with_key(&key);
        for p in payloads {
            ctx.update(p);
        }
        let mut out = [0u8; 20];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2202_vectors() {
        let h = RingSha1Hmac;
        // Test case 1: a 20-byte key, "Hi There".
        assert_eq!(
            h.sha1_hmac(&[0x0b; 20], &[b"Hi There"]),
            hex("b617318655057264e28bc0b6fb378c8ef146be00")
        );
        // Test case 6: a key longer than the block (80 bytes), hashed first.
        assert_eq!(
            h.sha1_hmac(
                &[0xaa; 80],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            ),
            hex("aa4ae5e15272d00e95705637ce8a3b55ed402112")
        );
    }

    #[test]
    fn pieces_hash_as_their_concatenation_and_match_str0ms_openssl() {
        let h = RingSha1Hmac;
        let whole = h.sha1_hmac(b"password", &[b"STUN header and attributes"]);
        let pieces = h.sha1_hmac(b"password", &[b"STUN header", b" and", b" attributes"]);
        assert_eq!(whole, pieces);
        let openssl = str0m::crypto::from_feature_flags().sha1_hmac_provider;
        for len in [0usize, 1, 63, 64, 65, 200] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            assert_eq!(
                h.sha1_hmac(b"key", &[&data]),
                openssl.sha1_hmac(b"key", &[&data])
            );
        }
    }

    fn hex(s: &str) -> [u8; 20] {
        let mut out = [0u8; 20];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}

//! SRTP the server applies itself to the audio it writes to listeners: RFC 3711's key
//! derivation and RFC 7714's AEAD AES-GCM, one key per peer expanded once, sealing in place
//! in the send batch's buffer. The AEAD is ring's: OpenSSL 3 spent ≈ 3,000 instructions per
//! packet just setting a new IV on an `EVP_CIPHER_CTX` (parameter lookups by name), several
//! times the encryption itself.
//!
//! Why not str0m's: its `protect_rtp` returns a new `Vec` per packet and re-keys the cipher
//! per packet, and reaching it means a full timeout and output pass of the peer's `Rtc` per
//! packet; together those were more than half of the CPU of a fan-out (docs/benchmarks.md).
//! str0m still does everything else for the peer (RTCP, its Sender Reports, inbound SRTP),
//! and it derives the same keys from the same DTLS export (`crate::dtls::Exported`).
//!
//! Nonce uniqueness, on which GCM depends: a nonce is the session salt XOR (SSRC, ROC, SEQ).
//! The server owns each slot's sequence numbers (`slots.rs`) and writes every sequence number
//! exactly once, either here or through str0m, never both; both paths use the same key.

use openssl::symm::{Cipher, Crypter, Mode};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use str0m::crypto::dtls::SrtpProfile;

/// RFC 3711 §4.3.1 labels.
const LABEL_RTP_ENCRYPTION: u8 = 0;
const LABEL_RTP_SALT: u8 = 2;
/// AEAD AES-GCM's session salt (RFC 7714 §8.1) and tag.
const SALT_LEN: usize = 12;
#[cfg(test)]
const TAG_LEN: usize = 16;

/// Seals RTP packets for one peer: the RTP encryption key and salt of the direction the
/// server sends in, derived once.
pub struct Sealer {
    key: LessSafeKey,
    salt: [u8; SALT_LEN],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    /// A sealer for the keys `material` exported by DTLS (RFC 5764 §4.2: client key, server
    /// key, client salt, server salt). `client` picks the DTLS client's write keys, as str0m
    /// does for the side that was active. None for a profile other than AEAD AES-GCM (those
    /// peers keep str0m's path).
    pub fn new(profile: SrtpProfile, material: &[u8], client: bool) -> Option<Self> {
        let (key_len, ecb, aead) = match profile {
            SrtpProfile::AEAD_AES_128_GCM => (16, Cipher::aes_128_ecb(), &AES_128_GCM),
            SrtpProfile::AEAD_AES_256_GCM => (32, Cipher::aes_256_ecb(), &AES_256_GCM),
            _ => return None,
        };
        if material.len() != 2 * (key_len + SALT_LEN) {
            return None;
        }
        let (key_at, salt_at) = if client {
            (0, 2 * key_len)
        } else {
            (key_len, 2 * key_len + SALT_LEN)
        };
        let master = &material[key_at..key_at + key_len];
        let master_salt = &material[salt_at..salt_at + SALT_LEN];
        let mut key = [0u8; 32];
        let mut salt = [0u8; SALT_LEN];
        derive(
            ecb,
            master,
            master_salt,
            LABEL_RTP_ENCRYPTION,
            &mut key[..key_len],
        )
        .ok()?;
        derive(ecb, master, master_salt, LABEL_RTP_SALT, &mut salt).ok()?;
        let key = LessSafeKey::new(UnboundKey::new(aead, &key[..key_len]).ok()?);
        Some(Self { key, salt })
    }

    /// Seals the RTP packet in `buf` in place: the first `header_len` bytes (the RTP header
    /// with its extensions) are authenticated, the rest encrypted, and the tag appended.
    /// `index` is the packet's extended sequence number (ROC · 2¹⁶ + SEQ). False when the
    /// AEAD refused (the packet must then not be sent).
    pub fn seal(&mut self, buf: &mut Vec<u8>, header_len: usize, ssrc: u32, index: u64) -> bool {
        let nonce = Nonce::assume_unique_for_key(self.nonce(ssrc, index));
        let (header, body) = buf.split_at_mut(header_len);
        match self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&*header), body)
        {
            Ok(tag) => {
                buf.extend_from_slice(tag.as_ref());
                true
            }
            Err(_) => false,
        }
    }

    /// RFC 7714 §8.1: 00 00 ‖ SSRC ‖ ROC ‖ SEQ, XOR the session salt.
    fn nonce(&self, ssrc: u32, index: u64) -> [u8; SALT_LEN] {
        let mut iv = [0u8; SALT_LEN];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&((index >> 16) as u32).to_be_bytes());
        iv[10..12].copy_from_slice(&(index as u16).to_be_bytes());
        for (b, s) in iv.iter_mut().zip(self.salt) {
            *b ^= s;
        }
        iv
    }
}

/// RFC 3711 §4.3.1 with a key derivation rate of 0 (and RFC 6188 §7 for 256-bit keys): AES
/// in counter mode over the master salt with `label` in its seventh byte, the 96-bit salts
/// of AEAD profiles padded with zeros as RFC 7714 §11 and libsrtp do.
fn derive(
    ecb: Cipher,
    master: &[u8],
    master_salt: &[u8],
    label: u8,
    out: &mut [u8],
) -> Result<(), openssl::error::ErrorStack> {
    let mut aes = Crypter::new(ecb, Mode::Encrypt, master, None)?;
    aes.pad(false);
    let mut input = [0u8; 16];
    input[..master_salt.len()].copy_from_slice(master_salt);
    input[7] ^= label;
    let mut block = [0u8; 32];
    for (round, chunk) in out.chunks_mut(16).enumerate() {
        input[14..].copy_from_slice(&(round as u16).to_be_bytes());
        aes.update(&input, &mut block)?;
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
    Ok(())
}

#[cfg(test)]
mod tests;

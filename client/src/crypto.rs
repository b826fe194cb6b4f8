//! The client's str0m crypto: str0m's OpenSSL provider, with AEAD AES-GCM SRTP on ring.
//!
//! OpenSSL 3 spends thousands of instructions per packet setting a new IV on a cipher context
//! (parameter look-ups by name), several times the AES-GCM itself; a swarm of listeners
//! decrypts every packet it hears, so that cost decided how many listeners one core drives.
//! ring expands a key once and takes a nonce per call.

use std::sync::{Arc, OnceLock};

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_128_GCM, AES_256_GCM};
use str0m::crypto::{
    AeadAes128GcmCipher, AeadAes256GcmCipher, CryptoError, CryptoProvider, SrtpProvider,
    SupportedAeadAes128Gcm, SupportedAeadAes256Gcm, SupportedAes128CmSha1_80,
};

const TAG_LEN: usize = 16;
/// Associated data up to this size is joined on the stack (an RTP header with extensions, or
/// an SRTCP header and index); longer is joined on the heap.
const AAD_ON_STACK: usize = 256;

/// The provider the client's peers are built with.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            Arc::new(CryptoProvider {
                srtp_provider: &RingGcm,
                ..base()
            })
        })
        .clone()
}

fn base() -> CryptoProvider {
    str0m::crypto::from_feature_flags()
}

#[derive(Debug)]
struct RingGcm;

impl SrtpProvider for RingGcm {
    fn aes_128_cm_sha1_80(&self) -> &'static dyn SupportedAes128CmSha1_80 {
        base().srtp_provider.aes_128_cm_sha1_80()
    }

    fn aead_aes_128_gcm(&self) -> &'static dyn SupportedAeadAes128Gcm {
        &RingGcm
    }

    fn aead_aes_256_gcm(&self) -> &'static dyn SupportedAeadAes256Gcm {
        &RingGcm
    }

    fn srtp_aes_128_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        base()
            .srtp_provider
            .srtp_aes_128_ecb_round(key, input, output)
    }

    fn srtp_aes_256_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        base()
            .srtp_provider
            .srtp_aes_256_ecb_round(key, input, output)
    }
}

impl SupportedAeadAes128Gcm for RingGcm {
    fn create_cipher(&self, key: [u8; 16], _encrypt: bool) -> Box<dyn AeadAes128GcmCipher> {
        Box::new(Gcm::new(&AES_128_GCM, &key))
    }
}

impl SupportedAeadAes256Gcm for RingGcm {
    fn create_cipher(&self, key: [u8; 32], _encrypt: bool) -> Box<dyn AeadAes256GcmCipher> {
        Box::new(Gcm::new(&AES_256_GCM, &key))
    }
}

/// One direction's key; the same type seals and opens.
struct Gcm(LessSafeKey);

impl std::fmt::Debug for Gcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gcm")
    }
}

impl Gcm {
    fn new(algorithm: &'static ring::aead::Algorithm, key: &[u8]) -> Self {
        let key = UnboundKey::new(algorithm, key).expect("a key of the algorithm's length");
        Gcm(LessSafeKey::new(key))
    }

    fn seal(
        &self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        let n = input.len();
        if output.len() < n + TAG_LEN {
            return Err(CryptoError::Other("SRTP output buffer too short".into()));
        }
        output[..n].copy_from_slice(input);
        let nonce = Nonce::assume_unique_for_key(*iv);
        let tag = self
            .0
            .seal_in_place_separate_tag(nonce, Aad::from(aad), &mut output[..n])
            .map_err(|_| CryptoError::Other("AES-GCM seal failed".into()))?;
        output[n..n + TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(())
    }

    fn open(
        &self,
        iv: &[u8; 12],
        aads: &[&[u8]],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let Some(n) = input.len().checked_sub(TAG_LEN) else {
            return Err(CryptoError::Other(
                "SRTP packet shorter than its tag".into(),
            ));
        };
        if output.len() < n {
            return Err(CryptoError::Other("SRTP output buffer too short".into()));
        }
        let (cipher_text, tag) = input.split_at(n);
        let tag = Tag::try_from(tag).map_err(|_| CryptoError::Other("bad tag".into()))?;
        output[..n].copy_from_slice(cipher_text);
        let nonce = Nonce::assume_unique_for_key(*iv);
        let aad_len: usize = aads.iter().map(|a| a.len()).sum();
        let mut stack = [0u8; AAD_ON_STACK];
        let heap;
        let aad: &[u8] = match aads {
            [one] => one,
            _ if aad_len <= AAD_ON_STACK => {
                let mut at = 0;
                for a in aads {
                    stack[at..at + a.len()].copy_from_slice(a);
                    at += a.len();
                }
                &stack[..aad_len]
            }
            _ => {
                heap = aads.concat();
                &heap
            }
        };
        self.0
            .open_in_place_separate_tag(nonce, Aad::from(aad), tag, &mut output[..n], 0..)
            .map(|plain| plain.len())
            .map_err(|_| CryptoError::Other("SRTP authentication failed".into()))
    }
}

/// str0m has one trait per key size with the same methods; `Gcm` serves both.
macro_rules! gcm_cipher {
    ($trait:ident) => {
        impl $trait for Gcm {
            fn encrypt(
                &mut self,
                iv: &[u8; 12],
                aad: &[u8],
                input: &[u8],
                output: &mut [u8],
            ) -> Result<(), CryptoError> {
                self.seal(iv, aad, input, output)
            }

            fn decrypt(
                &mut self,
                iv: &[u8; 12],
                aads: &[&[u8]],
                input: &[u8],
                output: &mut [u8],
            ) -> Result<usize, CryptoError> {
                self.open(iv, aads, input, output)
            }
        }
    };
}

gcm_cipher!(AeadAes128GcmCipher);
gcm_cipher!(AeadAes256GcmCipher);

#[cfg(test)]
mod tests {
    use super::*;

    /// What ring seals, str0m's OpenSSL provider opens, and the other way round, with one and
    /// with two pieces of associated data (SRTP's and SRTCP's shapes).
    #[test]
    fn ring_and_openssl_agree_both_ways() {
        let key = [7u8; 32];
        let iv = [3u8; 12];
        let aad = [0x80u8, 111, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        let plain: Vec<u8> = (0..120u8).collect();
        let theirs = base().srtp_provider.aead_aes_256_gcm();
        let mut ours = RingGcm.aead_aes_256_gcm().create_cipher(key, true);
        let mut sealed = vec![0u8; plain.len() + TAG_LEN];
        ours.encrypt(&iv, &aad, &plain, &mut sealed).unwrap();
        let mut opened = vec![0u8; plain.len()];
        let n = theirs
            .create_cipher(key, false)
            .decrypt(&iv, &[&aad[..4], &aad[4..]], &sealed, &mut opened)
            .unwrap();
        assert_eq!(&opened[..n], &plain[..]);
        let mut sealed2 = vec![0u8; plain.len() + TAG_LEN];
        theirs
            .create_cipher(key, true)
            .encrypt(&iv, &aad, &plain, &mut sealed2)
            .unwrap();
        assert_eq!(sealed, sealed2, "same key, nonce and data: same bytes");
        let mut opened2 = vec![0u8; plain.len()];
        let n = ours.decrypt(&iv, &[&aad[..5], &aad[5..]], &sealed2, &mut opened2);
        assert_eq!(&opened2[..n.unwrap()], &plain[..]);
        sealed2[20] ^= 1;
        assert!(ours.decrypt(&iv, &[&aad], &sealed2, &mut opened2).is_err());
        let mut short = [0u8; 4];
        assert!(ours
            .decrypt(&iv, &[&aad], &sealed[..10], &mut short)
            .is_err());
    }
}

//! The sealer against another SRTP implementation (webrtc-rs's framing: its own key
//! derivation, nonces and ROC tracking) reading what it sealed, with keys split from one DTLS
//! export as each side of a handshake would. Chromium's BoringSSL reads it too (tests/it).

use super::*;
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;

fn material(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(11))
        .collect()
}

/// What the receiving side of the export reads: the sender's master key and salt.
fn opener(profile: ProtectionProfile, mat: &[u8], key_len: usize, client: bool) -> Context {
    let (key_at, salt_at) = if client {
        (0, 2 * key_len)
    } else {
        (key_len, 2 * key_len + SALT_LEN)
    };
    let provider = rtc::crypto::default_provider().expect("ring is built in");
    Context::new(
        &mat[key_at..key_at + key_len],
        &mat[salt_at..salt_at + SALT_LEN],
        profile,
        None,
        None,
        provider.crypto(),
    )
    .expect("a context")
}

fn packet(seq: u16, payload: &[u8]) -> (Vec<u8>, usize) {
    let mut buf = Vec::new();
    let ids = crate::media::rtp_out::ExtIds {
        level: 1,
        mid: 4,
        send_time: 0,
        capture: 5,
    };
    let wire = crate::media::rtp_out::SlotWire::new(0xcafe_f00d, "1");
    let h = crate::media::rtp_out::Header {
        pt: 111,
        marker: false,
        seq,
        time: u32::from(seq) * 960,
        wire: &wire,
        level: Some((-20, true)),
        capture: Some((42 << 32, None)),
        sent: None,
    };
    let len = crate::media::rtp_out::write(&mut buf, &h, &ids);
    buf.extend_from_slice(payload);
    (buf, len)
}

fn sealed_packets_open(profile: SrtpProfile, theirs: ProtectionProfile, key_len: usize) {
    let mat = material(2 * (key_len + SALT_LEN));
    for client in [true, false] {
        let mut sealer = Sealer::new(profile, &mat, client).expect("an AEAD profile");
        let mut open = opener(theirs, &mat, key_len, client);
        // Across a roll-over of the sequence number: the index carries the ROC.
        for index in 65_533..65_539u64 {
            let payload: Vec<u8> = (0..(index % 90) as u8 + 20).collect();
            let (plain, header_len) = packet(index as u16, &payload);
            let mut buf = plain.clone();
            assert!(sealer.seal(&mut buf, header_len, 0xcafe_f00d, index));
            assert_eq!(buf.len(), plain.len() + TAG_LEN);
            assert_eq!(
                buf[..header_len],
                plain[..header_len],
                "the header stays clear"
            );
            assert_ne!(
                buf[header_len..plain.len()],
                plain[header_len..],
                "the payload does not"
            );
            let opened = open
                .decrypt_rtp(&buf)
                .expect("the other implementation opens it");
            assert_eq!(&opened[..], &plain[..], "client {client}, index {index}");
        }
        // A flipped bit anywhere fails authentication.
        let (plain, header_len) = packet(7, b"payload");
        for at in [3, header_len + 2] {
            let mut buf = plain.clone();
            assert!(sealer.seal(&mut buf, header_len, 0xcafe_f00d, (1 << 16) + 7));
            buf[at] ^= 1;
            assert!(
                open.decrypt_rtp(&buf).is_err(),
                "flipped byte {at} accepted"
            );
        }
    }
}

#[test]
fn aes_256_gcm_packets_open_elsewhere() {
    sealed_packets_open(
        SrtpProfile::AEAD_AES_256_GCM,
        ProtectionProfile::AeadAes256Gcm,
        32,
    );
}

#[test]
fn aes_128_gcm_packets_open_elsewhere() {
    sealed_packets_open(
        SrtpProfile::AEAD_AES_128_GCM,
        ProtectionProfile::AeadAes128Gcm,
        16,
    );
}

#[test]
fn other_profiles_and_short_material_are_declined() {
    let mat = material(60);
    assert!(Sealer::new(SrtpProfile::AES128_CM_SHA1_80, &mat, true).is_none());
    assert!(Sealer::new(SrtpProfile::AEAD_AES_256_GCM, &mat[..40], true).is_none());
}

/// RFC 3711 appendix B.3: the AES-CM key derivation's published vector.
#[test]
fn key_derivation_matches_rfc_3711() {
    let hex = |s: &str| {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
    };
    let master = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
    let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
    let mut key = [0u8; 16];
    derive(Cipher::aes_128_ecb(), &master, &salt, 0, &mut key).unwrap();
    assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
    let mut session_salt = [0u8; 14];
    derive(Cipher::aes_128_ecb(), &master, &salt, 2, &mut session_salt).unwrap();
    assert_eq!(session_salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
}

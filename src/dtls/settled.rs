//! A peer's DTLS after its handshake, without OpenSSL's session (≈ 37 KiB per peer: the
//! `SSL`, a 21 KiB handshake buffer DTLS keeps for retransmissions, record state).
//!
//! Audio rooms use DTLS for one thing: the SRTP keys, exported at the handshake's end. What can
//! still arrive afterwards is a peer's retransmitted final flight (ours was lost: it is sent
//! again as it was), a close_notify alert, and application data if a client negotiated a data
//! channel (SCTP). So the record keys are derived once (RFC 5246 §6.3) and the session freed;
//! alerts and application data in and out are AES-GCM records (RFC 5288, RFC 6347 §4.1).
//! Other cipher suites keep the OpenSSL session (`Settled::from_open` answers `None`).

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use openssl::ssl::SslRef;
use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};

const HANDSHAKE: u8 = 22;
const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const APPLICATION_DATA: u8 = 23;
const DTLS_1_2: [u8; 2] = [0xfe, 0xfd];
const HEADER: usize = 13;
const EXPLICIT_NONCE: usize = 8;
const TAG: usize = 16;

/// How many times a lost final flight is sent again: a peer's retransmission timer doubles
/// from one second, so six answers cover a minute of loss; a forged flood gets no more.
const MAX_REPLAYS: u8 = 6;

pub(super) struct Settled {
    cipher: Cipher,
    write_key: Vec<u8>,
    write_salt: [u8; 4],
    read_key: Vec<u8>,
    read_salt: [u8; 4],
    /// The next sequence number of ours in epoch 1.
    next_seq: u64,
    /// Our last flight as sent, if we were the DTLS server (the client's is acknowledged by
    /// the server's Finished, so a client never sends its flight again after the handshake).
    final_flight: Vec<Vec<u8>>,
    replays: u8,
}

/// What an inbound datagram asked for.
pub(super) enum Inbound<'a> {
    Nothing,
    CloseNotify,
    SendAgain(&'a [Vec<u8>]),
}

impl Settled {
    /// The record state of an open session whose suite is AES-GCM; `sent_seq` is the highest
    /// epoch-1 sequence number it sent, `final_flight` its last flight if it was the server
    /// (empty for a client).
    pub(super) fn from_open(
        ssl: &SslRef,
        server: bool,
        final_flight: Vec<Vec<u8>>,
        sent_seq: Option<u64>,
    ) -> Option<Settled> {
        let name = ssl.current_cipher()?.name();
        let (cipher, key_len, prf) = if name.ends_with("AES128-GCM-SHA256") {
            (Cipher::aes_128_gcm(), 16, MessageDigest::sha256())
        } else if name.ends_with("AES256-GCM-SHA384") {
            (Cipher::aes_256_gcm(), 32, MessageDigest::sha384())
        } else {
            return None;
        };
        let mut master = [0u8; 48];
        if ssl.session()?.master_key(&mut master) != 48 {
            return None;
        }
        let (mut client_random, mut server_random) = ([0u8; 32], [0u8; 32]);
        if ssl.client_random(&mut client_random) != 32
            || ssl.server_random(&mut server_random) != 32
        {
            return None;
        }
        // key_block: client key, server key, client IV, server IV (AEAD suites: no MAC keys).
        let mut seed = server_random.to_vec();
        seed.extend_from_slice(&client_random);
        let block = prf_hash(prf, &master, b"key expansion", &seed, 2 * key_len + 8).ok()?;
        let (client_key, rest) = block.split_at(key_len);
        let (server_key, ivs) = rest.split_at(key_len);
        let salt = |i: usize| -> [u8; 4] { ivs[i..i + 4].try_into().expect("4 bytes") };
        let (ours, theirs) = if server { (1, 0) } else { (0, 1) };
        let keys = [client_key, server_key];
        Some(Settled {
            cipher,
            write_key: keys[ours].to_vec(),
            write_salt: salt(ours * 4),
            read_key: keys[theirs].to_vec(),
            read_salt: salt(theirs * 4),
            next_seq: sent_seq.map_or(0, |s| s + 1),
            final_flight,
            replays: 0,
        })
    }

    /// One inbound datagram, record by record; application data that authenticates goes to
    /// `data` (while it holds fewer than `max` records).
    pub(super) fn on_datagram(
        &mut self,
        datagram: &[u8],
        data: &mut std::collections::VecDeque<Vec<u8>>,
        max: usize,
    ) -> Inbound<'_> {
        let mut again = false;
        for r in records(datagram) {
            match r.kind {
                APPLICATION_DATA if r.epoch == 1 && data.len() < max => {
                    if let Some(plain) = self.open(&r) {
                        data.push_back(plain);
                    }
                }
                ALERT if r.epoch == 1 => {
                    if let Some(alert) = self.open(&r) {
                        // Any fatal alert ends the session as close_notify does.
                        if alert.len() == 2 && (alert[1] == 0 || alert[0] == 2) {
                            return Inbound::CloseNotify;
                        }
                    }
                }
                HANDSHAKE | CHANGE_CIPHER_SPEC => again = true,
                _ => {}
            }
        }
        if again && !self.final_flight.is_empty() && self.replays < MAX_REPLAYS {
            self.replays += 1;
            return Inbound::SendAgain(&self.final_flight);
        }
        Inbound::Nothing
    }

    /// Our close_notify, as one datagram.
    pub(super) fn close_notify(&mut self) -> Option<Vec<u8>> {
        self.seal(ALERT, &[1, 0]) // warning, close_notify
    }

    /// Application data (a data channel's SCTP packet), as one datagram.
    pub(super) fn application_data(&mut self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal(APPLICATION_DATA, plain)
    }

    /// One epoch-1 record of ours.
    fn seal(&mut self, kind: u8, plain: &[u8]) -> Option<Vec<u8>> {
        if plain.len() > u16::MAX as usize - EXPLICIT_NONCE - TAG {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let explicit = epoch_seq(1, seq);
        let aad = aad(&explicit, kind, plain.len());
        let mut tag = [0u8; TAG];
        let nonce = nonce(&self.write_salt, &explicit);
        let key = &self.write_key;
        let sealed = encrypt_aead(self.cipher, key, Some(&nonce), &aad, plain, &mut tag).ok()?;
        let body_len = EXPLICIT_NONCE + sealed.len() + TAG;
        let mut d = Vec::with_capacity(HEADER + body_len);
        d.push(kind);
        d.extend_from_slice(&DTLS_1_2);
        d.extend_from_slice(&explicit);
        d.extend_from_slice(&(body_len as u16).to_be_bytes());
        d.extend_from_slice(&explicit);
        d.extend_from_slice(&sealed);
        d.extend_from_slice(&tag);
        Some(d)
    }

    /// The plaintext of an epoch-1 record of the peer's, if it authenticates.
    fn open(&self, r: &Record<'_>) -> Option<Vec<u8>> {
        if r.body.len() < EXPLICIT_NONCE + TAG {
            return None;
        }
        let (explicit, rest) = r.body.split_at(EXPLICIT_NONCE);
        let (sealed, tag) = rest.split_at(rest.len() - TAG);
        let aad = aad(&epoch_seq(r.epoch, r.seq), r.kind, sealed.len());
        let nonce = nonce(&self.read_salt, explicit);
        decrypt_aead(self.cipher, &self.read_key, Some(&nonce), &aad, sealed, tag).ok()
    }
}

fn epoch_seq(epoch: u16, seq: u64) -> [u8; 8] {
    let mut b = (seq & 0xffff_ffff_ffff).to_be_bytes();
    b[..2].copy_from_slice(&epoch.to_be_bytes());
    b
}

fn nonce(salt: &[u8; 4], explicit: &[u8]) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(salt);
    n[4..].copy_from_slice(explicit);
    n
}

fn aad(epoch_seq: &[u8; 8], kind: u8, len: usize) -> [u8; 13] {
    let mut a = [0u8; 13];
    a[..8].copy_from_slice(epoch_seq);
    a[8] = kind;
    a[9..11].copy_from_slice(&DTLS_1_2);
    a[11..].copy_from_slice(&(len as u16).to_be_bytes());
    a
}

/// TLS 1.2's PRF (RFC 5246 §5): P_hash(secret, label + seed), `len` bytes.
fn prf_hash(
    md: MessageDigest,
    secret: &[u8],
    label: &[u8],
    seed: &[u8],
    len: usize,
) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let key = PKey::hmac(secret)?;
    let hmac = |parts: &[&[u8]]| -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let mut s = Signer::new(md, &key)?;
        for p in parts {
            s.update(p)?;
        }
        s.sign_to_vec()
    };
    let mut a = hmac(&[label, seed])?;
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        out.extend(hmac(&[&a, label, seed])?);
        a = hmac(&[&a])?;
    }
    out.truncate(len);
    Ok(out)
}

/// Whether a datagram is made of whole DTLS 1.x records of the kinds a handshake uses
/// (change_cipher_spec, alert, handshake). Anything else cannot move a handshake on, and
/// OpenSSL would end the handshake over some of it (application data in epoch 0, say), so
/// it is dropped before OpenSSL sees it, as RFC 6347 §4.1.2.7 asks of invalid records.
pub(super) fn handshake_shaped(mut d: &[u8]) -> bool {
    if d.is_empty() {
        return false;
    }
    while !d.is_empty() {
        if d.len() < HEADER
            || !(CHANGE_CIPHER_SPEC..=HANDSHAKE).contains(&d[0])
            || d[1] != 0xfe
            || !(d[2] == 0xfd || d[2] == 0xff)
        {
            return false;
        }
        let len = u16::from_be_bytes([d[11], d[12]]) as usize;
        if d.len() < HEADER + len {
            return false;
        }
        d = &d[HEADER + len..];
    }
    true
}

pub(super) struct Record<'a> {
    pub(super) kind: u8,
    pub(super) epoch: u16,
    pub(super) seq: u64,
    body: &'a [u8],
}

/// The DTLS records of a datagram; stops at the first that does not fit.
pub(super) fn records(mut d: &[u8]) -> impl Iterator<Item = Record<'_>> {
    std::iter::from_fn(move || {
        if d.len() < HEADER {
            return None;
        }
        let len = u16::from_be_bytes([d[11], d[12]]) as usize;
        if d.len() < HEADER + len {
            return None;
        }
        let mut seq = [0u8; 8];
        seq[2..].copy_from_slice(&d[5..11]);
        let r = Record {
            kind: d[0],
            epoch: u16::from_be_bytes([d[3], d[4]]),
            seq: u64::from_be_bytes(seq),
            body: &d[HEADER..HEADER + len],
        };
        d = &d[HEADER + len..];
        Some(r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prf_matches_a_published_tls12_sha256_vector() {
        // The TLS 1.2 PRF (SHA-256) test vector circulated on the IETF TLS list
        // (secret 9bbe4363…, seed a0ba9f93…, label "test label"), first 32 of 100 bytes.
        let secret = hex("9bbe436ba940f017b17652849a71db35");
        let seed = hex("a0ba9f936cda311827a6f796ffd5198c");
        let out = prf_hash(MessageDigest::sha256(), &secret, b"test label", &seed, 100).unwrap();
        assert_eq!(
            out[..32],
            hex("e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a")[..]
        );
        assert_eq!(out.len(), 100);
    }

    #[test]
    fn records_split_a_datagram_and_stop_at_a_short_one() {
        let mut d = vec![22, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 7, 0, 2, 0xaa, 0xbb];
        d.extend([21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 40, 1]);
        let rs: Vec<_> = records(&d).collect();
        assert_eq!(rs.len(), 1, "the second record claims 40 bytes and has 1");
        assert_eq!((rs[0].kind, rs[0].epoch, rs[0].seq), (22, 1, 7));
        assert_eq!(rs[0].body, &[0xaa, 0xbb]);
    }

    #[test]
    fn only_whole_handshake_kind_records_reach_a_handshake() {
        let hello = [22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0];
        assert!(handshake_shaped(&hello));
        let mut two = hello.to_vec();
        two.extend([20, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1]);
        assert!(handshake_shaped(&two));
        let mut trailing = hello.to_vec();
        trailing.push(0);
        assert!(!handshake_shaped(&trailing), "junk after the last record");
        let mut data = hello;
        data[0] = 23;
        assert!(!handshake_shaped(&data), "application data");
        assert!(!handshake_shaped(&hello[..14]), "a record cut short");
        assert!(!handshake_shaped(&[]));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}

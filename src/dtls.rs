//! DTLS 1.2 for the media plane's peers, on OpenSSL, behind str0m's `DtlsProvider` trait.
//!
//! str0m's own OpenSSL provider builds an `SSL_CTX` (certificate, key, cipher and SRTP lists)
//! for every peer and keeps the whole OpenSSL session for the peer's lifetime: about 95 KiB of
//! each listener's memory, for a handshake that happens once. Here every peer of a certificate
//! shares one context (`ossl`: built once, looked up under a lock only when a peer is made;
//! no session cache, which a shared context would grow with every handshake), and once the
//! handshake's output has left, the session itself is let go (`settled`: the record keys
//! derived once, our last flight kept to answer a peer that lost it, close_notify both ways),
//! which leaves well under a KiB per peer; data channels' records are sealed and opened there
//! too. A suite `settled` does not speak keeps the session with its record buffers released.
//! STUN's HMAC-SHA1 is ring's (`hmac`); the SRTP and SHA-256 parts stay str0m's.
//!
//! The media hot path touches this module only through `poll_output`, called once per `Rtc`
//! poll: with nothing pending it answers from fields, without reading a clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use openssl::srtp::SrtpProfileId;
use openssl::ssl::{
    ErrorCode, HandshakeError, MidHandshakeSslStream, ShutdownState, Ssl, SslRef, SslStream,
};
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, KeyingMaterial,
    ProtocolVersion, SrtpProfile,
};
use str0m::crypto::CryptoProvider;
use str0m_proto::crypto::dtls::{DtlsCryptoError, DtlsCryptoOperation};

mod hmac;
mod ossl;
mod settled;
use ossl::{context_for, dtls_timeout, Wire};
use settled::{Inbound, Settled};
use str0m_proto::crypto::CryptoError;

/// The server's crypto provider, made once.
pub fn shared() -> std::sync::Arc<CryptoProvider> {
    static SHARED: std::sync::OnceLock<std::sync::Arc<CryptoProvider>> = std::sync::OnceLock::new();
    SHARED
        .get_or_init(|| std::sync::Arc::new(provider()))
        .clone()
}

/// str0m's crypto with this module's DTLS in place of its own, and STUN's HMAC on ring
/// (`hmac`).
pub fn provider() -> CryptoProvider {
    static DTLS: SharedContextDtls = SharedContextDtls;
    static STUN_HMAC: hmac::RingSha1Hmac = hmac::RingSha1Hmac;
    let mut crypto = str0m::crypto::from_feature_flags();
    crypto.dtls_provider = &DTLS;
    crypto.sha1_hmac_provider = &STUN_HMAC;
    crypto
}

const EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// What str0m's fragmenter aims at when it passes no MTU (str0m-proto's target).
const DEFAULT_MTU: usize = 1150;

/// Application data records kept for str0m between polls (SCTP only; audio rooms do not open
/// data channels, so this stays empty unless a client opens one).
const MAX_QUEUED_RECORDS: usize = 64;

/// The timeout answered while no DTLS timer runs: str0m polls again when anything happens.
const IDLE: Duration = Duration::from_secs(3600);

/// The SRTP keys a peer's handshake exported, for the media worker's own sealer
/// (`media::srtp`); str0m is handed the same material.
#[derive(Debug, Clone)]
pub struct Exported {
    pub profile: SrtpProfile,
    pub material: Vec<u8>,
    /// This side was the DTLS client (str0m's "active"): it writes with the client's keys.
    pub client: bool,
}

/// Filled once, when the handshake completes.
pub type ExportCell = std::sync::Arc<std::sync::OnceLock<Exported>>;

thread_local! {
    /// The export cell of the last instance made on this thread. str0m makes a peer's DTLS
    /// inside `RtcConfig::build` and keeps it out of reach afterwards, so whoever builds the
    /// `Rtc` picks the cell up right after (`take_export`).
    static MADE: std::cell::RefCell<Option<ExportCell>> = const { std::cell::RefCell::new(None) };
}

/// The export cell of the DTLS instance made last on this thread (by the `Rtc` just built).
pub fn take_export() -> Option<ExportCell> {
    MADE.with(|m| m.borrow_mut().take())
}

struct SharedContextDtls;

impl std::fmt::Debug for SharedContextDtls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedContextDtls")
    }
}

impl DtlsProvider for SharedContextDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        if version != DtlsVersion::Dtls12 {
            return Err(CryptoError::Other(format!(
                "{version} was asked for; this server's DTLS speaks DTLS 1.2 only"
            )));
        }
        let context = context_for(cert)?;
        let mut ssl = Ssl::new(&context)?;
        ssl.set_mtu(mtu.unwrap_or(DEFAULT_MTU) as u32)?;
        let session = Session::new(ssl, now);
        MADE.with(|m| *m.borrow_mut() = Some(session.export.clone()));
        Ok(Box::new(session))
    }
}

enum Phase {
    /// Before the first step; `Ssl` and `Wire` not yet joined (the role may still change).
    Fresh(Ssl, Wire),
    Handshaking(MidHandshakeSslStream<Wire>),
    Open(SslStream<Wire>),
    /// After the handshake, without OpenSSL's session (`settled`).
    Settled(Box<Settled>, Wire),
    /// A step panicked or failed half-way; nothing more will be done.
    Failed,
}

struct Session {
    phase: Phase,
    active: Option<bool>,
    /// The handshake retransmission deadline, while OpenSSL's timer runs.
    timer: Option<Instant>,
    /// Answered when no timer runs; moved on by every `handle_timeout`.
    idle_until: Instant,
    peer_cert: Option<Vec<u8>>,
    keys: Option<(Vec<u8>, SrtpProfile)>,
    connected: Connected,
    records: VecDeque<Vec<u8>>,
    /// Our last handshake flight as sent (DTLS server only), kept for `Settled`.
    final_flight: Vec<Vec<u8>>,
    /// The highest epoch-1 record sequence number we sent.
    sent_seq: Option<u64>,
    close_received: bool,
    close_told: bool,
    close_sent: bool,
    export: ExportCell,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("active", &self.active)
            .field("open", &matches!(self.phase, Phase::Open(_)))
            .field("settled", &matches!(self.phase, Phase::Settled(..)))
            .finish()
    }
}

#[derive(PartialEq)]
enum Connected {
    No,
    Untold,
    Told,
}

impl Session {
    fn new(ssl: Ssl, now: Instant) -> Self {
        Session {
            phase: Phase::Fresh(ssl, Wire::default()),
            active: None,
            timer: None,
            idle_until: now + IDLE,
            peer_cert: None,
            keys: None,
            connected: Connected::No,
            records: VecDeque::new(),
            final_flight: Vec::new(),
            sent_seq: None,
            close_received: false,
            export: ExportCell::default(),
            close_told: false,
            close_sent: false,
        }
    }

    fn wire(&mut self) -> Option<&mut Wire> {
        match &mut self.phase {
            Phase::Fresh(_, w) => Some(w),
            Phase::Handshaking(m) => Some(m.get_mut()),
            Phase::Open(s) => Some(s.get_mut()),
            Phase::Settled(_, w) => Some(w),
            Phase::Failed => None,
        }
    }

    fn ssl(&self) -> Option<&SslRef> {
        match &self.phase {
            Phase::Fresh(s, _) => Some(s),
            Phase::Handshaking(m) => Some(m.ssl()),
            Phase::Open(s) => Some(s.ssl()),
            Phase::Settled(..) | Phase::Failed => None,
        }
    }

    /// Takes the handshake one step further with whatever the wire holds.
    fn step_handshake(&mut self) -> Result<(), DtlsImplError> {
        let active = self.active.unwrap_or(false);
        let result = match std::mem::replace(&mut self.phase, Phase::Failed) {
            Phase::Fresh(ssl, wire) if active => ssl.connect(wire),
            Phase::Fresh(ssl, wire) => ssl.accept(wire),
            Phase::Handshaking(mid) => {
                if !ossl::alloc_buffers(mid.ssl()) {
                    return Err(failed("buffer allocation", &"out of memory"));
                }
                mid.handshake()
            }
            other => {
                self.phase = other;
                return Ok(());
            }
        };
        match result {
            Ok(stream) => {
                if !active {
                    self.final_flight = stream.get_ref().outbound.iter().cloned().collect();
                }
                self.phase = Phase::Open(stream);
                self.on_open()
            }
            Err(HandshakeError::WouldBlock(mid)) => {
                self.phase = Phase::Handshaking(mid);
                Ok(())
            }
            Err(HandshakeError::SetupFailure(e)) => Err(failed("setup", &e)),
            Err(HandshakeError::Failure(mid)) => Err(failed("handshake", mid.error())),
        }
    }

    /// Reads what the handshake agreed: the peer's certificate (str0m checks its fingerprint),
    /// the SRTP profile and the keys exported for it (RFC 5764 §4.2).
    fn on_open(&mut self) -> Result<(), DtlsImplError> {
        let Some(ssl) = self.ssl() else { return Ok(()) };
        let cert = ssl
            .peer_certificate()
            .ok_or_else(|| refused("the peer presented no certificate"))?
            .to_der()
            .map_err(|e| failed("certificate", &e))?;
        let profile = match ssl.selected_srtp_profile().map(|p| p.id()) {
            Some(SrtpProfileId::SRTP_AEAD_AES_128_GCM) => SrtpProfile::AEAD_AES_128_GCM,
            Some(SrtpProfileId::SRTP_AEAD_AES_256_GCM) => SrtpProfile::AEAD_AES_256_GCM,
            Some(SrtpProfileId::SRTP_AES128_CM_SHA1_80) => SrtpProfile::AES128_CM_SHA1_80,
            _ => return Err(refused("no SRTP profile in common with the peer")),
        };
        let mut keys = vec![0; profile.keying_material_len()];
        ssl.export_keying_material(&mut keys, EXPORTER_LABEL, None)
            .map_err(|e| failed("key export", &e))?;
        self.peer_cert = Some(cert);
        let _ = self.export.set(Exported {
            profile,
            material: keys.clone(),
            client: self.active.unwrap_or(false),
        });
        self.keys = Some((keys, profile));
        self.connected = Connected::Untold;
        self.timer = None;
        Ok(())
    }

    /// Reads records after the handshake: application data, the peer's close_notify, or a
    /// retransmitted final flight of the peer's (OpenSSL answers it by resending ours).
    fn read_records(&mut self) {
        let Phase::Open(stream) = &mut self.phase else {
            return;
        };
        if buffers(stream).is_err() {
            return;
        }
        let mut buf = [0u8; 2048];
        loop {
            match stream.ssl_read(&mut buf) {
                Ok(n) if n > 0 => {
                    if self.records.len() < MAX_QUEUED_RECORDS {
                        self.records.push_back(buf[..n].to_vec());
                    }
                }
                Err(e) if e.code() == ErrorCode::WANT_READ => break,
                _ => {
                    if stream.get_shutdown().contains(ShutdownState::RECEIVED) {
                        self.close_received = true;
                        if !self.close_sent {
                            let _ = stream.shutdown();
                            self.close_sent = true;
                        }
                    }
                    break;
                }
            }
        }
    }

    /// Re-arms the retransmission timer from OpenSSL's, and once the handshake is over and its
    /// output has left, hands the record buffers back (OpenSSL makes new ones if a record
    /// ever has to be read or written again).
    fn settle(&mut self) {
        if let Phase::Open(s) = &self.phase {
            if s.get_ref().outbound.is_empty() {
                let server = !self.active.unwrap_or(false);
                let flight = std::mem::take(&mut self.final_flight);
                if let Some(settled) = Settled::from_open(s.ssl(), server, flight, self.sent_seq) {
                    self.phase = Phase::Settled(Box::new(settled), Wire::default());
                    return;
                }
            }
        }
        match &self.phase {
            Phase::Handshaking(m) => {
                self.timer = dtls_timeout(m.ssl());
                // Between flights a handshake waits on the peer, often for a round trip or
                // more in a join burst; its record buffers (33 KiB) wait in the pool instead.
                if m.get_ref().outbound.is_empty() {
                    ossl::free_buffers(m.ssl());
                }
            }
            Phase::Open(s) if s.get_ref().outbound.is_empty() => {
                ossl::free_buffers(s.ssl());
            }
            _ => {}
        }
        if let Some(w) = self.wire() {
            if w.outbound.is_empty() {
                w.outbound.shrink_to_fit();
            }
        }
    }
}

fn failed(what: &str, e: &dyn std::fmt::Display) -> DtlsImplError {
    tracing::debug!("DTLS {what} failed: {e}");
    DtlsImplError::CryptoError(DtlsCryptoError::OperationFailed(
        DtlsCryptoOperation::CompleteKeyExchange,
    ))
}

fn refused(why: &str) -> DtlsImplError {
    failed("handshake", &why)
}

/// The record buffers back before an open session reads or writes (`ossl::alloc_buffers`).
fn buffers(stream: &SslStream<Wire>) -> Result<(), DtlsImplError> {
    if ossl::alloc_buffers(stream.ssl()) {
        Ok(())
    } else {
        Err(failed("buffer allocation", &"out of memory"))
    }
}

impl DtlsInstance for Session {
    fn set_active(&mut self, active: bool) {
        self.active = Some(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        if let Phase::Settled(settled, wire) = &mut self.phase {
            match settled.on_datagram(packet, &mut self.records, MAX_QUEUED_RECORDS) {
                Inbound::Nothing => {}
                Inbound::SendAgain(flight) => wire.outbound.extend(flight.iter().cloned()),
                Inbound::CloseNotify => {
                    self.close_received = true;
                    if !self.close_sent {
                        wire.outbound.extend(settled.close_notify());
                        self.close_sent = true;
                    }
                }
            }
            return Ok(());
        }
        let handshaking = matches!(self.phase, Phase::Fresh(..) | Phase::Handshaking(_));
        if handshaking && !packet.is_empty() && !settled::handshake_shaped(packet) {
            return Ok(());
        }
        if !packet.is_empty() {
            let Some(wire) = self.wire() else {
                return Err(DtlsImplError::ConnectionClosed);
            };
            wire.inbound.clear();
            wire.inbound.extend_from_slice(packet);
            wire.unread = true;
        }
        let result = match self.phase {
            Phase::Fresh(..) | Phase::Handshaking(_) => self.step_handshake(),
            Phase::Open(_) => {
                self.read_records();
                Ok(())
            }
            Phase::Settled(..) | Phase::Failed => Err(DtlsImplError::ConnectionClosed),
        };
        if let Some(wire) = self.wire() {
            // What OpenSSL did not read (a stray datagram) is dropped, not kept for later.
            wire.unread = false;
            if wire.inbound.capacity() > 2048 {
                wire.inbound = Vec::new();
            }
        }
        if result.is_err() {
            self.phase = Phase::Failed;
        }
        self.settle();
        result
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        if let Some(wire) = self.wire() {
            if let Some(needed) = wire.outbound.front().map(Vec::len) {
                if needed > buf.len() {
                    return DtlsOutput::BufferTooSmall { needed };
                }
                let d = wire.outbound.pop_front().expect("front was there");
                let empty = wire.outbound.is_empty();
                buf[..needed].copy_from_slice(&d);
                let sent = settled::records(&d)
                    .filter(|r| r.epoch == 1)
                    .map(|r| r.seq)
                    .max();
                self.sent_seq = self.sent_seq.max(sent);
                if empty {
                    self.settle();
                }
                return DtlsOutput::Packet(&buf[..needed]);
            }
        }
        if let Some(cert) = self.peer_cert.take() {
            if cert.len() > buf.len() {
                let needed = cert.len();
                self.peer_cert = Some(cert);
                return DtlsOutput::BufferTooSmall { needed };
            }
            buf[..cert.len()].copy_from_slice(&cert);
            return DtlsOutput::PeerCert(&buf[..cert.len()]);
        }
        if let Some((keys, profile)) = self.keys.take() {
            return DtlsOutput::KeyingMaterial(KeyingMaterial::new(&keys), profile);
        }
        if self.connected == Connected::Untold {
            self.connected = Connected::Told;
            return DtlsOutput::Connected;
        }
        if self.close_received && !self.close_told {
            self.close_told = true;
            return DtlsOutput::CloseNotify;
        }
        if let Some(record) = self.records.pop_front() {
            let n = record.len().min(buf.len());
            buf[..n].copy_from_slice(&record[..n]);
            return DtlsOutput::ApplicationData(&buf[..n]);
        }
        DtlsOutput::Timeout(self.timer.unwrap_or(self.idle_until))
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.idle_until = now + IDLE;
        let Some(due) = self.timer else { return Ok(()) };
        if due > now {
            return Ok(());
        }
        self.timer = None;
        let Phase::Handshaking(mid) = &self.phase else {
            return Ok(());
        };
        if !ossl::alloc_buffers(mid.ssl()) || !ossl::handle_timeout(mid.ssl()) {
            self.phase = Phase::Failed;
            return Err(failed("handshake", &"the peer stopped answering"));
        }
        self.settle();
        Ok(())
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<(), DtlsImplError> {
        let stream = match &mut self.phase {
            Phase::Open(stream) => stream,
            Phase::Settled(settled, wire) => {
                let record = settled
                    .application_data(data)
                    .ok_or_else(|| failed("write", &"a record could not be sealed"))?;
                wire.outbound.push_back(record);
                return Ok(());
            }
            _ => return Err(DtlsImplError::HandshakePending),
        };
        buffers(stream)?;
        stream.ssl_write(data).map_err(|e| failed("write", &e))?;
        Ok(())
    }

    fn is_active(&self) -> bool {
        self.active.unwrap_or(false)
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        matches!(self.phase, Phase::Open(_) | Phase::Settled(..))
            .then_some(ProtocolVersion::DTLS1_2)
    }

    fn is_closing(&self) -> bool {
        self.close_sent || self.close_received
    }

    fn is_closed(&self) -> bool {
        self.close_sent
            && match &self.phase {
                Phase::Open(s) => s.get_ref().outbound.is_empty(),
                Phase::Settled(_, w) => w.outbound.is_empty(),
                _ => true,
            }
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        match &mut self.phase {
            Phase::Open(stream) if !self.close_sent && buffers(stream).is_ok() => {
                let _ = stream.shutdown();
            }
            Phase::Settled(settled, wire) if !self.close_sent => {
                wire.outbound.extend(settled.close_notify());
            }
            _ => {}
        }
        self.close_sent = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests;

//! The OpenSSL side of `dtls`: the shared contexts, the datagram wire under a stream, and
//! the calls the `openssl` crate does not wrap (DTLS timers, record buffers).

use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use foreign_types::ForeignTypeRef;
use openssl::error::ErrorStack;
use openssl::pkey::PKey;
use openssl::ssl::{
    SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslRef, SslSessionCacheMode,
    SslVerifyMode,
};
use openssl::x509::X509;
use str0m::crypto::dtls::DtlsCert;

/// Forward secrecy only; AES-GCM first, then ChaCha20. No finite-field DHE: its key exchange
/// costs many times an ECDHE one and browsers do not offer it.
const CIPHERS: &str = "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES256:ECDHE+AES128";

/// GCM first (the order docs/media.md gives): the server's order decides (RFC 5764 §4.1.2),
/// and AEAD SRTP needs one cipher pass where AES-CM needs a cipher and an HMAC.
const SRTP_PROFILES: &str = "SRTP_AEAD_AES_256_GCM:SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80";

/// Contexts kept: one per certificate in use (the server has one; tests may make more).
const MAX_CONTEXTS: usize = 8;

/// Datagrams one handshake flight may queue (a flight is at most a handful; more means the
/// output is not being polled, and the handshake fails rather than grow).
const MAX_QUEUED_DATAGRAMS: usize = 32;

/// The shared context of `cert`, built on first use.
pub(super) fn context_for(cert: &DtlsCert) -> Result<SslContext, ErrorStack> {
    static CONTEXTS: Mutex<Vec<(Vec<u8>, SslContext)>> = Mutex::new(Vec::new());
    let mut contexts = CONTEXTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, ctx)) = contexts.iter().find(|(der, _)| *der == cert.certificate) {
        return Ok(ctx.clone());
    }
    let ctx = build_context(cert)?;
    if contexts.len() == MAX_CONTEXTS {
        // Peers hold their own reference; dropping ours only means a rebuild on next use.
        contexts.remove(0);
    }
    contexts.push((cert.certificate.clone(), ctx.clone()));
    Ok(ctx)
}

fn build_context(cert: &DtlsCert) -> Result<SslContext, ErrorStack> {
    let mut b = SslContextBuilder::new(SslMethod::dtls())?;
    b.set_cipher_list(CIPHERS)?;
    b.set_tlsext_use_srtp(SRTP_PROFILES)?;
    // WebRTC peers present self-signed certificates; str0m checks the one received against
    // the SDP's fingerprint (`DtlsOutput::PeerCert`), so OpenSSL's chain check must pass all.
    b.set_verify_callback(
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        |_, _| true,
    );
    let x509 = X509::from_der(&cert.certificate)?;
    let key = PKey::private_key_from_der(&cert.private_key)?;
    b.set_certificate(&x509)?;
    b.set_private_key(&key)?;
    b.check_private_key()?;
    b.set_options(
        SslOptions::NO_DTLSV1
            | SslOptions::NO_QUERY_MTU
            | SslOptions::SINGLE_ECDH_USE
            | SslOptions::NO_TICKET
            | SslOptions::NO_RENEGOTIATION
            // Our order (AES-GCM first) over the client's: a GCM session is the one `settled`
            // can let go after the handshake.
            | SslOptions::CIPHER_SERVER_PREFERENCE,
    );
    b.set_mode(SslMode::RELEASE_BUFFERS);
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    Ok(b.build())
}

/// The datagram side of the OpenSSL stream: one inbound datagram at a time, outbound
/// datagrams queued until str0m polls them.
#[derive(Default)]
pub(super) struct Wire {
    pub(super) inbound: Vec<u8>,
    pub(super) unread: bool,
    pub(super) outbound: VecDeque<Vec<u8>>,
}

impl io::Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.unread {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.unread = false;
        // A datagram is read whole or not at all: OpenSSL's DTLS read buffer always has room.
        let n = self.inbound.len().min(buf.len());
        buf[..n].copy_from_slice(&self.inbound[..n]);
        Ok(n)
    }
}

impl io::Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.outbound.len() >= MAX_QUEUED_DATAGRAMS {
            return Err(io::Error::other("DTLS output is not being polled"));
        }
        self.outbound.push_back(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

unsafe extern "C" {
    fn SSL_ctrl(
        ssl: *mut openssl_sys::SSL,
        cmd: libc::c_int,
        larg: libc::c_long,
        parg: *mut libc::c_void,
    ) -> libc::c_long;
    fn SSL_free_buffers(ssl: *mut openssl_sys::SSL) -> libc::c_int;
    fn SSL_alloc_buffers(ssl: *mut openssl_sys::SSL) -> libc::c_int;
}

/// Gives an open session its record buffers back before it reads or writes: OpenSSL 3.0's
/// DTLS write path does not make them again by itself once `SSL_free_buffers` took them
/// (it crashes), though its read path would. False when memory ran out.
pub(super) fn alloc_buffers(ssl: &SslRef) -> bool {
    // SAFETY: a live `SSL`; allocating buffers that exist already is a no-op.
    unsafe { SSL_alloc_buffers(ssl.as_ptr()) == 1 }
}

/// Hands an idle session's record buffers back. OpenSSL refuses (and leaves the session as
/// it was) while a buffer still holds data; every later use goes through `alloc_buffers`.
pub(super) fn free_buffers(ssl: &SslRef) {
    // SAFETY: a live `SSL`.
    unsafe {
        SSL_free_buffers(ssl.as_ptr());
    }
}

/// `DTLSv1_handle_timeout`: resends the last flight through the stream's BIO if OpenSSL's
/// timer expired, and re-arms it with back-off. False when the peer stopped answering.
pub(super) fn handle_timeout(ssl: &SslRef) -> bool {
    // SAFETY: a live `SSL`; the call takes no argument.
    unsafe {
        SSL_ctrl(
            ssl.as_ptr(),
            DTLS_CTRL_HANDLE_TIMEOUT,
            0,
            std::ptr::null_mut(),
        ) >= 0
    }
}

const DTLS_CTRL_GET_TIMEOUT: libc::c_int = 73;
const DTLS_CTRL_HANDLE_TIMEOUT: libc::c_int = 74;

/// When OpenSSL's handshake retransmission timer fires, if it runs (`DTLSv1_get_timeout`).
pub(super) fn dtls_timeout(ssl: &SslRef) -> Option<Instant> {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    // SAFETY: `DTLSv1_get_timeout` writes one `struct timeval` through the pointer.
    let running = unsafe {
        SSL_ctrl(
            ssl.as_ptr(),
            DTLS_CTRL_GET_TIMEOUT,
            0,
            (&mut tv as *mut libc::timeval).cast(),
        )
    };
    (running > 0).then(|| {
        Instant::now() + Duration::new(tv.tv_sec.max(0) as u64, (tv.tv_usec.max(0) * 1000) as u32)
    })
}

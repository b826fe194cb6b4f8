//! Audio written to a listener without str0m: a media worker builds the RTP header, seals it with
//! the peer's own SRTP sealer (`media::srtp`) into a buffer of the send batch and queues it,
//! so a packet per listener costs a header, one AES-GCM pass and its share of a `sendmmsg`.
//!
//! str0m still carries one packet in `THROUGH_STR0M` of every slot (and every packet until
//! the sealer is ready): its Sender Reports map RTP time to wall-clock from the last packet it
//! wrote, and its transmits tell where the peer's media goes (ICE's nominated pair).

use str0m::media::Mid;
use str0m::Rtc;

use super::rtp_out::ExtIds;
use super::srtp::Sealer;
use crate::dtls::ExportCell;

/// One packet in this many per slot goes through str0m (every 1.28 s of Opus).
pub const THROUGH_STR0M: u64 = 64;

/// How a peer's audio is sealed.
pub enum Egress {
    /// DTLS has not finished (or the peer's DTLS is not ours and no keys will come).
    Waiting(Option<ExportCell>),
    /// The worker seals; the listener's extension IDs for audio.
    Own(Box<Sealer>, ExtIds),
    /// str0m seals everything (a profile other than AES-GCM).
    Str0m,
}

impl Egress {
    pub fn new(export: Option<ExportCell>) -> Self {
        Egress::Waiting(export)
    }

    /// The sealer, made on first use once the handshake exported keys.
    pub fn ready(&mut self, rtc: &Rtc, mid: Mid) -> Option<(&mut Sealer, ExtIds)> {
        if let Egress::Waiting(cell) = self {
            let Some(cell) = cell else {
                *self = Egress::Str0m;
                return None;
            };
            let exported = cell.get()?;
            let ids = rtc.media(mid).map(|m| ExtIds::from_map(m.remote_extmap()));
            let sealer = Sealer::new(exported.profile, &exported.material, exported.client);
            *self = match (sealer, ids) {
                (Some(sealer), Some(ids)) => Egress::Own(Box::new(sealer), ids),
                _ => Egress::Str0m,
            };
        }
        match self {
            Egress::Own(sealer, ids) => Some((sealer, *ids)),
            _ => None,
        }
    }
}

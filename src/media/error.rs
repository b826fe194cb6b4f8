//! What can go wrong on the media plane, as its handle reports it.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    #[error("the SDP could not be parsed: {0}")]
    BadSdp(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("no media session: send media_offer first")]
    NoPeer,
    #[error("no server offer is waiting for an answer")]
    NoPendingOffer,
    #[error("a server media_offer is waiting for your answer; answer it, then offer again")]
    OfferPending,
    #[error("the media plane is overloaded; retry shortly")]
    Busy,
    #[error("negotiation failed: {0}")]
    Negotiation(String),
    #[error("{1} {0} are running, the most media.max_{0} allows; stop one first")]
    TooMany(&'static str, usize),
    #[error(
        "the server carries its limit of {0} media connections (media.max_peers); try again later"
    )]
    Full(usize),
    #[error("the server could not start it: {0}")]
    Io(String),
}

//! A worker's routes, without sockets: per channel, who is on stage and which of this
//! worker's peers listen, and which other workers have listeners too.
//!
//! Peers hold their channel's route by index, so a packet finds its route without hashing the
//! channel ID. Listeners are an immutable snapshot: a fan-out clones the `Arc` (no copy) and
//! walks it while joins and leaves build a new snapshot beside it, so a peer removed during a
//! fan-out needs no repair afterwards (the walk skips peers that are gone).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use actix::Recipient;

use crate::channel::{Mixdown, Publisher};
use crate::ids::{ChannelId, PeerKey};
use crate::messages::SpeakerLevel;

/// Index of a route in one worker's table; valid while a peer of this worker is attached.
pub(super) type RouteId = usize;

/// What one plane's workers share per channel: which of them have listeners in it (one bit
/// per worker), and how much its mixed listeners lose (from their receiver reports), which
/// the mixer's encoder sizes its in-band FEC for.
#[derive(Debug, Default)]
pub(crate) struct ChannelBits {
    pub mask: AtomicU64,
    /// Smoothed loss reported by mixed listeners, in thousandths.
    pub loss_permille: AtomicU32,
}

impl ChannelBits {
    /// One receiver report's loss (0.0–1.0) from a listener of the mix: a moving average
    /// over reports, so that the typical listener, not the worst one, sizes the shared FEC.
    pub fn report_loss(&self, loss: f32) {
        let sample = (loss.clamp(0.0, 1.0) * 1000.0) as u32;
        let _ = self
            .loss_permille
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if sample >= old {
                    old + (sample - old).div_ceil(16)
                } else {
                    old - (old - sample).div_ceil(16)
                })
            });
    }

    /// The expected loss the mix's encoder is told, in percent.
    pub fn expected_loss_percent(&self) -> i32 {
        (self.loss_permille.load(Ordering::Relaxed) / 10) as i32
    }
}

/// Per channel, what one plane's workers share.
pub(crate) type Masks = Arc<DashMap<ChannelId, Arc<ChannelBits>>>;

pub(super) struct Route {
    pub(super) channel: ChannelId,
    pub(super) publishers: Arc<[Publisher]>,
    /// Whether the channel mixes, its mixer runs, speakers are forwarded.
    pub(super) mix: Mixdown,
    /// The channel, for speakers' levels measured by the mixer (set with the first stage).
    pub(super) levels: Option<Recipient<SpeakerLevel>>,
    /// Members' video is forwarded (a call whose media is video).
    pub(super) video: bool,
    listeners: Arc<[PeerKey]>,
    pub(super) bits: Arc<ChannelBits>,
    /// This worker's peers in the channel (listening or not): the route lives while any is.
    attached: usize,
}

/// What one packet from `publisher` is written to.
pub(super) struct Plan {
    /// This worker's listeners (the publisher among them is skipped by the writer).
    pub(super) listeners: Arc<[PeerKey]>,
    /// Bit per other worker with listeners in the channel.
    pub(super) others: u64,
}

pub(super) struct Router {
    bit: u64,
    ids: HashMap<ChannelId, RouteId>,
    routes: Vec<Option<Route>>,
    free: Vec<RouteId>,
    masks: Masks,
    /// Channels whose video is forwarded, kept while no route is open too (a call's members
    /// may all be reconnecting); the call turns it off when it ends.
    video: std::collections::HashSet<ChannelId>,
}

impl Router {
    pub(super) fn new(worker: usize, masks: Masks) -> Self {
        Self {
            bit: 1u64 << (worker % 64),
            ids: HashMap::new(),
            routes: Vec::new(),
            free: Vec::new(),
            masks,
            video: Default::default(),
        }
    }

    pub(super) fn get(&self, id: RouteId) -> Option<&Route> {
        self.routes.get(id)?.as_ref()
    }

    pub(super) fn find(&self, channel: &ChannelId) -> Option<RouteId> {
        self.ids.get(channel).copied()
    }

    fn route_mut(&mut self, id: RouteId) -> Option<&mut Route> {
        self.routes.get_mut(id)?.as_mut()
    }

    pub(super) fn open(&mut self, channel: &ChannelId) -> RouteId {
        if let Some(id) = self.find(channel) {
            return id;
        }
        let route = Route {
            channel: channel.clone(),
            publishers: Arc::from(Vec::new()),
            mix: Mixdown::default(),
            levels: None,
            video: self.video.contains(channel),
            listeners: Arc::from(Vec::new()),
            bits: self.masks.entry(channel.clone()).or_default().clone(),
            attached: 0,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.routes[id] = Some(route);
                id
            }
            None => {
                self.routes.push(Some(route));
                self.routes.len() - 1
            }
        };
        self.ids.insert(channel.clone(), id);
        id
    }

    /// A peer of this worker joins `channel`'s route; it keeps the returned index until
    /// `detach`.
    pub(super) fn attach(&mut self, channel: &ChannelId) -> RouteId {
        let id = self.open(channel);
        if let Some(route) = self.route_mut(id) {
            route.attached += 1;
        }
        id
    }

    /// Something of this worker's other than a peer (a mixer) keeps route `id` alive until it
    /// calls `detach`.
    pub(super) fn hold(&mut self, id: RouteId) {
        if let Some(route) = self.route_mut(id) {
            route.attached += 1;
        }
    }

    /// A peer leaves: no longer a listener, and the route goes once nobody is attached and
    /// nobody is on stage.
    pub(super) fn detach(&mut self, id: RouteId, key: PeerKey) {
        self.remove_listener(id, key);
        if let Some(route) = self.route_mut(id) {
            route.attached = route.attached.saturating_sub(1);
        }
        self.close_if_unused(id);
    }

    /// Who is on stage and whether the channel mixes; returns the local listeners, whose
    /// slots need binding again.
    pub(super) fn set_publishers(
        &mut self,
        channel: &ChannelId,
        publishers: Arc<[Publisher]>,
        mix: Mixdown,
        levels: Option<Recipient<SpeakerLevel>>,
    ) -> Arc<[PeerKey]> {
        let id = self.open(channel);
        let route = self.route_mut(id).expect("just opened");
        route.publishers = publishers;
        route.mix = mix;
        if levels.is_some() {
            route.levels = levels;
        }
        let listeners = route.listeners.clone();
        self.close_if_unused(id);
        listeners
    }

    /// Starts or stops forwarding `channel`'s video; returns the local listeners, whose video
    /// slots need binding again.
    pub(super) fn set_video(&mut self, channel: &ChannelId, on: bool) -> Arc<[PeerKey]> {
        if on {
            self.video.insert(channel.clone());
        } else {
            self.video.remove(channel);
        }
        let Some(route) = self.find(channel).and_then(|id| self.route_mut(id)) else {
            return Arc::from(Vec::new());
        };
        route.video = on;
        route.listeners.clone()
    }

    /// The channel ended: its stage is empty; the route goes once its peers are gone.
    pub(super) fn channel_closed(&mut self, channel: &ChannelId) {
        if let Some(id) = self.find(channel) {
            if let Some(route) = self.route_mut(id) {
                route.publishers = Arc::from(Vec::new());
            }
            self.close_if_unused(id);
        }
    }

    fn close_if_unused(&mut self, id: RouteId) {
        let Some(route) = self.get(id) else {
            return;
        };
        if route.attached > 0 || !route.publishers.is_empty() {
            return;
        }
        let route = self.routes[id].take().expect("checked above");
        self.ids.remove(&route.channel);
        self.free.push(id);
        let Route { channel, bits, .. } = route;
        drop(bits);
        // The last worker to let go of a channel's bits removes them; the shard lock makes
        // the count exact against a worker opening the channel at the same time.
        self.masks
            .remove_if(&channel, |_, m| Arc::strong_count(m) == 1);
    }

    pub(super) fn add_listener(&mut self, id: RouteId, key: PeerKey) {
        let bit = self.bit;
        let Some(route) = self.route_mut(id) else {
            return;
        };
        if route.listeners.contains(&key) {
            return;
        }
        let mut next = Vec::with_capacity(route.listeners.len() + 1);
        next.extend_from_slice(&route.listeners);
        next.push(key);
        route.listeners = next.into();
        route.bits.mask.fetch_or(bit, Ordering::Relaxed);
    }

    pub(super) fn remove_listener(&mut self, id: RouteId, key: PeerKey) {
        let bit = self.bit;
        let Some(route) = self.route_mut(id) else {
            return;
        };
        if !route.listeners.contains(&key) {
            return;
        }
        let next: Vec<PeerKey> = route
            .listeners
            .iter()
            .copied()
            .filter(|k| *k != key)
            .collect();
        if next.is_empty() {
            route.bits.mask.fetch_and(!bit, Ordering::Relaxed);
        }
        route.listeners = next.into();
    }

    /// Where a packet published in route `id` goes.
    pub(super) fn plan(&self, id: RouteId) -> Option<Plan> {
        let route = self.get(id)?;
        Some(Plan {
            listeners: route.listeners.clone(),
            others: route.bits.mask.load(Ordering::Relaxed) & !self.bit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(s: &str) -> ChannelId {
        ChannelId::parse(s).unwrap()
    }

    fn publisher(key: PeerKey) -> Publisher {
        Publisher {
            key,
            participant: crate::ids::ParticipantId::parse(&format!("p{key}")).unwrap(),
            identity: crate::ids::Identity::parse(&format!("i{key}")).unwrap(),
            muted: false,
            gain_permille: 1000,
        }
    }

    /// Two workers sharing their masks, as one plane's workers do.
    fn pair() -> (Router, Router, Masks) {
        let masks = Masks::default();
        (
            Router::new(0, masks.clone()),
            Router::new(1, masks.clone()),
            masks,
        )
    }

    #[test]
    fn the_plan_names_local_listeners_and_other_workers_with_listeners() {
        let (mut w0, mut w1, _) = pair();
        let c = channel("c");
        let host = w0.attach(&c);
        let n = 5;
        // Listeners 1..=n on worker 0, 100.. on worker 1.
        for k in 1..=n {
            let id = w0.attach(&c);
            w0.add_listener(id, k);
        }
        let far = w1.attach(&c);
        w1.add_listener(far, 100);
        let plan = w0.plan(host).unwrap();
        assert_eq!(&plan.listeners[..], &[1, 2, 3, 4, 5]);
        assert_eq!(plan.others, 0b10, "worker 1 has listeners");
        let plan = w1.plan(far).unwrap();
        assert_eq!(&plan.listeners[..], &[100]);
        assert_eq!(plan.others, 0b01);
        // Worker 1's last listener leaves: worker 0 stops sending it packets.
        w1.detach(far, 100);
        assert_eq!(w0.plan(host).unwrap().others, 0);
    }

    #[test]
    fn a_removal_during_a_fan_out_leaves_the_walk_alone() {
        let (mut w0, _, _) = pair();
        let c = channel("c");
        let ids: Vec<RouteId> = (1..=3).map(|_| w0.attach(&c)).collect();
        for (k, id) in ids.iter().enumerate() {
            w0.add_listener(*id, k as PeerKey + 1);
        }
        let plan = w0.plan(ids[0]).unwrap();
        let mut walked = Vec::new();
        for &k in plan.listeners.iter() {
            walked.push(k);
            if k == 1 {
                // Writing to listener 1 finds it gone: it leaves mid-walk.
                w0.detach(ids[1], 2);
            }
        }
        assert_eq!(walked, vec![1, 2, 3], "the walk's snapshot is unchanged");
        assert_eq!(&w0.plan(ids[0]).unwrap().listeners[..], &[1, 3]);
    }

    #[test]
    fn a_route_lives_while_peers_are_attached_or_someone_is_on_stage() {
        let (mut w0, mut w1, masks) = pair();
        let c = channel("c");
        let id = w0.attach(&c);
        w0.add_listener(id, 1);
        w1.attach(&c);
        let stage: Arc<[Publisher]> = vec![publisher(9)].into();
        assert_eq!(
            &w0.set_publishers(&c, stage.clone(), Mixdown::default(), None)[..],
            &[1]
        );
        w0.detach(id, 1);
        assert!(w0.find(&c).is_some(), "a publisher is on stage");
        w0.channel_closed(&c);
        assert!(w0.find(&c).is_none());
        // Worker 1 still holds the channel's bits; they go with the last route.
        assert!(masks.contains_key(&c));
        w1.channel_closed(&c);
        assert!(w1.find(&c).is_some(), "worker 1's peer is attached");
        w1.detach(w1.find(&c).unwrap(), 2);
        assert!(w1.find(&c).is_none());
        assert!(!masks.contains_key(&c), "no channel bits leak");
        // A freed index serves the next channel.
        let d = w0.attach(&channel("d"));
        assert_eq!(d, id);
        assert_eq!(w0.get(d).unwrap().channel, channel("d"));
    }

    #[test]
    fn slots_rebind_for_every_local_listener_when_the_stage_changes() {
        let (mut w0, _, _) = pair();
        let c = channel("c");
        for k in 1..=3 {
            let id = w0.attach(&c);
            w0.add_listener(id, k);
        }
        let id = w0.find(&c).unwrap();
        let again = w0.set_publishers(
            &c,
            vec![publisher(7), publisher(8)].into(),
            Mixdown::default(),
            None,
        );
        assert_eq!(&again[..], &[1, 2, 3]);
        let keys: Vec<PeerKey> = w0
            .get(id)
            .unwrap()
            .publishers
            .iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(keys, vec![7, 8]);
    }
}

#[cfg(test)]
mod loss_tests {
    use super::ChannelBits;

    #[test]
    fn the_expected_loss_follows_the_reports_smoothly() {
        let bits = ChannelBits::default();
        assert_eq!(bits.expected_loss_percent(), 0);
        bits.report_loss(0.2);
        let after_one = bits.expected_loss_percent();
        assert!(
            (1..=2).contains(&after_one),
            "one report moves it a sixteenth: {after_one}"
        );
        for _ in 0..100 {
            bits.report_loss(0.2);
        }
        assert_eq!(bits.expected_loss_percent(), 20);
        for _ in 0..100 {
            bits.report_loss(0.0);
        }
        assert_eq!(bits.expected_loss_percent(), 0, "and back down");
    }
}

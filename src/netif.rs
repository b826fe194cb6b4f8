//! This machine's addresses: what a server bound to every interface announces in its ICE
//! candidate when `media.public_ip` is not set, and what the development certificate of
//! `--dev --lan` names.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

/// IPv4 addresses of the interfaces that are up, loopback and link-local left out: the
/// addresses another machine on the local network can reach.
pub fn lan_addresses() -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list it allocates; it is walked read-only
    // and released once with freeifaddrs below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return found;
    }
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned and has not been freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        let up = entry.ifa_flags & (libc::IFF_UP as u32) != 0;
        if !up || entry.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: a non-null ifa_addr points at a sockaddr whose family says its real type.
        let family = unsafe { (*entry.ifa_addr).sa_family };
        if i32::from(family) != libc::AF_INET {
            continue;
        }
        // SAFETY: AF_INET means the address is a sockaddr_in.
        let raw = unsafe {
            (*entry.ifa_addr.cast::<libc::sockaddr_in>())
                .sin_addr
                .s_addr
        };
        let ip = Ipv4Addr::from(u32::from_be(raw));
        if !ip.is_loopback()
            && !ip.is_link_local()
            && !ip.is_unspecified()
            && !found.contains(&IpAddr::V4(ip))
        {
            found.push(IpAddr::V4(ip));
        }
    }
    // SAFETY: `list` came from getifaddrs above and is freed exactly once.
    unsafe { libc::freeifaddrs(list) };
    found
}

/// The address this machine sends from by default (the one its default route leaves by),
/// else its first LAN address. A connected UDP socket sends nothing: connecting only asks
/// the kernel which source address it would use.
pub fn primary_address() -> Option<IpAddr> {
    let routed = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            // TEST-NET-1 (RFC 5737): never a real peer, only a destination to route.
            s.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
            s.local_addr()
        })
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified() && !ip.is_loopback());
    routed.or_else(|| lan_addresses().into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_addresses_leave_out_loopback_and_duplicates() {
        let found = lan_addresses();
        assert!(found.iter().all(|ip| !ip.is_loopback()));
        let mut unique = found.clone();
        unique.dedup();
        assert_eq!(unique.len(), found.len());
    }

    #[test]
    fn the_primary_address_is_one_of_this_machines() {
        // A machine with no network but loopback has none, and that is a fair answer.
        if let Some(ip) = primary_address() {
            assert!(!ip.is_loopback());
            let bound = UdpSocket::bind((ip, 0));
            assert!(bound.is_ok(), "{ip} is not an address of this machine");
        }
    }
}

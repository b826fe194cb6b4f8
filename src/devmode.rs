//! What `--dev` and `--dev --lan` change in a configuration before it is validated: where
//! development files go, and for the local network the interfaces, the announced media
//! address and a self-signed certificate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::config::Config;

/// Where `--dev` keeps its files (the call log, recordings, the LAN certificate) unless the
/// configuration says otherwise: a data directory of the user's, not the working directory.
pub fn data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("amphi-dev")
}

/// Applies `--dev` (and `--lan`) to `config`. Settings the configuration made explicitly
/// (a database, a bind address that is not loopback, a certificate) are kept.
pub fn prepare(config: &mut Config, lan: bool) -> Result<(), String> {
    let defaults = Config::default();
    let dir = data_dir();
    if config.calls.database == defaults.calls.database
        || config.media.recordings_dir == defaults.media.recordings_dir
    {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
        if config.calls.database == defaults.calls.database {
            config.calls.database = dir.join("calls.sqlite").to_string_lossy().into_owned();
        }
        if config.media.recordings_dir == defaults.media.recordings_dir {
            config.media.recordings_dir = dir.join("recordings");
        }
        tracing::info!(dir = %dir.display(), "development data (call log, recordings) kept in");
    }
    if lan {
        prepare_lan(config, &dir)?;
    }
    Ok(())
}

fn prepare_lan(config: &mut Config, dir: &std::path::Path) -> Result<(), String> {
    config.lan = true;
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    if config.server.bind.ip().is_loopback() {
        config.server.bind = SocketAddr::new(any, config.server.bind.port());
    }
    if config.media.public_ip.is_none() {
        let ip = crate::netif::primary_address().ok_or(
            "--lan found no network address besides loopback; connect to a network, or set \
             media.public_ip (AMPHI_MEDIA_PUBLIC_IP) to the address phones should reach",
        )?;
        config.media.public_ip = Some(ip);
    }
    // Media binds the announced address itself, not every interface: on a machine with
    // several addresses a socket on 0.0.0.0 answers from whichever address routes back to
    // the peer, and ICE drops an answer from an address it did not send to.
    if config.media.bind_ip.is_loopback() {
        config.media.bind_ip = config.media.public_ip.unwrap_or(any);
    }
    if config.server.tls_cert.is_none() && config.server.tls_key.is_none() {
        let mut ips = crate::netif::lan_addresses();
        if let Some(ip) = config.media.public_ip {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        let (cert, key) = crate::tls::dev_certificate(dir, &ips)?;
        config.server.tls_cert = Some(cert);
        config.server.tls_key = Some(key);
    }
    Ok(())
}

/// The loud notice of `--dev --lan`: who can reach the server, at which addresses, and what
/// the browser will say about the certificate.
pub fn announce_lan(config: &Config) {
    let port = config.server.bind.port();
    let scheme = if config.server.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let mut urls: Vec<String> = crate::netif::lan_addresses()
        .iter()
        .map(|ip| format!("{scheme}://{ip}:{port}/"))
        .collect();
    if let Some(ip) = config.media.public_ip {
        let url = format!("{scheme}://{ip}:{port}/");
        if !urls.contains(&url) {
            urls.insert(0, url);
        }
    }
    tracing::warn!(
        "LAN MODE: this development server listens on every interface: anyone on this \
         network can open the page and mint tokens with the public development key. Open {} \
         from a phone on the same network; its certificate is self-signed (kept in {}), so the \
         browser asks once to accept it. Media is announced at {} (UDP port {}).",
        urls.join(" or "),
        data_dir().display(),
        config
            .media
            .public_ip
            .map_or_else(|| "?".into(), |ip| ip.to_string()),
        config.media.udp_port,
    );
}

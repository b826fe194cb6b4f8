//! The `amphi` command: `serve` runs the server, `token` mints access tokens; `channels`,
//! `kick` and `mute` act on a running server through its admin API.

mod admin_cli;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use amphi::config::{Config, DEV_SIGNING_KEY};
use amphi::token::{claims_for, TokenKeys};
use clap::{Args, Parser, Subcommand};

/// glibc malloc spent a third of a media worker's CPU in allocation bookkeeping (profiled at
/// 500 listeners); str0m allocates per packet, so the allocator is on the hot path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "amphi", version, about = "Live audio room engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address and port for HTTP and WebSocket (overrides server.bind).
        #[arg(long)]
        bind: Option<SocketAddr>,
        /// The UDP port for WebRTC media (overrides media.udp_port).
        #[arg(long)]
        udp_port: Option<u16>,
        /// With --dev: serve the local network instead of loopback (every interface, HTTPS
        /// with a self-signed certificate kept in the development data directory) so a phone
        /// on the same network can open the page.
        #[arg(long, requires = "dev")]
        lan: bool,
    },
    /// Print an access token.
    Token {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        identity: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Channel ID or URI the token may join (default: any).
        #[arg(long)]
        channel: Option<String>,
        /// A role the holder may take (repeatable; default: the server's default role).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// A grant such as admin or call (repeatable).
        #[arg(long = "grant")]
        grants: Vec<String>,
        /// Lifetime, e.g. 10m, 2h.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Check a configuration file and print what is wrong with it.
    CheckConfig {
        #[command(flatten)]
        common: Common,
    },
    /// List, show or stop a running server's channels (admin API).
    Channels {
        #[command(subcommand)]
        command: admin_cli::ChannelsCommand,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: admin_cli::Target,
    },
    /// List, show or end a running server's calls; read a user's call log (admin API).
    Calls {
        #[command(subcommand)]
        command: admin_cli::CallsCommand,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: admin_cli::Target,
    },
    /// How a running server's webhook deliveries are doing, or send it a signed test event.
    Webhooks {
        #[command(subcommand)]
        command: admin_cli::WebhooksCommand,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: admin_cli::Target,
    },
    /// Remove a member from a channel; it stays out as kicks do (admin API).
    Kick {
        channel: String,
        #[command(flatten)]
        member: admin_cli::Member,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: admin_cli::Target,
    },
    /// Mute a member, or with --all everyone on stage but the moderators (admin API).
    Mute {
        channel: String,
        #[arg(long, conflicts_with_all = ["identity", "participant"])]
        all: bool,
        #[arg(long, conflicts_with = "all")]
        identity: Option<String>,
        #[arg(long, conflicts_with = "all")]
        participant: Option<String>,
        /// Unmute instead.
        #[arg(long)]
        unmute: bool,
        /// With --all: the moderators too.
        #[arg(long, requires = "all")]
        include_moderators: bool,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: admin_cli::Target,
    },
}

#[derive(Args)]
struct Common {
    /// Configuration file (TOML); AMPHI_<SECTION>_<KEY> variables override it.
    #[arg(long, env = "AMPHI_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Embedded development default: loopback only, a development signing key.
    #[arg(long, global = true)]
    dev: bool,
}

impl Common {
    fn load(&self) -> Result<Config, String> {
        let mut config =
            Config::load(self.config.as_deref(), std::env::vars()).map_err(|e| e.to_string())?;
        if self.dev && config.auth.signing_key.is_empty() {
            config.auth.signing_key = DEV_SIGNING_KEY.into();
        }
        config.dev = self.dev;
        Ok(config)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        use tracing_subscriber::Layer;
        let filter = tracing_subscriber::EnvFilter::try_from_env("AMPHI_LOG")
            .unwrap_or_else(|_| "info".into());
        let log = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(amphi::log_limit::RateLimit::new())
            .with_filter(filter);
        tracing_subscriber::registry().with(log).init();
    }
    amphi::panics::install();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("amphi: {message}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(command: Command) -> Result<(), String> {
    match command {
        Command::Serve {
            common,
            bind,
            udp_port,
            lan,
        } => serve(common, bind, udp_port, lan),
        Command::Token {
            common,
            identity,
            name,
            channel,
            roles,
            grants,
            ttl,
        } => common
            .load()
            .and_then(|config| mint(&config, &identity, name, channel, roles, grants, ttl)),
        Command::Channels {
            command,
            common,
            target,
        } => common
            .load()
            .and_then(|c| admin_cli::run(&c, &target, admin_cli::channels(&command))),
        Command::Calls {
            command,
            common,
            target,
        } => common
            .load()
            .and_then(|c| admin_cli::run(&c, &target, admin_cli::calls(&command))),
        Command::Webhooks {
            command,
            common,
            target,
        } => common
            .load()
            .and_then(|c| admin_cli::run(&c, &target, admin_cli::webhooks(&command))),
        Command::Kick {
            channel,
            member,
            common,
            target,
        } => common
            .load()
            .and_then(|c| admin_cli::run(&c, &target, admin_cli::kick(&channel, &member))),
        Command::Mute {
            channel,
            all,
            identity,
            participant,
            unmute,
            include_moderators,
            common,
            target,
        } => common.load().and_then(|c| {
            let member = admin_cli::Member {
                identity,
                participant,
            };
            if !all && member.identity.is_none() && member.participant.is_none() {
                return Err("name --identity, --participant or --all".into());
            }
            let call = admin_cli::mute(
                &channel,
                (!all).then_some(&member),
                unmute,
                include_moderators,
            );
            admin_cli::run(&c, &target, call)
        }),
        Command::CheckConfig { common } => common.load().and_then(|config| {
            config.validate(common.dev).map_err(|e| e.to_string())?;
            println!("configuration is valid");
            Ok(())
        }),
    }
}

/// `amphi token`: a token for `identity`, checked against the configuration, printed.
fn mint(
    config: &Config,
    identity: &str,
    name: Option<String>,
    channel: Option<String>,
    roles: Vec<String>,
    grants: Vec<String>,
    ttl: Duration,
) -> Result<(), String> {
    let mut claims = claims_for(identity, ttl);
    claims.name = name;
    claims.channel = channel;
    claims.roles = roles;
    claims.grants = grants;
    amphi::ids::Identity::parse(identity).map_err(|e| e.to_string())?;
    check_token_claims(config, &claims)?;
    if config.auth.signing_key.is_empty() {
        return Err("no signing key: pass --dev, --config FILE or set \
                    AMPHI_AUTH_SIGNING_KEY"
            .into());
    }
    let keys = TokenKeys::new(config.auth.signing_key.as_bytes(), config.auth.leeway);
    println!("{}", keys.mint(&claims));
    Ok(())
}

/// A token the configuration would refuse is refused here, where it is made: a role the role
/// table lacks or a grant the server does not know would only fail later, at a join.
fn check_token_claims(config: &Config, claims: &amphi::token::Claims) -> Result<(), String> {
    let table = config.role_table();
    for role in &claims.roles {
        if table.get(role).is_none() {
            return Err(format!(
                "role '{role}' is not in the role table of this configuration (it has: {})",
                table.names()
            ));
        }
    }
    for grant in &claims.grants {
        if !amphi::token::GRANTS.contains(&grant.as_str()) {
            return Err(format!(
                "grant '{grant}' is unknown; grants are {}",
                amphi::token::GRANTS.join(", ")
            ));
        }
    }
    Ok(())
}

fn serve(
    common: Common,
    bind: Option<SocketAddr>,
    udp_port: Option<u16>,
    lan: bool,
) -> Result<(), String> {
    let mut config = common.load()?;
    if let Some(bind) = bind {
        config.server.bind = bind;
    }
    if let Some(port) = udp_port {
        config.media.udp_port = port;
    }
    if common.dev {
        amphi::devmode::prepare(&mut config, lan)?;
    }
    config.validate(common.dev).map_err(|e| e.to_string())?;
    if common.dev && config.auth.signing_key == DEV_SIGNING_KEY {
        tracing::warn!(
            "DEVELOPMENT MODE: tokens are signed with the public development key \
             \"{DEV_SIGNING_KEY}\"; mint one with `amphi token --dev --identity NAME`"
        );
    }
    if lan {
        amphi::devmode::announce_lan(&config);
    }
    let listener = std::net::TcpListener::bind(config.server.bind)
        .map_err(|e| format!("cannot listen on {}: {e}", config.server.bind))?;
    actix_rt::System::new()
        .block_on(amphi::run(config, listener, shutdown_signal()))
        .map_err(|e| format!("server error: {e}"))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

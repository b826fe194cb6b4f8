//! Starting and stopping a server: `run` inside an actix system (the binary), `spawn` on a
//! thread of its own (tests, benchmarks, embedding).

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use actix::Actor;
use actix_web::{web, App, HttpServer};

use crate::bans::Bans;
use crate::calls::actor::CallActor;
use crate::calls::delivery::WebhookActor;
use crate::calls::engine::CallEngine;
use crate::calls::logs::CallLogActor;
use crate::calls::store::StoreError;
use crate::channel::actor::ChannelActor;
use crate::channel::ChannelSettings;
use crate::config::Config;
use crate::media::MediaPlane;
use crate::messages::{CallDirectory, CallHandle, ChannelHandle, WebhookSink};
use crate::metrics::Metrics;
use crate::registry::ChannelRegistry;
use crate::state::AppState;

/// The composition root: the one place that names the actors it starts. The registry gets a
/// factory for channel actors, the call engine one for call actors, and the registry learns
/// the engine as a call directory. Runs inside an actix system.
pub(crate) fn compose(
    config: Config,
    media: Arc<MediaPlane>,
    metrics: Metrics,
) -> Result<AppState, StoreError> {
    let settings = ChannelSettings {
        roles: Arc::new(config.role_table()),
        default_role: config.default_role.clone(),
        max_participants: config.limits.max_participants_per_channel,
        max_metadata_bytes: config.limits.max_metadata_bytes,
        empty_grace: config.timeouts.empty_channel_grace,
        count_interval: config.timeouts.audience_count_interval,
        mix_policy: config.media.mix_policy,
        mix_auto_above: config.media.mix_auto_above,
    };
    let mailbox = config.limits.channel_queue;
    let bans = Arc::new(
        Bans::open(&config.calls.database, crate::clock::now_unix_ms())
            .map_err(StoreError::Sqlite)?,
    );
    let kick_ban = (!config.timeouts.kick_ban.is_zero()).then_some(config.timeouts.kick_ban);
    let channel_bans = bans.clone();
    let plane = media.clone();
    // One signed sender for calls' and channels' events.
    let webhooks = WebhookActor::start_configured(&config.calls);
    let channel_webhooks = webhooks.clone().map(WebhookSink::new);
    let channels = Arc::new(ChannelRegistry::new(Box::new(move |id, registry| {
        let actor = ChannelActor::new(
            id.clone(),
            settings.clone(),
            registry,
            plane.clone(),
            mailbox,
        )
        .with_webhooks(channel_webhooks.clone())
        .with_bans(channel_bans.clone(), kick_ban);
        ChannelHandle::new(actor.start())
    })));
    let calls = CallEngine::start(
        &config.calls,
        channels.clone(),
        CallLogActor::start_configured(&config.calls)?,
        webhooks.map(WebhookSink::new),
        bans.clone(),
        Box::new(|engine, call, placement| {
            CallHandle::new(CallActor::new(engine, call, placement).start())
        }),
        {
            let plane = media.clone();
            Box::new(move |channel, on| plane.video(channel, on))
        },
    );
    let directory: Arc<dyn CallDirectory> = calls.clone();
    channels.set_calls(Arc::downgrade(&directory));
    Ok(AppState::new(config, media, channels, calls, bans, metrics))
}

/// Serves on `listener` until `shutdown` resolves, then shuts down gracefully: every
/// participant gets `left` with `server_shutdown` and its connection closes. The process's
/// one server: its metrics recorder is also the process's.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let metrics = Metrics::new();
    if !metrics.install_global() {
        tracing::warn!("another metrics recorder is installed; /metrics shows what this server's threads record");
    }
    let _entered = metrics.enter();
    let metrics_listener = match config.server.metrics_bind {
        Some(addr) => Some(TcpListener::bind(addr)?),
        None => None,
    };
    serve(config, listener, metrics_listener, shutdown, metrics).await
}

/// `run` with the recorder chosen by the caller, entered on the calling thread.
async fn serve(
    config: Config,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
    metrics: Metrics,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let shutdown_timeout = config.server.shutdown_timeout;
    crate::metrics::register_series(config.roles.keys().map(String::as_str));
    crate::calls::delivery::register_series();
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key).map_err(io::Error::other)?),
        _ => None,
    };
    let media = MediaPlane::start(&config.media, &metrics)?;
    let state = match compose(config, media.clone(), metrics.clone()) {
        Ok(state) => Arc::new(state),
        Err(e) => {
            media.stop();
            return Err(io::Error::other(format!("cannot open the call log: {e}")));
        }
    };
    let data = web::Data::from(state.clone());
    let separate_metrics = metrics_listener.is_some();
    let metrics_server = match metrics_listener {
        Some(l) => Some(serve_metrics(l, data.clone(), metrics.clone())?),
        None => None,
    };
    let server = HttpServer::new(move || {
        // Runs once on each HTTP worker thread as it starts: sessions and the actors they
        // start live there.
        metrics.enter_for_thread();
        let origins = data.config.server.cors_origins.clone();
        let app = App::new().app_data(data.clone()).wrap_fn(move |req, srv| {
            use actix_web::dev::Service;
            let allowed = crate::http::cors_allowed(&req, &origins);
            let reply = srv.call(req);
            async move {
                let mut res = reply.await?;
                if let Some(origin) = allowed {
                    crate::http::add_cors_headers(res.headers_mut(), origin);
                }
                Ok(res)
            }
        });
        let app = app.configure(crate::admin_calls::routes);
        if separate_metrics {
            app.configure(crate::http::public_routes)
        } else {
            app.configure(crate::http::routes)
        }
    })
    // A reply and the events behind it are separate small writes; with Nagle on, the second
    // waits for the client's delayed ACK (40 ms on Linux).
    .on_connect(|conn, _| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(shutdown_timeout.as_secs().max(1));
    let (server, scheme) = match tls {
        Some(acceptor) => (server.listen_openssl(listener, acceptor)?, "https"),
        None => (server.listen(listener)?, "http"),
    };
    let server = server.run();
    let handle = server.handle();
    let ws = if scheme == "https" { "wss" } else { "ws" };
    tracing::info!("amphi listening on {scheme}://{addr} (WebSocket at {ws}://{addr}/ws)");
    let mut server = actix_rt::spawn(server);
    tokio::select! {
        result = &mut server => {
            return result.map_err(io::Error::other)?;
        }
        () = shutdown => {}
    }
    state.shutdown().await;
    if let Some(m) = metrics_server {
        m.stop(false).await;
    }
    handle.stop(true).await;
    server.await.map_err(io::Error::other)??;
    media.stop();
    tracing::info!("amphi stopped");
    Ok(())
}

/// `/metrics` alone on `listener`, one worker: Prometheus scrapes it, nothing else does.
fn serve_metrics(
    listener: TcpListener,
    data: web::Data<AppState>,
    metrics: Metrics,
) -> io::Result<actix_web::dev::ServerHandle> {
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        metrics.enter_for_thread();
        App::new()
            .app_data(data.clone())
            .configure(crate::http::metrics_routes)
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    tracing::info!("metrics on http://{addr}/metrics (and not on the main port)");
    Ok(handle)
}

/// A server running on its own thread.
pub struct ServerHandle {
    pub addr: SocketAddr,
    /// Where `/metrics` is served when `server.metrics_bind` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The signalling port speaks HTTPS and WSS (`server.tls_cert`).
    pub tls: bool,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl ServerHandle {
    pub fn http_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn ws_url(&self, token: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/ws?token={token}", self.addr)
    }

    /// Graceful shutdown; returns once the server has stopped.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Binds `config.server.bind` (port 0 picks a free port) and serves on a new thread.
pub fn spawn(config: Config) -> io::Result<ServerHandle> {
    let listener = TcpListener::bind(config.server.bind)?;
    let addr = listener.local_addr()?;
    let metrics_listener = match config.server.metrics_bind {
        Some(addr) => Some(TcpListener::bind(addr)?),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let tls = config.server.tls_cert.is_some();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("amphi-server".into())
        .spawn(move || {
            let metrics = Metrics::new();
            let _entered = metrics.enter();
            actix_rt::System::new().block_on(serve(
                config,
                listener,
                metrics_listener,
                async move {
                    let _ = rx.await;
                },
                metrics,
            ))
        })?;
    Ok(ServerHandle {
        addr,
        metrics_addr,
        tls,
        stop: Some(tx),
        thread: Some(thread),
    })
}

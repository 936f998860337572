//! `promdrop serve`: the group directory over HTTP, as a drop-in for the
//! Prometheus Pushgateway. The only module that knows tokio and hyper: it
//! binds, accepts, turns hyper requests into plain [`handlers::Request`]s,
//! runs [`handlers::handle`] off the async threads (the store blocks on
//! fsync), and shuts down gracefully on SIGTERM or SIGINT, finishing the
//! requests in flight.

mod api;
mod failures;
pub mod handlers;
pub mod limits;
mod stats;
mod status;
mod tls;
pub mod web_config;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

use crate::store::{Store, StoreError, StoreOptions};

use self::handlers::{App, HttpError, Request, Response};
pub use self::limits::Limits;
use self::limits::{Cap, OverLimit};
use self::stats::Stats;
use self::web_config::{BasicAuth, WebConfig};

/// Options of `promdrop serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The store it serves.
    pub store: StoreOptions,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The caps on what one client can send or make the server hold.
    pub limits: Limits,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Prefix of every route, "" or `/something`.
    pub prefix: String,
    /// Where the scrape is served.
    pub telemetry_path: String,
    /// Enable `PUT /api/v1/admin/wipe`.
    pub admin_api: bool,
    /// Enable `PUT|POST /-/quit`.
    pub lifecycle: bool,
    /// TTL of pushes that name none.
    pub default_ttl: Option<Duration>,
    /// How often expired groups are removed.
    pub sweep_every: Duration,
    /// How long a client may take to send a request's body.
    pub body_timeout: Duration,
    /// `--web.config.file`: basic auth and TLS.
    pub web_config: Option<std::path::PathBuf>,
}

impl ServeOptions {
    /// The settings as `/api/v1/status` lists them.
    fn flags(&self) -> Vec<(String, String)> {
        vec![
            ("dir".into(), self.store.dir.display().to_string()),
            (
                "ttl".into(),
                self.default_ttl
                    .map(crate::duration::human)
                    .unwrap_or_default(),
            ),
            ("web.enable-admin-api".into(), self.admin_api.to_string()),
            ("web.enable-lifecycle".into(), self.lifecycle.to_string()),
            ("web.listen-address".into(), self.listen.to_string()),
            ("web.route-prefix".into(), self.prefix.clone()),
            ("web.telemetry-path".into(), self.telemetry_path.clone()),
        ]
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The directory is unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The web configuration file is unusable.
    #[error(transparent)]
    WebConfig(#[from] web_config::WebConfigError),
    /// Binding or running failed.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Makes every thread allocate from one glibc arena. By default each
/// thread that allocates may get an arena of its own, up to eight per core,
/// and memory freed in one stays there: after a few thousand pushes through
/// the worker and blocking threads, the server holds about twice the memory
/// it uses. Pushes serialize on the directory lock anyway, so sharing one
/// arena costs them little. Called before any thread starts.
#[allow(unsafe_code)]
fn one_allocator_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator settings; no thread exists yet
    // that could be allocating.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Serves until SIGTERM or SIGINT.
pub fn serve(options: &ServeOptions) -> Result<(), ServeError> {
    let web = match &options.web_config {
        Some(path) => {
            let web = WebConfig::load(path)?;
            for setting in &web.ignored {
                log(&format!("{path:?}: {setting} has no effect in promdrop"));
            }
            let tls = match &web.tls {
                Some(settings) => Some(tls::server_config(settings).map_err(|reason| {
                    web_config::WebConfigError {
                        path: path.clone(),
                        reason,
                    }
                })?),
                None => None,
            };
            (BasicAuth::new(web.users), tls)
        }
        None => (None, None),
    };
    let (auth, tls) = web;
    let store = Store::open(options.store.clone())?
        .keep_index_in_memory()
        .with_max_groups(options.limits.groups);
    let quit = Arc::new(Notify::new());
    let notify = Arc::clone(&quit);
    let app = Arc::new(App {
        store,
        limits: options.limits,
        body_timeout: options.body_timeout,
        prefix: options.prefix.trim_end_matches('/').to_owned(),
        telemetry_path: options.telemetry_path.clone(),
        admin_api: options.admin_api,
        lifecycle: options.lifecycle,
        default_ttl: options.default_ttl,
        started: std::time::SystemTime::now(),
        flags: options.flags(),
        stats: Stats::default(),
        failures: failures::Failures::default(),
        auth,
        quit: Box::new(move || notify.notify_one()),
    });
    one_allocator_arena();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .map_err(|source| ServeError::Listen {
            addr: options.listen,
            source,
        })?;
    runtime.block_on(run(app, options, quit, tls))
}

/// The listening socket systemd passed (socket activation: `LISTEN_FDS`),
/// else a new one on the configured address; and how it was obtained, for
/// the log.
async fn listen(options: &ServeOptions) -> Result<(TcpListener, &'static str), ServeError> {
    let failed = |source| ServeError::Listen {
        addr: options.listen,
        source,
    };
    match listenfd::ListenFd::from_env()
        .take_tcp_listener(0)
        .map_err(failed)?
    {
        Some(inherited) => {
            inherited.set_nonblocking(true).map_err(failed)?;
            let listener = TcpListener::from_std(inherited).map_err(failed)?;
            Ok((listener, " (socket from systemd)"))
        }
        None => Ok((TcpListener::bind(options.listen).await.map_err(failed)?, "")),
    }
}

async fn run(
    app: Arc<App>,
    options: &ServeOptions,
    quit: Arc<Notify>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<(), ServeError> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let (listener, how) = listen(options).await?;
    let bound = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: options.listen,
        source,
    })?;
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::spawn(sweep(Arc::clone(&app), options.sweep_every));
    let signalled = shutdown_signal();
    let shutdown = async move {
        tokio::select! {
            () = signalled => {}
            () = quit.notified() => {}
        }
    };
    tokio::pin!(shutdown);
    // Announced only now: the signals are handled from here on.
    log(&format!(
        "listening on {scheme}://{bound}/{how} serving {:?}",
        app.store.dir()
    ));
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
        };
        let app = Arc::clone(&app);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                // The handshake gets the time the headers get; a client
                // speaking plain HTTP fails it and is closed.
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream));
                    if let Ok(Ok(stream)) = handshake.await {
                        serve_connection(app, stream, watcher).await;
                    }
                }
                None => serve_connection(app, stream, watcher).await,
            }
            drop(permit);
        });
    }
    log("shutting down; finishing requests in flight");
    let _ = tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await;
    let _ = tokio::task::spawn_blocking(move || app.store.flush_index()).await;
    Ok(())
}

/// How long a client may take to send a request's headers (and, with TLS,
/// to complete the handshake).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP/1.1 on one connection, plain or TLS, until it closes or
/// the server shuts down gracefully.
async fn serve_connection<I>(app: Arc<App>, io: I, watcher: hyper_util::server::graceful::Watcher)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| answer(Arc::clone(&app), request));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    let _ = watcher.watch(connection).await;
}

/// A log line on stderr. A closed stderr must not stop the server, so
/// write errors are ignored (`eprintln!` would panic).
fn log(message: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "promdrop: {message}");
}

/// Removes expired groups every `every`, and counts them.
async fn sweep(app: Arc<App>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let app = Arc::clone(&app);
        let _ = tokio::task::spawn_blocking(move || {
            // Also persists the index, which pushes keep in memory, and
            // catches any change another tool made unseen.
            let _ = app.store.flush_index();
            if let Ok(removed) = app.store.expire(std::time::SystemTime::now(), false) {
                let groups = removed
                    .iter()
                    .filter(|r| matches!(r, crate::store::Expired::Group { .. }))
                    .count();
                app.stats.expired(groups);
            }
        })
        .await;
    }
}

/// Waits for SIGTERM or SIGINT. Registered when called, so that a signal
/// arriving before the first poll is not lost to the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let streams = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = streams else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

/// Checks the credentials, reads the body (capped), runs the handler, and
/// turns its response into hyper's. Every answer is counted, refusals
/// before the handler included.
async fn answer(
    app: Arc<App>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = request.into_parts();
    let mut request = Request {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
    };
    let response = match read_body(&app, &parts.headers, body).await {
        Err(refusal) => handlers::refuse(&app, &request, refusal),
        // A read answers from memory, save for files that changed, and a
        // write without fsync is work for the CPU: run either on this
        // thread, which hands its other tasks to another, without the two
        // hand-overs to a blocking-pool thread and back (for writes, measured
        // by hand on tmpfs, 2026-12-07: 5% more pushes per second at 16
        // connections, a third more at 2).
        Ok(body) if request.method == "GET" || !app.store.fsyncs() => {
            request.body = body;
            tokio::task::block_in_place(|| handlers::handle(&app, &request))
        }
        // A durable write waits for the disk: a blocking-pool thread waits,
        // and the pushes of many connections wait together (this thread
        // waiting in their place halved their rate, same measurement on ext4).
        Ok(body) => {
            request.body = body;
            tokio::task::spawn_blocking(move || handlers::handle(&app, &request))
                .await
                .unwrap_or_else(|_| Response {
                    status: 500,
                    headers: Vec::new(),
                    body: b"internal error\n".to_vec(),
                })
        }
    };
    let mut builder = hyper::Response::builder().status(response.status);
    for (name, value) in response.headers {
        builder = builder.header(name, value);
    }
    Ok(builder
        .body(Full::new(Bytes::from(response.body)))
        .expect("status and headers are valid"))
}

/// The request's body, once the credentials are checked: read no more than
/// the cap for the body as sent, and past it refuse without reading the
/// rest.
async fn read_body(
    app: &Arc<App>,
    headers: &hyper::HeaderMap,
    body: hyper::body::Incoming,
) -> Result<Vec<u8>, HttpError> {
    if app.auth.is_some() {
        // bcrypt takes its time on purpose: off the async threads.
        let header = headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let checker = Arc::clone(app);
        let allowed = tokio::task::spawn_blocking(move || {
            checker
                .auth
                .as_ref()
                .is_some_and(|auth| auth.allows(header.as_deref()))
        })
        .await
        .unwrap_or(false);
        if !allowed {
            return Err(HttpError::Unauthorized);
        }
    }
    let gzip = handlers::is_gzip(
        headers
            .get(hyper::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let (cap, limit, what) = if gzip {
        (
            Cap::CompressedBody,
            app.limits.compressed_body,
            "compressed request body",
        )
    } else {
        (Cap::Body, app.limits.body, "request body")
    };
    match tokio::time::timeout(app.body_timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(HttpError::BodyTimeout(app.body_timeout)),
        Ok(Err(_)) => Err(HttpError::from(OverLimit {
            what: what.into(),
            cap,
            limit,
        })),
        Ok(Ok(collected)) => Ok(collected.to_bytes().to_vec()),
    }
}

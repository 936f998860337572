//! `promdrop serve`: the group directory over HTTP, as a drop-in for the
//! Prometheus Pushgateway. The only module that knows tokio and hyper: it
//! binds, accepts, turns hyper requests into plain [`handlers::Request`]s,
//! runs [`handlers::handle`] off the async threads (the store blocks on
//! fsync), and shuts down gracefully on SIGTERM or SIGINT, finishing the
//! requests in flight.

pub mod handlers;

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
use tokio::sync::Semaphore;

use crate::store::{Store, StoreError, StoreOptions};

use self::handlers::{App, HttpError, Request, Response};

/// Options of `promdrop serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The store it serves.
    pub store: StoreOptions,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The largest request body, after decompression.
    pub max_body: usize,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The directory is unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Binding or running failed.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Serves until SIGTERM or SIGINT.
pub fn serve(options: &ServeOptions) -> Result<(), ServeError> {
    let store = Store::open(options.store.clone())?;
    let app = Arc::new(App {
        store,
        max_body: options.max_body,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| ServeError::Listen {
            addr: options.listen,
            source,
        })?;
    runtime.block_on(run(app, options))
}

async fn run(app: Arc<App>, options: &ServeOptions) -> Result<(), ServeError> {
    let listener =
        TcpListener::bind(options.listen)
            .await
            .map_err(|source| ServeError::Listen {
                addr: options.listen,
                source,
            })?;
    let bound = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: options.listen,
        source,
    })?;
    eprintln!(
        "promdrop: listening on http://{bound}/ serving {:?}",
        app.store.dir()
    );
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let graceful = GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
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
        let service = service_fn(move |request| answer(Arc::clone(&app), request));
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    eprintln!("promdrop: shutting down; finishing requests in flight");
    let _ = tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Reads the body (capped), runs the handler on a blocking thread, and
/// turns its response into hyper's.
async fn answer(
    app: Arc<App>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = request.into_parts();
    let response = match Limited::new(body, app.max_body).collect().await {
        Err(_) => HttpError::TooLarge(app.max_body).response(),
        Ok(collected) => {
            let request = Request {
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
                body: collected.to_bytes().to_vec(),
            };
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

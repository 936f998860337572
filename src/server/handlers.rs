//! The Pushgateway-compatible HTTP surface, without any HTTP framework:
//! [`handle`] takes a plain [`Request`] and returns a plain [`Response`], so
//! every route is testable in-process. Handlers parse and validate, then
//! make one call into the [`Store`]; they never touch files themselves.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::time::{Duration, SystemTime};

use crate::duration;
use crate::exposition::Family;
use crate::exposition::parse::parse;
use crate::grouping_key::{GroupingKey, UrlKeyError};
use crate::store::{PushMode, Rendered, RenderedFamily, Snapshot, Store, StoreError};

use super::failures::Failures;
use super::limits::{Cap, Limits, OverLimit};
use super::stats::{OWN_METRICS, Stats};
use super::web_config::BasicAuth;
use super::{api, status};

/// The header a push may carry to set its group's TTL, e.g. `26h`.
pub const TTL_HEADER: &str = "x-promdrop-ttl";

/// A request, as the handlers see it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The path, still percent-encoded, without the query.
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as received (maybe gzip-compressed).
    pub body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response, as the handlers make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    pub(super) fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// An error message, as Go's `http.Error` writes it: plain text and a
    /// newline.
    pub(super) fn text(status: u16, body: &str) -> Self {
        Self::plain(status, format!("{body}\n"))
    }

    /// A plain-text body, as it is.
    fn plain(status: u16, body: impl Into<Vec<u8>>) -> Self {
        let mut response = Self::new(status, body);
        response
            .headers
            .push(("content-type", "text/plain; charset=utf-8".into()));
        response
    }
}

/// Everything a request can fail with; [`HttpError::response`] is the one
/// place that picks status codes.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No or wrong credentials, where `basic_auth_users` are configured.
    #[error("Unauthorized")]
    Unauthorized,
    /// No such route.
    #[error("404 page not found")]
    NotFound,
    /// The route exists for other methods.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// A bad grouping key in the URL.
    #[error("{0}")]
    BadKey(#[from] UrlKeyError),
    /// A body that is not valid metrics.
    #[error("{0}")]
    BadBody(String),
    /// An unreadable TTL header.
    #[error("bad {TTL_HEADER} header: {0}")]
    BadTtl(String),
    /// The body did not arrive in time.
    #[error("request body not received within {0:?}")]
    BodyTimeout(Duration),
    /// A request past one of the configured caps.
    #[error(transparent)]
    OverLimit(#[from] OverLimit),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HttpError {
    /// The reason label of `promdrop_rejected_pushes_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::NotFound | Self::MethodNotAllowed(_) => "route",
            Self::BadKey(_) => "grouping_key",
            Self::BadBody(_) | Self::BadTtl(_) => "body",
            Self::OverLimit(_) => "limit",
            Self::BodyTimeout(_) => "timeout",
            Self::Store(StoreError::Invalid(_)) => "inconsistent",
            Self::Store(_) => "store",
        }
    }

    /// The status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::NotFound | Self::BadKey(UrlKeyError::NoRoute) => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::BadKey(_)
            | Self::BadBody(_)
            | Self::BadTtl(_)
            | Self::Store(StoreError::Invalid(_)) => 400,
            Self::OverLimit(over) => match over.cap {
                Cap::CompressedBody | Cap::Body | Cap::Series => 413,
                Cap::LabelName | Cap::LabelValue => 400,
                Cap::Groups => 403,
            },
            Self::BodyTimeout(_) => 408,
            Self::Store(StoreError::NotOurs(_)) => 409,
            Self::Store(StoreError::LockTimeout { .. }) => 503,
            Self::Store(_) => 500,
        }
    }

    /// The message the client gets, as the CLI would print it.
    pub fn message(&self) -> String {
        match self {
            Self::Store(StoreError::Invalid(problems)) => {
                format!(
                    "pushed metrics are invalid or inconsistent with existing metrics: {}",
                    problems.join("; ")
                )
            }
            Self::Store(err) => crate::error_chain(err),
            other => other.to_string(),
        }
    }

    /// The response for this error: the status, and the message as a plain
    /// text body.
    pub fn response(&self) -> Response {
        let mut response = Response::text(self.status(), &self.message());
        match self {
            Self::MethodNotAllowed(allow) => response.headers.push(("allow", (*allow).into())),
            Self::Unauthorized => response.headers.push(("www-authenticate", "Basic".into())),
            _ => {}
        }
        response
    }
}

/// What the handlers need: the store, and the server's settings.
pub struct App {
    /// The directory of group files.
    pub store: Store,
    /// The caps on what a client can send or make the server hold.
    pub limits: Limits,
    /// How long a client may take to send a request's body.
    pub body_timeout: Duration,
    /// Prefix of every route (`--web.route-prefix`), "" or `/something`.
    pub prefix: String,
    /// Where the scrape is served (`--web.telemetry-path`).
    pub telemetry_path: String,
    /// `PUT /api/v1/admin/wipe` is enabled.
    pub admin_api: bool,
    /// `PUT|POST /-/quit` is enabled.
    pub lifecycle: bool,
    /// TTL of a push that names none.
    pub default_ttl: Option<Duration>,
    /// When the server started.
    pub started: SystemTime,
    /// The settings, as `/api/v1/status` shows them.
    pub flags: Vec<(String, String)>,
    /// promdrop's own metrics.
    pub stats: Stats,
    /// The last refused push per grouping key, for the status page.
    pub failures: Failures,
    /// `basic_auth_users` of `--web.config.file`, if any.
    pub auth: Option<BasicAuth>,
    /// Asks the server to stop (`/-/quit`).
    pub quit: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("store", &self.store)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Routes and answers one request, and counts it.
pub fn handle(app: &App, request: &Request) -> Response {
    let (route, handler) = route(app, request);
    answer(app, route, handler())
}

/// Answers a request refused before its handler could run (not
/// authorized, or its body too large or too slow), and counts it under the
/// route it was for, as [`handle`] would.
pub fn refuse(app: &App, request: &Request, error: HttpError) -> Response {
    let (route, _) = route(app, request);
    answer(app, route, Err(error))
}

fn answer(app: &App, route: &'static str, result: Result<Response, HttpError>) -> Response {
    let response = result.unwrap_or_else(|err| {
        if route == "push" {
            app.stats.rejected(err.reason());
        }
        err.response()
    });
    app.stats.request(route, response.status);
    response
}

/// What answers a request, once it is to be answered.
type Handler<'a> = Box<dyn FnOnce() -> Result<Response, HttpError> + 'a>;

/// The route a request is for (the `route` label of the request counts),
/// and its handler.
fn route<'a>(app: &'a App, request: &'a Request) -> (&'static str, Handler<'a>) {
    let method = request.method.as_str();
    let decoded = match percent_decode(&request.path) {
        Ok(decoded) => decoded,
        Err(err) => {
            let is_key = request
                .path
                .strip_prefix(app.prefix.as_str())
                .is_some_and(|p| p.starts_with("/metrics/"));
            let route = match method {
                "PUT" | "POST" if is_key => "push",
                "DELETE" if is_key => "delete",
                _ => "other",
            };
            return (route, Box::new(move || Err(HttpError::BadKey(err))));
        }
    };
    let Some(path) = decoded
        .strip_prefix(app.prefix.as_str())
        .filter(|p| p.starts_with('/'))
    else {
        return ("other", Box::new(|| Err(HttpError::NotFound)));
    };
    // Like the Pushgateway's router: OPTIONS on a route answers which
    // methods it takes, any other method it does not take gets 405.
    let only = |allow| -> Handler<'a> {
        if method == "OPTIONS" {
            Box::new(move || {
                let mut response = Response::new(200, Vec::new());
                response.headers.push(("allow", String::from(allow)));
                Ok(response)
            })
        } else {
            Box::new(move || Err(HttpError::MethodNotAllowed(allow)))
        }
    };
    let text =
        |status, body| -> Handler<'a> { Box::new(move || Ok(Response::plain(status, body))) };
    if let Some(key_path) = path.strip_prefix("/metrics/") {
        if let Err(UrlKeyError::NoRoute) = GroupingKey::from_url_path(key_path) {
            return ("other", Box::new(|| Err(HttpError::NotFound)));
        }
        let key_path = key_path.to_owned();
        return match method {
            "PUT" => (
                "push",
                Box::new(move || push(app, &key_path, PushMode::Replace, request)),
            ),
            "POST" => (
                "push",
                Box::new(move || push(app, &key_path, PushMode::Add, request)),
            ),
            "DELETE" => ("delete", Box::new(move || delete(app, &key_path))),
            _ => ("push", only("DELETE, OPTIONS, POST, PUT")),
        };
    }
    if path == app.telemetry_path {
        return if method == "GET" {
            ("metrics", Box::new(|| scrape(app, request)))
        } else {
            ("metrics", only("GET, OPTIONS"))
        };
    }
    match (path, method) {
        ("/", "GET") => ("status_page", Box::new(|| status_page(app))),
        ("/-/healthy", "GET") => ("healthy", text(200, "OK")),
        ("/-/ready", "GET") => ("ready", text(200, "OK")),
        ("/-/quit", "PUT" | "POST") if app.lifecycle => (
            "quit",
            Box::new(|| {
                (app.quit)();
                Ok(Response::plain(200, "Requesting termination... Goodbye!"))
            }),
        ),
        ("/-/quit", "PUT" | "POST") => ("quit", text(403, "Lifecycle API is not enabled.")),
        ("/-/quit", "OPTIONS") => ("quit", only("GET, OPTIONS, POST, PUT")),
        ("/-/quit", _) => ("quit", text(405, "Only POST or PUT requests allowed.")),
        (api_path, "OPTIONS") if api_path.starts_with("/api/v1/") => {
            ("other", Box::new(|| Ok(api::preflight())))
        }
        ("/api/v1/status", "GET") => ("status", Box::new(|| Ok(api::status(app)))),
        ("/api/v1/metrics", "GET") => ("api_metrics", Box::new(|| api::metrics(app))),
        ("/" | "/-/healthy" | "/-/ready" | "/api/v1/status" | "/api/v1/metrics", _) => {
            ("other", only("GET, OPTIONS"))
        }
        ("/api/v1/admin/wipe", "PUT") if app.admin_api => ("wipe", Box::new(|| wipe(app))),
        ("/api/v1/admin/wipe", _) if app.admin_api => ("wipe", only("OPTIONS, PUT")),
        _ => ("other", Box::new(|| Err(HttpError::NotFound))),
    }
}

/// A push to the group in `key_path`; a refusal (4xx) is remembered for
/// the status page, in memory only, and a success forgets it.
fn push(
    app: &App,
    key_path: &str,
    mode: PushMode,
    request: &Request,
) -> Result<Response, HttpError> {
    let key = GroupingKey::from_url_path(key_path)?;
    let result = push_to(app, &key, mode, request);
    match &result {
        Ok(_) => app.failures.clear(&key),
        Err(err) if (400..500).contains(&err.status()) => {
            app.failures.record(&key, SystemTime::now(), &err.message());
        }
        Err(_) => {}
    }
    result
}

fn push_to(
    app: &App,
    key: &GroupingKey,
    mode: PushMode,
    request: &Request,
) -> Result<Response, HttpError> {
    let arrived = std::time::Instant::now();
    let ttl = match request.header(TTL_HEADER) {
        Some(text) => Some(duration::parse_ttl(text.trim()).map_err(HttpError::BadTtl)?),
        None => app.default_ttl,
    };
    let (families, size) = decode_push(request, &app.limits)?;
    // The server's own names, and those `promdrop run` writes into groups
    // of the same directory (a push of them could block every run's write).
    let is_own =
        |name: &str| OWN_METRICS.contains(&name) || crate::wrap::metrics::is_run_metric(name);
    if let Some(own) = families.iter().find(|f| is_own(f.name())) {
        return Err(HttpError::BadBody(format!(
            "metric name {:?} is promdrop's own",
            own.name()
        )));
    }
    app.store
        .push(key, families, mode, ttl, SystemTime::now())
        .map_err(|err| match err {
            StoreError::GroupLimit { limit, held } => HttpError::from(OverLimit {
                what: format!("a new group (the directory holds {held})"),
                cap: Cap::Groups,
                limit,
            }),
            other => other.into(),
        })?;
    app.stats.pushed(size, arrived.elapsed());
    Ok(Response::new(200, Vec::new()))
}

fn delete(app: &App, key_path: &str) -> Result<Response, HttpError> {
    let key = GroupingKey::from_url_path(key_path)?;
    app.store.delete(&key)?;
    app.failures.clear(&key);
    Ok(Response::new(202, Vec::new()))
}

/// Deletes every group, as the Pushgateway's admin API does.
fn wipe(app: &App) -> Result<Response, HttpError> {
    for info in app.store.list()? {
        app.store.delete(&info.group.key)?;
    }
    app.failures.clear_all();
    Ok(Response::new(202, Vec::new()))
}

/// `GET /`: the status page, every group and every remembered refusal.
fn status_page(app: &App) -> Result<Response, HttpError> {
    let listing = app.store.listing()?;
    let rows = status::rows(listing.groups, app.failures.all());
    let page = status::render(app.store.dir(), &rows, &listing.skipped, SystemTime::now());
    let mut response = Response::new(200, page);
    response.headers.extend([
        ("content-type", "text/html; charset=utf-8".to_owned()),
        ("cache-control", "no-cache".to_owned()),
        (
            "content-security-policy",
            status::CONTENT_SECURITY_POLICY.to_owned(),
        ),
    ]);
    Ok(response)
}

/// Every live group (expired ones are never served), families of the same
/// name merged under one HELP and TYPE, sorted by name. Other `*.prom` files
/// are left out, counted, and logged the first time.
///
/// Each group's families are text already (see [`Snapshot`]): a scrape
/// copies the first group's HELP, TYPE and samples of a family, then the
/// samples of every other group with that family, in file-name order.
fn scrape(app: &App, request: &Request) -> Result<Response, HttpError> {
    let now = SystemTime::now();
    let listing = app.store.listing()?;
    for skipped in listing.skipped.iter().filter(|s| s.new) {
        super::log(&format!(
            "not serving {:?}: {}",
            app.store.dir().join(&skipped.file),
            skipped.reason
        ));
    }
    let live: Vec<&Snapshot> = listing
        .groups
        .iter()
        .map(|info| &*info.group)
        .filter(|group| !group.expired(now))
        .collect();
    let series = live.iter().map(|g| g.served_series()).sum();
    let own = Rendered::new(app.stats.families(live.len(), series, &listing.skipped));
    let mut by_name: BTreeMap<&str, Vec<RenderedFamily<'_>>> = BTreeMap::new();
    for family in live
        .iter()
        .flat_map(|g| g.rendered().iter())
        .chain(own.iter())
    {
        by_name.entry(family.name).or_default().push(family);
    }
    let size = live.iter().map(|g| g.rendered().len()).sum::<usize>() + own.len();
    let mut body = String::with_capacity(size);
    for families in by_name.values() {
        let first = families[0];
        body.push_str(first.text);
        for family in &families[1..] {
            // Families disagreeing on HELP or TYPE never pass the store's
            // checks; one that slipped in by other means is left out.
            if family.kind == first.kind && family.help == first.help {
                body.push_str(family.samples);
            }
        }
    }
    let body = body.into_bytes();
    let mut response = Response::new(200, body);
    response.headers.push((
        "content-type",
        "text/plain; version=0.0.4; charset=utf-8".into(),
    ));
    let wants_gzip = request
        .header("accept-encoding")
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    if wants_gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, &response.body)
            .expect("compressing to memory cannot fail");
        response.body = encoder.finish().expect("compressing to memory cannot fail");
        response.headers.push(("content-encoding", "gzip".into()));
    }
    Ok(response)
}

/// A push's body as metric families, and its size once decompressed:
/// gunzipped if need be, decoded as text or delimited protobuf, and checked
/// against the caps. Everything a client sends in a push body passes here
/// (and the `push_body` fuzz target drives it).
pub fn decode_push(request: &Request, limits: &Limits) -> Result<(Vec<Family>, usize), HttpError> {
    let body = decompressed(request, limits)?;
    let families = decode_body(request, &body)?;
    limits.check(&families)?;
    Ok((families, body.len()))
}

/// Whether the body is gzip-compressed (`Content-Encoding: gzip`).
pub fn is_gzip(content_encoding: Option<&str>) -> bool {
    content_encoding.is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"))
}

/// The body, gunzipped when `Content-Encoding: gzip`: refused past the
/// compressed cap as received, and past the body cap once decompressed, as
/// soon as inflating passes it (so a zip bomb costs at most the cap).
fn decompressed(request: &Request, limits: &Limits) -> Result<Vec<u8>, HttpError> {
    let too_large = |what: &str, cap, limit| OverLimit {
        what: what.into(),
        cap,
        limit,
    };
    if !is_gzip(request.header("content-encoding")) {
        if request.body.len() > limits.body {
            return Err(too_large("request body", Cap::Body, limits.body).into());
        }
        return Ok(request.body.clone());
    }
    if request.body.len() > limits.compressed_body {
        return Err(too_large(
            "compressed request body",
            Cap::CompressedBody,
            limits.compressed_body,
        )
        .into());
    }
    let mut out = Vec::new();
    let mut decoder =
        flate2::read::MultiGzDecoder::new(request.body.as_slice()).take(limits.body as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| HttpError::BadBody(format!("invalid gzip body: {e}")))?;
    if out.len() > limits.body {
        return Err(too_large("decompressed request body", Cap::Body, limits.body).into());
    }
    Ok(out)
}

/// Text format 0.0.4, or delimited protobuf when the Content-Type says so.
fn decode_body(request: &Request, body: &[u8]) -> Result<Vec<Family>, HttpError> {
    if request.header("content-type").is_some_and(is_protobuf) {
        return crate::protobuf::decode(body).map_err(|e| HttpError::BadBody(e.to_string()));
    }
    parse(body).map_err(|e| {
        HttpError::BadBody(format!("text format parsing error in line {}: {e}", e.line))
    })
}

/// `application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
/// encoding=delimited`, parameters in any order, type in any case.
fn is_protobuf(content_type: &str) -> bool {
    let mut parts = content_type.split(';').map(str::trim);
    let media = parts.next().unwrap_or_default();
    let params: Vec<(String, String)> = parts
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_owned(),
            )
        })
        .collect();
    let has = |k: &str, v: &str| params.iter().any(|(pk, pv)| pk == k && pv == v);
    media.eq_ignore_ascii_case("application/vnd.google.protobuf")
        && has("proto", "io.prometheus.client.MetricFamily")
        && has("encoding", "delimited")
}

/// Decodes `%XX` escapes; a `%2F` becomes a separator, as in the Pushgateway.
/// As there (Go's URL parser), a `%` without two hex digits after it is
/// refused, and so is a segment that is not UTF-8 once decoded: replacing
/// its bytes would map different keys to one group.
fn percent_decode(path: &str) -> Result<String, UrlKeyError> {
    let mut decoded = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            decoded.push('/');
        }
        if !segment.contains('%') {
            decoded.push_str(segment);
            continue;
        }
        let bytes = segment.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut j = 0;
        while j < bytes.len() {
            if bytes[j] != b'%' {
                out.push(bytes[j]);
                j += 1;
                continue;
            }
            let hex = |k: usize| bytes.get(k).and_then(|b| char::from(*b).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(j + 1), hex(j + 2)) else {
                return Err(UrlKeyError::Escape(segment.into()));
            };
            out.push(u8::try_from(hi * 16 + lo).expect("two hex digits make a byte"));
            j += 3;
        }
        let text = String::from_utf8(out).map_err(|_| UrlKeyError::NotUtf8(segment.into()))?;
        decoded.push_str(&text);
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::{
        App, HttpError, Limits, Request, Response, UrlKeyError, handle, is_protobuf,
        percent_decode, refuse,
    };
    use crate::store::{Store, StoreOptions, Wait};

    fn options(dir: &std::path::Path) -> StoreOptions {
        StoreOptions {
            dir: dir.into(),
            job_label: "job".into(),
            mode: 0o644,
            fsync: false,
            wait: Wait::Up(std::time::Duration::from_secs(5)),
        }
    }

    fn app(dir: &std::path::Path) -> App {
        App {
            store: Store::open(options(dir)).unwrap(),
            limits: Limits {
                body: 1 << 20,
                ..Limits::default()
            },
            body_timeout: std::time::Duration::from_secs(5),
            prefix: String::new(),
            telemetry_path: "/metrics".into(),
            admin_api: false,
            lifecycle: false,
            default_ttl: None,
            started: std::time::SystemTime::now(),
            flags: Vec::new(),
            stats: super::Stats::default(),
            failures: super::Failures::default(),
            auth: None,
            quit: Box::new(|| {}),
        }
    }

    fn request(method: &str, path: &str, body: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn text(response: &Response) -> String {
        String::from_utf8_lossy(&response.body).into_owned()
    }

    #[test]
    fn push_scrape_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let put = handle(
            &app,
            &request(
                "PUT",
                "/metrics/job/backup/instance/db1",
                "# TYPE m gauge\nm 1\n",
            ),
        );
        assert_eq!((put.status, put.body.len()), (200, 0));
        let post = handle(
            &app,
            &request(
                "POST",
                "/metrics/job@base64/b3RoZXI",
                "# TYPE m gauge\nm{x=\"y\"} 2\n",
            ),
        );
        assert_eq!(post.status, 200, "{}", text(&post));
        let scrape = handle(&app, &request("GET", "/metrics", ""));
        let body = text(&scrape);
        // One HELP and TYPE per family; the series of each group together,
        // groups in file-name order.
        assert!(body.contains("# TYPE m gauge\nm{instance=\"db1\",job=\"backup\"} 1\nm{instance=\"\",job=\"other\",x=\"y\"} 2\n"), "{body}");
        assert_eq!(
            body.matches("# TYPE push_time_seconds gauge").count(),
            1,
            "{body}"
        );
        assert_eq!(
            handle(
                &app,
                &request("DELETE", "/metrics/job/backup/instance/db1", "")
            )
            .status,
            202
        );
        assert!(!text(&handle(&app, &request("GET", "/metrics", ""))).contains("job=\"backup\""));
        assert_eq!(
            handle(&app, &request("DELETE", "/metrics/job/never", "")).status,
            202
        );
    }

    #[test]
    fn errors_get_the_pushgateway_codes_and_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let cases = [
            (
                request("PUT", "/metrics/job/j", "m 1"),
                400,
                "text format parsing error in line 1: unexpected end of input",
            ),
            (
                request("PUT", "/metrics/job/j/a", "m 1\n"),
                400,
                "odd number of components in label string \"/a\"",
            ),
            (
                request("PUT", "/metrics/job@base64/=", "m 1\n"),
                400,
                "job name is required",
            ),
            (
                request("PUT", "/metrics/job/j", "m 1 5\n"),
                400,
                "client-side timestamp",
            ),
            (
                request("GET", "/metrics/job/j", ""),
                405,
                "method not allowed",
            ),
            (request("PUT", "/metrics", ""), 405, "method not allowed"),
            (request("GET", "/nope", ""), 404, "404 page not found"),
            (
                request("PUT", "/metrics/jobs/j", "m 1\n"),
                404,
                "404 page not found",
            ),
            (
                request("GET", "/metrics/job/", ""),
                404,
                "404 page not found",
            ),
            (
                request("PUT", "/metrics/job@base64/", "m 1\n"),
                404,
                "404 page not found",
            ),
            (
                request("PUT", "/metrics/job/a%zz", "m 1\n"),
                400,
                "invalid URL escape in path segment \"a%zz\"",
            ),
            (
                request("PUT", "/metrics/job/a/x/%FF", "m 1\n"),
                400,
                "path segment \"%FF\" is not valid UTF-8 once percent-decoded",
            ),
        ];
        for (req, status, message) in cases {
            let response = handle(&app, &req);
            assert_eq!(
                response.status,
                status,
                "{} {}: {}",
                req.method,
                req.path,
                text(&response)
            );
            assert!(
                text(&response).contains(message),
                "{} {}: {}",
                req.method,
                req.path,
                text(&response)
            );
        }
        handle(
            &app,
            &request("PUT", "/metrics/job/a", "# TYPE shared gauge\nshared 1\n"),
        );
        let clash = handle(
            &app,
            &request("PUT", "/metrics/job/b", "# TYPE shared counter\nshared 1\n"),
        );
        assert_eq!(clash.status, 400);
        assert!(text(&clash).starts_with("pushed metrics are invalid or inconsistent with existing metrics: b.prom: \"shared\" has type counter"), "{}", text(&clash));
        assert!(
            !dir.path().join("b.prom").exists(),
            "a refused push created a group"
        );
    }

    #[test]
    fn every_cap_is_refused_with_its_flag_and_the_store_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let mut capped = app(dir.path());
        capped.limits = Limits {
            series: 3,
            label_value: 4,
            groups: 2,
            ..Limits::default()
        };
        capped.store = Store::open(options(dir.path()))
            .unwrap()
            .keep_index_in_memory()
            .with_max_groups(2);
        let put = |path: &str, body: &str| {
            let response = handle(&capped, &request("PUT", path, body));
            (response.status, text(&response))
        };
        assert_eq!(put("/metrics/job/a", "m 1\n").0, 200);
        assert_eq!(put("/metrics/job/b", "m 1\n").0, 200);
        assert_eq!(
            put("/metrics/job/c", "m 1\n"),
            (
                403,
                "a new group (the directory holds 2) exceeds the limit of 2 groups (--max-groups)\n"
                    .into()
            )
        );
        // Replacing a group that exists creates none.
        assert_eq!(put("/metrics/job/a", "m 2\n").0, 200);
        assert_eq!(
            put(
                "/metrics/job/a",
                "m{x=\"1\"} 1\nm{x=\"2\"} 1\nm{x=\"3\"} 1\nm{x=\"4\"} 1\n"
            ),
            (
                413,
                "push of 4 series exceeds the limit of 3 series (--max-series-per-push)\n".into()
            )
        );
        let (status, message) = put("/metrics/job/a", "m{x=\"12345\"} 1\n");
        assert_eq!(status, 400);
        assert!(message.contains("(--max-label-value-length)"), "{message}");
        assert!(
            std::fs::read_to_string(dir.path().join("a.prom"))
                .unwrap()
                .contains("m{instance=\"\",job=\"a\"} 2"),
            "a refused push changed the group"
        );
        assert!(!dir.path().join("c.prom").exists());
    }

    #[test]
    fn gzip_bodies_are_capped_after_decompression() {
        let dir = tempfile::tempdir().unwrap();
        let mut small = app(dir.path());
        small.limits.body = 1000;
        small.limits.compressed_body = 500;
        let gzip = |text: &str| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            std::io::Write::write_all(&mut encoder, text.as_bytes()).unwrap();
            encoder.finish().unwrap()
        };
        let mut ok = request("PUT", "/metrics/job/z", "");
        ok.headers.push(("content-encoding".into(), "gzip".into()));
        ok.body = gzip("m 1\n");
        assert_eq!(handle(&small, &ok).status, 200);
        let mut bomb = ok.clone();
        bomb.body = gzip(&"m{x=\"y\"} 1\n".repeat(10_000));
        assert!(bomb.body.len() < 1000);
        let refused = handle(&small, &bomb);
        assert_eq!(
            (refused.status, text(&refused)),
            (
                413,
                "decompressed request body exceeds the limit of 1000 bytes (--max-body)\n".into()
            )
        );
        let mut big = ok.clone();
        big.body = vec![0; 501];
        let refused = handle(&small, &big);
        assert_eq!(
            (refused.status, text(&refused)),
            (
                413,
                "compressed request body exceeds the limit of 500 bytes (--max-compressed-body)\n"
                    .into()
            )
        );
        let mut broken = ok.clone();
        broken.body = b"not gzip".to_vec();
        assert_eq!(handle(&small, &broken).status, 400);
    }

    #[test]
    fn scrapes_are_gzipped_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        handle(&app, &request("PUT", "/metrics/job/j", "m 1\n"));
        let mut get = request("GET", "/metrics", "");
        get.headers
            .push(("accept-encoding".into(), "deflate, gzip;q=1.0".into()));
        let response = handle(&app, &get);
        assert!(
            response
                .headers
                .contains(&("content-encoding", "gzip".into()))
        );
        let mut plain = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(response.body.as_slice()),
            &mut plain,
        )
        .unwrap();
        assert!(plain.contains("m{instance=\"\",job=\"j\"} 1\n"));
    }

    #[test]
    fn content_type_and_path_details() {
        assert!(is_protobuf(
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
        ));
        assert!(is_protobuf(
            "Application/Vnd.Google.Protobuf;encoding=delimited;proto=io.prometheus.client.MetricFamily"
        ));
        assert!(!is_protobuf(
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily"
        ));
        assert!(!is_protobuf("text/plain; version=0.0.4"));
        assert_eq!(
            percent_decode("/metrics/job/a%2Fb/x/%CE%A0").unwrap(),
            "/metrics/job/a/b/x/Π"
        );
        for (path, segment) in [("/a%zz", "a%zz"), ("/b/x%4", "x%4"), ("/c/%", "%")] {
            assert_eq!(
                percent_decode(path),
                Err(UrlKeyError::Escape(segment.into()))
            );
        }
        assert_eq!(
            percent_decode("/metrics/job/a/x/%FF"),
            Err(UrlKeyError::NotUtf8("%FF".into()))
        );
    }

    #[test]
    fn own_metrics_ttl_header_and_reserved_names() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let mut put = request("PUT", "/metrics/job/j", "m 1\n");
        put.headers.push((super::TTL_HEADER.into(), "1h".into()));
        assert_eq!(handle(&app, &put).status, 200);
        assert!(
            std::fs::read_to_string(dir.path().join("j.prom"))
                .unwrap()
                .contains("\"ttl_seconds\":3600")
        );
        let mut bad_ttl = put.clone();
        bad_ttl.headers[0].1 = "soon".into();
        let refused = handle(&app, &bad_ttl);
        assert_eq!(refused.status, 400);
        assert!(
            text(&refused).starts_with("bad x-promdrop-ttl header: invalid duration \"soon\""),
            "{}",
            text(&refused)
        );
        bad_ttl.headers[0].1 = "0".into();
        let refused = handle(&app, &bad_ttl);
        assert_eq!(
            (refused.status, text(&refused)),
            (
                400,
                "bad x-promdrop-ttl header: a TTL must be at least 1s, not \"0\" (for no expiry, give no TTL)\n".into()
            )
        );
        let own = handle(
            &app,
            &request("PUT", "/metrics/job/j", "promdrop_groups 5\n"),
        );
        assert_eq!(
            (own.status, text(&own)),
            (
                400,
                "metric name \"promdrop_groups\" is promdrop's own\n".into()
            )
        );
        let run_metric = handle(
            &app,
            &request("PUT", "/metrics/job/j", "promdrop_run_success 1\n"),
        );
        assert_eq!(run_metric.status, 400);
        let scrape = text(&handle(&app, &request("GET", "/metrics", "")));
        for line in [
            "promdrop_groups 1",
            "promdrop_series 3",
            "promdrop_http_requests_total{code=\"200\",route=\"push\"} 1",
            "promdrop_http_requests_total{code=\"400\",route=\"push\"} 4",
            "promdrop_rejected_pushes_total{reason=\"body\"} 4",
            "promdrop_push_size_bytes_count 1",
            "promdrop_expired_groups_total 0",
            "promdrop_build_info{version=\"0.1.0\"} 1",
        ] {
            assert!(
                scrape.lines().any(|l| l == line),
                "missing {line:?} in\n{scrape}"
            );
        }
        assert!(
            crate::exposition::parse::parse(scrape.as_bytes()).is_ok(),
            "the scrape is valid text format"
        );
    }

    #[test]
    fn refusals_before_the_handler_are_counted_under_their_route() {
        use super::super::limits::{Cap, OverLimit};
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let put = request("PUT", "/metrics/job/j", "");
        let unauthorized = refuse(&app, &put, HttpError::Unauthorized);
        assert_eq!(unauthorized.status, 401);
        assert!(
            unauthorized
                .headers
                .contains(&("www-authenticate", "Basic".into()))
        );
        let scrape = request("GET", "/metrics", "");
        assert_eq!(refuse(&app, &scrape, HttpError::Unauthorized).status, 401);
        let over = OverLimit {
            what: "request body".into(),
            cap: Cap::Body,
            limit: 10,
        };
        assert_eq!(refuse(&app, &put, over.into()).status, 413);
        let slow = HttpError::BodyTimeout(std::time::Duration::from_secs(1));
        assert_eq!(refuse(&app, &put, slow).status, 408);
        assert!(!dir.path().join("j.prom").exists());
        let scrape = text(&handle(&app, &scrape));
        for line in [
            "promdrop_http_requests_total{code=\"401\",route=\"push\"} 1",
            "promdrop_http_requests_total{code=\"401\",route=\"metrics\"} 1",
            "promdrop_http_requests_total{code=\"413\",route=\"push\"} 1",
            "promdrop_http_requests_total{code=\"408\",route=\"push\"} 1",
            "promdrop_rejected_pushes_total{reason=\"unauthorized\"} 1",
            "promdrop_rejected_pushes_total{reason=\"limit\"} 1",
            "promdrop_rejected_pushes_total{reason=\"timeout\"} 1",
        ] {
            assert!(
                scrape.lines().any(|l| l == line),
                "missing {line:?} in\n{scrape}"
            );
        }
    }

    #[test]
    fn prefix_telemetry_path_quit_and_wipe() {
        let dir = tempfile::tempdir().unwrap();
        let quits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&quits);
        let mut app = app(dir.path());
        app.prefix = "/pg".into();
        app.telemetry_path = "/prom".into();
        app.quit = Box::new(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        assert_eq!(
            handle(&app, &request("PUT", "/pg/metrics/job/j", "m 1\n")).status,
            200
        );
        assert_eq!(
            handle(&app, &request("PUT", "/metrics/job/j", "m 1\n")).status,
            404
        );
        assert_eq!(handle(&app, &request("GET", "/pg/prom", "")).status, 200);
        assert_eq!(handle(&app, &request("GET", "/pg/metrics", "")).status, 404);
        let healthy = handle(&app, &request("GET", "/pg/-/healthy", ""));
        assert_eq!((healthy.status, text(&healthy)), (200, "OK".into()));
        let denied = handle(&app, &request("PUT", "/pg/-/quit", ""));
        assert_eq!(
            (denied.status, text(&denied)),
            (403, "Lifecycle API is not enabled.".into())
        );
        assert_eq!(handle(&app, &request("GET", "/pg/-/quit", "")).status, 405);
        let options = handle(&app, &request("OPTIONS", "/pg/-/quit", ""));
        assert_eq!(
            (options.status, options.headers.clone(), text(&options)),
            (
                200,
                vec![("allow", "GET, OPTIONS, POST, PUT".to_owned())],
                String::new()
            )
        );
        assert_eq!(
            handle(&app, &request("PUT", "/pg/api/v1/admin/wipe", "")).status,
            404
        );
        app.lifecycle = true;
        app.admin_api = true;
        let quit = handle(&app, &request("POST", "/pg/-/quit", ""));
        assert_eq!(
            (quit.status, text(&quit)),
            (200, "Requesting termination... Goodbye!".into())
        );
        assert_eq!(quits.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(
            handle(&app, &request("PUT", "/pg/api/v1/admin/wipe", "")).status,
            202
        );
        assert!(!dir.path().join("j.prom").exists());
        assert_eq!(
            handle(&app, &request("GET", "/pg/api/v1/admin/wipe", "")).status,
            405
        );
    }

    #[test]
    fn status_page_remembers_refusals_in_memory_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut app = app(dir.path());
        app.prefix = "/pg".into();
        let page = |app: &App| {
            let response = handle(app, &request("GET", "/pg/", ""));
            assert_eq!(response.status, 200, "{}", text(&response));
            assert!(
                response
                    .headers
                    .contains(&("content-type", "text/html; charset=utf-8".into()))
            );
            text(&response)
        };
        assert!(page(&app).contains("No groups yet."));
        assert_eq!(handle(&app, &request("GET", "/", "")).status, 404);
        let refused = handle(&app, &request("PUT", "/pg/metrics/job/new", "m 1"));
        assert_eq!(refused.status, 400);
        let shown = page(&app);
        assert!(
            shown.contains("<td class=\"nodata\">no data</td>")
                && shown.contains("text format parsing error in line 1"),
            "{shown}"
        );
        assert!(!dir.path().join("new.prom").exists());
        assert!(!text(&handle(&app, &request("GET", "/pg/metrics", ""))).contains("job=\"new\""));
        // A success forgets the failure; a later refusal of the same group
        // shows next to its data; a delete forgets it again.
        assert_eq!(
            handle(&app, &request("PUT", "/pg/metrics/job/new", "m 1\n")).status,
            200
        );
        assert!(!page(&app).contains("class=\"refused\""));
        let mut bad_ttl = request("PUT", "/pg/metrics/job/new", "m 2\n");
        bad_ttl
            .headers
            .push((super::TTL_HEADER.into(), "soon".into()));
        assert_eq!(handle(&app, &bad_ttl).status, 400);
        let shown = page(&app);
        assert!(
            shown.contains("<tr class=\"refused\">")
                && shown.contains("bad x-promdrop-ttl header")
                && !shown.contains("no data"),
            "{shown}"
        );
        assert_eq!(
            handle(&app, &request("DELETE", "/pg/metrics/job/new", "")).status,
            202
        );
        assert!(page(&app).contains("No groups yet."));
        // Other methods get what the other read-only routes get.
        let post = handle(&app, &request("POST", "/pg/", ""));
        let healthy = handle(&app, &request("POST", "/pg/-/healthy", ""));
        assert_eq!((post.status, &post.headers), (405, &healthy.headers));
    }

    #[test]
    fn json_api_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let status: serde_json::Value =
            serde_json::from_slice(&handle(&app, &request("GET", "/api/v1/status", "")).body)
                .unwrap();
        assert_eq!(status["status"], "success");
        assert_eq!(
            status["data"]["build_information"]["version"],
            env!("CARGO_PKG_VERSION")
        );
        assert!(
            status["data"]["start_time"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        let empty = handle(&app, &request("GET", "/api/v1/metrics", ""));
        assert_eq!(text(&empty), "{\"data\":[],\"status\":\"success\"}");
        assert!(
            empty
                .headers
                .contains(&("access-control-allow-origin", "*".into()))
        );
        handle(
            &app,
            &request(
                "PUT",
                "/metrics/job/j/instance/i",
                "# HELP s S.\n# TYPE s summary\ns{quantile=\"0.5\"} 1234567\ns_sum 1e-05\ns_count 2\n",
            ),
        );
        let groups: serde_json::Value =
            serde_json::from_slice(&handle(&app, &request("GET", "/api/v1/metrics", "")).body)
                .unwrap();
        let group = &groups["data"][0];
        assert_eq!(
            group["labels"],
            serde_json::json!({"job": "j", "instance": "i"})
        );
        assert_eq!(group["last_push_successful"], true);
        assert_eq!(group["s"]["type"], "SUMMARY");
        assert_eq!(group["s"]["help"], "S.");
        assert_eq!(
            group["s"]["metrics"][0],
            serde_json::json!({"labels": {"instance": "i", "job": "j"}, "quantiles": {"0.5": "1.234567e+06"}, "count": "2", "sum": "1e-05"})
        );
        assert_eq!(
            group["push_failure_time_seconds"]["metrics"][0]["value"],
            "0"
        );
    }
}

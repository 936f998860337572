//! The Pushgateway-compatible HTTP surface, without any HTTP framework:
//! [`handle`] takes a plain [`Request`] and returns a plain [`Response`], so
//! every route is testable in-process. Handlers parse and validate, then
//! make one call into the [`Store`]; they never touch files themselves.

use std::io::Read as _;
use std::time::SystemTime;

use crate::exposition::Family;
use crate::exposition::parse::parse;
use crate::exposition::render::render;
use crate::grouping_key::{GroupingKey, UrlKeyError};
use crate::store::{PushMode, Store, StoreError};

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
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    fn text(status: u16, body: &str) -> Self {
        let mut response = Self::new(status, format!("{body}\n"));
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
    /// A body past the size limit, compressed or decompressed.
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HttpError {
    /// The response for this error: the status, and the message as a plain
    /// text body.
    pub fn response(&self) -> Response {
        let status = match self {
            Self::NotFound | Self::BadKey(UrlKeyError::NoRoute) => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::BadKey(_) | Self::BadBody(_) | Self::Store(StoreError::Invalid(_)) => 400,
            Self::TooLarge(_) => 413,
            Self::Store(StoreError::NotOurs(_)) => 409,
            Self::Store(StoreError::LockTimeout { .. }) => 503,
            Self::Store(_) => 500,
        };
        let message = match self {
            Self::Store(StoreError::Invalid(problems)) => {
                format!(
                    "pushed metrics are invalid or inconsistent with existing metrics: {}",
                    problems.join("; ")
                )
            }
            Self::Store(err) => crate::error_chain(err),
            other => other.to_string(),
        };
        let mut response = Response::text(status, &message);
        if let Self::MethodNotAllowed(allow) = self {
            response.headers.push(("allow", (*allow).into()));
        }
        response
    }
}

/// What the handlers need.
#[derive(Debug)]
pub struct App {
    /// The directory of group files.
    pub store: Store,
    /// The largest body accepted, after decompression.
    pub max_body: usize,
}

/// Routes and answers one request.
pub fn handle(app: &App, request: &Request) -> Response {
    route(app, request).unwrap_or_else(|err| err.response())
}

fn route(app: &App, request: &Request) -> Result<Response, HttpError> {
    let path = percent_decode(&request.path);
    let method = request.method.as_str();
    if let Some(key_path) = path.strip_prefix("/metrics/") {
        let mode = match method {
            "PUT" => PushMode::Replace,
            "POST" => PushMode::Add,
            "DELETE" => return delete(app, key_path),
            _ => return Err(HttpError::MethodNotAllowed("DELETE, OPTIONS, POST, PUT")),
        };
        return push(app, key_path, mode, request);
    }
    match (path.as_str(), method) {
        ("/metrics", "GET") => scrape(app, request),
        ("/-/healthy" | "/-/ready", "GET") => Ok(Response::text(200, "OK")),
        ("/metrics" | "/-/healthy" | "/-/ready", _) => {
            Err(HttpError::MethodNotAllowed("GET, OPTIONS"))
        }
        _ => Err(HttpError::NotFound),
    }
}

fn push(
    app: &App,
    key_path: &str,
    mode: PushMode,
    request: &Request,
) -> Result<Response, HttpError> {
    let key = GroupingKey::from_url_path(key_path)?;
    let body = decompressed(request, app.max_body)?;
    let families = decode_body(request, &body)?;
    app.store
        .push(&key, families, mode, None, SystemTime::now())?;
    Ok(Response::new(200, Vec::new()))
}

fn delete(app: &App, key_path: &str) -> Result<Response, HttpError> {
    let key = GroupingKey::from_url_path(key_path)?;
    app.store.delete(&key)?;
    Ok(Response::new(202, Vec::new()))
}

/// Every live group (expired ones are never served), families of the same
/// name merged under one HELP and TYPE, sorted by name.
fn scrape(app: &App, request: &Request) -> Result<Response, HttpError> {
    let now = SystemTime::now();
    let mut merged: Vec<Family> = Vec::new();
    for info in app.store.list()? {
        if info.group.expired(now) {
            continue;
        }
        for family in info.group.families {
            match merged.iter_mut().find(|f| f.name() == family.name()) {
                // Families disagreeing on HELP or TYPE never pass the store's
                // checks; one that slipped in by other means is left out.
                Some(existing)
                    if existing.kind() == family.kind() && existing.help() == family.help() =>
                {
                    existing.absorb(&family);
                }
                Some(_) => {}
                None => merged.push(family),
            }
        }
    }
    merged.sort_by(|a, b| a.name().cmp(b.name()));
    let mut body = Vec::new();
    render(&merged, &mut body).expect("rendering to memory cannot fail");
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

/// The body, gunzipped when `Content-Encoding: gzip`, refused past `limit`
/// bytes either way.
fn decompressed(request: &Request, limit: usize) -> Result<Vec<u8>, HttpError> {
    if request.body.len() > limit {
        return Err(HttpError::TooLarge(limit));
    }
    if !request
        .header("content-encoding")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"))
    {
        return Ok(request.body.clone());
    }
    let mut out = Vec::new();
    let mut decoder =
        flate2::read::MultiGzDecoder::new(request.body.as_slice()).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| HttpError::BadBody(format!("invalid gzip body: {e}")))?;
    if out.len() > limit {
        return Err(HttpError::TooLarge(limit));
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
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push(u8::try_from(hi * 16 + lo).expect("two hex digits make a byte"));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{App, Request, Response, handle, is_protobuf, percent_decode};
    use crate::store::{Store, StoreOptions, Wait};

    fn app(dir: &std::path::Path) -> App {
        let options = StoreOptions {
            dir: dir.into(),
            job_label: "job".into(),
            mode: 0o644,
            fsync: false,
            wait: Wait::Up(std::time::Duration::from_secs(5)),
        };
        App {
            store: Store::open(options).unwrap(),
            max_body: 1 << 20,
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
        assert!(body.contains("# TYPE m gauge\nm{instance=\"\",job=\"other\",x=\"y\"} 2\nm{instance=\"db1\",job=\"backup\"} 1\n"), "{body}");
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
                "not a grouping key path",
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
    fn gzip_bodies_are_capped_after_decompression() {
        let dir = tempfile::tempdir().unwrap();
        let mut small = app(dir.path());
        small.max_body = 1000;
        let gzip = |text: &str| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
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
            (413, "request body exceeds the limit of 1000 bytes\n".into())
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
            percent_decode("/metrics/job/a%2Fb/x/%CE%A0"),
            "/metrics/job/a/b/x/Π"
        );
        assert_eq!(percent_decode("/a%zz%4"), "/a%zz%4");
    }
}

//! The Pushgateway's JSON API: `/api/v1/status` and `/api/v1/metrics`, with
//! its shapes: an envelope `{"status":"success","data":...}`, numbers as
//! strings in Go's `%v` spelling, RFC 3339 times, sorted keys.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value as Json, json};

use crate::exposition::float::to_string as go_float;
use crate::exposition::{Family, MetricType, Value};

use super::handlers::{App, HttpError, Response};

/// `GET /api/v1/status`: build information, settings, start time.
pub fn status(app: &App) -> Response {
    let flags: Map<String, Json> = app
        .flags
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    envelope(&json!({
        "build_information": {
            "branch": "",
            "buildDate": "",
            "buildUser": "",
            "goVersion": "",
            "revision": "",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "flags": flags,
        "start_time": rfc3339(app.started),
    }))
}

/// `GET /api/v1/metrics`: every live group with its families.
pub fn metrics(app: &App) -> Result<Response, HttpError> {
    let now = SystemTime::now();
    let mut groups = Vec::new();
    for info in app.store.list()? {
        let group = info.group;
        if group.expired(now) {
            continue;
        }
        let mut object = Map::new();
        let mut labels: Map<String, Json> = group
            .key
            .labels()
            .map(|(n, v)| (n.to_owned(), v.into()))
            .collect();
        labels.insert("job".into(), group.key.job().into());
        object.insert("labels".into(), labels.into());
        let pushed = group.pushed_at().unwrap_or(0.0);
        let failed = group.failed_at().unwrap_or(0.0);
        object.insert("last_push_successful".into(), (failed <= pushed).into());
        let stamp = rfc3339(UNIX_EPOCH + Duration::from_secs_f64(pushed.max(0.0)));
        for family in &group.families() {
            object.insert(family.name().to_owned(), family_json(family, &stamp));
        }
        groups.push(Json::Object(object));
    }
    Ok(envelope(&Json::Array(groups)))
}

fn family_json(family: &Family, stamp: &str) -> Json {
    let metrics: Vec<Json> = family
        .series()
        .map(|series| {
            let labels: Map<String, Json> = series
                .labels
                .iter()
                .map(|(n, v)| (n.to_owned(), v.into_owned().into()))
                .collect();
            let mut metric = Map::new();
            metric.insert("labels".into(), labels.into());
            match series.value {
                Value::Single(v) => {
                    metric.insert("value".into(), go_float(*v).into());
                }
                Value::Distribution(d) => {
                    let key = if family.kind() == MetricType::Summary {
                        "quantiles"
                    } else {
                        "buckets"
                    };
                    let points: Map<String, Json> = d
                        .points
                        .iter()
                        .map(|(b, v)| (go_float(*b), go_float(*v).into()))
                        .collect();
                    metric.insert(key.into(), points.into());
                    metric.insert("count".into(), go_float(d.count.unwrap_or(0.0)).into());
                    metric.insert("sum".into(), go_float(d.sum.unwrap_or(0.0)).into());
                }
            }
            Json::Object(metric)
        })
        .collect();
    let mut object = Map::new();
    object.insert("time_stamp".into(), stamp.into());
    object.insert(
        "type".into(),
        family.kind().as_str().to_ascii_uppercase().into(),
    );
    if let Some(help) = family.help() {
        object.insert("help".into(), help.into());
    }
    object.insert("metrics".into(), metrics.into());
    Json::Object(object)
}

/// `OPTIONS /api/v1/...`: a CORS preflight, answered 200 with no body.
pub fn preflight() -> Response {
    with_cors(Response::new(200, Vec::new()))
}

fn envelope(data: &Json) -> Response {
    let body = json!({ "status": "success", "data": data }).to_string();
    let mut response = with_cors(Response::new(200, body));
    response
        .headers
        .push(("content-type", "application/json".to_owned()));
    response
}

fn with_cors(mut response: Response) -> Response {
    response.headers.extend([
        (
            "access-control-allow-headers",
            "Accept, Authorization, Content-Type, Origin".to_owned(),
        ),
        (
            "access-control-allow-methods",
            "GET, POST, DELETE, OPTIONS".to_owned(),
        ),
        ("access-control-allow-origin", "*".to_owned()),
        ("access-control-expose-headers", "Date".to_owned()),
        (
            "cache-control",
            "no-cache, no-store, must-revalidate".to_owned(),
        ),
    ]);
    response
}

fn rfc3339(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

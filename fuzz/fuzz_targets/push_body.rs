//! Fuzz target for push bodies as `serve` receives them: gzip-compressed or
//! not, text or delimited protobuf, against the caps.
//!
//! The first byte picks the headers (bit 0: `Content-Encoding: gzip`; bit 1:
//! the protobuf Content-Type); the rest is the body. Properties:
//! - decoding never panics, and a zip bomb never inflates past the cap
//!   (libFuzzer's `-rss_limit_mb` would catch it);
//! - what is accepted is within the caps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promdrop::server::Limits;
use promdrop::server::handlers::{Request, decode_push};

const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let mut headers = Vec::new();
    if flags & 1 != 0 {
        headers.push(("content-encoding".to_owned(), "gzip".to_owned()));
    }
    if flags & 2 != 0 {
        headers.push(("content-type".to_owned(), PROTOBUF.to_owned()));
    }
    let request = Request {
        method: "PUT".into(),
        path: "/metrics/job/fuzz".into(),
        headers,
        body: body.to_vec(),
    };
    let limits = Limits {
        compressed_body: 1 << 16,
        body: 1 << 20,
        series: 10_000,
        label_name: 256,
        label_value: 4096,
        ..Limits::default()
    };
    if let Ok((families, size)) = decode_push(&request, &limits) {
        assert!(size <= limits.body, "{size} bytes accepted");
        let series: usize = families.iter().map(|f| f.series().count()).sum();
        assert!(series <= limits.series, "{series} series accepted");
    }
});

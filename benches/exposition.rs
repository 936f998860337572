//! Throughput of the exposition pipeline (parse, validate, render) on a
//! 100,000-series input of mixed types, about 6 MB.
//!
//! `cargo bench --bench exposition` runs criterion. Two other modes serve
//! `bench/exposition`: `PROMDROP_BENCH_WRITE=FILE` writes the input, and
//! `PROMDROP_BENCH_PEAK=FILE` runs the pipeline once on FILE and prints the
//! process's peak resident memory before and after, from /proc.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use promdrop::exposition::parse::parse;
use promdrop::exposition::render::render;
use promdrop::exposition::validate::{Source, validate};

/// 100,000 series: 70% gauges and counters with three labels, the rest in
/// histograms (8 buckets + sum + count) and summaries (3 quantiles + sum +
/// count), as a backup or inventory job would write them.
fn input() -> String {
    let mut out = String::with_capacity(7 << 20);
    let mut series = 0;
    for family in 0.. {
        if series >= 100_000 {
            break;
        }
        let name = format!("job_metric_{family}");
        match family % 10 {
            0 => {
                let _ = writeln!(
                    out,
                    "# HELP {name}_seconds Time spent.\n# TYPE {name}_seconds histogram"
                );
                for host in 0..20 {
                    for le in ["0.005", "0.01", "0.05", "0.1", "0.5", "1", "5", "+Inf"] {
                        let _ = writeln!(
                            out,
                            "{name}_seconds_bucket{{host=\"db{host}.example.com\",le=\"{le}\"}} {}",
                            host * 3
                        );
                    }
                    let _ = writeln!(
                        out,
                        "{name}_seconds_sum{{host=\"db{host}.example.com\"}} {}.25",
                        host * 7
                    );
                    let _ = writeln!(
                        out,
                        "{name}_seconds_count{{host=\"db{host}.example.com\"}} {}",
                        host * 3
                    );
                    series += 10;
                }
            }
            1 => {
                let _ = writeln!(
                    out,
                    "# HELP {name}_bytes Sizes.\n# TYPE {name}_bytes summary"
                );
                for host in 0..20 {
                    for q in ["0.5", "0.9", "0.99"] {
                        let _ = writeln!(
                            out,
                            "{name}_bytes{{host=\"db{host}.example.com\",quantile=\"{q}\"}} {}",
                            host * 1024
                        );
                    }
                    let _ = writeln!(
                        out,
                        "{name}_bytes_sum{{host=\"db{host}.example.com\"}} 1.5e+09"
                    );
                    let _ = writeln!(
                        out,
                        "{name}_bytes_count{{host=\"db{host}.example.com\"}} {}",
                        host + 1
                    );
                    series += 5;
                }
            }
            n => {
                let kind = if n % 2 == 0 { "gauge" } else { "counter" };
                let _ = writeln!(
                    out,
                    "# HELP {name} A {kind} from a cron job.\n# TYPE {name} {kind}"
                );
                for i in 0..100 {
                    let _ = writeln!(
                        out,
                        "{name}{{device=\"sd{}\",instance=\"host-{i}\",path=\"/var/lib/data/{i}\"}} {}.5",
                        i % 8,
                        i * 17
                    );
                }
                series += 100;
            }
        }
    }
    out
}

fn pipeline(text: &[u8]) -> usize {
    let families = parse(text).expect("benchmark input parses");
    let problems = validate(&[Source {
        name: "bench",
        families: &families,
    }]);
    assert!(problems.is_empty(), "{problems:?}");
    let mut sink = CountingSink(0);
    render(&families, &mut sink).expect("render to a sink");
    sink.0
}

struct CountingSink(usize);

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:")
                    .map(|v| v.trim().trim_end_matches(" kB").parse().ok())
            })?
        })
        .unwrap_or(0)
}

fn main() {
    if let Ok(path) = std::env::var("PROMDROP_BENCH_WRITE") {
        std::fs::write(path, input()).expect("write benchmark input");
        return;
    }
    if let Ok(path) = std::env::var("PROMDROP_BENCH_PEAK") {
        let text = std::fs::read(path).expect("read benchmark input");
        let before = peak_kib();
        let rendered = pipeline(black_box(&text));
        let after = peak_kib();
        println!(
            "input_bytes={} rendered_bytes={rendered} peak_before_kib={before} peak_after_kib={after}",
            text.len()
        );
        return;
    }
    let text = input();
    let mut criterion = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    let mut group = criterion.benchmark_group("exposition_100k_series");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| parse(black_box(text.as_bytes())).map(|f| f.len()));
    });
    group.bench_function("parse_validate_render", |b| {
        b.iter(|| pipeline(black_box(text.as_bytes())));
    });
    group.finish();
    criterion.final_summary();
}

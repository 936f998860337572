//! End to end against the real Prometheus 2.42 (Debian's `prometheus`): the
//! groups `promdrop run` writes, read through node_exporter, and a group that
//! Python's client pushes to `promdrop serve`, scraped as
//! packaging/prometheus/prometheus.yml scrapes them, with the shipped alert
//! rules evaluated on them. Everything listens on loopback, and every peer is
//! killed by pid on drop, also when the test fails.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::node_exporter::NodeExporter;
use crate::serve::TestServer;
use crate::util::{Peer, Test, http_get, peer};

/// How long Prometheus gets to show each expected answer.
const DEADLINE: Duration = Duration::from_secs(60);

/// A running Prometheus over a config file, with its data and log in `work`.
struct Prometheus {
    peer: Peer,
    log: PathBuf,
}

impl Prometheus {
    fn start(binary: &Path, work: &Path, config: &str) -> Self {
        let config_file = work.join("prometheus.yml");
        fs::write(&config_file, config).expect("config written");
        let log = work.join("prometheus.log");
        let command = |addr: SocketAddr| {
            let mut command = Command::new(binary);
            command
                .arg(format!("--config.file={}", config_file.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    work.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).expect("log file"));
            command
        };
        let ready = |addr| http_get(addr, "/-/ready").is_ok_and(|(status, _)| status == 200);
        let peer = Peer::start("prometheus", command, ready);
        Self { peer, log }
    }

    /// One instant query: each series as `{labels} value`, sorted.
    fn query(&self, query: &str) -> Result<Vec<String>, String> {
        let path = format!("/api/v1/query?query={}", percent_encode(query));
        let (status, body) = http_get(self.peer.addr, &path).map_err(|e| e.to_string())?;
        let body = String::from_utf8_lossy(&body);
        let json: Value =
            serde_json::from_str(&body).map_err(|e| format!("HTTP {status}, {e}: {body}"))?;
        let result = json["data"]["result"]
            .as_array()
            .ok_or_else(|| format!("HTTP {status}: {body}"))?;
        let mut series: Vec<String> = result
            .iter()
            .map(|s| {
                let labels: BTreeMap<&str, &str> = s["metric"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, value)| (name.as_str(), value.as_str().unwrap_or_default()))
                    .collect();
                let labels: Vec<String> = labels
                    .iter()
                    .map(|(name, value)| format!("{name}={value:?}"))
                    .collect();
                let value = s["value"][1].as_str().unwrap_or_default();
                format!("{{{}}} {value}", labels.join(","))
            })
            .collect();
        series.sort();
        Ok(series)
    }

    /// Polls `query` until `accept` holds for its answer.
    /// At the deadline it fails with what was expected, the last answer,
    /// the scrape targets and the end of Prometheus' log.
    #[track_caller]
    fn wait_for(&self, query: &str, expected: &str, accept: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let last = self.query(query);
            if let Ok(series) = &last
                && accept(series)
            {
                return;
            }
            if Instant::now() > deadline {
                let log = fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "no answer to {query} matched within {DEADLINE:?}\nexpected: {expected}\nlast answer: {last:#?}\ntargets:\n{}\n--- end of prometheus.log ---\n{}",
                    self.targets(),
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `/api/v1/targets`, one line per active target.
    fn targets(&self) -> String {
        let Ok((_, body)) = http_get(self.peer.addr, "/api/v1/targets") else {
            return "(no answer)".into();
        };
        let json: Value = serde_json::from_slice(&body).unwrap_or_default();
        let Some(targets) = json["data"]["activeTargets"].as_array() else {
            return String::from_utf8_lossy(&body).into_owned();
        };
        let mut out = String::new();
        for t in targets {
            let field = |name: &str| t[name].as_str().unwrap_or("?").to_owned();
            let _ = writeln!(
                out,
                "  {} {} health={} lastError={:?}",
                field("scrapePool"),
                field("scrapeUrl"),
                field("health"),
                field("lastError")
            );
        }
        out
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Backdates a group's last push to 2001, as if its job had stopped
/// pushing long ago.
fn backdate(dir: &Path, job: &str) {
    let file = dir.join(format!("{job}.prom"));
    let text = fs::read_to_string(&file).expect("group file");
    let prefix = format!("push_time_seconds{{instance=\"\",job=\"{job}\"}} ");
    let aged: String = text
        .lines()
        .map(|line| {
            if line.starts_with(&prefix) {
                format!("{prefix}1e+09\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert_ne!(aged, text, "no {prefix:?} line in {file:?}");
    fs::write(&file, aged).expect("group file written");
}

/// Whether `series` is exactly one alert, `{labels}` without its state,
/// pending or firing.
fn one_alert(series: &[String], labels: &str) -> bool {
    let [alert] = series else {
        return false;
    };
    ["pending", "firing"]
        .iter()
        .any(|state| *alert == labels.replace("alertstate=?", &format!("alertstate={state:?}")))
}

/// Textfile mode: one job succeeds, one fails, and a pushed group and the
/// succeeding job's group look as if nothing had written them since 2001.
fn write_textfile_groups(dir: &Path) {
    let promdrop = |args: &[&str]| Test::new().arg("--dir").arg(dir).args(args);
    promdrop(&["run", "e2e_ok", "--", "true"]).run().status(0);
    promdrop(&["run", "e2e_fail", "--", "false"])
        .run()
        .status(1);
    promdrop(&["push", "e2e_old"])
        .stdin("e2e_old_items 7\n")
        .run()
        .status(0);
    backdate(dir, "e2e_old");
    backdate(dir, "e2e_ok");
}

/// Pushes group `{job="e2e_batch",instance="db1"}` with Python's client.
fn push_from_python(python: &Path, gateway: SocketAddr) {
    let script = r"
import sys
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway
r = CollectorRegistry()
Gauge('e2e_records_processed', 'Records the batch processed.', registry=r).set(42)
push_to_gateway(sys.argv[1], job='e2e_batch', registry=r, grouping_key={'instance': 'db1'})
";
    let out = Command::new(python)
        .args(["-c", script, &gateway.to_string()])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python push failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shipped example's scrape jobs and rules, pointed at loopback ports
/// and sped up for a test.
fn prometheus_config(node: SocketAddr, serve: SocketAddr) -> String {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/prometheus");
    format!(
        r"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - '{rules}/promdrop-run.rules.yml'
  - '{rules}/promdrop-groups.rules.yml'
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['{node}']
  - job_name: promdrop
    honor_labels: true
    static_configs:
      - targets: ['{serve}']
",
        rules = rules.display(),
    )
}

#[test]
fn prometheus_scrapes_both_modes_and_evaluates_the_shipped_rules() {
    let (Some(prometheus), Some(python)) = (peer("prometheus"), peer("python3")) else {
        return;
    };
    let textfiles = tempfile::tempdir().unwrap();
    write_textfile_groups(textfiles.path());
    let Some(exporter) = NodeExporter::start(textfiles.path()) else {
        return;
    };
    let node = exporter.addr();
    let served = tempfile::tempdir().unwrap();
    let server = TestServer::start(served.path());
    let before_push = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        .floor();
    push_from_python(&python, server.addr);
    let work = tempfile::tempdir().unwrap();
    let config = prometheus_config(node, server.addr);
    let prometheus = Prometheus::start(&prometheus, work.path(), &config);

    // Through node_exporter the target's job and instance win: the group's
    // job is `exported_job`, and its empty instance leaves no
    // `exported_instance` (README, "`exported_job`, and `--job-label`").
    let expected = [
        format!(
            "{{__name__=\"promdrop_run_success\",exported_job=\"e2e_fail\",instance=\"{node}\",job=\"node\"}} 0"
        ),
        format!(
            "{{__name__=\"promdrop_run_success\",exported_job=\"e2e_ok\",instance=\"{node}\",job=\"node\"}} 1"
        ),
    ];
    prometheus.wait_for("promdrop_run_success", &format!("{expected:#?}"), |s| {
        s == expected
    });
    // Every promdrop_run_* series carries exactly those labels.
    let expected = [
        format!("{{exported_job=\"e2e_fail\",instance=\"{node}\",job=\"node\"}} 1"),
        format!("{{exported_job=\"e2e_ok\",instance=\"{node}\",job=\"node\"}} 1"),
    ];
    prometheus.wait_for(
        r#"group without (__name__) ({__name__=~"promdrop_run_.+"})"#,
        &format!("{expected:#?}"),
        |s| s == expected,
    );

    // Through `promdrop serve` with honor_labels, the pushed job and instance
    // stay.
    let expected =
        [r#"{__name__="e2e_records_processed",instance="db1",job="e2e_batch"} 42"#.to_owned()];
    prometheus.wait_for("e2e_records_processed", &format!("{expected:#?}"), |s| {
        s == expected
    });
    let labels = r#"{__name__="push_time_seconds",instance="db1",job="e2e_batch"}"#;
    prometheus.wait_for(
        r#"push_time_seconds{job="e2e_batch"}"#,
        &format!("one series {labels} at or after {before_push}"),
        |s| {
            matches!(s, [one] if one.split_once(' ').is_some_and(|(l, value)| {
                l == labels && value.parse::<f64>().is_ok_and(|v| v >= before_push)
            }))
        },
    );

    // The shipped rules: the failed job alerts, the other does not.
    let alert = format!(
        "{{__name__=\"ALERTS\",alertname=\"CronJobFailed\",alertstate=?,exported_job=\"e2e_fail\",instance=\"{node}\",job=\"node\",severity=\"warning\"}} 1"
    );
    prometheus.wait_for(
        r#"ALERTS{alertname="CronJobFailed"}"#,
        &format!("only {alert}, pending or firing"),
        |s| one_alert(s, &alert),
    );
    // The stale pushed group alerts; the stale group of `run` is left to
    // CronJobNotRunInTime.
    let alert = format!(
        "{{__name__=\"ALERTS\",alertname=\"PushGroupStale\",alertstate=?,exported_job=\"e2e_old\",instance=\"{node}\",job=\"node\",severity=\"warning\"}} 1"
    );
    prometheus.wait_for(
        r#"ALERTS{alertname="PushGroupStale"}"#,
        &format!("only {alert}, pending or firing"),
        |s| one_alert(s, &alert),
    );
}

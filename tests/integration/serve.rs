//! `promdrop serve` end to end: the real binary on a loopback port, Python's
//! unchanged push client, the shared directory, and a first side-by-side run
//! against the real Pushgateway 1.5.1.

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Test, http, http_get, peer, promdrop};

/// A running `promdrop serve`, killed by pid on drop.
pub struct TestServer {
    child: Child,
    pub addr: SocketAddr,
}

impl TestServer {
    /// Starts on 127.0.0.1:0 and learns the port from the log line.
    pub fn start(dir: &Path) -> Self {
        let mut child = promdrop()
            .arg("--dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promdrop serve starts");
        let mut line = String::new();
        BufReader::new(child.stderr.take().expect("piped stderr"))
            .read_line(&mut line)
            .expect("a log line");
        let addr = line
            .strip_prefix("promdrop: listening on http://")
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first log line {line:?}"));
        Self { child, addr }
    }

    pub fn scrape(&self) -> String {
        let (status, body) = http_get(self.addr, "/metrics").expect("the server answers");
        assert_eq!(status, 200);
        String::from_utf8(body).expect("UTF-8 scrape")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pythons_push_client_works_unchanged() {
    let Some(python) = peer("python3") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let server = TestServer::start(d.path());
    let script = r"
import sys
from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway, pushadd_to_gateway, delete_from_gateway
gw = sys.argv[1]
r = CollectorRegistry()
Gauge('py_last_success_timestamp_seconds', 'Last success.', registry=r).set(1.7e9)
push_to_gateway(gw, job='pyjob', registry=r, grouping_key={'instance': 'i1', 'path': '/var/x'})
r2 = CollectorRegistry()
Counter('py_runs', 'Runs.', registry=r2).inc(3)
pushadd_to_gateway(gw, job='pyjob', registry=r2, grouping_key={'instance': 'i1', 'path': '/var/x'})
push_to_gateway(gw, job='doomed', registry=r)
delete_from_gateway(gw, job='doomed')
";
    let out = Command::new(&python)
        .args(["-c", script, &server.addr.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scrape = server.scrape();
    for line in [
        "py_last_success_timestamp_seconds{instance=\"i1\",job=\"pyjob\",path=\"/var/x\"} 1.7e+09",
        "py_runs_total{instance=\"i1\",job=\"pyjob\",path=\"/var/x\"} 3",
    ] {
        assert!(
            scrape.lines().any(|l| l == line),
            "missing {line:?} in\n{scrape}"
        );
    }
    assert!(!scrape.contains("job=\"doomed\""), "{scrape}");
    // The files are ordinary groups: the CLI sees them, node_exporter's rules hold.
    let list = Test::new()
        .arg("--dir")
        .arg(d.path())
        .arg("list")
        .run()
        .status(0);
    assert!(
        list.stdout
            .contains("{job=\"pyjob\",instance=\"i1\",path=\"/var/x\"}"),
        "{}",
        list.stdout
    );
    Test::new().arg("check").arg(d.path()).run().status(0);
}

#[test]
fn the_directory_is_shared_with_the_cli() {
    let d = tempfile::tempdir().unwrap();
    let server = TestServer::start(d.path());
    Test::new()
        .arg("--dir")
        .arg(d.path())
        .args(["push", "from_cli"])
        .stdin("cli_metric 1\n")
        .run()
        .status(0);
    assert!(
        server
            .scrape()
            .contains("cli_metric{instance=\"\",job=\"from_cli\"} 1\n")
    );
    let (status, _) = http(
        server.addr,
        "PUT",
        "/metrics/job/from_http",
        &[],
        b"http_metric 2\n",
    )
    .unwrap();
    assert_eq!(status, 200);
    let shown = Test::new()
        .arg("--dir")
        .arg(d.path())
        .args(["show", "from_http"])
        .run()
        .status(0);
    assert!(
        shown
            .stdout
            .contains("http_metric{instance=\"\",job=\"from_http\"} 2\n")
    );
    fs::remove_file(d.path().join("from_cli.prom")).unwrap();
    assert!(!server.scrape().contains("cli_metric"));
    // Expired groups are never served.
    Test::new()
        .arg("--dir")
        .arg(d.path())
        .args(["push", "brief", "--ttl", "1s"])
        .stdin("brief_metric 1\n")
        .run()
        .status(0);
    assert!(server.scrape().contains("brief_metric"));
    std::thread::sleep(Duration::from_millis(1100));
    assert!(!server.scrape().contains("brief_metric"));
}

/// Starts the real Pushgateway on a free loopback port; killed on drop.
struct Pushgateway {
    child: Child,
    addr: SocketAddr,
}

impl Pushgateway {
    fn start() -> Option<Self> {
        let binary = peer("prometheus-pushgateway")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(binary)
            .arg(format!("--web.listen-address={addr}"))
            .arg("--persistence.file=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let gateway = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while http_get(addr, "/-/ready").map(|(s, _)| s).ok() != Some(200) {
            assert!(Instant::now() < deadline, "the Pushgateway did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(gateway)
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn status_codes_match_the_pushgateway() {
    let d = tempfile::tempdir().unwrap();
    let ours = TestServer::start(d.path());
    let Some(theirs) = Pushgateway::start() else {
        return;
    };
    let cases: &[(&str, &str, &str)] = &[
        ("PUT", "/metrics/job/a", "# TYPE m gauge\nm 1\n"),
        ("POST", "/metrics/job/a", "# TYPE n gauge\nn 1\n"),
        ("PUT", "/metrics/job/a/instance/i", "m 2\n"),
        ("PUT", "/metrics/job@base64/YWI", "m 3\n"),
        ("PUT", "/metrics/job/b/instance@base64/=", "x 1\n"),
        ("PUT", "/metrics/job@base64/=", "m 1\n"),
        ("PUT", "/metrics/job/c/odd", "m 1\n"),
        ("PUT", "/metrics/job/c/__bad/v", "m 1\n"),
        ("PUT", "/metrics/job/c/a@base64/!!", "m 1\n"),
        ("PUT", "/metrics/job/c", "m 1"),
        ("PUT", "/metrics/job/c", "m 1\r\n"),
        ("PUT", "/metrics/job/c", "m 1 1000\n"),
        ("PUT", "/metrics/job/d", "# TYPE m counter\nm 1\n"),
        ("DELETE", "/metrics/job/a", ""),
        ("DELETE", "/metrics/job/never", ""),
        ("GET", "/metrics/job/a", ""),
        ("PUT", "/metrics", ""),
        ("GET", "/-/healthy", ""),
        ("GET", "/-/ready", ""),
        ("GET", "/no/such/path", ""),
    ];
    let mut differences = Vec::new();
    for (method, path, body) in cases {
        let a = http(ours.addr, method, path, &[], body.as_bytes()).unwrap();
        let b = http(theirs.addr, method, path, &[], body.as_bytes()).unwrap();
        if a.0 != b.0 {
            differences.push(format!(
                "{method} {path}: promdrop {} ({}) vs Pushgateway {} ({})",
                a.0,
                String::from_utf8_lossy(&a.1).trim(),
                b.0,
                String::from_utf8_lossy(&b.1).trim()
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

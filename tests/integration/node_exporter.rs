//! The real node_exporter 1.5.0 (Debian's `prometheus-node-exporter`) with
//! only the textfile collector, over a given directory, on a free loopback
//! port. Killed by pid when the guard drops, also when a test fails.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use promdrop::exposition::Family;
use promdrop::exposition::parse::parse;

use crate::util::{http_get, http_get_with, peer};

pub struct NodeExporter {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

/// One scrape: the status, the raw text, and what the log said.
pub struct Scrape {
    pub status: u16,
    pub text: String,
    pub log: String,
}

impl Scrape {
    /// The scrape parsed with promdrop's own parser.
    pub fn families(&self) -> Vec<Family> {
        parse(self.text.as_bytes())
            .unwrap_or_else(|e| panic!("scrape does not parse: {e}\n{}", self.text))
    }

    /// The value of a sample line, matched on its full text before the value.
    pub fn value(&self, series: &str) -> Option<&str> {
        self.text
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
    }
}

impl NodeExporter {
    /// Starts node_exporter over `dir`; `None` when it is not installed (and
    /// not required).
    pub fn start(dir: &Path) -> Option<Self> {
        // Tests run in parallel threads: choosing a free port and starting on
        // it is serialized, so two exporters never race for the same port.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let binary = peer("prometheus-node-exporter")?;
        let _starting = STARTING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for _attempt in 0..5 {
            let log_dir = tempfile::tempdir().expect("temp dir");
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let log = log_dir.path().join(format!("node_exporter-{port}.log"));
            let child = Command::new(&binary)
                .arg("--collector.disable-defaults")
                .arg("--collector.textfile")
                .arg(format!("--collector.textfile.directory={}", dir.display()))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&log).expect("log file"))
                .spawn()
                .expect("node_exporter starts");
            let mut guard = Self {
                child,
                addr,
                log,
                _log_dir: log_dir,
            };
            if guard.wait_ready() {
                return Some(guard);
            }
            // Most likely the port was taken in between: try another.
        }
        panic!(
            "node_exporter did not start on any of 5 ports over {}",
            dir.display()
        );
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok() {
                // Still ours? An exporter that lost the port exits at once.
                std::thread::sleep(Duration::from_millis(20));
                return matches!(self.child.try_wait(), Ok(None));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Scrapes `/metrics` once.
    pub fn scrape(&self) -> Scrape {
        let (status, body) = http_get(self.addr, "/metrics").expect("node_exporter answers");
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        Scrape {
            status,
            text: String::from_utf8_lossy(&body).into_owned(),
            log,
        }
    }
}

impl NodeExporter {
    /// `/metrics` as delimited protobuf `MetricFamily` messages.
    pub fn scrape_protobuf(&self) -> Vec<u8> {
        let accept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited";
        let (status, body) = http_get_with(self.addr, "/metrics", &[("Accept", accept)])
            .expect("node_exporter answers");
        assert_eq!(status, 200);
        body
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

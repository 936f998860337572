//! The real node_exporter 1.5.0 (Debian's `prometheus-node-exporter`) with
//! only the textfile collector, over a given directory, on a free loopback
//! port. Killed by pid when the guard drops, also when a test fails.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use promdrop::exposition::Family;
use promdrop::exposition::parse::parse;

use crate::util::{Peer, http_get, http_get_with, peer};

pub struct NodeExporter {
    peer: Peer,
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
        let binary = peer("prometheus-node-exporter")?;
        let log_dir = tempfile::tempdir().expect("temp dir");
        let log = log_dir.path().join("node_exporter.log");
        let command = |addr: SocketAddr| {
            let mut command = Command::new(&binary);
            command
                .arg("--collector.disable-defaults")
                .arg("--collector.textfile")
                .arg(format!("--collector.textfile.directory={}", dir.display()))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&log).expect("log file"));
            command
        };
        let ready = |addr| TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok();
        let peer = Peer::start("node_exporter", command, ready);
        Some(Self {
            peer,
            log,
            _log_dir: log_dir,
        })
    }

    /// The loopback address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.peer.addr
    }

    /// Scrapes `/metrics` once.
    pub fn scrape(&self) -> Scrape {
        let (status, body) = http_get(self.peer.addr, "/metrics").expect("node_exporter answers");
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
        let (status, body) = http_get_with(self.peer.addr, "/metrics", &[("Accept", accept)])
            .expect("node_exporter answers");
        assert_eq!(status, 200);
        body
    }
}

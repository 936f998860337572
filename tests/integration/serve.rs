//! `promdrop serve` end to end: the real binary on a loopback port, Python's
//! unchanged push client, the shared directory, and a first side-by-side run
//! against the real Pushgateway 1.5.1.

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Peer, Test, binary, http, http_get, peer, promdrop, push};

/// A running `promdrop serve`, killed by pid on drop.
pub struct TestServer {
    child: Child,
    pub addr: SocketAddr,
}

impl TestServer {
    /// Starts on 127.0.0.1:0 and learns the port from the log line.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// [`TestServer::start`] with extra `serve` arguments.
    pub fn start_with(dir: &Path, args: &[&str]) -> Self {
        let mut command = promdrop();
        command
            .arg("--dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args);
        Self::spawn(command)
    }

    /// [`TestServer::start`] with the file-size limit (`ulimit -f`) set to
    /// `blocks`, as the shell counts them.
    pub fn start_with_file_size_limit(dir: &Path, blocks: u32) -> Self {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -f {blocks} && exec \"$0\" \"$@\""))
            .arg(binary())
            .arg("--dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"]);
        Self::spawn(command)
    }

    fn spawn(mut command: Command) -> Self {
        let mut child = command
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
            .or_else(|| line.strip_prefix("promdrop: listening on https://"))
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first log line {line:?}"));
        Self { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
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

/// The server watches the directory and looks again only at files that
/// changed; a file another tool rewrites in place (same inode), or removes,
/// is served as it is now.
#[test]
fn files_changed_in_place_or_removed_by_another_tool_are_served_as_they_are_now() {
    use std::os::unix::fs::MetadataExt as _;
    let d = tempfile::tempdir().unwrap();
    let server = TestServer::start(d.path());
    let (status, _) = http(server.addr, "PUT", "/metrics/job/inplace", &[], b"m 1\n").unwrap();
    assert_eq!(status, 200);
    let (status, _) = http(server.addr, "PUT", "/metrics/job/other", &[], b"o 1\n").unwrap();
    assert_eq!(status, 200);
    assert!(
        server
            .scrape()
            .contains("m{instance=\"\",job=\"inplace\"} 1\n")
    );
    let file = d.path().join("inplace.prom");
    let inode = std::fs::metadata(&file).unwrap().ino();
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text.replace("job=\"inplace\"} 1\n", "job=\"inplace\"} 7\n");
    assert_ne!(edited, text);
    std::fs::write(&file, edited).unwrap();
    assert_eq!(
        std::fs::metadata(&file).unwrap().ino(),
        inode,
        "not in place"
    );
    let scrape = server.scrape();
    assert!(
        scrape.contains("m{instance=\"\",job=\"inplace\"} 7\n"),
        "{scrape}"
    );
    assert!(
        scrape.contains("o{instance=\"\",job=\"other\"} 1\n"),
        "{scrape}"
    );
    std::fs::remove_file(&file).unwrap();
    let scrape = server.scrape();
    assert!(!scrape.contains("job=\"inplace\""), "{scrape}");
    assert!(
        scrape.contains("o{instance=\"\",job=\"other\"} 1\n"),
        "{scrape}"
    );
    // A symlink's target changes with no event in the directory.
    let outside = tempfile::tempdir().unwrap();
    let push_outside = |value: &str| {
        push(outside.path(), &["linked"], format!("l {value}\n")).status(0);
    };
    push_outside("1");
    std::os::unix::fs::symlink(
        outside.path().join("linked.prom"),
        d.path().join("linked.prom"),
    )
    .unwrap();
    assert!(
        server
            .scrape()
            .contains("l{instance=\"\",job=\"linked\"} 1\n")
    );
    push_outside("2");
    let scrape = server.scrape();
    assert!(
        scrape.contains("l{instance=\"\",job=\"linked\"} 2\n"),
        "{scrape}"
    );
}

#[test]
fn the_directory_is_shared_with_the_cli() {
    let d = tempfile::tempdir().unwrap();
    let server = TestServer::start(d.path());
    push(d.path(), &["from_cli"], "cli_metric 1\n").status(0);
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
    // A conflict created behind the server's back, by the CLI, is still
    // seen: the server's index in memory notices the directory changed.
    push(d.path(), &["cli_typed"], "# TYPE shared gauge\nshared 1\n").status(0);
    let (status, body) = http(
        server.addr,
        "PUT",
        "/metrics/job/http_typed",
        &[],
        b"# TYPE shared counter\nshared 2\n",
    )
    .unwrap();
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    // And the other way round: the CLI sees what the server wrote.
    http(
        server.addr,
        "PUT",
        "/metrics/job/http_first",
        &[],
        b"# TYPE other gauge\nother 1\n",
    )
    .unwrap();
    push(d.path(), &["cli_second"], "# TYPE other counter\nother 2\n").status(1);
    fs::remove_file(d.path().join("from_cli.prom")).unwrap();
    assert!(!server.scrape().contains("cli_metric"));
    // Expired groups are never served.
    push(d.path(), &["brief", "--ttl", "1s"], "brief_metric 1\n").status(0);
    assert!(server.scrape().contains("brief_metric"));
    std::thread::sleep(Duration::from_millis(1100));
    assert!(!server.scrape().contains("brief_metric"));
}

#[test]
fn a_conflict_written_in_place_by_another_tool_is_seen() {
    let d = tempfile::tempdir().unwrap();
    let hand = d.path().join("hand.prom");
    fs::write(&hand, "hand_written 1\n").unwrap();
    let server = TestServer::start(d.path());
    let put = |job: &str, body: &[u8]| {
        http(
            server.addr,
            "PUT",
            &format!("/metrics/job/{job}"),
            &[],
            body,
        )
        .unwrap()
    };
    // The server's index is in memory now, and the directory as it last saw
    // it.
    assert_eq!(put("first", b"# TYPE first gauge\nfirst 1\n").0, 200);
    // Rewritten in place: the directory's mtime does not change.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&hand)
        .unwrap();
    std::io::Write::write_all(&mut file, b"# TYPE shared counter\nshared 1\n").unwrap();
    drop(file);
    let (status, body) = put("second", b"# TYPE shared gauge\nshared 2\n");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("hand.prom"), "{body}");
    assert!(!d.path().join("second.prom").exists());
    assert_eq!(put("second", b"# TYPE shared counter\nshared 2\n").0, 200);
}

#[test]
fn a_group_file_made_readable_by_a_new_mode_is_served_and_checked() {
    use std::os::unix::fs::PermissionsExt as _;
    let d = tempfile::tempdir().unwrap();
    let mode = |path: &Path, bits| fs::set_permissions(path, fs::Permissions::from_mode(bits));
    // The server must be unable to read a file its owner can: root reads
    // anything, so as root the server runs as nobody.
    let root = crate::util::is_root();
    if root {
        mode(d.path(), 0o777).unwrap();
    }
    push(
        d.path(),
        &["hidden"],
        "# TYPE hidden_metric counter\nhidden_metric 1\n",
    )
    .status(0);
    let file = d.path().join("hidden.prom");
    mode(&file, if root { 0o600 } else { 0o000 }).unwrap();
    // The server builds its index itself, while it cannot read the file.
    fs::remove_file(d.path().join(".promdrop/index")).unwrap();
    let server = if root {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(binary())
            .arg("--dir")
            .arg(d.path())
            .args(["serve", "--listen", "127.0.0.1:0"]);
        TestServer::spawn(command)
    } else {
        TestServer::start(d.path())
    };
    let scrape = server.scrape();
    assert!(!scrape.contains("hidden_metric"), "{scrape}");
    assert!(
        scrape.contains("promdrop_skipped_files{reason=\"unreadable\"} 1"),
        "{scrape}"
    );
    let (status, _) = http(server.addr, "PUT", "/metrics/job/first", &[], b"first 1\n").unwrap();
    assert_eq!(status, 200);
    // A new mode changes the ctime only: the next scrape and push see it.
    mode(&file, 0o644).unwrap();
    let scrape = server.scrape();
    assert!(
        scrape.contains("hidden_metric{instance=\"\",job=\"hidden\"} 1"),
        "{scrape}"
    );
    let (status, body) = http(
        server.addr,
        "PUT",
        "/metrics/job/other",
        &[],
        b"# TYPE hidden_metric gauge\nhidden_metric 2\n",
    )
    .unwrap();
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
}

/// The real Pushgateway 1.5.1 on a free loopback port; killed on drop.
pub struct Pushgateway(Peer);

impl std::ops::Deref for Pushgateway {
    type Target = Peer;

    fn deref(&self) -> &Peer {
        &self.0
    }
}

impl Pushgateway {
    pub fn start() -> Option<Self> {
        let binary = peer("prometheus-pushgateway")?;
        let command = |addr: SocketAddr| {
            let mut command = Command::new(&binary);
            command
                .arg(format!("--web.listen-address={addr}"))
                .arg("--persistence.file=")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            command
        };
        let ready = |addr| {
            http_get(addr, "/api/v1/status").is_ok_and(|(s, body)| {
                s == 200 && String::from_utf8_lossy(&body).contains("\"version\":\"1.5.1\"")
            })
        };
        Some(Self(Peer::start("the Pushgateway", command, ready)))
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

#[test]
fn quit_and_sigterm_stop_the_server_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_with(d.path(), &["--web.enable-lifecycle"]);
    let (status, body) = http(server.addr, "PUT", "/-/quit", &[], b"").unwrap();
    assert_eq!(
        (status, String::from_utf8_lossy(&body).as_ref()),
        (200, "Requesting termination... Goodbye!")
    );
    assert!(server.child.wait().unwrap().success());
    let mut server = TestServer::start(d.path());
    let pid = nix::unistd::Pid::from_raw(i32::try_from(server.child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(server.child.wait().unwrap().success());
}

#[test]
fn expired_groups_are_swept_and_counted() {
    let d = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(d.path(), &["--ttl", "1s"]);
    assert_eq!(
        http(server.addr, "PUT", "/metrics/job/short", &[], b"m 1\n")
            .unwrap()
            .0,
        200
    );
    let long = [("X-Promdrop-TTL", "1h")];
    assert_eq!(
        http(server.addr, "PUT", "/metrics/job/long", &long, b"n 1\n")
            .unwrap()
            .0,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.path().join("short.prom").exists() {
        assert!(
            Instant::now() < deadline,
            "the sweeper never removed the expired group"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.path().join("long.prom").exists());
    let scrape = server.scrape();
    assert!(
        scrape.contains("promdrop_expired_groups_total 1\n"),
        "{scrape}"
    );
    assert!(!scrape.contains("job=\"short\""));
}

/// The JSON API output with what always differs (times) blanked.
pub fn normalized_groups(body: &[u8]) -> serde_json::Value {
    let mut json: serde_json::Value = serde_json::from_slice(body).expect("JSON");
    for group in json["data"].as_array_mut().expect("a data array") {
        for (_, family) in group.as_object_mut().unwrap().iter_mut() {
            if let Some(family) = family
                .as_object_mut()
                .filter(|f| f.contains_key("time_stamp"))
            {
                family.insert("time_stamp".into(), "T".into());
                let timed = matches!(family.get("help").and_then(|h| h.as_str()), Some(h) if h.starts_with("Last Unix time"));
                if timed {
                    for metric in family["metrics"].as_array_mut().unwrap() {
                        if metric["value"] != "0" {
                            metric["value"] = "T".into();
                        }
                    }
                }
            }
        }
    }
    json
}

#[test]
fn json_api_matches_the_pushgateway() {
    let d = tempfile::tempdir().unwrap();
    let ours = TestServer::start(d.path());
    let Some(theirs) = Pushgateway::start() else {
        return;
    };
    let body = b"# HELP g Gauge.\n# TYPE g gauge\ng{x=\"1\"} 1234567.5\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\nu 1e-05\n";
    for server in [ours.addr, theirs.addr] {
        assert_eq!(
            http(server, "PUT", "/metrics/job/j/instance/i", &[], body)
                .unwrap()
                .0,
            200
        );
    }
    let a = normalized_groups(&http_get(ours.addr, "/api/v1/metrics").unwrap().1);
    let b = normalized_groups(&http_get(theirs.addr, "/api/v1/metrics").unwrap().1);
    assert_eq!(a, b, "promdrop:\n{a:#}\nPushgateway:\n{b:#}");
}

#[test]
fn no_acknowledged_push_is_lost_when_the_server_is_killed() {
    // The crash harness: 20 cycles here; PROMDROP_CRASH_CYCLES=100 (or more)
    // is the long mode.
    let cycles: usize = std::env::var("PROMDROP_CRASH_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let d = tempfile::tempdir().unwrap();
    // node_exporter reads the directory throughout, as in production.
    let exporter = crate::node_exporter::NodeExporter::start(d.path());
    let clients = 4;
    let mut acknowledged = vec![0u64; clients];
    let mut rng = crate::util::Rng::new(0x00c0_ffee);
    for cycle in 0..cycles {
        let mut server = TestServer::start(d.path());
        let addr = server.addr;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers: Vec<_> = (0..clients)
            .map(|client| {
                let stop = std::sync::Arc::clone(&stop);
                let mut next = acknowledged[client] + 1;
                std::thread::spawn(move || {
                    let mut last = None;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let body = format!("# TYPE storm_seq gauge\nstorm_seq {next}\n");
                        match http(
                            addr,
                            "PUT",
                            &format!("/metrics/job/storm/client/c{client}"),
                            &[],
                            body.as_bytes(),
                        ) {
                            Ok((200, _)) => last = Some(next),
                            // No complete answer: the server died mid-request.
                            Ok((0, _)) | Err(_) => break,
                            Ok((status, body)) => {
                                panic!("push answered {status}: {}", String::from_utf8_lossy(&body))
                            }
                        }
                        next += 1;
                    }
                    last
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50 + rng.below(250)));
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for (client, worker) in workers.into_iter().enumerate() {
            if let Some(last) = worker.join().unwrap() {
                acknowledged[client] = last;
            }
        }
        if let Some(exporter) = &exporter {
            let scrape = exporter.scrape();
            assert_eq!(
                scrape.value("node_textfile_scrape_error"),
                Some("0"),
                "node_exporter failed its scrape after kill {cycle}: {}",
                scrape.log
            );
        }
    }
    survived_the_storm(d.path(), &acknowledged, exporter);
}

/// What must hold after the crash storm: every acknowledged push stored, no
/// invalid or stray file, no temp file left after one `expire`, and
/// node_exporter clean.
fn survived_the_storm(
    d: &Path,
    acknowledged: &[u64],
    exporter: Option<crate::node_exporter::NodeExporter>,
) {
    assert!(
        acknowledged.iter().all(|&n| n > 20),
        "too few pushes were acknowledged: {acknowledged:?}"
    );
    for (client, &last) in acknowledged.iter().enumerate() {
        let file = d.join(format!("storm@client=c{client}.prom"));
        let text = fs::read_to_string(&file).unwrap();
        let stored: u64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "storm_seq{{client=\"c{client}\",instance=\"\",job=\"storm\"}} "
                ))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no storm_seq in {}:\n{text}", file.display()));
        assert!(
            stored >= last,
            "client {client}: push {last} was acknowledged, but the file holds {stored}"
        );
    }
    for entry in fs::read_dir(d).unwrap().flatten() {
        let name = entry.file_name().into_string().unwrap();
        assert!(
            !name.ends_with(".prom") || name.starts_with("storm@"),
            "stray {name}"
        );
    }
    Test::new().arg("check").arg(d).run().status(0);
    // Temp files of killed writes are gone after one expire (once they are
    // a moment old), since no live writer holds them.
    std::thread::sleep(Duration::from_millis(1100));
    Test::new()
        .arg("--dir")
        .arg(d)
        .arg("expire")
        .run()
        .status(0);
    for dir in [d.to_owned(), d.join(".promdrop/tmp")] {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let name = entry.file_name().into_string().unwrap();
            assert!(
                !name.starts_with(".promdrop-tmp-"),
                "stray temp file {name}"
            );
        }
    }
    if let Some(exporter) = exporter {
        let scrape = exporter.scrape();
        assert_eq!(scrape.value("node_textfile_scrape_error"), Some("0"));
        assert!(!scrape.log.contains("level=error"), "{}", scrape.log);
    }
}

#[test]
fn a_body_that_does_not_arrive_times_out_and_others_are_served() {
    use std::io::{Read as _, Write as _};
    let d = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(d.path(), &["--body-timeout", "300ms"]);
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    slow.write_all(
        b"PUT /metrics/job/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nm 1\n",
    )
    .unwrap();
    // Meanwhile a normal client pushes and scrapes.
    assert_eq!(
        http(server.addr, "PUT", "/metrics/job/quick", &[], b"q 1\n")
            .unwrap()
            .0,
        200
    );
    assert!(server.scrape().contains("q{instance=\"\",job=\"quick\"} 1"));
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(!d.path().join("slow.prom").exists());
}

#[test]
fn a_fifo_named_like_a_group_blocks_neither_list_nor_scrape() {
    let d = tempfile::tempdir().unwrap();
    let made = Command::new("mkfifo")
        .arg(d.path().join("pipe.prom"))
        .status()
        .unwrap();
    assert!(made.success());
    push(d.path(), &["real"], "m 1\n").status(0);
    let list = Test::new()
        .arg("--dir")
        .arg(d.path())
        .arg("list")
        .run()
        .status(0);
    assert!(
        list.stdout.contains("real.prom") && !list.stdout.contains("pipe.prom"),
        "{}",
        list.stdout
    );
    let server = TestServer::start(d.path());
    assert!(
        server
            .scrape()
            .contains("m{instance=\"\",job=\"real\"} 1\n")
    );
}

#[test]
fn serves_on_a_socket_passed_by_systemd() {
    // systemd's own test launcher binds the socket and execs promdrop with
    // it as fd 3 (LISTEN_FDS=1), as a .socket unit does. --listen names an
    // address promdrop could not bind, so only the passed socket can work.
    let Some(activate) = peer("systemd-socket-activate") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let command = |addr: SocketAddr| {
        let mut command = Command::new(&activate);
        command
            .arg(format!("--listen={addr}"))
            .arg(binary())
            .arg("--dir")
            .arg(dir.path())
            .args(["serve", "--listen", "192.0.2.1:9091"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    let ready = |addr| http_get(addr, "/-/healthy").is_ok_and(|(status, _)| status == 200);
    let server = Peer::start(
        "promdrop serve under systemd-socket-activate",
        command,
        ready,
    );
    let body = b"# TYPE activated gauge\nactivated 1\n";
    let (status, _) = http(server.addr, "PUT", "/metrics/job/socket", &[], body).unwrap();
    assert_eq!(status, 200);
    let (_, scrape) = http_get(server.addr, "/metrics").unwrap();
    let scrape = String::from_utf8(scrape).unwrap();
    assert!(
        scrape.contains("activated{instance=\"\",job=\"socket\"} 1"),
        "{scrape}"
    );
    assert!(dir.path().join("socket.prom").is_file());
}

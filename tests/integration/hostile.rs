//! `promdrop serve` against hostile clients: a zip bomb, and a crowd of
//! connections that send their requests a byte at a time (slowloris).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::TcpStream;
use std::time::Duration;

use crate::serve::TestServer;
use crate::util::{http, http_get, promdrop, push};

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix(" kB")?.trim().parse::<u64>().ok())
        .expect("VmHWM in /proc/PID/status")
        * 1024
}

#[test]
fn a_zip_bomb_is_refused_with_bounded_memory() {
    // 10,000 gzip members of 1 MiB of zeros each: about 10 MB on the wire,
    // 10 GiB inflated. The server stops inflating at --max-body (64 MiB).
    let mut member = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    member.write_all(&vec![0u8; 1 << 20]).unwrap();
    let member = member.finish().unwrap();
    let bomb = member.repeat(10_000);
    assert!(
        (9_000_000..12_000_000).contains(&bomb.len()),
        "{} bytes",
        bomb.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let before = peak_rss(server.pid());
    let (status, body) = http(
        server.addr,
        "PUT",
        "/metrics/job/bomb",
        &[("Content-Encoding", "gzip")],
        &bomb,
    )
    .unwrap();
    let message = String::from_utf8_lossy(&body);
    assert_eq!(status, 413, "{message}");
    assert!(
        message
            .contains("decompressed request body exceeds the limit of 67108864 bytes (--max-body)"),
        "{message}"
    );
    // The cap, the compressed body and the server's own baseline (about
    // 85 MB in all, measured 2026-12-06); never the 10 GiB, nor the freed
    // buffers of the body as it grew to the cap.
    let grown = peak_rss(server.pid()).saturating_sub(before);
    assert!(grown < 128 << 20, "peak RSS grew by {grown} bytes");
    assert!(!dir.path().join("bomb.prom").exists());
    assert_eq!(http_get(server.addr, "/-/healthy").unwrap().0, 200);
}

#[test]
fn a_body_over_the_cap_is_refused_unread_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), &["--max-body", "100"]);
    let body = "big_metric 1\n".repeat(20);
    let (status, answer) =
        http(server.addr, "PUT", "/metrics/job/big", &[], body.as_bytes()).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("100 bytes"), "{answer}");
    assert!(!dir.path().join("big.prom").exists());
    let scrape = server.scrape();
    for line in [
        "promdrop_http_requests_total{code=\"413\",route=\"push\"} 1",
        "promdrop_rejected_pushes_total{reason=\"limit\"} 1",
    ] {
        assert!(scrape.contains(line), "{line} missing:\n{scrape}");
    }
}

#[test]
fn two_hundred_slow_connections_do_not_stop_a_normal_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    // Each sends the start of a request, then one more header byte now and
    // then, never finishing it.
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut stream = TcpStream::connect(server.addr).unwrap();
            stream
                .write_all(b"PUT /metrics/job/slow HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            stream
        })
        .collect();
    for round in 0..10 {
        for stream in &mut slow {
            // A connection the server has closed fails here; that is fine.
            let _ = stream.write_all(b"a");
        }
        let body = format!("# TYPE normal_client_round gauge\nnormal_client_round {round}\n");
        let (status, answer) = http(
            server.addr,
            "PUT",
            "/metrics/job/normal",
            &[],
            body.as_bytes(),
        )
        .expect("a normal push is answered");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        let (status, scrape) = http_get(server.addr, "/metrics").expect("a scrape is answered");
        assert_eq!(status, 200);
        let scrape = String::from_utf8(scrape).unwrap();
        assert!(
            scrape.contains(&format!(
                "normal_client_round{{instance=\"\",job=\"normal\"}} {round}"
            )),
            "{scrape}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!dir.path().join("slow.prom").exists());
}

#[test]
fn symlinks_planted_in_the_directory_are_never_followed_for_writes() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = TestServer::start(d);
    let push = |job: &str, body: &str| {
        http(
            server.addr,
            "PUT",
            &format!("/metrics/job/{job}"),
            &[],
            body.as_bytes(),
        )
        .unwrap()
    };
    assert_eq!(push("good", "good_metric 1\n").0, 200);
    assert_eq!(push("linked", "linked_metric 1\n").0, 200);
    // A group file moved away and linked back in: a push replaces the link,
    // never the file it points to.
    let moved = outside.path().join("linked.prom");
    std::fs::rename(d.join("linked.prom"), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, d.join("linked.prom")).unwrap();
    let before = std::fs::read(&moved).unwrap();
    assert_eq!(push("linked", "linked_metric 2\n").0, 200);
    assert!(!d.join("linked.prom").is_symlink());
    assert_eq!(
        std::fs::read(&moved).unwrap(),
        before,
        "a write followed a symlink"
    );
    // State files replaced by symlinks: the index is not written through
    // one, and a lock file that is one refuses the push.
    let decoy = outside.path().join("decoy");
    std::fs::write(&decoy, "untouched").unwrap();
    std::fs::remove_file(d.join(".promdrop/index")).ok();
    std::os::unix::fs::symlink(&decoy, d.join(".promdrop/index")).unwrap();
    std::os::unix::fs::symlink(&decoy, d.join(".promdrop/locks/trap.lock")).unwrap();
    let (status, message) = push("trap", "trap_metric 1\n");
    assert_eq!(status, 500, "{}", String::from_utf8_lossy(&message));
    // The CLI writes the index after every push.
    let cli = promdrop()
        .arg("--dir")
        .arg(d)
        .args(["push", "cli"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(b"cli_metric 1\n")?;
            child.wait()
        })
        .unwrap();
    assert!(cli.success());
    assert_eq!(std::fs::read_to_string(&decoy).unwrap(), "untouched");
}

#[test]
fn files_other_tools_left_are_reported_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = TestServer::start(d);
    let (status, _) = http(
        server.addr,
        "PUT",
        "/metrics/job/good",
        &[],
        b"good_metric 1\n",
    )
    .unwrap();
    assert_eq!(status, 200);
    // A FIFO, a directory, a symlink loop, a 2 GiB sparse file, another
    // tool's valid file, and a promdrop header over a broken body.
    assert!(
        std::process::Command::new("mkfifo")
            .arg(d.join("fifo.prom"))
            .status()
            .unwrap()
            .success()
    );
    std::fs::create_dir(d.join("dir.prom")).unwrap();
    std::os::unix::fs::symlink("loop.prom", d.join("loop.prom")).unwrap();
    std::fs::File::create(d.join("huge.prom"))
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    std::fs::write(d.join("foreign.prom"), "other_tool_metric 1\n").unwrap();
    std::fs::write(
        d.join("broken.prom"),
        "# promdrop group {\"job\":\"broken\",\"labels\":{}}\nbroken{ 1\n",
    )
    .unwrap();
    let scrape = server.scrape();
    assert!(scrape.contains("good_metric{"), "{scrape}");
    for (reason, count) in [
        ("not_regular", 2),
        ("unreadable", 1),
        ("too_large", 1),
        ("foreign", 1),
        ("invalid", 1),
    ] {
        let line = format!("promdrop_skipped_files{{reason=\"{reason}\"}} {count}");
        assert!(scrape.contains(&line), "{line} missing:\n{scrape}");
    }
    assert!(!scrape.contains("other_tool_metric"), "{scrape}");
    let (status, page) = http_get(server.addr, "/").unwrap();
    let page = String::from_utf8(page).unwrap();
    assert_eq!(status, 200);
    for file in [
        "fifo.prom",
        "dir.prom",
        "loop.prom",
        "huge.prom",
        "foreign.prom",
        "broken.prom",
    ] {
        assert!(
            page.contains(&format!("<code>{file}</code>")),
            "{file}:\n{page}"
        );
    }
}

#[test]
fn a_full_disk_fails_pushes_cleanly_and_keeps_what_was_stored() {
    // A small tmpfs where the tests may mount one (as in CI); the file-size
    // limit everywhere, which fails a write in the same place.
    let dir = tempfile::tempdir().unwrap();
    if let Some(_mount) = crate::util::Tmpfs::mount(dir.path(), "256k") {
        let server = TestServer::start(dir.path());
        let big = refused_big_push(&server, dir.path(), "No space left on device");
        // The CLI says so and exits 3 (I/O).
        let kept = std::fs::read(dir.path().join("kept.prom")).unwrap();
        push(dir.path(), &["kept"], big).status(3);
        assert_eq!(std::fs::read(dir.path().join("kept.prom")).unwrap(), kept);
    }
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_file_size_limit(dir.path(), 256);
    refused_big_push(&server, dir.path(), "File too large");
    // The limit failed the write and did not stop the server.
    let (status, _) = http(server.addr, "PUT", "/metrics/job/small", &[], b"small 1\n").unwrap();
    assert_eq!(status, 200);
}

/// Pushes a group, then a body too big for the disk to it and to a new
/// group: both refused with `message`, the stored group intact, no new group,
/// and scrapes go on. Returns the big body.
fn refused_big_push(server: &TestServer, d: &std::path::Path, message: &str) -> String {
    let (status, _) = http(
        server.addr,
        "PUT",
        "/metrics/job/kept",
        &[],
        b"kept_metric 1\n",
    )
    .unwrap();
    assert_eq!(status, 200);
    let kept = std::fs::read(d.join("kept.prom")).unwrap();
    // Far more than the disk holds, in a body the server accepts.
    let big = (0..20_000).fold(String::new(), |mut text, i| {
        let _ = writeln!(text, "big_metric{{n=\"{i}\"}} {i}");
        text
    });
    let (status, answer) =
        http(server.addr, "PUT", "/metrics/job/kept", &[], big.as_bytes()).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status, 500, "{answer}");
    assert!(answer.contains(message), "{answer}");
    let (status, _) = http(server.addr, "PUT", "/metrics/job/new", &[], big.as_bytes()).unwrap();
    assert_eq!(status, 500);
    assert_eq!(std::fs::read(d.join("kept.prom")).unwrap(), kept);
    assert!(!d.join("new.prom").exists());
    let scrape = server.scrape();
    assert!(
        scrape.contains("kept_metric{instance=\"\",job=\"kept\"} 1"),
        "{scrape}"
    );
    big
}

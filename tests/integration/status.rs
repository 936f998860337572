//! The status page of `promdrop serve` (`GET /`), end to end: the HTML as
//! served, then as the real headless Chromium parses and draws it (its DOM,
//! and a screenshot under `target/tmp/status/`). One grouping label holds a
//! script tag and one refused push quotes a `<`: both must show as text.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::serve::TestServer;
use crate::util::{http, http_get, peer};

/// The grouping label value that must never become markup.
const DANGER: &str = "<script>alert(1)</script>";
/// [`DANGER`] in URL-safe base64, for `/page@base64/...`.
const DANGER_BASE64: &str = "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg";
/// How long Chromium may take to load and dump or draw the page.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

/// A server on a directory with three groups, a refused push to one of
/// them (a type clash) and a refused push to a key that has no group.
fn populated_server(dir: &Path) -> TestServer {
    let server = TestServer::start(dir);
    let put = |path: &str, body: &str| {
        let (status, answer) = http(server.addr, "PUT", path, &[], body.as_bytes()).unwrap();
        (status, String::from_utf8_lossy(&answer).into_owned())
    };
    for (path, body) in [
        (
            "/metrics/job/backup/instance/db1",
            "# TYPE backup_ok gauge\nbackup_ok 1\n# TYPE shared gauge\nshared 1\n",
        ),
        ("/metrics/job/nightly", "nightly_runs 3\n"),
        (
            &format!("/metrics/job/web/page@base64/{DANGER_BASE64}"),
            "page_views 7\n",
        ),
    ] {
        assert_eq!(put(path, body), (200, String::new()), "PUT {path}");
    }
    let clash = put("/metrics/job/nightly", "# TYPE shared counter\nshared 2\n");
    assert_eq!(clash.0, 400, "{}", clash.1);
    let garbage = put(
        "/metrics/job/broken",
        "ok 1\n<img src=x onerror=alert(2)> 1\n",
    );
    assert_eq!(garbage.0, 400, "{}", garbage.1);
    assert!(garbage.1.contains("found '<'"), "{}", garbage.1);
    server
}

/// The checks shared by the served HTML and Chromium's DOM. `page` is
/// either; quotes are compared unescaped, since the DOM serializer writes
/// them raw in text while the server escapes them.
#[track_caller]
fn check_page(page: &str, what: &str) {
    let lower = page.to_ascii_lowercase();
    assert!(
        !lower.contains("<script") && !lower.contains("<img"),
        "{what}: a client's text became markup:\n{page}"
    );
    let page = page
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&middot;", "·");
    for expected in [
        "<title>promdrop</title>",
        &format!("3 groups · promdrop {}", env!("CARGO_PKG_VERSION")),
        "<table>",
    ] {
        assert!(
            page.contains(expected),
            "{what}: no {expected:?} in\n{page}"
        );
    }
    let escaped_danger = DANGER.replace('<', "&lt;").replace('>', "&gt;");
    let keys = [
        "<code>job=\"backup\"</code> <code>instance=\"db1\"</code>".to_owned(),
        "<code>job=\"broken\"</code>".to_owned(),
        "<code>job=\"nightly\"</code>".to_owned(),
        format!("<code>job=\"web\"</code> <code>page=\"{escaped_danger}\"</code>"),
    ];
    let rows: Vec<&str> = keys
        .iter()
        .map(|key| {
            page.split("<tr")
                .find(|row| row.contains(key.as_str()))
                .unwrap_or_else(|| panic!("{what}: no row for {key} in\n{page}"))
        })
        .collect();
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| page.find(k.as_str()).unwrap())
        .collect();
    assert!(
        positions.is_sorted(),
        "{what}: rows not in key order\n{page}"
    );
    let [backup, broken, nightly, web] = rows[..] else {
        unreachable!()
    };
    for (row, series) in [(backup, 2), (nightly, 1), (web, 1)] {
        assert!(
            row.contains(&format!("<td class=\"num\">{series}</td>")) && !row.contains("no data"),
            "{what}: {row}"
        );
    }
    assert!(
        backup.contains("<td class=\"none\">none</td>") && !backup.contains("refused"),
        "{what}: {backup}"
    );
    assert!(
        nightly.starts_with(" class=\"refused\"")
            && nightly.contains("inconsistent with existing metrics")
            && nightly.contains("\"shared\" has type counter"),
        "{what}: {nightly}"
    );
    assert!(
        broken.starts_with(" class=\"refused\"")
            && broken.contains("<td class=\"nodata\">no data</td>")
            && broken.contains("text format parsing error in line 2")
            && broken.contains("found '&lt;'"),
        "{what}: {broken}"
    );
}

#[test]
fn the_status_page_lists_every_group_escaped() {
    let d = tempfile::tempdir().unwrap();
    let server = populated_server(d.path());
    let (status, body) = http_get(server.addr, "/").unwrap();
    let html = String::from_utf8(body).expect("UTF-8 page");
    assert_eq!(status, 200, "{html}");
    assert!(html.starts_with("<!DOCTYPE html>\n"), "{html}");
    assert!(
        html.contains(&DANGER.replace('<', "&lt;").replace('>', "&gt;")),
        "{html}"
    );
    assert!(
        html.contains(&format!("Serving <code>{}</code>", d.path().display())),
        "{html}"
    );
    check_page(&html, "served HTML");
    // The refused push to a key without a group left nothing behind.
    assert!(!d.path().join("broken.prom").exists());
    assert!(!server.scrape().contains("job=\"broken\""));
    let (status, _) = http(server.addr, "DELETE", "/", &[], b"").unwrap();
    assert_eq!(status, 405);
}

#[test]
fn chromium_shows_the_status_page_escaped() {
    let Some(chromium) = peer("chromium") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let server = populated_server(d.path());
    let url = format!("http://{}/", server.addr);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status");
    std::fs::create_dir_all(&out).unwrap();
    let dom = Browser::run(&chromium, &out, "dump-dom", &["--dump-dom", &url]);
    check_page(&dom, "Chromium's DOM");
    let screenshot = out.join("status-page.png");
    let _ = std::fs::remove_file(&screenshot);
    Browser::run(
        &chromium,
        &out,
        "screenshot",
        &[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1280,800",
            &url,
        ],
    );
    let png = std::fs::read(&screenshot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", screenshot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "not a PNG: {} ({} bytes)",
        screenshot.display(),
        png.len()
    );
    println!("status page screenshot: {}", screenshot.display());
}

/// A headless Chromium in a process group of its own, with a throwaway
/// profile; the whole group is killed by its id if it outlives
/// [`CHROMIUM_TIMEOUT`] or the test panics while it runs.
struct Browser {
    child: Child,
    reaped: bool,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Runs Chromium with `args` (after the fixed headless, offline ones);
    /// returns its stdout. Its output goes to `<out>/<name>.stdout` and
    /// `.stderr`, which a failure quotes.
    #[track_caller]
    fn run(binary: &Path, out: &Path, name: &str, args: &[&str]) -> String {
        let profile = tempfile::tempdir().unwrap();
        let stdout_path = out.join(format!("{name}.stdout"));
        let stderr_path = out.join(format!("{name}.stderr"));
        let mut command = Command::new(binary);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).unwrap())
            .stderr(File::create(&stderr_path).unwrap());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", binary.display()));
        let mut browser = Self {
            child,
            reaped: false,
            _profile: profile,
        };
        let started = Instant::now();
        let status = loop {
            if let Some(status) = browser.child.try_wait().unwrap() {
                browser.reaped = true;
                break status;
            }
            assert!(
                started.elapsed() < CHROMIUM_TIMEOUT,
                "chromium {args:?} still running after {CHROMIUM_TIMEOUT:?}; killed\n{}",
                tail(&stderr_path)
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "chromium {args:?}: {status}\n{}",
            tail(&stderr_path)
        );
        std::fs::read_to_string(&stdout_path).unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.reaped {
            // Not reaped yet, so the id is still ours: the group's leader
            // and its renderers go together.
            let pid = i32::try_from(self.child.id()).expect("a pid fits i32");
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = self.child.wait();
        }
    }
}

/// The last lines of a log, for a failure message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "--- {} (last 30 lines) ---\n{}",
        path.display(),
        lines[lines.len().saturating_sub(30)..].join("\n")
    )
}

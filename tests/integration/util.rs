//! The `Test` builder that runs the promdrop binary, peer lookup, and a
//! minimal loopback HTTP client.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `promdrop` with arguments and standard input, then checks the
/// outcome; failures print the command, its output and the files written.
#[derive(Debug, Default)]
pub struct Test {
    args: Vec<OsString>,
    stdin: Vec<u8>,
    env: Vec<(String, String)>,
    uid: Option<u32>,
}

impl Test {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = input.into();
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Runs as another user (the tests run as root in CI, and root may
    /// write anywhere).
    pub fn uid(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    #[track_caller]
    pub fn run(self) -> Outcome {
        let mut command = promdrop();
        command
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        if let Some(uid) = self.uid {
            std::os::unix::process::CommandExt::uid(&mut command, uid);
        }
        let mut child = command.spawn().expect("promdrop binary runs");
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = self.stdin.clone();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let output = child.wait_with_output().expect("promdrop finishes");
        writer.join().expect("stdin writer");
        Outcome {
            description: format!("promdrop {:?}", self.args),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// `promdrop --dir DIR ARGS...`, with nothing on standard input.
#[track_caller]
pub fn in_dir(dir: &Path, args: &[&str]) -> Outcome {
    Test::new().arg("--dir").arg(dir).args(args).run()
}

/// The files in `DIR/.promdrop/locks`, sorted.
pub fn lock_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(".promdrop/locks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// `promdrop --dir DIR push ARGS...` with `body` on standard input.
#[track_caller]
pub fn push(dir: &Path, args: &[&str], body: impl AsRef<[u8]>) -> Outcome {
    Test::new()
        .arg("--dir")
        .arg(dir)
        .arg("push")
        .args(args)
        .stdin(body.as_ref())
        .run()
}

/// The binary under test: the one cargo built with these tests, or the one
/// `PROMDROP_TEST_BINARY` names (`.ci/run` also runs the suite against the
/// installed package's static musl binary).
pub fn binary() -> PathBuf {
    std::env::var_os("PROMDROP_TEST_BINARY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_promdrop")),
        PathBuf::from,
    )
}

/// A `promdrop` command with no `PROMDROP_*` settings from the environment.
pub fn promdrop() -> Command {
    let mut command = Command::new(binary());
    for (name, _) in std::env::vars() {
        if name.starts_with("PROMDROP_") && name != "PROMDROP_REQUIRE_PEERS" {
            command.env_remove(name);
        }
    }
    command
}

/// A tiny deterministic xorshift generator for random test timings.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What a `promdrop` run produced.
#[derive(Debug)]
pub struct Outcome {
    description: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn context(&self) -> String {
        format!(
            "command: {}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.description, self.code, self.stdout, self.stderr
        )
    }

    #[track_caller]
    pub fn status(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code\n{}",
            self.context()
        );
        self
    }

    #[track_caller]
    pub fn stdout(self, expected: &str) -> Self {
        assert_eq!(
            self.stdout,
            expected,
            "unexpected stdout\n{}",
            self.context()
        );
        self
    }

    #[track_caller]
    pub fn stderr(self, expected: &str) -> Self {
        assert_eq!(
            self.stderr,
            expected,
            "unexpected stderr\n{}",
            self.context()
        );
        self
    }
}

/// The path of a peer program, or `None` to skip. With
/// `PROMDROP_REQUIRE_PEERS=1` (as in CI) a missing peer fails the test.
pub fn peer(program: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("PROMDROP_REQUIRE_PEERS").as_deref() != Ok("1"),
            "peer {program:?} is required (PROMDROP_REQUIRE_PEERS=1) but is not installed; run .ci/run to install the peers"
        );
        eprintln!("skipping: peer {program:?} is not installed");
    }
    found
}

/// A size-limited tmpfs mounted on a directory, unmounted when dropped (also
/// when a test fails).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts one on `dir`; `None` (with a note) without the privilege.
    pub fn mount(dir: &Path, size: &str) -> Option<Self> {
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "promdrop-test",
            ])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipping: mounting a tmpfs needs privileges this run does not have");
        }
        mounted.then(|| Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a server still starting or stopping may hold it.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Whether the tests run as root (as in CI), which changing owners needs.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

/// A plain HTTP/1.0 GET on loopback: `(status, body)`.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    http(addr, "GET", path, &[], b"")
}

/// [`http_get`] with extra request headers.
pub fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, Vec<u8>)> {
    http(addr, "GET", path, headers, b"")
}

/// One HTTP/1.0 request on loopback: `(status, body)`.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.extend([*name, ": ", *value, "\r\n"]);
    }
    head.push_str("\r\n");
    // One write: a server that answers an error before reading the body,
    // then closes, must not reset the connection under our feet.
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request)?;
    let mut response = Vec::new();
    if let Err(err) = stream.read_to_end(&mut response) {
        // A reset after the answer arrived still leaves the answer.
        if response.is_empty() {
            return Err(err);
        }
    }
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.get(split + 4..).unwrap_or_default().to_vec();
    Ok((status, body))
}

/// Copies every regular file of `from` into `to`.
pub fn copy_files(from: &Path, to: &Path, skip: &[&str]) {
    for entry in std::fs::read_dir(from).expect("readable case dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name();
        if entry.file_type().is_ok_and(|t| t.is_file()) && !skip.iter().any(|s| name == *s) {
            std::fs::copy(entry.path(), to.join(&name)).expect("copy case file");
        }
    }
}

/// A peer program serving on a free loopback port, killed by pid when
/// dropped, also when a test fails.
pub struct Peer {
    child: std::process::Child,
    pub addr: SocketAddr,
}

impl Peer {
    /// Starts `command(addr)` on a free loopback port and waits until
    /// `ready(addr)` holds. A port probed free can be taken by another test
    /// before the peer binds it; the peer then exits and another port is
    /// tried. Starts are serialized across the test threads.
    pub fn start(
        what: &str,
        mut command: impl FnMut(SocketAddr) -> Command,
        ready: impl Fn(SocketAddr) -> bool,
    ) -> Self {
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _starting = STARTING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for _attempt in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let child = command(addr)
                .spawn()
                .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
            let mut peer = Self { child, addr };
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while matches!(peer.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline
            {
                if ready(addr) {
                    // Still ours? A peer that lost the port exits at once.
                    std::thread::sleep(Duration::from_millis(20));
                    if matches!(peer.child.try_wait(), Ok(None)) {
                        return peer;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("{what} did not start on any of 5 ports");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `check` on every item, on 4 threads; returns the failures it reported.
pub fn failures_in_parallel<T: Sync>(
    items: &[T],
    check: impl Fn(&T) -> Option<String> + Sync,
) -> Vec<String> {
    let check = &check;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(items.len().div_ceil(4).max(1))
            .map(|chunk| scope.spawn(move || chunk.iter().filter_map(check).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    })
}

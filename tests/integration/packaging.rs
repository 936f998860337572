//! The packaging: systemd units that systemd itself accepts, hardened; and
//! the sysusers.d and tmpfiles.d entries, applied by systemd's own tools to a
//! scratch root, making the shared, setgid directories they promise; and the
//! string functions the static musl build links in place of musl's.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;

use crate::util::{binary, is_root, peer};

fn packaging(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(path)
}

#[test]
fn systemd_accepts_the_units_and_rates_the_service_hardened() {
    let Some(analyze) = peer("systemd-analyze") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for name in [
        "promdrop.service",
        "promdrop.socket",
        "backup.service",
        "backup.timer",
    ] {
        // The built binary stands in for the installed /usr/bin/promdrop.
        let text = std::fs::read_to_string(packaging(&format!("systemd/{name}")))
            .unwrap()
            .replace("/usr/bin/promdrop", &binary().to_string_lossy());
        std::fs::write(dir.path().join(name), text).unwrap();
        units.push(dir.path().join(name));
    }
    let out = Command::new(&analyze)
        .args(["--man=no", "verify"])
        .args(&units)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    let out = Command::new(&analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(dir.path().join("promdrop.service"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split("promdrop.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    // systemd's scale: 0 (locked down) to 10 (exposed); 2 is "OK".
    assert!(exposure <= 2.0, "exposure {exposure}:\n{report}");
}

#[test]
fn sysusers_and_tmpfiles_make_the_shared_setgid_directories() {
    let (Some(sysusers), Some(tmpfiles)) = (peer("systemd-sysusers"), peer("systemd-tmpfiles"))
    else {
        return;
    };
    if !is_root() {
        eprintln!("skipping: setting owners needs root");
        return;
    }
    // A scratch root laid out as the package installs the two files.
    let root = tempfile::tempdir().unwrap();
    for (kind, file) in [
        ("sysusers.d", "sysusers.d/promdrop.conf"),
        ("tmpfiles.d", "tmpfiles.d/promdrop.conf"),
    ] {
        let into = root.path().join("usr/lib").join(kind);
        std::fs::create_dir_all(&into).unwrap();
        std::fs::copy(packaging(file), into.join("promdrop.conf")).unwrap();
    }
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    for (tool, args) in [(&sysusers, &[][..]), (&tmpfiles, &["--create"][..])] {
        let out = Command::new(tool)
            .arg(format!("--root={}", root.path().display()))
            .args(args)
            .arg("promdrop.conf")
            .output()
            .unwrap();
        assert!(out.status.success(), "{tool:?}: {out:?}");
    }
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let fields: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("promdrop:"))
        .unwrap_or_else(|| panic!("no promdrop user in:\n{passwd}"))
        .split(':')
        .collect();
    let (uid, gid): (u32, u32) = (fields[2].parse().unwrap(), fields[3].parse().unwrap());
    assert!(uid > 0 && uid < 1000, "a system user: {uid}");
    let serve = std::fs::metadata(root.path().join("var/lib/promdrop")).unwrap();
    assert_eq!(
        (serve.mode() & 0o7777, serve.uid(), serve.gid()),
        (0o2775, uid, gid)
    );
    let textfile = std::fs::metadata(root.path().join("var/lib/prometheus/node-exporter")).unwrap();
    assert_eq!(
        (textfile.mode() & 0o7777, textfile.uid(), textfile.gid()),
        (0o2775, 0, gid),
        "node_exporter's directory: group promdrop, group-writable, setgid"
    );
}

/// `src/musl_mem.c`, the memcpy, memmove, memset, memcmp and bcmp linked
/// into the static musl build, checked by `tests/musl_mem/check.c` against
/// byte-at-a-time definitions. Built here with the host's C compiler and the
/// functions renamed, since the test binaries themselves use the host's C
/// library.
#[test]
fn the_musl_builds_string_functions_match_byte_loops() {
    let Some(cc) = peer("cc") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("check");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/musl_mem/check.c");
    // The flags build.rs compiles it with.
    let out = Command::new(&cc)
        .args(["-O2", "-ffreestanding", "-fno-builtin"])
        .args(["-fno-tree-loop-distribute-patterns", "-o"])
        .arg(&exe)
        .args(["memcpy", "memmove", "memset", "memcmp", "bcmp"].map(|f| format!("-D{f}=pd_{f}")))
        .arg(&source)
        .output()
        .unwrap();
    assert!(out.status.success(), "{cc:?}: {out:?}");
    let out = Command::new(&exe).output().unwrap();
    assert!(
        out.status.success() && out.stdout == b"ok\n",
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

//! `--web.config.file`: basic auth (bcrypt) and TLS (rustls) for `serve`,
//! in the exporter toolkit's format, driven by curl and by Python's
//! prometheus_client with its `basic_auth_handler`, over a CA generated here.

use std::path::Path;
use std::process::{Command, Output};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};

use crate::serve::TestServer;
use crate::util::peer;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as
/// PEM files in `dir`.
fn make_certificates(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "promdrop test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issue = |name: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    };
    issue("server", ExtendedKeyUsagePurpose::ServerAuth);
    issue("client", ExtendedKeyUsagePurpose::ClientAuth);
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
}

/// A web configuration with user alice (password `secret`), TLS, and
/// `extra` lines under `tls_server_config`. Paths are relative to the file.
fn web_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let hash = bcrypt::hash("secret", 6).unwrap();
    let path = dir.join("web.yml");
    std::fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra}basic_auth_users:\n  alice: '{hash}'\n"
        ),
    )
    .unwrap();
    path
}

fn curl(curl: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(curl)
        .current_dir(dir)
        .args([
            "-s",
            "-o",
            "/dev/stderr",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .args(args)
        .output()
        .unwrap()
}

fn code(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn basic_auth_and_tls_work_with_curl_and_python() {
    let (Some(curl_bin), Some(python)) = (peer("curl"), peer("python3")) else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let config = web_config(certs.path(), "");
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        data.path(),
        &["--web.config.file", config.to_str().unwrap()],
    );
    let url = format!("https://{}", server.addr);
    let c = |args: &[&str]| curl(&curl_bin, certs.path(), args);
    let metrics = format!("{url}/metrics");
    // Accepted, with the CA and the password.
    let ok = c(&["--cacert", "ca.crt", "-u", "alice:secret", &metrics]);
    assert_eq!(code(&ok), "200", "{ok:?}");
    // Wrong password, unknown user, no credentials: 401, with the scheme.
    for user in [&["-u", "alice:wrong"][..], &["-u", "mallory:secret"], &[]] {
        let refused = c(&[&["--cacert", "ca.crt", "-i"], user, &[metrics.as_str()]].concat());
        assert_eq!(code(&refused), "401", "{user:?}: {refused:?}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("www-authenticate: Basic"),
            "{refused:?}"
        );
    }
    // Plain HTTP on the TLS port is refused: no HTTP answer at all.
    let plain = c(&[
        "-u",
        "alice:secret",
        &format!("http://{}/metrics", server.addr),
    ]);
    assert_eq!(code(&plain), "000", "{plain:?}");
    // A server certificate the client does not trust fails the handshake.
    let untrusted = c(&["-u", "alice:secret", &metrics]);
    assert_eq!(code(&untrusted), "000", "{untrusted:?}");
    // Python's client pushes through basic_auth_handler over TLS.
    let script = format!(
        r#"
import sys
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway
from prometheus_client.exposition import basic_auth_handler
def handler(password):
    def h(url, method, timeout, headers, data):
        return basic_auth_handler(url, method, timeout, headers, data, "alice", password)
    return h
r = CollectorRegistry()
Gauge("secured_push", "A push over TLS with basic auth.", registry=r).set(7)
push_to_gateway("{url}", job="secure", registry=r, handler=handler("secret"))
try:
    push_to_gateway("{url}", job="secure", registry=r, handler=handler("wrong"))
    sys.exit("a wrong password was accepted")
except Exception as e:
    assert "401" in str(e), e
"#
    );
    let out = Command::new(&python)
        .args(["-c", &script])
        .env("SSL_CERT_FILE", certs.path().join("ca.crt"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let scrape = c(&["--cacert", "ca.crt", "-u", "alice:secret", &metrics]);
    let scrape = String::from_utf8_lossy(&scrape.stderr);
    // Refusals are counted too: three scrapes and one push.
    for line in [
        "secured_push{instance=\"\",job=\"secure\"} 7",
        "promdrop_http_requests_total{code=\"401\",route=\"metrics\"} 3",
        "promdrop_http_requests_total{code=\"401\",route=\"push\"} 1",
        "promdrop_rejected_pushes_total{reason=\"unauthorized\"} 1",
    ] {
        assert!(scrape.contains(line), "{line} missing:\n{scrape}");
    }
}

#[test]
fn client_certificates_are_verified_against_the_client_ca() {
    let Some(curl_bin) = peer("curl") else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let config = web_config(
        certs.path(),
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    );
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        data.path(),
        &["--web.config.file", config.to_str().unwrap()],
    );
    let metrics = format!("https://{}/metrics", server.addr);
    let c = |args: &[&str]| curl(&curl_bin, certs.path(), args);
    let without = c(&["--cacert", "ca.crt", "-u", "alice:secret", &metrics]);
    assert_eq!(code(&without), "000", "{without:?}");
    let with = c(&[
        "--cacert",
        "ca.crt",
        "--cert",
        "client.crt",
        "--key",
        "client.key",
        "-u",
        "alice:secret",
        &metrics,
    ]);
    assert_eq!(code(&with), "200", "{with:?}");
}

#[test]
fn a_broken_web_config_stops_serve_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("web.yml");
    std::fs::write(&config, "basic_auth_users:\n  bob: plain\n").unwrap();
    let out = crate::util::promdrop()
        .arg("--dir")
        .arg(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--web.config.file"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("basic_auth_users.bob: not a bcrypt hash"),
        "{stderr}"
    );
}

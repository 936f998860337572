//! `--web.config.file`: the web configuration of Prometheus' exporter
//! toolkit (the Pushgateway's and node_exporter's `--web.config.file`), so
//! existing files work unchanged: `basic_auth_users` with bcrypt hashes, and
//! `tls_server_config` with a certificate, a key and an optional client CA.
//! Relative paths are relative to the file's directory, as in the toolkit.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};
use yaml_rust2::{Yaml, YamlLoader};

/// A web configuration file, read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebConfig {
    /// User names and their bcrypt hashes; empty means no authentication.
    pub users: BTreeMap<String, String>,
    /// TLS, if configured.
    pub tls: Option<TlsSettings>,
    /// Settings accepted for compatibility but without effect, for a note.
    pub ignored: Vec<String>,
}

/// `tls_server_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA certificates that client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    /// Whether client certificates are asked for and required.
    pub client_auth: ClientAuth,
    /// `min_version`: whether TLS 1.2 is allowed (else only 1.3).
    pub allow_tls12: bool,
}

/// `client_auth_type`, as far as it can be honoured with verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `NoClientCert` (the default).
    None,
    /// `VerifyClientCertIfGiven`.
    VerifyIfGiven,
    /// `RequireAndVerifyClientCert`.
    RequireAndVerify,
}

/// Why a web configuration file was refused.
#[derive(Debug, thiserror::Error)]
#[error("web configuration {path:?}: {reason}")]
pub struct WebConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, naming the key.
    pub reason: String,
}

impl WebConfig {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let fail = |reason: String| WebConfigError {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(fail)
    }

    /// Parses the text of a file whose relative paths are relative to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
        let mut config = Self::default();
        let Some(root) = docs.first() else {
            return Ok(config);
        };
        for (key, value) in mapping(root, "the file")? {
            match key.as_str() {
                "basic_auth_users" => {
                    for (user, hash) in mapping(value, "basic_auth_users")? {
                        let hash = string(hash, &format!("basic_auth_users.{user}"))?;
                        if hash.parse::<bcrypt::HashParts>().is_err() {
                            return Err(format!(
                                "basic_auth_users.{user}: not a bcrypt hash (expected $2y$… as htpasswd -B makes)"
                            ));
                        }
                        config.users.insert(user, hash);
                    }
                }
                "tls_server_config" => config.tls = tls(value, base, &mut config.ignored)?,
                "http_server_config" => {
                    for (key, _) in mapping(value, "http_server_config")? {
                        match key.as_str() {
                            "http2" | "headers" => {
                                config.ignored.push(format!("http_server_config.{key}"));
                            }
                            other => {
                                return Err(format!("http_server_config.{other}: unknown setting"));
                            }
                        }
                    }
                }
                other => return Err(format!("{other}: unknown setting")),
            }
        }
        Ok(config)
    }
}

fn tls(
    value: &Yaml,
    base: &Path,
    ignored: &mut Vec<String>,
) -> Result<Option<TlsSettings>, String> {
    let (mut cert, mut key, mut ca) = (None, None, None);
    let (mut client_auth, mut allow_tls12) = (ClientAuth::None, true);
    for (name, value) in mapping(value, "tls_server_config")? {
        let path = |v: &Yaml| -> Result<PathBuf, String> {
            Ok(base.join(string(v, &format!("tls_server_config.{name}"))?))
        };
        match name.as_str() {
            "cert_file" => cert = Some(path(value)?),
            "key_file" => key = Some(path(value)?),
            "client_ca_file" => ca = Some(path(value)?),
            "client_auth_type" => {
                client_auth = match string(value, "tls_server_config.client_auth_type")?.as_str() {
                    "" | "NoClientCert" => ClientAuth::None,
                    "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
                    "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
                    other => {
                        return Err(format!(
                            "tls_server_config.client_auth_type: {other:?} is not supported (client certificates are always verified): use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                        ));
                    }
                };
            }
            "min_version" => {
                allow_tls12 = match string(value, "tls_server_config.min_version")?.as_str() {
                    "TLS12" => true,
                    "TLS13" => false,
                    other => {
                        return Err(format!(
                            "tls_server_config.min_version: {other:?} is not supported: use TLS12 or TLS13"
                        ));
                    }
                };
            }
            "max_version"
            | "cipher_suites"
            | "curve_preferences"
            | "prefer_server_cipher_suites" => {
                ignored.push(format!("tls_server_config.{name}"));
            }
            other => return Err(format!("tls_server_config.{other}: unknown setting")),
        }
    }
    if cert.is_none() && key.is_none() {
        return Ok(None);
    }
    let (Some(cert_file), Some(key_file)) = (cert, key) else {
        return Err("tls_server_config: cert_file and key_file go together".into());
    };
    if client_auth != ClientAuth::None && ca.is_none() {
        return Err(
            "tls_server_config: client_auth_type verifies client certificates, which needs client_ca_file"
                .into(),
        );
    }
    Ok(Some(TlsSettings {
        cert_file,
        key_file,
        client_ca_file: ca,
        client_auth,
        allow_tls12,
    }))
}

fn mapping<'a>(value: &'a Yaml, what: &str) -> Result<Vec<(String, &'a Yaml)>, String> {
    match value {
        Yaml::Hash(map) => map.iter().map(|(k, v)| Ok((string(k, what)?, v))).collect(),
        Yaml::Null => Ok(Vec::new()),
        _ => Err(format!("{what}: expected a mapping")),
    }
}

fn string(value: &Yaml, what: &str) -> Result<String, String> {
    match value {
        Yaml::String(s) => Ok(s.clone()),
        Yaml::Null => Ok(String::new()),
        _ => Err(format!("{what}: expected a string")),
    }
}

/// Checks HTTP basic credentials against `basic_auth_users`.
///
/// bcrypt is slow on purpose, so a password once verified is remembered by
/// its SHA-256 (never in clear). An unknown user costs a bcrypt check of a
/// fixed hash, so that answers take as long whether or not the user exists.
#[derive(Debug)]
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// A hash of a random password, at the users' cost, checked for
    /// unknown users.
    decoy: String,
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

impl BasicAuth {
    /// `None` when the configuration names no users.
    pub fn new(users: BTreeMap<String, String>) -> Option<Self> {
        let cost = users
            .values()
            .find_map(|hash| hash.parse::<bcrypt::HashParts>().ok())?
            .get_cost();
        let random: [u8; 16] = rand_bytes();
        let decoy = bcrypt::hash(random, cost).ok()?;
        Some(Self {
            users,
            decoy,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Whether the `Authorization` header value grants access.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        let Some((user, password)) = authorization.and_then(decode_basic) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        let remembered = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&user)
            .is_some_and(|known| constant_time_eq(known, &digest));
        if remembered {
            return true;
        }
        let hash = self.users.get(&user).unwrap_or(&self.decoy);
        let ok = bcrypt::verify(&password, hash).unwrap_or(false) && self.users.contains_key(&user);
        if ok {
            self.verified
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(user, digest);
        }
        ok
    }
}

/// Bytes no one can guess, from the OS.
fn rand_bytes() -> [u8; 16] {
    let mut bytes = [0; 16];
    // getrandom through std's hasher keys would do too; /dev/urandom is
    // plain and always there on Linux.
    let _ = std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").expect("/dev/urandom"),
        &mut bytes,
    );
    bytes
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Basic base64(user:password)`.
fn decode_basic(header: &str) -> Option<(String, String)> {
    let (scheme, token) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, token.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{BasicAuth, ClientAuth, WebConfig};

    /// A hash of `secret`, at the lowest cost, for speed.
    fn alice() -> String {
        bcrypt::hash("secret", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1)
    }

    #[test]
    fn an_exporter_toolkit_file_reads_unchanged() {
        let alice = alice();
        let text = format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: /etc/k.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS13\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\nhttp_server_config:\n  http2: true\nbasic_auth_users:\n  alice: '{alice}'\n"
        );
        let config = WebConfig::parse(&text, Path::new("/etc/promdrop")).unwrap();
        assert_eq!(config.users["alice"], alice);
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert_file, Path::new("/etc/promdrop/server.crt"));
        assert_eq!(tls.key_file, Path::new("/etc/k.key"));
        assert_eq!(
            tls.client_ca_file.as_deref(),
            Some(Path::new("/etc/promdrop/ca.crt"))
        );
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerify);
        assert!(!tls.allow_tls12);
        assert_eq!(
            config.ignored,
            [
                "tls_server_config.cipher_suites",
                "http_server_config.http2"
            ]
        );
    }

    #[test]
    fn mistakes_are_named() {
        let base = Path::new("/");
        for (text, expected) in [
            (
                "basic_auth_users:\n  bob: plain\n",
                "basic_auth_users.bob: not a bcrypt hash",
            ),
            (
                "tls_server_config:\n  cert_file: a\n",
                "cert_file and key_file go together",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
                "needs client_ca_file",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
                "is not supported",
            ),
            ("basic_auth: {}\n", "basic_auth: unknown setting"),
            ("[1, 2]\n", "the file: expected a mapping"),
        ] {
            let err = WebConfig::parse(text, base).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        assert_eq!(WebConfig::parse("", base).unwrap(), WebConfig::default());
    }

    #[test]
    fn basic_auth_checks_bcrypt_and_remembers_only_good_passwords() {
        let users = [("alice".to_owned(), alice())].into();
        let auth = BasicAuth::new(users).unwrap();
        let header = |user: &str, password: &str| {
            format!(
                "Basic {}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{user}:{password}")
                )
            )
        };
        assert!(auth.allows(Some(&header("alice", "secret"))));
        assert!(auth.allows(Some(&header("alice", "secret"))), "remembered");
        assert!(!auth.allows(Some(&header("alice", "wrong"))));
        assert!(!auth.allows(Some(&header("mallory", "secret"))));
        assert!(!auth.allows(Some("Bearer x")));
        assert!(!auth.allows(None));
        assert!(BasicAuth::new(std::collections::BTreeMap::new()).is_none());
    }
}

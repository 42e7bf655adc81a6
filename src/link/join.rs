//! The site's join client and the identity it keeps.
//!
//! Files, in `DATA/portal/` (mode 0700): `site.key` (the site's ECDSA P-256 key, PKCS#8 PEM,
//! mode 0600, made before the request so a retry after a lost answer presents the same key and
//! the portal answers the same way), `site.pem` and `ca.pem` (what the portal signed and its CA)
//! and last `identity.json` ([`Identity`]): a site is joined once that file exists.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Serialize};

use super::token::{BadToken, JoinToken, sha256_hex};
use super::{JoinRequest, JoinResponse, WhoAmI};

/// Why a join did not happen. Nothing is written but the key when a join fails.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The token is not a join token.
    #[error("{0}")]
    BadToken(#[from] BadToken),
    /// The portal URL is not `https://HOST[:PORT]`.
    #[error("the portal URL must be https://HOST[:PORT]: {0}")]
    BadUrl(String),
    /// This site already joined a portal.
    #[error("this site already joined the portal at {0}")]
    AlreadyJoined(String),
    /// The portal's certificate chain does not hold the CA the token pins: a token of another
    /// portal, or something in between.
    #[error("the portal's CA is not the one the join token names (a token of another portal, or an interception); nothing was sent")]
    WrongPortal,
    /// The portal could not be reached, or its TLS handshake failed.
    #[error("the portal could not be reached: {0}")]
    Unreachable(String),
    /// The portal refused the join.
    #[error("the portal refused the join: {code}: {message}")]
    Refused {
        /// The portal's HTTP status.
        status: u16,
        /// The portal's error code (`token_used`, `token_expired`, `token_invalid`, …).
        code: String,
        /// The portal's message.
        message: String,
    },
    /// The portal's answer was not a join response.
    #[error("the portal's answer was not understood: {0}")]
    BadAnswer(String),
    /// A key or request could not be made.
    #[error("certificate: {0}")]
    Cert(String),
    /// Reading or writing the identity files.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> JoinError {
    let what = what.into();
    move |source| JoinError::Io { what, source }
}

/// What a joined site keeps of its portal (`DATA/portal/identity.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Identity {
    /// The portal's link URL (`https://HOST:PORT`).
    pub portal: String,
    /// This site's name in the portal.
    pub site: String,
    /// When the site joined (RFC 3339).
    pub joined_at: String,
    /// End of the client certificate's validity (RFC 3339).
    pub not_after: String,
    /// When the current certificate was received, if it was renewed (RFC 3339); the first one
    /// dates from `joined_at`. Renewal is due at 2/3 of the span from then to `not_after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed_at: Option<String>,
}

/// The identity of the site whose portal directory is `dir`, if it joined.
pub fn identity(dir: &Path) -> Result<Option<Identity>, JoinError> {
    match std::fs::read(dir.join("identity.json")) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| JoinError::Io { what: "reading identity.json".into(), source: std::io::Error::other(e) }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("reading identity.json")(e)),
    }
}

/// Check `url` is `https://HOST[:PORT]` (nothing after the authority) and return it without a
/// trailing slash.
pub fn check_url(url: &str) -> Result<String, JoinError> {
    let rest = url.strip_prefix("https://").ok_or_else(|| JoinError::BadUrl(url.into()))?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(JoinError::BadUrl(url.into()));
    }
    Ok(format!("https://{authority}"))
}

/// Join the portal at `url` with `token`, keeping the identity in `dir`. Checks the token's form
/// and the URL before any network traffic, and the portal's CA before sending anything; ends by
/// calling the portal over mutual TLS with the new certificate. Errors: [`JoinError`].
pub async fn join(dir: &Path, url: &str, token: &str) -> Result<Identity, JoinError> {
    let token = JoinToken::parse(token)?;
    let url = check_url(url)?;
    if let Some(id) = identity(dir)? {
        return Err(JoinError::AlreadyJoined(id.portal));
    }
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let _ = std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    let csr = site_csr(dir)?;
    let pin = Arc::new(PinnedCa::new(&token.ca_sha256));
    let answer: JoinResponse = post(pin, None, &format!("{url}/v1/link/join"), &JoinRequest { token: token.to_text(), csr }).await?;
    let write = |name: &str, text: &str| crate::state::files::write_secret_file(&dir.join(name), text).map_err(io(format!("writing {name}")));
    write("site.pem", &answer.certificate)?;
    write("ca.pem", &answer.ca)?;
    let me = whoami_at(&url, dir).await?;
    if me.site != answer.site {
        return Err(JoinError::BadAnswer(format!("the certificate names site {:?}, the answer {:?}", me.site, answer.site)));
    }
    let id = Identity { portal: url, site: answer.site, joined_at: chrono::Utc::now().to_rfc3339(), not_after: answer.not_after, renewed_at: None };
    let json = serde_json::to_string_pretty(&id).map_err(|e| JoinError::Cert(e.to_string()))?;
    write("identity.json", &json)?;
    Ok(id)
}

/// Ask the portal of the identity in `dir` who this site is, over mutual TLS with `site.pem`.
pub async fn whoami(dir: &Path) -> Result<WhoAmI, JoinError> {
    let id = identity(dir)?.ok_or_else(|| JoinError::Io { what: "reading identity.json".into(), source: std::io::ErrorKind::NotFound.into() })?;
    whoami_at(&id.portal, dir).await
}

/// The TLS client configuration of a joined site: it trusts only the portal CA in `dir/ca.pem`
/// and authenticates with `site.pem` and `site.key`.
pub fn pinned_client_config(dir: &Path) -> Result<rustls::ClientConfig, JoinError> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).map_err(io(format!("reading {name}")));
    let pin = Arc::new(PinnedCa::new(&sha256_hex(&pem_der(&read("ca.pem")?)?)));
    client_config(pin, Some((read("site.pem")?, read("site.key")?)))
}

async fn whoami_at(url: &str, dir: &Path) -> Result<WhoAmI, JoinError> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).map_err(io(format!("reading {name}")));
    let ca = read("ca.pem")?;
    let pin = Arc::new(PinnedCa::new(&sha256_hex(&pem_der(&ca)?)));
    let client = http_client(pin.clone(), Some((read("site.pem")?, read("site.key")?)))?;
    let resp = client.get(format!("{url}/v1/link/whoami")).send().await;
    let resp = resp.map_err(|e| if pin.mismatched() { JoinError::WrongPortal } else { JoinError::Unreachable(error_chain(&e)) })?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| JoinError::Unreachable(error_chain(&e)))?;
    if !(200..300).contains(&status) {
        return Err(refusal(status, &body));
    }
    serde_json::from_slice(&body).map_err(|e| JoinError::BadAnswer(e.to_string()))
}

/// A certificate signing request (PEM) for the site key in `dir`, made when missing.
pub(super) fn site_csr(dir: &Path) -> Result<String, JoinError> {
    let key = site_key(&dir.join("site.key"))?;
    rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.serialize_request(&key))
        .and_then(|r| r.pem())
        .map_err(|e| JoinError::Cert(e.to_string()))
}

/// POST `body` as JSON to `url`, trusting only `pin` and offering `identity` (certificate and
/// key PEM) when given, and read a 2xx answer as `T`. Errors: `WrongPortal` when the pin did not
/// match, `Unreachable`, the portal's refusal, or `BadAnswer`.
pub(super) async fn post<T: serde::de::DeserializeOwned>(
    pin: Arc<PinnedCa>,
    identity: Option<(String, String)>,
    url: &str,
    body: &impl Serialize,
) -> Result<T, JoinError> {
    let client = http_client(pin.clone(), identity)?;
    let sent = client.post(url).json(body).send().await;
    let resp = sent.map_err(|e| if pin.mismatched() { JoinError::WrongPortal } else { JoinError::Unreachable(error_chain(&e)) })?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| JoinError::Unreachable(error_chain(&e)))?;
    if !(200..300).contains(&status) {
        return Err(refusal(status, &bytes));
    }
    serde_json::from_slice(&bytes).map_err(|e| JoinError::BadAnswer(e.to_string()))
}

/// The site key in `path`, made (and written, mode 0600) when missing.
fn site_key(path: &PathBuf) -> Result<rcgen::KeyPair, JoinError> {
    if let Ok(pem) = std::fs::read_to_string(path) {
        return rcgen::KeyPair::from_pem(&pem).map_err(|e| JoinError::Cert(format!("{}: {e}", path.display())));
    }
    let key = rcgen::KeyPair::generate().map_err(|e| JoinError::Cert(e.to_string()))?;
    crate::state::files::write_secret_file(path, &key.serialize_pem()).map_err(io("writing site.key"))?;
    Ok(key)
}

pub(super) fn pem_der(pem: &str) -> Result<Vec<u8>, JoinError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).map(|c| c.to_vec()).map_err(|e| JoinError::Cert(format!("ca.pem: {e}")))
}

fn refusal(status: u16, body: &[u8]) -> JoinError {
    #[derive(Deserialize)]
    struct Body {
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        code: String,
        message: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => JoinError::Refused { status, code: b.error.code, message: b.error.message },
        Err(_) => JoinError::Refused { status, code: format!("http_{status}"), message: String::from_utf8_lossy(body).chars().take(200).collect() },
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// An HTTPS client that trusts only the pinned CA, offering `identity` (certificate and key PEM)
/// when given. Connects within 10 s, answers within 30 s.
fn http_client(pin: Arc<PinnedCa>, identity: Option<(String, String)>) -> Result<reqwest::Client, JoinError> {
    let cfg = client_config(pin, identity)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .map_err(|e| JoinError::Cert(e.to_string()))
}

/// A rustls client configuration that trusts only the pinned CA, offering `identity`
/// (certificate and key PEM) when given.
fn client_config(pin: Arc<PinnedCa>, identity: Option<(String, String)>) -> Result<rustls::ClientConfig, JoinError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| JoinError::Cert(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(pin);
    let cfg = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            use rustls::pki_types::pem::PemObject;
            let chain =
                CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>().map_err(|e| JoinError::Cert(format!("site.pem: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| JoinError::Cert(format!("site.key: {e}")))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| JoinError::Cert(e.to_string()))?
        }
    };
    Ok(cfg)
}

/// A server certificate verifier that trusts one CA, named by the SHA-256 of its DER: the
/// server must send that CA in its chain, and its own certificate must verify against it for
/// the name dialled (WebPKI rules, rustls' verifier). Records a mismatch so the caller can say
/// "wrong portal" rather than "TLS failed".
#[derive(Debug)]
pub(super) struct PinnedCa {
    sha256: String,
    mismatch: Mutex<bool>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl PinnedCa {
    pub(super) fn new(sha256: &str) -> PinnedCa {
        PinnedCa { sha256: sha256.to_string(), mismatch: Mutex::new(false), provider: Arc::new(rustls::crypto::ring::default_provider()) }
    }

    pub(super) fn mismatched(&self) -> bool {
        self.mismatch.lock().map(|m| *m).unwrap_or(true)
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates.iter().find(|c| super::token::same_secret(&sha256_hex(c), &self.sha256)) else {
            if let Ok(mut m) = self.mismatch.lock() {
                *m = true;
            }
            return Err(rustls::Error::General("the server's chain does not hold the pinned CA".into()));
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portal_urls_are_https_authorities() {
        assert_eq!(check_url("https://portal.example:8444/").unwrap(), "https://portal.example:8444");
        assert_eq!(check_url("https://127.0.0.1:1").unwrap(), "https://127.0.0.1:1");
        for bad in ["http://p:1", "https://", "https://p/x", "https://u@p", "p:1", "https://p?x"] {
            assert!(matches!(check_url(bad), Err(JoinError::BadUrl(_))), "{bad}");
        }
    }
}

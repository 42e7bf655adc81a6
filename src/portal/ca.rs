//! The portal's certificate authority (rcgen): it signs the client certificate of every site
//! that joins and the server certificate of the link listener, so sites trust exactly this CA
//! (pinned by the fingerprint in their join token) and the portal trusts exactly its sites.
//!
//! Files, in `DATA/ca/`: `ca.key` (PKCS#8 PEM, mode 0600) and `ca.pem`, made at first start.
//! Certificates are ECDSA P-256 with SHA-256 (rcgen's default key pair, ring).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
    SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::link::token::sha256_hex;
use crate::state::files::write_secret_file;

/// Errors of the CA.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Reading or writing the CA's files.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// A certificate or key could not be made or parsed.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// The certificate signing request is malformed, or its signature does not verify.
    #[error("the certificate signing request is not valid: {0}")]
    BadCsr(String),
    /// The TLS configuration could not be built.
    #[error("TLS: {0}")]
    Tls(String),
}

/// A certificate the CA issued to a site.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub pem: String,
    /// SHA-256 of its DER, lowercase hex: how the link listener recognises the site.
    pub sha256: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the requesting key's SubjectPublicKeyInfo (DER), lowercase hex: a retry of the
    /// same join with the same key is recognised by it.
    pub key_sha256: String,
}

/// The portal's CA, loaded in memory.
pub struct PortalCa {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CaError {
    let what = what.into();
    move |source| CaError::Io { what, source }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn random_serial() -> SerialNumber {
    let mut b: [u8; 16] = rand::random();
    b[0] &= 0x7f; // positive (RFC 5280 §4.1.2.2), 127 random bits
    SerialNumber::from_slice(&b)
}

impl PortalCa {
    /// Load the CA from `dir` (`ca.key`, `ca.pem`), making both at first start: a CA named
    /// `cloudlet portal CA <8 hex digits of its key's digest>`, valid for 10 years. Errors:
    /// [`CaError`].
    pub fn load_or_create(dir: &Path) -> Result<PortalCa, CaError> {
        let (key_path, pem_path): (PathBuf, PathBuf) = (dir.join("ca.key"), dir.join("ca.pem"));
        if key_path.exists() && pem_path.exists() {
            let key = KeyPair::from_pem(&std::fs::read_to_string(&key_path).map_err(io("reading ca.key"))?)?;
            let pem = std::fs::read_to_string(&pem_path).map_err(io("reading ca.pem"))?;
            let der = pem_to_der(&pem)?;
            return Ok(PortalCa { issuer: Issuer::new(ca_params(ca_name(&key)), key), der, pem });
        }
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let key = KeyPair::generate()?;
        let mut params = ca_params(ca_name(&key));
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + Duration::from_secs(10 * 365 * 86_400)).into();
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        // The key first: a crash between the two leaves no certificate, and the next start makes
        // a new pair (no token can name a CA whose certificate was never written).
        write_secret_file(&key_path, &key.serialize_pem()).map_err(io("writing ca.key"))?;
        write_secret_file(&pem_path, &cert.pem()).map_err(io("writing ca.pem"))?;
        Ok(PortalCa { der: cert.der().clone(), pem: cert.pem(), issuer: Issuer::new(params, key) })
    }

    /// SHA-256 of the CA certificate's DER, lowercase hex: what join tokens pin.
    pub fn fingerprint(&self) -> String {
        sha256_hex(&self.der)
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Sign a client certificate for `site` from the PEM certificate signing request `csr`
    /// (PKCS#10, RFC 2986; its signature is verified, [`super::csr::verify`]). Only the CSR's public key is used: the
    /// subject is `CN=<site>, O=cloudlet site`, the usage is TLS client authentication, and it
    /// is valid for `lifetime`. Errors: [`CaError::BadCsr`].
    pub fn issue_site_cert(&self, csr: &str, site: &str, lifetime: Duration) -> Result<Issued, CaError> {
        let key = super::csr::verify(csr).map_err(CaError::BadCsr)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, site);
        dn.push(DnType::OrganizationName, "cloudlet site");
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(format!("urn:cloudlet:site:{site}").try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(300)).into();
        params.not_after = (now + lifetime).into();
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            pem: cert.pem(),
            sha256: sha256_hex(cert.der()),
            serial: hex::encode(serial.as_ref()),
            not_after: unix(now + lifetime),
            key_sha256: sha256_hex(&key.spki),
        })
    }

    /// A server certificate for `names` (DNS names or IP addresses) signed by this CA, valid a
    /// year, with its key: (chain of the certificate and the CA, key).
    fn server_cert(&self, names: &[String], cn: &str) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(300)).into();
        params.not_after = (now + Duration::from_secs(365 * 86_400)).into();
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone(), self.der.clone()], key_der))
    }

    /// The link listener's TLS configuration: a server certificate for `names` signed by this
    /// CA, made anew at each start, and client certificates verified against this CA when a
    /// client offers one (joining needs none; the link needs one).
    pub fn link_server_config(&self, names: &[String]) -> Result<rustls::ServerConfig, CaError> {
        let (chain, key) = self.server_cert(names, "cloudlet portal link")?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).map_err(|e| CaError::Tls(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| CaError::Tls(e.to_string()))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CaError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| CaError::Tls(e.to_string()))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), crate::link::session::LINK_ALPN.to_vec()];
        Ok(cfg)
    }

    /// The admin API's TLS configuration (`--https`): a server certificate for `names` signed
    /// by this CA (clients trust `DATA/ca/ca.pem`), no client certificates.
    pub fn admin_server_config(&self, names: &[String]) -> Result<rustls::ServerConfig, CaError> {
        let (chain, key) = self.server_cert(names, "cloudlet portal")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CaError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| CaError::Tls(e.to_string()))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// The CA's name, made from its key (so it is the same when the CA is loaded again, without
/// parsing its certificate).
fn ca_name(key: &KeyPair) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("cloudlet portal CA {}", &sha256_hex(&key.subject_public_key_info())[..8]));
    dn
}

/// The parameters the CA signs with (its name, CA constraints and usages).
fn ca_params(dn: DistinguishedName) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

fn pem_to_der(pem: &str) -> Result<CertificateDer<'static>, CaError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| CaError::Tls(format!("ca.pem: {e}")))
}

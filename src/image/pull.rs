//! Pulling images from a registry (OCI distribution / Docker Registry v2 API) into the blob
//! store, with `oci-client`. The manifest (an image index or Docker manifest list resolves to
//! linux/amd64), the config and every layer enter the store verified by digest; blobs the store
//! already has are not downloaded again. Layers stream to disk on a blocking thread, so a large
//! layer is never held in memory.
//!
//! Every connection of a pull (the registry, its redirects, its token realm) goes through the
//! pull's egress proxy ([`super::proxy`]) and so only to addresses the site's egress policy
//! permits. What reaches the tenant is a fixed text ([`REGISTRY_UNREACHABLE`], or which step
//! was refused or not found), never a remote body; the details are logged at debug level.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    IMAGE_CONFIG_MEDIA_TYPE, IMAGE_DOCKER_CONFIG_MEDIA_TYPE, IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE, IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use super::ImageError;
use super::layout::Image;
use super::store::{BlobStore, Digest, Ingest};
use crate::net::egress::EgressPolicy;

/// The text of every network or server failure of a pull: the same for a refused address, a
/// closed port, a timeout or a server error, and without anything the remote side sent.
pub const REGISTRY_UNREACHABLE: &str = "the registry could not be reached or refused the request";

/// Largest manifest, index or config accepted, in bytes (small JSON documents).
const MAX_JSON: u64 = 4 << 20;
/// The manifest media types asked for.
const ACCEPT: &[&str] = &[OCI_IMAGE_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, IMAGE_MANIFEST_LIST_MEDIA_TYPE];

/// How to reach a registry and what to accept from it.
#[derive(Clone)]
pub struct PullOptions {
    /// Plain HTTP instead of HTTPS for the reference's registry (a local or test registry).
    pub insecure: bool,
    /// User name for HTTP basic auth (or for a token service); anonymous when `None`.
    pub username: Option<String>,
    /// The password for `username`; never logged.
    pub password: Option<String>,
    /// Largest layer blob accepted, in bytes ([`ImageError::TooLarge`] beyond).
    pub max_layer_bytes: u64,
    /// When given, a blob the (shared) store holds counts as present only if it is in this set,
    /// the blobs of the pulling project's own images. Others are downloaded again, so a tenant
    /// gets a blob only from a registry that serves it to them, never by naming another
    /// project's private digest in a manifest.
    pub known: Option<std::collections::BTreeSet<Digest>>,
    /// Where the pull may connect: the registry, redirects and token realms are all checked
    /// after resolution (the daemon passes the site's, `net::egress::site_policy`).
    pub egress: Arc<EgressPolicy>,
}

impl Default for PullOptions {
    /// HTTPS, anonymous, layers up to 16 GiB, the strict egress policy (no exceptions).
    fn default() -> Self {
        PullOptions { insecure: false, username: None, password: None, max_layer_bytes: 16 << 30, known: None, egress: Arc::default() }
    }
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("insecure", &self.insecure)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("max_layer_bytes", &self.max_layer_bytes)
            .field("egress", &self.egress)
            .finish()
    }
}

/// Parse an image reference (`[registry/]repository[:tag][@sha256:<hex>]`; Docker Hub and
/// `latest` when left out). Digests other than sha256 are refused ([`ImageError::BadReference`]).
pub fn parse_reference(s: &str) -> Result<Reference, ImageError> {
    let r: Reference = s.parse().map_err(|e| ImageError::BadReference(format!("{s:?}: {e}")))?;
    if let Some(d) = r.digest()
        && Digest::parse(d).is_err()
    {
        return Err(ImageError::BadReference(format!("{s:?}: only sha256:<64 lowercase hex> digests are supported")));
    }
    Ok(r)
}

fn registry_auth(opts: &PullOptions) -> Result<RegistryAuth, ImageError> {
    match (&opts.username, &opts.password) {
        (None, None) => Ok(RegistryAuth::Anonymous),
        (Some(u), Some(p)) => Ok(RegistryAuth::Basic(u.clone(), p.clone())),
        _ => Err(ImageError::Auth("a user name and a password go together".into())),
    }
}

/// A network or server failure: [`REGISTRY_UNREACHABLE`] for the tenant, the detail at debug.
fn unreachable(what: &str, detail: impl std::fmt::Display) -> ImageError {
    tracing::debug!(step = what, error = %detail, "registry pull failed");
    ImageError::Registry(REGISTRY_UNREACHABLE.into())
}

/// A document from the registry that does not parse: which one, not what it said.
fn bad_document(what: &str, detail: impl std::fmt::Display) -> ImageError {
    tracing::debug!(step = what, error = %detail, "registry answer does not parse");
    ImageError::Registry(format!("{what}: {BAD_DOCUMENT}"))
}

/// The end of the text of a registry document that does not parse.
const BAD_DOCUMENT: &str = "the registry's answer is not a valid image document";

/// The text an image's status shows for a failed pull: the error's own (fixed texts for
/// anything from the network), and [`REGISTRY_UNREACHABLE`] for any other registry error.
pub fn status_text(e: &ImageError) -> String {
    match e {
        ImageError::Registry(m) if m != REGISTRY_UNREACHABLE && !m.ends_with(BAD_DOCUMENT) => format!("registry error: {REGISTRY_UNREACHABLE}"),
        ImageError::Io { .. } => "the pull failed on this host".into(),
        e => e.to_string(),
    }
}

/// Sort `oci-client`'s errors into the engine's: 401/403 are [`ImageError::Auth`], unknown
/// names, tags and blobs [`ImageError::NotFound`], the rest [`ImageError::Registry`]. None
/// carries what the registry (or whatever answered) said.
fn from_oci(what: &str, e: OciDistributionError) -> ImageError {
    use OciDistributionError as E;
    let codes = |want: &[OciErrorCode]| matches!(&e, E::RegistryError { envelope, .. } if envelope.errors.iter().any(|x| want.contains(&x.code)));
    let auth = matches!(e, E::UnauthorizedError { .. } | E::AuthenticationFailure(_) | E::ServerError { code: 401 | 403, .. })
        || codes(&[OciErrorCode::Unauthorized, OciErrorCode::Denied]);
    let missing = matches!(e, E::ServerError { code: 404, .. })
        || codes(&[OciErrorCode::ManifestUnknown, OciErrorCode::NameUnknown, OciErrorCode::BlobUnknown, OciErrorCode::NotFound]);
    match e {
        _ if auth => {
            tracing::debug!(step = what, error = %e, "registry refused the pull");
            ImageError::Auth(what.to_string())
        }
        _ if missing => {
            tracing::debug!(step = what, error = %e, "registry has no such thing");
            ImageError::NotFound(what.to_string())
        }
        E::DigestError(DigestError::VerificationError { expected, actual }) => ImageError::DigestMismatch { expected, got: actual },
        e => unreachable(what, e),
    }
}

/// A download's error: a digest verification failure of `oci-client`'s stream, or the network's.
fn stream_err(d: &Digest, e: std::io::Error) -> ImageError {
    match e.get_ref().and_then(|i| i.downcast_ref::<DigestError>()) {
        Some(DigestError::VerificationError { expected, actual }) => ImageError::DigestMismatch { expected: expected.clone(), got: actual.clone() },
        _ => unreachable(&format!("downloading blob {d}"), e),
    }
}

/// Whether a manifest document is an index (an OCI image index or a Docker manifest list).
fn is_index(bytes: &[u8]) -> Result<bool, ImageError> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    let p: Probe = serde_json::from_slice(bytes).map_err(|e| bad_document("manifest", e))?;
    match p.media_type.as_deref() {
        Some(OCI_IMAGE_INDEX_MEDIA_TYPE | IMAGE_MANIFEST_LIST_MEDIA_TYPE) => Ok(true),
        Some(OCI_IMAGE_MEDIA_TYPE | IMAGE_MANIFEST_MEDIA_TYPE) => Ok(false),
        None => Ok(p.manifests.is_some()),
        Some(other) => Err(ImageError::Unsupported(format!("manifest media type {other}"))),
    }
}

/// Whether a layer media type is gzip-compressed; other types than (gzip) tar are refused.
fn layer_gzip(m: &MediaType) -> Result<bool, ImageError> {
    match m {
        MediaType::ImageLayer => Ok(false),
        MediaType::ImageLayerGzip => Ok(true),
        MediaType::Other(s) if s == IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE => Ok(true),
        other => Err(ImageError::Unsupported(format!("layer media type {other}"))),
    }
}

/// Fetch the manifest or index `r` names and store its bytes as fetched (verified against the
/// reference's digest, if it has one). Returns the bytes and their digest.
async fn fetch_manifest(client: &Client, store: &Ingest, r: &Reference, auth: &RegistryAuth) -> Result<(Bytes, Digest), ImageError> {
    let (bytes, _) = client.pull_manifest_raw(r, auth, ACCEPT).await.map_err(|e| from_oci(&format!("manifest {r}"), e))?;
    let want = r.digest().map(Digest::parse).transpose()?;
    let (digest, _) = store.put(&mut &bytes[..], want.as_ref(), MAX_JSON)?;
    Ok((bytes, digest))
}

/// Byte counts for the progress callback, over all blobs of a pull.
struct Progress<'a> {
    report: &'a (dyn Fn(u64, u64) + Send + Sync),
    done: u64,
    total: u64,
}

/// Download one blob into the store, verified by digest. The network side runs here; the disk
/// side (writes, fsync, rename) on a blocking thread, fed through a bounded channel.
async fn fetch_blob(client: &Client, store: &Ingest, r: &Reference, d: &Digest, max: u64, p: &mut Progress<'_>) -> Result<(), ImageError> {
    let mut stream = client.pull_blob_stream(r, d.as_str()).await.map_err(|e| from_oci(&format!("blob {d}"), e))?;
    let mut w = store.writer(max)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<Bytes>>(16);
    let want = d.clone();
    let disk = tokio::task::spawn_blocking(move || {
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                Some(chunk) => w.write(&chunk)?,
                None => return w.commit(Some(&want)).map(|_| ()),
            }
        }
        // The download failed: dropping the writer removes the partial blob.
        Err(ImageError::Registry(format!("download of {want} abandoned")))
    });
    let net: Result<(), ImageError> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| stream_err(d, e))?;
            let n = chunk.len() as u64;
            if tx.send(Some(chunk)).await.is_err() {
                return Ok(()); // The writer failed; its error is the one to report.
            }
            p.done += n;
            (p.report)(p.done, p.total);
        }
        let _ = tx.send(None).await;
        Ok(())
    }
    .await;
    drop(tx);
    let disk = disk.await.map_err(|e| ImageError::Registry(format!("writing blob {d}: {e}")))?;
    net.and(disk)
}

/// Pull `reference` (`[registry/]repository[:tag][@sha256:<hex>]`) into `store`. An index or
/// manifest list resolves to linux/amd64; the manifest's bytes, the config and the layers are
/// stored verified, skipping blobs already there. `progress(done, total)` reports bytes
/// downloaded over all blobs still missing (total 0 when nothing is). Returns the image and the
/// resolved reference `registry/repository@sha256:<hex>`, pinned to the digest the reference
/// named (an index's own digest for a multi-platform image, as `docker pull` reports).
pub async fn pull(store: &BlobStore, reference: &str, opts: &PullOptions, progress: &(dyn Fn(u64, u64) + Send + Sync)) -> Result<(Image, String), ImageError> {
    // Every blob this pull finds or writes stays pinned against garbage collection until it
    // returns; the image's `Pulling` phase keeps them from then until its row names them.
    let ingest = store.ingest();
    let store = &ingest;
    let r = parse_reference(reference)?;
    let auth = registry_auth(opts)?;
    // reqwest is built without a crypto provider; the process default is ring (as in main).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if opts.insecure { ClientProtocol::HttpsExcept(vec![r.resolve_registry().to_string()]) } else { ClientProtocol::Https };
    // Every connection of the client goes through the egress proxy, which lives as long as the pull.
    let proxy = super::proxy::EgressProxy::start(opts.egress.clone()).await.map_err(|e| unreachable("starting the egress proxy", e))?;
    let config = ClientConfig {
        protocol,
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(30)),
        read_timeout: Some(Duration::from_secs(120)),
        http_proxy: Some(proxy.url().to_string()),
        https_proxy: Some(proxy.url().to_string()),
        no_proxy: None,
        ..Default::default()
    };
    let client = Client::try_from(config).map_err(|e| unreachable("creating the registry client", e))?;
    tracing::info!(reference = %r, insecure = opts.insecure, authenticated = opts.username.is_some(), "pulling an image");

    let (mut bytes, top) = fetch_manifest(&client, store, &r, &auth).await?;
    let mut digest = top.clone();
    if is_index(&bytes)? {
        let index = ImageIndex::from_reader(&bytes[..]).map_err(|e| bad_document(&format!("index {r}"), e))?;
        let entry = index
            .manifests()
            .iter()
            .find(|m| m.platform().as_ref().is_some_and(|p| p.os().to_string() == "linux" && p.architecture().to_string() == "amd64"))
            .ok_or_else(|| ImageError::NotFound(format!("{r}: the index has no linux/amd64 image")))?;
        (bytes, digest) = fetch_manifest(&client, store, &r.clone_with_digest(entry.digest().to_string()), &auth).await?;
        if is_index(&bytes)? {
            return Err(ImageError::Unsupported(format!("{r}: an index inside an index")));
        }
    }
    let manifest = ImageManifest::from_reader(&bytes[..]).map_err(|e| bad_document(&format!("manifest {r}"), e))?;
    let cfg = manifest.config();
    let config_type = cfg.media_type().to_string();
    if config_type != IMAGE_CONFIG_MEDIA_TYPE && config_type != IMAGE_DOCKER_CONFIG_MEDIA_TYPE {
        return Err(ImageError::Unsupported(format!("config media type {config_type} (not a container image)")));
    }
    let config_digest = Digest::parse(cfg.digest().as_ref())?;
    let mut layers = Vec::new();
    for l in manifest.layers() {
        layers.push((Digest::parse(l.digest().as_ref())?, layer_gzip(l.media_type())?));
    }

    // What is missing, each blob once, with its declared size and limit.
    let mut todo: Vec<(Digest, u64, u64)> = Vec::new();
    let wanted = std::iter::once((&config_digest, cfg.size(), MAX_JSON))
        .chain(manifest.layers().iter().zip(&layers).map(|(l, (d, _))| (d, l.size(), opts.max_layer_bytes)));
    for (d, size, max) in wanted {
        if size > max {
            return Err(ImageError::TooLarge { limit: max });
        }
        let present = store.has(d) && opts.known.as_ref().is_none_or(|k| k.contains(d));
        if !present && !todo.iter().any(|t| t.0 == *d) {
            todo.push((d.clone(), size, max));
        }
    }
    let mut p = Progress { report: progress, done: 0, total: todo.iter().map(|t| t.1).sum() };
    (p.report)(0, p.total);
    for (d, _, max) in &todo {
        tracing::debug!(blob = %d, "downloading");
        fetch_blob(&client, store, &r, d, *max, &mut p).await?;
    }

    let config = ImageConfiguration::from_reader(store.open_blob(&config_digest)?).map_err(|e| bad_document(&format!("config {r}"), e))?;
    let resolved = r.clone_with_digest(top.to_string()).whole();
    tracing::info!(reference = %resolved, manifest = %digest, blobs = todo.len(), bytes = p.done, "pulled an image");
    drop(proxy);
    Ok((Image { manifest: digest, config, layers }, resolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_references_are_the_callers_error() {
        let short = "busybox@sha256:abcd";
        let sha512 = format!("busybox@sha512:{}", "a".repeat(128));
        let upper = format!("busybox@sha256:{}", "A".repeat(64));
        for bad in ["", "Busybox:latest", "busybox:", "busybox:bad tag", "-x/y", "a//b", short, &sha512, &upper] {
            assert!(matches!(parse_reference(bad), Err(ImageError::BadReference(_))), "{bad:?}");
        }
        let r = parse_reference("127.0.0.1:5000/team/busybox").unwrap();
        assert_eq!((r.registry(), r.repository(), r.tag()), ("127.0.0.1:5000", "team/busybox", Some("latest")));
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(parse_reference(&format!("busybox@{d}")).unwrap().digest(), Some(d.as_str()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_reference_or_half_credentials_fail_before_any_network() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let opts = PullOptions { insecure: true, ..Default::default() };
        assert!(matches!(pull(&store, "NOT a reference", &opts, &|_, _| {}).await, Err(ImageError::BadReference(_))));
        let half = PullOptions { username: Some("u".into()), ..opts.clone() };
        assert!(matches!(pull(&store, "127.0.0.1:1/x", &half, &|_, _| {}).await, Err(ImageError::Auth(_))));
        let secret = PullOptions { password: Some("hunter2".into()), ..opts };
        assert!(!format!("{secret:?}").contains("hunter2"));
        // Spawnable on the daemon's multi-thread runtime.
        let store = std::sync::Arc::new(store);
        let s = store.clone();
        let task = tokio::spawn(async move { pull(&s, "127.0.0.1:1/x:1", &PullOptions::default(), &|_, _| {}).await.map(|_| ()) });
        assert!(matches!(task.await.unwrap(), Err(ImageError::Registry(_))));
    }

    #[test]
    fn registry_errors_are_sorted() {
        let auth = from_oci("m", OciDistributionError::UnauthorizedError { url: "u".into() });
        assert!(matches!(auth, ImageError::Auth(_)));
        let e = OciDistributionError::ServerError { code: 404, url: "u".into(), message: String::new() };
        assert!(matches!(from_oci("m", e), ImageError::NotFound(_)));
        let env = serde_json::from_str(r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#).unwrap();
        let e = OciDistributionError::RegistryError { envelope: env, url: "u".into() };
        assert!(matches!(from_oci("m", e), ImageError::NotFound(_)));
        let e = OciDistributionError::ServerError { code: 500, url: "u".into(), message: String::new() };
        assert!(matches!(from_oci("m", e), ImageError::Registry(_)));
    }

    #[test]
    fn nothing_the_remote_side_sent_reaches_the_text() {
        let fixed = format!("registry error: {REGISTRY_UNREACHABLE}");
        let e = OciDistributionError::ServerError { code: 500, url: "http://10.0.0.1/v2/".into(), message: "internal secret body".into() };
        assert_eq!(from_oci("manifest r", e).to_string(), fixed);
        let e = OciDistributionError::ServerError { code: 401, url: "u".into(), message: "internal secret body".into() };
        assert_eq!(from_oci("manifest r", e).to_string(), "registry authentication failed: manifest r");
        let e = OciDistributionError::AuthenticationFailure("the realm's secret body".into());
        assert!(!from_oci("manifest r", e).to_string().contains("secret"));
        let e = OciDistributionError::ServerError { code: 404, url: "u".into(), message: "internal secret body".into() };
        assert_eq!(from_oci("manifest r:tag", e).to_string(), "not found in the registry: manifest r:tag");
        let e = is_index(b"{\"mediaType\": 5, \"secret\": \"x\"}").expect_err("not JSON of a manifest");
        assert_eq!(e.to_string(), "registry error: manifest: the registry's answer is not a valid image document");
        assert_eq!(status_text(&ImageError::Registry("writing blob: internal detail".into())), fixed);
        assert_eq!(status_text(&e), e.to_string());
        assert_eq!(status_text(&ImageError::NotFound("manifest r:tag".into())), "not found in the registry: manifest r:tag");
    }

    #[test]
    fn indexes_and_layer_types_are_told_apart() {
        assert!(is_index(br#"{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json"}"#).unwrap());
        assert!(is_index(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap());
        assert!(!is_index(br#"{"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#).unwrap());
        assert!(matches!(is_index(br#"{"mediaType":"text/plain"}"#), Err(ImageError::Unsupported(_))));
        assert!(layer_gzip(&MediaType::Other(IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE.into())).unwrap());
        assert!(!layer_gzip(&MediaType::ImageLayer).unwrap());
        assert!(matches!(layer_gzip(&MediaType::ImageLayerZstd), Err(ImageError::Unsupported(_))));
    }
}

//! The CLI's HTTP client: HTTP/1.1 (hyper) over the local Unix socket, or over TCP/TLS to
//! `--remote URL` with a bearer token.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

/// Errors of CLI commands.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Could not reach the daemon.
    #[error("cannot reach the daemon at {target}: {source}")]
    Connect { target: String, source: std::io::Error },
    /// TLS set-up or handshake failed.
    #[error("tls: {0}")]
    Tls(String),
    /// HTTP transport failure.
    #[error("http: {0}")]
    Http(String),
    /// The API answered an error.
    #[error("{code}: {message}{}", field.as_ref().map(|f| format!(" (field: {f})")).unwrap_or_default())]
    Api { status: u16, code: String, message: String, field: Option<String> },
    /// Bad command-line input.
    #[error("{0}")]
    Usage(String),
    /// A long action or a check failed.
    #[error("{0}")]
    Failed(String),
    /// Local I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

enum Target {
    Unix(PathBuf),
    Tcp { host: String, port: u16, tls: Option<Arc<rustls::ClientConfig>> },
}

/// A client of the cloudlet API.
pub struct Client {
    target: Target,
    token: Option<String>,
    project: Option<String>,
    /// `/v1/sites/{site}/api` when the target is a portal: the site's `/v1/...` is reached
    /// there, over the site's link.
    via: Option<String>,
}

/// A raw answer.
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

/// The default local socket.
pub const DEFAULT_SOCKET: &str = "/run/cloudlet/cloudlet.sock";

fn tls_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, CliError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).map_err(|e| CliError::Tls(format!("reading {}: {e}", ca.display())))?;
    for c in certs {
        let c = c.map_err(|e| CliError::Tls(format!("parsing {}: {e}", ca.display())))?;
        roots.add(c).map_err(|e| CliError::Tls(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

impl Client {
    /// Build a client: `remote` (`http://` or `https://host:port`) or the Unix socket.
    /// HTTPS trusts the PEM certificate(s) in `ca_cert`, or else `DATA/tls/cert.pem` of a local
    /// daemon at the default data dir.
    pub fn new(
        remote: Option<&str>,
        socket: Option<&Path>,
        token: Option<String>,
        project: Option<String>,
        ca_cert: Option<&Path>,
    ) -> Result<Client, CliError> {
        let target = match remote {
            None => Target::Unix(socket.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))),
            Some(url) => {
                let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
                    (true, r)
                } else if let Some(r) = url.strip_prefix("http://") {
                    (false, r)
                } else {
                    return Err(CliError::Usage(format!("--remote {url:?} must start with http:// or https://")));
                };
                let hostport = rest.split('/').next().unwrap_or("");
                let (host, port) = match hostport.rsplit_once(':') {
                    Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                        (h.trim_matches(['[', ']']).to_string(), p.parse::<u16>().map_err(|_| CliError::Usage(format!("bad port in {url:?}")))?)
                    }
                    _ => (hostport.to_string(), if tls { 443 } else { 80 }),
                };
                let tls = if tls {
                    let local = PathBuf::from("/var/lib/cloudlet/tls/cert.pem");
                    let ca = ca_cert
                        .map(Path::to_path_buf)
                        .or_else(|| local.exists().then_some(local))
                        .ok_or_else(|| CliError::Usage("HTTPS needs --ca-cert FILE (the daemon's DATA/tls/cert.pem, or your CA)".into()))?;
                    Some(tls_config(&ca)?)
                } else {
                    None
                };
                Target::Tcp { host, port, tls }
            }
        };
        Ok(Client { target, token, project, via: None })
    }

    /// Reach site `site` through the portal this client talks to: every `/v1/REST` call goes to
    /// the portal's `/v1/sites/{site}/api/REST`. Errors: a site name that is not an RFC 1123
    /// label.
    pub fn through_portal(mut self, site: &str) -> Result<Client, CliError> {
        let ok = !site.is_empty() && site.len() <= 63 && site.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok || matches!(self.target, Target::Unix(_)) {
            return Err(CliError::Usage(format!("--site {site:?} must be a site name (lowercase letters, digits, '-'), with --portal URL")));
        }
        self.via = Some(format!("/v1/sites/{site}/api"));
        Ok(self)
    }

    fn describe(&self) -> String {
        match &self.target {
            Target::Unix(p) => p.display().to_string(),
            Target::Tcp { host, port, tls } => format!("{}://{host}:{port}", if tls.is_some() { "https" } else { "http" }),
        }
    }

    async fn handshake<S>(io: S) -> Result<http1::SendRequest<Full<Bytes>>, CliError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = http1::handshake(TokioIo::new(io)).await.map_err(|e| CliError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }

    async fn connect(&self) -> Result<http1::SendRequest<Full<Bytes>>, CliError> {
        let conn_err = |source| CliError::Connect { target: self.describe(), source };
        match &self.target {
            Target::Unix(p) => Self::handshake(tokio::net::UnixStream::connect(p).await.map_err(conn_err)?).await,
            Target::Tcp { host, port, tls } => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await.map_err(conn_err)?;
                match tls {
                    None => Self::handshake(tcp).await,
                    Some(cfg) => {
                        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| CliError::Tls(format!("server name {host:?}: {e}")))?;
                        let s = tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp).await.map_err(|e| CliError::Tls(e.to_string()))?;
                        Self::handshake(s).await
                    }
                }
            }
        }
    }

    fn with_project(&self, path: &str) -> String {
        let path = match &self.project {
            Some(p) if path.starts_with("/v1/") && !path.contains("project=") => {
                format!("{path}{}project={p}", if path.contains('?') { '&' } else { '?' })
            }
            _ => path.to_string(),
        };
        match (&self.via, path.strip_prefix("/v1/")) {
            (Some(via), Some(rest)) => format!("{via}/{rest}"),
            _ => path,
        }
    }

    fn request(&self, method: Method, path: &str, body: Option<&Value>, extra: &[(&str, String)]) -> Result<Request<Full<Bytes>>, CliError> {
        let host = match &self.target {
            Target::Unix(_) => "localhost".to_string(),
            Target::Tcp { host, port, .. } => format!("{host}:{port}"),
        };
        let mut b = Request::builder().method(method).uri(self.with_project(path)).header(header::HOST, host);
        if let Some(t) = &self.token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in extra {
            b = b.header(*k, v.as_str());
        }
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(serde_json::to_vec(v).map_err(|e| CliError::Usage(e.to_string()))?))
            }
            None => Full::new(Bytes::new()),
        };
        b.body(body).map_err(|e| CliError::Usage(e.to_string()))
    }

    /// Send a request and read the whole answer.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>, extra: &[(&str, String)]) -> Result<Answer, CliError> {
        let req = self.request(method, path, body, extra)?;
        let mut s = self.connect().await?;
        let resp = s.send_request(req).await.map_err(|e| CliError::Http(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| CliError::Http(e.to_string()))?.to_bytes();
        Ok(Answer { status: parts.status, headers: parts.headers, body })
    }

    /// Send `bytes` as the body (`content_type`) and parse a JSON answer.
    pub async fn upload(&self, method: Method, path: &str, bytes: Bytes, content_type: &str) -> Result<Value, CliError> {
        let mut req = self.request(method, path, None, &[("content-type", content_type.to_string())])?;
        *req.body_mut() = Full::new(bytes);
        let mut s = self.connect().await?;
        let resp = s.send_request(req).await.map_err(|e| CliError::Http(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| CliError::Http(e.to_string()))?.to_bytes();
        if !parts.status.is_success() {
            return Err(api_error(parts.status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| CliError::Http(format!("answer is not JSON: {e}")))
    }

    /// Send a request and parse a JSON answer; API errors become [`CliError::Api`].
    pub async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        self.json_with(method, path, body, &[]).await
    }

    /// Like [`Client::json`] with extra headers.
    pub async fn json_with(&self, method: Method, path: &str, body: Option<&Value>, extra: &[(&str, String)]) -> Result<Value, CliError> {
        let a = self.send(method, path, body, extra).await?;
        if !a.status.is_success() {
            return Err(api_error(a.status, &a.body));
        }
        if a.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&a.body).map_err(|e| CliError::Http(format!("answer is not JSON: {e}")))
    }

    /// Open a streaming GET (for Server-Sent Events); returns the body to read frames from.
    pub async fn stream(&self, path: &str, extra: &[(&str, String)]) -> Result<hyper::body::Incoming, CliError> {
        let req = self.request(Method::GET, path, None, extra)?;
        let mut s = self.connect().await?;
        let resp = s.send_request(req).await.map_err(|e| CliError::Http(e.to_string()))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.into_body().collect().await.map_err(|e| CliError::Http(e.to_string()))?.to_bytes();
            return Err(api_error(status, &body));
        }
        Ok(resp.into_body())
    }

    /// GET `path` as an HTTP/1.1 upgrade (`extra` carries the `Upgrade` headers); the upgraded
    /// connection after a `101 Switching Protocols`, or the API's error.
    pub async fn upgrade(&self, path: &str, extra: &[(&str, String)]) -> Result<hyper::upgrade::Upgraded, CliError> {
        if self.via.is_some() {
            return Err(CliError::Usage("attaching to a console or an exec session through --portal is not supported yet; use --remote to the site".into()));
        }
        let req = self.request(Method::GET, path, None, extra)?;
        let mut s = self.connect().await?;
        let resp = s.send_request(req).await.map_err(|e| CliError::Http(e.to_string()))?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status();
            let body = resp.into_body().collect().await.map_err(|e| CliError::Http(e.to_string()))?.to_bytes();
            return Err(api_error(status, &body));
        }
        hyper::upgrade::on(resp).await.map_err(|e| CliError::Http(format!("upgrading the connection: {e}")))
    }

    /// GET `path` and copy the body to stdout as it arrives (a log, possibly followed).
    pub async fn print_stream(&self, path: &str) -> Result<(), CliError> {
        use std::io::Write;
        let mut body = self.stream(path, &[]).await?;
        let mut out = std::io::stdout();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| CliError::Http(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                out.write_all(&data)?;
                out.flush()?;
            }
        }
        Ok(())
    }
}

fn api_error(status: StatusCode, body: &[u8]) -> CliError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = &v["error"];
    CliError::Api {
        status: status.as_u16(),
        code: e["code"].as_str().unwrap_or("http_error").to_string(),
        message: e["message"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {status}")),
        field: e["field"].as_str().map(str::to_string),
    }
}

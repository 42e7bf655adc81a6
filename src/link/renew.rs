//! Renewal of the site's client certificate: at 2/3 of its life (minus a jitter of up to 1/15
//! of it, so sites joined together do not renew together), the site asks the portal over mutual
//! TLS with the certificate it holds for the next one, for the same key.
//!
//! Crash safety: the portal keeps accepting the previous certificate, and answers a renewal
//! made with it by sending the current one again, so a site that lost the answer (or crashed
//! before writing it) is never locked out. The site writes `site.pem` (atomically) before
//! `identity.json`; a crash between the two only makes it renew once more.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::join::{PinnedCa, identity, pem_der, post, site_csr};
use super::token::sha256_hex;
use super::{Identity, JoinError, JoinResponse, RenewRequest};

/// When the certificate of `id` is due for renewal: 2/3 of the way from when it was received to
/// its end, less `jitter` (a fraction of that span, 0 to 1/15).
pub fn due(id: &Identity, jitter: f64) -> Option<DateTime<Utc>> {
    let from = DateTime::parse_from_rfc3339(id.renewed_at.as_deref().unwrap_or(&id.joined_at)).ok()?.with_timezone(&Utc);
    let to = DateTime::parse_from_rfc3339(&id.not_after).ok()?.with_timezone(&Utc);
    let span = (to - from).num_milliseconds().max(0) as f64;
    let at = span * (2.0 / 3.0 - jitter.clamp(0.0, 1.0 / 15.0));
    Some(from + chrono::Duration::milliseconds(at as i64))
}

/// Renew the certificate of the identity in `dir` now. Errors: [`JoinError`] (`Refused` with
/// `certificate_revoked` once the portal removed the site).
pub async fn renew(dir: &Path) -> Result<Identity, JoinError> {
    let id = identity(dir)?.ok_or_else(|| JoinError::Io { what: "reading identity.json".into(), source: std::io::ErrorKind::NotFound.into() })?;
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|source| JoinError::Io { what: format!("reading {name}"), source });
    let csr = site_csr(dir)?;
    let pin = Arc::new(PinnedCa::new(&sha256_hex(&pem_der(&read("ca.pem")?)?)));
    let identity = Some((read("site.pem")?, read("site.key")?));
    let answer: JoinResponse = post(pin, identity, &format!("{}/v1/link/renew", id.portal), &RenewRequest { csr }).await?;
    if answer.site != id.site {
        return Err(JoinError::BadAnswer(format!("the renewed certificate names site {:?}, not {:?}", answer.site, id.site)));
    }
    let write = |name: &str, text: &str| {
        crate::state::files::write_secret_file(&dir.join(name), text).map_err(|source| JoinError::Io { what: format!("writing {name}"), source })
    };
    write("site.pem", &answer.certificate)?;
    let next = Identity { not_after: answer.not_after, renewed_at: Some(Utc::now().to_rfc3339()), ..id };
    write("identity.json", &serde_json::to_string_pretty(&next).map_err(|e| JoinError::Cert(e.to_string()))?)?;
    Ok(next)
}

/// Keep the certificate of the identity in `dir` fresh until `stop` changes: sleep until it is
/// due, renew, and after a failure try again in a tenth of the time left (5 s to 10 min).
pub async fn run(dir: PathBuf, mut stop: watch::Receiver<bool>) {
    let jitter = rand::random::<f64>() / 15.0;
    loop {
        let wait = match identity(&dir) {
            Ok(Some(id)) => match due(&id, jitter) {
                Some(at) if at <= Utc::now() => match renew(&dir).await {
                    Ok(next) => {
                        tracing::info!(site = %next.site, not_after = %next.not_after, "renewed the portal certificate");
                        Duration::from_secs(1)
                    }
                    Err(e) => {
                        let left = DateTime::parse_from_rfc3339(&id.not_after).map(|t| (t.with_timezone(&Utc) - Utc::now()).num_seconds()).unwrap_or(0);
                        let retry = Duration::from_secs((left / 10).clamp(5, 600) as u64);
                        tracing::warn!(site = %id.site, error = %e, retry_in_s = retry.as_secs(), "renewing the portal certificate failed");
                        retry
                    }
                },
                Some(at) => (at - Utc::now()).to_std().unwrap_or_default().min(Duration::from_secs(600)),
                None => {
                    tracing::warn!(site = %id.site, "identity.json holds no valid certificate times; not renewing");
                    Duration::from_secs(600)
                }
            },
            Ok(None) => Duration::from_secs(5),
            Err(e) => {
                tracing::warn!(error = %e, "reading the portal identity failed");
                Duration::from_secs(60)
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_life_less_the_jitter() {
        let id = Identity {
            portal: "https://p:1".into(),
            site: "s".into(),
            joined_at: "2026-01-01T00:00:00Z".into(),
            not_after: "2026-01-31T00:00:00Z".into(),
            renewed_at: None,
        };
        assert_eq!(due(&id, 0.0).map(|t| t.to_rfc3339()), Some("2026-01-21T00:00:00+00:00".into()));
        // The jitter is at most 1/15 of the life (two days of thirty).
        assert_eq!(due(&id, 1.0).map(|t| t.to_rfc3339()), Some("2026-01-19T00:00:00+00:00".into()));
        let renewed = Identity { renewed_at: Some("2026-01-21T00:00:00Z".into()), not_after: "2026-02-20T00:00:00Z".into(), ..id.clone() };
        assert_eq!(due(&renewed, 0.0).map(|t| t.to_rfc3339()), Some("2026-02-10T00:00:00+00:00".into()));
        assert_eq!(due(&Identity { not_after: "soon".into(), ..id }, 0.0), None);
    }
}

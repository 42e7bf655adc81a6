//! The site's membership of a portal: joining one (the client is `crate::link::join`) and what
//! it knows of it. The identity lives in `DATA/portal/`.

use super::{Site, SiteError};
pub use crate::link::{Identity, JoinError};

impl Site {
    /// The directory of this site's portal identity.
    pub fn portal_dir(&self) -> std::path::PathBuf {
        self.config().data_dir.join("portal")
    }

    /// Join the portal at `url` (`https://HOST[:PORT]`, its link listener) with `token`.
    /// Errors: [`SiteError::Join`].
    pub async fn join_portal(&self, url: &str, token: &str) -> Result<Identity, SiteError> {
        // A new portal has received nothing: what an earlier one acknowledged is its own. Reset
        // first, so no retention pass runs between the join and the reset with the old marks.
        if matches!(self.portal_identity(), Ok(None)) {
            self.write(|tx, _| Ok(crate::state::outbox::reset(tx)?))?;
        }
        let id = crate::link::join::join(&self.portal_dir(), url, token).await?;
        tracing::info!(portal = %id.portal, site = %id.site, "joined the portal");
        Ok(id)
    }

    /// Ask the joined portal, over mutual TLS with this site's certificate, which site it takes
    /// this one for: the site's name, or the refusal (`certificate_revoked` once the portal
    /// removed the site) or the network failure.
    pub async fn check_portal(&self) -> Result<String, JoinError> {
        crate::link::join::whoami(&self.portal_dir()).await.map(|w| w.site)
    }

    /// Join the configured portal (`[portal]`) unless this site joined one: retried with a
    /// doubling back-off (2 s to 60 s) while the portal cannot be reached; any other failure (a
    /// refused or malformed token, another CA) is logged and ends the attempts, since trying
    /// again cannot mend it.
    pub async fn join_configured_portal(&self) {
        let (url, token) = (self.config().portal.url.clone(), self.config().portal.join_token.clone());
        if url.is_empty() || matches!(self.portal_identity(), Ok(Some(_))) {
            return;
        }
        let mut wait = std::time::Duration::from_secs(2);
        loop {
            match self.join_portal(&url, &token).await {
                Ok(_) => return,
                Err(SiteError::Join(JoinError::Unreachable(e))) => {
                    tracing::warn!(portal = %url, error = %e, retry_in_s = wait.as_secs(), "the configured portal cannot be reached");
                }
                Err(e) => return tracing::error!(portal = %url, error = %e, "joining the configured portal failed; join with `cloudlet site join`"),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_secs(60));
        }
    }

    /// The portal this site joined, if any.
    pub fn portal_identity(&self) -> Result<Option<Identity>, SiteError> {
        Ok(crate::link::join::identity(&self.portal_dir())?)
    }
}

impl From<JoinError> for SiteError {
    fn from(e: JoinError) -> Self {
        SiteError::Join(e)
    }
}

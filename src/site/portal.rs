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

//! The site–portal link, the parts both ends share and the site's half: the join token format
//! ([`token`]), the join protocol's messages (below), and the site's join client ([`join`]).
//!
//! A site dials out only. To join, it connects over TLS to the portal's link listener, accepts
//! the server only if its chain holds the CA the token pins, and sends a certificate signing
//! request with the token; the portal answers a client certificate signed by its CA. From then on
//! the site authenticates with that certificate (mutual TLS, rustls). The portal's half is in
//! `crate::portal`.

pub mod join;
pub mod renew;
pub mod session;
pub mod token;

use serde::{Deserialize, Serialize};

pub use join::{Identity, JoinError};

/// `POST /v1/link/join` on the portal's link listener.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The join token (`CLJ1.…`).
    pub token: String,
    /// A PKCS#10 certificate signing request (RFC 2986), PEM, for the site's own key. Only its
    /// public key is used.
    pub csr: String,
}

/// The portal's answer to a join.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JoinResponse {
    /// The site's name in the portal (the token's).
    pub site: String,
    /// The site's client certificate, PEM.
    pub certificate: String,
    /// The portal CA's certificate, PEM.
    pub ca: String,
    /// End of the certificate's validity (RFC 3339).
    pub not_after: String,
}

/// `POST /v1/link/renew` over mutual TLS with the site's current certificate: a request for the
/// next one, for the same key. The answer is a [`JoinResponse`].
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// A PKCS#10 certificate signing request (RFC 2986), PEM, for the site's key.
    pub csr: String,
}

/// `GET /v1/link/whoami` over mutual TLS: the site the client certificate names.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    /// The site's name.
    pub site: String,
}

//! Identity: roles, principals, API tokens, console users and their sessions.
//!
//! - API tokens are 32 random bytes (`clt_` + base64url). Only their SHA-256 is stored; a random
//!   256-bit secret needs no slow hash, and lookup by hash is a single index probe.
//! - Console passwords are stored as Argon2id PHC strings (RFC 9106).
//! - Session cookies are 32 random bytes; only their SHA-256 is stored.

use std::collections::BTreeMap;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::model::{self, Status};
use super::{Kind, ProjectCtx, Resource, Site, SiteError};
use crate::state::{ResourceRow, repo};

/// A role within a project. Ordered: viewer < member < admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything in the project.
    Viewer,
    /// Create, change and delete workloads in the project.
    Member,
    /// Also manage the project's tokens and users; in the `system` project, the whole site.
    Admin,
}

/// Who is calling.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Principal {
    /// `token:<id>`, `user:<name>@<project>` or `local-socket`.
    pub actor: String,
    /// The caller's own project.
    #[serde(skip)]
    #[schema(ignore)]
    pub project_id: String,
    /// The caller's own project's name.
    pub project: String,
    /// The caller's role in it.
    pub role: Role,
    /// An admin of the `system` project: may act on every project.
    pub site_admin: bool,
}

impl Principal {
    /// The caller's own project.
    pub fn project_ctx(&self) -> ProjectCtx {
        ProjectCtx { id: self.project_id.clone(), name: self.project.clone() }
    }

    /// Require at least `role` in the caller's project (site admins pass).
    pub fn require(&self, role: Role) -> Result<(), SiteError> {
        if self.site_admin || self.role >= role {
            Ok(())
        } else {
            Err(SiteError::Forbidden(format!("this needs the {role:?} role; the caller has {:?}", self.role)))
        }
    }

    /// Require site admin.
    pub fn require_site_admin(&self) -> Result<(), SiteError> {
        if self.site_admin { Ok(()) } else { Err(SiteError::Forbidden("this needs a site admin (an admin of the system project)".into())) }
    }
}

/// The built-in project whose admins administer the site.
pub const SYSTEM_PROJECT: &str = "system";
/// Lifetime of a console session.
pub const SESSION_TTL_MS: i64 = 12 * 3_600_000;

/// Spec of an API token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// The role the token carries in its project.
    pub role: Role,
    /// RFC 3339 expiry; none means it never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Spec of a console user as stored and shown (the password is write-only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// The user's role in its project.
    pub role: Role,
}

/// Spec of a console user as created.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreateSpec {
    /// The user's role in its project.
    pub role: Role,
    /// At least 8 and at most 256 characters; stored only as an Argon2id hash.
    pub password: String,
}

/// SHA-256 hex of a secret.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn random_b64(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A fresh API token secret: `clt_` + 32 random bytes, base64url.
pub fn new_token_secret() -> String {
    format!("clt_{}", random_b64(32))
}

/// A fresh random password (24 characters of base64url).
pub fn new_password() -> String {
    random_b64(18)
}

/// Argon2id hash of a password (PHC string).
pub fn hash_password(password: &str) -> Result<String, SiteError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| SiteError::Internal(format!("salt: {e}")))?;
    argon2::Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| SiteError::Internal(format!("argon2: {e}")))
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).map(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok()).unwrap_or(false)
}

/// Check a new password's length. Errors name `field`.
pub fn validate_password(field: &str, p: &str) -> Result<(), SiteError> {
    if p.chars().count() < 8 || p.len() > 256 {
        return Err(SiteError::invalid(field, "password must be 8 to 256 characters"));
    }
    Ok(())
}

fn principal_from(row: &ResourceRow, actor: String, role: Role) -> Result<Principal, SiteError> {
    let (Some(pid), Some(pname)) = (row.project_id.clone(), row.project_name.clone()) else {
        return Err(SiteError::Unauthenticated("credential has no project".into()));
    };
    Ok(Principal { site_admin: pname == SYSTEM_PROJECT && role == Role::Admin, actor, project_id: pid, project: pname, role })
}

fn project_live(c: &rusqlite::Connection, pid: &str) -> Result<bool, SiteError> {
    Ok(repo::get(c, pid)?.is_some_and(|p| !p.deleting))
}

impl Site {
    /// Resolve a bearer token. Errors: unauthenticated when unknown, expired or its project is
    /// being deleted.
    pub fn authenticate_token(&self, secret: &str) -> Result<Principal, SiteError> {
        let bad = || SiteError::Unauthenticated("invalid or expired token".into());
        if !secret.starts_with("clt_") || secret.len() > 128 {
            return Err(bad());
        }
        let hash = sha256_hex(secret);
        self.read(|c| {
            let row = repo::resource_by_secret(c, &hash)?.filter(|r| r.kind == Kind::Token.as_str()).ok_or_else(bad)?;
            let spec: TokenSpec = serde_json::from_str(&row.spec)?;
            if spec.expires_at.is_some_and(|t| t <= chrono::Utc::now()) {
                return Err(bad());
            }
            if !project_live(c, row.project_id.as_deref().unwrap_or_default())? {
                return Err(bad());
            }
            principal_from(&row, format!("token:{}", row.id), spec.role)
        })
    }

    /// Resolve a session cookie value.
    pub fn authenticate_session(&self, cookie: &str) -> Result<Principal, SiteError> {
        let bad = || SiteError::Unauthenticated("session expired or invalid; log in again".into());
        if cookie.len() > 128 {
            return Err(bad());
        }
        let hash = sha256_hex(cookie);
        self.read(|c| {
            let uid = repo::session_user(c, &hash, model::now_ms())?.ok_or_else(bad)?;
            let row = repo::get(c, &uid)?.ok_or_else(bad)?;
            if !project_live(c, row.project_id.as_deref().unwrap_or_default())? {
                return Err(bad());
            }
            let spec: UserSpec = serde_json::from_str(&row.spec)?;
            let actor = format!("user:{}@{}", row.name, row.project_name.clone().unwrap_or_default());
            principal_from(&row, actor, spec.role)
        })
    }

    /// The principal of the root-only local socket: a site admin.
    pub fn local_admin(&self) -> Result<Principal, SiteError> {
        let p = self.project_by_name(SYSTEM_PROJECT)?;
        Ok(Principal { actor: "local-socket".into(), project_id: p.id, project: p.name, role: Role::Admin, site_admin: true })
    }

    /// The principal of a request the portal sent over the site's link on behalf of its user
    /// `user` (portal admins are site admins; the actor is `portal:<user>`, at most 64
    /// characters of `[A-Za-z0-9._@-]`, others replaced by `_`).
    pub fn portal_admin(&self, user: &str) -> Result<Principal, SiteError> {
        let p = self.project_by_name(SYSTEM_PROJECT)?;
        let user: String = user.chars().take(64).map(|c| if c.is_ascii_alphanumeric() || "._@-".contains(c) { c } else { '_' }).collect();
        Ok(Principal { actor: format!("portal:{user}"), project_id: p.id, project: p.name, role: Role::Admin, site_admin: true })
    }

    /// Log a console user in. `username` is `name` (in the `system` project) or `name@project`.
    /// Returns the new session cookie value and the principal. Errors: unauthenticated, with the
    /// same message and roughly the same time whether the user or the password was wrong.
    pub fn login(&self, username: &str, password: &str, source: Option<std::net::IpAddr>) -> Result<(String, Principal), SiteError> {
        let bad = || SiteError::Unauthenticated("wrong username or password".into());
        // Bounded and backed off per user and per client address (see `login_limit`).
        let mut keys = vec![format!("user:{username}")];
        keys.extend(source.map(|a| format!("addr:{a}")));
        let permit = self.login_limit().admit(&keys)?;
        let (name, project) = username.split_once('@').unwrap_or((username, SYSTEM_PROJECT));
        let found = self.read(|c| {
            let Some(p) = repo::get_by_name(c, Kind::Project.as_str(), None, project)? else { return Ok(None) };
            let Some(u) = repo::get_by_name(c, Kind::User.as_str(), Some(&p.id), name)? else { return Ok(None) };
            Ok(repo::secret_of(c, &u.id)?.map(|h| (u, h)))
        })?;
        // Verify against a dummy hash when the user is unknown, to keep timing uniform.
        const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2vKz7o3FqS0nG2pZs7bqVw0mJ2j3vJm5Q8m7Zc1GQ9c";
        let ok = match &found {
            Some((_, h)) => verify_password(password, h),
            None => {
                verify_password(password, DUMMY);
                false
            }
        };
        drop(permit);
        self.login_limit().record(&keys, ok);
        let Some((user, _)) = found.filter(|_| ok) else { return Err(bad()) };
        let spec: UserSpec = serde_json::from_str(&user.spec)?;
        let actor = format!("user:{}@{}", user.name, user.project_name.clone().unwrap_or_default());
        let principal = principal_from(&user, actor, spec.role)?;
        let cookie = random_b64(32);
        let hash = sha256_hex(&cookie);
        self.write(|tx, _| {
            repo::put_session(tx, &hash, &user.id, model::now_ms() + SESSION_TTL_MS)?;
            Ok(())
        })?;
        Ok((cookie, principal))
    }

    /// End a session (and sweep expired ones).
    pub fn logout(&self, cookie: &str) -> Result<(), SiteError> {
        let hash = sha256_hex(cookie);
        self.write(|tx, _| Ok(repo::delete_session(tx, &hash, model::now_ms())?))
    }

    /// Create an API token in `project`; returns the resource and the secret (shown once).
    pub fn create_token(&self, project: &ProjectCtx, name: &str, labels: &BTreeMap<String, String>, spec: &TokenSpec) -> Result<(Resource, String), SiteError> {
        if spec.expires_at.is_some_and(|t| t <= chrono::Utc::now()) {
            return Err(SiteError::invalid("spec.expires_at", "must be in the future"));
        }
        let secret = new_token_secret();
        let r = self.create(Kind::Token, Some(project), name, labels, &serde_json::to_value(spec)?, &Status::phase("Active"), Some(&sha256_hex(&secret)))?;
        Ok((r, secret))
    }

    /// Create a console user in `project`.
    pub fn create_user(&self, project: &ProjectCtx, name: &str, labels: &BTreeMap<String, String>, spec: &UserCreateSpec) -> Result<Resource, SiteError> {
        validate_password("spec.password", &spec.password)?;
        let hash = hash_password(&spec.password)?;
        let stored = UserSpec { role: spec.role };
        self.create(Kind::User, Some(project), name, labels, &serde_json::to_value(stored)?, &Status::phase("Active"), Some(&hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Member && Role::Member < Role::Admin);
        let p = Principal { actor: "t".into(), project_id: "p".into(), project: "default".into(), role: Role::Member, site_admin: false };
        assert!(p.require(Role::Viewer).is_ok());
        assert!(p.require(Role::Admin).is_err());
        assert!(p.require_site_admin().is_err());
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn token_secrets_are_unique_and_prefixed() {
        let a = new_token_secret();
        assert!(a.starts_with("clt_") && a.len() > 40);
        assert_ne!(a, new_token_secret());
    }
}

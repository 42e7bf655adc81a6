//! First start: the `system` and `default` projects, the admin token and the console admin.
//!
//! The secrets are written to `DATA/admin.token` and `DATA/admin.password` (mode 0600, written to
//! a temporary name, fsync'd and renamed). The first start is recorded as done only after both
//! files exist; a crash before that makes the next start replace both credentials.

use super::auth::{self, Role, TokenSpec, UserCreateSpec};
use super::{Site, SiteError};
use crate::state::repo;

/// What the first start created (secrets included, to print once).
pub struct FirstStart {
    pub admin_token: String,
    pub admin_password: String,
}

pub use crate::state::files::write_secret_file;

const DONE_KEY: &str = "bootstrapped";

impl Site {
    /// Create the built-in projects and credentials if this is the first start. Returns the
    /// secrets when it created them.
    pub fn bootstrap(&self) -> Result<Option<FirstStart>, SiteError> {
        if self.read(|c| Ok(repo::meta_get(c, DONE_KEY)?))?.is_some() {
            return Ok(None);
        }
        let data = self.config().data_dir.clone();
        let io = |e: std::io::Error| SiteError::io("writing first-start secrets", e);
        let system = match self.project_by_name(auth::SYSTEM_PROJECT) {
            Ok(p) => p,
            Err(_) => {
                let spec = serde_json::json!({"description": "Site administration"});
                self.create_project(auth::SYSTEM_PROJECT, &Default::default(), spec)?;
                self.project_by_name(auth::SYSTEM_PROJECT)?
            }
        };
        if self.project_by_name("default").is_err() {
            self.create_project("default", &Default::default(), serde_json::json!({"description": "Default project"}))?;
        }
        // Replace credentials a crashed earlier first start may have left.
        for (kind, name) in [(super::Kind::Token, "admin"), (super::Kind::User, "admin")] {
            match self.delete(kind, Some(&system), name) {
                Ok(_) | Err(SiteError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let password = auth::new_password();
        write_secret_file(&data.join("admin.password"), &password).map_err(io)?;
        self.create_user(&system, "admin", &Default::default(), &UserCreateSpec { role: Role::Admin, password: password.clone() })?;
        let (_, token) = self.create_token(&system, "admin", &Default::default(), &TokenSpec { role: Role::Admin, expires_at: None })?;
        write_secret_file(&data.join("admin.token"), &token).map_err(io)?;
        self.write(|tx, _| Ok(repo::meta_set(tx, DONE_KEY, &super::model::now_rfc3339())?))?;
        Ok(Some(FirstStart { admin_token: token, admin_password: password }))
    }
}

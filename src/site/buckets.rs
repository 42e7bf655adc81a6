//! Buckets and access keys of a project, for the S3 endpoint.
//!
//! - A bucket is a project resource whose name is unique across the site (S3 addresses buckets
//!   by name alone). Its policy is `private` (only the project's access keys) or `public-read`
//!   (anyone may get, head and list objects). `quota_mib` bounds the bytes it stores.
//! - An access key is a project resource whose id is the S3 access key id. SigV4 (AWS's
//!   "Signature Version 4", <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html>)
//!   needs the plaintext secret on the server, so it is stored sealed with ChaCha20-Poly1305
//!   (RFC 8439) under a site key kept in `DATA/keys/` (mode 0600), never in the database in
//!   the clear. The secret is returned once, at creation.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;

use base64::Engine;
use rand::RngCore;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Principal, Role};
use super::lookup::spec_of;
use super::model::Status;
use super::resource_kind::{Creatable, Labels, Patchable, ResourceKind};
use super::{Kind, ProjectCtx, Resource, Site, SiteError};
use crate::state::{ResourceRow, objects as orepo, repo};

/// Who may read a bucket's objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BucketPolicy {
    /// Only the project's access keys and members.
    #[default]
    Private,
    /// Anyone, signed or not, may get, head and list objects; writes stay private.
    PublicRead,
}

/// Spec of a bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    /// `private` (default) or `public-read`.
    #[serde(default)]
    pub policy: BucketPolicy,
    /// Most MiB the bucket may store (objects plus unfinished uploads); none means only the
    /// project's `object_mib` quota applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_mib: Option<u64>,
}

/// Spec of an access key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessKeySpec {
    /// `viewer` keys only read; `member` (default) and `admin` keys also write and manage buckets.
    #[serde(default = "member")]
    pub role: Role,
}

fn member() -> Role {
    Role::Member
}

/// What a request wants to do with a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Get, head or list objects.
    Read,
    /// Put, copy, delete objects; multipart uploads.
    Write,
}

/// A bucket, as the object operations see it.
#[derive(Debug, Clone)]
pub struct BucketRef {
    /// The resource id (`bkt-...`).
    pub id: String,
    /// The bucket name.
    pub name: String,
    /// The owning project.
    pub project: ProjectCtx,
    /// The bucket's spec.
    pub spec: BucketSpec,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// Errors of bucket lookup and authorization, in S3's terms.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// No bucket of that name on the site.
    #[error("the bucket {0} does not exist")]
    NoSuchBucket(String),
    /// The caller may not do this.
    #[error("{0}")]
    AccessDenied(String),
    /// Anything else.
    #[error(transparent)]
    Site(#[from] SiteError),
}

impl From<crate::state::StateError> for BucketError {
    fn from(e: crate::state::StateError) -> Self {
        BucketError::Site(e.into())
    }
}

pub use super::quotas::OBJECT_MIB_QUOTA;

/// Check a bucket name: an RFC 1123 label of 3 to 63 characters (S3's rules without dots).
pub fn validate_bucket_name(field: &str, name: &str) -> Result<(), SiteError> {
    super::model::validate_name(field, name)?;
    if name.len() < 3 {
        return Err(SiteError::invalid(field, "a bucket name has 3 to 63 characters"));
    }
    Ok(())
}

fn bucket_ref(row: ResourceRow) -> Result<BucketRef, SiteError> {
    let spec: BucketSpec = spec_of(&row)?;
    let project = ProjectCtx { id: row.project_id.clone().unwrap_or_default(), name: row.project_name.clone().unwrap_or_default() };
    Ok(BucketRef { id: row.id, name: row.name, project, spec, created_at: row.created_at })
}

/// The bucket named `name` anywhere on the site.
pub fn bucket_by_name(c: &Connection, name: &str) -> Result<Option<BucketRef>, SiteError> {
    let st = |e: rusqlite::Error| SiteError::from(crate::state::StateError::from(e));
    let mut q = c.prepare_cached("SELECT id FROM resources WHERE kind = 'bucket' AND name = ?1 AND deleting = 0").map_err(st)?;
    let id: Option<String> = rusqlite::OptionalExtension::optional(q.query_row([name], |r| r.get(0))).map_err(st)?;
    match id {
        Some(id) => repo::get(c, &id)?.map(bucket_ref).transpose(),
        None => Ok(None),
    }
}

/// Sealing of access key secrets with the site key.
pub struct Sealer(LessSafeKey);

impl Sealer {
    /// Load the site key from `DATA/keys/access-keys.key`, creating it (32 random bytes, 0600).
    pub fn open(data_dir: &std::path::Path) -> Result<Self, SiteError> {
        let dir = data_dir.join("keys");
        let path = dir.join("access-keys.key");
        let io = |e: std::io::Error| SiteError::io(format!("site key {}", path.display()), e);
        std::fs::create_dir_all(&dir).map_err(io)?;
        let key = match std::fs::read(&path) {
            Ok(k) if k.len() == 32 => k,
            Ok(_) => return Err(SiteError::Corrupt(format!("site key {} is not 32 bytes", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = vec![0u8; 32];
                rand::rng().fill_bytes(&mut k);
                let tmp = dir.join("access-keys.key.tmp");
                // A leftover temp file could carry other permissions: start afresh.
                let _ = std::fs::remove_file(&tmp);
                let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io)?;
                f.write_all(&k).and_then(|_| f.sync_all()).map_err(io)?;
                std::fs::rename(&tmp, &path).map_err(io)?;
                // The key must survive a power loss once any sealed secret is committed.
                std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(io)?;
                k
            }
            Err(e) => return Err(io(e)),
        };
        let k = UnboundKey::new(&CHACHA20_POLY1305, &key).map_err(|_| SiteError::Internal("site key rejected".into()))?;
        Ok(Sealer(LessSafeKey::new(k)))
    }

    /// Seal `secret`, bound to the key id `aad`: `v1:` + base64(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, aad: &str, secret: &str) -> Result<String, SiteError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut buf = secret.as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| SiteError::Internal("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("v1:{}", base64::engine::general_purpose::STANDARD.encode(out)))
    }

    /// Open a value made by [`Sealer::seal`] for the same `aad`.
    pub fn open_sealed(&self, aad: &str, sealed: &str) -> Option<String> {
        let raw = base64::engine::general_purpose::STANDARD.decode(sealed.strip_prefix("v1:")?).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = rest.to_vec();
        let plain = self.0.open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf).ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

/// A fresh secret access key: 30 random bytes, base64 (40 characters, as AWS's).
fn new_secret() -> String {
    let mut b = [0u8; 30];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b).replace('/', "-").replace('+', "_")
}

fn checked_spec(v: serde_json::Value) -> Result<BucketSpec, SiteError> {
    let s: BucketSpec = serde_json::from_value(v).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
    if s.quota_mib == Some(0) {
        return Err(SiteError::invalid("spec.quota_mib", "at least 1 MiB, or leave it out"));
    }
    Ok(s)
}

impl ResourceKind for BucketSpec {
    const KIND: Kind = Kind::Bucket;

    /// Delete an empty bucket (unfinished uploads go with it, and their part blobs after the
    /// commit). Errors: 409 while it holds objects.
    fn delete(site: &Site, p: &ProjectCtx, r: &str) -> Result<Resource, SiteError> {
        let mut blobs = Vec::new();
        let res = site.delete_with(Kind::Bucket, Some(p), r, |c, row| {
            let (_, n) = orepo::bucket_usage(c, &row.id)?;
            if n > 0 {
                let what = if n == 1 { "1 object".to_string() } else { format!("{n} objects") };
                return Err(SiteError::Conflict(format!("bucket {} is not empty: it holds {what}; delete them first", row.name)));
            }
            blobs = orepo::bucket_part_blobs(c, &row.id)?;
            Ok(())
        })?;
        site.objects().blobs.remove_now(&blobs);
        Ok(res)
    }
}

impl Creatable for BucketSpec {
    /// Create a bucket. Errors: 409 when the name is taken anywhere on the site.
    fn create(site: &Site, p: &ProjectCtx, name: &str, labels: &Labels, spec: serde_json::Value) -> Result<Resource, SiteError> {
        validate_bucket_name("name", name)?;
        let s = checked_spec(spec)?;
        let name_owned = name.to_string();
        site.create_with(Kind::Bucket, Some(p), name, labels, &Status::phase("Ready"), None, move |c| {
            if bucket_by_name(c, &name_owned)?.is_some() {
                return Err(SiteError::AlreadyExists { kind: "bucket".into(), name: name_owned.clone() });
            }
            Ok(serde_json::to_value(&s)?)
        })
    }
}

impl Patchable for BucketSpec {
    /// Change a bucket's policy or quota.
    fn update(
        site: &Site,
        p: &ProjectCtx,
        r: &str,
        if_match: Option<i64>,
        labels: Option<&Labels>,
        patch: Option<&serde_json::Value>,
    ) -> Result<Resource, SiteError> {
        site.update(Kind::Bucket, Some(p), r, if_match, labels, patch, &|_, v| Ok(serde_json::to_value(checked_spec(v)?)?))
    }
}

impl Site {
    /// The bucket's usage: `(bytes, objects)` stored in it.
    pub fn bucket_usage(&self, bucket_id: &str) -> Result<(i64, i64), SiteError> {
        self.read(|c| Ok(crate::state::objects::bucket_usage(c, bucket_id)?))
    }

    fn sealer(&self) -> &Sealer {
        &self.objects().sealer
    }

    /// Create an access key; returns the resource and the secret (shown once).
    pub fn create_access_key(
        &self,
        p: &ProjectCtx,
        name: &str,
        labels: &BTreeMap<String, String>,
        spec: serde_json::Value,
    ) -> Result<(Resource, String), SiteError> {
        let s: AccessKeySpec = serde_json::from_value(spec).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
        let secret = new_secret();
        let sealer = self.sealer();
        let spec = serde_json::to_value(&s)?;
        let sec = secret.clone();
        let r = self.create_then(
            Kind::AccessKey,
            Some(p),
            name,
            labels,
            None,
            |_| Ok((spec, Status::phase("Active"))),
            move |c, row, _| {
                repo::put_secret(c, &row.id, &sealer.seal(&row.id, &sec)?)?;
                Ok(None)
            },
        )?;
        Ok((r, secret))
    }

    /// The secret and principal of access key `id`. Errors: unauthenticated when unknown or its
    /// project is being deleted.
    pub fn access_key(&self, id: &str) -> Result<(String, Principal), SiteError> {
        let bad = || SiteError::Unauthenticated("unknown access key".into());
        if Kind::of_id(id) != Some(Kind::AccessKey) {
            return Err(bad());
        }
        let sealer = self.sealer();
        self.read(|c| {
            let row = repo::get(c, id)?.filter(|r| !r.deleting).ok_or_else(bad)?;
            let project = repo::get(c, row.project_id.as_deref().unwrap_or_default())?.filter(|p| !p.deleting).ok_or_else(bad)?;
            let sealed = repo::secret_of(c, id)?.ok_or_else(bad)?;
            let secret = sealer.open_sealed(id, &sealed).ok_or_else(|| SiteError::Corrupt(format!("access key {id} does not unseal with the site key")))?;
            let spec: AccessKeySpec = spec_of(&row)?;
            let p = Principal {
                actor: format!("access-key:{id}"),
                project_id: project.id.clone(),
                project: project.name.clone(),
                role: spec.role,
                site_admin: project.name == super::auth::SYSTEM_PROJECT && spec.role == Role::Admin,
            };
            Ok((secret, p))
        })
    }

    /// Find bucket `name` and check that `caller` (none: anonymous) may `access` it.
    pub fn authorize_bucket(&self, caller: Option<&Principal>, name: &str, access: Access) -> Result<BucketRef, BucketError> {
        let b = self.read(|c| bucket_by_name(c, name))?.ok_or_else(|| BucketError::NoSuchBucket(name.to_string()))?;
        if let Some(p) = caller
            && (p.site_admin || p.project_id == b.project.id)
        {
            let need = if access == Access::Read { Role::Viewer } else { Role::Member };
            return match p.require(need) {
                Ok(()) => Ok(b),
                Err(e) => Err(BucketError::AccessDenied(e.to_string())),
            };
        }
        if access == Access::Read && b.spec.policy == BucketPolicy::PublicRead {
            return Ok(b);
        }
        Err(BucketError::AccessDenied("Access Denied".into()))
    }

    /// Buckets of the caller's project (every bucket for a site admin), by name.
    pub fn buckets_of(&self, caller: &Principal) -> Result<Vec<BucketRef>, SiteError> {
        self.read(|c| {
            let pid = (!caller.site_admin).then_some(caller.project_id.as_str());
            let rows = repo::list(c, Kind::Bucket.as_str(), pid, None, usize::MAX >> 1)?;
            rows.into_iter().filter(|r| !r.deleting).map(bucket_ref).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_seal_and_open_only_for_their_key_id() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sealer::open(dir.path()).unwrap();
        let sealed = s.seal("ak-1", "top-secret").unwrap();
        assert!(!sealed.contains("top-secret"));
        assert_eq!(s.open_sealed("ak-1", &sealed).as_deref(), Some("top-secret"));
        assert_eq!(s.open_sealed("ak-2", &sealed), None);
        let again = Sealer::open(dir.path()).unwrap();
        assert_eq!(again.open_sealed("ak-1", &sealed).as_deref(), Some("top-secret"));
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.path().join("keys/access-keys.key")).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(new_secret().len(), 40);
    }

    #[test]
    fn bucket_names_follow_the_rules() {
        assert!(validate_bucket_name("name", "photos-2026").is_ok());
        for bad in ["ab", "Photos", "a.b.c", "-abc", &"a".repeat(64)] {
            assert!(validate_bucket_name("name", bad).is_err(), "{bad}");
        }
    }
}

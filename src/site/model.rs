//! The resource envelope shared by every kind: identity, names, labels, generation, status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::error::SiteError;
use super::kind::Kind;
use crate::state::ResourceRow;

/// A resource as the API shows it. `labels`, `spec` and `status` are kept as raw JSON so that
/// large lists are not re-parsed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Resource {
    /// `<prefix>-<ULID>`, e.g. `proj-01JD5T3M9C7T4ZB3H2W6Y1Q8NA`.
    pub id: String,
    /// Singular kind name (`project`, `token`, ...).
    pub kind: String,
    /// RFC 1123 label, unique per kind and project.
    pub name: String,
    /// The owning project's name; absent for site-scoped kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// String-to-string labels.
    #[schema(value_type = Object)]
    pub labels: Box<RawValue>,
    /// Grows by one on every change of labels or spec.
    pub generation: i64,
    /// RFC 3339 UTC, millisecond precision.
    pub created_at: String,
    /// RFC 3339 UTC, millisecond precision.
    pub updated_at: String,
    /// What the user asked for (kind specific).
    #[schema(value_type = Object)]
    pub spec: Box<RawValue>,
    /// What the reconciler observed: `phase`, `observed_generation`, `conditions`, and more.
    #[schema(value_type = Object)]
    pub status: Box<RawValue>,
}

impl Resource {
    /// Build the envelope from a stored row. Errors only if the stored JSON is corrupt.
    pub fn from_row(row: ResourceRow) -> Result<Self, SiteError> {
        Ok(Resource {
            id: row.id,
            kind: row.kind,
            name: row.name,
            project: row.project_name,
            labels: RawValue::from_string(row.labels)?,
            generation: row.generation,
            created_at: row.created_at,
            updated_at: row.updated_at,
            spec: RawValue::from_string(row.spec)?,
            status: RawValue::from_string(row.status)?,
        })
    }

    /// Parse the spec as a typed value.
    pub fn spec_as<T: for<'de> Deserialize<'de>>(&self) -> Result<T, SiteError> {
        Ok(serde_json::from_str(self.spec.get())?)
    }

    /// Parse the status.
    pub fn status_as(&self) -> Result<Status, SiteError> {
        Ok(serde_json::from_str(self.status.get())?)
    }
}

/// One condition in a status, in the Kubernetes manner (`type` is `Ready`, `Reconciled`, ...).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Condition {
    /// Condition name, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `"True"`, `"False"` or `"Unknown"`.
    pub status: String,
    /// A CamelCase machine-readable reason.
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time the `status` last changed.
    pub last_transition_time: String,
}

/// The generic part of every resource's status; kind-specific fields live in `extra`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// A short summary: `Pending`, `Ready`, `Deleting`, `Failed`, ...
    #[serde(default)]
    pub phase: String,
    /// The `generation` the reconciler last acted on.
    #[serde(default)]
    pub observed_generation: i64,
    /// Detailed conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Kind-specific observed fields.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Status {
    /// A status with only a phase.
    pub fn phase(phase: &str) -> Self {
        Status { phase: phase.to_string(), ..Default::default() }
    }

    /// Set a condition; `last_transition_time` moves only when `status` changes.
    pub fn set_condition(&mut self, type_: &str, status: bool, reason: &str, message: &str) {
        let s = if status { "True" } else { "False" };
        let now = now_rfc3339();
        match self.conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != s {
                    c.last_transition_time = now;
                }
                c.status = s.to_string();
                c.reason = reason.to_string();
                c.message = message.to_string();
            }
            None => self.conditions.push(Condition {
                type_: type_.to_string(),
                status: s.to_string(),
                reason: reason.to_string(),
                message: message.to_string(),
                last_transition_time: now,
            }),
        }
    }

    /// Look up a condition.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Longest name (RFC 1123 label).
pub const MAX_NAME_LEN: usize = 63;

/// Check that `name` is an RFC 1123 label: 1–63 of `[a-z0-9-]`, starting and ending alphanumeric
/// (RFC 1123 §2.1, as Kubernetes and Incus use it). Errors name `field`.
pub fn validate_name(field: &str, name: &str) -> Result<(), SiteError> {
    if name.is_empty() {
        return Err(SiteError::invalid(field, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(SiteError::invalid(field, format!("must be at most {MAX_NAME_LEN} characters")));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let b = name.as_bytes();
    if !name.chars().all(ok_char) || b[0] == b'-' || b[b.len() - 1] == b'-' {
        return Err(SiteError::invalid(field, "must be an RFC 1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit"));
    }
    Ok(())
}

/// Most labels one resource may carry.
pub const MAX_LABELS: usize = 64;

/// Check labels: at most [`MAX_LABELS`]; keys 1–63 of `[A-Za-z0-9._/-]`; values at most 255 bytes.
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), SiteError> {
    if labels.len() > MAX_LABELS {
        return Err(SiteError::invalid("labels", format!("at most {MAX_LABELS} labels")));
    }
    for (k, v) in labels {
        let ok = !k.is_empty() && k.len() <= 63 && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'));
        if !ok {
            return Err(SiteError::invalid(format!("labels.{k}"), "label keys are 1-63 characters of [A-Za-z0-9._/-]"));
        }
        if v.len() > 255 {
            return Err(SiteError::invalid(format!("labels.{k}"), "label values are at most 255 bytes"));
        }
    }
    Ok(())
}

/// A reference to a resource from a URL path: its id or its name.
#[derive(Debug, Clone, PartialEq)]
pub enum Ref {
    /// A well-formed id of the expected kind.
    Id(String),
    /// A valid name.
    Name(String),
}

/// Parse an `{id-or-name}` path segment for `kind`. Errors: [`SiteError::InvalidId`] when it is
/// an id of another kind, or neither an id nor a valid name.
pub fn parse_ref(kind: Kind, s: &str) -> Result<Ref, SiteError> {
    if let Some(k) = Kind::of_id(s) {
        if k == kind {
            return Ok(Ref::Id(s.to_string()));
        }
        return Err(SiteError::InvalidId { message: format!("{s:?} is a {} id, not a {} id", k.as_str(), kind.as_str()) });
    }
    if validate_name("id", s).is_ok() {
        return Ok(Ref::Name(s.to_string()));
    }
    Err(SiteError::InvalidId { message: format!("{s:?} is neither a {} id nor a valid name", kind.as_str()) })
}

/// Apply an RFC 7386 JSON merge patch to `target`.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// A lower-case DNS name (labels of `a-z`, `0-9` and `-`, not at either end; 1–63 bytes each;
/// at most 253 bytes in all, at least one dot not required).
pub fn valid_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_rfc1123() {
        for ok in ["a", "web-1", "0abc", &"a".repeat(63)] {
            validate_name("name", ok).unwrap();
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64), "é"] {
            assert!(validate_name("name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dns_names_are_lower_case_labels() {
        assert!(valid_dns_name("a-1.example"));
        assert!(!valid_dns_name("-a.example") && !valid_dns_name("a..b") && !valid_dns_name("A.b") && !valid_dns_name("a_b"));
    }

    #[test]
    fn refs_distinguish_ids_names_and_garbage() {
        let id = Kind::Project.new_id();
        assert_eq!(parse_ref(Kind::Project, &id).unwrap(), Ref::Id(id.clone()));
        assert_eq!(parse_ref(Kind::Project, "default").unwrap(), Ref::Name("default".into()));
        assert!(matches!(parse_ref(Kind::Token, &id), Err(SiteError::InvalidId { .. })));
        assert!(matches!(parse_ref(Kind::Project, "Bad_Name"), Err(SiteError::InvalidId { .. })));
    }

    #[test]
    fn merge_patch_follows_rfc7386_examples() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1]});
        merge_patch(&mut t, &json!({"a": [2, 3]}));
        assert_eq!(t, json!({"a": [2, 3]}));
    }

    #[test]
    fn conditions_keep_transition_time_when_unchanged() {
        let mut s = Status::phase("Ready");
        s.set_condition("Ready", true, "Ok", "");
        let t0 = s.conditions[0].last_transition_time.clone();
        s.set_condition("Ready", true, "Ok", "again");
        assert_eq!(s.conditions[0].last_transition_time, t0);
        assert_eq!(s.conditions.len(), 1);
    }
}

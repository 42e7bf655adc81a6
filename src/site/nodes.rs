//! Nodes: the servers of the site. The local node registers itself at start-up, and its
//! reconciler keeps its status current from the host probe (a heartbeat every
//! `node.probe_interval_seconds`). Nodes whose heartbeat is older than three intervals are
//! marked `NotReady`.

/// What a node's hardware probe reports (its status), as the API shows it.
pub use crate::node::ProbeReport;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model::{self, Status};
use super::reconcile::{Controller, Outcome};
use super::{Kind, Site, SiteError};
use crate::state::repo;

/// Spec of a node.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Whether new workloads may be placed on it.
    #[serde(default = "yes")]
    pub schedulable: bool,
}

fn yes() -> bool {
    true
}

/// Validate a node spec given as JSON.
pub fn validate_spec(v: serde_json::Value) -> Result<serde_json::Value, SiteError> {
    let s: NodeSpec = serde_json::from_value(v).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
    Ok(serde_json::to_value(s)?)
}

const LOCAL_NODE_KEY: &str = "local_node_id";

impl Site {
    /// Register this server as a node (once; later starts find it again). Returns its id.
    pub fn register_local_node(&self) -> Result<String, SiteError> {
        if let Some(id) = self.read(|c| Ok(repo::meta_get(c, LOCAL_NODE_KEY)?))?
            && self.read(|c| Ok(repo::get(c, &id)?))?.is_some()
        {
            return Ok(id);
        }
        let name = self.node_name().to_string();
        let spec = serde_json::to_value(NodeSpec { schedulable: true })?;
        let r = match self.create(Kind::Node, None, &name, &Default::default(), &spec, &Status::phase("Pending"), None) {
            Ok(r) => r,
            Err(SiteError::AlreadyExists { .. }) => self.get(Kind::Node, None, &name)?,
            Err(e) => return Err(e),
        };
        self.write(|tx, _| Ok(repo::meta_set(tx, LOCAL_NODE_KEY, &r.id)?))?;
        Ok(r.id)
    }

    /// The local node's id, once registered.
    pub fn local_node_id(&self) -> Result<Option<String>, SiteError> {
        self.read(|c| Ok(repo::meta_get(c, LOCAL_NODE_KEY)?))
    }
}

/// The node reconciler.
pub struct NodeController;

impl Controller for NodeController {
    fn kind(&self) -> Kind {
        Kind::Node
    }

    async fn reconcile(&self, site: &Site, id: &str) -> Result<Outcome, SiteError> {
        let interval = Duration::from_secs(site.config().node.probe_interval_seconds.max(1));
        let id = id.to_string();
        site.run(move |site| {
            if site.local_node_id()?.as_deref() == Some(id.as_str()) {
                heartbeat(site, &id)?;
                return Ok(Outcome::RequeueAfter(interval));
            }
            mark_stale(site, &id, interval)?;
            Ok(Outcome::RequeueAfter(interval))
        })
        .await
    }
}

fn heartbeat(site: &Site, id: &str) -> Result<(), SiteError> {
    let report = crate::node::probe(&site.config().data_dir);
    let capacity = serde_json::json!({
        "cpus": report.cpus,
        "memory_bytes": report.memory_total_bytes,
        "memory_available_bytes": report.memory_available_bytes,
        "disk_bytes": report.disk_total_bytes,
        "disk_free_bytes": report.disk_free_bytes,
    });
    let probe = serde_json::to_value(&report)?;
    site.set_status(id, |st, row| {
        st.phase = "Ready".into();
        st.observed_generation = row.generation;
        st.set_condition("Ready", true, "Heartbeat", "the node's daemon is running and probed the host");
        st.extra.insert("heartbeat_at".into(), model::now_rfc3339().into());
        st.extra.insert("capacity".into(), capacity);
        st.extra.insert("probe".into(), probe);
    })?;
    Ok(())
}

fn mark_stale(site: &Site, id: &str, interval: Duration) -> Result<(), SiteError> {
    let limit = chrono::Duration::from_std(interval * 3).unwrap_or_default();
    site.set_status(id, |st, _| {
        let last = st.extra.get("heartbeat_at").and_then(|v| v.as_str()).and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
        let stale = last.is_none_or(|t| chrono::Utc::now().signed_duration_since(t) > limit);
        if stale {
            st.phase = "NotReady".into();
            st.set_condition("Ready", false, "HeartbeatMissing", "no heartbeat for three probe intervals");
        }
    })?;
    Ok(())
}

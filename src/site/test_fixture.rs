//! A site over recording engines in a temporary directory, for the reconcile-decision tests
//! that run without root (see [`super::engines::Engines::recording`]).

use std::collections::BTreeMap;

use serde_json::json;

use super::engines::{Engines, Recorders};
use super::{Kind, ProjectCtx, Site, Status};

/// The site, what its fakes recorded, and project `p`.
pub struct Fixture {
    /// Holds the data directory.
    pub dir: tempfile::TempDir,
    /// The site.
    pub site: Site,
    /// The fakes' records.
    pub rec: Recorders,
    /// Project `p`.
    pub p: ProjectCtx,
}

/// A fixture whose configuration `tune` may change first.
pub fn fixture_with(tune: impl FnOnce(&mut crate::config::Config)) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = crate::config::Config { data_dir: dir.path().to_path_buf(), ..Default::default() };
    tune(&mut cfg);
    let db = crate::state::Db::open(&dir.path().join("cloudlet.db")).expect("db");
    let (engines, rec) = Engines::recording(&cfg).expect("engines");
    let site = Site::new(db, cfg, "n1".into(), engines);
    site.create_project("p", &BTreeMap::new(), json!({})).expect("project");
    let p = site.project_by_name("p").expect("project");
    Fixture { dir, site, rec, p }
}

/// A fixture with the default configuration.
pub fn fixture() -> Fixture {
    fixture_with(|_| {})
}

impl Fixture {
    /// The stored status of `id`.
    pub fn status(&self, kind: Kind, id: &str) -> Status {
        serde_json::from_str(self.site.get(kind, Some(&self.p), id).expect("get").status.get()).expect("status")
    }
}

//! Each project's user namespace (user_namespaces(7)). A project is given a slot the first time
//! it runs a container or makes a network interface; the slot is kept in the state and never
//! reused, and names the project's host ids: `[container] userns_first_id + 65536 × slot`, 65,536
//! of them. The namespace is pinned on `DATA/userns/<slot>` when first needed (again after a
//! reboot). The project's containers join it, and its interfaces' network namespaces are made
//! inside it, so a container's capabilities act on its own network namespace and on nothing of
//! the host's; root in a container is an unprivileged host id that no other project shares.

use super::{Site, SiteError};
use crate::container::spec::{USERNS_IDS, UserNs};
use crate::state::repo;

impl Site {
    /// The pinned user namespace of `project` (`None`: workloads outside any project), or
    /// `None` when containers run without user namespaces (turned off in the site config, or
    /// refused by the host at start-up). Errors: the state's; `Conflict` when the id space has
    /// no range left for a new project; the host's when the pin cannot be made.
    pub fn project_userns(&self, project: Option<&str>) -> Result<Option<UserNs>, SiteError> {
        if !self.container_host().user_namespaces() {
            return Ok(None);
        }
        let key = project.unwrap_or("");
        let slot = match self.read(|c| Ok(repo::find_userns_slot(c, key)?))? {
            Some(s) => s,
            None => self.write(|tx, _| Ok(repo::userns_slot(tx, key)?))?,
        };
        let host_base = u64::from(self.config().container.userns_first_id) + u64::from(slot) * u64::from(USERNS_IDS);
        let host_base = u32::try_from(host_base)
            .ok()
            .filter(|b| b.checked_add(USERNS_IDS - 1).is_some())
            .ok_or_else(|| SiteError::Conflict(format!("no range of host ids is left for user namespace slot {slot}")))?;
        let ns = UserNs { path: self.pin_path(slot), host_base };
        self.container_host().pin_userns(&ns)?;
        Ok(Some(ns))
    }

    /// Remove the pin of a deleted project's user namespace (its slot stays taken). Errors: the
    /// state's or the host's.
    pub fn unpin_project_userns(&self, project: &str) -> Result<(), SiteError> {
        if let Some(slot) = self.read(|c| Ok(repo::find_userns_slot(c, project)?))? {
            self.container_host().unpin_userns(&self.pin_path(slot))?;
        }
        Ok(())
    }

    fn pin_path(&self, slot: u32) -> std::path::PathBuf {
        self.config().data_dir.join("userns").join(slot.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_fixture::fixture;
    use crate::container::host::ContainerCall;

    #[test]
    fn each_project_gets_its_own_range_once_and_keeps_it() {
        let f = fixture();
        let site = &f.site;
        let a = site.project_userns(Some("prj-a")).expect("a").expect("on");
        let b = site.project_userns(Some("prj-b")).expect("b").expect("on");
        let none = site.project_userns(None).expect("outside projects").expect("on");
        let first = site.config().container.userns_first_id;
        assert_eq!((a.host_base, b.host_base, none.host_base), (first, first + 65_536, first + 2 * 65_536));
        assert_eq!(site.project_userns(Some("prj-a")).expect("again"), Some(a.clone()), "a project keeps its range");
        assert_ne!(a.path, b.path);
        let pins: Vec<_> = f.rec.containers.take().into_iter().filter(|c| matches!(c, ContainerCall::PinUserns(_))).collect();
        assert_eq!(pins.len(), 3, "each namespace pinned once: {pins:?}");
        site.unpin_project_userns("prj-a").expect("unpin");
        assert_eq!(f.rec.containers.take(), vec![ContainerCall::UnpinUserns(a.path.clone())]);
        let again = site.project_userns(Some("prj-a")).expect("a again").expect("on");
        assert_eq!(again.host_base, a.host_base, "the slot stays the project's");
    }
}

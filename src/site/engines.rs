//! The engines and host seams a site works through, made once, in one place, before the site
//! opens: the network host (namespaces, links, nftables), the volume host (the storage pool's
//! files and mounts), the container host (shims, libcontainer, cgroups), the instance host (VMM
//! workers, their cgroups and taps) and the object store.
//! [`Engines::open`] makes the real ones from the configuration (the daemon calls it at
//! start-up); [`Engines::recording`] makes recording fakes, so reconcile decisions are tested
//! without root.
//!
//! The function engine is the exception: wasmtime's engine and linker are made on the first
//! function request (`Site::functions`), since making them touches several MiB of code and
//! reserves the instance pool, and most sites run few or no functions (the idle-memory goal of
//! `docs/benchmarks.md`).

use std::sync::Arc;

use super::SiteError;
use super::buckets::Sealer;
use super::instance_host::{InstanceHost, RecordingInstanceHost, WorkerHost};
use super::objects::ObjectState;
use crate::config::Config;
use crate::container::host::{ContainerHost, RecordingContainerHost, ShimHost};
use crate::net::nethost::{KernelNetHost, NetHost, RecordingNetHost};
use crate::object::BlobStore;
use crate::storage::host::{PoolHost, RecordingVolumeHost, VolumeHost};

/// What a [`super::Site`] is built over.
pub struct Engines {
    /// Network changes of the VPC and interface reconcilers.
    pub net: Arc<dyn NetHost>,
    /// The storage pool of volumes and snapshots.
    pub volumes: Arc<dyn VolumeHost>,
    /// Containers' processes, overlays and cgroups.
    pub containers: Arc<dyn ContainerHost>,
    /// Instances' workers, cgroups and taps.
    pub instances: Arc<dyn InstanceHost>,
    /// The object store's blobs and the access-key sealer.
    pub objects: ObjectState,
}

/// The fakes behind [`Engines::recording`], to read what the reconcilers asked of the host.
pub struct Recorders {
    /// The network calls.
    pub net: Arc<RecordingNetHost>,
    /// The storage pool calls.
    pub volumes: Arc<RecordingVolumeHost>,
    /// The container calls.
    pub containers: Arc<RecordingContainerHost>,
    /// The instance worker calls.
    pub instances: Arc<RecordingInstanceHost>,
}

fn objects(config: &Config) -> Result<ObjectState, SiteError> {
    let s3 = &config.s3;
    let dir = if s3.dir.as_os_str().is_empty() { config.data_dir.join("objects") } else { s3.dir.clone() };
    Ok(ObjectState { blobs: BlobStore::open(&dir, s3.fsync)?, sealer: Sealer::open(&config.data_dir)? })
}

impl Engines {
    /// The real host. Opens the storage pool (`[storage] pool_dir`, default `DATA/storage`:
    /// leftovers of interrupted copies removed, volumes left frozen thawed) and the object store
    /// (`[s3] dir`, default `DATA/objects`: unfinished writes removed; the site key loaded or
    /// made). Probes whether containers can run in user namespaces (see `ShimHost::open`).
    /// Errors: the host's, naming the directory.
    pub fn open(config: &Config) -> Result<Engines, SiteError> {
        let pool_dir = match &config.storage.pool_dir {
            d if d.as_os_str().is_empty() => config.data_dir.join("storage"),
            d => d.clone(),
        };
        Ok(Engines {
            net: Arc::new(KernelNetHost),
            volumes: Arc::new(PoolHost::open(&pool_dir).map_err(SiteError::Storage)?),
            containers: Arc::new(ShimHost::open(&config.data_dir, config.container.user_namespaces, config.container.userns_first_id)),
            instances: Arc::new(WorkerHost),
            objects: objects(config)?,
        })
    }

    /// Recording fakes for the network, the pool, the containers and the instances; the object
    /// store is the real one under `config.data_dir` (plain files, no privilege needed).
    pub fn recording(config: &Config) -> Result<(Engines, Recorders), SiteError> {
        let r = Recorders { net: Arc::default(), volumes: Arc::default(), containers: Arc::default(), instances: Arc::default() };
        let e = Engines {
            net: r.net.clone(),
            volumes: r.volumes.clone(),
            containers: r.containers.clone(),
            instances: r.instances.clone(),
            objects: objects(config)?,
        };
        Ok((e, r))
    }
}

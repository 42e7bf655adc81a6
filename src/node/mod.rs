//! Node assembly: probe what a host can do, and check it against a hardware profile.
//!
//! `cloudlet node check [--profile firmware-profiles/NAME.toml]` is the acceptance check a bare
//! server must pass before it joins a site; the site daemon runs the same probe for its node's
//! status.

pub mod kvm;
pub mod ns;
pub mod probe;
pub mod profile;

pub use probe::{Feature, ProbeReport, probe};
pub use profile::{CheckLine, Profile, ProfileError};

//! cloudlet: an edge cloud in one binary.
//!
//! Imports go one way: [`api`] → [`site`] → engines ([`node`], [`net`], [`image`], and later
//! `container`, `function`, `vmm`, `storage`) → [`state`] and OS helpers. See `docs/design.md`.

pub mod api;
pub mod cli;
pub mod config;
pub mod container;
pub mod daemon;
pub mod function;
pub mod image;
mod layers;
pub mod link;
pub mod net;
pub mod node;
pub mod object;
pub mod portal;
pub mod site;
pub mod state;
pub mod storage;
pub use cloudlet_vmm as vmm;

/// The path of this binary, resolved once (the first call; the daemon makes it at start-up).
/// Shims and VMM workers are started from it: after the binary is replaced in place (a package
/// upgrade renames a new file over it), `std::env::current_exe` would name a deleted file
/// (`… (deleted)`) and nothing could start until a restart. Errors: the path cannot be read
/// from `/proc/self/exe`.
pub fn self_exe() -> std::io::Result<std::path::PathBuf> {
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    if let Some(p) = PATH.get() {
        return Ok(p.clone());
    }
    let p = std::env::current_exe()?;
    Ok(PATH.get_or_init(|| p).clone())
}

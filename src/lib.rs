//! cloudlet: an edge cloud in one binary.
//!
//! Imports go one way: [`api`] → [`site`] → engines ([`node`], [`net`], [`image`], and later
//! `container`, `function`, `vmm`, `storage`) → [`state`] and OS helpers. See `docs/design.md`.

pub mod api;
pub mod cli;
pub mod config;
pub mod console;
pub mod container;
pub mod daemon;
pub mod function;
pub mod image;
pub mod net;
pub mod node;
pub mod object;
pub mod site;
pub mod state;
pub mod storage;
pub use cloudlet_vmm as vmm;

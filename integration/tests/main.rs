//! Every integration test of cloudlet, in one test binary: each file is a module (run one with
//! `cargo test --test integration FILE::`). They run the real binary (`target/release/cloudlet`,
//! see `common`) against real namespaces, nftables, libcontainer, S3 clients and KVM.

mod common;

mod api;
mod cli;
mod container_engine;
mod containers;
mod containers_input;
mod crash;
mod drift;
mod events;
mod functions;
mod image_pull;
mod instances;
mod net_render;
mod portal;
mod portal_offline;
mod portal_outbox;
mod postgres;
mod quotas;
mod s3;
mod tenant_attacks;
mod volumes;
mod vpc_api;
mod vpc_services;
mod vpc_traffic;
mod vpc_uplink;

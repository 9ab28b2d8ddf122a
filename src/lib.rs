//! rackboot: a PXE boot appliance — proxyDHCP and TFTP in one binary.
//!
//! Layers, each knowing only the one below it:
//! - [`wire`]: zero-copy views and emitters for TFTP, BOOTP/DHCP and PXE options;
//! - [`tftp`] and [`dhcp`]: sans-IO protocol state machines and policies;
//! - [`files`]: safe path resolution and the shared cache of mapped files;
//! - [`reactor`]: the sharded io_uring (or epoll) event loops that move packets;
//! - [`config`]: command line and configuration files.

pub mod check;
pub mod config;
pub mod dhcp;
pub mod dnsmasq_conf;
pub mod doctor;
pub mod files;
pub mod hosts_dir;
pub mod http;
pub mod init;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod privileges;
pub mod published;
pub mod reactor;
pub mod reload;
pub mod sandbox;
pub mod service;
pub mod signals;
pub mod status;
pub mod suggest;
pub mod tftp;
pub mod wire;

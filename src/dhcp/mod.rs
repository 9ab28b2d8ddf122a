//! The proxyDHCP side of rackboot: which PXE clients to answer and with
//! what, as a sans-IO policy over the wire views of [`crate::wire::dhcp`]
//! and [`crate::wire::pxe`].
//!
//! Feed [`proxy::Policy::answer`] one received datagram ([`proxy::Request`])
//! and a buffer; get back a [`proxy::Reply`] (length, destination, source
//! port, delay) or a [`proxy::Silence`] saying why not.
#![forbid(unsafe_code)]

pub mod arch;
pub mod config;
pub mod mac;
pub mod proxy;
pub mod silence;

pub use arch::Arch;
pub use config::{BootEntry, ConfigError, MacOverride, Prompt, ProxyConfig, ProxySettings};
pub use mac::MacPattern;
pub use proxy::{
    Answered, Destination, MAX_REPLY_LEN, Policy, Reply, ReplyKind, Request, ServerPort, Silence,
};
pub use silence::{Reason, SilenceCounts};

//! Wire formats: zerocopy views over received bytes and emitters into
//! caller-owned buffers. No allocation, no I/O, no clock; every malformed
//! input is an `Err`, never a panic.
#![forbid(unsafe_code)]

pub mod dhcp;
pub mod http;
pub mod netlink;
pub mod pxe;
pub mod tftp;

//! HTTP/1.1 file serving from the TFTP root, as sans-IO parts over the
//! request view of [`crate::wire::http`]: [`range`] (one byte range, or the
//! whole file, or 416), [`request`] (method, decoded path, keep-alive,
//! preconditions), [`response`] (heads and error answers) and [`conn`]
//! (one connection: pipelining, partial writes, timeouts). The reactor only
//! moves bytes: it reads into the connection's buffer, looks files up in
//! the shared cache and sends the head and the mapped file's pages.
#![forbid(unsafe_code)]

pub mod conn;
pub mod range;
pub mod request;
pub mod response;

pub use conn::{Connection, Limits, Lookup, Served, Transmit};
pub use request::Method;
pub use response::{Status, Version};

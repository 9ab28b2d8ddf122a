//! Files served to clients: safe resolution of requested names under the
//! root, and a cache that maps each file once and shares the mapping with
//! every transfer on every shard.

pub mod cache;
pub mod lease;
pub mod linger;
pub mod remap;
pub mod resolve;

pub use cache::{FileCache, ServedFile};
pub use remap::{Naming, RemapRule, UniqueRoot};
pub use resolve::{ResolveError, Root, RootOptions};

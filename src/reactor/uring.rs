//! The io_uring backend (being written).

use std::io;

use super::shard::ShardCore;
use super::Shared;

pub fn probe() -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "io_uring backend not built yet"))
}

pub fn run(core: &mut ShardCore, shared: &Shared) -> io::Result<()> {
    super::epoll::run(core, shared)
}

//! The machine's network interfaces as the kernel reports them: a table of
//! links (index, name, MTU) and their IPv4 addresses with prefix lengths,
//! kept current from rtnetlink by one watcher and read without a syscall
//! by every thread that answers packets; and the neighbour table, for a
//! client's hardware address.
#![forbid(unsafe_code)]

pub mod interfaces;
pub mod neighbours;

pub use interfaces::{Interface, InterfaceTable, Interfaces, View};

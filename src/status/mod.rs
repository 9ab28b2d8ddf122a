//! Per-machine boot status: what each recent client reached, and when.

pub mod event;

pub use event::{BootEvent, EventQueue, FileOutcome, Name, Protocol, StatusSink};

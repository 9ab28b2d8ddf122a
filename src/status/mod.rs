//! Per-machine boot status: what each recent client reached, and when.

pub mod control;
pub mod event;
pub mod table;

pub use event::{BootEvent, EventQueue, FileOutcome, Name, Protocol, StatusSink};

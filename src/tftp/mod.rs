//! TFTP protocol logic, sans-IO: option negotiation and the transfer state
//! machines. Time comes in as an argument; packets go out as values.
#![forbid(unsafe_code)]

pub mod netascii;
pub mod options;
pub mod rtt;
pub mod transfer;
pub mod upload;

pub use options::{Limits, Negotiated};
pub use transfer::{Outcome, ReadTransfer, Timing, Transmit};

//! What a TFTP shard tells the metrics and the boot-status table about a
//! request: the mapping from its own outcomes to their labels and events.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::files::ResolveError;
use crate::metrics::{Refusal, TransferOutcome};
use crate::status::{BootEvent, FileOutcome, Name, Protocol, StatusSink};
use crate::tftp::Outcome;

pub fn refusal(e: ResolveError) -> Refusal {
    match e {
        ResolveError::NotFound => Refusal::NotFound,
        ResolveError::Refused => Refusal::AccessViolation,
        ResolveError::Busy => Refusal::FileBusy,
        ResolveError::Overloaded => Refusal::OutOfDescriptors,
        ResolveError::TooLargeForNetascii => Refusal::TooLargeForNetascii,
    }
}

pub fn metric_outcome(outcome: Outcome, probe: bool) -> TransferOutcome {
    match outcome {
        _ if probe => TransferOutcome::SizeProbe,
        Outcome::Complete => TransferOutcome::Complete,
        Outcome::CompleteUnconfirmed => TransferOutcome::Unconfirmed,
        Outcome::ClientError(_) => TransferOutcome::ClientError,
        Outcome::TimedOut => TransferOutcome::TimedOut,
        Outcome::Superseded => TransferOutcome::Superseded,
    }
}

/// A request refused before any byte.
pub fn post_refused(sink: &StatusSink, client: IpAddr, name: &[u8], reason: Refusal) {
    if !sink.is_on() {
        return;
    }
    sink.post(BootEvent::File {
        ip: client,
        protocol: Protocol::Tftp,
        name: Name::new(name),
        outcome: FileOutcome::Refused(reason.words()),
        bytes: 0,
        elapsed: Duration::ZERO,
    });
}

/// A read that ended, however it ended.
pub fn post_read(
    sink: &StatusSink,
    peer: SocketAddr,
    name: &str,
    outcome: Outcome,
    probe: bool,
    bytes: u64,
    elapsed: Duration,
) {
    if !sink.is_on() {
        return;
    }
    let outcome = match outcome {
        _ if probe => FileOutcome::Probe,
        o if o.is_success() => FileOutcome::Complete,
        Outcome::ClientError(_) => FileOutcome::Failed("client sent an error"),
        Outcome::Superseded => FileOutcome::Failed("asked again from the same port"),
        _ => FileOutcome::Failed("timed out"),
    };
    sink.post(BootEvent::File {
        ip: peer.ip(),
        protocol: Protocol::Tftp,
        name: Name::new(name.as_bytes()),
        outcome,
        bytes,
        elapsed,
    });
}

//! What the packet paths tell the boot-status table: one small, fixed-size
//! event per proxy reply (or refusal) and per file served, handed over
//! without allocating and without waking anyone.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::dhcp::{Arch, ReplyKind, silence::Reason};

/// Bytes of a name (file, vendor class) an event carries; longer names
/// are cut and marked as cut.
pub const NAME_MAX: usize = 96;

/// A name copied into the event, cut at [`NAME_MAX`] bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name {
    len: u8,
    cut: bool,
    bytes: [u8; NAME_MAX],
}

impl Name {
    pub fn new(name: &[u8]) -> Name {
        let len = name.len().min(NAME_MAX);
        let mut bytes = [0; NAME_MAX];
        bytes[..len].copy_from_slice(&name[..len]);
        Name {
            len: len as u8,
            cut: name.len() > NAME_MAX,
            bytes,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Whether the name was longer than [`NAME_MAX`].
    pub fn is_cut(&self) -> bool {
        self.cut
    }

    /// As text, lossily, with `…` when cut.
    pub fn to_text(&self) -> String {
        let mut text = String::from_utf8_lossy(self.as_bytes()).into_owned();
        if self.cut {
            text.push('…');
        }
        text
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_text())
    }
}

/// How a file request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOutcome {
    /// Every byte delivered.
    Complete,
    /// A size probe (tsize, then ERROR 8) or a HEAD: not a failure.
    Probe,
    /// Refused before any byte: the reason in the firmware's terms
    /// ("not found", "access violation", "server busy", HTTP status).
    Refused(&'static str),
    /// Started but not finished ("timed out", "client error", "aborted").
    Failed(&'static str),
}

/// How a file was fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tftp,
    Http,
}

/// One thing a client did, as the server saw it.
#[derive(Debug, Clone, Copy)]
pub enum BootEvent {
    /// A proxyDHCP reply: the offer on port 67 or the ACK on 4011.
    Proxy {
        mac: [u8; 6],
        /// ciaddr of a 4011 request (the address the client was given).
        ip: Option<Ipv4Addr>,
        arch: Arch,
        kind: ReplyKind,
        /// Option 60 as sent.
        vendor_class: Name,
        /// The boot file in the reply (empty with a BIOS menu offer).
        file: Name,
    },
    /// A PXE client deliberately not answered.
    ProxySilence { mac: [u8; 6], reason: Reason },
    /// A file request that ended (or was refused).
    File {
        ip: IpAddr,
        protocol: Protocol,
        name: Name,
        outcome: FileOutcome,
        bytes: u64,
        elapsed: Duration,
    },
}

/// Where the packet paths post events: a bounded queue that the status
/// table drains on its own schedule. Posting never blocks, allocates or
/// makes a system call (the reader polls rather than waits, so no sender
/// ever has anyone to wake); when the table falls behind, events are
/// dropped and counted.
#[derive(Clone)]
pub struct StatusSink {
    queue: Option<crossbeam_channel::Sender<BootEvent>>,
    dropped: Arc<AtomicU64>,
}

impl StatusSink {
    /// A sink that throws everything away (no status table).
    pub fn none() -> StatusSink {
        StatusSink {
            queue: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A sink with room for `capacity` events, and its reading end.
    pub fn bounded(capacity: usize) -> (StatusSink, EventQueue) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        (
            StatusSink {
                queue: Some(tx),
                dropped: dropped.clone(),
            },
            EventQueue { rx, dropped },
        )
    }

    #[inline]
    pub fn post(&self, event: BootEvent) {
        if let Some(queue) = &self.queue
            && queue.try_send(event).is_err()
        {
            // Only when the queue is full: the rare path may pay an RMW.
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }
}

/// The reading end of a [`StatusSink`].
pub struct EventQueue {
    rx: crossbeam_channel::Receiver<BootEvent>,
    dropped: Arc<AtomicU64>,
}

impl EventQueue {
    /// Every event posted so far, without waiting.
    pub fn drain(&self) -> impl Iterator<Item = BootEvent> + '_ {
        self.rx.try_iter()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_and_marked() {
        let short = Name::new(b"pxelinux.0");
        assert_eq!(short.as_bytes(), b"pxelinux.0");
        assert!(!short.is_cut());
        let long = vec![b'a'; NAME_MAX + 5];
        let cut = Name::new(&long);
        assert_eq!(cut.as_bytes().len(), NAME_MAX);
        assert!(cut.is_cut());
        assert!(cut.to_text().ends_with('…'));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (sink, queue) = StatusSink::bounded(2);
        let event = BootEvent::ProxySilence {
            mac: [0; 6],
            reason: Reason::IgnoredMac,
        };
        for _ in 0..5 {
            sink.post(event);
        }
        assert_eq!(queue.drain().count(), 2);
        assert_eq!(queue.dropped(), 3);
        sink.post(event);
        assert_eq!(queue.drain().count(), 1);
    }
}

//! Why a request got no reply, and the per-reason counters a serving loop
//! keeps: a storm of malformed or non-PXE packets is cheap to drop, and
//! the operator can still see what it was.

use super::arch::Arch;
use crate::wire::dhcp as wire;

/// Why a request got no reply; callers count these and log them at debug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Silence {
    #[error("malformed packet: {0}")]
    Malformed(wire::Error),
    #[error("not a BOOTREQUEST")]
    NotRequest,
    #[error("not a PXE client (option 60)")]
    NotPxe,
    #[error("no DHCP message type (plain BOOTP)")]
    NoMessageType,
    #[error("DHCPINFORM")]
    Inform,
    #[error("DHCPREQUEST on port 67 (the DHCP server's business)")]
    RequestOn67,
    #[error("DHCP message type {message_type} is not answered on port {port}")]
    UnexpectedMessage { message_type: u8, port: u16 },
    #[error("no client architecture (option 93 missing or empty)")]
    NoArch,
    #[error("unsupported client architecture {0}")]
    UnknownArch(u16),
    #[error("MAC address is on the ignore list")]
    IgnoredMac,
    #[error("nothing configured for architecture {0}")]
    NoBootEntry(Arch),
    #[error("client picked local boot")]
    LocalBootItem,
    #[error("unknown boot item {item_type:#06x} layer {layer}")]
    UnknownBootItem { item_type: u16, layer: u16 },
    #[error("reply does not fit: {0}")]
    ReplyTooLarge(wire::Error),
}

impl Silence {
    /// The reason without its details: a counter's key.
    pub fn reason(&self) -> Reason {
        match self {
            Silence::Malformed(_) => Reason::Malformed,
            Silence::NotRequest => Reason::NotRequest,
            Silence::NotPxe => Reason::NotPxe,
            Silence::NoMessageType => Reason::NoMessageType,
            Silence::Inform => Reason::Inform,
            Silence::RequestOn67 => Reason::RequestOn67,
            Silence::UnexpectedMessage { .. } => Reason::UnexpectedMessage,
            Silence::NoArch => Reason::NoArch,
            Silence::UnknownArch(_) => Reason::UnknownArch,
            Silence::IgnoredMac => Reason::IgnoredMac,
            Silence::NoBootEntry(_) => Reason::NoBootEntry,
            Silence::LocalBootItem => Reason::LocalBootItem,
            Silence::UnknownBootItem { .. } => Reason::UnknownBootItem,
            Silence::ReplyTooLarge(_) => Reason::ReplyTooLarge,
        }
    }
}

/// Every reason a datagram to the proxy goes unanswered: the policy's
/// [`Silence`]s and the serving loop's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Malformed,
    NotRequest,
    NotPxe,
    NoMessageType,
    Inform,
    RequestOn67,
    UnexpectedMessage,
    NoArch,
    UnknownArch,
    IgnoredMac,
    NoBootEntry,
    LocalBootItem,
    UnknownBootItem,
    ReplyTooLarge,
    /// The receiving interface has no address in a `dhcp-range` proxy net.
    OutsideRanges,
    /// Larger than the receive buffer, or without packet info.
    Unreadable,
    /// The queue of delayed replies was full.
    DelayQueueFull,
}

impl Reason {
    pub const ALL: [Reason; 17] = [
        Reason::Malformed,
        Reason::NotRequest,
        Reason::NotPxe,
        Reason::NoMessageType,
        Reason::Inform,
        Reason::RequestOn67,
        Reason::UnexpectedMessage,
        Reason::NoArch,
        Reason::UnknownArch,
        Reason::IgnoredMac,
        Reason::NoBootEntry,
        Reason::LocalBootItem,
        Reason::UnknownBootItem,
        Reason::ReplyTooLarge,
        Reason::OutsideRanges,
        Reason::Unreadable,
        Reason::DelayQueueFull,
    ];

    /// A stable snake_case label (logs, metrics).
    pub fn label(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::NotRequest => "not_request",
            Reason::NotPxe => "not_pxe",
            Reason::NoMessageType => "no_message_type",
            Reason::Inform => "inform",
            Reason::RequestOn67 => "request_on_67",
            Reason::UnexpectedMessage => "unexpected_message",
            Reason::NoArch => "no_arch",
            Reason::UnknownArch => "unknown_arch",
            Reason::IgnoredMac => "ignored_mac",
            Reason::NoBootEntry => "no_boot_entry",
            Reason::LocalBootItem => "local_boot_item",
            Reason::UnknownBootItem => "unknown_boot_item",
            Reason::ReplyTooLarge => "reply_too_large",
            Reason::OutsideRanges => "outside_ranges",
            Reason::Unreadable => "unreadable",
            Reason::DelayQueueFull => "delay_queue_full",
        }
    }
}

/// Unanswered datagrams by reason: plain counters, one set per thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SilenceCounts([u64; Reason::ALL.len()]);

impl SilenceCounts {
    pub fn add(&mut self, reason: Reason) {
        self.0[reason as usize] += 1;
    }

    pub fn add_n(&mut self, reason: Reason, n: u64) {
        self.0[reason as usize] += n;
    }

    pub fn get(&self, reason: Reason) -> u64 {
        self.0[reason as usize]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The reasons seen at least once, with their counts.
    pub fn nonzero(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL
            .into_iter()
            .map(|r| (r, self.get(r)))
            .filter(|&(_, n)| n > 0)
    }
}

impl std::fmt::Display for SilenceCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (reason, n) in self.nonzero() {
            write!(f, "{}{}={n}", if first { "" } else { " " }, reason.label())?;
            first = false;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_slot_and_label() {
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i);
        }
        let mut labels: Vec<_> = Reason::ALL.iter().map(|r| r.label()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), Reason::ALL.len());
        let mut counts = SilenceCounts::default();
        assert_eq!(counts.to_string(), "none");
        counts.add(Silence::NotPxe.reason());
        counts.add(Reason::NotPxe);
        counts.add(Reason::DelayQueueFull);
        assert_eq!(counts.to_string(), "not_pxe=2 delay_queue_full=1");
        assert_eq!(counts.total(), 3);
    }
}

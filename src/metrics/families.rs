//! The metric families each thread owns, with their label values: a TFTP
//! and an HTTP set per shard, one proxyDHCP set. Every cell has exactly one
//! writer (its thread); see `cell`.

use super::cell::{Counter, Gauge, Histogram};
use crate::dhcp::{Arch, ReplyKind, silence::Reason};

/// Transfer durations, seconds: from a pxelinux.cfg miss to a slow initrd.
pub static DURATION_BOUNDS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

/// Per-transfer rates, bytes per second: 64 KiB/s to 4 GiB/s, by 4.
pub static RATE_BOUNDS: [f64; 9] = [
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
];

/// `direction` label of TFTP requests and transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Read, Direction::Write];

    pub fn label(self) -> &'static str {
        match self {
            Direction::Read => "read",
            Direction::Write => "write",
        }
    }
}

/// `outcome` label of a finished TFTP transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferOutcome {
    /// Every block acknowledged (or an upload stored).
    Complete,
    /// Every block sent, the last ACK never came.
    Unconfirmed,
    /// tsize asked, then ERROR 8 before any data: UEFI's size probe.
    SizeProbe,
    ClientError,
    TimedOut,
    Superseded,
    /// An upload that was not stored.
    Failed,
}

impl TransferOutcome {
    pub const ALL: [TransferOutcome; 7] = [
        TransferOutcome::Complete,
        TransferOutcome::Unconfirmed,
        TransferOutcome::SizeProbe,
        TransferOutcome::ClientError,
        TransferOutcome::TimedOut,
        TransferOutcome::Superseded,
        TransferOutcome::Failed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TransferOutcome::Complete => "complete",
            TransferOutcome::Unconfirmed => "complete_unconfirmed",
            TransferOutcome::SizeProbe => "size_probe",
            TransferOutcome::ClientError => "client_error",
            TransferOutcome::TimedOut => "timed_out",
            TransferOutcome::Superseded => "superseded",
            TransferOutcome::Failed => "failed",
        }
    }

    pub fn is_success(self) -> bool {
        matches!(
            self,
            TransferOutcome::Complete | TransferOutcome::Unconfirmed
        )
    }
}

/// `reason` label of a refused TFTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    AccessViolation,
    FileBusy,
    OutOfDescriptors,
    TooLargeForNetascii,
    ServerBusy,
    UploadsDisabled,
    UploadRefused,
    UploadTooLarge,
}

impl Refusal {
    pub const ALL: [Refusal; 9] = [
        Refusal::NotFound,
        Refusal::AccessViolation,
        Refusal::FileBusy,
        Refusal::OutOfDescriptors,
        Refusal::TooLargeForNetascii,
        Refusal::ServerBusy,
        Refusal::UploadsDisabled,
        Refusal::UploadRefused,
        Refusal::UploadTooLarge,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::NotFound => "not_found",
            Refusal::AccessViolation => "access_violation",
            Refusal::FileBusy => "file_busy",
            Refusal::OutOfDescriptors => "out_of_descriptors",
            Refusal::TooLargeForNetascii => "too_large_for_netascii",
            Refusal::ServerBusy => "server_busy",
            Refusal::UploadsDisabled => "uploads_disabled",
            Refusal::UploadRefused => "upload_refused",
            Refusal::UploadTooLarge => "upload_too_large",
        }
    }

    /// In the words a boot status shows.
    pub fn words(self) -> &'static str {
        match self {
            Refusal::NotFound => "file not found",
            Refusal::AccessViolation => "access violation",
            Refusal::FileBusy => "file busy",
            Refusal::OutOfDescriptors => "out of file descriptors",
            Refusal::TooLargeForNetascii => "too large for netascii",
            Refusal::ServerBusy => "server busy",
            Refusal::UploadsDisabled => "uploads disabled",
            Refusal::UploadRefused => "upload refused",
            Refusal::UploadTooLarge => "upload too large",
        }
    }
}

/// One shard's TFTP side.
#[derive(Debug)]
pub struct TftpMetrics {
    pub requests: [Counter; Direction::ALL.len()],
    pub transfers: [[Counter; TransferOutcome::ALL.len()]; Direction::ALL.len()],
    pub refused: [Counter; Refusal::ALL.len()],
    /// Datagrams that were not TFTP, or not what the transfer expected.
    pub malformed: Counter,
    pub sent_bytes: Counter,
    pub received_bytes: Counter,
    pub blocks_resent: Counter,
    /// Retransmission timeouts (a window sent again after silence).
    pub timeouts: Counter,
    pub active: Gauge,
    /// Completed reads only: how long a file took, and how fast it went.
    pub duration: Histogram,
    pub rate: Histogram,
}

impl Default for TftpMetrics {
    fn default() -> Self {
        TftpMetrics {
            requests: Default::default(),
            transfers: Default::default(),
            refused: Default::default(),
            malformed: Counter::default(),
            sent_bytes: Counter::default(),
            received_bytes: Counter::default(),
            blocks_resent: Counter::default(),
            timeouts: Counter::default(),
            active: Gauge::default(),
            duration: Histogram::new(&DURATION_BOUNDS),
            rate: Histogram::new(&RATE_BOUNDS),
        }
    }
}

impl TftpMetrics {
    #[inline]
    pub fn request(&self, direction: Direction) {
        self.requests[direction as usize].inc();
    }

    #[inline]
    pub fn refuse(&self, reason: Refusal) {
        self.refused[reason as usize].inc();
    }

    #[inline]
    pub fn transfer(&self, direction: Direction, outcome: TransferOutcome) {
        self.transfers[direction as usize][outcome as usize].inc();
    }

    /// A read ended: its outcome, the bytes acknowledged, its resends and
    /// timeouts, and for a complete one its duration and rate.
    pub fn read_ended(
        &self,
        outcome: TransferOutcome,
        bytes: u64,
        transfer: &crate::tftp::transfer::TransferStats,
        elapsed: std::time::Duration,
    ) {
        self.transfer(Direction::Read, outcome);
        self.sent_bytes.add(bytes);
        self.blocks_resent.add(transfer.blocks_resent);
        self.timeouts.add(transfer.timeouts);
        if outcome.is_success() {
            let secs = elapsed.as_secs_f64();
            self.duration.observe(secs);
            self.rate.observe(bytes as f64 / secs.max(1e-6));
        }
    }

    /// An upload ended, stored or not.
    pub fn write_ended(&self, stored: bool, bytes: u64) {
        let outcome = if stored {
            TransferOutcome::Complete
        } else {
            TransferOutcome::Failed
        };
        self.transfer(Direction::Write, outcome);
        if stored {
            self.received_bytes.add(bytes);
        }
    }

    /// The totals logged at shutdown.
    pub fn summary(&self) -> crate::reactor::shard::ShardStats {
        let sum = |cells: &[Counter]| cells.iter().map(Counter::get).sum::<u64>();
        let by = |outcome: TransferOutcome| {
            Direction::ALL
                .iter()
                .map(|&d| self.transfers[d as usize][outcome as usize].get())
                .sum::<u64>()
        };
        let completed = by(TransferOutcome::Complete) + by(TransferOutcome::Unconfirmed);
        let probes = by(TransferOutcome::SizeProbe);
        let all: u64 = self.transfers.iter().map(|d| sum(d)).sum();
        crate::reactor::shard::ShardStats {
            requests: sum(&self.requests),
            completed,
            failed: all - completed - probes,
            refused: sum(&self.refused),
            probes,
            malformed: self.malformed.get(),
            bytes: self.sent_bytes.get(),
        }
    }
}

/// `code` label of HTTP responses: the status class.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One shard's HTTP side.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    pub connections: Counter,
    /// Connections turned away with 503 (over the cap).
    pub refused: Counter,
    pub responses: [Counter; STATUS_CLASSES.len()],
    /// Responses cut short (file changed, client gone, stalled).
    pub aborted: Counter,
    pub sent_bytes: Counter,
    pub open: Gauge,
}

impl HttpMetrics {
    #[inline]
    pub fn response(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.responses[class].inc();
    }

    /// The totals logged at shutdown.
    pub fn summary(&self) -> crate::reactor::http::HttpStats {
        let r = |i: usize| self.responses[i].get();
        crate::reactor::http::HttpStats {
            connections: self.connections.get(),
            responses: (0..STATUS_CLASSES.len()).map(r).sum(),
            ok: r(1) + r(2),
            client_errors: r(3),
            server_errors: r(4),
            bytes: self.sent_bytes.get(),
            aborted: self.aborted.get(),
            refused: self.refused.get(),
        }
    }
}

/// `kind` label of proxyDHCP replies.
pub fn reply_kind_label(kind: ReplyKind) -> &'static str {
    match kind {
        ReplyKind::Offer => "offer",
        ReplyKind::Ack => "ack",
    }
}

pub const REPLY_KINDS: [ReplyKind; 2] = [ReplyKind::Offer, ReplyKind::Ack];

/// The proxyDHCP thread's set.
#[derive(Debug, Default)]
pub struct ProxyMetrics {
    pub replies: [[Counter; Arch::ALL.len()]; REPLY_KINDS.len()],
    pub silences: [Counter; Reason::ALL.len()],
    /// Replies the kernel refused to send.
    pub unsent: Counter,
}

impl ProxyMetrics {
    #[inline]
    pub fn reply(&self, kind: ReplyKind, arch: Arch) {
        let k = match kind {
            ReplyKind::Offer => 0,
            ReplyKind::Ack => 1,
        };
        self.replies[k][arch as usize].inc();
    }

    #[inline]
    pub fn silence(&self, reason: Reason) {
        self.silences[reason as usize].inc();
    }

    pub fn offers(&self) -> u64 {
        self.replies[0].iter().map(Counter::get).sum()
    }

    pub fn acks(&self) -> u64 {
        self.replies[1].iter().map(Counter::get).sum()
    }
}

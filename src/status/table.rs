//! The boot-status table: the most recent machines, keyed by MAC, each
//! with the stages its boot reached and when. Fed from the
//! [`EventQueue`](super::EventQueue) by the control thread, read by
//! `rackboot status`.
//!
//! Memory is fixed at construction: every entry has the same size (names
//! are cut at [`NAME_MAX`](super::event::NAME_MAX) bytes, the stages are a
//! fixed array), the entries live in one preallocated vector, and both
//! indexes (key → entry, IP → MAC) are allocated for twice the capacity so
//! that they never grow. Beyond the capacity the least recently seen
//! machine is evicted. [`Table::memory_bound`] is the upper bound of the
//! heap the table holds, whatever the number of clients.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::event::{BootEvent, FileOutcome, Name, Protocol};
use crate::dhcp::{Arch, ReplyKind};

/// Machines kept by default.
pub const DEFAULT_CAPACITY: usize = 4096;

/// An Offer after this long without news from a machine starts a new boot
/// (its stages are cleared). Shorter gaps are the same boot: a chained
/// iPXE asking DHCP again, a kernel's own DHCP.
pub const BOOT_GAP_MS: u64 = 30_000;

/// How often an address not tied to a MAC is looked up in the kernel's
/// neighbour table.
const ARP_RETRY_MS: u64 = 1_000;

/// The stages of a network boot, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// The proxyDHCP offer (port 67).
    Offer = 0,
    /// The 4011 ACK.
    Ack = 1,
    /// The offered boot file, fetched.
    BootFile = 2,
    /// A loader configuration (pxelinux.cfg/*, grub.cfg, *.ipxe, ...).
    Config = 3,
    Kernel = 4,
    Initrd = 5,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Offer,
        Stage::Ack,
        Stage::BootFile,
        Stage::Config,
        Stage::Kernel,
        Stage::Initrd,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Stage::Offer => "offer",
            Stage::Ack => "ack",
            Stage::BootFile => "boot_file",
            Stage::Config => "config",
            Stage::Kernel => "kernel",
            Stage::Initrd => "initrd",
        }
    }
}

/// What a row is known by: its MAC, or (until tied to one) its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    Mac([u8; 6]),
    Ip(IpAddr),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Mac(mac) => f.write_str(&mac_text(mac)),
            Key::Ip(ip) => write!(f, "ip:{ip}"),
        }
    }
}

pub fn mac_text(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, g] = *mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
}

/// Why a boot is stuck: the latest refusal or failure (cleared when a
/// later file completes), or a deliberate proxy silence.
#[derive(Debug, Clone, Copy)]
pub struct Failure {
    /// "not found", "timed out", "no_boot_entry", ...
    pub reason: &'static str,
    /// The file concerned (empty for a proxy silence).
    pub file: Name,
    /// When, in ms since the epoch.
    pub at: u64,
}

/// How the last file request ended.
#[derive(Debug, Clone, Copy)]
pub struct LastFile {
    pub name: Name,
    pub protocol: Protocol,
    pub outcome: FileOutcome,
    pub bytes: u64,
    pub at: u64,
}

const NIL: u32 = u32::MAX;

/// One machine (fixed size: no heap).
#[derive(Debug, Clone, Copy)]
pub struct Machine {
    pub key: Key,
    pub mac: Option<[u8; 6]>,
    pub ip: Option<IpAddr>,
    pub arch: Option<Arch>,
    pub vendor_class: Name,
    /// The boot file of the latest reply that named one.
    pub boot_file: Name,
    /// When each [`Stage`] was first reached in this boot (ms since the
    /// epoch), by stage.
    pub stages: [Option<u64>; 6],
    /// Files fetched that are none of the stages (modules, menus, ...).
    pub other_files: u32,
    /// File requests refused or failed, in this boot.
    pub failed_files: u32,
    pub last_file: Option<LastFile>,
    pub failure: Option<Failure>,
    pub first_seen: u64,
    /// The start of the current boot: what stage times are relative to.
    pub boot_started: u64,
    pub last_seen: u64,
    /// Last lookup in the neighbour table (rows keyed by address only).
    arp_tried: u64,
    prev: u32,
    next: u32,
}

impl Machine {
    fn new(key: Key, now: u64) -> Machine {
        Machine {
            key,
            mac: match key {
                Key::Mac(mac) => Some(mac),
                Key::Ip(_) => None,
            },
            ip: match key {
                Key::Ip(ip) => Some(ip),
                Key::Mac(_) => None,
            },
            arch: None,
            vendor_class: Name::new(b""),
            boot_file: Name::new(b""),
            stages: [None; 6],
            other_files: 0,
            failed_files: 0,
            last_file: None,
            failure: None,
            first_seen: now,
            boot_started: now,
            last_seen: now,
            arp_tried: 0,
            prev: NIL,
            next: NIL,
        }
    }

    /// The furthest stage reached in this boot.
    pub fn stage(&self) -> Option<Stage> {
        Stage::ALL
            .iter()
            .rev()
            .find(|s| self.stages[**s as usize].is_some())
            .copied()
    }

    fn reach(&mut self, stage: Stage, now: u64) {
        let slot = &mut self.stages[stage as usize];
        if slot.is_none() {
            *slot = Some(now);
        }
    }

    fn new_boot(&mut self, now: u64) {
        self.stages = [None; 6];
        self.other_files = 0;
        self.failed_files = 0;
        self.failure = None;
        self.last_file = None;
        self.boot_started = now;
    }

    /// Folds `other` (the same machine seen by address only) into `self`.
    fn absorb(&mut self, other: &Machine) {
        for (mine, theirs) in self.stages.iter_mut().zip(other.stages) {
            *mine = match (*mine, theirs) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        self.other_files += other.other_files;
        self.failed_files += other.failed_files;
        let later = |a: Option<u64>, b: Option<u64>| b > a;
        if later(self.last_file.map(|f| f.at), other.last_file.map(|f| f.at)) {
            self.last_file = other.last_file;
        }
        if later(self.failure.map(|f| f.at), other.failure.map(|f| f.at)) {
            self.failure = other.failure;
        }
        self.first_seen = self.first_seen.min(other.first_seen);
        self.boot_started = self.boot_started.min(other.boot_started);
        self.last_seen = self.last_seen.max(other.last_seen);
    }
}

/// What a file name is, in a boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Stage(Stage),
    Other,
}

/// Classifies `name` for a machine offered `boot_file` that has reached
/// `reached` (the kernel stage makes a later `*.gz` an initrd).
pub fn classify(name: &[u8], boot_file: &[u8], kernel_seen: bool) -> FileKind {
    let path = clean(name);
    // An HTTP boot offers a URL; its path is what the client asks for.
    let boot_file = match boot_file.windows(3).position(|w| w == b"://") {
        Some(at) => {
            let rest = &boot_file[at + 3..];
            &rest[rest.iter().position(|&b| b == b'/').unwrap_or(rest.len())..]
        }
        None => boot_file,
    };
    if !path.is_empty() && path == clean(boot_file) {
        return FileKind::Stage(Stage::BootFile);
    }
    // Compared without case and without allocating.
    let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let ext = |e: &str| {
        base.len() >= e.len() && base[base.len() - e.len()..].eq_ignore_ascii_case(e.as_bytes())
    };
    let starts =
        |p: &str| base.len() >= p.len() && base[..p.len()].eq_ignore_ascii_case(p.as_bytes());
    let is = |name: &str| base.eq_ignore_ascii_case(name.as_bytes());
    let contains = |part: &str| {
        base.windows(part.len())
            .any(|w| w.eq_ignore_ascii_case(part.as_bytes()))
    };
    let in_pxelinux_cfg = path
        .windows(b"pxelinux.cfg/".len())
        .any(|w| w.eq_ignore_ascii_case(b"pxelinux.cfg/"));
    if in_pxelinux_cfg
        || ext(".cfg")
        || ext(".ipxe")
        || ext(".conf")
        || ext(".menu")
        || starts("boot.ipxe")
    {
        return FileKind::Stage(Stage::Config);
    }
    if starts("vmlinuz")
        || starts("vmlinux")
        || is("linux")
        || starts("linux.")
        || starts("linux64")
        || starts("bzimage")
        || starts("kernel")
        || ext(".lkrn")
        || ext(".kernel")
        || is("memdisk")
        || is("wimboot")
    {
        return FileKind::Stage(Stage::Kernel);
    }
    if starts("initrd")
        || starts("initramfs")
        || ext(".img")
        || contains(".cpio")
        || (kernel_seen && (ext(".gz") || ext(".xz") || ext(".zst") || ext(".lz4")))
    {
        return FileKind::Stage(Stage::Initrd);
    }
    FileKind::Other
}

/// A requested name without leading slashes, `./` or an HTTP query.
fn clean(name: &[u8]) -> &[u8] {
    let mut name = name;
    let query = name.iter().position(|&b| b == b'?').unwrap_or(name.len());
    name = &name[..query];
    loop {
        if let Some(rest) = name.strip_prefix(b"/") {
            name = rest;
        } else if let Some(rest) = name.strip_prefix(b"./") {
            name = rest;
        } else {
            return name;
        }
    }
}

/// The neighbour table, read at most once per batch of events.
pub trait Neighbours {
    fn mac_of(&mut self, ip: IpAddr) -> Option<[u8; 6]>;
}

/// /proc/net/arp, read once on first use (through the descriptor opened
/// before the sandbox, see [`crate::net::neighbours::read_table`]).
#[derive(Default)]
pub struct ProcArp {
    text: Option<Option<String>>,
}

impl Neighbours for ProcArp {
    fn mac_of(&mut self, ip: IpAddr) -> Option<[u8; 6]> {
        let IpAddr::V4(ip) = ip else {
            return None;
        };
        let text = self
            .text
            .get_or_insert_with(crate::net::neighbours::read_table);
        crate::net::neighbours::find(text.as_deref()?, ip)
    }
}

/// No neighbour table (tests).
pub struct NoNeighbours;

impl Neighbours for NoNeighbours {
    fn mac_of(&mut self, _: IpAddr) -> Option<[u8; 6]> {
        None
    }
}

/// The table of recent machines.
pub struct Table {
    capacity: usize,
    slots: Vec<Machine>,
    /// Free slots (after a merge removed a row).
    free: Vec<u32>,
    index: HashMap<Key, u32>,
    /// Address → MAC, for the rows whose `ip` it is (at most one per row).
    ips: HashMap<IpAddr, [u8; 6]>,
    /// Most recently seen first.
    head: u32,
    tail: u32,
    evicted: u64,
}

/// Bytes a hash map allocated for `capacity` entries of `entry` bytes holds
/// at most (hashbrown: a power of two of buckets at 7/8 load, one control
/// byte per bucket plus a group's width).
fn map_bytes(capacity: usize, entry: usize) -> usize {
    let buckets = (capacity * 8 / 7).next_power_of_two().max(4);
    buckets * (entry + 1) + 64
}

impl Table {
    pub fn new(capacity: usize) -> Table {
        let capacity = capacity.clamp(1, u32::MAX as usize / 4);
        Table {
            capacity,
            slots: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            // Twice the entries ever held: hashbrown then always rehashes in
            // place instead of growing, however many keys come and go.
            index: HashMap::with_capacity(2 * capacity),
            ips: HashMap::with_capacity(2 * capacity),
            head: NIL,
            tail: NIL,
            evicted: 0,
        }
    }

    /// The most heap the table holds for `capacity` machines.
    pub fn memory_bound(capacity: usize) -> usize {
        let capacity = capacity.clamp(1, u32::MAX as usize / 4);
        capacity * (std::mem::size_of::<Machine>() + std::mem::size_of::<u32>())
            + map_bytes(2 * capacity, std::mem::size_of::<(Key, u32)>())
            + map_bytes(2 * capacity, std::mem::size_of::<(IpAddr, [u8; 6])>())
    }

    /// The most bytes [`Table::to_json`] writes for `capacity` machines: a
    /// name is at most 96 bytes, each written as at most 6 (`\u0001`) plus
    /// the cut mark; four names and the fixed fields fit in 4 KiB.
    pub fn json_bound(capacity: usize) -> usize {
        1024 + capacity.clamp(1, u32::MAX as usize / 4) * 4096
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Machines evicted to make room.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Heap capacities now (bytes), by the same accounting as
    /// [`Table::memory_bound`]: for tests.
    pub fn heap_capacity(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Machine>()
            + self.free.capacity() * std::mem::size_of::<u32>()
            + map_bytes(self.index.capacity(), std::mem::size_of::<(Key, u32)>())
            + map_bytes(
                self.ips.capacity(),
                std::mem::size_of::<(IpAddr, [u8; 6])>(),
            )
    }

    pub fn get(&self, key: &Key) -> Option<&Machine> {
        self.index.get(key).map(|&i| &self.slots[i as usize])
    }

    /// Machines, most recently seen first.
    pub fn iter(&self) -> impl Iterator<Item = &Machine> + '_ {
        let mut at = self.head;
        std::iter::from_fn(move || {
            if at == NIL {
                return None;
            }
            let machine = &self.slots[at as usize];
            at = machine.next;
            Some(machine)
        })
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let m = &self.slots[i as usize];
            (m.prev, m.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
        let m = &mut self.slots[i as usize];
        m.prev = NIL;
        m.next = NIL;
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let m = &mut self.slots[i as usize];
            m.prev = NIL;
            m.next = old;
        }
        if old != NIL {
            self.slots[old as usize].prev = i;
        } else {
            self.tail = i;
        }
        self.head = i;
    }

    /// Removes row `i` and frees its slot.
    fn remove(&mut self, i: u32) -> Machine {
        self.unlink(i);
        let machine = self.slots[i as usize];
        self.index.remove(&machine.key);
        if let (Some(ip), Some(mac)) = (machine.ip, machine.mac)
            && self.ips.get(&ip) == Some(&mac)
        {
            self.ips.remove(&ip);
        }
        self.free.push(i);
        machine
    }

    /// The row for `key`, created (evicting the least recently seen beyond
    /// the capacity) when missing, and marked as seen now.
    fn row(&mut self, key: Key, now: u64) -> u32 {
        if let Some(&i) = self.index.get(&key) {
            self.unlink(i);
            self.push_front(i);
            return i;
        }
        if self.index.len() >= self.capacity {
            let tail = self.tail;
            self.remove(tail);
            self.evicted += 1;
        }
        let machine = Machine::new(key, now);
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = machine;
                i
            }
            None => {
                self.slots.push(machine);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, i);
        self.push_front(i);
        i
    }

    /// Ties `ip` to `mac`'s row: the address index points there, and a row
    /// kept under the address alone is folded in.
    fn tie(&mut self, ip: IpAddr, mac: [u8; 6], now: u64) -> u32 {
        let i = self.row(Key::Mac(mac), now);
        let old_ip = self.slots[i as usize].ip;
        if let Some(old) = old_ip
            && old != ip
            && self.ips.get(&old) == Some(&mac)
        {
            self.ips.remove(&old);
        }
        self.slots[i as usize].ip = Some(ip);
        self.ips.insert(ip, mac);
        if let Some(&j) = self.index.get(&Key::Ip(ip)) {
            let by_ip = self.remove(j);
            self.slots[i as usize].absorb(&by_ip);
        }
        i
    }

    /// The row of the client at `ip`: its MAC's when known (from a 4011
    /// request or the neighbour table), else the address's own.
    fn row_for_ip(&mut self, ip: IpAddr, now: u64, neighbours: &mut impl Neighbours) -> u32 {
        if let Some(&mac) = self.ips.get(&ip) {
            return self.row(Key::Mac(mac), now);
        }
        let tried = self.get(&Key::Ip(ip)).map(|m| m.arp_tried);
        if tried.is_none_or(|t| now.saturating_sub(t) >= ARP_RETRY_MS)
            && let Some(mac) = neighbours.mac_of(ip)
        {
            return self.tie(ip, mac, now);
        }
        let i = self.row(Key::Ip(ip), now);
        if tried.is_none_or(|t| now.saturating_sub(t) >= ARP_RETRY_MS) {
            self.slots[i as usize].arp_tried = now;
        }
        i
    }

    /// Applies one event seen at `now` (ms since the epoch).
    pub fn apply(&mut self, event: &BootEvent, now: u64, neighbours: &mut impl Neighbours) {
        match *event {
            BootEvent::Proxy {
                mac,
                ip,
                arch,
                kind,
                vendor_class,
                file,
            } => {
                let i = match ip {
                    Some(ip) => self.tie(IpAddr::V4(ip), mac, now),
                    None => self.row(Key::Mac(mac), now),
                };
                let m = &mut self.slots[i as usize];
                let idle = now.saturating_sub(m.last_seen);
                if kind == ReplyKind::Offer && m.stage().is_some() && idle >= BOOT_GAP_MS {
                    m.new_boot(now);
                }
                m.arch = Some(arch);
                m.vendor_class = vendor_class;
                if !file.as_bytes().is_empty() {
                    m.boot_file = file;
                }
                m.reach(
                    match kind {
                        ReplyKind::Offer => Stage::Offer,
                        ReplyKind::Ack => Stage::Ack,
                    },
                    now,
                );
                m.last_seen = m.last_seen.max(now);
            }
            BootEvent::ProxySilence { mac, reason } => {
                let i = self.row(Key::Mac(mac), now);
                let m = &mut self.slots[i as usize];
                m.failure = Some(Failure {
                    reason: reason.label(),
                    file: Name::new(b""),
                    at: now,
                });
                m.last_seen = m.last_seen.max(now);
            }
            BootEvent::File {
                ip,
                protocol,
                name,
                outcome,
                bytes,
                ..
            } => {
                let ip = ip.to_canonical();
                let i = self.row_for_ip(ip, now, neighbours);
                let m = &mut self.slots[i as usize];
                m.last_seen = m.last_seen.max(now);
                if outcome == FileOutcome::Probe {
                    return;
                }
                m.last_file = Some(LastFile {
                    name,
                    protocol,
                    outcome,
                    bytes,
                    at: now,
                });
                match outcome {
                    FileOutcome::Complete => {
                        m.failure = None;
                        let kernel_seen = m.stages[Stage::Kernel as usize].is_some();
                        match classify(name.as_bytes(), m.boot_file.as_bytes(), kernel_seen) {
                            FileKind::Stage(stage) => m.reach(stage, now),
                            FileKind::Other => m.other_files = m.other_files.saturating_add(1),
                        }
                    }
                    FileOutcome::Refused(reason) | FileOutcome::Failed(reason) => {
                        m.failed_files = m.failed_files.saturating_add(1);
                        m.failure = Some(Failure {
                            reason,
                            file: name,
                            at: now,
                        });
                    }
                    FileOutcome::Probe => {}
                }
            }
        }
    }

    /// The table as the JSON document `rackboot status` reads: the
    /// summary fields (with `extra`), then `machines`, most recently seen
    /// first. Written machine by machine, so that the only large allocation
    /// is the document itself (at most [`Table::json_bound`] bytes).
    pub fn to_json(&self, now: u64, extra: serde_json::Map<String, serde_json::Value>) -> String {
        use serde_json::{Value, json};
        let text = |n: &Name| Value::String(n.to_text());
        let machine = |m: &Machine| {
            let stages: Vec<Value> = Stage::ALL
                .iter()
                .filter_map(|s| {
                    m.stages[*s as usize].map(
                        |at| json!({"stage": s.name(), "at_ms": at.saturating_sub(m.boot_started)}),
                    )
                })
                .collect();
            json!({
                "key": m.key.to_string(),
                "mac": m.mac.as_ref().map(mac_text),
                "ip": m.ip.map(|ip| ip.to_string()),
                "arch": m.arch.map(Arch::name),
                "vendor_class": text(&m.vendor_class),
                "boot_file": text(&m.boot_file),
                "stage": m.stage().map(Stage::name),
                "stages": stages,
                "other_files": m.other_files,
                "failed_files": m.failed_files,
                "last_file": m.last_file.map(|f| json!({
                    "name": f.name.to_text(),
                    "protocol": match f.protocol { Protocol::Tftp => "tftp", Protocol::Http => "http" },
                    "outcome": outcome_text(f.outcome),
                    "bytes": f.bytes,
                    "at_ms": f.at.saturating_sub(m.boot_started),
                })),
                "failure": m.failure.map(|f| json!({
                    "reason": f.reason,
                    "file": f.file.to_text(),
                    "at_ms": f.at.saturating_sub(m.boot_started),
                })),
                "first_seen_unix_ms": m.first_seen,
                "boot_started_unix_ms": m.boot_started,
                "last_seen_unix_ms": m.last_seen,
            })
        };
        let mut doc = serde_json::Map::new();
        doc.insert("now_unix_ms".into(), json!(now));
        doc.insert("capacity".into(), json!(self.capacity));
        doc.insert("count".into(), json!(self.len()));
        doc.insert("evicted".into(), json!(self.evicted));
        doc.insert(
            "memory_bound_bytes".into(),
            json!(Table::memory_bound(self.capacity)),
        );
        doc.extend(extra);
        let mut out = String::with_capacity(512 + self.len() * 1024);
        for (key, value) in doc {
            out.push(if out.is_empty() { '{' } else { ',' });
            out.push_str(&Value::String(key).to_string());
            out.push(':');
            out.push_str(&value.to_string());
        }
        out.push_str(if out.is_empty() { "{" } else { "," });
        out.push_str("\"machines\":[");
        for (n, m) in self.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str(&machine(m).to_string());
        }
        out.push_str("]}");
        out
    }
}

fn outcome_text(outcome: FileOutcome) -> String {
    match outcome {
        FileOutcome::Complete => "complete".into(),
        FileOutcome::Probe => "probe".into(),
        FileOutcome::Refused(why) => format!("refused: {why}"),
        FileOutcome::Failed(why) => format!("failed: {why}"),
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::silence::Reason;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 7);

    fn proxy(mac: [u8; 6], ip: Option<Ipv4Addr>, kind: ReplyKind, file: &str) -> BootEvent {
        BootEvent::Proxy {
            mac,
            ip,
            arch: Arch::Bios,
            kind,
            vendor_class: Name::new(b"PXEClient:Arch:00000:UNDI:002001"),
            file: Name::new(file.as_bytes()),
        }
    }

    fn file(ip: Ipv4Addr, name: &str, outcome: FileOutcome) -> BootEvent {
        BootEvent::File {
            ip: IpAddr::V4(ip),
            protocol: Protocol::Tftp,
            name: Name::new(name.as_bytes()),
            outcome,
            bytes: 1,
            elapsed: Duration::from_millis(3),
        }
    }

    struct Arp(Vec<(IpAddr, [u8; 6])>, usize);

    impl Neighbours for Arp {
        fn mac_of(&mut self, ip: IpAddr) -> Option<[u8; 6]> {
            self.1 += 1;
            self.0.iter().find(|(a, _)| *a == ip).map(|(_, m)| *m)
        }
    }

    #[test]
    fn names_are_classified() {
        let k = |name: &str| classify(name.as_bytes(), b"pxelinux.0", false);
        assert_eq!(k("pxelinux.0"), FileKind::Stage(Stage::BootFile));
        assert_eq!(k("/pxelinux.0"), FileKind::Stage(Stage::BootFile));
        assert_eq!(k("pxelinux.cfg/default"), FileKind::Stage(Stage::Config));
        assert_eq!(
            k("pxelinux.cfg/01-52-54-00-12-34-56"),
            FileKind::Stage(Stage::Config)
        );
        assert_eq!(k("grub/grub.cfg"), FileKind::Stage(Stage::Config));
        assert_eq!(k("boot.ipxe"), FileKind::Stage(Stage::Config));
        assert_eq!(k("/ubuntu/vmlinuz-6.8"), FileKind::Stage(Stage::Kernel));
        assert_eq!(k("ipxe.lkrn"), FileKind::Stage(Stage::Kernel));
        assert_eq!(k("memdisk"), FileKind::Stage(Stage::Kernel));
        assert_eq!(k("images/bzImage"), FileKind::Stage(Stage::Kernel));
        assert_eq!(k("initrd.img"), FileKind::Stage(Stage::Initrd));
        assert_eq!(
            k("/initramfs-linux.img?x=1"),
            FileKind::Stage(Stage::Initrd)
        );
        assert_eq!(k("root.cpio.gz"), FileKind::Stage(Stage::Initrd));
        assert_eq!(k("modules.gz"), FileKind::Other);
        assert_eq!(
            classify(b"modules.gz", b"", true),
            FileKind::Stage(Stage::Initrd)
        );
        assert_eq!(k("ldlinux.c32"), FileKind::Other);
        assert_eq!(
            classify(
                b"/efi/ipxe.efi",
                b"http://10.0.0.1:8080/efi/ipxe.efi",
                false
            ),
            FileKind::Stage(Stage::BootFile)
        );
        assert_eq!(k("menu.c32"), FileKind::Other);
    }

    #[test]
    fn a_boot_goes_through_its_stages() {
        let mut t = Table::new(8);
        let mut arp = NoNeighbours;
        t.apply(&proxy(MAC, None, ReplyKind::Offer, ""), 1000, &mut arp);
        t.apply(
            &proxy(MAC, Some(IP), ReplyKind::Ack, "pxelinux.0"),
            1100,
            &mut arp,
        );
        t.apply(&file(IP, "pxelinux.0", FileOutcome::Probe), 1150, &mut arp);
        t.apply(
            &file(IP, "pxelinux.0", FileOutcome::Complete),
            1200,
            &mut arp,
        );
        t.apply(
            &file(IP, "ldlinux.c32", FileOutcome::Complete),
            1300,
            &mut arp,
        );
        t.apply(
            &file(
                IP,
                "pxelinux.cfg/01-52-54-00-12-34-56",
                FileOutcome::Refused("not found"),
            ),
            1400,
            &mut arp,
        );
        let m = t.get(&Key::Mac(MAC)).unwrap();
        assert_eq!(m.failure.unwrap().reason, "not found");
        t.apply(
            &file(IP, "pxelinux.cfg/default", FileOutcome::Complete),
            1500,
            &mut arp,
        );
        t.apply(&file(IP, "vmlinuz", FileOutcome::Complete), 1600, &mut arp);
        t.apply(
            &file(IP, "initrd.img", FileOutcome::Failed("timed out")),
            1700,
            &mut arp,
        );
        assert_eq!(t.len(), 1, "everything on the MAC's row");
        let m = t.get(&Key::Mac(MAC)).unwrap();
        assert_eq!(
            m.stages,
            [
                Some(1000),
                Some(1100),
                Some(1200),
                Some(1500),
                Some(1600),
                None
            ]
        );
        assert_eq!(m.stage(), Some(Stage::Kernel));
        assert_eq!(m.other_files, 1);
        assert_eq!(m.failed_files, 2);
        let failure = m.failure.unwrap();
        assert_eq!(
            (failure.reason, failure.file.as_bytes()),
            ("timed out", &b"initrd.img"[..])
        );
        assert_eq!(m.ip, Some(IpAddr::V4(IP)));
        assert_eq!(m.arch, Some(Arch::Bios));
        // A later retry completes: the failure clears.
        t.apply(
            &file(IP, "initrd.img", FileOutcome::Complete),
            1800,
            &mut arp,
        );
        let m = t.get(&Key::Mac(MAC)).unwrap();
        assert!(m.failure.is_none());
        assert_eq!(m.stages[Stage::Initrd as usize], Some(1800));
        let doc: serde_json::Value =
            serde_json::from_str(&t.to_json(2000, Default::default())).unwrap();
        let machine = &doc["machines"][0];
        assert_eq!(machine["key"], "52:54:00:12:34:56");
        assert_eq!(machine["stage"], "initrd");
        assert_eq!(machine["stages"][0]["stage"], "offer");
        assert_eq!(machine["stages"][5]["at_ms"], 800);
        // A new boot long after: stages start over.
        t.apply(
            &proxy(MAC, None, ReplyKind::Offer, ""),
            1800 + BOOT_GAP_MS,
            &mut arp,
        );
        let m = t.get(&Key::Mac(MAC)).unwrap();
        assert_eq!(m.stage(), Some(Stage::Offer));
        assert_eq!(m.first_seen, 1000);
    }

    #[test]
    fn an_address_row_is_folded_into_its_mac_when_tied() {
        let mut t = Table::new(8);
        let mut arp = NoNeighbours;
        t.apply(
            &file(IP, "undionly.kpxe", FileOutcome::Complete),
            100,
            &mut arp,
        );
        assert!(t.get(&Key::Ip(IpAddr::V4(IP))).is_some());
        t.apply(
            &proxy(MAC, Some(IP), ReplyKind::Ack, "undionly.kpxe"),
            200,
            &mut arp,
        );
        assert_eq!(t.len(), 1);
        let m = t.get(&Key::Mac(MAC)).unwrap();
        assert_eq!(m.other_files, 1, "counted before the boot file was known");
        assert_eq!(m.first_seen, 100);
        // Through the neighbour table, at most once a second per address.
        let other = Ipv4Addr::new(10, 0, 0, 8);
        let mac2 = [2, 0, 0, 0, 0, 8];
        let mut arp = Arp(vec![], 0);
        t.apply(&file(other, "a", FileOutcome::Complete), 1000, &mut arp);
        t.apply(&file(other, "b", FileOutcome::Complete), 1500, &mut arp);
        assert_eq!(arp.1, 1, "looked up once within a second");
        arp.0.push((IpAddr::V4(other), mac2));
        t.apply(&file(other, "c", FileOutcome::Complete), 2100, &mut arp);
        assert_eq!(arp.1, 2);
        assert!(t.get(&Key::Ip(IpAddr::V4(other))).is_none());
        assert_eq!(t.get(&Key::Mac(mac2)).unwrap().other_files, 3);
        t.apply(&file(other, "d", FileOutcome::Complete), 2200, &mut arp);
        assert_eq!(arp.1, 2, "a tied address is not looked up again");
    }

    #[test]
    fn silences_show_as_failures() {
        let mut t = Table::new(8);
        t.apply(
            &BootEvent::ProxySilence {
                mac: MAC,
                reason: Reason::NoBootEntry,
            },
            5,
            &mut NoNeighbours,
        );
        assert_eq!(
            t.get(&Key::Mac(MAC)).unwrap().failure.unwrap().reason,
            "no_boot_entry"
        );
    }

    #[test]
    fn the_least_recently_seen_go_first_and_memory_stays_put() {
        let capacity = 1000;
        let mut t = Table::new(capacity);
        let before = t.heap_capacity();
        assert!(before <= Table::memory_bound(capacity), "{before}");
        let mut arp = NoNeighbours;
        for n in 0..100_000u32 {
            let [_, b, c, d] = n.to_be_bytes();
            let mac = [2, 0, 0, b, c, d];
            let ip = Ipv4Addr::new(10, b, c, d);
            t.apply(&proxy(mac, None, ReplyKind::Offer, "f"), n as u64, &mut arp);
            t.apply(
                &proxy(mac, Some(ip), ReplyKind::Ack, "f"),
                n as u64,
                &mut arp,
            );
            // Half of them also fetch by an address not yet tied.
            if n % 2 == 0 {
                let stray = Ipv4Addr::new(11, b, c, d);
                t.apply(&file(stray, "f", FileOutcome::Complete), n as u64, &mut arp);
            }
            // One machine keeps coming back: it stays.
            t.apply(&proxy(MAC, None, ReplyKind::Offer, "f"), n as u64, &mut arp);
            assert!(t.len() <= capacity);
            assert!(t.ips.len() <= t.len());
        }
        assert_eq!(t.len(), capacity);
        assert!(t.get(&Key::Mac(MAC)).is_some());
        assert!(t.get(&Key::Mac([2, 0, 0, 0, 0, 0])).is_none(), "evicted");
        let last = 99_999u32.to_be_bytes();
        assert!(
            t.get(&Key::Mac([2, 0, 0, last[1], last[2], last[3]]))
                .is_some()
        );
        assert_eq!(t.heap_capacity(), before, "nothing grew");
        assert_eq!(t.iter().count(), capacity);
        assert!(t.evicted() > 0);
    }
}

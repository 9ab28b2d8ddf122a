//! `rackboot doctor`: follows each booting machine through a packet capture
//! (live on an interface, or a pcap file) and prints one verdict per
//! machine in the firmware's terms.
//!
//! Layers, each knowing only the one below it:
//! - [`pcap`]: a bounded reader of classic pcap files;
//! - [`frame`]: Ethernet/IPv4/UDP and TCP, through `pnet_packet`'s views;
//! - [`follow`]: the sans-IO per-MAC state machine over DHCP (67/68), port
//!   4011, TFTP (read with rackboot's own [`wire`](crate::wire) views) and
//!   HTTP requests (`httparse`), whatever their port;
//! - [`verdict`]: what each machine's boot came to;
//! - [`capture`]: the live capture, through `pnet_datalink`.

pub mod capture;
pub mod follow;
pub mod frame;
pub mod pcap;
pub mod verdict;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::dhcp::MacPattern;

pub use follow::Follow;
pub use verdict::{Finding, Verdict, judge};

/// Reads a whole pcap into a [`Follow`]. A damaged record ends the reading
/// with the error, after everything before it was fed.
pub fn follow_pcap(
    input: impl std::io::Read,
    filter: Option<MacPattern>,
) -> Result<(Follow, Option<pcap::Error>), pcap::Error> {
    let mut follow = Follow::new(filter);
    let reader = pcap::Reader::new(input)?;
    for record in reader {
        match record {
            Ok(record) => follow.frame(record.at, &record.data),
            Err(e) => return Ok((follow, Some(e))),
        }
    }
    Ok((follow, None))
}

/// The verdicts on every machine followed, by MAC; `end` is when the
/// capture stopped (the last frame's time when `None`).
pub fn verdicts(follow: &Follow, end: Option<Duration>) -> Vec<Verdict> {
    let end = end.or(follow.last_at).unwrap_or_default();
    follow
        .machines()
        .iter()
        .map(|(mac, machine)| judge(*mac, machine, end))
        .collect()
}

/// The `rackboot doctor` command: reads `pcap`, or captures live on
/// `interface` for `duration` (or until SIGINT/SIGTERM), then prints one
/// verdict line per machine (only those `mac` matches) on stdout.
pub fn run(
    interface: Option<&str>,
    pcap: Option<&Path>,
    mac: Option<MacPattern>,
    duration: Option<u64>,
) -> Result<(), String> {
    let (follow, end) = match (pcap, interface) {
        (Some(path), _) => {
            let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let (follow, damaged) = follow_pcap(BufReader::new(file), mac)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if let Some(e) = damaged {
                eprintln!(
                    "rackboot doctor: {}: {e}; judging the {} frames before it",
                    path.display(),
                    follow.frames
                );
            }
            (follow, None)
        }
        (None, Some(interface)) => {
            let (follow, end) = live(interface, mac, duration.map(Duration::from_secs))?;
            (follow, Some(end))
        }
        (None, None) => {
            return Err("doctor needs --pcap FILE, or --interface NAME for a live capture".into());
        }
    };
    let verdicts = verdicts(&follow, end);
    if verdicts.is_empty() {
        let whom = mac.map_or("PXE client".to_owned(), |m| format!("client matching {m}"));
        println!("no {whom} seen ({} frames)", follow.frames);
    }
    for verdict in &verdicts {
        println!("{verdict}");
    }
    if follow.machines_dropped > 0 {
        eprintln!(
            "rackboot doctor: followed the first {} machines only",
            follow.machines().len()
        );
    }
    Ok(())
}

/// Captures on `interface` on a thread of its own while this one waits for
/// the deadline or a termination signal.
fn live(
    interface: &str,
    filter: Option<MacPattern>,
    duration: Option<Duration>,
) -> Result<(Follow, Duration), String> {
    let deadline = duration.map(|d| Instant::now() + d);
    // Taken synchronously below; blocked before the capture thread starts
    // so that it inherits the mask.
    let signals = crate::signals::block_termination();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let worker = {
        let interface = interface.to_owned();
        let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut follow = Follow::new(filter);
            let result = capture::capture(&interface, deadline, &stop, &mut follow);
            done.store(true, Ordering::Relaxed);
            result.map(|end| (follow, end))
        })
    };
    crate::signals::wait(&signals, || done.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    worker
        .join()
        .map_err(|_| "the capture thread panicked".to_owned())?
}

//! Live capture: a `pnet_datalink` channel (an AF_PACKET socket) on one
//! interface, read with a short timeout so that a deadline or a stop flag
//! ends it. Every frame goes to [`Follow`] with the wall-clock time.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pnet_datalink::{Channel, Config};

use super::follow::Follow;

/// How often a blocked read wakes up to look at the deadline and stop flag.
const READ_TIMEOUT: Duration = Duration::from_millis(200);

/// What a capture without the capability says.
pub const NEEDS_CAP_NET_RAW: &str = "rackboot doctor needs CAP_NET_RAW (run as root, or \
     setcap cap_net_raw=+ep $(command -v rackboot)), or read a capture with --pcap FILE";

/// Captures on `interface` until `deadline` passes or `stop` is set,
/// feeding `follow`. Returns the capture time it stopped at.
pub fn capture(
    interface: &str,
    deadline: Option<Instant>,
    stop: &AtomicBool,
    follow: &mut Follow,
) -> Result<Duration, String> {
    let interfaces = pnet_datalink::interfaces();
    let Some(found) = interfaces.iter().find(|i| i.name == interface) else {
        let names: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
        return Err(format!(
            "no interface {interface} (there are: {})",
            names.join(", ")
        ));
    };
    let config = Config {
        read_timeout: Some(READ_TIMEOUT),
        // Room for a whole offloaded (GSO/GRO) segment as the host sees it.
        read_buffer_size: 1 << 18,
        ..Config::default()
    };
    let mut rx = match pnet_datalink::channel(found, config) {
        Ok(Channel::Ethernet(_tx, rx)) => rx,
        Ok(_) => return Err(format!("{interface}: not an Ethernet channel")),
        Err(e) if is_permission(&e) => return Err(NEEDS_CAP_NET_RAW.to_owned()),
        Err(e) => return Err(format!("capture on {interface}: {e}")),
    };
    let until = deadline.map_or(" until Ctrl-C".to_owned(), |d| {
        let left = d.saturating_duration_since(Instant::now()).as_secs_f64();
        format!(" for {left:.0} s")
    });
    eprintln!("rackboot doctor: capturing on {interface}{until}");
    loop {
        if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(now());
        }
        match rx.next() {
            Ok(frame) => follow.frame(now(), frame),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(format!("capture on {interface}: {e}")),
        }
    }
}

fn is_permission(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
        || matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

/// Wall-clock time since the epoch, the timestamps pcap files carry.
fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

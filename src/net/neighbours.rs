//! The kernel's neighbour table, for the hardware address of a client
//! known only by its IP address (a TFTP or HTTP request carries no MAC):
//! per-MAC roots and `${mac}` in remap rules, as dnsmasq's
//! `tftp-unique-root=mac` does. Read only when such a rule is configured.

use std::net::{IpAddr, Ipv4Addr};

/// The MAC of `ip` from the IPv4 neighbour (ARP) table, when the entry is
/// complete. `None` for IPv6 and for clients not on a local segment.
pub fn mac_of(ip: IpAddr) -> Option<[u8; 6]> {
    let IpAddr::V4(ip) = ip else {
        return None;
    };
    find(&read_table()?, ip)
}

/// /proc/net/arp, opened before the sandbox is applied (Landlock checks
/// opens, not reads, and cannot reliably name a /proc/self path), read
/// again from the start at each lookup.
static TABLE: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();

/// Opens the table for [`read_table`]; called before the sandbox.
pub fn open_table() {
    TABLE.get_or_init(|| std::fs::File::open("/proc/net/arp").ok());
}

/// The text of /proc/net/arp: through the descriptor [`open_table`]
/// opened, else by path.
pub fn read_table() -> Option<String> {
    use std::os::unix::fs::FileExt;
    let Some(Some(file)) = TABLE.get() else {
        return std::fs::read_to_string("/proc/net/arp").ok();
    };
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match file.read_at(&mut buf, text.len() as u64) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
    String::from_utf8(text).ok()
}

/// Looks `ip` up in the text of /proc/net/arp.
pub fn find(table: &str, ip: Ipv4Addr) -> Option<[u8; 6]> {
    const COMPLETE: u32 = 0x2;
    table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let addr: Ipv4Addr = fields.next()?.parse().ok()?;
        let _hw_type = fields.next()?;
        let flags = u32::from_str_radix(fields.next()?.trim_start_matches("0x"), 16).ok()?;
        let hw = fields.next()?;
        if addr != ip || flags & COMPLETE == 0 {
            return None;
        }
        let mut mac = [0u8; 6];
        let mut parts = hw.split(':');
        for octet in &mut mac {
            *octet = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        parts.next().is_none().then_some(mac)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
10.0.0.9         0x1         0x0         00:00:00:00:00:00     *        br0
10.0.0.2         0x1         0x2         52:54:00:12:34:56     *        br0
";

    #[test]
    fn complete_entries_only() {
        assert_eq!(
            find(TABLE, Ipv4Addr::new(10, 0, 0, 2)),
            Some([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
        );
        assert_eq!(find(TABLE, Ipv4Addr::new(10, 0, 0, 9)), None, "incomplete");
        assert_eq!(find(TABLE, Ipv4Addr::new(10, 0, 0, 3)), None);
        assert_eq!(find("garbage\n1 2 3\n", Ipv4Addr::new(1, 2, 3, 4)), None);
    }
}

//! Option negotiation: RFC 2347 (framework), 2348 (blksize), 2349 (timeout,
//! tsize) and 7440 (windowsize).
//!
//! Each accepted value is no larger than what the client asked and no larger
//! than the server's limits; unknown or malformed options are ignored, never
//! refused, so odd firmware still boots with the defaults.

use crate::wire::tftp::{self, Error, MAX_BLKSIZE, Options, Writer};

/// The default block size of RFC 1350.
pub const DEFAULT_BLKSIZE: u16 = 512;
const MIN_BLKSIZE: u64 = 8;

/// What the server allows, and which options it answers at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Configured ceiling for blksize (`--max-blksize`).
    pub max_blksize: u16,
    /// The MTU of the interface the request came in on, less IP/UDP/TFTP
    /// headers; `None` when unknown.
    pub mtu_blksize: Option<u16>,
    /// Configured ceiling for windowsize (`--max-window`).
    pub max_window: u16,
    /// Per-option switches, for firmware that chokes on an option.
    pub blksize: bool,
    pub tsize: bool,
    pub timeout: bool,
    pub windowsize: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_blksize: MAX_BLKSIZE,
            mtu_blksize: None,
            max_window: 64,
            blksize: true,
            tsize: true,
            timeout: true,
            windowsize: true,
        }
    }
}

/// The largest blksize that fits one unfragmented datagram on a link.
pub fn blksize_for_mtu(mtu: u32, ipv6: bool) -> u16 {
    // IPv4 header 20 + UDP 8 + TFTP 4 = 32; IPv6 header 40 + 8 + 4 = 52.
    let overhead = if ipv6 { 52 } else { 32 };
    mtu.saturating_sub(overhead)
        .clamp(MIN_BLKSIZE as u32, u32::from(MAX_BLKSIZE)) as u16
}

/// The outcome of negotiation: the values in force and which options go
/// into the OACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: u16,
    pub window: u16,
    /// Seconds, when the client asked for a timeout and it was accepted.
    pub timeout: Option<u8>,
    /// The size to announce, when the client asked for tsize.
    pub tsize: Option<u64>,
    blksize_accepted: bool,
    window_accepted: bool,
}

impl Negotiated {
    /// Plain RFC 1350: 512-byte blocks, lock-step, no OACK.
    pub fn plain() -> Negotiated {
        Negotiated {
            blksize: DEFAULT_BLKSIZE,
            window: 1,
            timeout: None,
            tsize: None,
            blksize_accepted: false,
            window_accepted: false,
        }
    }

    /// Negotiates a read request for a file of `file_size` bytes.
    pub fn for_read(requested: &Options<'_>, limits: &Limits, file_size: u64) -> Negotiated {
        let mut n = Negotiated::plain();
        // A repeated option counts once, at its first occurrence (as
        // `Options::get` reads it): the OACK must answer what was asked.
        let mut seen = [false; 4];
        for (name, value) in requested.iter() {
            let Some(slot) = [&b"blksize"[..], b"windowsize", b"timeout", b"tsize"]
                .iter()
                .position(|known| name.eq_ignore_ascii_case(known))
            else {
                continue; // unknown options are ignored
            };
            if std::mem::replace(&mut seen[slot], true) {
                continue;
            }
            // In a read request tsize's value means nothing (atftp even
            // sends the word `enable`): answer it whatever it holds.
            if name.eq_ignore_ascii_case(b"tsize") {
                if limits.tsize && file_size > 0 {
                    // curl refuses an OACK announcing tsize 0, so an empty
                    // file is served without tsize (and, with nothing else,
                    // without an OACK).
                    n.tsize = Some(file_size);
                }
                continue;
            }
            let Some(v) = tftp::parse_decimal(value) else {
                continue;
            };
            if name.eq_ignore_ascii_case(b"blksize") && limits.blksize {
                if v >= MIN_BLKSIZE {
                    let cap = limits
                        .max_blksize
                        .min(limits.mtu_blksize.unwrap_or(MAX_BLKSIZE));
                    n.blksize = v.min(u64::from(cap.max(MIN_BLKSIZE as u16))) as u16;
                    n.blksize_accepted = true;
                }
            } else if name.eq_ignore_ascii_case(b"windowsize") && limits.windowsize {
                if (1..=65535).contains(&v) {
                    n.window = v.min(u64::from(limits.max_window.max(1))) as u16;
                    n.window_accepted = true;
                }
            } else if name.eq_ignore_ascii_case(b"timeout")
                && limits.timeout
                && (1..=255).contains(&v)
            {
                n.timeout = Some(v as u8);
            }
        }
        n
    }

    /// Negotiates a write request: the client's tsize is the upload size,
    /// which the caller checks against its bound. Uploads run lock-step.
    pub fn for_write(requested: &Options<'_>, limits: &Limits) -> Negotiated {
        let no_window = Limits {
            windowsize: false,
            ..*limits
        };
        let mut n = Negotiated::for_read(requested, &no_window, 0);
        if limits.tsize {
            n.tsize = requested.get("tsize").and_then(tftp::parse_decimal);
        }
        n
    }

    /// True when at least one option was accepted, so an OACK is due.
    pub fn needs_oack(&self) -> bool {
        self.blksize_accepted
            || self.window_accepted
            || self.timeout.is_some()
            || self.tsize.is_some()
    }

    /// Writes the OACK packet listing the accepted options.
    pub fn emit_oack(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut w = Writer::new(buf);
        w.put_u16(tftp::Opcode::Oack as u16)?;
        if self.blksize_accepted {
            w.put_str(b"blksize")?;
            w.put_decimal(u64::from(self.blksize))?;
        }
        if let Some(t) = self.timeout {
            w.put_str(b"timeout")?;
            w.put_decimal(u64::from(t))?;
        }
        if let Some(size) = self.tsize {
            w.put_str(b"tsize")?;
            w.put_decimal(size)?;
        }
        if self.window_accepted {
            w.put_str(b"windowsize")?;
            w.put_decimal(u64::from(self.window))?;
        }
        Ok(w.len())
    }
}

impl std::fmt::Display for Negotiated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "blksize={} window={}", self.blksize, self.window)?;
        if let Some(t) = self.timeout {
            write!(f, " timeout={t}")?;
        }
        if let Some(s) = self.tsize {
            write!(f, " tsize={s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::octal_escapes)] // "\0" then digits: NUL-separated option strings
mod tests {
    use super::*;
    use crate::wire::tftp::Packet;

    fn opts(bytes: &'static [u8]) -> Options<'static> {
        Options::parse(bytes).unwrap()
    }

    #[test]
    fn nothing_requested_means_no_oack() {
        let n = Negotiated::for_read(&opts(b""), &Limits::default(), 1000);
        assert_eq!(n, Negotiated::plain());
        assert!(!n.needs_oack());
    }

    #[test]
    fn clamps_to_limits_and_mtu() {
        let limits = Limits {
            max_blksize: 8192,
            mtu_blksize: Some(1468),
            max_window: 16,
            ..Limits::default()
        };
        let n = Negotiated::for_read(
            &opts(b"blksize\065464\0windowsize\0100\0tsize\00\0"),
            &limits,
            4242,
        );
        assert_eq!((n.blksize, n.window, n.tsize), (1468, 16, Some(4242)));
        let mut buf = [0u8; 128];
        let len = n.emit_oack(&mut buf).unwrap();
        let Packet::Oack(o) = Packet::parse(&buf[..len]).unwrap() else {
            panic!()
        };
        assert_eq!(o.get("blksize"), Some(&b"1468"[..]));
        assert_eq!(o.get("windowsize"), Some(&b"16"[..]));
        assert_eq!(o.get("tsize"), Some(&b"4242"[..]));
        assert_eq!(o.get("timeout"), None);
    }

    #[test]
    fn never_exceeds_the_request() {
        let n = Negotiated::for_read(
            &opts(b"blksize\01024\0windowsize\04\0"),
            &Limits::default(),
            1,
        );
        assert_eq!((n.blksize, n.window), (1024, 4));
    }

    #[test]
    fn ignores_unknown_malformed_and_out_of_range() {
        let n = Negotiated::for_read(
            &opts(b"blksize\07\0timeout\00\0windowsize\0x\0multicast\0\0utimeout\0500\0"),
            &Limits::default(),
            10,
        );
        assert!(!n.needs_oack());
        assert_eq!(n.blksize, DEFAULT_BLKSIZE);
    }

    #[test]
    fn switched_off_options_are_not_answered() {
        let limits = Limits {
            tsize: false,
            blksize: false,
            ..Limits::default()
        };
        let n = Negotiated::for_read(&opts(b"blksize\01468\0tsize\00\0"), &limits, 10);
        assert!(!n.needs_oack());
    }

    #[test]
    fn a_repeated_option_counts_once() {
        // Found by the tftp_negotiate fuzzer: the last blksize used to win.
        let n = Negotiated::for_read(
            &opts(b"blksize\0512\0blksize\01468\0"),
            &Limits::default(),
            1,
        );
        assert_eq!(n.blksize, 512);
    }

    #[test]
    fn tsize_value_is_irrelevant_in_a_read() {
        let n = Negotiated::for_read(&opts(b"tsize\0enable\0"), &Limits::default(), 77);
        assert_eq!(n.tsize, Some(77));
    }

    #[test]
    fn empty_file_gets_no_tsize() {
        let n = Negotiated::for_read(&opts(b"tsize\00\0"), &Limits::default(), 0);
        assert!(!n.needs_oack());
    }

    #[test]
    fn mtu_blksize() {
        assert_eq!(blksize_for_mtu(1500, false), 1468);
        assert_eq!(blksize_for_mtu(1500, true), 1448);
        assert_eq!(blksize_for_mtu(65536, false), MAX_BLKSIZE);
    }
}

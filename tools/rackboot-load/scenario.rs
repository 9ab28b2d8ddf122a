//! What each simulated client asks for: a plan of requests, built before the
//! run so the engine only follows it.
//!
//! - `file`: one download of each `--file`, in order, over TFTP or (with
//!   `--protocol http`) over HTTP.
//! - `pxelinux`: a whole pxelinux boot as syslinux's `pxelinux.0` performs
//!   it: `pxelinux.0`, `ldlinux.c32`, then the configuration search
//!   (`pxelinux.cfg/<UUID>`, `pxelinux.cfg/01-<MAC>`, the client's IPv4
//!   address in upper-case hex with 8 digits, then 7, ... down to 1, then
//!   `pxelinux.cfg/default`), `menu.c32`, and optionally a kernel and an
//!   initrd. The first configuration candidate that exists ends the search,
//!   as in pxelinux; the misses before it are expected ERROR 1 answers.
//!   With `--kernel-over http` the kernel and initrd come over HTTP, as
//!   lpxelinux.0 fetches `http://` paths, and each pass (one boot) opens a
//!   fresh connection.
//! - `abandon`: one RRQ for `--file` that is never ACKed.
//! - `dhcp`: no TFTP at all: the engine plays the proxyDHCP exchange of
//!   `dhcp.rs` instead, so the plan is empty.

#![forbid(unsafe_code)]

use bytes::Bytes;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::client::{Expect, Role, SEND_BUF};
use crate::http::MAX_PATH;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Every client downloads --file.
    File,
    /// Every client plays a pxelinux boot (see --kernel, --initrd).
    Pxelinux,
    /// Every client sends one RRQ for --file and never ACKs: a flood of
    /// abandoned transfers, spread over --duration.
    Abandon,
    /// Every client plays the PXE proxyDHCP exchange against --server (the
    /// DHCP port): DISCOVER, OFFER, REQUEST to --pxe-port, ACK.
    Dhcp,
}

/// How a file is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// TFTP, from a fresh port per file.
    Tftp,
    /// HTTP/1.1 GET, on one kept-alive connection per client.
    Http,
}

/// Where a request stands in the pxelinux configuration search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// A file the client needs: a miss is a failure.
    Fetch,
    /// A configuration candidate: a miss is expected; a hit ends the search.
    Candidate,
    /// The last configuration candidate (`default`): it must exist.
    LastCandidate,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub file: String,
    pub kind: StepKind,
    pub expect: Expect,
    pub protocol: Protocol,
}

/// One client's requests, in order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub role: Role,
    pub steps: Vec<Step>,
    /// Each pass is a new boot: close the HTTP connection at its end
    /// (else it is kept for the next pass).
    pub reconnect_each_pass: bool,
}

impl Plan {
    /// The step after `index`, given whether that one was found; `None`
    /// when the plan is done.
    pub fn next_step(&self, index: usize, found: bool) -> Option<usize> {
        let mut next = index + 1;
        let in_search = matches!(
            self.steps[index].kind,
            StepKind::Candidate | StepKind::LastCandidate
        );
        if in_search && found {
            while self
                .steps
                .get(next)
                .is_some_and(|s| s.kind != StepKind::Fetch)
            {
                next += 1;
            }
        }
        (next < self.steps.len()).then_some(next)
    }
}

/// The parameters a plan is built from.
#[derive(Debug, Clone)]
pub struct Params {
    pub scenario: Scenario,
    /// The `file` scenario's files (`abandon`: exactly one).
    pub files: Vec<String>,
    /// How the `file` scenario fetches them.
    pub protocol: Protocol,
    /// Kernel and initrd for `pxelinux`; `None` skips them.
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    /// How `pxelinux` fetches the kernel and initrd.
    pub kernel_over: Protocol,
}

impl Params {
    /// Whether any plan fetches something over HTTP.
    pub fn uses_http(&self) -> bool {
        match self.scenario {
            Scenario::File => self.protocol == Protocol::Http,
            Scenario::Pxelinux => self.kernel_over == Protocol::Http && self.kernel.is_some(),
            Scenario::Abandon | Scenario::Dhcp => false,
        }
    }

    /// Whether any plan fetches something over TFTP.
    pub fn uses_tftp(&self) -> bool {
        match self.scenario {
            Scenario::File => self.protocol == Protocol::Tftp,
            Scenario::Pxelinux | Scenario::Abandon => true,
            Scenario::Dhcp => false,
        }
    }
}

/// Local copies of served files (`--verify-dir`), each mapped once and
/// shared by every client: comparing reads the page cache, and a 1 GiB
/// file costs the load generator no heap and no copy before the run.
pub struct LocalFiles {
    dir: Option<PathBuf>,
    cache: HashMap<String, Option<Bytes>>,
}

impl LocalFiles {
    pub fn new(dir: Option<PathBuf>) -> LocalFiles {
        LocalFiles {
            dir,
            cache: HashMap::new(),
        }
    }

    /// The local copy of `name`, if there is a directory and the file is in it.
    fn get(&mut self, name: &str) -> Option<Bytes> {
        let dir = self.dir.as_ref()?;
        self.cache
            .entry(name.to_string())
            .or_insert_with(|| crate::map_file(&dir.join(name)))
            .clone()
    }

    /// What to expect of a step: its content when available. A file the
    /// client needs must be in the verify directory when one is given.
    fn expect(&mut self, name: &str, kind: StepKind) -> Result<Expect, String> {
        let content = self.get(name);
        if content.is_none()
            && kind != StepKind::Candidate
            && let Some(dir) = &self.dir
        {
            return Err(format!(
                "--verify-dir {}: no local copy of `{name}` to compare with",
                dir.display()
            ));
        }
        Ok(Expect {
            content,
            may_miss: kind == StepKind::Candidate,
        })
    }
}

/// The identity a pxelinux client searches its configuration by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub uuid: [u8; 16],
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
}

impl Identity {
    /// Client `index`'s identity: a random-looking but reproducible UUID, a
    /// MAC in QEMU's 52:54:00 range and an address in 10.0.0.0/8, all
    /// distinct between clients (up to 16 million of them).
    pub fn of(index: usize) -> Identity {
        let mut state = 0x5eed_0000_0000_0000u64 ^ index as u64;
        let mut uuid = [0u8; 16];
        uuid[..8].copy_from_slice(&splitmix64(&mut state).to_le_bytes());
        uuid[8..].copy_from_slice(&splitmix64(&mut state).to_le_bytes());
        uuid[6] = (uuid[6] & 0x0f) | 0x40; // version 4
        uuid[8] = (uuid[8] & 0x3f) | 0x80; // RFC 4122 variant
        let n = index as u32 & 0x00ff_ffff;
        let mac = [0x52, 0x54, 0x00, (n >> 16) as u8, (n >> 8) as u8, n as u8];
        let ip = Ipv4Addr::from(0x0a00_0000 | ((n + 100) & 0x00ff_ffff));
        Identity { uuid, mac, ip }
    }

    /// The configuration files pxelinux tries before `default`.
    pub fn config_candidates(&self) -> Vec<String> {
        let u = &self.uuid;
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let uuid = format!(
            "{}-{}-{}-{}-{}",
            hex(&u[..4]),
            hex(&u[4..6]),
            hex(&u[6..8]),
            hex(&u[8..10]),
            hex(&u[10..])
        );
        let mac = self
            .mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join("-");
        let ip = format!("{:08X}", u32::from(self.ip));
        let mut names = vec![
            format!("pxelinux.cfg/{uuid}"),
            format!("pxelinux.cfg/01-{mac}"),
        ];
        names.extend(
            (1..=8)
                .rev()
                .map(|digits| format!("pxelinux.cfg/{}", &ip[..digits])),
        );
        names
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Client `index`'s plan.
pub fn plan(params: &Params, local: &mut LocalFiles, index: usize) -> Result<Plan, String> {
    let mut steps = Vec::new();
    let mut push = |file: String, kind: StepKind, protocol: Protocol| -> Result<(), String> {
        // An RRQ must fit the send buffer: name, mode and three options.
        let longest = match protocol {
            Protocol::Tftp => SEND_BUF - 96,
            Protocol::Http => MAX_PATH,
        };
        if file.is_empty() || file.len() > longest {
            return Err(format!("file name `{file}` is empty or too long"));
        }
        let expect = local.expect(&file, kind)?;
        steps.push(Step {
            file,
            kind,
            expect,
            protocol,
        });
        Ok(())
    };
    let tftp = Protocol::Tftp;
    let role = match params.scenario {
        Scenario::File => {
            if params.files.is_empty() {
                return Err("the file scenario needs --file NAME".into());
            }
            for file in &params.files {
                push(file.clone(), StepKind::Fetch, params.protocol)?;
            }
            Role::Download
        }
        Scenario::Abandon => {
            let [file] = &params.files[..] else {
                return Err("the abandon scenario needs one --file NAME".into());
            };
            push(file.clone(), StepKind::Fetch, tftp)?;
            Role::Abandon
        }
        Scenario::Pxelinux => {
            push("pxelinux.0".into(), StepKind::Fetch, tftp)?;
            push("ldlinux.c32".into(), StepKind::Fetch, tftp)?;
            for name in Identity::of(index).config_candidates() {
                push(name, StepKind::Candidate, tftp)?;
            }
            push("pxelinux.cfg/default".into(), StepKind::LastCandidate, tftp)?;
            push("menu.c32".into(), StepKind::Fetch, tftp)?;
            for file in [&params.kernel, &params.initrd].into_iter().flatten() {
                push(file.clone(), StepKind::Fetch, params.kernel_over)?;
            }
            Role::Download
        }
        Scenario::Dhcp => Role::Download,
    };
    Ok(Plan {
        role,
        steps,
        reconnect_each_pass: params.scenario == Scenario::Pxelinux,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(scenario: Scenario) -> Params {
        Params {
            scenario,
            files: vec!["f".into()],
            protocol: Protocol::Tftp,
            kernel: Some("vmlinuz".into()),
            initrd: None,
            kernel_over: Protocol::Tftp,
        }
    }

    #[test]
    fn pxelinux_search_order() {
        let id = Identity {
            uuid: [0xab; 16],
            mac: [0x52, 0x54, 0, 0x0a, 0x0b, 0x0c],
            ip: Ipv4Addr::new(192, 168, 10, 100),
        };
        let names = id.config_candidates();
        assert_eq!(
            names[0],
            "pxelinux.cfg/abababab-abab-abab-abab-abababababab"
        );
        assert_eq!(names[1], "pxelinux.cfg/01-52-54-00-0a-0b-0c");
        assert_eq!(names[2], "pxelinux.cfg/C0A80A64");
        assert_eq!(names[3], "pxelinux.cfg/C0A80A6");
        assert_eq!(names.last().unwrap(), "pxelinux.cfg/C");
        assert_eq!(names.len(), 10);
    }

    #[test]
    fn identities_differ() {
        let (a, b) = (Identity::of(0), Identity::of(1));
        assert_ne!(a.uuid, b.uuid);
        assert_ne!(a.mac, b.mac);
        assert_ne!(a.ip, b.ip);
        assert_eq!(a, Identity::of(0));
    }

    #[test]
    fn a_hit_ends_the_configuration_search() {
        let plan = plan(&params(Scenario::Pxelinux), &mut LocalFiles::new(None), 3).unwrap();
        let names: Vec<&str> = plan.steps.iter().map(|s| s.file.as_str()).collect();
        assert_eq!(names[..2], ["pxelinux.0", "ldlinux.c32"]);
        assert_eq!(names[12..], ["pxelinux.cfg/default", "menu.c32", "vmlinuz"]);
        assert_eq!(plan.steps.iter().filter(|s| s.expect.may_miss).count(), 10);
        // Misses walk the search; a hit on the MAC file jumps to menu.c32.
        assert_eq!(plan.next_step(2, false), Some(3));
        assert_eq!(plan.next_step(3, true), Some(13));
        assert_eq!(plan.next_step(12, true), Some(13));
        assert_eq!(plan.next_step(14, true), None);
    }

    #[test]
    fn files_in_order_and_the_kernel_over_http() {
        let mut p = params(Scenario::File);
        p.files = vec!["vmlinuz".into(), "initrd.img".into()];
        p.protocol = Protocol::Http;
        let plan = plan(&p, &mut LocalFiles::new(None), 0).unwrap();
        let steps: Vec<(&str, Protocol)> = plan
            .steps
            .iter()
            .map(|s| (s.file.as_str(), s.protocol))
            .collect();
        assert_eq!(
            steps,
            [("vmlinuz", Protocol::Http), ("initrd.img", Protocol::Http)]
        );
        assert!(!plan.reconnect_each_pass && p.uses_http() && !p.uses_tftp());
        assert_eq!(plan.next_step(0, true), Some(1));
        assert_eq!(plan.next_step(1, true), None);

        let mut p = params(Scenario::Pxelinux);
        p.initrd = Some("initrd.img".into());
        p.kernel_over = Protocol::Http;
        let plan = super::plan(&p, &mut LocalFiles::new(None), 0).unwrap();
        let over_http: Vec<&str> = plan
            .steps
            .iter()
            .filter(|s| s.protocol == Protocol::Http)
            .map(|s| s.file.as_str())
            .collect();
        assert_eq!(over_http, ["vmlinuz", "initrd.img"]);
        assert_eq!(plan.steps[13].file, "menu.c32");
        assert_eq!(plan.steps[13].protocol, Protocol::Tftp);
        assert!(plan.reconnect_each_pass && p.uses_http() && p.uses_tftp());
        p.kernel = None;
        p.initrd = None;
        assert!(!p.uses_http(), "--no-kernel leaves nothing for HTTP");

        let mut p = params(Scenario::Abandon);
        p.files.push("g".into());
        assert!(super::plan(&p, &mut LocalFiles::new(None), 0).is_err());
    }

    #[test]
    fn verify_dir_must_hold_the_needed_files() {
        let dir =
            std::env::temp_dir().join(format!("rackboot-load-scenario-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), b"abc").unwrap();
        let mut p = params(Scenario::File);
        let plan = plan(&p, &mut LocalFiles::new(Some(dir.clone())), 0).unwrap();
        assert_eq!(plan.steps[0].expect.content.as_deref(), Some(&b"abc"[..]));
        p.files = vec!["missing".into()];
        assert!(
            super::plan(&p, &mut LocalFiles::new(Some(dir.clone())), 0)
                .unwrap_err()
                .contains("missing")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

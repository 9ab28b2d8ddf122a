//! tftp-floor: the least a TFTP server can do per block, as a yardstick for
//! tools/bench.py. One thread, one socket, no timers, no retransmission,
//! no checks beyond what keeps it from crashing: `recvmmsg` takes a batch
//! of requests and ACKs, `sendmmsg` answers the whole batch with DATA (or
//! an OACK for blksize) straight from mapped files. Whatever CPU it spends
//! per GiB is the kernel's UDP cost for that traffic on this machine, a
//! floor no real server goes under. Not a server: loopback benchmarks only.
//!
//! ```text
//! tftp-floor --root /tmp/rackboot-bench/root --listen 127.0.0.1:69
//! ```

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use clap::Parser;
use memmap2::Mmap;

/// Datagrams per recvmmsg / sendmmsg batch.
const BATCH: usize = 256;
/// Largest datagram handled (requests, ACKs) and largest blksize honoured.
const MAX_DATAGRAM: usize = 1500;

#[derive(Parser)]
#[command(
    name = "tftp-floor",
    about = "A minimal lock-step TFTP responder: the kernel's cost floor"
)]
struct Cli {
    /// Directory the files are read from.
    #[arg(long)]
    root: PathBuf,
    /// Address to answer on (loopback benchmarks only).
    #[arg(long, default_value = "127.0.0.1:69")]
    listen: SocketAddr,
}

struct Transfer {
    file: usize,
    blksize: usize,
}

fn main() -> io::Result<()> {
    let cli = Cli::parse();
    let socket = UdpSocket::bind(cli.listen)?;
    let fd = socket.as_raw_fd();
    let mut files: Vec<Mmap> = Vec::new();
    let mut by_name: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut transfers: HashMap<SocketAddr, Transfer> = HashMap::new();

    // SAFETY (each `zeroed` below): all-zero bytes are a valid, empty
    // sockaddr_storage and mmsghdr; the loop fills in every pointer.
    let mut rx = vec![[0u8; MAX_DATAGRAM]; BATCH];
    let mut rx_addr: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut rx_iov: Vec<libc::iovec> = rx
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: MAX_DATAGRAM,
        })
        .collect();
    let mut rx_msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    // Per reply: a 4-byte header (or a short OACK/ERROR) and a file slice.
    let mut heads = vec![[0u8; 64]; BATCH];
    let mut tx_iov = vec![
        [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0
        }; 2];
        BATCH
    ];
    let mut tx_msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];

    loop {
        for i in 0..BATCH {
            let h = &mut rx_msgs[i].msg_hdr;
            h.msg_name = (&raw mut rx_addr[i]).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            h.msg_iov = &raw mut rx_iov[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: every header points into the buffers above, sized as stated.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                rx_msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut replies = 0;
        for i in 0..n as usize {
            let len = rx_msgs[i].msg_len as usize;
            let Some(peer) = to_std(&rx_addr[i]) else {
                continue;
            };
            let packet = &rx[i][..len];
            let Some((head_len, payload)) = answer(
                packet,
                peer,
                &cli.root,
                &mut files,
                &mut by_name,
                &mut transfers,
                &mut heads[replies],
            ) else {
                continue;
            };
            tx_iov[replies][0] = libc::iovec {
                iov_base: heads[replies].as_mut_ptr().cast(),
                iov_len: head_len,
            };
            tx_iov[replies][1] = libc::iovec {
                iov_base: payload.as_ptr() as *mut _,
                iov_len: payload.len(),
            };
            let h = &mut tx_msgs[replies].msg_hdr;
            h.msg_name = (&raw mut rx_addr[i]).cast();
            h.msg_namelen = rx_msgs[i].msg_hdr.msg_namelen;
            h.msg_iov = tx_iov[replies].as_mut_ptr();
            h.msg_iovlen = 2;
            replies += 1;
        }
        let mut sent = 0;
        while sent < replies {
            // SAFETY: as for the receive; payloads point into live mappings.
            let m = unsafe {
                libc::sendmmsg(fd, tx_msgs[sent..].as_mut_ptr(), (replies - sent) as u32, 0)
            };
            if m <= 0 {
                break; // a lost reply is the client's to retry
            }
            sent += m as usize;
        }
    }
}

/// The reply to one datagram: header bytes written into `head`, and the
/// file bytes that follow them.
fn answer<'a>(
    packet: &[u8],
    peer: SocketAddr,
    root: &std::path::Path,
    files: &'a mut Vec<Mmap>,
    by_name: &mut HashMap<Vec<u8>, usize>,
    transfers: &mut HashMap<SocketAddr, Transfer>,
    head: &mut [u8; 64],
) -> Option<(usize, &'a [u8])> {
    let opcode = u16::from_be_bytes([*packet.first()?, *packet.get(1)?]);
    match opcode {
        1 => {
            let mut fields = packet[2..].split(|&b| b == 0);
            let name = fields.next()?.to_vec();
            let _mode = fields.next()?;
            let mut blksize = 512;
            while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
                if k.eq_ignore_ascii_case(b"blksize") {
                    blksize = std::str::from_utf8(v)
                        .ok()?
                        .parse::<usize>()
                        .ok()?
                        .clamp(8, MAX_DATAGRAM - 32);
                }
            }
            let file = match by_name.get(&name) {
                Some(&f) => f,
                None => {
                    let relative = std::path::Path::new(
                        std::str::from_utf8(&name).ok()?.trim_start_matches('/'),
                    );
                    // Never outside the root, even as a yardstick.
                    if relative
                        .components()
                        .any(|c| !matches!(c, std::path::Component::Normal(_)))
                    {
                        return None;
                    }
                    let path = root.join(relative);
                    let Ok(f) = File::open(path) else {
                        head[..5].copy_from_slice(&[0, 5, 0, 1, 0]); // ERROR 1, empty message
                        return Some((5, &[]));
                    };
                    // SAFETY: benchmark files are not changed while served.
                    let map = unsafe { Mmap::map(&f) }.ok()?;
                    files.push(map);
                    by_name.insert(name, files.len() - 1);
                    files.len() - 1
                }
            };
            transfers.insert(peer, Transfer { file, blksize });
            if blksize != 512 {
                let oack = format!("\0\x06blksize\0{blksize}\0");
                head[..oack.len()].copy_from_slice(oack.as_bytes());
                return Some((oack.len(), &[]));
            }
            Some(data(head, &files[file], 1, blksize))
        }
        4 => {
            let acked = u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]) as usize;
            let t = transfers.get(&peer)?;
            let map = &files[t.file];
            // Blocks past the end of the file: the transfer is over.
            if acked * t.blksize > map.len() {
                transfers.remove(&peer);
                return None;
            }
            Some(data(head, map, acked + 1, t.blksize))
        }
        _ => None,
    }
}

/// DATA `block` (1-based, 16-bit on the wire; files here stay below 32 MiB
/// at 512 bytes, so no rollover).
fn data<'a>(head: &mut [u8; 64], map: &'a Mmap, block: usize, blksize: usize) -> (usize, &'a [u8]) {
    head[..4].copy_from_slice(&[0, 3, (block >> 8) as u8, block as u8]);
    let start = ((block - 1) * blksize).min(map.len());
    let end = (start + blksize).min(map.len());
    (4, &map[start..end])
}

fn to_std(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    if i32::from(storage.ss_family) != libc::AF_INET {
        return None;
    }
    // SAFETY: the family says it is a sockaddr_in.
    let sin = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
    let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
    Some(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)))
}

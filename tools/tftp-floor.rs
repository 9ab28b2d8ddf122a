//! tftp-floor: the least a TFTP server can do per block, as a yardstick for
//! tools/bench.py. One thread, one socket, no timers, no retransmission,
//! no checks beyond what keeps it from crashing: `recvmmsg` takes a batch
//! of requests and ACKs, `sendmmsg` answers the whole batch with DATA (or
//! an OACK for blksize and windowsize) straight from mapped files: one
//! block per ACK in lock-step, the next window (RFC 7440) after each ACK
//! otherwise, blocks up to 65464 bytes. Whatever CPU it spends per GiB is
//! the kernel's UDP cost for that traffic on this machine, a floor no real
//! server goes under. Not a server: loopback benchmarks only, and a lost
//! datagram stalls its transfer.
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

/// Datagrams per recvmmsg batch.
const BATCH: usize = 256;
/// Replies gathered for one sendmmsg: a batch of lock-step answers, or a
/// few whole windows.
const REPLIES: usize = 1024;
/// Largest request or ACK read.
const MAX_DATAGRAM: usize = 1500;
/// Largest blksize and windowsize honoured.
const MAX_BLKSIZE: usize = 65464;
const MAX_WINDOW: usize = 256;

#[derive(Parser)]
#[command(
    name = "tftp-floor",
    about = "A minimal TFTP responder (lock-step or windowed): the kernel's cost floor"
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
    window: usize,
    /// Blocks acknowledged so far (absolute: past the 16-bit rollover).
    acked: usize,
}

/// One reply: an OACK or ERROR (bytes in `small`), or DATA `block` with
/// `len` bytes of file `file` from `offset`.
#[derive(Clone, Copy)]
enum Reply {
    Small(usize),
    Data {
        block: usize,
        file: usize,
        offset: usize,
        len: usize,
    },
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
    let mut heads = vec![[0u8; 64]; REPLIES];
    let mut tx_iov = vec![
        [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0
        }; 2];
        REPLIES
    ];
    let mut tx_msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; REPLIES];
    let mut answers: Vec<Reply> = Vec::with_capacity(MAX_WINDOW);
    let mut small = [0u8; 64];

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
            answers.clear();
            answer(
                &rx[i][..len],
                peer,
                &cli.root,
                &mut files,
                &mut by_name,
                &mut transfers,
                &mut small,
                &mut answers,
            );
            if replies + answers.len() > REPLIES {
                send_all(fd, &mut tx_msgs[..replies]);
                replies = 0;
            }
            for reply in &answers {
                let (head_len, payload): (usize, &[u8]) = match *reply {
                    Reply::Small(n) => {
                        heads[replies][..n].copy_from_slice(&small[..n]);
                        (n, &[])
                    }
                    Reply::Data {
                        block,
                        file,
                        offset,
                        len,
                    } => {
                        heads[replies][..4].copy_from_slice(&[
                            0,
                            3,
                            (block >> 8) as u8,
                            block as u8,
                        ]);
                        (4, &files[file][offset..offset + len])
                    }
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
        }
        send_all(fd, &mut tx_msgs[..replies]);
    }
}

/// Sends every prepared reply; a lost one is the client's to retry.
fn send_all(fd: i32, msgs: &mut [libc::mmsghdr]) {
    let mut sent = 0;
    while sent < msgs.len() {
        // SAFETY: every header points into live buffers and mappings.
        let m =
            unsafe { libc::sendmmsg(fd, msgs[sent..].as_mut_ptr(), (msgs.len() - sent) as u32, 0) };
        if m <= 0 {
            break;
        }
        sent += m as usize;
    }
}

/// The replies to one datagram, appended to `out` (OACK and ERROR bytes
/// written into `small`).
#[allow(clippy::too_many_arguments)]
fn answer(
    packet: &[u8],
    peer: SocketAddr,
    root: &std::path::Path,
    files: &mut Vec<Mmap>,
    by_name: &mut HashMap<Vec<u8>, usize>,
    transfers: &mut HashMap<SocketAddr, Transfer>,
    small: &mut [u8; 64],
    out: &mut Vec<Reply>,
) -> Option<()> {
    let opcode = u16::from_be_bytes([*packet.first()?, *packet.get(1)?]);
    match opcode {
        1 => {
            let mut fields = packet[2..].split(|&b| b == 0);
            let name = fields.next()?.to_vec();
            let _mode = fields.next()?;
            let (mut blksize, mut window) = (512, 1);
            let number = |v: &[u8]| std::str::from_utf8(v).ok()?.parse::<usize>().ok();
            while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
                if k.eq_ignore_ascii_case(b"blksize") {
                    blksize = number(v)?.clamp(8, MAX_BLKSIZE);
                } else if k.eq_ignore_ascii_case(b"windowsize") {
                    window = number(v)?.clamp(1, MAX_WINDOW);
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
                        small[..5].copy_from_slice(&[0, 5, 0, 1, 0]); // ERROR 1, empty message
                        out.push(Reply::Small(5));
                        return Some(());
                    };
                    // SAFETY: benchmark files are not changed while served.
                    let map = unsafe { Mmap::map(&f) }.ok()?;
                    // Into the page tables at once, as rackboot does: no
                    // minor fault per page on the first transfers.
                    let _ = map.advise(memmap2::Advice::PopulateRead);
                    files.push(map);
                    by_name.insert(name, files.len() - 1);
                    files.len() - 1
                }
            };
            let t = Transfer {
                file,
                blksize,
                window,
                acked: 0,
            };
            if blksize != 512 || window != 1 {
                let mut oack = String::from("\0\x06");
                if blksize != 512 {
                    oack += &format!("blksize\0{blksize}\0");
                }
                if window != 1 {
                    oack += &format!("windowsize\0{window}\0");
                }
                small[..oack.len()].copy_from_slice(oack.as_bytes());
                out.push(Reply::Small(oack.len()));
            } else {
                window_after(&t, files[file].len(), out);
            }
            transfers.insert(peer, t);
        }
        4 => {
            let wire = u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]);
            let t = transfers.get_mut(&peer)?;
            // The ACK's 16-bit number, placed at or after the last one.
            let ahead = usize::from(wire.wrapping_sub(t.acked as u16));
            if ahead > t.window {
                return None; // old or stray
            }
            t.acked += ahead;
            let len = files[t.file].len();
            // Blocks past the end of the file: the transfer is over.
            if t.acked * t.blksize > len {
                transfers.remove(&peer);
                return None;
            }
            window_after(t, len, out);
        }
        _ => {}
    }
    Some(())
}

/// DATA for the blocks after the last acknowledged one: one window, never
/// past the last block (short, or empty when the size is a multiple).
fn window_after(t: &Transfer, len: usize, out: &mut Vec<Reply>) {
    let last = len / t.blksize + 1;
    for block in t.acked + 1..=(t.acked + t.window).min(last) {
        let offset = ((block - 1) * t.blksize).min(len);
        out.push(Reply::Data {
            block,
            file: t.file,
            offset,
            len: t.blksize.min(len - offset),
        });
    }
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

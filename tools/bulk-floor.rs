//! bulk-floor: what one large TFTP-style DATA datagram costs its sender,
//! sent by copy (`sendmsg` of a 4-byte header and a slice of the mapped
//! file) or by reference (the header written into a pipe, the file's pages
//! spliced behind it, the pipe spliced into a connected UDP socket: one
//! datagram of at most 16 pipe buffers), side by side in one run.
//!
//! A sender thread pinned to CPU 0 sends FILE's blocks in windows to a
//! receiver thread pinned to CPU 1 over loopback; the receiver checks every
//! datagram's length and block number and answers each window with one
//! byte, so nothing is lost and nothing waits on a timer. Sender CPU per
//! GiB comes from the thread's own clock (RUSAGE_THREAD): on loopback it
//! includes the delivery to the receiver's socket, as a server's does.
//! Block sizes for `splice` must be whole pages (offsets page-aligned, at
//! most 15 pages: 61440 bytes).
//!
//! ```text
//! bulk-floor --file /tmp/bench/root/f256m --blksize 61440 --window 64 --rounds 8
//! ```

use std::fs::File;
use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "bulk-floor",
    about = "Copy against splice for large UDP datagrams, side by side"
)]
struct Cli {
    /// The file sent (read once into the page cache and mapped).
    #[arg(long)]
    file: PathBuf,
    #[arg(long, default_value_t = 61440)]
    blksize: usize,
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Times the whole file is sent, per mode and per repetition.
    #[arg(long, default_value_t = 8)]
    rounds: usize,
    /// Each mode this many times, alternating.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Copy,
    Splice,
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

fn thread_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let r = unsafe {
        let mut r: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut r);
        r
    };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(r.ru_utime) + t(r.ru_stime)
}

fn check(r: isize, what: &str) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::new(
            io::Error::last_os_error().kind(),
            format!("{what}: {}", io::Error::last_os_error()),
        ))
    } else {
        Ok(r as usize)
    }
}

/// Sends `blocks` blocks `rounds` times in windows; returns (sender CPU-s,
/// wall s, bytes of payload).
fn run(
    cli: &Cli,
    mode: Mode,
    map: &memmap2::Mmap,
    file: &File,
    blocks: usize,
) -> io::Result<(f64, f64, f64)> {
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    let rx = UdpSocket::bind("127.0.0.1:0")?;
    tx.connect(rx.local_addr()?)?;
    rx.connect(tx.local_addr()?)?;
    let big: libc::c_int = 64 << 20;
    // SAFETY: setsockopt reads one c_int.
    unsafe {
        libc::setsockopt(
            rx.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const big).cast(),
            4,
        );
    }
    let (blk, window, total) = (cli.blksize, cli.window, blocks * cli.rounds);
    let receiver = {
        let rx = rx.try_clone()?;
        std::thread::spawn(move || -> io::Result<()> {
            pin(1);
            rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
            let mut buf = vec![0u8; 65536];
            for n in 0..total {
                let got = rx.recv(&mut buf)?;
                let block = ((n % blocks) + 1) as u16;
                if got != blk + 4 || buf[2..4] != block.to_be_bytes() {
                    return Err(io::Error::other(format!(
                        "datagram {n}: {got} bytes, block {:?}",
                        &buf[2..4]
                    )));
                }
                if (n + 1) % window == 0 || n + 1 == total {
                    rx.send(b"A")?;
                }
            }
            Ok(())
        })
    };
    pin(0);
    let mut pipe = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors, closed below.
    check(
        unsafe { libc::pipe2(pipe.as_mut_ptr(), 0) } as isize,
        "pipe2",
    )?;
    let (cpu0, start) = (thread_cpu(), Instant::now());
    let mut ack = [0u8; 16];
    let mut result = Ok(());
    'send: for n in 0..total {
        let index = n % blocks;
        let head = [0u8, 3, ((index + 1) >> 8) as u8, (index + 1) as u8];
        let offset = index * blk;
        let sent = match mode {
            Mode::Copy => {
                let iov = [
                    libc::iovec {
                        iov_base: head.as_ptr() as *mut _,
                        iov_len: 4,
                    },
                    libc::iovec {
                        iov_base: map[offset..].as_ptr() as *mut _,
                        iov_len: blk,
                    },
                ];
                // SAFETY: a zeroed msghdr with two iovecs into live memory.
                let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
                msg.msg_iov = iov.as_ptr() as *mut _;
                msg.msg_iovlen = 2;
                check(unsafe { libc::sendmsg(tx.as_raw_fd(), &msg, 0) }, "sendmsg")
            }
            Mode::Splice => (|| {
                // SAFETY: plain calls on our own descriptors and buffers.
                unsafe {
                    check(libc::write(pipe[1], head.as_ptr().cast(), 4), "write")?;
                    let mut off = offset as libc::loff_t;
                    let n = check(
                        libc::splice(
                            file.as_raw_fd(),
                            &mut off,
                            pipe[1],
                            std::ptr::null_mut(),
                            blk,
                            0,
                        ),
                        "splice in",
                    )?;
                    if n != blk {
                        return Err(io::Error::other(format!("spliced {n} of {blk} bytes in")));
                    }
                    check(
                        libc::splice(
                            pipe[0],
                            std::ptr::null_mut(),
                            tx.as_raw_fd(),
                            std::ptr::null_mut(),
                            blk + 4,
                            0,
                        ),
                        "splice out",
                    )
                }
            })(),
        };
        match sent {
            Ok(n) if n == blk + 4 => {}
            Ok(n) => {
                result = Err(io::Error::other(format!(
                    "{mode:?}: a {n}-byte datagram instead of {}",
                    blk + 4
                )));
                break 'send;
            }
            Err(e) => {
                result = Err(e);
                break 'send;
            }
        }
        if (n + 1) % window == 0 || n + 1 == total {
            if let Err(e) = tx.recv(&mut ack) {
                result = Err(e);
                break 'send;
            }
        }
    }
    let (cpu, wall) = (thread_cpu() - cpu0, start.elapsed().as_secs_f64());
    // SAFETY: closing the pipe made above.
    unsafe {
        libc::close(pipe[0]);
        libc::close(pipe[1]);
    }
    result?;
    receiver
        .join()
        .map_err(|_| io::Error::other("receiver panicked"))??;
    Ok((cpu, wall, (total * blk) as f64))
}

fn main() -> io::Result<()> {
    let cli = Cli::parse();
    if cli.blksize == 0 || cli.blksize > 65464 || cli.window == 0 {
        return Err(io::Error::other("blksize 1..=65464, window >= 1"));
    }
    let file = File::open(&cli.file)?;
    // SAFETY: a benchmark file nobody changes while this runs.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let _ = map.advise(memmap2::Advice::PopulateRead);
    let blocks = map.len() / cli.blksize;
    if blocks == 0 {
        return Err(io::Error::other("file smaller than one block"));
    }
    let modes: Vec<Mode> = if cli.blksize % 4096 == 0 && cli.blksize <= 15 * 4096 {
        vec![Mode::Copy, Mode::Splice]
    } else {
        eprintln!(
            "bulk-floor: {} bytes are not whole pages (at most 15): copy only",
            cli.blksize
        );
        vec![Mode::Copy]
    };
    println!("| mode | blksize | window | MiB/s | sender CPU-s/GiB |");
    println!("|---|---:|---:|---:|---:|");
    for _ in 0..cli.repeat {
        for &mode in &modes {
            let (cpu, wall, bytes) = run(&cli, mode, &map, &file, blocks)?;
            let gib = bytes / f64::from(1u32 << 30);
            println!(
                "| {mode:?} | {} | {} | {:.0} | {:.3} |",
                cli.blksize,
                cli.window,
                gib * 1024.0 / wall,
                cpu / gib
            );
        }
    }
    Ok(())
}

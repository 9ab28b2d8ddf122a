#!/usr/bin/env python3
"""Side-by-side benchmarks: rackboot against dnsmasq, tftpd-hpa and atftpd
(TFTP, S1..S5) and against dnsmasq (proxyDHCP, D1 and D2).

Each server runs alone, pinned to CPU 0, inside fresh cpuacct and memory
cgroups (so forked children and threads are counted); the load runs pinned
to CPU 1. Every scenario runs --runs times per server; the tables show
medians and each figure's ratio to the best peer (TFTP) or to dnsmasq
(DHCP). `--servers floor,...` adds a bare responder whose CPU per unit of
work is the kernel's own cost for the traffic: a yardstick, never counted
as a peer.

TFTP (S1..S5, B32, B64): servers on 127.0.0.1:69, rackboot-load as the
clients. The floor is tools/tftp-floor.rs, a bare responder (recvmmsg,
sendmmsg, lock-step or one window per ACK, no retransmission) for S1, S2,
B32 and B64. B32 and B64 measure bulk efficiency:
2 x 256 MiB, one at a time, windowsize 64, at blksize 32768 and 65464.

`--client` picks the TFTP clients, a comma-separated list of
rackboot-load, tftp-get and atftp (`all`: the three; `both`:
rackboot-load,tftp-get). tftp-get (tools/tftp-get.rs) is a second client
written apart from rackboot and rackboot-load (no code shared): `taskset
-c 1 tftp-get --server 127.0.0.1:69 --file F --verify ROOT/F --count N
--concurrency C [--blksize B] [--windowsize W]`, one thread per
concurrent transfer, each block checked against the served file as it
arrives; an RFC 7440 receiver (ACK every window and the last block,
re-ACK once on a gap, re-ACK after 200 ms without data) on the kernel's
default receive buffer unless --client-rcvbuf BYTES (its SO_RCVBUF). Its
warnings are its receive timeouts plus its out-of-order datagrams.

`--client atftp` drives the same scenarios with a third client, the
atftp command-line client (0.8: blksize and windowsize options; about
250 MiB/s at most, too slow to measure B32 and B64): one `taskset -c 1
atftp --get -r FILE -l OUT --option "blksize N" [--option "windowsize
W"] 127.0.0.1 69` per transfer, as many at once
as the scenario's concurrency (a thread pool of launchers, itself pinned
to CPU 1), OUT on a tmpfs (/dev/shm/rackboot-bench-PID). Every transfer is
bounded (120 s, and 240 s for the whole scenario); after the last one, and
outside the timed span, each OUT is compared byte for byte with the served
file and deleted. A nonzero exit, a timeout or a mismatch is a failed
transfer. MiB/s and transfers/s count verified transfers over the wall
time of the whole scenario; p99 is per transfer (launch to exit, process
start included); the load's CPU is its children's (getrusage
RUSAGE_CHILDREN). S5 (pxelinux boot plans) is rackboot-load's only and
skipped under tftp-get and atftp. With several clients every TFTP
scenario runs under each: the rows and the JSON
(results[scenario][client][server]) are keyed by client, and the ratio
to the best peer compares within a client.

DHCP (D1, D2): the script makes two network namespaces joined by a veth
pair, the server's (10.254.0.1/24) and the clients' (10.254.0.2/24), named
after its pid, and deletes them when it ends, on errors, Ctrl-C and SIGTERM
too. rackboot and dnsmasq read the same dnsmasq.conf (port=0,
dhcp-range=10.254.0.0,proxy, two pxe-service lines, no enable-tftp:
rackboot imports it with --dnsmasq-conf and opens no TFTP port); the floor
is tools/dhcp-floor.rs, a stateless OFFER/ACK writer on recvmmsg/sendmmsg.
tftpd-hpa and atftpd have no DHCP and are skipped.

- D1, a DISCOVER storm: ISC perfdhcp (`-i`: DISCOVER/OFFER only, `-B`
  broadcast flag, 10000 client MACs, the options of a BIOS PXE ROM)
  broadcasts from the client namespace for --dhcp-period seconds at each of
  --dhcp-rates (`max`: no -r, as fast as perfdhcp sends). Per rate: the
  DISCOVERs/s it managed to offer (sent / period), OFFERs/s received, drops
  (sent - received), mean and max delay, server CPU-us per OFFER (cgroup
  CPU / OFFERs), server CPU %, peak RSS, perfdhcp's own CPU %, and where
  datagrams were lost: the server's socket buffers, the client's (perfdhcp
  falling behind) or the per-CPU backlog the veth feeds.
- D2, PXE boots: rackboot-load --scenario dhcp --dhcp-broadcast (10000
  clients, 1000 at once: DISCOVER, broadcast OFFER on :68, REQUEST to
  4011, ACK). Wall time, clients/s, valid ACKs and ACKs answered at all
  (dnsmasq's ACK carries yiaddr = ciaddr and ciaddr 0, which rackboot-load
  rejects as ack-yiaddr-nonzero: its clients count as failed, yet answered),
  p50/p99 (valid ACKs only), server CPU-us per client.

HTTP (H1, H2, S6): rackboot (--http-listen, one shard) against nginx
(Debian's nginx-light, one worker, `sendfile on; tcp_nopush on;
sendfile_max_chunk 1m;`, its access log on like rackboot's log line),
both on 127.0.0.1:8080, pinned and measured like the TFTP servers.

- H1: 64 clients, each one kept-alive connection fetching a 32 MiB kernel
  then a 128 MiB initrd (rackboot-load --protocol http, every byte
  verified); H2: 1,000 clients x 4 MiB, all at once. GiB/s, requests/s,
  server CPU-s/GiB, the load's own CPU-s/GiB (which side bounds the
  throughput), p99 per client, peak memory.
- H1w, H2w: the same files under wrk (a second, independent client: one
  thread, 64 or 1,000 connections, --http-seconds each, looping on the
  file; bodies not verified).
- S6, the rack boot: 1,000 pxelinux clients (S5's plan: pxelinux.0,
  ldlinux.c32, the config search, menu.c32 over TFTP) fetching the 2 MiB
  kernel and 4 MiB initrd over HTTP from rackboot, against the same plan
  over TFTP only from rackboot and from dnsmasq. Wall time until the last
  client booted, failures, server CPU.

A veth delivers each datagram in the sender's softirq, on the sender's CPU
and (without IRQ time accounting) mostly on the sender's bill: the server's
CPU includes the kernel's delivery of its replies into the client
namespace, the load's CPU that of the requests into the server's socket.

    sudo python3 tools/bench.py                 # all scenarios, 3 runs
    sudo python3 tools/bench.py --scenarios S1,S3 --runs 1 --servers rackboot,dnsmasq
    sudo python3 tools/bench.py --scenarios B64,S1 --runs 1 --servers rackboot,atftpd --client both
    sudo python3 tools/bench.py --scenarios B64 --runs 1 --servers rackboot,atftpd --client tftp-get --client-rcvbuf 8388608
    sudo python3 tools/bench.py --scenarios D1,D2 --runs 1 --servers rackboot,dnsmasq,floor
    sudo python3 tools/bench.py --scenarios H1,H2,H1w,H2w,S6 --servers rackboot,nginx,dnsmasq

Needs root (port 69, namespaces, cgroups), the Debian packages dnsmasq and
tftpd-hpa, perfdhcp (kea-admin) for D1, nginx-light and wrk for H*, atftp
for --client atftp, and atftpd's binary, which is unpacked from its
package (it conflicts with tftpd-hpa's) into the work directory. The
script builds rackboot's binaries first (cargo build --release; --no-build
takes those in target/release as they are). Results also go to --out
(JSON).
"""

import argparse
import concurrent.futures
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PORT = 69
MIB = 1 << 20
GIB = 1 << 30

# name: (description, rackboot-load arguments, files it needs)
SCENARIOS = {
    "S1": ("500 x pxelinux.0 (42 KB), 200 at once, no options",
           ["--scenario", "file", "--file", "pxelinux.0", "--clients", "500", "--concurrency", "200"]),
    "S2": ("64 x 32 MiB, 64 at once, blksize 1468",
           ["--scenario", "file", "--file", "f32m", "--clients", "64", "--concurrency", "64", "--blksize", "1468"]),
    "S3": ("S2 with windowsize 16",
           ["--scenario", "file", "--file", "f32m", "--clients", "64", "--concurrency", "64", "--blksize", "1468",
            "--windowsize", "16"]),
    "S4": ("1 x 1 GiB, blksize 65464, windowsize 64",
           ["--scenario", "file", "--file", "f1g", "--clients", "1", "--concurrency", "1", "--blksize", "65464",
            "--windowsize", "64"]),
    "S5": ("1000 concurrent pxelinux boots (kernel 2 MiB, initrd 4 MiB)",
           ["--scenario", "pxelinux", "--clients", "1000", "--concurrency", "1000", "--kernel", "vmlinuz",
            "--initrd", "initrd.img"]),
    "B32": ("2 x 256 MiB, one at a time, blksize 32768, windowsize 64",
            ["--scenario", "file", "--file", "f256m", "--clients", "2", "--concurrency", "1", "--blksize", "32768",
             "--windowsize", "64"]),
    "B64": ("2 x 256 MiB, one at a time, blksize 65464, windowsize 64",
            ["--scenario", "file", "--file", "f256m", "--clients", "2", "--concurrency", "1", "--blksize", "65464",
             "--windowsize", "64"]),
}
# The TFTP clients (--client): rackboot-load; tools/tftp-get.rs, a second
# client independent of it and of rackboot; the atftp command-line client,
# one process per transfer (tftp-get and atftp: `file` scenarios only).
CLIENTS = ("rackboot-load", "tftp-get", "atftp")
CLIENT_ALIASES = {"all": CLIENTS, "both": ("rackboot-load", "tftp-get")}
ATFTP_TIMEOUT = 120.0  # seconds, per transfer
ATFTP_SCENARIO_LIMIT = 240.0  # seconds, per scenario (rackboot-load's --duration-limit)
# What a pxelinux boot plan (S5, S6) fetches.
PXELINUX_FILES = {"pxelinux.0", "ldlinux.c32", "menu.c32", "pxelinux.cfg/default", "vmlinuz", "initrd.img"}

# HTTP scenarios: rackboot-load (H1, H2, S6) or wrk (H1w, H2w) against
# rackboot and nginx (S6: rackboot and dnsmasq, TFTP then HTTP or TFTP only).
HTTP_PORT = 8080
HTTP_SCENARIOS = {
    "H1": ("64 x (32 MiB kernel + 128 MiB initrd), one kept-alive connection each",
           ["--protocol", "http", "--file", "k32m", "--file", "i128m", "--clients", "64", "--concurrency", "64"]),
    "H2": ("1000 x 4 MiB, all at once",
           ["--protocol", "http", "--file", "f4m", "--clients", "1000", "--concurrency", "1000"]),
    "H1w": ("wrk, 64 connections looping on the 128 MiB initrd", ["-c", "64", "i128m"]),
    "H2w": ("wrk, 1000 connections looping on 4 MiB", ["-c", "1000", "f4m"]),
    "S6": ("1000 pxelinux boots: modules over TFTP, then kernel (2 MiB) + initrd (4 MiB) over HTTP or TFTP",
           ["--scenario", "pxelinux", "--clients", "1000", "--concurrency", "1000", "--kernel", "vmlinuz",
            "--initrd", "initrd.img"]),
}
HTTP_SERVERS = ("rackboot", "rackboot-epoll", "nginx", "dnsmasq")
# HR: what a client gets when the file is rewritten in place during its
# download (no truncation: `dd conv=notrunc`, `rsync --inplace`).
HTTP_SCENARIOS["HR"] = ("a 48 MiB file rewritten in place while curl downloads it at 4 MiB/s", [])
REWRITE_FILE, REWRITE_SIZE = "rw48m", 48 * MIB
NGINX_CONF = """# bench.py H*: one worker, the settings operators use for boot files
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 20000; }}
http {{
    access_log {work}/nginx-access.log;
    sendfile on;
    tcp_nopush on;
    sendfile_max_chunk 1m;
    keepalive_requests 1000000;
    keepalive_timeout 60;
    default_type application/octet-stream;
    client_body_temp_path {work}/nginx-tmp;
    server {{
        listen {host}:{port} backlog=4096;
        root {root};
    }}
}}
"""
# wrk's summary as one parseable line.
WRK_REPORT = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("wrk-report bytes=%d requests=%d us=%d p99_us=%d errors=%d\n",
    summary.bytes, summary.requests, summary.duration, latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""

# tftp-floor knows lock-step with blksize only, and 16-bit block numbers.
FLOOR_SCENARIOS = ("S1", "S2", "B32", "B64")

# DHCP scenarios, run between two network namespaces joined by a veth pair.
DHCP_SCENARIOS = {
    "D1": "DISCOVER storm: perfdhcp, 10000 BIOS PXE clients, DISCOVER-OFFER only, swept over rates",
    "D2": "10000 PXE boots (DISCOVER, OFFER, REQUEST to 4011, ACK), 1000 at once: rackboot-load --scenario dhcp",
}
DHCP_SERVERS = ("rackboot", "rackboot-epoll", "dnsmasq", "floor")
DHCP_SERVER_IP = "10.254.0.1"
DHCP_CLIENT_IP = "10.254.0.2"
# dnsmasq's own configuration, which rackboot imports (--dnsmasq-conf):
# proxyDHCP only, no DNS, no TFTP (rackboot then listens on no TFTP port).
DNSMASQ_PXE_CONF = f"""# bench.py D1, D2: proxyDHCP only; no DNS (port=0), no TFTP (no enable-tftp)
port=0
dhcp-range={DHCP_SERVER_IP.rsplit(".", 1)[0]}.0,proxy
pxe-service=x86PC,"Boot BIOS",pxelinux
pxe-service=x86-64_EFI,"Boot UEFI",ipxe
"""
# What a BIOS PXE ROM sends: class, arch 0, UNDI 2.1, a type-0 UUID.
PERFDHCP_OPTIONS = ["-o", "60," + b"PXEClient:Arch:00000:UNDI:002001".hex(), "-o", "93,0000", "-o", "94,010201",
                    "-o", "97,00" + bytes(range(0x10, 0x20)).hex()]

FILES = {
    "pxelinux.0": 42 * 1024 + 123,
    "ldlinux.c32": 122 * 1024 + 45,
    "menu.c32": 27 * 1024 + 9,
    "pxelinux.cfg/default": 211,
    "vmlinuz": 2 * MIB + 77,
    "initrd.img": 4 * MIB + 5,
    "f32m": 32 * MIB,
    "f256m": 256 * MIB,
    "f1g": GIB,
    "k32m": 32 * MIB + 111,
    "i128m": 128 * MIB + 222,
    "f4m": 4 * MIB,
}


def make_root(root: Path, needed: set[str]) -> None:
    """Deterministic pseudo-random files, made once and reused."""
    for name, size in FILES.items():
        if name not in needed:
            continue
        path = root / name
        if path.exists() and path.stat().st_size == size:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = sum(name.encode()) & 0xFF
        block = bytes((i * 131 + seed) & 0xFF for i in range(4093))  # prime length: no block alignment
        with open(path, "wb") as f:
            left = size
            while left:
                chunk = (block * 256)[: min(left, 4093 * 256)]
                f.write(chunk)
                left -= len(chunk)


def warm_page_cache(root: Path, needed: set[str]) -> None:
    """Reads every file once, so that no server's first run pays for the
    disk (in one run rackboot's first S4 pass met a cold 1 GiB file)."""
    for name in needed:
        with open(root / name, "rb") as f:
            while f.read(1 << 24):
                pass


def server_command(name: str, root: Path, work: Path) -> list[str]:
    if name == "rackboot":
        return [str(REPO / "target/release/rackboot"), "--root", str(root), "--listen", f"{HOST}:{PORT}",
                "--shards", "1", "--max-transfers", "20000", "--max-per-client", "20000"]
    if name == "floor":
        return [str(REPO / "target/release/tftp-floor"), "--root", str(root), "--listen", f"{HOST}:{PORT}"]
    if name == "dnsmasq":
        return ["dnsmasq", "--keep-in-foreground", "--port=0", "--enable-tftp", f"--tftp-root={root}",
                f"--listen-address={HOST}", "--bind-interfaces", "--tftp-max=20000", "--user=root",
                f"--pid-file={work}/dnsmasq.pid", "--log-facility=/dev/null", "--conf-file=/dev/null"]
    if name == "tftpd-hpa":
        return ["in.tftpd", "--listen", "--foreground", "--address", f"{HOST}:{PORT}", "--secure", str(root),
                "--user", "root"]
    if name == "atftpd":
        return [str(atftpd_binary(work)), "--daemon", "--no-fork", "--port", str(PORT), "--bind-address", HOST,
                "--maxthread", "20000", "--user", "root", "--group", "root", "--logfile", "/dev/null", str(root)]
    raise ValueError(name)


def dhcp_server_command(name: str, root: Path, work: Path) -> list[str]:
    """The proxyDHCP servers of D1, D2, all reading the same dnsmasq.conf
    (the floor reads none: it answers every PXE DISCOVER alike)."""
    conf = work / "pxe-dnsmasq.conf"
    conf.write_text(DNSMASQ_PXE_CONF)
    if name in ("rackboot", "rackboot-epoll"):
        # `rackboot-epoll`: the recvmmsg loop instead of io_uring receives.
        io = ["--io", "epoll"] if name == "rackboot-epoll" else []
        return [str(REPO / "target/release/rackboot"), "--dnsmasq-conf", str(conf), "--root", str(root),
                "--shards", "1", *io]
    if name == "floor":
        return [str(REPO / "target/release/dhcp-floor")]
    if name == "dnsmasq":
        return ["dnsmasq", "--keep-in-foreground", "--quiet-dhcp", f"--conf-file={conf}", "--user=root",
                f"--pid-file={work}/dnsmasq-dhcp.pid", f"--dhcp-leasefile={work}/dnsmasq-dhcp.leases",
                "--log-facility=/dev/null"]
    raise ValueError(name)


def atftpd_binary(work: Path) -> Path:
    binary = work / "atftpd-pkg/usr/sbin/atftpd"
    if not binary.exists():
        (work / "atftpd-pkg").mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", "atftpd"], cwd=work, check=True, capture_output=True)
        deb = next(work.glob("atftpd_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(work / "atftpd-pkg")], check=True)
    return binary


class Cgroup:
    """A cpuacct + memory cgroup (v1 or v2) holding one server and its children."""

    def __init__(self, label: str):
        self.dirs = []
        v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
        bases = [Path("/sys/fs/cgroup")] if v2 else [Path("/sys/fs/cgroup/cpuacct"), Path("/sys/fs/cgroup/memory")]
        for base in bases:
            d = base / f"rackboot-bench-{label}-{os.getpid()}"
            d.mkdir(exist_ok=True)
            self.dirs.append(d)
        self.v2 = v2

    def procs_files(self):
        return [d / "cgroup.procs" for d in self.dirs]

    def cpu_seconds(self) -> float:
        if self.v2:
            for line in (self.dirs[0] / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec"):
                    return int(line.split()[1]) / 1e6
            return 0.0
        return int((self.dirs[0] / "cpuacct.usage").read_text()) / 1e9

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.dirs[0] / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def remove(self):
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """Resident memory of a process: VmRSS counts the pages of mapped files
    (shared page cache), RssAnon only the process's private memory."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def wait_ready(timeout: float = 10.0) -> None:
    """Until the server answers a RRQ for a missing file (ERROR) or any file."""
    import socket
    rrq = b"\x00\x01ready-probe\x00octet\x00"
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            s.sendto(rrq, (HOST, PORT))
            try:
                s.recvfrom(600)
                return
            except OSError:
                pass
    raise RuntimeError("server did not answer within 10 s")


class ServerProcess:
    """One server in fresh cgroups, pinned to CPU 0 (inside network
    namespace `netns` when given), its peak memory sampled every 100 ms.
    The wrapper joins the cgroups, then execs the pinned server: every
    process and thread it ever makes is counted, and killed on exit."""

    def __init__(self, label: str, cmd: list[str], log_path: Path, netns: str | None = None):
        self.label, self.cmd, self.log_path, self.netns = label, cmd, log_path, netns
        self.peak = {"rss": 0, "anon": 0}
        self.stop = threading.Event()

    def __enter__(self):
        self.cg = Cgroup(self.label)
        joins = "; ".join(f"echo $$ > {f}" for f in self.cg.procs_files())
        inside = f"ip netns exec {self.netns} " if self.netns else ""
        wrapper = ["bash", "-c", f'{joins}; exec {inside}taskset -c 0 "$@"', "bench-server", *self.cmd]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(wrapper, stdout=self.log, stderr=subprocess.STDOUT)
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()
        return self

    def _sample(self):
        while not self.stop.is_set():
            pids = self.cg.pids()
            self.peak["rss"] = max(self.peak["rss"], sum(rss_bytes(p) for p in pids))
            self.peak["anon"] = max(self.peak["anon"], sum(rss_bytes(p, "RssAnon") for p in pids))
            self.stop.wait(0.1)

    def reset_peak(self):
        self.peak = {"rss": 0, "anon": 0}

    def cpu_seconds(self) -> float:
        return self.cg.cpu_seconds()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-2000:]

    def __exit__(self, *exc):
        self.stop.set()
        # Only what this run started: the wrapper and the cgroup's members
        # (again until none is left: a server may fork while dying, and the
        # wrapper may not have joined the cgroup yet when a start fails).
        for _ in range(100):
            pids = set(self.cg.pids())
            if self.proc.poll() is None:
                pids.add(self.proc.pid)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        self.proc.wait(timeout=10)
        self.sampler.join()
        self.log.close()
        self.cg.remove()
        return False


def run_once(server: str, scenario: str, root: Path, work: Path, load_bin: Path) -> dict:
    cmd = server_command(server, root, work)
    with ServerProcess(f"{server}-{scenario}", cmd, work / f"{server}-{scenario}.log") as srv:
        wait_ready()
        cpu0 = srv.cpu_seconds()
        srv.reset_peak()
        out = work / f"{server}-{scenario}.json"
        load = ["taskset", "-c", "1", str(load_bin), "--server", f"{HOST}:{PORT}", "--verify-dir", str(root),
                "--json", str(out), "--duration-limit", "240", *SCENARIOS[scenario][1]]
        subprocess.run(load, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        cpu = srv.cpu_seconds() - cpu0
        peak = dict(srv.peak)
        result = json.loads(out.read_text())
    gib = max(result.get("bytes", 0), 1) / GIB
    return {
        "ok": result.get("ok", 0),
        "failed": result.get("failed", 0),
        "mib_s": result.get("mib_per_s", 0.0),
        "transfers_s": result.get("transfers_per_s", 0.0),
        "p99_ms": result.get("p99_ms", 0.0),
        "unanswered": result.get("unanswered_requests", 0),
        "cpu_s_per_gib": cpu / gib,
        "peak_rss_mib": peak["rss"] / MIB,
        "peak_anon_mib": peak["anon"] / MIB,
        "load_cpu_s": result.get("client_cpu_seconds", 0.0),
    }


def scenario_arg(scenario: str, flag: str, default: str | None = None) -> str | None:
    """The value of `flag` in a TFTP scenario's rackboot-load arguments."""
    a = SCENARIOS[scenario][1]
    return a[a.index(flag) + 1] if flag in a else default


def fetches_files(scenario: str) -> bool:
    """tftp-get and atftp fetch files: the `file` scenarios, not the boot
    plans (S5)."""
    return scenario_arg(scenario, "--scenario") == "file"


def run_tftp_get(server: str, scenario: str, root: Path, work: Path, bin: Path,
                 rcvbuf: int | None = None) -> dict:
    """One `file` scenario driven by tftp-get, pinned to CPU 1: the
    scenario's count, concurrency, blksize and windowsize; every block
    verified against the served file; `rcvbuf` its SO_RCVBUF (None: the
    kernel's default). The server's CPU and memory from its cgroups."""
    file = scenario_arg(scenario, "--file")
    label = f"{server}-{scenario}-tftp-get"
    out = work / f"{label}.json"
    out.unlink(missing_ok=True)
    load = ["taskset", "-c", "1", str(bin), "--server", f"{HOST}:{PORT}", "--file", file, "--verify",
            str(root / file), "--count", scenario_arg(scenario, "--clients"), "--concurrency",
            scenario_arg(scenario, "--concurrency"), "--duration-limit", str(int(ATFTP_SCENARIO_LIMIT)),
            "--json", str(out)]
    for name in ("blksize", "windowsize"):
        value = scenario_arg(scenario, f"--{name}")
        if value is not None:
            load += [f"--{name}", value]
    if rcvbuf is not None:
        load += ["--rcvbuf", str(rcvbuf)]
    cmd = server_command(server, root, work)
    with ServerProcess(label, cmd, work / f"{label}.log") as srv:
        wait_ready()
        cpu0 = srv.cpu_seconds()
        srv.reset_peak()
        done = subprocess.run(load, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
        cpu = srv.cpu_seconds() - cpu0
        peak = dict(srv.peak)
        if not out.exists():
            raise RuntimeError(f"tftp-get exited {done.returncode}:\n{done.stderr[-2000:]}")
        result = json.loads(out.read_text())
    gib = max(result["bytes"], 1) / GIB
    return {
        "ok": result["ok"],
        "failed": result["failed"],
        "mib_s": result["mib_per_s"],
        "transfers_s": result["transfers_per_s"],
        "p99_ms": result["p99_ms"],
        "unanswered": None,  # not measured: a transfer retries until it fails
        "cpu_s_per_gib": cpu / gib,
        "peak_rss_mib": peak["rss"] / MIB,
        "peak_anon_mib": peak["anon"] / MIB,
        "load_cpu_s": result["client_cpu_seconds"],
        "wall_s": result["wall_s"],
        "client_warnings": result["timeouts"] + result["out_of_order"],
        "failure_kinds": ", ".join(f"{n} x {kind}" for kind, n in sorted(result["failure_kinds"].items())),
    }


def same_bytes(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes (no caching, unlike filecmp)."""
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                x, y = fa.read(1 << 20), fb.read(1 << 20)
                if x != y:
                    return False
                if not x:
                    return True
    except OSError:
        return False


def run_atftp(server: str, scenario: str, root: Path, work: Path, shm: Path) -> dict:
    """One TFTP scenario driven by the atftp client: one process per
    transfer, pinned to CPU 1, as many at once as the scenario's
    concurrency; the launching threads are pinned to CPU 1 too. Each
    download lands in `shm` (a tmpfs); after the last transfer, outside the
    timed span, each is compared with the served file and deleted."""
    file = scenario_arg(scenario, "--file")
    count = int(scenario_arg(scenario, "--clients"))
    concurrency = int(scenario_arg(scenario, "--concurrency"))
    options = []
    for name in ("blksize", "windowsize"):
        value = scenario_arg(scenario, f"--{name}")
        if value is not None:
            options += ["--option", f"{name} {value}"]
    label = f"{server}-{scenario}-atftp"
    outdir = shm / label
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    live: set[subprocess.Popen] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def transfer(i: int, deadline: float) -> tuple[int, float, str, int]:
        """(index, seconds, failure or "", stderr lines beyond the option echo)"""
        if stop.is_set() or time.monotonic() >= deadline:
            return i, 0.0, "not-started", 0
        out = outdir / str(i)
        cmd = ["taskset", "-c", "1", "atftp", "--get", "-r", file, "-l", str(out), *options, HOST, str(PORT)]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        with lock:
            live.add(proc)
        try:
            if stop.is_set():
                proc.kill()
            _, err = proc.communicate(timeout=max(0.1, min(ATFTP_TIMEOUT, deadline - t0)))
            failure = "" if proc.returncode == 0 else f"exit-{proc.returncode}"
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            failure = "timeout"
        finally:
            with lock:
                live.discard(proc)
        seconds = time.monotonic() - t0
        notes = sum(1 for line in err.decode(errors="replace").splitlines() if not line.startswith("Option "))
        return i, seconds, failure, notes

    cmd = server_command(server, root, work)
    results = []
    with ServerProcess(label, cmd, work / f"{label}.log") as srv:
        wait_ready()
        cpu0, load_cpu0 = srv.cpu_seconds(), children_cpu()
        srv.reset_peak()
        affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {1})  # this thread, and the pool's threads it starts
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency)
        try:
            start = time.monotonic()
            deadline = start + ATFTP_SCENARIO_LIMIT
            futures = [pool.submit(transfer, i, deadline) for i in range(count)]
            results = [f.result() for f in futures]  # each bounded by ATFTP_TIMEOUT and the deadline
            wall = time.monotonic() - start
        except BaseException:
            stop.set()
            with lock:
                for proc in list(live):
                    proc.kill()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            os.sched_setaffinity(0, affinity)
        cpu = srv.cpu_seconds() - cpu0
        load_cpu = children_cpu() - load_cpu0
        peak = dict(srv.peak)
    # Verification, outside the timed span.
    served = root / file
    failures: dict[str, int] = {}
    ok_seconds = []
    for i, seconds, failure, _ in results:
        out = outdir / str(i)
        if not failure and not same_bytes(served, out):
            failure = "mismatch"
        if failure:
            failures[failure] = failures.get(failure, 0) + 1
        else:
            ok_seconds.append(seconds)
        out.unlink(missing_ok=True)
    shutil.rmtree(outdir, ignore_errors=True)
    ok = len(ok_seconds)
    nbytes = ok * served.stat().st_size if ok else 0
    ok_seconds.sort()
    p99 = ok_seconds[max(0, -(-99 * ok // 100) - 1)] if ok else 0.0  # nearest rank
    gib = max(nbytes, 1) / GIB
    wall = max(wall, 1e-9)
    return {
        "ok": ok,
        "failed": count - ok,
        "mib_s": nbytes / MIB / wall,
        "transfers_s": ok / wall,
        "p99_ms": 1e3 * p99,
        "unanswered": None,  # not measured: atftp does not say
        "cpu_s_per_gib": cpu / gib,
        "peak_rss_mib": peak["rss"] / MIB,
        "peak_anon_mib": peak["anon"] / MIB,
        "load_cpu_s": load_cpu,
        "wall_s": wall,
        # atftp's complaints on stderr (timeouts, retries, out-of-window
        # blocks), summed over the transfers.
        "client_warnings": sum(r[3] for r in results),
        "failure_kinds": ", ".join(f"{n} x {kind}" for kind, n in sorted(failures.items())),
    }


class Netns:
    """The DHCP scenarios' network: a server namespace (DHCP_SERVER_IP/24)
    and a client namespace (DHCP_CLIENT_IP/24) joined by a veth pair, named
    after this process. close() kills whatever still runs inside them (only
    this script starts anything there) and deletes them; main() reaches it
    from a finally, on errors, Ctrl-C and SIGTERM alike."""

    def __init__(self):
        tag = os.getpid()
        self.server, self.client = f"rbbench-srv-{tag}", f"rbbench-cli-{tag}"
        self.server_if, self.client_if = f"rbs{tag}", f"rbc{tag}"  # under IFNAMSIZ (15)

    def __enter__(self):
        try:
            for cmd in (["netns", "add", self.server], ["netns", "add", self.client],
                        ["link", "add", self.server_if, "netns", self.server, "type", "veth",
                         "peer", "name", self.client_if, "netns", self.client],
                        ["-n", self.server, "addr", "add", f"{DHCP_SERVER_IP}/24", "dev", self.server_if],
                        ["-n", self.client, "addr", "add", f"{DHCP_CLIENT_IP}/24", "dev", self.client_if],
                        ["-n", self.server, "link", "set", self.server_if, "up"],
                        ["-n", self.client, "link", "set", self.client_if, "up"],
                        ["-n", self.server, "link", "set", "lo", "up"],
                        ["-n", self.client, "link", "set", "lo", "up"]):
                subprocess.run(["ip", *cmd], check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as e:
            self.close()
            raise RuntimeError(f"ip {' '.join(e.cmd[1:])}: {e.stderr.strip()}") from None
        except BaseException:
            self.close()
            raise
        return self

    def exec(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def close(self):
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        try:
            for ns in (self.server, self.client):
                pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            # A veth made but not yet moved (a failure half-way) is in ours.
            subprocess.run(["ip", "link", "del", self.server_if], capture_output=True)
        finally:
            signal.signal(signal.SIGINT, previous)

    def __exit__(self, *exc):
        self.close()
        return False


def wait_dhcp_ready(net: Netns, srv: ServerProcess, timeout: float = 10.0) -> None:
    """Until the server has bound UDP 67 and 4011 in its namespace."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not srv.alive():
            raise RuntimeError(f"server exited at start:\n{srv.log_tail()}")
        ports = subprocess.run([*net.exec(net.server), "ss", "-Hlun"], capture_output=True, text=True).stdout
        bound = {line.split()[3].rsplit(":", 1)[-1] for line in ports.splitlines() if len(line.split()) > 3}
        if {"67", "4011"} <= bound:
            time.sleep(0.2)
            return
        time.sleep(0.1)
    raise RuntimeError(f"server did not bind UDP 67 and 4011 within {timeout:.0f} s:\n{srv.log_tail()}")


def udp_rcvbuf_errors(ns: str) -> int:
    """Datagrams a full socket receive buffer dropped in namespace `ns`."""
    lines = [l.split() for l in subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"],
                                               capture_output=True, text=True).stdout.splitlines()
             if l.startswith("Udp:")]
    return int(dict(zip(lines[0], lines[1]))["RcvbufErrors"]) if len(lines) >= 2 else 0


def backlog_drops() -> int:
    """Packets dropped by full per-CPU input backlogs (netdev_max_backlog),
    where a veth queues what it delivers; system-wide."""
    return sum(int(l.split()[1], 16) for l in Path("/proc/net/softnet_stat").read_text().splitlines())


class Losses:
    """Where lost datagrams went, between start and stop: the server's
    sockets, the client's, or the backlog the veth feeds."""

    def __init__(self, net: "Netns"):
        self.net = net
        self.start = self._read()

    def _read(self) -> tuple[int, int, int]:
        return udp_rcvbuf_errors(self.net.server), udp_rcvbuf_errors(self.net.client), backlog_drops()

    def stop(self) -> dict:
        end = self._read()
        return {k: b - a for k, a, b in zip(("lost_server_sock", "lost_client_sock", "lost_backlog"),
                                            self.start, end)}


def children_cpu() -> float:
    """CPU seconds of this script's reaped children (the load tools)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def parse_perfdhcp(text: str) -> dict:
    """perfdhcp's final DISCOVER-OFFER statistics."""
    def num(label: str) -> float:
        m = re.search(rf"^{label}: ([0-9.]+)", text, re.MULTILINE)
        if not m:
            raise RuntimeError(f"perfdhcp printed no '{label}':\n{text[-2000:]}")
        return float(m.group(1))
    return {k: num(label) for k, label in (("sent", "sent packets"), ("received", "received packets"),
                                          ("orphans", "orphans"), ("min_ms", "min delay"),
                                          ("avg_ms", "avg delay"), ("max_ms", "max delay"))}


def run_d1(server: str, root: Path, work: Path, net: Netns, rates: list[str], period: float, run: int) -> dict:
    """One server, the rates in turn: {rate: figures}."""
    cmd = dhcp_server_command(server, root, work)
    out = {}
    with ServerProcess(f"{server}-D1", cmd, work / f"{server}-D1.log", net.server) as srv:
        wait_dhcp_ready(net, srv)
        for rate in rates:
            perf = [*net.exec(net.client), "taskset", "-c", "1", "perfdhcp", "-4", "-l", net.client_if, "-i", "-B",
                    "-R", "10000", "-p", f"{period:g}", "-W", "500000", "-g", "single",
                    *([] if rate == "max" else ["-r", rate]), *PERFDHCP_OPTIONS]
            losses = Losses(net)  # first: its `ip netns exec cat` is no part of the load's CPU
            cpu0, load0, t0 = srv.cpu_seconds(), children_cpu(), time.monotonic()
            srv.reset_peak()
            done = subprocess.run(perf, capture_output=True, text=True, timeout=period + 60)
            cpu, load_cpu, wall = srv.cpu_seconds() - cpu0, children_cpu() - load0, time.monotonic() - t0
            (work / f"D1-{server}-{rate}-run{run}.txt").write_text(done.stdout + done.stderr)
            if done.returncode not in (0, 3):  # 3: some exchanges not completed
                raise RuntimeError(f"perfdhcp exited {done.returncode}:\n{(done.stdout + done.stderr)[-2000:]}")
            p = parse_perfdhcp(done.stdout)
            if not srv.alive():
                raise RuntimeError(f"{server} died during D1 at rate {rate}:\n{srv.log_tail()}")
            out[rate] = {
                "offered_s": p["sent"] / period,
                "offers_s": p["received"] / period,
                "sent": p["sent"],
                "received": p["received"],
                "drops_pct": 100 * (p["sent"] - p["received"]) / max(p["sent"], 1),
                "orphans": p["orphans"],
                "avg_ms": p["avg_ms"],
                "max_ms": p["max_ms"],
                "cpu_us_per_offer": 1e6 * cpu / max(p["received"], 1),
                "server_cpu_pct": 100 * cpu / period,
                "peak_rss_mib": srv.peak["rss"] / MIB,
                "peak_anon_mib": srv.peak["anon"] / MIB,
                "load_cpu_pct": 100 * load_cpu / wall,
                **losses.stop(),
            }
            time.sleep(0.5)  # let the last replies drain before the next rate
    return out


def run_d2(server: str, root: Path, work: Path, net: Netns, load_bin: Path, clients: int, concurrency: int) -> dict:
    cmd = dhcp_server_command(server, root, work)
    out = work / f"{server}-D2.json"
    out.unlink(missing_ok=True)
    with ServerProcess(f"{server}-D2", cmd, work / f"{server}-D2.log", net.server) as srv:
        wait_dhcp_ready(net, srv)
        load = [*net.exec(net.client), "taskset", "-c", "1", str(load_bin), "--server", f"{DHCP_SERVER_IP}:67",
                "--scenario", "dhcp", "--clients", str(clients), "--concurrency", str(concurrency),
                "--dhcp-broadcast", "--json", str(out), "--duration-limit", "120"]
        if server == "dnsmasq":
            # dnsmasq's ACK carries the client's address in yiaddr, ciaddr 0:
            # firmware takes it, so count it as answered (rackboot-load is
            # strict by default, for rackboot's own regressions).
            load.append("--dhcp-swapped-ack")
        cpu0, losses = srv.cpu_seconds(), Losses(net)
        srv.reset_peak()
        done = subprocess.run(load, capture_output=True, text=True, timeout=180)
        cpu = srv.cpu_seconds() - cpu0
        lost = losses.stop()
        peak = dict(srv.peak)
        if not out.exists():
            raise RuntimeError(f"rackboot-load exited {done.returncode}:\n{done.stderr[-2000:]}")
        result = json.loads(out.read_text())
    failures = result.get("failures", {})
    # A client failed for its ACK's content (ack-*) was answered all the same.
    rejected = sum(n for kind, n in failures.items() if kind.startswith("ack-"))
    return {
        "wall_s": result["seconds"],
        "clients_s": result["clients"] / max(result["seconds"], 1e-9),
        "acks": result.get("acks", 0),
        "answered": result.get("acks", 0) + rejected,
        "failed": result["failed"],
        "unanswered": result.get("unanswered_requests", 0),
        "p50_ms": result.get("p50_ms", 0.0),
        "p99_ms": result.get("p99_ms", 0.0),
        "cpu_us_per_client": 1e6 * cpu / max(result["clients"], 1),
        "peak_rss_mib": peak["rss"] / MIB,
        "peak_anon_mib": peak["anon"] / MIB,
        "load_cpu_s": result.get("client_cpu_seconds", 0.0),
        **lost,
        "failure_kinds": ", ".join(f"{n} x {kind}" for kind, n in sorted(failures.items())),
    }


def http_server_command(name: str, root: Path, work: Path) -> list[str]:
    """H*: rackboot (TFTP on :69 too, for S6) or nginx on HOST:HTTP_PORT;
    S6's TFTP-only peer is dnsmasq's TFTP server."""
    if name == "rackboot-tftp":
        return server_command("rackboot", root, work)
    if name in ("rackboot", "rackboot-epoll"):
        io = ["--io", "epoll"] if name == "rackboot-epoll" else []
        return [*server_command("rackboot", root, work), "--http-listen", f"{HOST}:{HTTP_PORT}",
                "--max-http-connections", "20000", *io]
    if name == "nginx":
        conf = work / "nginx.conf"
        (work / "nginx-tmp").mkdir(exist_ok=True)
        conf.write_text(NGINX_CONF.format(work=work, host=HOST, port=HTTP_PORT, root=root))
        return ["nginx", "-c", str(conf), "-e", str(work / "nginx-error.log")]
    if name == "dnsmasq":
        return server_command("dnsmasq", root, work)
    raise ValueError(name)


def wait_http_ready(timeout: float = 10.0) -> None:
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((HOST, HTTP_PORT), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{HTTP_PORT} after {timeout:.0f} s")


def run_http(server: str, scenario: str, root: Path, work: Path, load_bin: Path, wrk_seconds: float) -> dict:
    """One H*/S6 run: the server pinned to CPU 0, rackboot-load or wrk on
    CPU 1; CPU and memory from the server's cgroups."""
    cmd = http_server_command(server, root, work)
    label = f"{server}-{scenario}"
    with ServerProcess(label, cmd, work / f"{label}.log") as srv:
        if scenario == "S6":
            wait_ready()
        if server not in ("dnsmasq", "rackboot-tftp"):
            wait_http_ready()
        cpu0, load_cpu0 = srv.cpu_seconds(), children_cpu()
        srv.reset_peak()
        if scenario.endswith("w"):
            conns, file = HTTP_SCENARIOS[scenario][1][1], HTTP_SCENARIOS[scenario][1][2]
            script = work / "wrk-report.lua"
            script.write_text(WRK_REPORT)
            done = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c", conns, "-d", f"{round(wrk_seconds)}s",
                                   "--timeout", "30s", "-s", str(script), f"http://{HOST}:{HTTP_PORT}/{file}"],
                                  capture_output=True, text=True, timeout=wrk_seconds + 60)
            line = next((l for l in done.stdout.splitlines() if l.startswith("wrk-report ")), None)
            if line is None:
                raise RuntimeError(f"wrk printed no report:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
            w = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
            result = {"bytes": w["bytes"], "seconds": w["us"] / 1e6, "transfers": w["requests"],
                      "p99_ms": w["p99_us"] / 1e3, "ok": w["requests"], "failed": w["errors"],
                      "client_cpu_seconds": children_cpu() - load_cpu0}
        else:
            out = work / f"{label}.json"
            out.unlink(missing_ok=True)
            args = list(HTTP_SCENARIOS[scenario][1])
            if scenario == "S6" and server != "dnsmasq" and not server.endswith("-tftp"):
                args += ["--kernel-over", "http", "--http-server", f"{HOST}:{HTTP_PORT}"]
            elif scenario != "S6":
                args += ["--http-server", f"{HOST}:{HTTP_PORT}"]
            server_arg = ["--server", f"{HOST}:{PORT}"] if scenario == "S6" else []
            load = ["taskset", "-c", "1", str(load_bin), *server_arg, "--verify-dir", str(root), "--json", str(out),
                    "--duration-limit", "240", *args]
            done = subprocess.run(load, capture_output=True, text=True, timeout=300)
            if not out.exists():
                raise RuntimeError(f"rackboot-load exited {done.returncode}:\n{done.stderr[-2000:]}")
            result = json.loads(out.read_text())
        cpu = srv.cpu_seconds() - cpu0
        peak = dict(srv.peak)
    gib = max(result.get("bytes", 0), 1) / GIB
    seconds = max(result.get("seconds", 0.0), 1e-9)
    return {
        "ok": result.get("ok", 0),
        "failed": result.get("failed", 0),
        "wall_s": seconds,
        "gib_s": gib / seconds,
        "requests_s": result.get("transfers", 0) / seconds,
        "p99_ms": result.get("p99_ms", 0.0),
        "cpu_s_per_gib": cpu / gib,
        "load_cpu_s_per_gib": result.get("client_cpu_seconds", 0.0) / gib,
        "server_cpu_pct": 100 * cpu / seconds,
        "peak_rss_mib": peak["rss"] / MIB,
        "peak_anon_mib": peak["anon"] / MIB,
    }


def run_rewrite(server: str, root: Path, work: Path) -> dict:
    """HR: a slow download, the file overwritten in place after its first
    MiB; then what the client kept: complete or short, and whether every
    byte it got is the old version's (a prefix of it) or a mix."""
    path = root / REWRITE_FILE
    old = bytes((i * 7 + 3) & 0xFF for i in range(251)) * (REWRITE_SIZE // 251 + 1)
    old = old[:REWRITE_SIZE]
    path.write_bytes(old)
    new = bytes(b ^ 0xFF for b in old[:MIB]) * (REWRITE_SIZE // MIB)
    dest = work / "hr-download"
    dest.unlink(missing_ok=True)
    cmd = http_server_command(server, root, work)
    with ServerProcess(f"{server}-HR", cmd, work / f"{server}-HR.log"):
        wait_http_ready()
        curl = subprocess.Popen(["curl", "-s", "--limit-rate", "4M", "--max-time", "60", "-o", str(dest),
                                 f"http://{HOST}:{HTTP_PORT}/{REWRITE_FILE}"])
        deadline = time.time() + 10
        while (dest.stat().st_size if dest.exists() else 0) < MIB and time.time() < deadline:
            time.sleep(0.02)
        with open(path, "r+b") as f:  # in place: no truncation
            f.write(new)
        curl.wait(timeout=90)
    got = dest.read_bytes()
    path.write_bytes(old)
    first_new = next((i for i in range(0, len(got), 4096) if got[i:i + 4096] != old[i:min(i + 4096, len(got))]),
                     None)
    return {
        "complete": len(got) == REWRITE_SIZE,
        "bytes": len(got),
        "curl_exit": curl.returncode,
        "mixed": first_new is not None,
        "first_changed_byte": first_new if first_new is not None else -1,
    }


def median_of(runs: list[dict]) -> dict:
    """Medians of the numbers; other values (text) from the last run."""
    keys = runs[0].keys()
    return {k: statistics.median(r[k] for r in runs) if isinstance(runs[0][k], (int, float)) else runs[-1][k]
            for k in keys}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default=",".join([*SCENARIOS, *DHCP_SCENARIOS, *HTTP_SCENARIOS]))
    ap.add_argument("--servers", default="rackboot,dnsmasq,tftpd-hpa,atftpd")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="/tmp/rackboot-bench")
    ap.add_argument("--out", default="bench-results.json")
    ap.add_argument("--dhcp-rates", default="2000,5000,10000,20000,40000,max",
                    help="D1: DISCOVERs per second asked of perfdhcp; max: no -r, as fast as it sends")
    ap.add_argument("--dhcp-period", type=float, default=5.0, help="D1: seconds per rate")
    ap.add_argument("--dhcp-clients", type=int, default=10000, help="D2: clients")
    ap.add_argument("--dhcp-concurrency", type=int, default=1000, help="D2: clients at once")
    ap.add_argument("--http-seconds", type=float, default=5.0, help="H1w, H2w: seconds of wrk per run")
    ap.add_argument("--client", default="rackboot-load",
                    help="TFTP scenarios: the clients, each in turn, a comma-separated list of "
                         f"{','.join(CLIENTS)}; all: the three; both: rackboot-load,tftp-get")
    ap.add_argument("--client-rcvbuf", type=int, metavar="BYTES",
                    help="tftp-get's SO_RCVBUF (--rcvbuf); default: the kernel's (net.core.rmem_default)")
    ap.add_argument("--no-build", action="store_true",
                    help="take rackboot's binaries in target/release as they are (no cargo build)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.py: run as root (port 69, network namespaces and cgroups)")
    # SIGTERM and SIGHUP unwind like Ctrl-C: every finally runs, the
    # namespaces and cgroups go.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    scenarios = args.scenarios.split(",")
    every = [*SCENARIOS, *DHCP_SCENARIOS, *HTTP_SCENARIOS]
    unknown = [s for s in scenarios if s not in every]
    if unknown:
        sys.exit(f"bench.py: unknown scenarios {','.join(unknown)}; choose from {','.join(every)}")
    tftp = [s for s in scenarios if s in SCENARIOS]
    dhcp = [s for s in scenarios if s in DHCP_SCENARIOS]
    http = [s for s in scenarios if s in HTTP_SCENARIOS]
    servers = args.servers.split(",")
    work = Path(args.work)
    root = work / "root"
    root.mkdir(parents=True, exist_ok=True)
    clients = []
    for c in args.client.split(","):
        for name in CLIENT_ALIASES.get(c, (c,)):
            if name not in CLIENTS:
                sys.exit(f"bench.py: unknown client {name}; choose from {','.join(CLIENTS)}, all, both")
            if name not in clients:
                clients.append(name)
    needed = set()
    for s in tftp:
        needed |= {scenario_arg(s, "--file")} if scenario_arg(s, "--file") else PXELINUX_FILES
    for s in (s for s in http if s != "HR"):
        a = HTTP_SCENARIOS[s][1]
        needed |= ({"pxelinux.0", "ldlinux.c32", "menu.c32", "pxelinux.cfg/default", "vmlinuz", "initrd.img"}
                   if s == "S6" else {x for i, x in enumerate(a) if i > 0 and a[i - 1] == "--file"} | {a[-1]})
    needed &= set(FILES)
    make_root(root, needed)
    warm_page_cache(root, needed)
    bins = ["rackboot", "rackboot-load"] + (["tftp-floor"] if tftp else []) + (["dhcp-floor"] if dhcp else [])
    bins += ["tftp-get"] if tftp and "tftp-get" in clients else []
    if args.no_build:
        missing = [b for b in bins if not (REPO / "target/release" / b).exists()]
        if missing:
            sys.exit(f"bench.py: --no-build, yet target/release lacks {','.join(missing)}")
    else:
        subprocess.run(["cargo", "build", "--release", *(a for b in bins for a in ("--bin", b))], cwd=REPO,
                       check=True)
    load_bin = REPO / "target/release/rackboot-load"
    tftp_get_bin = REPO / "target/release/tftp-get"
    for s in servers:
        if not s.startswith("rackboot") and s not in ("atftpd", "floor", "nginx") and not shutil.which(server_command(s, root, work)[0]):
            sys.exit(f"bench.py: {s} not installed (apt-get install dnsmasq tftpd-hpa)")
    if "D1" in dhcp and not shutil.which("perfdhcp"):
        sys.exit("bench.py: D1 needs perfdhcp (apt-get install kea-admin)")
    if tftp and "atftp" in clients and not shutil.which("atftp"):
        sys.exit("bench.py: --client atftp needs the atftp client (apt-get install atftp)")
    for tool, package in (("nginx", "nginx-light"), ("wrk", "wrk")):
        if http and not shutil.which(tool):
            sys.exit(f"bench.py: H scenarios need {tool} (apt-get install {package})")
    results: dict = {}
    skipped: list[str] = []
    shm = Path(f"/dev/shm/rackboot-bench-{os.getpid()}")  # atftp's downloads
    try:
        for scenario in tftp:
            results[scenario] = {}
            for client in clients:
                if client != "rackboot-load" and not fetches_files(scenario):
                    note = f"{scenario} skipped under {client}: a pxelinux boot plan, rackboot-load's only"
                    print(f"bench.py: {note}", file=sys.stderr)
                    skipped.append(note)
                    continue
                results[scenario][client] = {}
                for server in servers:
                    if server == "floor" and scenario not in FLOOR_SCENARIOS:
                        continue
                    runs = []
                    for i in range(args.runs):
                        if client == "atftp":
                            r = run_atftp(server, scenario, root, work, shm)
                        elif client == "tftp-get":
                            r = run_tftp_get(server, scenario, root, work, tftp_get_bin, args.client_rcvbuf)
                        else:
                            r = run_once(server, scenario, root, work, load_bin)
                        extra = (f", {r['client_warnings']} {client} warnings {r['failure_kinds']}"
                                 if client != "rackboot-load" else "")
                        print(f"{scenario} {client} {server} run {i + 1}: {r['mib_s']:.0f} MiB/s, "
                              f"{r['cpu_s_per_gib']:.2f} CPU-s/GiB, p99 {r['p99_ms']:.0f} ms, ok {r['ok']:.0f} "
                              f"failed {r['failed']:.0f}, load {r['load_cpu_s']:.2f} CPU-s{extra}", file=sys.stderr)
                        runs.append(r)
                    results[scenario][client][server] = median_of(runs)
            if not results[scenario]:
                del results[scenario]
    finally:
        shutil.rmtree(shm, ignore_errors=True)
    dhcp_servers = [s for s in servers if s in DHCP_SERVERS]
    if dhcp and set(servers) - set(DHCP_SERVERS):
        print(f"bench.py: D scenarios skip {','.join(sorted(set(servers) - set(DHCP_SERVERS)))} (no proxyDHCP)",
              file=sys.stderr)
    if dhcp and dhcp_servers:
        rates = args.dhcp_rates.split(",")
        with Netns() as net:
            for scenario in dhcp:
                results[scenario] = {}
                for server in dhcp_servers:
                    runs = []
                    for i in range(args.runs):
                        if scenario == "D1":
                            r = run_d1(server, root, work, net, rates, args.dhcp_period, i + 1)
                            for rate, f in r.items():
                                print(f"D1 {server} run {i + 1} rate {rate}: offered {f['offered_s']:.0f}/s, "
                                      f"{f['offers_s']:.0f} OFFERs/s, drops {f['drops_pct']:.1f}%, "
                                      f"{f['cpu_us_per_offer']:.1f} CPU-us/offer", file=sys.stderr)
                        else:
                            r = run_d2(server, root, work, net, load_bin, args.dhcp_clients, args.dhcp_concurrency)
                            print(f"D2 {server} run {i + 1}: {r['wall_s']:.2f} s, {r['acks']:.0f} ACKs, "
                                  f"failed {r['failed']:.0f}, {r['cpu_us_per_client']:.1f} CPU-us/client "
                                  f"{r['failure_kinds']}", file=sys.stderr)
                        runs.append(r)
                    if scenario == "D1":
                        results[scenario][server] = {rate: median_of([r[rate] for r in runs]) for rate in rates}
                    else:
                        results[scenario][server] = median_of(runs)
    for scenario in http:
        results[scenario] = {}
        if scenario == "HR":
            for server in [p for p in servers if p in ("rackboot", "nginx")]:
                runs = [run_rewrite(server, root, work) for _ in range(args.runs)]
                for i, r in enumerate(runs):
                    print(f"HR {server} run {i + 1}: {r}", file=sys.stderr)
                results[scenario][server] = runs
            continue
        if scenario == "S6":
            # TFTP then HTTP (rackboot), TFTP only (rackboot and dnsmasq).
            plan = [p for p in ("rackboot", "rackboot-tftp", "dnsmasq")
                    if p.removesuffix("-tftp") in servers]
        else:
            plan = [p for p in servers if p in HTTP_SERVERS and p != "dnsmasq"]
        for server in plan:
            runs = []
            for i in range(args.runs):
                r = run_http(server, scenario, root, work, load_bin, args.http_seconds)
                print(f"{scenario} {server} run {i + 1}: {r['wall_s']:.2f} s, {r['gib_s']:.2f} GiB/s, "
                      f"{r['cpu_s_per_gib']:.3f} CPU-s/GiB (load {r['load_cpu_s_per_gib']:.3f}), "
                      f"p99 {r['p99_ms']:.0f} ms, ok {r['ok']:.0f} failed {r['failed']:.0f}", file=sys.stderr)
                runs.append(r)
            results[scenario][server] = median_of(runs)
    if tftp:
        print_table({s: results[s] for s in tftp if s in results}, servers)
        for note in skipped:
            print(f"\n{note}.")
    if [s for s in http if s != "HR"]:
        print_http_table({s: results[s] for s in http if s != "HR"})
    if "HR" in results:
        print_rewrite_table(results["HR"])
    if "D1" in results:
        print_d1_table(results["D1"])
    if "D2" in results:
        print_d2_table(results["D2"])
    Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


def print_table(results: dict, servers: list[str]) -> None:
    """results[scenario][client][server]; the best peer is the best under
    the same client."""
    print("| scenario | client | server | MiB/s | transfers/s | CPU-s/GiB | p99 ms | peak RSS MiB (private) | "
          "load CPU-s | failed | vs best peer (MiB/s, CPU) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for scenario, by_client in results.items():
        for client, by_server in by_client.items():
            peers = {s: r for s, r in by_server.items() if s not in ("rackboot", "floor")}
            best_tp = max((r["mib_s"] for r in peers.values()), default=0)
            best_cpu = min((r["cpu_s_per_gib"] for r in peers.values() if r["ok"] > 0), default=0)
            for server in by_server:
                r = by_server[server]
                ratio = ""
                if server == "rackboot" and best_tp > 0:
                    ratio = f"{r['mib_s'] / best_tp:.2f}x, {r['cpu_s_per_gib'] / best_cpu:.2f}x" if best_cpu else ""
                print(f"| {scenario} | {client} | {server} | {r['mib_s']:.0f} | {r['transfers_s']:.0f} | "
                      f"{r['cpu_s_per_gib']:.2f} | {r['p99_ms']:.0f} | {r['peak_rss_mib']:.1f} "
                      f"({r['peak_anon_mib']:.1f}) | {r['load_cpu_s']:.2f} | {r['failed']:.0f} | {ratio} |")



def print_http_table(results: dict) -> None:
    print()
    print("| scenario | server | wall s | GiB/s | requests/s | server CPU-s/GiB | load CPU-s/GiB | p99 ms | "
          "peak RSS MiB (private) | failed | vs nginx or TFTP-only (throughput, CPU/GiB) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for scenario, by_server in results.items():
        if scenario == "S6":
            # The faster TFTP-only plan that booted every client (a plan
            # that lost clients finished sooner only by giving up on them).
            tftp_only = [r for s, r in by_server.items() if s != "rackboot"]
            complete = [r["wall_s"] for r in tftp_only if r["failed"] == 0]
            base = min(complete or [r["wall_s"] for r in tftp_only], default=0)
        else:
            base = by_server.get("nginx")
        for server, r in by_server.items():
            vs = ""
            if scenario == "S6" and server == "rackboot" and base:
                vs = f"{base / r['wall_s']:.1f}x sooner than the faster complete TFTP-only plan"
            elif scenario == "S6" and server != "rackboot" and "rackboot" in by_server:
                vs = f"{r['wall_s'] / by_server['rackboot']['wall_s']:.1f}x the TFTP-then-HTTP time"
            elif scenario != "S6" and base and server != "nginx":
                vs = f"{ratio(r['gib_s'], base['gib_s'])}, {ratio(r['cpu_s_per_gib'], base['cpu_s_per_gib'])}"
            name = {"rackboot": "rackboot, TFTP then HTTP", "rackboot-tftp": "rackboot, TFTP only",
                    "dnsmasq": "dnsmasq, TFTP only"}.get(server, server) if scenario == "S6" else server
            print(f"| {scenario} | {name} | {r['wall_s']:.2f} | {r['gib_s']:.2f} | {r['requests_s']:.0f} | "
                  f"{r['cpu_s_per_gib']:.3f} | {r['load_cpu_s_per_gib']:.3f} | {r['p99_ms']:.0f} | "
                  f"{r['peak_rss_mib']:.1f} ({r['peak_anon_mib']:.1f}) | {r['failed']:.0f} | {vs} |")


def print_rewrite_table(by_server: dict) -> None:
    print()
    print("| HR | server | runs | complete downloads | of them mixed | short downloads, all old bytes |")
    print("|---|---|---:|---:|---:|---:|")
    for server, runs in by_server.items():
        complete = [r for r in runs if r["complete"]]
        print(f"| HR | {server} | {len(runs)} | {len(complete)} | {sum(r['mixed'] for r in complete)} | "
              f"{sum(1 for r in runs if not r['complete'] and not r['mixed'])} |")


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def lost(r: dict) -> str:
    return f"{r['lost_server_sock']:.0f}/{r['lost_client_sock']:.0f}/{r['lost_backlog']:.0f}"


def print_d1_table(by_server: dict) -> None:
    print()
    print("| D1 rate | server | DISCOVERs/s offered | OFFERs/s | drops % | mean ms | max ms | CPU-us/OFFER | "
          "server CPU % | peak RSS MiB (private) | perfdhcp CPU % | lost srv/cli/backlog | "
          "vs dnsmasq (OFFERs/s, CPU/OFFER) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    rates = next(iter(by_server.values())).keys()
    for rate in rates:
        base = by_server.get("dnsmasq", {}).get(rate)
        for server, per_rate in by_server.items():
            r = per_rate[rate]
            vs = ""
            if base and server != "dnsmasq":
                vs = f"{ratio(r['offers_s'], base['offers_s'])}, {ratio(r['cpu_us_per_offer'], base['cpu_us_per_offer'])}"
            print(f"| {rate} | {server} | {r['offered_s']:.0f} | {r['offers_s']:.0f} | {r['drops_pct']:.1f} | "
                  f"{r['avg_ms']:.2f} | {r['max_ms']:.1f} | {r['cpu_us_per_offer']:.1f} | {r['server_cpu_pct']:.0f} | "
                  f"{r['peak_rss_mib']:.1f} ({r['peak_anon_mib']:.1f}) | {r['load_cpu_pct']:.0f} | {lost(r)} | {vs} |")


def print_d2_table(by_server: dict) -> None:
    print()
    print("| D2 | server | wall s | clients/s | ACKs valid (answered) | failed | p50 ms | p99 ms | CPU-us/client | "
          "peak RSS MiB (private) | lost srv/cli/backlog | vs dnsmasq (wall, CPU) | failures |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    base = by_server.get("dnsmasq")
    for server, r in by_server.items():
        vs = ""
        if base and server != "dnsmasq":
            vs = f"{ratio(r['wall_s'], base['wall_s'])}, {ratio(r['cpu_us_per_client'], base['cpu_us_per_client'])}"
        # Percentiles count valid ACKs only: none, none to show.
        p50, p99 = (f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}") if r["acks"] else ("n/a", "n/a")
        print(f"| D2 | {server} | {r['wall_s']:.2f} | {r['clients_s']:.0f} | {r['acks']:.0f} ({r['answered']:.0f}) | "
              f"{r['failed']:.0f} | {p50} | {p99} | {r['cpu_us_per_client']:.1f} | "
              f"{r['peak_rss_mib']:.1f} ({r['peak_anon_mib']:.1f}) | {lost(r)} | {vs} | {r['failure_kinds']} |")

if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the finally blocks have run: nothing is left behind
        sys.exit("bench.py: interrupted")

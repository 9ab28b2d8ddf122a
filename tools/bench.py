#!/usr/bin/env python3
"""Side-by-side TFTP benchmark: rackboot against dnsmasq, tftpd-hpa and atftpd.

Each server runs alone on 127.0.0.1:69, pinned to CPU 0, inside fresh
cpuacct and memory cgroups (so forked children and threads are counted);
rackboot-load runs pinned to CPU 1. Every scenario runs --runs times per
server; the table shows medians and each figure's ratio to the best peer.
`--servers floor,...` adds tools/tftp-floor.rs, a bare lock-step responder
(S1, S2 only: no windows, no retransmission) whose CPU per GiB is the
kernel's own cost for the traffic: a yardstick, never counted as a peer.

    sudo python3 tools/bench.py                 # all scenarios, 3 runs
    sudo python3 tools/bench.py --scenarios S1,S3 --runs 1 --servers rackboot,dnsmasq

Needs root (port 69, cgroups), the Debian packages dnsmasq and tftpd-hpa,
and atftpd's binary, which is unpacked from its package (it conflicts with
tftpd-hpa's) into the work directory. Results also go to --out (JSON).
"""

import argparse
import json
import os
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
}

# tftp-floor knows lock-step with blksize only, and 16-bit block numbers.
FLOOR_SCENARIOS = ("S1", "S2")

FILES = {
    "pxelinux.0": 42 * 1024 + 123,
    "ldlinux.c32": 122 * 1024 + 45,
    "menu.c32": 27 * 1024 + 9,
    "pxelinux.cfg/default": 211,
    "vmlinuz": 2 * MIB + 77,
    "initrd.img": 4 * MIB + 5,
    "f32m": 32 * MIB,
    "f1g": GIB,
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


def run_once(server: str, scenario: str, root: Path, work: Path, load_bin: Path) -> dict:
    cg = Cgroup(f"{server}-{scenario}")
    cmd = server_command(server, root, work)
    # The wrapper joins the cgroups, then execs the pinned server: every
    # process and thread it ever makes is counted.
    joins = "; ".join(f"echo $$ > {f}" for f in cg.procs_files())
    wrapper = ["bash", "-c", f'{joins}; exec taskset -c 0 "$@"', "bench-server", *cmd]
    log = open(work / f"{server}-{scenario}.log", "w")
    proc = subprocess.Popen(wrapper, stdout=log, stderr=subprocess.STDOUT)
    peak = {"rss": 0, "anon": 0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            pids = cg.pids()
            peak["rss"] = max(peak["rss"], sum(rss_bytes(p) for p in pids))
            peak["anon"] = max(peak["anon"], sum(rss_bytes(p, "RssAnon") for p in pids))
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        wait_ready()
        cpu0 = cg.cpu_seconds()
        sampler.start()
        out = work / f"{server}-{scenario}.json"
        load = ["taskset", "-c", "1", str(load_bin), "--server", f"{HOST}:{PORT}", "--verify-dir", str(root),
                "--json", str(out), "--duration-limit", "240", *SCENARIOS[scenario][1]]
        subprocess.run(load, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        cpu = cg.cpu_seconds() - cpu0
        stop.set()
        sampler.join()
        result = json.loads(out.read_text())
    finally:
        stop.set()
        for pid in cg.pids():  # only what this run started: the cgroup's members
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=10)
        log.close()
        cg.remove()
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


def median_of(runs: list[dict]) -> dict:
    keys = runs[0].keys()
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--servers", default="rackboot,dnsmasq,tftpd-hpa,atftpd")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="/tmp/rackboot-bench")
    ap.add_argument("--out", default="bench-results.json")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.py: run as root (port 69 and cgroups)")
    scenarios = args.scenarios.split(",")
    servers = args.servers.split(",")
    work = Path(args.work)
    root = work / "root"
    root.mkdir(parents=True, exist_ok=True)
    needed = set()
    for s in scenarios:
        a = SCENARIOS[s][1]
        needed |= {a[a.index("--file") + 1]} if "--file" in a else set(FILES) - {"f32m", "f1g"}
    make_root(root, needed)
    warm_page_cache(root, needed)
    subprocess.run(["cargo", "build", "--release", "--bin", "rackboot", "--bin", "rackboot-load", "--bin", "tftp-floor"],
                   cwd=REPO, check=True)
    load_bin = REPO / "target/release/rackboot-load"
    for s in servers:
        if s not in ("rackboot", "atftpd", "floor") and not shutil.which(server_command(s, root, work)[0]):
            sys.exit(f"bench.py: {s} not installed (apt-get install dnsmasq tftpd-hpa)")
    results: dict = {}
    for scenario in scenarios:
        results[scenario] = {}
        for server in servers:
            if server == "floor" and scenario not in FLOOR_SCENARIOS:
                continue
            runs = []
            for i in range(args.runs):
                r = run_once(server, scenario, root, work, load_bin)
                print(f"{scenario} {server} run {i + 1}: {r['mib_s']:.0f} MiB/s, {r['cpu_s_per_gib']:.2f} CPU-s/GiB, "
                      f"p99 {r['p99_ms']:.0f} ms, ok {r['ok']:.0f} failed {r['failed']:.0f}", file=sys.stderr)
                runs.append(r)
            results[scenario][server] = median_of(runs)
    print_table(results, servers)
    Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


def print_table(results: dict, servers: list[str]) -> None:
    print("| scenario | server | MiB/s | transfers/s | CPU-s/GiB | p99 ms | peak RSS MiB (private) | failed | vs best peer (MiB/s, CPU) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for scenario, by_server in results.items():
        peers = {s: r for s, r in by_server.items() if s not in ("rackboot", "floor")}
        best_tp = max((r["mib_s"] for r in peers.values()), default=0)
        best_cpu = min((r["cpu_s_per_gib"] for r in peers.values() if r["ok"] > 0), default=0)
        for server in by_server:
            r = by_server[server]
            ratio = ""
            if server == "rackboot" and best_tp > 0:
                ratio = f"{r['mib_s'] / best_tp:.2f}x, {r['cpu_s_per_gib'] / best_cpu:.2f}x" if best_cpu else ""
            print(f"| {scenario} | {server} | {r['mib_s']:.0f} | {r['transfers_s']:.0f} | {r['cpu_s_per_gib']:.2f} | "
                  f"{r['p99_ms']:.0f} | {r['peak_rss_mib']:.1f} ({r['peak_anon_mib']:.1f}) | {r['failed']:.0f} | {ratio} |")


if __name__ == "__main__":
    sys.exit(main())

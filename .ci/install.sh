#!/usr/bin/env bash
# Installs every Debian package the test suite needs. Run as root.
# Idempotent: packages already installed are left as they are.
set -euo pipefail

packages=(
    # real TFTP clients (tests/real_clients.rs)
    tftp-hpa        # tftp
    atftp           # atftp (blksize / windowsize / tsize)
    busybox         # busybox tftp
    curl            # curl tftp:// and http://
    wget            # a second HTTP client (tests/http_clients.rs)
    wrk             # HTTP load (tests/http_clients.rs, tools/bench.py H1/H2)
    nginx-light     # the HTTP server rackboot is measured against (bench.py H1/H2)
    coreutils       # timeout, sha256sum
    # reference servers / development stand-ins
    tftpd-hpa       # in.tftpd
    dnsmasq
    kea-admin       # perfdhcp, the DHCP load of tools/bench.py's D1
    # network plumbing and process tools
    nftables
    iproute2
    procps
    # PXE boot end to end
    qemu-system-x86
    qemu-system-arm # qemu-system-aarch64 (ARM64 UEFI boot)
    qemu-efi-aarch64 # AAVMF, the ARM64 UEFI firmware
    ipxe-qemu
    ipxe
    ovmf
    pxelinux
    syslinux-common
    # deployment (tests/deploy.rs)
    podman          # builds and runs dist/Containerfile
    runc            # the OCI runtime the container test asks for
    systemd         # systemd-analyze verify / security / syscall-filter
    strace          # the system calls checked against the unit's filter
    file            # "statically linked"
    binutils        # strip
    python3-venv    # for kubernetes-validate, from PyPI (below)
    # metrics (tests/metrics.rs)
    prometheus      # promtool check metrics
)

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# Wait (bounded) for another apt/dpkg run to release its locks.
if command -v fuser >/dev/null 2>&1; then
    for _ in $(seq 1 120); do
        fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock >/dev/null 2>&1 || break
        echo "install.sh: waiting for the apt/dpkg lock..." >&2
        sleep 5
    done
fi
lock_wait=(-o DPkg::Lock::Timeout=600)

apt-get "${lock_wait[@]}" update
apt-get "${lock_wait[@]}" install -y --no-install-recommends "${packages[@]}"

# GRUB's ARM64 network-boot image (tests/pxe_boot.rs, arm64): Debian ships
# grubnetaa64.efi only in the arm64 package grub-efi-arm64-bin, so add the
# arm64 architecture (package lists only: nothing foreign is installed),
# download that one .deb and unpack the file from it to a fixed path.
arm64_grub_dir=/usr/local/share/rackboot-test
arm64_grub=$arm64_grub_dir/grubnetaa64.efi
if [ ! -s "$arm64_grub" ]; then
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        dpkg --add-architecture arm64
    fi
    apt-get "${lock_wait[@]}" update
    work=$(mktemp -d)
    # (apt-get download warns that it fetches unsandboxed, as root: harmless.)
    (cd "$work" && apt-get "${lock_wait[@]}" download grub-efi-arm64-bin:arm64)
    dpkg -x "$work"/grub-efi-arm64-bin_*_arm64.deb "$work/x"
    found=$(find "$work/x" -name grubnetaa64.efi -type f | head -n 1)
    [ -n "$found" ] || { echo "install.sh: grub-efi-arm64-bin:arm64 has no grubnetaa64.efi" >&2; exit 1; }
    mkdir -p "$arm64_grub_dir"
    install -m 0644 "$found" "$arm64_grub.tmp"
    mv "$arm64_grub.tmp" "$arm64_grub"
    rm -rf "$work"
fi

# The tftpd-hpa and dnsmasq packages start system services on install where
# an init system runs; the tests start their own servers on free ports, so
# keep the system ones from holding port 69 (harmless if not running).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now tftpd-hpa dnsmasq nginx prometheus >/dev/null 2>&1 || true
fi

# kubernetes-validate (tests/deploy.rs validates dist/kubernetes/ offline
# against the Kubernetes OpenAPI schemas it ships), from PyPI into its own
# virtual environment (Debian's Python refuses system-wide pip installs).
k8s_venv=/usr/local/share/rackboot-test/venv
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    if [ ! -x "$k8s_venv/bin/kubernetes-validate" ]; then
        python3 -m venv "$k8s_venv"
        "$k8s_venv/bin/pip" install --quiet kubernetes-validate
    fi
    ln -sf "$k8s_venv/bin/kubernetes-validate" /usr/local/bin/kubernetes-validate
fi

# Fail here, not halfway through the tests, if a client is still missing.
for tool in tftp atftp busybox curl wget wrk nginx perfdhcp timeout sha256sum in.tftpd dnsmasq nft ip qemu-system-x86_64 qemu-system-aarch64 podman runc systemd-analyze strace file strip kubernetes-validate promtool; do
    command -v "$tool" >/dev/null || { echo "install.sh: $tool missing after install" >&2; exit 1; }
done
for file in /usr/share/AAVMF/AAVMF_CODE.fd /usr/share/AAVMF/AAVMF_VARS.fd "$arm64_grub"; do
    [ -s "$file" ] || { echo "install.sh: $file missing after install" >&2; exit 1; }
done
busybox tftp --help >/dev/null 2>&1 || { echo "install.sh: this busybox has no tftp applet" >&2; exit 1; }
# The fuzzing campaign (tools/fuzz.sh) needs cargo-fuzz and a nightly
# toolchain (the machine image ships nightly; crates.io has cargo-fuzz).
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
cargo +nightly --version >/dev/null || { echo "install.sh: no nightly toolchain (needed by cargo fuzz)" >&2; exit 1; }
echo "install.sh: all test packages installed"

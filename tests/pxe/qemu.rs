//! The virtual machines: QEMU under TCG (KVM cannot run iPXE's real-mode
//! code here, and the ARM64 machine is emulated anyway), network-booting
//! through the test namespace's tap.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::netns::{Netns, Proc, TAP};
use super::require_file;

pub const QEMU: &str = "qemu-system-x86_64";
pub const QEMU_ARM64: &str = "qemu-system-aarch64";
pub const MAC: &str = "52:54:00:12:34:56";
pub const MAC_BYTES: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

const SEABIOS: &str = "/usr/share/seabios/bios-256k.bin";
const IPXE_ROM_E1000: &str = "/usr/lib/ipxe/qemu/efi-e1000.rom";
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const AAVMF_CODE: &str = "/usr/share/AAVMF/AAVMF_CODE.fd";
const AAVMF_VARS: &str = "/usr/share/AAVMF/AAVMF_VARS.fd";

/// Which firmware boots, on which NIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// SeaBIOS with QEMU's e1000 option ROM, which is iPXE (user class
    /// `iPXE`, arch 0). Two serial ports: COM1 carries the firmware console
    /// (SeaBIOS mirrors the VGA text there under -nographic), COM2 what
    /// pxelinux writes itself (`SERIAL 1`), so the two never interleave.
    SeaBiosIpxeRom,
    /// OVMF's own PXE stack (EDK2 UefiPxeBcDxe over VirtioNetDxe): a
    /// virtio NIC with no option ROM, so no iPXE is involved until the boot
    /// file runs. This client asks on port 4011.
    OvmfPxe,
    /// OvmfPxe with the PXE entries turned off (fw_cfg), so the boot
    /// manager takes HttpBootDxe's HTTPv4 entry: option 60 `HTTPClient`,
    /// arch 16, the boot file by URL.
    OvmfHttp,
    /// OVMF with QEMU's e1000 option ROM, whose EFI driver is iPXE: the
    /// firmware's network boot is iPXE itself (arch 7, user class `iPXE`).
    OvmfIpxeRom,
    /// ARM64 UEFI: AAVMF (EDK2 for `-M virt`) on an emulated Cortex-A57,
    /// its own PXE stack over a virtio NIC with no option ROM (arch 11).
    AavmfArm64Pxe,
}

impl Machine {
    /// Fails, naming the package, when QEMU or a firmware file is missing.
    pub fn require(self) {
        super::require_program(self.program(), self.qemu_package());
        match self {
            Machine::SeaBiosIpxeRom => {
                require_file(SEABIOS, "seabios");
                require_file(IPXE_ROM_E1000, "ipxe-qemu");
            }
            Machine::OvmfPxe | Machine::OvmfHttp => {
                require_file(OVMF_CODE, "ovmf");
                require_file(OVMF_VARS, "ovmf");
            }
            Machine::OvmfIpxeRom => {
                require_file(OVMF_CODE, "ovmf");
                require_file(OVMF_VARS, "ovmf");
                require_file(IPXE_ROM_E1000, "ipxe-qemu");
            }
            Machine::AavmfArm64Pxe => {
                require_file(AAVMF_CODE, "qemu-efi-aarch64");
                require_file(AAVMF_VARS, "qemu-efi-aarch64");
            }
        }
    }

    /// The QEMU program that runs this machine.
    pub fn program(self) -> &'static str {
        match self {
            Machine::AavmfArm64Pxe => QEMU_ARM64,
            _ => QEMU,
        }
    }

    fn qemu_package(self) -> &'static str {
        match self {
            Machine::AavmfArm64Pxe => "qemu-system-arm",
            _ => "qemu-system-x86",
        }
    }

    /// The firmware's variable store (copied, writable, into the VM dir).
    fn vars(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Machine::SeaBiosIpxeRom => None,
            Machine::OvmfPxe | Machine::OvmfHttp | Machine::OvmfIpxeRom => {
                Some((OVMF_VARS, "OVMF_VARS.fd", "ovmf"))
            }
            Machine::AavmfArm64Pxe => Some((AAVMF_VARS, "AAVMF_VARS.fd", "qemu-efi-aarch64")),
        }
    }

    /// Serial ports (files under `dir`) in order: COM1, COM2.
    pub fn serial_paths(self, dir: &Path) -> Vec<PathBuf> {
        let count = match self {
            Machine::SeaBiosIpxeRom => 2,
            Machine::OvmfPxe
            | Machine::OvmfHttp
            | Machine::OvmfIpxeRom
            | Machine::AavmfArm64Pxe => 1,
        };
        (1..=count)
            .map(|i| dir.join(format!("com{i}.log")))
            .collect()
    }

    /// The QEMU arguments (after the program name).
    pub fn args(self, dir: &Path) -> Vec<String> {
        // AAVMF and GRUB want more than the x86 firmware's 256 MiB.
        let memory = if self == Machine::AavmfArm64Pxe {
            "512"
        } else {
            "256"
        };
        let mut args: Vec<String> = [
            "-accel",
            "tcg",
            "-m",
            memory,
            "-nographic",
            "-no-reboot",
            "-monitor",
            "none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("-netdev".into());
        args.push(format!("tap,id=n0,ifname={TAP},script=no,downscript=no"));
        match self {
            Machine::SeaBiosIpxeRom => {
                args.extend(["-boot".into(), "n".into()]);
                args.extend(["-device".into(), format!("e1000,netdev=n0,mac={MAC}")]);
            }
            Machine::OvmfPxe | Machine::OvmfHttp | Machine::OvmfIpxeRom => {
                let vars = dir.join("OVMF_VARS.fd");
                args.push("-drive".into());
                args.push(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"));
                args.push("-drive".into());
                args.push(format!("if=pflash,format=raw,file={}", vars.display()));
                if self == Machine::OvmfHttp {
                    for v in ["IPv4PXESupport", "IPv6PXESupport"] {
                        args.push("-fw_cfg".into());
                        args.push(format!("name=opt/org.tianocore/{v},string=n"));
                    }
                    // HTTP boot's TLS/random plumbing wants an RNG.
                    args.extend(["-device".into(), "virtio-rng-pci".into()]);
                }
                let nic = if matches!(self, Machine::OvmfPxe | Machine::OvmfHttp) {
                    format!("virtio-net-pci,netdev=n0,mac={MAC},romfile=,bootindex=0")
                } else {
                    format!("e1000,netdev=n0,mac={MAC},bootindex=0")
                };
                args.extend(["-device".into(), nic]);
            }
            Machine::AavmfArm64Pxe => {
                args.extend([
                    "-M".into(),
                    "virt".into(),
                    "-cpu".into(),
                    "cortex-a57".into(),
                ]);
                let vars = dir.join("AAVMF_VARS.fd");
                args.push("-drive".into());
                args.push(format!(
                    "if=pflash,format=raw,readonly=on,file={AAVMF_CODE}"
                ));
                args.push("-drive".into());
                args.push(format!("if=pflash,format=raw,file={}", vars.display()));
                // romfile= : QEMU's default virtio ROM is x86 code.
                args.extend([
                    "-device".into(),
                    format!("virtio-net-pci,netdev=n0,mac={MAC},romfile=,bootindex=0"),
                ]);
            }
        }
        for path in self.serial_paths(dir) {
            args.push("-serial".into());
            args.push(format!("file:{}", path.display()));
        }
        args
    }

    /// Starts the VM in `ns`; its files (serial ports, variable store, log)
    /// go in `dir`.
    pub fn start(self, ns: &Netns, dir: &Path) -> Proc {
        std::fs::create_dir_all(dir).expect("vm dir");
        if let Some((vars, name, package)) = self.vars() {
            std::fs::copy(vars, dir.join(name))
                .unwrap_or_else(|e| panic!("{vars}: {e} (package {package})"));
        }
        let mut cmd: Command = ns.command(self.program());
        cmd.args(self.args(dir));
        let proc = ns.spawn("qemu", cmd, &dir.join("qemu.log"));
        eprintln!("[pxe] {}", proc.cmdline);
        proc
    }
}

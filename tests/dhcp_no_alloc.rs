//! Answering a request must not touch the heap: a counting allocator sees
//! every allocation made by this thread while `Policy::answer` runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddrV4};

use rackboot::dhcp::{
    Arch, BootEntry, MAX_REPLY_LEN, MacOverride, Policy, ProxyConfig, ProxySettings, Request,
    ServerPort,
};

struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with` because the allocator also runs while thread locals are
    // being torn down.
    let _ = COUNTING.try_with(|counting| {
        if counting.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call forwards to the system allocator unchanged; counting
// touches only const-initialised thread locals, which do not allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations_during(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(|n| n.get())
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/dhcp/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn answering_does_not_allocate() {
    let config = ProxyConfig {
        proxy: ProxySettings {
            ipxe_script: Some("http://10.0.0.1/boot.ipxe".into()),
            ignore_macs: vec!["00:00:5e".parse().unwrap()],
            ..ProxySettings::default()
        },
        boot: vec![
            BootEntry {
                menu: Some("Install Linux".into()),
                ..BootEntry::new(Arch::Bios, "undionly.kpxe")
            },
            BootEntry {
                http_url: Some("http://10.0.0.1/ipxe.efi".into()),
                ..BootEntry::new(Arch::X64Uefi, "ipxe.efi")
            },
            BootEntry::new(Arch::Arm64Uefi, "grubaa64.efi"),
        ],
        mac: vec![MacOverride::new("52:54:00:65".parse().unwrap(), "lab.efi")],
    };
    let policy = Policy::new(config).unwrap();
    // The counter works: a real allocation is seen.
    assert!(allocations_during(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(8)))) > 0);

    let local = Ipv4Addr::new(192, 168, 122, 1);
    let client = SocketAddrV4::new(Ipv4Addr::new(192, 168, 122, 50), 68);
    let cases = [
        ("ovmf_x64_discover.bin", ServerPort::Dhcp),
        ("ovmf_x64_request_4011.bin", ServerPort::Pxe),
        ("intel_bios_discover.bin", ServerPort::Dhcp),
        ("intel_bios_request_4011_item.bin", ServerPort::Pxe),
        ("intel_bios_request_4011_local.bin", ServerPort::Pxe),
        ("seabios_ipxe_discover.bin", ServerPort::Dhcp),
        ("aavmf_arm64_discover.bin", ServerPort::Dhcp),
        ("ovmf_x64_http_discover.bin", ServerPort::Dhcp),
        ("windows_discover.bin", ServerPort::Dhcp),
        ("ovmf_x64_request_67.bin", ServerPort::Dhcp),
    ];
    let mut out = [0u8; MAX_REPLY_LEN];
    let mut answered = 0;
    for (name, port) in cases {
        let bytes = fixture(name);
        let request = Request {
            bytes: &bytes,
            port,
            source: client,
            local_addr: local,
        };
        let allocations = allocations_during(|| {
            for _ in 0..100 {
                // Silence reasons are values too: build their text only
                // outside the measured path.
                answered += usize::from(policy.answer(&request, &mut out).is_ok());
            }
        });
        assert_eq!(allocations, 0, "{name} allocated");
    }
    assert_eq!(answered, 700, "7 of the 10 cases are answered");
}

use std::collections::BTreeMap;
use std::vec::Vec;

use super::*;
use crate::dt::{IdMap, IdMapEntry, PciHost, PciSpace, PciWindow, Region};

/// One fake function: 4 KiB of registers, and per dword the bits a write
/// may change (everything else is read-only).
#[derive(Clone)]
struct FakeFn {
    regs: Vec<u32>,
    writable: Vec<u32>,
}

impl FakeFn {
    fn new(vendor: u16, device: u16, class: u32, header: u8) -> Self {
        let mut f = Self {
            regs: vec![0; 1024],
            writable: vec![0; 1024],
        };
        f.regs[0] = u32::from(device) << 16 | u32::from(vendor);
        f.regs[2] = class << 8 | 0x01;
        f.regs[3] = u32::from(header) << 16;
        f.writable[1] = 0x0000_0407; // command: IO, MEM, BM, INTX_DISABLE
        f
    }

    fn bar32(mut self, slot: usize, size: u32, flags: u32) -> Self {
        self.regs[4 + slot] = flags;
        self.writable[4 + slot] = !(size - 1) & !0xf;
        self
    }

    fn bar_io(mut self, slot: usize, size: u32) -> Self {
        self.regs[4 + slot] = regs::BAR_IO;
        self.writable[4 + slot] = !(size - 1) & !0x3;
        self
    }

    fn bar64(mut self, slot: usize, size: u64, prefetch: bool) -> Self {
        let mask = !(size - 1);
        let pf = if prefetch { regs::BAR_PREFETCHABLE } else { 0 };
        self.regs[4 + slot] = regs::BAR_MEM_TYPE_64 | pf;
        self.writable[4 + slot] = (mask as u32) & !0xf;
        self.writable[5 + slot] = (mask >> 32) as u32;
        self
    }

    /// Appends a capability at `at` with `body` dwords after the header
    /// word, whose bytes 2..4 are `hi16`.
    fn cap(mut self, at: u16, id: u8, hi16: u16, body: &[u32]) -> Self {
        self.regs[1] |= u32::from(regs::Status::CAP_LIST) << 16;
        // Link: find the last capability and point it here.
        let mut ptr = (self.regs[0x34 / 4] & 0xfc) as usize;
        if ptr == 0 {
            self.regs[0x34 / 4] = u32::from(at);
        } else {
            loop {
                let next = ((self.regs[ptr / 4] >> 8) & 0xfc) as usize;
                if next == 0 {
                    self.regs[ptr / 4] |= u32::from(at) << 8;
                    break;
                }
                ptr = next;
            }
        }
        let at = usize::from(at) / 4;
        self.regs[at] = u32::from(hi16) << 16 | u32::from(id);
        for (i, d) in body.iter().enumerate() {
            self.regs[at + 1 + i] = *d;
        }
        self
    }
}

#[derive(Default)]
struct FakeBus {
    fns: BTreeMap<Bdf, FakeFn>,
    writes: usize,
}

impl FakeBus {
    fn add(&mut self, dev: u8, func: u8, f: FakeFn) {
        self.fns.insert(Bdf::new(0, dev, func).unwrap(), f);
    }
    fn reg(&self, bdf: Bdf, offset: u16) -> u32 {
        self.read32(bdf, offset)
    }
}

impl ConfigSpace for FakeBus {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        assert_eq!(offset % 4, 0);
        assert!(offset < 0x1000);
        self.fns
            .get(&bdf)
            .map_or(u32::MAX, |f| f.regs[usize::from(offset) / 4])
    }
    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) {
        assert_eq!(offset % 4, 0);
        self.writes += 1;
        if let Some(f) = self.fns.get_mut(&bdf) {
            let i = usize::from(offset) / 4;
            f.regs[i] = (f.regs[i] & !f.writable[i]) | (value & f.writable[i]);
        }
    }
}

fn qemu_host() -> PciHost {
    let mut windows = BoundedVec::new();
    for w in [
        PciWindow {
            space: PciSpace::Io,
            prefetchable: false,
            pci_addr: 0,
            cpu_addr: PhysAddr::new(0x3eff_0000),
            size: 0x1_0000,
        },
        PciWindow {
            space: PciSpace::Mem32,
            prefetchable: false,
            pci_addr: 0x1000_0000,
            cpu_addr: PhysAddr::new(0x1000_0000),
            size: 0x2eff_0000,
        },
        PciWindow {
            space: PciSpace::Mem64,
            prefetchable: false,
            pci_addr: 0x80_0000_0000,
            cpu_addr: PhysAddr::new(0x80_0000_0000),
            size: 0x80_0000_0000,
        },
    ] {
        windows.push(w).unwrap();
    }
    let mut entries = BoundedVec::new();
    entries
        .push(IdMapEntry {
            rid_base: 0,
            phandle: 0x8004,
            out_base: 0,
            length: 0x1_0000,
        })
        .unwrap();
    PciHost {
        ecam: Region {
            base: PhysAddr::new(0x40_1000_0000),
            size: 0x1000_0000,
        },
        bus_start: 0,
        bus_end: 255,
        windows,
        dma_coherent: true,
        iommu_map: IdMap {
            entries,
            mask: u32::MAX,
        },
        msi_map: IdMap::default(),
        intx: Default::default(),
    }
}

const NVME: (u16, u16) = (0x1b36, 0x0010);
const VIRTIO_BLK: (u16, u16) = (0x1af4, 0x1042);
const EDU: (u16, u16) = (0x1234, 0x11e8);

fn nvme() -> FakeFn {
    FakeFn::new(NVME.0, NVME.1, 0x01_08_02, 0)
        .bar64(0, 16 << 10, false)
        // MSI-X: 65 vectors, table BAR0+0x2000, PBA BAR0+0x3000.
        .cap(0x40, caps::CAP_MSIX, 64, &[0x2000, 0x3000])
        .cap(0x80, caps::CAP_PCIE, 0x0002, &[0; 14])
        .cap(0x60, caps::CAP_PM, 0x0003, &[0])
}

fn virtio_blk() -> FakeFn {
    // Five virtio vendor caps (common, notify, isr, device, pci cfg) + MSI-X.
    FakeFn::new(VIRTIO_BLK.0, VIRTIO_BLK.1, 0x01_00_00, 0)
        .bar32(1, 0x1000, 0)
        .bar64(4, 16 << 10, true)
        .cap(0x98, caps::CAP_MSIX, 1, &[0x0000_0001, 0x0000_0801])
        .cap(0x88, caps::CAP_VENDOR, 0x0514, &[4, 0x0000_3000, 4])
        .cap(0x78, caps::CAP_VENDOR, 0x0410, &[4, 0x0000_2000, 0x1000])
        .cap(0x68, caps::CAP_VENDOR, 0x0310, &[4, 0x0000_1000, 0x1000])
        .cap(0x50, caps::CAP_VENDOR, 0x0218, &[4, 0x0000_3000, 0x1000, 4])
        .cap(0x40, caps::CAP_VENDOR, 0x0110, &[4, 0, 0x1000])
}

fn edu() -> FakeFn {
    FakeFn::new(EDU.0, EDU.1, 0x00_ff_00, 0)
        .bar32(0, 1 << 20, 0)
        .cap(0x40, caps::CAP_MSI, 0x0080, &[0, 0, 0])
}

/// Host bridge at 00:00.0, NVMe 00:01.0, virtio-blk 00:02.0, edu 00:03.0.
fn qemu_bus() -> FakeBus {
    let mut bus = FakeBus::default();
    bus.add(0, 0, FakeFn::new(0x1b36, 0x0008, 0x06_00_00, 0));
    bus.add(1, 0, nvme());
    bus.add(2, 0, virtio_blk());
    bus.add(3, 0, edu());
    bus
}

fn find(en: &Enumeration, dev: u8, func: u8) -> &Function {
    let bdf = Bdf::new(0, dev, func).unwrap();
    en.functions
        .iter()
        .find(|f| f.bdf == bdf)
        .expect("function found")
}

#[test]
fn bdf_fields_display_and_ecam() {
    let b = Bdf::new(0x12, 3, 5).unwrap();
    assert_eq!(b.to_string(), "12:03.5");
    assert_eq!(b.rid(), 0x12 << 8 | 3 << 3 | 5);
    assert_eq!((b.bus(), b.device(), b.function()), (0x12, 3, 5));
    assert_eq!(Bdf::from_rid(0x8).to_string(), "00:01.0");
    assert_eq!(Bdf::new(0, 32, 0), None);
    assert_eq!(Bdf::new(0, 0, 8), None);
    assert_eq!(
        b.ecam_offset(0x10, 0x44),
        Some(0x2 << 20 | 3 << 15 | 5 << 12 | 0x44)
    );
    assert_eq!(b.ecam_offset(0x13, 0), None);
    assert_eq!(b.ecam_offset(0, 0x1000), None);
}

#[test]
fn enumerates_qemu_devices() {
    let mut bus = qemu_bus();
    let host = qemu_host();
    let en = enumerate(&mut bus, &host).unwrap();
    assert_eq!(en.functions.len(), 4);
    assert_eq!(en.bridges, 0);

    let n = find(&en, 1, 0);
    assert_eq!((n.vendor, n.device), NVME);
    assert_eq!(n.class.name(), "NVMe");
    assert_eq!(n.stream, Some((0x8004, StreamId(0x8))));
    assert_eq!(
        n.bars.as_slice(),
        &[Bar {
            index: 0,
            kind: BarKind::Mem64,
            prefetchable: false,
            size: 16 << 10,
            addr: None
        }]
    );
    assert_eq!(
        n.caps.msix,
        Some(MsiX {
            offset: 0x40,
            table_size: 65,
            table_bir: 0,
            table_offset: 0x2000,
            pba_bir: 0,
            pba_offset: 0x3000,
        })
    );
    assert_eq!(n.caps.msi, None);
    assert_eq!(n.caps.pm, Some(0x60));
    assert_eq!(n.caps.pcie.map(|p| (p.version, p.port_type)), Some((2, 0)));

    let v = find(&en, 2, 0);
    assert_eq!(v.class.name(), "SCSI storage");
    assert_eq!(v.stream, Some((0x8004, StreamId(0x10))));
    let bar4 = v.bar(4).unwrap();
    assert_eq!(
        (bar4.kind, bar4.prefetchable, bar4.size),
        (BarKind::Mem64, true, 16 << 10)
    );
    assert_eq!(v.bar(1).unwrap().size, 0x1000);
    assert_eq!(v.bars.len(), 2);
    let caps: Vec<(u16, u8)> = v.caps.vendor.iter().map(|c| (c.offset, c.len)).collect();
    assert_eq!(
        caps,
        [
            (0x88, 0x14),
            (0x78, 0x10),
            (0x68, 0x10),
            (0x50, 0x18),
            (0x40, 0x10)
        ]
    );
    assert_eq!(v.caps.msix.unwrap().table_bir, 1);

    let e = find(&en, 3, 0);
    assert_eq!(e.class.to_string(), "00.ff.00 unclassified");
    assert_eq!(e.bars.as_slice()[0].size, 1 << 20);
    assert_eq!(e.bars.as_slice()[0].kind, BarKind::Mem32);
    assert_eq!(e.caps.msi.map(|m| m.addr64), Some(true));
    assert_eq!(find(&en, 0, 0).class.name(), "host bridge");
}

#[test]
fn sizing_restores_bars_and_command() {
    let mut bus = qemu_bus();
    let before: Vec<u32> = (0..16)
        .map(|i| bus.reg(Bdf::new(0, 2, 0).unwrap(), i * 4))
        .collect();
    enumerate(&mut bus, &qemu_host()).unwrap();
    let after: Vec<u32> = (0..16)
        .map(|i| bus.reg(Bdf::new(0, 2, 0).unwrap(), i * 4))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn configure_assigns_aligned_disjoint_bars_inside_windows() {
    let mut bus = qemu_bus();
    let host = qemu_host();
    let en = configure(&mut bus, &host, true).unwrap();

    let mut placed: Vec<(u64, u64)> = Vec::new();
    for f in en.functions.iter() {
        for b in f.bars.iter() {
            let a = b.addr.expect("every BAR assigned");
            assert_eq!(a.pci % b.size, 0, "{f}: BAR{} unaligned", b.index);
            let space = match b.kind {
                BarKind::Io => PciSpace::Io,
                BarKind::Mem32 => PciSpace::Mem32,
                BarKind::Mem64 => {
                    if a.pci < 1 << 32 {
                        PciSpace::Mem32
                    } else {
                        PciSpace::Mem64
                    }
                }
            };
            let w = host.window(space).unwrap();
            assert!(a.pci >= w.pci_addr && a.pci + b.size <= w.pci_addr + w.size);
            assert_eq!(w.to_cpu(a.pci), Some(a.cpu));
            // The BAR register holds the PCI address.
            let lo = bus.reg(f.bdf, regs::BAR0 + 4 * u16::from(b.index));
            let mut got = u64::from(lo & !0xf);
            if b.kind == BarKind::Mem64 {
                got |= u64::from(bus.reg(f.bdf, regs::BAR0 + 4 * u16::from(b.index) + 4)) << 32;
            }
            assert_eq!(got, a.pci);
            placed.push((a.pci, a.pci + b.size));
        }
        if f.bars.is_empty() {
            assert_eq!(f.command, Command::BUS_MASTER);
        } else {
            assert!(f.command.contains(Command::MEM.union(Command::BUS_MASTER)));
            assert!(!f.command.contains(Command::IO));
            assert_eq!(Command(bus.read16(f.bdf, regs::COMMAND)), f.command);
        }
    }
    placed.sort();
    for pair in placed.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlap {pair:x?}");
    }
    // Largest first: edu's 1 MiB BAR starts the MEM32 window.
    assert_eq!(
        find(&en, 3, 0).bars.as_slice()[0].addr.unwrap().pci,
        0x1000_0000
    );
    assert!(
        find(&en, 1, 0)
            .to_string()
            .starts_with("00:01.0 1b36:0010 01.08.02 NVMe SID 0x8; BAR0 mem64 0x4000 @ 0x")
    );
}

#[test]
fn sixty_four_bit_bar_spills_to_mem64_and_io_bars_get_io() {
    let mut bus = FakeBus::default();
    // A 32-bit 256 MiB BAR and a 64-bit 1 GiB BAR: the latter does not fit
    // in what is left of MEM32 (0x2eff_0000 bytes).
    bus.add(
        0,
        0,
        FakeFn::new(1, 1, 0x02_00_00, 0)
            .bar32(0, 256 << 20, 0)
            .bar64(2, 1 << 30, true)
            .bar_io(4, 0x20),
    );
    let host = qemu_host();
    let en = configure(&mut bus, &host, false).unwrap();
    let f = find(&en, 0, 0);
    assert_eq!(f.bar(2).unwrap().addr.unwrap().pci, 0x80_0000_0000);
    let io = f.bar(4).unwrap();
    assert_eq!((io.kind, io.size), (BarKind::Io, 0x20));
    assert_eq!(io.addr.unwrap().pci, 0x1000);
    assert_eq!(io.addr.unwrap().cpu, PhysAddr::new(0x3eff_1000));
    assert!(f.command.contains(Command::IO.union(Command::MEM)));
    assert!(!f.command.contains(Command::BUS_MASTER));
}

#[test]
fn exhausted_window_is_an_error() {
    let mut bus = FakeBus::default();
    bus.add(0, 0, edu());
    bus.add(1, 0, edu());
    let mut host = qemu_host();
    host.windows.as_mut_slice()[1].size = 1 << 20;
    let err = configure(&mut bus, &host, true).unwrap_err();
    assert_eq!(
        err,
        PciError::NoSpace {
            bdf: Bdf::new(0, 1, 0).unwrap(),
            index: 0,
            kind: BarKind::Mem32
        }
    );
    // No IO window at all.
    let mut bus = FakeBus::default();
    bus.add(0, 0, FakeFn::new(1, 1, 0, 0).bar_io(0, 0x100));
    let mut host = qemu_host();
    host.windows.as_mut_slice()[0].space = PciSpace::Config;
    assert!(matches!(
        configure(&mut bus, &host, true),
        Err(PciError::NoSpace {
            kind: BarKind::Io,
            ..
        })
    ));
}

#[test]
fn multifunction_and_absent_functions() {
    let mut bus = FakeBus::default();
    // Multi-function device at 00:04: functions 0 and 3 (1, 2 absent).
    bus.add(4, 0, FakeFn::new(0x8086, 1, 0x0c_03_30, 0x80));
    bus.add(4, 3, FakeFn::new(0x8086, 2, 0x02_00_00, 0));
    // Single-function device at 00:05 whose function 1 also answers (as a
    // device ignoring the function number would): must not be listed.
    bus.add(5, 0, FakeFn::new(0x10ec, 1, 0x02_00_00, 0));
    bus.add(5, 1, FakeFn::new(0x10ec, 1, 0x02_00_00, 0));
    // Function 1 of 00:06 without function 0: the device is absent.
    bus.add(6, 1, FakeFn::new(0x10ec, 1, 0x02_00_00, 0));
    // A vendor ID of 0 is not a device either.
    bus.add(7, 0, FakeFn::new(0, 0, 0, 0));
    let en = enumerate(&mut bus, &qemu_host()).unwrap();
    let bdfs: Vec<String> = en.functions.iter().map(|f| f.bdf.to_string()).collect();
    assert_eq!(bdfs, ["00:04.0", "00:04.3", "00:05.0"]);
    assert!(find(&en, 4, 0).header.multifunction);
    assert_eq!(find(&en, 4, 3).stream, Some((0x8004, StreamId(0x23))));
}

#[test]
fn bridge_header_is_recorded_not_followed() {
    let mut bus = FakeBus::default();
    bus.add(
        1,
        0,
        FakeFn::new(0x1b36, 0x000c, 0x06_04_00, 0x01)
            .bar32(0, 0x1000, 0)
            .bar32(4, 0x1000, 0),
    );
    let en = configure(&mut bus, &qemu_host(), true).unwrap();
    assert_eq!(en.bridges, 1);
    let b = find(&en, 1, 0);
    assert_eq!(b.header.layout, HeaderLayout::Bridge);
    assert_eq!(b.class.name(), "PCI bridge");
    // Only the two type-1 BAR slots are sized; 0x20 is a window register.
    assert_eq!(b.bars.len(), 1);
    assert_eq!(b.command, Command(0), "bridges are left disabled");
}

#[test]
fn impossible_bars_are_errors() {
    let bdf = Bdf::new(0, 0, 0).unwrap();
    // Non-contiguous size mask.
    let mut bus = FakeBus::default();
    let mut f = FakeFn::new(1, 1, 0, 0);
    f.writable[4] = 0xff00_ff00;
    bus.add(0, 0, f);
    assert_eq!(
        enumerate(&mut bus, &qemu_host()),
        Err(PciError::BadBar { bdf, index: 0 })
    );
    // 64-bit BAR in the last slot.
    let mut bus = FakeBus::default();
    let mut f = FakeFn::new(1, 1, 0, 0);
    f.regs[9] = regs::BAR_MEM_TYPE_64;
    f.writable[9] = !0xfff;
    bus.add(0, 0, f);
    assert_eq!(
        enumerate(&mut bus, &qemu_host()),
        Err(PciError::BadBar { bdf, index: 5 })
    );
    // Reserved memory type.
    let mut bus = FakeBus::default();
    let mut f = FakeFn::new(1, 1, 0, 0);
    f.regs[4] = 0b110;
    bus.add(0, 0, f);
    assert_eq!(
        enumerate(&mut bus, &qemu_host()),
        Err(PciError::BadBar { bdf, index: 0 })
    );
}

#[test]
fn looping_capability_list_ends() {
    let mut bus = FakeBus::default();
    let mut f = FakeFn::new(1, 1, 0, 0).cap(0x40, caps::CAP_VENDOR, 4, &[]);
    f.regs[0x40 / 4] |= 0x40 << 8; // points at itself
    bus.add(0, 0, f);
    let bdf = Bdf::new(0, 0, 0).unwrap();
    assert_eq!(caps::capabilities(&bus, bdf).count(), 48);
    let en = enumerate(&mut bus, &qemu_host()).unwrap();
    assert_eq!(en.functions[0].caps.vendor.len(), caps::MAX_VENDOR_CAPS);
}

#[test]
fn too_many_functions() {
    let mut bus = FakeBus::default();
    for dev in 0..5 {
        for func in 0..8 {
            bus.add(dev, func, FakeFn::new(1, 1, 0, 0x80));
        }
    }
    assert_eq!(
        enumerate(&mut bus, &qemu_host()),
        Err(PciError::TooManyFunctions)
    );
}

#[test]
fn empty_bus_reads_all_ones() {
    let mut bus = FakeBus::default();
    let en = configure(&mut bus, &qemu_host(), true).unwrap();
    assert!(en.functions.is_empty());
    assert_eq!(bus.writes, 0);
}

/// A host as an ACPI machine describes it: ECAM, no windows.
fn acpi_host() -> PciHost {
    PciHost {
        windows: BoundedVec::new(),
        ..qemu_host()
    }
}

#[test]
fn without_windows_the_firmware_bars_are_kept_and_nothing_is_written() {
    let mut bus = FakeBus::default();
    // As SeaBIOS leaves q35: a 64-bit BAR above 4 GiB, a 32-bit one, an
    // I/O one and one left at 0.
    bus.add(
        1,
        0,
        FakeFn::new(1, 1, 0x01_08_02, 0)
            .bar64(0, 0x4000, false)
            .bar32(2, 1 << 20, 0)
            .bar_io(3, 0x20)
            .bar32(4, 0x1000, 0),
    );
    let bdf = Bdf::new(0, 1, 0).unwrap();
    for (offset, value) in [
        (0x10, 0x8000_c000),
        (0x14, 0x1),
        (0x18, 0xfea0_0000),
        (0x1c, 0xc041),
    ] {
        bus.write32(bdf, offset, value);
    }
    let before: Vec<u32> = (0..16).map(|i| bus.reg(bdf, i * 4)).collect();
    let en = configure(&mut bus, &acpi_host(), false).unwrap();
    let bars: Vec<u32> = (4..10).map(|i| bus.reg(bdf, i * 4)).collect();
    assert_eq!(
        bars,
        before[4..10],
        "BAR registers as the firmware left them"
    );
    let f = find(&en, 1, 0);
    let addr = |i| f.bar(i).unwrap().addr.map(|a| (a.pci, a.cpu.get()));
    assert_eq!(addr(0), Some((0x1_8000_c000, 0x1_8000_c000)));
    assert_eq!(addr(2), Some((0xfea0_0000, 0xfea0_0000)));
    assert_eq!(addr(3), None, "I/O BARs are never mapped");
    assert_eq!(addr(4), None, "left at 0: unassigned");
    // Memory decode on (a BAR is assigned), never bus mastering.
    assert!(f.command.contains(Command::MEM));
    assert!(!f.command.contains(Command::BUS_MASTER));
}

/// The MSI capability's registers move with its address width and mask
/// bits [PCI 3.0 §6.8.1]: 32-bit address at +4, data at +8, mask at +0xc;
/// 64-bit address at +4 and +8, data at +0xc, mask at +0x10.
#[test]
fn msi_register_offsets_follow_the_address_width() {
    let narrow = crate::pci::caps::Msi {
        offset: 0x50,
        addr64: false,
        per_vector_mask: true,
        max_vectors: 1,
    };
    assert_eq!(
        (
            narrow.control(),
            narrow.address(),
            narrow.address_high(),
            narrow.data(),
            narrow.mask()
        ),
        (0x50, 0x54, None, 0x58, Some(0x5c))
    );
    let wide = crate::pci::caps::Msi {
        addr64: true,
        per_vector_mask: false,
        ..narrow
    };
    assert_eq!(
        (
            wide.address(),
            wide.address_high(),
            wide.data(),
            wide.mask()
        ),
        (0x54, Some(0x58), 0x5c, None)
    );
    let wide_masked = crate::pci::caps::Msi {
        per_vector_mask: true,
        ..wide
    };
    assert_eq!(wide_masked.mask(), Some(0x60));
}

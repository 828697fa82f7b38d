//! PCI configuration: enumeration of the root bus, BAR sizing, BAR
//! assignment from the host bridge's device-tree windows (or the
//! firmware's assignments kept where it describes none), enabling decode
//! and bus mastering, and the capability list.
//!
//! It owns the policy and the register arithmetic; every access goes through
//! the [`ConfigSpace`] trait, which the kernel implements over ECAM. It never
//! touches memory itself, never allocates, never programs bridges' windows
//! or scans buses behind them, and never panics on what a device answers.

pub mod caps;
pub mod regs;

use core::cmp::Reverse;
use core::fmt;

use abi::{PhysAddr, StreamId};

use crate::bounded::BoundedVec;
use crate::dt::{PciHost, PciSpace, PciWindow};
pub use caps::{CapSummary, Capabilities, Capability, Msi, MsiX, PciExpress, VendorCap};
pub use regs::{ClassCode, Command, HeaderLayout, HeaderType};

/// Most functions recorded.
pub const MAX_FUNCTIONS: usize = 32;
/// Most BARs of one function.
pub const MAX_BARS: usize = regs::BARS_TYPE0 as usize;

/// Bus/device/function: the requester ID of a PCI function.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bdf(u16);

impl Bdf {
    /// `bus:device.function`, or `None` if `device > 31` or `function > 7`.
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Self> {
        if device > 31 || function > 7 {
            return None;
        }
        Some(Self(
            (bus as u16) << 8 | (device as u16) << 3 | function as u16,
        ))
    }

    /// The function with requester ID `rid`.
    pub const fn from_rid(rid: u16) -> Self {
        Self(rid)
    }

    /// The requester ID (`bus << 8 | device << 3 | function`).
    pub const fn rid(self) -> u16 {
        self.0
    }

    /// Bus number.
    pub const fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// Device number (0..=31).
    pub const fn device(self) -> u8 {
        ((self.0 >> 3) & 0x1f) as u8
    }

    /// Function number (0..=7).
    pub const fn function(self) -> u8 {
        (self.0 & 7) as u8
    }

    /// Byte offset of register `offset` of this function inside an ECAM
    /// region whose first bus is `bus_start`, or `None` if the bus precedes
    /// it or `offset` is past the 4 KiB function space.
    pub const fn ecam_offset(self, bus_start: u8, offset: u16) -> Option<u64> {
        if self.bus() < bus_start || offset >= 0x1000 {
            return None;
        }
        let bus = (self.bus() - bus_start) as u64;
        Some(
            bus << 20
                | (self.device() as u64) << 15
                | (self.function() as u64) << 12
                | offset as u64,
        )
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{:x}",
            self.bus(),
            self.device(),
            self.function()
        )
    }
}

impl fmt::Debug for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bdf({self})")
    }
}

/// Configuration-space access, implemented by the kernel over ECAM.
///
/// This crate only passes dword-aligned offsets below 0x1000 to
/// [`read32`](Self::read32) and [`write32`](Self::write32). A function that
/// does not exist must read as all ones (as ECAM does).
pub trait ConfigSpace {
    /// Reads the dword at `offset` of `bdf`'s configuration space.
    fn read32(&self, bdf: Bdf, offset: u16) -> u32;
    /// Writes the dword at `offset` of `bdf`'s configuration space.
    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32);

    /// Reads the 16-bit register at `offset` (2-byte aligned).
    fn read16(&self, bdf: Bdf, offset: u16) -> u16 {
        (self.read32(bdf, offset & !3) >> ((offset & 2) * 8)) as u16
    }

    /// Reads the byte at `offset`.
    fn read8(&self, bdf: Bdf, offset: u16) -> u8 {
        (self.read32(bdf, offset & !3) >> ((offset & 3) * 8)) as u8
    }
}

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BarKind {
    /// I/O space.
    Io,
    /// 32-bit memory space.
    #[default]
    Mem32,
    /// 64-bit memory space (occupies this slot and the next).
    Mem64,
}

/// Where a BAR was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BarAddr {
    /// Address on the PCI bus (what the BAR register holds).
    pub pci: u64,
    /// Address the CPU uses to reach it (what the kernel maps).
    pub cpu: PhysAddr,
}

/// One implemented BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bar {
    /// Slot index (0..=5); a 64-bit BAR also uses `index + 1`.
    pub index: u8,
    /// Space decoded.
    pub kind: BarKind,
    /// Prefetchable memory.
    pub prefetchable: bool,
    /// Size in bytes (a power of two).
    pub size: u64,
    /// Assigned address, once [`assign`] ran.
    pub addr: Option<BarAddr>,
}

/// A PCI function and everything a boot report needs about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Function {
    /// Its address.
    pub bdf: Bdf,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Revision ID.
    pub revision: u8,
    /// Class code.
    pub class: ClassCode,
    /// Header type.
    pub header: HeaderType,
    /// Implemented BARs, by slot.
    pub bars: BoundedVec<Bar, MAX_BARS>,
    /// Capabilities.
    pub caps: CapSummary,
    /// Legacy interrupt pin (0 none, 1..4 INTA..INTD).
    pub interrupt_pin: u8,
    /// IOMMU phandle and StreamID from the host's `iommu-map`.
    pub stream: Option<(u32, StreamId)>,
    /// The command register as this crate last wrote it.
    pub command: Command,
}

impl Function {
    /// The BAR in slot `index`, if implemented.
    pub fn bar(&self, index: u8) -> Option<&Bar> {
        self.bars.iter().find(|b| b.index == index)
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:04x}:{:04x} {}",
            self.bdf, self.vendor, self.device, self.class
        )?;
        if let Some((_, sid)) = self.stream {
            write!(f, " SID {sid}")?;
        }
        for bar in self.bars.iter() {
            let kind = match bar.kind {
                BarKind::Io => "io",
                BarKind::Mem32 => "mem32",
                BarKind::Mem64 => "mem64",
            };
            let pf = if bar.prefetchable { " pf" } else { "" };
            write!(f, "; BAR{} {kind}{pf} {:#x}", bar.index, bar.size)?;
            if let Some(a) = bar.addr {
                write!(f, " @ {:#x}", a.cpu)?;
            }
        }
        if let Some(m) = self.caps.msix {
            write!(f, "; MSI-X {}", m.table_size)?;
        }
        Ok(())
    }
}

/// Why configuration failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciError {
    /// More than [`MAX_FUNCTIONS`] functions answered.
    TooManyFunctions,
    /// A BAR answered sizing with an impossible value (non-contiguous mask,
    /// reserved type, 64-bit BAR in the last slot).
    BadBar {
        /// The function.
        bdf: Bdf,
        /// The slot.
        index: u8,
    },
    /// No window of the needed kind exists, or it has no room left.
    NoSpace {
        /// The function.
        bdf: Bdf,
        /// The slot.
        index: u8,
        /// Kind of BAR that did not fit.
        kind: BarKind,
    },
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyFunctions => write!(f, "more than {MAX_FUNCTIONS} PCI functions"),
            Self::BadBar { bdf, index } => write!(f, "{bdf}: BAR{index} sizes impossibly"),
            Self::NoSpace { bdf, index, kind } => {
                write!(f, "{bdf}: no window room for BAR{index} ({kind:?})")
            }
        }
    }
}

/// The functions found on the root bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Enumeration {
    /// Functions in bus/device/function order.
    pub functions: BoundedVec<Function, MAX_FUNCTIONS>,
    /// Bridges found, whose secondary buses were not scanned.
    pub bridges: u8,
}

/// Scans the host's first bus: devices 0..=31, functions 1..=7 only where
/// function 0 is multi-function; absent functions (vendor 0xffff or 0) are
/// skipped. Each function's BARs are sized (with decode off meanwhile,
/// then the command register restored) and its capabilities read. Nothing
/// is assigned or enabled yet.
pub fn enumerate<C: ConfigSpace + ?Sized>(
    cfg: &mut C,
    host: &PciHost,
) -> Result<Enumeration, PciError> {
    let mut out = Enumeration::default();
    for device in 0..32 {
        for function in 0..8 {
            let Some(bdf) = Bdf::new(host.bus_start, device, function) else {
                break;
            };
            let id = cfg.read32(bdf, regs::VENDOR_ID);
            if matches!(id as u16, 0xffff | 0) {
                if function == 0 {
                    break;
                }
                continue;
            }
            let header = HeaderType::from_raw(cfg.read8(bdf, regs::HEADER_TYPE));
            let f = probe(cfg, host, bdf, id, header)?;
            if f.header.layout == HeaderLayout::Bridge {
                out.bridges = out.bridges.saturating_add(1);
            }
            out.functions
                .push(f)
                .map_err(|_| PciError::TooManyFunctions)?;
            if function == 0 && !header.multifunction {
                break;
            }
        }
    }
    Ok(out)
}

fn probe<C: ConfigSpace + ?Sized>(
    cfg: &mut C,
    host: &PciHost,
    bdf: Bdf,
    id: u32,
    header: HeaderType,
) -> Result<Function, PciError> {
    let class = cfg.read32(bdf, regs::REVISION_ID);
    Ok(Function {
        bdf,
        vendor: id as u16,
        device: (id >> 16) as u16,
        revision: class as u8,
        class: ClassCode::from_dword(class),
        header,
        bars: size_bars(cfg, bdf, header.bar_slots())?,
        caps: caps::summarize(cfg, bdf),
        interrupt_pin: cfg.read8(bdf, regs::INTERRUPT_PIN),
        stream: host.stream_id(bdf.rid()),
        command: Command(cfg.read16(bdf, regs::COMMAND)),
    })
}

/// Writes the command register; the status half is written as zero, which
/// leaves its write-one-to-clear bits alone.
fn write_command<C: ConfigSpace + ?Sized>(cfg: &mut C, bdf: Bdf, cmd: Command) {
    cfg.write32(bdf, regs::COMMAND, u32::from(cmd.0));
}

/// Writes all ones to the BAR dword at `offset`, reads back, restores.
fn probe_dword<C: ConfigSpace + ?Sized>(cfg: &mut C, bdf: Bdf, offset: u16) -> (u32, u32) {
    let orig = cfg.read32(bdf, offset);
    cfg.write32(bdf, offset, u32::MAX);
    let probed = cfg.read32(bdf, offset);
    cfg.write32(bdf, offset, orig);
    (orig, probed)
}

/// The size a contiguous address mask decodes, or `None` if the mask is not
/// of the form ones-then-zeros. `mask == 0` is not passed.
fn mask_size(mask: u64) -> Option<u64> {
    let size = mask & mask.wrapping_neg();
    (mask | (size - 1) == u64::MAX).then_some(size)
}

/// Sizes the `slots` BARs of `bdf` (save, write all ones, read back,
/// restore), with memory and I/O decode off meanwhile.
pub fn size_bars<C: ConfigSpace + ?Sized>(
    cfg: &mut C,
    bdf: Bdf,
    slots: u8,
) -> Result<BoundedVec<Bar, MAX_BARS>, PciError> {
    let cmd = Command(cfg.read16(bdf, regs::COMMAND));
    write_command(cfg, bdf, cmd.without(Command::MEM.union(Command::IO)));
    let result = size_bars_decode_off(cfg, bdf, slots);
    write_command(cfg, bdf, cmd);
    result
}

fn size_bars_decode_off<C: ConfigSpace + ?Sized>(
    cfg: &mut C,
    bdf: Bdf,
    slots: u8,
) -> Result<BoundedVec<Bar, MAX_BARS>, PciError> {
    let mut bars = BoundedVec::new();
    let mut index = 0u8;
    while index < slots.min(regs::BARS_TYPE0) {
        let bad = PciError::BadBar { bdf, index };
        let offset = regs::BAR0 + 4 * u16::from(index);
        let (orig, lo) = probe_dword(cfg, bdf, offset);
        let (kind, mask, prefetchable) = if orig & regs::BAR_IO != 0 {
            let mut mask = lo & regs::BAR_IO_ADDR_MASK;
            if mask != 0 && mask & 0xffff_0000 == 0 {
                mask |= 0xffff_0000; // a 16-bit I/O decoder
            }
            (BarKind::Io, u64::from(mask) | 0xffff_ffff_0000_0000, false)
        } else {
            let prefetchable = orig & regs::BAR_PREFETCHABLE != 0;
            let lo = u64::from(lo & regs::BAR_MEM_ADDR_MASK);
            match orig & regs::BAR_MEM_TYPE_MASK {
                regs::BAR_MEM_TYPE_32 | regs::BAR_MEM_TYPE_1M => {
                    (BarKind::Mem32, lo | 0xffff_ffff_0000_0000, prefetchable)
                }
                regs::BAR_MEM_TYPE_64 => {
                    if index + 1 >= slots {
                        return Err(bad);
                    }
                    let (_, hi) = probe_dword(cfg, bdf, offset + 4);
                    (BarKind::Mem64, u64::from(hi) << 32 | lo, prefetchable)
                }
                _ => return Err(bad),
            }
        };
        let used = if kind == BarKind::Mem64 { 2 } else { 1 };
        // An all-zero address mask: the slot is not implemented.
        if mask & 0xffff_ffff != 0 || (kind == BarKind::Mem64 && mask != 0) {
            let size = mask_size(mask).ok_or(bad)?;
            // Cannot fail: one BAR per slot at most.
            let _ = bars.push(Bar {
                index,
                kind,
                prefetchable,
                size,
                addr: None,
            });
        }
        index += used;
    }
    Ok(bars)
}

/// Bump allocator over one window, in PCI addresses.
struct Cursor {
    window: Option<PciWindow>,
    next: u64,
}

impl Cursor {
    /// Starts at the window base, but never below `floor` (address 0 is
    /// never handed out).
    fn new(window: Option<PciWindow>, floor: u64) -> Self {
        let next = window.map_or(0, |w| w.pci_addr.max(floor));
        Self { window, next }
    }

    /// A `size`-aligned block of `size` bytes ending at or below `limit`.
    fn alloc(&mut self, size: u64, limit: u64) -> Option<BarAddr> {
        let w = self.window?;
        let start = self.next.checked_next_multiple_of(size)?;
        let end = start.checked_add(size)?;
        let window_end = w.pci_addr.checked_add(w.size)?;
        if end > window_end || end > limit {
            return None;
        }
        self.next = end;
        Some(BarAddr {
            pci: start,
            cpu: w.to_cpu(start)?,
        })
    }
}

/// Lowest I/O address handed out (as Linux: keep legacy ports free).
const IO_FLOOR: u64 = 0x1000;
/// End of the 32-bit PCI address space.
const FOUR_GIB: u64 = 1 << 32;

/// Assigns every sized BAR an address from the host's windows and writes it
/// to the BAR. Largest BARs first, each aligned to its size. I/O and 32-bit
/// BARs go first, into the I/O and MEM32 windows; then 64-bit BARs go into
/// what is left of MEM32 where they fit, otherwise into MEM64.
pub fn assign<C: ConfigSpace + ?Sized>(
    cfg: &mut C,
    en: &mut Enumeration,
    host: &PciHost,
) -> Result<(), PciError> {
    let mut io = Cursor::new(host.window(PciSpace::Io), IO_FLOOR);
    let mut mem32 = Cursor::new(host.window(PciSpace::Mem32), 1);
    let mut mem64 = Cursor::new(host.window(PciSpace::Mem64), 1);

    let mut order: BoundedVec<(u64, u8, u8), { MAX_FUNCTIONS * MAX_BARS }> = BoundedVec::new();
    for (fi, f) in en.functions.iter().enumerate() {
        for (bi, b) in f.bars.iter().enumerate() {
            // Cannot fail: the capacity is the product of both maxima.
            let _ = order.push((b.size, fi as u8, bi as u8));
        }
    }
    let order = {
        let mut o = order;
        o.as_mut_slice()
            .sort_unstable_by_key(|&(size, fi, bi)| (Reverse(size), fi, bi));
        o
    };

    for pass64 in [false, true] {
        for &(_, fi, bi) in order.iter() {
            let Some(f) = en.functions.as_mut_slice().get_mut(usize::from(fi)) else {
                continue;
            };
            let bdf = f.bdf;
            let Some(bar) = f.bars.as_mut_slice().get_mut(usize::from(bi)) else {
                continue;
            };
            if (bar.kind == BarKind::Mem64) != pass64 {
                continue;
            }
            let addr = match bar.kind {
                BarKind::Io => io.alloc(bar.size, u64::MAX),
                BarKind::Mem32 => mem32.alloc(bar.size, FOUR_GIB),
                BarKind::Mem64 => mem32
                    .alloc(bar.size, FOUR_GIB)
                    .or_else(|| mem64.alloc(bar.size, u64::MAX)),
            }
            .ok_or(PciError::NoSpace {
                bdf,
                index: bar.index,
                kind: bar.kind,
            })?;
            let offset = regs::BAR0 + 4 * u16::from(bar.index);
            cfg.write32(bdf, offset, addr.pci as u32);
            if bar.kind == BarKind::Mem64 {
                cfg.write32(bdf, offset + 4, (addr.pci >> 32) as u32);
            }
            bar.addr = Some(addr);
        }
    }
    Ok(())
}

/// Records the addresses the firmware left in the memory BARs, writing
/// nothing: for a host that describes no windows (an ACPI machine, whose
/// root bridge's windows live in the DSDT's AML), the firmware's
/// assignments are the ones to keep. Such a host bridge does not translate,
/// so the CPU address is the PCI address. A BAR left at 0, or at an
/// address not aligned to its size (not a real assignment), or whose end
/// would overflow, stays unassigned; so do I/O BARs (never mapped).
pub fn keep_firmware_bars<C: ConfigSpace + ?Sized>(cfg: &C, en: &mut Enumeration) {
    for f in en.functions.as_mut_slice() {
        let bdf = f.bdf;
        for bar in f.bars.as_mut_slice() {
            let offset = regs::BAR0 + 4 * u16::from(bar.index);
            let lo = u64::from(cfg.read32(bdf, offset) & regs::BAR_MEM_ADDR_MASK);
            let pci = match bar.kind {
                BarKind::Io => continue,
                BarKind::Mem32 => lo,
                BarKind::Mem64 => u64::from(cfg.read32(bdf, offset + 4)) << 32 | lo,
            };
            let placed =
                pci != 0 && pci.is_multiple_of(bar.size) && pci.checked_add(bar.size).is_some();
            if placed {
                bar.addr = Some(BarAddr {
                    pci,
                    cpu: PhysAddr::new(pci),
                });
            }
        }
    }
}

/// Turns on memory and I/O decode for the kinds of BARs `f` has assigned,
/// and bus mastering if `bus_master` (do that only once the SMMU confines
/// the function's StreamID: with the SMMU disabled, DMA bypasses it).
pub fn enable<C: ConfigSpace + ?Sized>(cfg: &mut C, f: &mut Function, bus_master: bool) {
    let mut cmd = Command(cfg.read16(f.bdf, regs::COMMAND));
    for bar in f.bars.iter().filter(|b| b.addr.is_some()) {
        cmd = cmd.union(match bar.kind {
            BarKind::Io => Command::IO,
            BarKind::Mem32 | BarKind::Mem64 => Command::MEM,
        });
    }
    if bus_master {
        cmd = cmd.union(Command::BUS_MASTER);
    }
    write_command(cfg, f.bdf, cmd);
    f.command = Command(cfg.read16(f.bdf, regs::COMMAND));
}

/// [`enumerate`], [`assign`] (or, where the host describes no windows,
/// [`keep_firmware_bars`]), then [`enable`] every endpoint (bridges are
/// left disabled: their forwarding windows are not programmed).
pub fn configure<C: ConfigSpace + ?Sized>(
    cfg: &mut C,
    host: &PciHost,
    bus_master: bool,
) -> Result<Enumeration, PciError> {
    let mut en = enumerate(cfg, host)?;
    if host.windows.is_empty() {
        keep_firmware_bars(cfg, &mut en);
    } else {
        assign(cfg, &mut en, host)?;
    }
    for f in en.functions.as_mut_slice() {
        if f.header.layout == HeaderLayout::Endpoint {
            enable(cfg, f, bus_master);
        }
    }
    Ok(en)
}

#[cfg(test)]
mod tests;

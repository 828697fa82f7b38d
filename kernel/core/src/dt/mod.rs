//! Platform discovery from the flattened device tree: RAM, reservations,
//! bootargs, the PL011, the GICv3 and its ITS, the architected timer, PSCI,
//! the SMMUv3 and the PCIe host bridge with its windows and ID maps.
//!
//! It owns the interpretation of the blob and nothing else: it never maps or
//! touches the devices it describes, never allocates, and never panics on the
//! blob's contents. The blob is checked structurally first (`check`), which
//! makes the `fdt` crate's walkers safe to use; properties that crate cannot
//! decode (3-cell GIC interrupts, PCI `ranges`, `iommu-map`, `msi-map`) are
//! decoded from their raw bytes here. Devices are found by `compatible`,
//! never by node path.

mod check;
mod props;

use core::fmt;

use abi::{PhysAddr, StreamId};
use fdt::Fdt;
use fdt::node::FdtNode;

use crate::bounded::BoundedVec;
pub use check::MAX_DEPTH;
use props::{Cells, cells, one_u32, prop, reg, strings};

/// Most RAM regions kept.
pub const MAX_MEMORY_REGIONS: usize = 8;
/// Most `/memreserve/` entries accepted (more is an error: dropping one
/// would let the kernel hand out reserved memory).
pub const MAX_RESERVED: usize = 8;
/// Most PCI address windows kept from `ranges`.
pub const MAX_PCI_WINDOWS: usize = 8;
/// Most entries kept from an `iommu-map` or `msi-map`.
pub const MAX_ID_MAP: usize = 8;
/// Most entries kept from an `interrupt-map` (QEMU: 4 slots x 4 pins).
pub const MAX_INTX_MAP: usize = 32;

/// Why the device tree could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtError {
    /// The blob is shorter than its header or than the size the header gives.
    Truncated,
    /// The magic number is not 0xd00dfeed.
    BadMagic,
    /// The format version is older than 17 or incompatible with 17.
    BadVersion,
    /// The structure is inconsistent: offsets, tokens, names or nesting.
    Malformed,
    /// Nodes nest deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Valid but unsupported layout (NOP tokens).
    Unsupported,
    /// A required node is absent (named by its `compatible` or role).
    Missing(&'static str),
    /// A property has the wrong length or an unusable value.
    BadProperty(&'static str),
    /// More entries than this crate's fixed capacity.
    TooMany(&'static str),
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("device tree truncated"),
            Self::BadMagic => f.write_str("not a device tree (bad magic)"),
            Self::BadVersion => f.write_str("unsupported device tree version"),
            Self::Malformed => f.write_str("malformed device tree structure"),
            Self::TooDeep => f.write_str("device tree nested too deeply"),
            Self::Unsupported => f.write_str("device tree uses NOP tokens (unsupported)"),
            Self::Missing(what) => write!(f, "device tree has no {what}"),
            Self::BadProperty(what) => write!(f, "device tree property {what} is invalid"),
            Self::TooMany(what) => write!(f, "device tree has too many {what}"),
        }
    }
}

/// A physical address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Region {
    /// First byte.
    pub base: PhysAddr,
    /// Length in bytes.
    pub size: u64,
}

impl Region {
    /// One past the last byte, or `None` if that overflows.
    pub fn end(&self) -> Option<PhysAddr> {
        self.base.checked_add(self.size)
    }

    /// Whether `addr` lies inside the region.
    pub fn contains(&self, addr: PhysAddr) -> bool {
        addr >= self.base
            && addr
                .offset_from(self.base)
                .is_some_and(|off| off < self.size)
    }
}

/// How an interrupt is signalled (the GIC only distinguishes these two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trigger {
    /// Edge-triggered (binding flags 1 or 2).
    Edge,
    /// Level-sensitive (binding flags 4 or 8, and 0 "unspecified").
    #[default]
    Level,
}

/// One GIC interrupt, decoded from the 3-cell binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Irq {
    /// GIC interrupt ID: PPI n is n+16, SPI n is n+32, extended SPI n is
    /// n+4096, extended PPI n is n+1056.
    pub intid: u32,
    /// Edge or level.
    pub trigger: Trigger,
}

impl fmt::Display for Irq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = match self.trigger {
            Trigger::Edge => "edge",
            Trigger::Level => "level",
        };
        write!(f, "INTID {} {t}", self.intid)
    }
}

/// The GICv3 (`arm,gic-v3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gic {
    /// Distributor registers.
    pub gicd: Region,
    /// First redistributor region (QEMU has one, covering every CPU).
    pub gicr: Region,
    /// The ITS (`arm,gic-v3-its`), if present.
    pub its: Option<Region>,
    /// The ITS's phandle, which `msi-map` refers to.
    pub its_phandle: Option<u32>,
    /// The GIC's own phandle (the interrupt parent).
    pub phandle: Option<u32>,
    /// The virtual-CPU-interface maintenance interrupt (present when
    /// QEMU runs the guest at EL2).
    pub maintenance: Option<Irq>,
}

/// The architected timer's PPIs (`arm,armv8-timer`), in binding order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    /// Secure EL1 physical timer.
    pub secure_phys: Irq,
    /// Non-secure EL1 physical timer (CNTP).
    pub phys: Irq,
    /// EL1 virtual timer (CNTV).
    pub virt: Irq,
    /// EL2 physical timer (CNTHP).
    pub hyp_phys: Irq,
    /// EL2 virtual timer (CNTHV), if listed.
    pub hyp_virt: Option<Irq>,
}

impl Timer {
    /// The four mandatory interrupts, in device-tree order.
    pub fn intids(&self) -> [u32; 4] {
        [
            self.secure_phys.intid,
            self.phys.intid,
            self.virt.intid,
            self.hyp_phys.intid,
        ]
    }
}

/// The PSCI conduit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsciMethod {
    /// `hvc #0` (the kernel runs at EL1 under a hypervisor or QEMU's EL2).
    Hvc,
    /// `smc #0` (QEMU with `virtualization=on`).
    Smc,
}

/// The SMMUv3 (`arm,smmu-v3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Smmu {
    /// Register frame (page 0 and page 1).
    pub regs: Region,
    /// Phandle that `iommu-map` refers to.
    pub phandle: Option<u32>,
    /// `#iommu-cells` (1 for SMMUv3: the StreamID).
    pub iommu_cells: u32,
    /// Whether table walks and queue accesses are cache-coherent.
    pub dma_coherent: bool,
    /// Event-queue interrupt.
    pub eventq: Option<Irq>,
    /// PRI-queue interrupt.
    pub priq: Option<Irq>,
    /// CMD_SYNC completion interrupt.
    pub cmdq_sync: Option<Irq>,
    /// Global-error interrupt.
    pub gerror: Option<Irq>,
}

/// PCI address space of a window (bits 25:24 of `phys.hi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PciSpace {
    /// Configuration space.
    #[default]
    Config,
    /// I/O space.
    Io,
    /// 32-bit memory space.
    Mem32,
    /// 64-bit memory space.
    Mem64,
}

/// One window of the host bridge, from `ranges`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PciWindow {
    /// Which PCI space the window decodes.
    pub space: PciSpace,
    /// Whether the window is marked prefetchable.
    pub prefetchable: bool,
    /// Base as seen on the PCI bus (what goes into a BAR).
    pub pci_addr: u64,
    /// Base as seen by the CPU (what the kernel maps).
    pub cpu_addr: PhysAddr,
    /// Length in bytes.
    pub size: u64,
}

impl PciWindow {
    /// The CPU address of PCI address `pci`, if it lies inside the window.
    pub fn to_cpu(&self, pci: u64) -> Option<PhysAddr> {
        let off = pci.checked_sub(self.pci_addr)?;
        if off >= self.size {
            return None;
        }
        self.cpu_addr.checked_add(off)
    }
}

/// One entry of an `iommu-map` or `msi-map`: RIDs `rid_base..rid_base+length`
/// map to `out_base..` at the controller `phandle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdMapEntry {
    /// First requester ID covered.
    pub rid_base: u32,
    /// Phandle of the IOMMU or MSI controller.
    pub phandle: u32,
    /// Output ID (StreamID or ITS DeviceID) of `rid_base`.
    pub out_base: u32,
    /// Number of IDs covered.
    pub length: u32,
}

/// An `iommu-map` or `msi-map` with its mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdMap {
    /// Entries in property order; the first match wins.
    pub entries: BoundedVec<IdMapEntry, MAX_ID_MAP>,
    /// `*-map-mask` applied to a RID before lookup (all ones by default).
    pub mask: u32,
}

impl IdMap {
    /// Maps `rid` to `(controller phandle, output id)`, or `None` if no entry
    /// covers it.
    pub fn lookup(&self, rid: u16) -> Option<(u32, u32)> {
        let rid = u32::from(rid) & self.mask;
        self.entries.iter().find_map(|e| {
            let off = rid.checked_sub(e.rid_base)?;
            (off < e.length).then_some((e.phandle, e.out_base.checked_add(off)?))
        })
    }
}

/// One `interrupt-map` entry: (masked phys.hi, pin) → GIC interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IntxEntry {
    /// `phys.hi` of the child unit address (bus/device/function bits),
    /// already masked.
    pub hi: u32,
    /// INTx pin, 1 (INTA) to 4 (INTD), already masked.
    pub pin: u8,
    /// The GIC interrupt it raises.
    pub irq: Irq,
}

/// A PCI host's legacy-interrupt routing (`interrupt-map` and its mask).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IntxMap {
    /// The entries.
    pub entries: BoundedVec<IntxEntry, MAX_INTX_MAP>,
    /// `interrupt-map-mask` for phys.hi.
    pub hi_mask: u32,
    /// `interrupt-map-mask` for the pin.
    pub pin_mask: u32,
}

impl IntxMap {
    /// The GIC interrupt that function `rid` raises on `pin` (1..=4, from
    /// its Interrupt Pin register).
    pub fn lookup(&self, rid: u16, pin: u8) -> Option<Irq> {
        let hi = (u32::from(rid) << 8) & self.hi_mask;
        let pin = u32::from(pin) & self.pin_mask;
        self.entries
            .iter()
            .find(|e| e.hi == hi && u32::from(e.pin) == pin)
            .map(|e| e.irq)
    }
}

/// The PCIe host bridge (`pci-host-ecam-generic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciHost {
    /// ECAM region; bus `bus_start` is at its base.
    pub ecam: Region,
    /// First bus number.
    pub bus_start: u8,
    /// Last bus number (clamped so that every bus lies inside `ecam`).
    pub bus_end: u8,
    /// Address windows, in `ranges` order.
    pub windows: BoundedVec<PciWindow, MAX_PCI_WINDOWS>,
    /// Whether device DMA is cache-coherent.
    pub dma_coherent: bool,
    /// RID to StreamID map.
    pub iommu_map: IdMap,
    /// RID to ITS DeviceID map.
    pub msi_map: IdMap,
    /// Legacy INTx routing from `interrupt-map`.
    pub intx: IntxMap,
}

impl PciHost {
    /// The IOMMU phandle and StreamID of requester `rid`, from `iommu-map`.
    pub fn stream_id(&self, rid: u16) -> Option<(u32, StreamId)> {
        self.iommu_map
            .lookup(rid)
            .map(|(ph, sid)| (ph, StreamId(sid)))
    }

    /// The MSI controller phandle and DeviceID of requester `rid`, from
    /// `msi-map`.
    pub fn msi_device_id(&self, rid: u16) -> Option<(u32, u32)> {
        self.msi_map.lookup(rid)
    }

    /// The first window of `space`.
    pub fn window(&self, space: PciSpace) -> Option<PciWindow> {
        self.windows.iter().copied().find(|w| w.space == space)
    }
}

/// Everything the kernel learns from the device tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform<'a> {
    /// RAM regions (`device_type = "memory"`), in tree order.
    pub memory: BoundedVec<Region, MAX_MEMORY_REGIONS>,
    /// `/memreserve/` entries. (QEMU does not list the DTB's own MiB.)
    pub reserved: BoundedVec<Region, MAX_RESERVED>,
    /// `/chosen/bootargs`, if present.
    pub bootargs: Option<&'a str>,
    /// PL011 UART registers (`arm,pl011`), if present.
    pub uart: Option<Region>,
    /// The GICv3 (always present in a parsed device tree: `parse` refuses
    /// a tree without one; `None` on a platform described otherwise).
    pub gic: Option<Gic>,
    /// The architected timer (always present in a parsed device tree;
    /// `None` on a platform described otherwise).
    pub timer: Option<Timer>,
    /// The PSCI conduit, if PSCI is described (absent at EL3).
    pub psci: Option<PsciMethod>,
    /// The SMMUv3, if present.
    pub smmu: Option<Smmu>,
    /// The PCIe host bridge, if present.
    pub pci: Option<PciHost>,
}

/// The size the header at the start of `header_bytes` (at least 40 bytes)
/// declares, after checking magic and version: how long a slice the kernel
/// should make over the blob before calling [`parse`].
pub fn blob_size(header_bytes: &[u8]) -> Result<usize, DtError> {
    check::header(header_bytes).map(|h| h.total_size)
}

/// Parses a device-tree blob. `blob` may extend past the tree's total size.
pub fn parse(blob: &[u8]) -> Result<Platform<'_>, DtError> {
    let total = blob_size(blob)?;
    let blob = blob.get(..total).ok_or(DtError::Truncated)?;
    let hdr = check::check(blob)?;
    let fdt = Fdt::new(blob).map_err(|_| DtError::Malformed)?;
    let root = fdt.find_node("/").ok_or(DtError::Malformed)?;

    let gic = gic(&fdt)?;
    let ctx = IrqCtx {
        gic_phandle: gic.phandle,
    };
    Ok(Platform {
        memory: memory(&fdt)?,
        reserved: reservations(blob, hdr.rsvmap)?,
        bootargs: root
            .children()
            .find(|n| n.name == "chosen")
            .and_then(|c| prop(c, "bootargs"))
            .map(|b| core::str::from_utf8(b).map(|s| s.trim_end_matches('\0')))
            .transpose()
            .map_err(|_| DtError::BadProperty("bootargs"))?,
        uart: match fdt.find_compatible(&["arm,pl011"]) {
            Some(n) => Some(first_reg(n, "arm,pl011 reg")?),
            None => None,
        },
        timer: Some(timer(&fdt, &ctx)?),
        gic: Some(gic),
        psci: psci(&fdt)?,
        smmu: smmu(&fdt, &ctx)?,
        pci: pci_host(&fdt, root.cell_sizes().address_cells, &ctx)?,
    })
}

fn memory(fdt: &Fdt<'_>) -> Result<BoundedVec<Region, MAX_MEMORY_REGIONS>, DtError> {
    let mut out = BoundedVec::new();
    for node in fdt.all_nodes() {
        let is_memory = prop(node, "device_type").is_some_and(|v| v == b"memory\0");
        if !is_memory {
            continue;
        }
        for r in reg(node) {
            let r = r.map_err(|_| DtError::BadProperty("memory reg"))?;
            if r.size != 0 {
                out.push(r)
                    .map_err(|_| DtError::TooMany("memory regions"))?;
            }
        }
    }
    if out.is_empty() {
        return Err(DtError::Missing("memory"));
    }
    Ok(out)
}

fn reservations(blob: &[u8], at: usize) -> Result<BoundedVec<Region, MAX_RESERVED>, DtError> {
    let mut out = BoundedVec::new();
    let mut entries = blob.get(at..).ok_or(DtError::Malformed)?.chunks_exact(16);
    loop {
        let e = entries.next().ok_or(DtError::Malformed)?;
        let (a, s) = e.split_at(8);
        let base = u64::from_be_bytes(a.try_into().map_err(|_| DtError::Malformed)?);
        let size = u64::from_be_bytes(s.try_into().map_err(|_| DtError::Malformed)?);
        if base == 0 && size == 0 {
            return Ok(out);
        }
        let region = Region {
            base: PhysAddr::new(base),
            size,
        };
        region.end().ok_or(DtError::BadProperty("/memreserve/"))?;
        out.push(region)
            .map_err(|_| DtError::TooMany("/memreserve/ entries"))?;
    }
}

fn first_reg(node: FdtNode<'_, '_>, what: &'static str) -> Result<Region, DtError> {
    reg(node)
        .next()
        .ok_or(DtError::BadProperty(what))?
        .map_err(|_| DtError::BadProperty(what))
}

fn gic(fdt: &Fdt<'_>) -> Result<Gic, DtError> {
    let node = fdt
        .find_compatible(&["arm,gic-v3"])
        .ok_or(DtError::Missing("arm,gic-v3"))?;
    if one_u32(node, "#interrupt-cells")? != Some(3) {
        return Err(DtError::BadProperty("GIC #interrupt-cells"));
    }
    let mut regs = reg(node);
    let mut next = || -> Result<Region, DtError> {
        regs.next()
            .ok_or(DtError::BadProperty("GIC reg"))?
            .map_err(|_| DtError::BadProperty("GIC reg"))
    };
    let gicd = next()?;
    let gicr = next()?;
    let its_node = fdt.find_compatible(&["arm,gic-v3-its"]);
    let phandle = one_u32(node, "phandle")?;
    let ctx = IrqCtx {
        gic_phandle: phandle,
    };
    Ok(Gic {
        gicd,
        gicr,
        its: its_node.map(|n| first_reg(n, "ITS reg")).transpose()?,
        its_phandle: its_node
            .map(|n| one_u32(n, "phandle"))
            .transpose()?
            .flatten(),
        phandle,
        maintenance: ctx.interrupts(node)?.next().transpose()?,
    })
}

/// What is needed to decode an `interrupts` property.
struct IrqCtx {
    gic_phandle: Option<u32>,
}

impl IrqCtx {
    /// The node's interrupts, each decoded from three cells. An explicit
    /// `interrupt-parent` other than the GIC is refused.
    fn interrupts<'a>(
        &self,
        node: FdtNode<'_, 'a>,
    ) -> Result<impl Iterator<Item = Result<Irq, DtError>> + 'a, DtError> {
        if let Some(parent) = one_u32(node, "interrupt-parent")?
            && Some(parent) != self.gic_phandle
        {
            return Err(DtError::BadProperty("interrupt-parent (not the GIC)"));
        }
        let raw = prop(node, "interrupts").unwrap_or(&[]);
        if !raw.len().is_multiple_of(12) {
            return Err(DtError::BadProperty("interrupts"));
        }
        Ok(raw.chunks_exact(12).map(|c| {
            let mut it = cells(c);
            let (kind, num, flags) = (
                it.next().unwrap_or(0),
                it.next().unwrap_or(0),
                it.next().unwrap_or(0),
            );
            decode_irq(kind, num, flags)
        }))
    }
}

/// Decodes one GICv3 `<type number flags>` triple.
fn decode_irq(kind: u32, num: u32, flags: u32) -> Result<Irq, DtError> {
    let (base, limit) = match kind {
        0 => (32, 988),    // SPI
        1 => (16, 16),     // PPI
        2 => (4096, 1024), // extended SPI
        3 => (1056, 64),   // extended PPI
        _ => return Err(DtError::BadProperty("interrupts (type)")),
    };
    if num >= limit {
        return Err(DtError::BadProperty("interrupts (number)"));
    }
    let trigger = match flags & 0xf {
        1 | 2 => Trigger::Edge,
        0 | 4 | 8 => Trigger::Level,
        _ => return Err(DtError::BadProperty("interrupts (flags)")),
    };
    Ok(Irq {
        intid: base + num,
        trigger,
    })
}

fn timer(fdt: &Fdt<'_>, ctx: &IrqCtx) -> Result<Timer, DtError> {
    let node = fdt
        .find_compatible(&["arm,armv8-timer"])
        .ok_or(DtError::Missing("arm,armv8-timer"))?;
    let mut irqs = ctx.interrupts(node)?;
    let mut next = || -> Result<Irq, DtError> {
        irqs.next()
            .ok_or(DtError::BadProperty("timer interrupts"))?
    };
    Ok(Timer {
        secure_phys: next()?,
        phys: next()?,
        virt: next()?,
        hyp_phys: next()?,
        hyp_virt: next().ok(),
    })
}

fn psci(fdt: &Fdt<'_>) -> Result<Option<PsciMethod>, DtError> {
    let Some(node) = fdt.find_compatible(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]) else {
        return Ok(None);
    };
    match prop(node, "method") {
        Some(b"hvc\0") => Ok(Some(PsciMethod::Hvc)),
        Some(b"smc\0") => Ok(Some(PsciMethod::Smc)),
        _ => Err(DtError::BadProperty("psci method")),
    }
}

fn smmu(fdt: &Fdt<'_>, ctx: &IrqCtx) -> Result<Option<Smmu>, DtError> {
    let Some(node) = fdt.find_compatible(&["arm,smmu-v3"]) else {
        return Ok(None);
    };
    let mut smmu = Smmu {
        regs: first_reg(node, "SMMU reg")?,
        phandle: one_u32(node, "phandle")?,
        iommu_cells: one_u32(node, "#iommu-cells")?.unwrap_or(1),
        dma_coherent: prop(node, "dma-coherent").is_some(),
        eventq: None,
        priq: None,
        cmdq_sync: None,
        gerror: None,
    };
    let names = prop(node, "interrupt-names").unwrap_or(&[]);
    for (name, irq) in strings(names).zip(ctx.interrupts(node)?) {
        let irq = Some(irq?);
        match name {
            "eventq" => smmu.eventq = irq,
            "priq" => smmu.priq = irq,
            "cmdq-sync" => smmu.cmdq_sync = irq,
            "gerror" => smmu.gerror = irq,
            _ => {}
        }
    }
    Ok(Some(smmu))
}

/// Bytes of ECAM per bus.
const ECAM_BUS_SIZE: u64 = 1 << 20;

fn pci_host(
    fdt: &Fdt<'_>,
    root_address_cells: usize,
    ctx: &IrqCtx,
) -> Result<Option<PciHost>, DtError> {
    let Some(node) = fdt.find_compatible(&["pci-host-ecam-generic"]) else {
        return Ok(None);
    };
    let ecam = first_reg(node, "PCI reg")?;
    let (bus_start, bus_end) = match prop(node, "bus-range") {
        None => (0, 255),
        Some(b) => {
            let mut it = cells(b);
            match (it.next(), it.next(), b.len()) {
                (Some(s), Some(e), 8) if s <= e && e <= 255 => (s as u8, e as u8),
                _ => return Err(DtError::BadProperty("bus-range")),
            }
        }
    };
    let buses = ecam.size / ECAM_BUS_SIZE;
    if buses == 0 {
        return Err(DtError::BadProperty("PCI reg (ECAM smaller than one bus)"));
    }
    let last_covered = u64::from(bus_start) + buses - 1;
    let bus_end = bus_end.min(u8::try_from(last_covered).unwrap_or(u8::MAX));

    let sizes = node.cell_sizes();
    if sizes.address_cells != 3 || sizes.size_cells != 2 {
        return Err(DtError::BadProperty("PCI #address-cells/#size-cells"));
    }
    let parent = Cells::new(root_address_cells).ok_or(DtError::BadProperty("#address-cells"))?;
    Ok(Some(PciHost {
        ecam,
        bus_start,
        bus_end,
        windows: pci_ranges(prop(node, "ranges").unwrap_or(&[]), parent)?,
        dma_coherent: prop(node, "dma-coherent").is_some(),
        iommu_map: id_map(node, "iommu-map", "iommu-map-mask")?,
        msi_map: id_map(node, "msi-map", "msi-map-mask")?,
        intx: intx_map(fdt, node, ctx)?,
    }))
}

/// Decodes a PCI host's `interrupt-map` for legacy INTx: entries of
/// `<phys.hi phys.mid phys.lo pin> <parent> <parent unit address> <GIC
/// type number flags>`, with the parent's `#address-cells` read from the
/// parent node (the GIC has 2) and only the GIC accepted as parent.
fn intx_map(fdt: &Fdt<'_>, node: FdtNode<'_, '_>, ctx: &IrqCtx) -> Result<IntxMap, DtError> {
    const BAD: DtError = DtError::BadProperty("interrupt-map");
    let mut map = IntxMap::default();
    let Some(raw) = prop(node, "interrupt-map") else {
        return Ok(map);
    };
    let mask =
        prop(node, "interrupt-map-mask").ok_or(DtError::BadProperty("interrupt-map-mask"))?;
    let mut m = cells(mask);
    if mask.len() != 16 {
        return Err(DtError::BadProperty("interrupt-map-mask"));
    }
    map.hi_mask = m.next().ok_or(BAD)?;
    let _ = (m.next(), m.next());
    map.pin_mask = m.next().ok_or(BAD)?;
    let mut words = cells(raw);
    while let Some(hi) = words.next() {
        let (_mid, _lo) = (words.next().ok_or(BAD)?, words.next().ok_or(BAD)?);
        let pin = words.next().ok_or(BAD)?;
        let parent = words.next().ok_or(BAD)?;
        if Some(parent) != ctx.gic_phandle {
            return Err(DtError::BadProperty(
                "interrupt-map (parent is not the GIC)",
            ));
        }
        let parent_node = fdt.find_phandle(parent).ok_or(BAD)?;
        for _ in 0..parent_node.cell_sizes().address_cells {
            words.next().ok_or(BAD)?;
        }
        let (kind, num, flags) = (
            words.next().ok_or(BAD)?,
            words.next().ok_or(BAD)?,
            words.next().ok_or(BAD)?,
        );
        let irq = decode_irq(kind, num, flags)?;
        let pin = u8::try_from(pin).map_err(|_| BAD)?;
        map.entries
            .push(IntxEntry { hi, pin, irq })
            .map_err(|_| DtError::TooMany("interrupt-map entries"))?;
    }
    Ok(map)
}

/// Decodes a PCI host's `ranges`: `<phys.hi phys.mid phys.lo> <cpu addr>
/// <size.hi size.lo>`, with the CPU address in the root's cell count.
fn pci_ranges(
    raw: &[u8],
    parent: Cells,
) -> Result<BoundedVec<PciWindow, MAX_PCI_WINDOWS>, DtError> {
    const BAD: DtError = DtError::BadProperty("PCI ranges");
    let entry_cells = 3 + parent.count() + 2;
    if !raw.len().is_multiple_of(entry_cells * 4) {
        return Err(BAD);
    }
    let mut out = BoundedVec::new();
    for entry in raw.chunks_exact(entry_cells * 4) {
        let (child, rest) = entry.split_at(12);
        let (cpu, size) = rest.split_at(parent.count() * 4);
        let mut c = cells(child);
        let hi = c.next().ok_or(BAD)?;
        let pci_addr = Cells::Two.read(c).ok_or(BAD)?;
        let cpu_addr = parent.read(cells(cpu)).ok_or(BAD)?;
        let size = Cells::Two.read(cells(size)).ok_or(BAD)?;
        let space = match (hi >> 24) & 3 {
            0 => PciSpace::Config,
            1 => PciSpace::Io,
            2 => PciSpace::Mem32,
            _ => PciSpace::Mem64,
        };
        if pci_addr.checked_add(size).is_none() || cpu_addr.checked_add(size).is_none() {
            return Err(BAD);
        }
        out.push(PciWindow {
            space,
            prefetchable: hi & (1 << 30) != 0,
            pci_addr,
            cpu_addr: PhysAddr::new(cpu_addr),
            size,
        })
        .map_err(|_| DtError::TooMany("PCI windows"))?;
    }
    Ok(out)
}

/// Decodes an `iommu-map`/`msi-map` of 4-cell entries (`#iommu-cells` and
/// `#msi-cells` are 1 for the SMMUv3 and the ITS).
fn id_map(node: FdtNode<'_, '_>, name: &'static str, mask: &'static str) -> Result<IdMap, DtError> {
    let mut map = IdMap {
        entries: BoundedVec::new(),
        mask: one_u32(node, mask)?.unwrap_or(u32::MAX),
    };
    let raw = prop(node, name).unwrap_or(&[]);
    if !raw.len().is_multiple_of(16) {
        return Err(DtError::BadProperty(name));
    }
    for entry in raw.chunks_exact(16) {
        let mut c = cells(entry);
        let mut next = || c.next().ok_or(DtError::BadProperty(name));
        let e = IdMapEntry {
            rid_base: next()?,
            phandle: next()?,
            out_base: next()?,
            length: next()?,
        };
        map.entries
            .push(e)
            .map_err(|_| DtError::TooMany("ID map entries"))?;
    }
    Ok(map)
}

#[cfg(test)]
mod tests;

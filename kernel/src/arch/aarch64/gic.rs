//! GICv3 driver: distributor, this CPU's redistributor and CPU interface
//! [GICv3 IHI 0069]. Owns interrupt configuration and acknowledge/EOI. All
//! interrupts are non-secure group 1 IRQs routed to this CPU. Must never
//! enable an INTID nobody handles.

use abi::PhysAddr;
use hermit_sync::OnceCell;

use super::Affinity;
use super::gic_sysreg as icc;
use crate::mmio::{Mmio, Reg};
use ::mmio::TimedOut;

use crate::timeout::{Counter, poll_until};

/// Distributor registers [GICv3 §12.9].
mod gicd {
    use super::Reg;
    pub const CTLR: Reg<u32> = Reg::at(0x0000);
    pub const TYPER: Reg<u32> = Reg::at(0x0004);
    pub const IIDR: Reg<u32> = Reg::at(0x0008);
    pub const IGROUPR: Reg<u32> = Reg::at(0x0080);
    pub const ISENABLER: Reg<u32> = Reg::at(0x0100);
    pub const ICENABLER: Reg<u32> = Reg::at(0x0180);
    pub const IPRIORITYR: Reg<u8> = Reg::at(0x0400);
    pub const ICFGR: Reg<u32> = Reg::at(0x0c00);
    pub const IROUTER: Reg<u64> = Reg::at(0x6000);
    /// CTLR: EnableGrp1 (NS view) / EnableGrp0 (single security state).
    pub const CTLR_ENABLE_G1: u32 = 1 << 0;
    /// CTLR: EnableGrp1A (NS view) / EnableGrp1 (single security state).
    pub const CTLR_ENABLE_G1A: u32 = 1 << 1;
    /// CTLR: affinity routing enable.
    pub const CTLR_ARE_NS: u32 = 1 << 4;
    /// CTLR: disable security (single security state).
    pub const CTLR_DS: u32 = 1 << 6;
    /// CTLR: register write pending.
    pub const CTLR_RWP: u32 = 1 << 31;
}

/// Redistributor registers, RD_base frame [GICv3 §12.10].
mod gicr {
    use super::Reg;
    pub const TYPER: Reg<u64> = Reg::at(0x0008);
    pub const WAKER: Reg<u32> = Reg::at(0x0014);
    pub const TYPER_LAST: u64 = 1 << 4;
    pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
    pub const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
    /// One redistributor: RD_base and SGI_base frames, 64 KiB each.
    pub const STRIDE: usize = 0x2_0000;
    /// SGI_base frame offset.
    pub const SGI_BASE: usize = 0x1_0000;
    // SGI_base frame registers.
    pub const IGROUPR0: Reg<u32> = Reg::at(0x0080);
    pub const ISENABLER0: Reg<u32> = Reg::at(0x0100);
    pub const ICENABLER0: Reg<u32> = Reg::at(0x0180);
    pub const IPRIORITYR: Reg<u8> = Reg::at(0x0400);
    pub const ICFGR1: Reg<u32> = Reg::at(0x0c04);
}

/// Priority given to every enabled interrupt (lower is more urgent).
const DEFAULT_PRIORITY: u8 = 0xa0;
/// INTIDs at or above this value from IAR are special (1020..1023).
const INTID_SPECIAL: u32 = 1020;

/// What the boot report says about the GIC.
#[derive(Clone, Copy, Debug)]
pub struct GicInfo {
    /// Number of SPI INTIDs the distributor supports (ITLinesNumber).
    pub lines: u32,
    /// GICD_IIDR.
    pub iidr: u32,
    /// Single security state (GICD_CTLR.DS).
    pub single_security_state: bool,
    /// Physical address of this CPU's redistributor.
    pub redistributor: PhysAddr,
}

struct Gic {
    gicd: Mmio,
    sgi: Mmio,
    lines: u32,
    aff: Affinity,
}

static GIC: OnceCell<Gic> = OnceCell::new();

/// Errors bringing the GIC up.
#[derive(Clone, Copy, Debug)]
pub enum GicError {
    /// The platform describes no GIC.
    Missing,
    /// No redistributor matches this CPU's affinity.
    NoRedistributor,
    /// A register never acknowledged within its timeout.
    Timeout(&'static str),
}

impl From<(TimedOut, &'static str)> for GicError {
    fn from((_, what): (TimedOut, &'static str)) -> Self {
        GicError::Timeout(what)
    }
}

/// Brings up the distributor, this CPU's redistributor and CPU interface.
pub fn init(
    gicd_base: PhysAddr,
    gicr_base: PhysAddr,
    gicr_len: usize,
    aff: Affinity,
) -> Result<GicInfo, GicError> {
    let gicd = Mmio::new(gicd_base, 0x1_0000);
    // Distributor off while configuring, then affinity routing + group 1.
    gicd.write(gicd::CTLR, 0);
    wait_rwp(&gicd)?;
    let lines = 32 * ((gicd.read(gicd::TYPER) & 0x1f) + 1);
    gicd.write(
        gicd::CTLR,
        gicd::CTLR_ARE_NS | gicd::CTLR_ENABLE_G1 | gicd::CTLR_ENABLE_G1A,
    );
    wait_rwp(&gicd)?;
    let single_security_state = gicd.read(gicd::CTLR) & gicd::CTLR_DS != 0;

    // Find this CPU's redistributor by affinity.
    let all = Mmio::new(gicr_base, gicr_len);
    let mut found = None;
    let mut off = 0;
    while off + gicr::STRIDE <= gicr_len {
        let frame = all.sub(off, gicr::STRIDE);
        let typer = frame.read(gicr::TYPER);
        if typer >> 32 == aff.gicr_typer() {
            found = Some(frame);
            break;
        }
        if typer & gicr::TYPER_LAST != 0 {
            break;
        }
        off += gicr::STRIDE;
    }
    let frame = found.ok_or(GicError::NoRedistributor)?;
    let rd = frame.sub(0, gicr::SGI_BASE);
    let sgi = frame.sub(gicr::SGI_BASE, gicr::SGI_BASE);

    // Wake the redistributor.
    rd.modify(gicr::WAKER, |w| w & !gicr::WAKER_PROCESSOR_SLEEP);
    poll_until(&mut Counter, 1_000, || {
        (rd.read(gicr::WAKER) & gicr::WAKER_CHILDREN_ASLEEP == 0).then_some(())
    })
    .map_err(|e| (e, "GICR_WAKER.ChildrenAsleep"))?;

    // All SGIs/PPIs: group 1, disabled, default priority.
    sgi.write(gicr::ICENABLER0, u32::MAX);
    sgi.write(gicr::IGROUPR0, u32::MAX);
    for i in 0..32 {
        sgi.write(gicr::IPRIORITYR.index(i, 1), DEFAULT_PRIORITY);
    }
    // All SPIs: group 1, disabled.
    for n in 1..(lines as usize / 32) {
        gicd.write(gicd::ICENABLER.index(n, 4), u32::MAX);
        gicd.write(gicd::IGROUPR.index(n, 4), u32::MAX);
    }
    wait_rwp(&gicd)?;

    // CPU interface: system registers, all priorities, group 1 on.
    icc::write_sre(icc::read_sre() | 1);
    icc::write_pmr(0xff);
    icc::write_bpr1(0);
    icc::write_igrpen1(1);

    let info = GicInfo {
        lines,
        iidr: gicd.read(gicd::IIDR),
        single_security_state,
        redistributor: rd.phys(),
    };
    let _ = GIC.set(Gic {
        gicd,
        sgi,
        lines,
        aff,
    });
    Ok(info)
}

fn wait_rwp(gicd: &Mmio) -> Result<(), GicError> {
    poll_until(&mut Counter, 1_000, || {
        (gicd.read(gicd::CTLR) & gicd::CTLR_RWP == 0).then_some(())
    })
    .map_err(|e| (e, "GICD_CTLR.RWP").into())
}

fn gic() -> &'static Gic {
    GIC.get().expect("GIC used before gic::init")
}

/// Enables a level-sensitive PPI (INTID 16..31, e.g. a timer) on this CPU.
pub fn enable_ppi(intid: u32) {
    assert!((16..32).contains(&intid), "INTID {intid} is not a PPI");
    let g = gic();
    let bit = (intid - 16) * 2 + 1;
    g.sgi.modify(gicr::ICFGR1, |v| v & !(1 << bit));
    g.sgi.write(gicr::ISENABLER0, 1 << intid);
}

/// An interrupt's trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Edge-triggered.
    Edge,
    /// Level-sensitive.
    Level,
}

/// Whether `intid` is an SPI this distributor implements.
pub fn is_spi(intid: u32) -> bool {
    intid >= 32 && intid < gic().lines
}

/// Configures an SPI (INTID 32..) with `trigger`, routed to this CPU, and
/// enables it.
pub fn enable_spi(intid: u32, trigger: Trigger) {
    let g = gic();
    assert!(is_spi(intid), "INTID {intid} is not an SPI here");
    let n = intid as usize;
    let bit = (n % 16) * 2 + 1;
    g.gicd
        .modify(gicd::ICFGR.index(n / 16, 4), |v| match trigger {
            Trigger::Edge => v | (1 << bit),
            Trigger::Level => v & !(1 << bit),
        });
    g.gicd.write(gicd::IPRIORITYR.index(n, 1), DEFAULT_PRIORITY);
    g.gicd.write(gicd::IROUTER.index(n, 8), g.aff.irouter());
    g.gicd
        .write(gicd::ISENABLER.index(n / 32, 4), 1 << (n % 32));
}

/// Masks an SPI (until [`unmask_spi`]).
pub fn mask_spi(intid: u32) {
    let n = intid as usize;
    gic()
        .gicd
        .write(gicd::ICENABLER.index(n / 32, 4), 1 << (n % 32));
}

/// Unmasks an SPI configured by [`enable_spi`].
pub fn unmask_spi(intid: u32) {
    let n = intid as usize;
    gic()
        .gicd
        .write(gicd::ISENABLER.index(n / 32, 4), 1 << (n % 32));
}

/// Acknowledges the highest-priority pending interrupt, if any.
pub fn acknowledge() -> Option<u32> {
    let intid = (icc::read_iar1() & 0xff_ffff) as u32;
    (intid < INTID_SPECIAL).then_some(intid)
}

/// Signals the end of handling `intid`.
pub fn end_of_interrupt(intid: u32) {
    icc::write_eoir1(intid as u64);
}

//! The local APIC in xAPIC mode (memory-mapped at IA32_APIC_BASE; QEMU 7.2
//! under TCG offers no x2APIC) and the legacy 8259 PICs, which are only
//! masked [Intel SDM Vol. 3A, 11.4 "Local APIC", 11.5.4 "APIC Timer"].
//! Owns the APIC's registers: the spurious vector, the timer's LVT, divide
//! and counts, EOI. Must never unmask a vector nobody handles.

use abi::PhysAddr;
use hermit_sync::OnceCell;
use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

use crate::mmio::{Mmio, Reg};

/// IA32_APIC_BASE.
const IA32_APIC_BASE: u32 = 0x1b;
/// IA32_APIC_BASE: the APIC's global enable.
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;
/// The register block's size.
pub const MMIO_SIZE: usize = 0x1000;

/// Local APIC registers [SDM Vol. 3A, Table 11-1].
mod regs {
    use super::Reg;
    pub const ID: Reg<u32> = Reg::at(0x020);
    pub const VERSION: Reg<u32> = Reg::at(0x030);
    pub const EOI: Reg<u32> = Reg::at(0x0b0);
    pub const ICR_LOW: Reg<u32> = Reg::at(0x300);
    pub const ICR_HIGH: Reg<u32> = Reg::at(0x310);
    /// ICR: destination shorthand "self", fixed delivery.
    pub const ICR_SELF: u32 = 0b01 << 18;
    pub const SVR: Reg<u32> = Reg::at(0x0f0);
    pub const LVT_TIMER: Reg<u32> = Reg::at(0x320);
    pub const TIMER_INITIAL: Reg<u32> = Reg::at(0x380);
    pub const TIMER_CURRENT: Reg<u32> = Reg::at(0x390);
    pub const TIMER_DIVIDE: Reg<u32> = Reg::at(0x3e0);
    /// SVR: APIC software enable.
    pub const SVR_ENABLE: u32 = 1 << 8;
    /// LVT: masked.
    pub const LVT_MASKED: u32 = 1 << 16;
    /// Divide configuration 0b1011: divide by 1.
    pub const DIVIDE_BY_1: u32 = 0b1011;
}

/// The timer's vector (vectors.S has its stub).
pub const TIMER_VECTOR: u8 = 32;
/// The spurious-interrupt vector (never acknowledged with an EOI).
pub const SPURIOUS_VECTOR: u8 = 255;

static APIC: OnceCell<Mmio> = OnceCell::new();

/// The APIC's physical base (IA32_APIC_BASE[51:12]).
pub fn base() -> PhysAddr {
    // SAFETY: reading IA32_APIC_BASE has no side effects; every x86_64
    // CPU has it.
    let v = unsafe { Msr::new(IA32_APIC_BASE).read() };
    PhysAddr::new(v & 0x000f_ffff_ffff_f000)
}

/// Masks both 8259 PICs: their lines would otherwise arrive on vectors the
/// firmware chose, which overlap the CPU's exceptions.
pub fn mask_legacy_pics() {
    // SAFETY: OCW1 (interrupt mask) writes to the master (0x21) and slave
    // (0xa1) PICs only mask their lines.
    unsafe {
        Port::<u8>::new(0x21).write(0xff);
        Port::<u8>::new(0xa1).write(0xff);
    }
}

/// Enables the local APIC (its registers mapped by the kernel map) with the
/// spurious vector and the timer masked. Returns (APIC ID, version).
pub fn init() -> (u32, u32) {
    let mut msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: setting the global enable bit of IA32_APIC_BASE keeps the base
    // where it is and only turns the local APIC on (the state after reset
    // on QEMU already).
    unsafe {
        let v = msr.read();
        msr.write(v | APIC_GLOBAL_ENABLE);
    }
    let apic = APIC.get_or_init(|| Mmio::new(base(), MMIO_SIZE));
    apic.write(regs::LVT_TIMER, regs::LVT_MASKED | u32::from(TIMER_VECTOR));
    apic.write(regs::TIMER_DIVIDE, regs::DIVIDE_BY_1);
    apic.write(regs::SVR, regs::SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
    (apic.read(regs::ID) >> 24, apic.read(regs::VERSION) & 0xff)
}

fn apic() -> &'static Mmio {
    APIC.get().expect("apic::init ran")
}

/// Arms the one-shot timer `count` APIC timer ticks from now (0 stops it).
pub fn one_shot(count: u32) {
    let a = apic();
    a.write(regs::LVT_TIMER, u32::from(TIMER_VECTOR));
    a.write(regs::TIMER_INITIAL, count);
}

/// The timer's current count.
pub fn current_count() -> u32 {
    apic().read(regs::TIMER_CURRENT)
}

/// Ends the interrupt being handled.
pub fn end_of_interrupt() {
    apic().write(regs::EOI, 0);
}

/// This CPU's local APIC ID (the destination MSI messages name).
pub fn id() -> u32 {
    apic().read(regs::ID) >> 24
}

/// Raises `vector` on this CPU (a fixed self-IPI); it is taken when
/// interrupts are next enabled.
pub fn send_self(vector: u8) {
    let a = apic();
    a.write(regs::ICR_HIGH, 0);
    a.write(regs::ICR_LOW, regs::ICR_SELF | u32::from(vector));
}

//! GICv3 CPU-interface system registers (ICC_*_EL1), which `aarch64-cpu`
//! does not name. Only typed single-register reads and writes; the GIC
//! driver (crate::gic) decides what to write.

macro_rules! icc_read {
    ($(#[$m:meta])* $name:ident, $enc:literal) => {
        $(#[$m])*
        pub fn $name() -> u64 {
            let v: u64;
            // SAFETY: reading a GICv3 CPU-interface register only has the
            // architected effect of that register (for ICC_IAR1_EL1, the
            // acknowledge the caller asks for); EL1 access is enabled by
            // ICC_SRE_EL1.SRE (set at EL2 by boot code, or at reset).
            unsafe { core::arch::asm!(concat!("mrs {}, ", $enc), out(reg) v, options(nomem, nostack)) };
            v
        }
    };
}

macro_rules! icc_write {
    ($(#[$m:meta])* $name:ident, $enc:literal) => {
        $(#[$m])*
        pub fn $name(v: u64) {
            // SAFETY: the CPU-interface registers only affect interrupt
            // delivery to this CPU, which the GIC driver owns.
            unsafe { core::arch::asm!(concat!("msr ", $enc, ", {}"), "isb", in(reg) v, options(nomem, nostack)) };
        }
    };
}

icc_read!(/// ICC_SRE_EL1: system-register interface enable.
    read_sre, "S3_0_C12_C12_5");
icc_write!(/// ICC_SRE_EL1.
    write_sre, "S3_0_C12_C12_5");
icc_write!(/// ICC_PMR_EL1: priority mask.
    write_pmr, "S3_0_C4_C6_0");
icc_write!(/// ICC_BPR1_EL1: binary point.
    write_bpr1, "S3_0_C12_C12_3");
icc_write!(/// ICC_IGRPEN1_EL1: group 1 interrupt enable.
    write_igrpen1, "S3_0_C12_C12_7");
icc_read!(/// ICC_IAR1_EL1: acknowledge the highest-priority pending group 1 IRQ.
    read_iar1, "S3_0_C12_C12_0");
icc_write!(/// ICC_EOIR1_EL1: end of interrupt.
    write_eoir1, "S3_0_C12_C12_1");

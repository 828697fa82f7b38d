//! Decoding of the Exception Syndrome Register (ESR_EL1/ESR_EL2) into a
//! printable fault description [Arm ARM DDI 0487, D24.2.40 "ESR_EL1"].
//!
//! It owns the syndrome encodings only: it never reads system registers
//! (the kernel passes ESR and FAR in), never decides what to do about a
//! fault, and decodes every 64-bit value without panicking.

use core::fmt;

/// The exception class, ESR bits 31:26.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExceptionClass {
    /// 0x00: unknown reason, e.g. an undefined instruction.
    Unknown,
    /// 0x01: trapped WFI or WFE.
    Wfx,
    /// 0x07: access to SVE, Advanced SIMD or floating point trapped (CPACR_EL1.FPEN).
    FpAccess,
    /// 0x0e: illegal execution state (PSTATE.IL).
    IllegalState,
    /// 0x11: SVC from AArch32.
    Svc32,
    /// 0x15: SVC from AArch64.
    Svc64,
    /// 0x16: HVC from AArch64.
    Hvc64,
    /// 0x17: SMC from AArch64.
    Smc64,
    /// 0x18: trapped MSR, MRS or system instruction.
    SysReg,
    /// 0x19: SVE access trapped.
    SveAccess,
    /// 0x20: instruction abort from a lower exception level.
    InstrAbortLower,
    /// 0x21: instruction abort taken without a change of level.
    InstrAbortSame,
    /// 0x22: PC alignment fault.
    PcAlignment,
    /// 0x24: data abort from a lower exception level.
    DataAbortLower,
    /// 0x25: data abort taken without a change of level.
    DataAbortSame,
    /// 0x26: SP alignment fault.
    SpAlignment,
    /// 0x2c: trapped floating-point exception (AArch64).
    FpException,
    /// 0x2f: SError interrupt.
    SError,
    /// 0x30: breakpoint from a lower exception level.
    BreakpointLower,
    /// 0x31: breakpoint taken without a change of level.
    BreakpointSame,
    /// 0x32: software step from a lower exception level.
    StepLower,
    /// 0x33: software step taken without a change of level.
    StepSame,
    /// 0x34: watchpoint from a lower exception level.
    WatchpointLower,
    /// 0x35: watchpoint taken without a change of level.
    WatchpointSame,
    /// 0x3c: BRK instruction (AArch64).
    Brk,
    /// Any other class, by number.
    Other(u8),
}

impl ExceptionClass {
    /// Decodes the 6-bit class field.
    pub const fn from_bits(ec: u8) -> Self {
        match ec & 0x3f {
            0x00 => Self::Unknown,
            0x01 => Self::Wfx,
            0x07 => Self::FpAccess,
            0x0e => Self::IllegalState,
            0x11 => Self::Svc32,
            0x15 => Self::Svc64,
            0x16 => Self::Hvc64,
            0x17 => Self::Smc64,
            0x18 => Self::SysReg,
            0x19 => Self::SveAccess,
            0x20 => Self::InstrAbortLower,
            0x21 => Self::InstrAbortSame,
            0x22 => Self::PcAlignment,
            0x24 => Self::DataAbortLower,
            0x25 => Self::DataAbortSame,
            0x26 => Self::SpAlignment,
            0x2c => Self::FpException,
            0x2f => Self::SError,
            0x30 => Self::BreakpointLower,
            0x31 => Self::BreakpointSame,
            0x32 => Self::StepLower,
            0x33 => Self::StepSame,
            0x34 => Self::WatchpointLower,
            0x35 => Self::WatchpointSame,
            0x3c => Self::Brk,
            other => Self::Other(other),
        }
    }

    /// A short human name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown reason / undefined instruction",
            Self::Wfx => "trapped WFI/WFE",
            Self::FpAccess => "FP/SIMD access trap",
            Self::IllegalState => "illegal execution state",
            Self::Svc32 => "SVC (AArch32)",
            Self::Svc64 => "SVC",
            Self::Hvc64 => "HVC",
            Self::Smc64 => "SMC",
            Self::SysReg => "trapped MSR/MRS/system instruction",
            Self::SveAccess => "SVE access trap",
            Self::InstrAbortLower => "instruction abort from lower EL",
            Self::InstrAbortSame => "instruction abort from same EL",
            Self::PcAlignment => "PC alignment fault",
            Self::DataAbortLower => "data abort from lower EL",
            Self::DataAbortSame => "data abort from same EL",
            Self::SpAlignment => "SP alignment fault",
            Self::FpException => "floating-point exception",
            Self::SError => "SError",
            Self::BreakpointLower => "breakpoint from lower EL",
            Self::BreakpointSame => "breakpoint from same EL",
            Self::StepLower => "software step from lower EL",
            Self::StepSame => "software step from same EL",
            Self::WatchpointLower => "watchpoint from lower EL",
            Self::WatchpointSame => "watchpoint from same EL",
            Self::Brk => "BRK instruction",
            Self::Other(_) => "other exception class",
        }
    }

    /// Whether FAR_ELx is meaningful for this class (subject to FnV for
    /// aborts).
    pub const fn sets_far(self) -> bool {
        matches!(
            self,
            Self::InstrAbortLower
                | Self::InstrAbortSame
                | Self::DataAbortLower
                | Self::DataAbortSame
                | Self::PcAlignment
                | Self::WatchpointLower
                | Self::WatchpointSame
        )
    }
}

/// The fault status code of an abort (DFSC/IFSC, ISS bits 5:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultStatus {
    /// Address size fault at a translation level (0..=3).
    AddressSize(u8),
    /// Translation fault at a level: no valid descriptor.
    Translation(u8),
    /// Access flag fault at a level.
    AccessFlag(u8),
    /// Permission fault at a level.
    Permission(u8),
    /// Synchronous external abort, not on a table walk.
    SyncExternal,
    /// Synchronous tag check fault (MTE).
    TagCheck,
    /// Synchronous external abort on a table walk at a level.
    SyncExternalOnWalk(u8),
    /// Synchronous parity or ECC error, not on a table walk.
    SyncParity,
    /// Synchronous parity or ECC error on a table walk at a level.
    SyncParityOnWalk(u8),
    /// Alignment fault.
    Alignment,
    /// TLB conflict abort.
    TlbConflict,
    /// Unsupported atomic hardware update.
    UnsupportedAtomicUpdate,
    /// Unsupported exclusive or atomic access.
    UnsupportedExclusive,
    /// Any other code.
    Other(u8),
}

impl FaultStatus {
    /// Decodes a 6-bit fault status code.
    pub const fn from_bits(fsc: u8) -> Self {
        let level = fsc & 3;
        match fsc & 0x3f {
            0x00..=0x03 => Self::AddressSize(level),
            0x04..=0x07 => Self::Translation(level),
            0x08..=0x0b => Self::AccessFlag(level),
            0x0c..=0x0f => Self::Permission(level),
            0x10 => Self::SyncExternal,
            0x11 => Self::TagCheck,
            0x14..=0x17 => Self::SyncExternalOnWalk(level),
            0x18 => Self::SyncParity,
            0x1c..=0x1f => Self::SyncParityOnWalk(level),
            0x21 => Self::Alignment,
            0x30 => Self::TlbConflict,
            0x31 => Self::UnsupportedAtomicUpdate,
            0x35 => Self::UnsupportedExclusive,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for FaultStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddressSize(l) => write!(f, "address size fault, level {l}"),
            Self::Translation(l) => write!(f, "translation fault, level {l}"),
            Self::AccessFlag(l) => write!(f, "access flag fault, level {l}"),
            Self::Permission(l) => write!(f, "permission fault, level {l}"),
            Self::SyncExternal => f.write_str("synchronous external abort"),
            Self::TagCheck => f.write_str("tag check fault"),
            Self::SyncExternalOnWalk(l) => {
                write!(f, "synchronous external abort on table walk, level {l}")
            }
            Self::SyncParity => f.write_str("synchronous parity/ECC error"),
            Self::SyncParityOnWalk(l) => {
                write!(f, "synchronous parity/ECC error on table walk, level {l}")
            }
            Self::Alignment => f.write_str("alignment fault"),
            Self::TlbConflict => f.write_str("TLB conflict abort"),
            Self::UnsupportedAtomicUpdate => f.write_str("unsupported atomic hardware update"),
            Self::UnsupportedExclusive => f.write_str("unsupported exclusive/atomic access"),
            Self::Other(c) => write!(f, "fault status {c:#04x}"),
        }
    }
}

/// The ISS of an instruction or data abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abort {
    /// DFSC or IFSC.
    pub status: FaultStatus,
    /// WnR: the faulting access was a write (data aborts only).
    pub write: bool,
    /// FnV = 0: FAR holds the faulting address.
    pub far_valid: bool,
    /// ISV: `access` below is valid (data aborts only).
    pub isv: bool,
    /// The access, when ISV is set: (log2 of bytes, sign-extend, register
    /// Xt/Wt number, 64-bit register).
    pub access: Option<(u8, bool, u8, bool)>,
    /// S1PTW: the fault happened on a stage-2 access during a stage-1 walk.
    pub s1ptw: bool,
    /// CM: a cache-maintenance or address-translation instruction faulted.
    pub cache_maintenance: bool,
    /// EA: external abort type (implementation defined).
    pub external: bool,
}

/// Class-specific detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// An instruction or data abort.
    Abort(Abort),
    /// SVC, HVC or SMC: the instruction's immediate.
    Call(u16),
    /// BRK: its comment.
    Brk(u16),
    /// A trapped system-register access.
    SysReg {
        /// op0, op1, CRn, CRm, op2.
        encoding: (u8, u8, u8, u8, u8),
        /// The general-purpose register.
        rt: u8,
        /// MRS (read) rather than MSR (write).
        read: bool,
    },
    /// WFI (false) or WFE (true).
    Wfx(bool),
    /// Nothing further decoded.
    None,
}

/// The name the kernel's trap path uses: `Esr::new(esr)` displays the
/// decoded syndrome.
pub type Esr = Fault;

/// A decoded ESR value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// The raw syndrome.
    pub esr: u64,
    /// Exception class.
    pub class: ExceptionClass,
    /// IL: the trapped instruction was 32 bits (else 16).
    pub il32: bool,
    /// The raw ISS (bits 24:0).
    pub iss: u32,
    /// Class-specific detail.
    pub detail: Detail,
}

impl Fault {
    /// Decodes `esr`.
    pub fn decode(esr: u64) -> Self {
        let class = ExceptionClass::from_bits((esr >> 26) as u8);
        let iss = (esr & 0x1ff_ffff) as u32;
        let bit = |n: u32| iss & (1 << n) != 0;
        let detail = match class {
            ExceptionClass::InstrAbortLower
            | ExceptionClass::InstrAbortSame
            | ExceptionClass::DataAbortLower
            | ExceptionClass::DataAbortSame => {
                let data = matches!(
                    class,
                    ExceptionClass::DataAbortLower | ExceptionClass::DataAbortSame
                );
                let isv = data && bit(24);
                Detail::Abort(Abort {
                    status: FaultStatus::from_bits((iss & 0x3f) as u8),
                    write: data && bit(6),
                    far_valid: !bit(10),
                    isv,
                    access: if isv {
                        Some((
                            ((iss >> 22) & 3) as u8,
                            bit(21),
                            ((iss >> 16) & 0x1f) as u8,
                            bit(15),
                        ))
                    } else {
                        None
                    },
                    s1ptw: bit(7),
                    cache_maintenance: data && bit(8),
                    external: bit(9),
                })
            }
            ExceptionClass::Svc32
            | ExceptionClass::Svc64
            | ExceptionClass::Hvc64
            | ExceptionClass::Smc64 => Detail::Call(iss as u16),
            ExceptionClass::Brk => Detail::Brk(iss as u16),
            ExceptionClass::SysReg => Detail::SysReg {
                encoding: (
                    ((iss >> 20) & 3) as u8,
                    ((iss >> 14) & 7) as u8,
                    ((iss >> 10) & 0xf) as u8,
                    ((iss >> 1) & 0xf) as u8,
                    ((iss >> 17) & 7) as u8,
                ),
                rt: ((iss >> 5) & 0x1f) as u8,
                read: bit(0),
            },
            ExceptionClass::Wfx => Detail::Wfx(bit(0)),
            _ => Detail::None,
        };
        Self {
            esr,
            class,
            il32: esr & (1 << 25) != 0,
            iss,
            detail,
        }
    }

    /// Same as [`Fault::decode`].
    pub fn new(esr: u64) -> Self {
        Self::decode(esr)
    }

    /// Whether FAR_ELx holds the faulting address for this exception.
    pub fn far_valid(&self) -> bool {
        match self.detail {
            Detail::Abort(a) => a.far_valid,
            _ => self.class.sets_far(),
        }
    }

    /// Whether this is an instruction or data abort.
    pub const fn is_abort(&self) -> bool {
        matches!(self.detail, Detail::Abort(_))
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ESR {:#010x}: {}", self.esr, self.class.name())?;
        if let ExceptionClass::Other(ec) = self.class {
            write!(f, " {ec:#04x}")?;
        }
        match self.detail {
            Detail::Abort(a) => {
                write!(f, ": {}", a.status)?;
                if matches!(
                    self.class,
                    ExceptionClass::DataAbortLower | ExceptionClass::DataAbortSame
                ) {
                    f.write_str(if a.write { ", write" } else { ", read" })?;
                }
                if let Some((size, _, reg, _)) = a.access {
                    write!(f, ", {} bytes via x{reg}", 1u8 << size)?;
                }
                if a.s1ptw {
                    f.write_str(", on stage-1 walk")?;
                }
                if a.cache_maintenance {
                    f.write_str(", cache maintenance")?;
                }
                f.write_str(if a.far_valid {
                    "; FAR valid"
                } else {
                    "; FAR not valid (FnV)"
                })?;
            }
            Detail::Call(imm) => write!(f, " #{imm:#x}")?,
            Detail::Brk(imm) => write!(f, " #{imm:#x}")?,
            Detail::SysReg {
                encoding: (op0, op1, crn, crm, op2),
                rt,
                read,
            } => {
                if read {
                    write!(f, ": MRS x{rt}, S{op0}_{op1}_C{crn}_C{crm}_{op2}")?;
                } else {
                    write!(f, ": MSR S{op0}_{op1}_C{crn}_C{crm}_{op2}, x{rt}")?;
                }
            }
            Detail::Wfx(wfe) => f.write_str(if wfe { ": WFE" } else { ": WFI" })?,
            Detail::None => {
                if self.class.sets_far() {
                    f.write_str("; FAR valid")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_abort_translation_level1_write() {
        let f = Fault::decode(0x9600_0045);
        assert_eq!(f.class, ExceptionClass::DataAbortSame);
        assert!(f.il32);
        let Detail::Abort(a) = f.detail else {
            panic!("abort expected")
        };
        assert_eq!(a.status, FaultStatus::Translation(1));
        assert!(a.write && a.far_valid && !a.isv);
        assert!(f.far_valid());
        assert_eq!(
            f.to_string(),
            "ESR 0x96000045: data abort from same EL: translation fault, level 1, write; FAR valid"
        );
    }

    #[test]
    fn undefined_instruction() {
        let f = Fault::decode(0x0200_0000);
        assert_eq!(f.class, ExceptionClass::Unknown);
        assert_eq!(f.detail, Detail::None);
        assert!(!f.far_valid());
        assert_eq!(
            f.to_string(),
            "ESR 0x02000000: unknown reason / undefined instruction"
        );
    }

    #[test]
    fn svc_zero() {
        let f = Fault::decode(0x5600_0000);
        assert_eq!(f.class, ExceptionClass::Svc64);
        assert_eq!(f.detail, Detail::Call(0));
        assert_eq!(f.to_string(), "ESR 0x56000000: SVC #0x0");
        assert_eq!(Fault::decode(0x5a00_0002).class, ExceptionClass::Hvc64);
        assert_eq!(Fault::decode(0x5e00_0000).class, ExceptionClass::Smc64);
    }

    #[test]
    fn instruction_abort_permission_fnv() {
        // EC 0x20, IL, FnV, IFSC 0x0f (permission level 3).
        let f = Fault::decode(0x8200_040f);
        let Detail::Abort(a) = f.detail else {
            panic!("abort expected")
        };
        assert_eq!(f.class, ExceptionClass::InstrAbortLower);
        assert_eq!(a.status, FaultStatus::Permission(3));
        assert!(!a.write);
        assert!(!f.far_valid());
        assert!(
            f.to_string()
                .ends_with("permission fault, level 3; FAR not valid (FnV)")
        );
    }

    #[test]
    fn data_abort_with_syndrome_and_other_codes() {
        // EC 0x24, ISV, SAS=2 (4 bytes), SRT=3, access flag level 3, read.
        let f = Fault::decode(0x9382_000b);
        let Detail::Abort(a) = f.detail else {
            panic!("abort expected")
        };
        assert_eq!(a.access, Some((2, false, 2, false)));
        assert_eq!(a.status, FaultStatus::AccessFlag(3));
        assert!(f.to_string().contains("read, 4 bytes via x2"));
        assert_eq!(FaultStatus::from_bits(0x21), FaultStatus::Alignment);
        assert_eq!(FaultStatus::from_bits(0x10), FaultStatus::SyncExternal);
        assert_eq!(
            FaultStatus::from_bits(0x15),
            FaultStatus::SyncExternalOnWalk(1)
        );
        assert_eq!(FaultStatus::from_bits(0x30), FaultStatus::TlbConflict);
        assert_eq!(FaultStatus::from_bits(0x00), FaultStatus::AddressSize(0));
        assert_eq!(FaultStatus::from_bits(0x3f), FaultStatus::Other(0x3f));
    }

    #[test]
    fn other_classes() {
        assert_eq!(Fault::decode(0x1fe0_0000).class, ExceptionClass::FpAccess);
        assert_eq!(Fault::decode(0xf200_0001).detail, Detail::Brk(1));
        assert_eq!(Fault::decode(0xbe00_0000).class, ExceptionClass::SError);
        assert_eq!(
            Fault::decode(0x8a00_0000).class,
            ExceptionClass::PcAlignment
        );
        assert!(Fault::decode(0x8a00_0000).far_valid());
        assert_eq!(
            Fault::decode(0x9a00_0000).class,
            ExceptionClass::SpAlignment
        );
        // MRS x1, S3_0_C0_C0_5 (MPIDR_EL1) trapped: op0=3 op2=5 op1=0 CRn=0 Rt=1 CRm=0 read.
        let iss = 3 << 20 | 5 << 17 | 1 << 5 | 1;
        let f = Fault::decode(0x6200_0000 | iss);
        assert_eq!(
            f.to_string(),
            "ESR 0x623a0021: trapped MSR/MRS/system instruction: MRS x1, S3_0_C0_C0_5"
        );
        assert_eq!(Fault::decode(0x0600_0001).detail, Detail::Wfx(true));
        let f = Fault::decode(0xfc00_0000);
        assert_eq!(f.class, ExceptionClass::Other(0x3f));
        assert!(f.to_string().contains("other exception class 0x3f"));
        let _ = Fault::decode(u64::MAX).to_string();
    }
}

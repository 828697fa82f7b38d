//! SMMUv3 programming-interface registers: offsets and widths of the
//! Non-secure registers in pages 0 and 1, and pure encoders/decoders for
//! their fields [SMMUv3 §6.2, §6.3]. Registers are the shared
//! [`mmio::Reg`] declarations (offset, width, name). No accesses happen
//! here; a hardware layer performs one volatile access of the stated width
//! per register.

use core::fmt;
use core::ops::{BitOr, BitOrAssign};

use abi::PhysAddr;
pub use mmio::Reg;

use crate::bits::{fits_addr, get, set, set_bit};
use crate::ste::Split;
use crate::{Error, Shareability};

/// Offset of register page 1 (EVENTQ/PRIQ PROD and CONS) from the SMMU's
/// base [SMMUv3 §6.2].
pub const PAGE1: usize = 0x1_0000;

/// Any register, with its width, for listings such as a register dump.
/// Each is a [`Reg`] named after the architecture (without `SMMU_`), its
/// offset from the SMMU's base address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register {
    /// A 32-bit register.
    R32(Reg<u32>),
    /// A 64-bit register.
    R64(Reg<u64>),
}

macro_rules! registers {
    ($($(#[$m:meta])* $name:ident : $ty:ident = $off:expr;)*) => {
        $( $(#[$m])* pub const $name: Reg<$ty> = Reg::named($off, stringify!($name)); )*
        /// Every register named in this module, in offset order.
        pub const ALL: &[Register] = &[$(registers!(@wrap $ty $name)),*];
    };
    (@wrap u32 $name:ident) => { Register::R32($name) };
    (@wrap u64 $name:ident) => { Register::R64($name) };
}

registers! {
    /// ID register 0: stages, formats, coherency, ASID/VMID size [SMMUv3 §6.3.1].
    IDR0: u32 = 0x00;
    /// ID register 1: queue and table sizes, StreamID/SubstreamID size [SMMUv3 §6.3.2].
    IDR1: u32 = 0x04;
    /// ID register 2: VATOS page offset [SMMUv3 §6.3.3].
    IDR2: u32 = 0x08;
    /// ID register 3: RIL, BBML and other v3.1+ features [SMMUv3 §6.3.4].
    IDR3: u32 = 0x0C;
    /// ID register 4: IMPLEMENTATION DEFINED [SMMUv3 §6.3.5].
    IDR4: u32 = 0x10;
    /// ID register 5: OAS, granules, VAX [SMMUv3 §6.3.6].
    IDR5: u32 = 0x14;
    /// Implementation identification [SMMUv3 §6.3.7].
    IIDR: u32 = 0x18;
    /// Architecture version [SMMUv3 §6.3.8].
    AIDR: u32 = 0x1C;
    /// Global control: SMMUEN and queue enables [SMMUv3 §6.3.9].
    CR0: u32 = 0x20;
    /// Acknowledge of CR0 updates [SMMUv3 §6.3.10].
    CR0ACK: u32 = 0x24;
    /// Table and queue access attributes [SMMUv3 §6.3.11].
    CR1: u32 = 0x28;
    /// E2H, RECINVSID, PTM [SMMUv3 §6.3.12].
    CR2: u32 = 0x2C;
    /// Status (DORMANT) [SMMUv3 §6.3.13].
    STATUSR: u32 = 0x40;
    /// Global bypass attributes, used while SMMUEN == 0 [SMMUv3 §6.3.14].
    GBPA: u32 = 0x44;
    /// Alternate global bypass attributes [SMMUv3 §6.3.15].
    AGBPA: u32 = 0x48;
    /// Interrupt enables [SMMUv3 §6.3.16].
    IRQ_CTRL: u32 = 0x50;
    /// Acknowledge of IRQ_CTRL updates [SMMUv3 §6.3.18].
    IRQ_CTRLACK: u32 = 0x54;
    /// Global errors, toggled by the SMMU [SMMUv3 §6.3.19].
    GERROR: u32 = 0x60;
    /// Global error acknowledge, toggled by software [SMMUv3 §6.3.20].
    GERRORN: u32 = 0x64;
    /// GERROR MSI address [SMMUv3 §6.3.21].
    GERROR_IRQ_CFG0: u64 = 0x68;
    /// GERROR MSI data [SMMUv3 §6.3.22].
    GERROR_IRQ_CFG1: u32 = 0x70;
    /// GERROR MSI attributes [SMMUv3 §6.3.23].
    GERROR_IRQ_CFG2: u32 = 0x74;
    /// Stream table base [SMMUv3 §6.3.24].
    STRTAB_BASE: u64 = 0x80;
    /// Stream table format and size [SMMUv3 §6.3.25].
    STRTAB_BASE_CFG: u32 = 0x88;
    /// Command queue base and size [SMMUv3 §6.3.26].
    CMDQ_BASE: u64 = 0x90;
    /// Command queue producer index, written by software [SMMUv3 §6.3.27].
    CMDQ_PROD: u32 = 0x98;
    /// Command queue consumer index and error code [SMMUv3 §6.3.28].
    CMDQ_CONS: u32 = 0x9C;
    /// Event queue base and size [SMMUv3 §6.3.29].
    EVENTQ_BASE: u64 = 0xA0;
    /// Event queue MSI address [SMMUv3 §6.3.30].
    EVENTQ_IRQ_CFG0: u64 = 0xB0;
    /// Event queue MSI data [SMMUv3 §6.3.31].
    EVENTQ_IRQ_CFG1: u32 = 0xB8;
    /// Event queue MSI attributes [SMMUv3 §6.3.32].
    EVENTQ_IRQ_CFG2: u32 = 0xBC;
    /// PRI queue base and size [SMMUv3 §6.3.33].
    PRIQ_BASE: u64 = 0xC0;
    /// PRI queue MSI address [SMMUv3 §6.3.34].
    PRIQ_IRQ_CFG0: u64 = 0xD0;
    /// PRI queue MSI data [SMMUv3 §6.3.35].
    PRIQ_IRQ_CFG1: u32 = 0xD8;
    /// PRI queue MSI attributes [SMMUv3 §6.3.36].
    PRIQ_IRQ_CFG2: u32 = 0xDC;
    /// Event queue producer index, in page 1 (written by the SMMU) [SMMUv3 §6.3.95].
    EVENTQ_PROD: u32 = PAGE1 + 0xA8;
    /// Event queue consumer index, in page 1 (written by software) [SMMUv3 §6.3.96].
    EVENTQ_CONS: u32 = PAGE1 + 0xAC;
    /// PRI queue producer index, in page 1 [SMMUv3 §6.3.97].
    PRIQ_PROD: u32 = PAGE1 + 0xC8;
    /// PRI queue consumer index, in page 1 [SMMUv3 §6.3.98].
    PRIQ_CONS: u32 = PAGE1 + 0xCC;
}

/// IDR0..IDR5 in order: what [`crate::idr::Features::decode`] takes.
pub const IDRS: [Reg<u32>; 6] = [IDR0, IDR1, IDR2, IDR3, IDR4, IDR5];

/// Size of the register frame a mapping must cover: pages 0 and 1
/// (QEMU's `virt` SMMU node is 0x20000 long) [SMMUv3 §6.2].
pub const FRAME_SIZE: usize = 2 * PAGE1;

// ---------------------------------------------------------------------------
// Single-bit flag registers.

macro_rules! flags32 {
    (
        $(#[$m:meta])* $name:ident {
            $( $(#[$fm:meta])* $flag:ident = $bit:expr; )*
        }
    ) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
        pub struct $name(u32);

        impl $name {
            $( $(#[$fm])* pub const $flag: Self = Self(1 << $bit); )*
            const NAMED: &'static [(Self, &'static str)] = &[$((Self::$flag, stringify!($flag))),*];
            /// Every named bit.
            pub const ALL: Self = Self(0 $(| (1 << $bit))*);

            /// No bit set.
            pub const fn empty() -> Self {
                Self(0)
            }
            /// From a register value; unnamed bits are kept so that a
            /// report can show them.
            pub const fn from_bits(v: u32) -> Self {
                Self(v)
            }
            /// The register value.
            pub const fn bits(self) -> u32 {
                self.0
            }
            /// Whether every bit of `other` is set in `self`.
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }
            /// Whether any bit of `other` is set in `self`.
            pub const fn intersects(self, other: Self) -> bool {
                self.0 & other.0 != 0
            }
            /// Whether no bit is set.
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }
            /// `self` with the bits of `other` set.
            pub const fn with(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }
            /// `self` with the bits of `other` cleared.
            pub const fn without(self, other: Self) -> Self {
                Self(self.0 & !other.0)
            }
        }

        impl BitOr for $name {
            type Output = Self;
            fn bitor(self, rhs: Self) -> Self {
                self.with(rhs)
            }
        }

        impl BitOrAssign for $name {
            fn bitor_assign(&mut self, rhs: Self) {
                *self = self.with(rhs);
            }
        }

        impl fmt::Display for $name {
            /// The names of the set bits, separated by spaces, then any
            /// unnamed bits in hex; `none` if empty.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.0 == 0 {
                    return f.write_str("none");
                }
                let mut first = true;
                for (flag, name) in Self::NAMED {
                    if self.contains(*flag) {
                        if !first {
                            f.write_str(" ")?;
                        }
                        f.write_str(name)?;
                        first = false;
                    }
                }
                let other = self.0 & !Self::ALL.0;
                if other != 0 {
                    if !first {
                        f.write_str(" ")?;
                    }
                    write!(f, "{other:#x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

flags32! {
    /// SMMU_CR0 / SMMU_CR0ACK enables [SMMUv3 §6.3.9, §6.3.10]. Software
    /// writes CR0 and waits until CR0ACK reads back the same value.
    Cr0 {
        /// Translation enable; with 0, traffic follows GBPA.
        SMMUEN = 0;
        /// PRI queue enable.
        PRIQEN = 1;
        /// Event queue enable.
        EVENTQEN = 2;
        /// Command queue enable.
        CMDQEN = 3;
        /// Check ATS Translated traffic against STE.EATS.
        ATSCHK = 4;
    }
}

flags32! {
    /// SMMU_CR2 [SMMUv3 §6.3.12].
    Cr2 {
        /// EL2-E2H translation regime for STE.STRW == EL2 streams.
        E2H = 0;
        /// Record C_BAD_STREAMID for out-of-range StreamIDs.
        RECINVSID = 1;
        /// Private TLB maintenance: ignore broadcast TLBI.
        PTM = 2;
        /// Record events for ATS Translation Requests (v3.2+).
        REC_CFG_ATS = 3;
    }
}

flags32! {
    /// SMMU_IRQ_CTRL / SMMU_IRQ_CTRLACK interrupt enables [SMMUv3 §6.3.16].
    IrqCtrl {
        /// Global error interrupt.
        GERROR_IRQEN = 0;
        /// PRI queue interrupt.
        PRIQ_IRQEN = 1;
        /// Event queue interrupt.
        EVENTQ_IRQEN = 2;
    }
}

flags32! {
    /// SMMU_GERROR / SMMU_GERRORN error bits [SMMUv3 §6.3.19, §7.5]. An error
    /// is active while its bit differs between GERROR and GERRORN; see
    /// [`GError::active`].
    GError {
        /// A command could not be consumed; see CMDQ_CONS.ERR.
        CMDQ_ERR = 0;
        /// The event queue could not be written (abort), events lost.
        EVENTQ_ABT_ERR = 2;
        /// The PRI queue could not be written.
        PRIQ_ABT_ERR = 3;
        /// A CMD_SYNC MSI write aborted.
        MSI_CMDQ_ABT_ERR = 4;
        /// An event queue MSI write aborted.
        MSI_EVENTQ_ABT_ERR = 5;
        /// A PRI queue MSI write aborted.
        MSI_PRIQ_ABT_ERR = 6;
        /// A GERROR MSI write aborted.
        MSI_GERROR_ABT_ERR = 7;
        /// The SMMU entered Service Failure Mode.
        SFM_ERR = 8;
        /// An error on an ECMDQ control page (v3.3).
        CMDQP_ERR = 9;
        /// A Device Permission Table error (v3.3).
        DPT_ERR = 10;
    }
}

impl GError {
    /// The errors now active: GERROR ^ GERRORN, restricted to defined bits
    /// [SMMUv3 §7.5]. (QEMU reports command errors only here, never by
    /// leaving a value in CMDQ_CONS.ERR alone.)
    pub const fn active(gerror: u32, gerrorn: u32) -> Self {
        Self((gerror ^ gerrorn) & Self::ALL.0)
    }

    /// The value to write to GERRORN to acknowledge `handled` (toggles those
    /// bits of the current GERRORN) [SMMUv3 §6.3.20].
    pub const fn acknowledge(gerrorn: u32, handled: Self) -> u32 {
        gerrorn ^ (handled.0 & Self::ALL.0)
    }
}

// ---------------------------------------------------------------------------
// CR1: table and queue access attributes.

/// Cacheability of the SMMU's own table and queue accesses, as SMMU_CR1
/// encodes it (this is not the TCR-style encoding) [SMMUv3 §6.3.11].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cacheability {
    /// Non-cacheable (0b00).
    NonCacheable = 0b00,
    /// Write-Back cacheable (0b01).
    WriteBack = 0b01,
    /// Write-Through cacheable (0b10).
    WriteThrough = 0b10,
}

impl Cacheability {
    const fn from_bits(v: u64) -> Self {
        match v & 0b11 {
            0b01 => Cacheability::WriteBack,
            0b10 => Cacheability::WriteThrough,
            // 0b11 is Reserved and treated as 0b00.
            _ => Cacheability::NonCacheable,
        }
    }
}

/// Inner/outer cacheability and shareability of one class of SMMU accesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessAttrs {
    /// Inner cacheability.
    pub inner: Cacheability,
    /// Outer cacheability.
    pub outer: Cacheability,
    /// Shareability (ignored, behaving as Outer, when both are NC).
    pub sh: Shareability,
}

impl AccessAttrs {
    /// Write-Back, Inner Shareable: for an SMMU whose IDR0.COHACC is set.
    pub const COHERENT: Self = Self {
        inner: Cacheability::WriteBack,
        outer: Cacheability::WriteBack,
        sh: Shareability::Inner,
    };
    /// Non-cacheable: for a non-coherent SMMU, whose tables and queues
    /// software must clean to the point of coherency.
    pub const NON_COHERENT: Self = Self {
        inner: Cacheability::NonCacheable,
        outer: Cacheability::NonCacheable,
        sh: Shareability::Outer,
    };
}

/// SMMU_CR1: attributes of Stream/CD table walks and queue accesses
/// [SMMUv3 §6.3.11]. Written only while the queues and SMMUEN are off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cr1 {
    /// Attributes of table (STE, CD, L1 descriptor) accesses.
    pub table: AccessAttrs,
    /// Attributes of command, event and PRI queue accesses.
    pub queue: AccessAttrs,
}

impl Cr1 {
    /// The attributes matching IDR0.COHACC: cacheable and shareable when
    /// the SMMU's accesses are coherent, non-cacheable otherwise.
    pub const fn for_coherency(coherent: bool) -> Self {
        let a = if coherent {
            AccessAttrs::COHERENT
        } else {
            AccessAttrs::NON_COHERENT
        };
        Self { table: a, queue: a }
    }

    /// The register value.
    pub const fn encode(self) -> u32 {
        let mut v = 0u64;
        v = set(v, 1, 0, self.queue.inner as u64);
        v = set(v, 3, 2, self.queue.outer as u64);
        v = set(v, 5, 4, self.queue.sh.bits());
        v = set(v, 7, 6, self.table.inner as u64);
        v = set(v, 9, 8, self.table.outer as u64);
        v = set(v, 11, 10, self.table.sh.bits());
        v as u32
    }

    /// Decodes a register value.
    pub const fn decode(v: u32) -> Self {
        let v = v as u64;
        Self {
            queue: AccessAttrs {
                inner: Cacheability::from_bits(get(v, 1, 0)),
                outer: Cacheability::from_bits(get(v, 3, 2)),
                sh: Shareability::from_bits(get(v, 5, 4)),
            },
            table: AccessAttrs {
                inner: Cacheability::from_bits(get(v, 7, 6)),
                outer: Cacheability::from_bits(get(v, 9, 8)),
                sh: Shareability::from_bits(get(v, 11, 10)),
            },
        }
    }
}

// ---------------------------------------------------------------------------
// GBPA.

/// GBPA.Update: written as 1 with new values; the SMMU clears it when the
/// update has taken effect [SMMUv3 §6.3.14].
pub const GBPA_UPDATE: u32 = 1 << 31;
/// GBPA.ABORT: with SMMUEN == 0, abort all incoming transactions instead of
/// letting them bypass [SMMUv3 §6.3.14].
pub const GBPA_ABORT: u32 = 1 << 20;

/// The value to write to GBPA to set ABORT to `abort`, keeping the other
/// attribute fields of `current` and setting Update [SMMUv3 §6.3.14].
/// Software then polls until Update reads 0.
pub const fn gbpa_request(current: u32, abort: bool) -> u32 {
    let v = set_bit(current as u64, 20, abort) as u32;
    v | GBPA_UPDATE
}

/// Whether a GBPA update is still in progress (Update reads 1).
pub const fn gbpa_update_pending(gbpa: u32) -> bool {
    gbpa & GBPA_UPDATE != 0
}

/// Whether GBPA aborts traffic while the SMMU is disabled.
pub const fn gbpa_aborts(gbpa: u32) -> bool {
    gbpa & GBPA_ABORT != 0
}

// ---------------------------------------------------------------------------
// Stream table base registers.

/// Format of the Stream table, SMMU_STRTAB_BASE_CFG.FMT [SMMUv3 §6.3.25].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrtabFormat {
    /// One array of 2^LOG2SIZE STEs (FMT == 0b00).
    Linear,
    /// Level-1 descriptors pointing at level-2 STE arrays (FMT == 0b01),
    /// split at `split` StreamID bits.
    TwoLevel(Split),
}

/// SMMU_STRTAB_BASE_CFG [SMMUv3 §6.3.25].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StrtabCfg {
    /// Linear or two-level.
    pub format: StrtabFormat,
    /// log2 of the number of StreamIDs covered (at most IDR1.SIDSIZE).
    pub log2size: u8,
}

impl StrtabCfg {
    /// The register value, or an error if LOG2SIZE exceeds the 32-bit
    /// StreamID space.
    pub const fn encode(self) -> Result<u32, Error> {
        if self.log2size > 32 {
            return Err(Error::OutOfRange("STRTAB_BASE_CFG.LOG2SIZE"));
        }
        let mut v = set(0, 5, 0, self.log2size as u64);
        if let StrtabFormat::TwoLevel(split) = self.format {
            v = set(v, 17, 16, 0b01);
            v = set(v, 10, 6, split.bits() as u64);
        }
        Ok(v as u32)
    }

    /// Decodes a register value. Reserved FMT values are reported as
    /// linear; Reserved SPLIT values behave as 6 [SMMUv3 §6.3.25].
    pub const fn decode(v: u32) -> Self {
        let v = v as u64;
        let format = match get(v, 17, 16) {
            0b01 => StrtabFormat::TwoLevel(Split::from_bits(get(v, 10, 6) as u8)),
            _ => StrtabFormat::Linear,
        };
        Self {
            format,
            log2size: get(v, 5, 0) as u8,
        }
    }

    /// Size in bytes of the table STRTAB_BASE points at: the STE array
    /// (64 bytes per STE) when linear, the level-1 descriptor array (8 bytes
    /// each, at least one) when two-level.
    pub const fn base_table_bytes(self) -> u64 {
        match self.format {
            StrtabFormat::Linear => 64u64 << self.log2size,
            StrtabFormat::TwoLevel(split) => 8 * split.l1_entries(self.log2size) as u64,
        }
    }
}

/// SMMU_STRTAB_BASE for a table at `addr` with configuration `cfg`
/// [SMMUv3 §6.3.24]: the address must fit `ADDR[55:6]` and be aligned to
/// the table's size (a linear table), or to the larger of 64 bytes and the
/// level-1 table's size (two-level). `read_allocate` sets RA.
pub const fn strtab_base(
    addr: PhysAddr,
    read_allocate: bool,
    cfg: StrtabCfg,
) -> Result<u64, Error> {
    let a = addr.get();
    let bytes = cfg.base_table_bytes();
    let align = if bytes > 64 { bytes } else { 64 };
    if !fits_addr(a, 55, 6) || a & (align - 1) != 0 {
        return Err(Error::BadAddress("STRTAB_BASE.ADDR"));
    }
    Ok(set_bit(a, 62, read_allocate))
}

/// The table address in an SMMU_STRTAB_BASE value.
pub const fn strtab_base_addr(v: u64) -> PhysAddr {
    PhysAddr::new(get(v, 55, 6) << 6)
}

// ---------------------------------------------------------------------------
// Queue base registers.

/// The three queues of the Non-secure programming interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueKind {
    /// Command queue: 16-byte entries, software produces.
    Command,
    /// Event queue: 32-byte records, the SMMU produces.
    Event,
    /// PRI queue: 16-byte entries, the SMMU produces.
    Pri,
}

impl QueueKind {
    /// Bytes per entry [SMMUv3 §3.5].
    pub const fn entry_bytes(self) -> u64 {
        match self {
            QueueKind::Command | QueueKind::Pri => 16,
            QueueKind::Event => 32,
        }
    }
}

/// A queue base register value: SMMU_CMDQ_BASE, SMMU_EVENTQ_BASE or
/// SMMU_PRIQ_BASE [SMMUv3 §6.3.26, §6.3.29, §6.3.33].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueBase {
    /// Physical address of the queue memory.
    pub addr: PhysAddr,
    /// log2 of the number of entries (at most IDR1.CMDQS/EVENTQS/PRIQS).
    pub log2size: u8,
    /// The allocation hint in bit 62: RA for the command queue (read
    /// allocate), WA for the event and PRI queues (write allocate).
    pub alloc_hint: bool,
}

impl QueueBase {
    /// Size of the queue memory in bytes.
    pub const fn bytes(self, kind: QueueKind) -> u64 {
        kind.entry_bytes() << self.log2size
    }

    /// The register value. The address must fit `ADDR[55:5]` and be aligned
    /// to the larger of the queue's size and 32 bytes; LOG2SIZE is at most
    /// 19, the largest IDR1.CMDQS/EVENTQS the architecture allows.
    pub const fn encode(self, kind: QueueKind) -> Result<u64, Error> {
        if self.log2size > 19 {
            return Err(Error::OutOfRange("queue LOG2SIZE"));
        }
        let a = self.addr.get();
        let bytes = self.bytes(kind);
        let align = if bytes > 32 { bytes } else { 32 };
        if !fits_addr(a, 55, 5) || a & (align - 1) != 0 {
            return Err(Error::BadAddress("queue base ADDR"));
        }
        let v = set(a, 4, 0, self.log2size as u64);
        Ok(set_bit(v, 62, self.alloc_hint))
    }

    /// Decodes a register value.
    pub const fn decode(v: u64) -> Self {
        Self {
            addr: PhysAddr::new(get(v, 55, 5) << 5),
            log2size: get(v, 4, 0) as u8,
            alloc_hint: crate::bits::bit(v, 62),
        }
    }
}

// ---------------------------------------------------------------------------
// CMDQ_CONS.ERR.

/// Command queue error codes, SMMU_CMDQ_CONS.ERR [SMMUv3 §6.3.28, §7.1].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdqError {
    /// CERROR_NONE (0x00): no error.
    None,
    /// CERROR_ILL (0x01): illegal command (unknown opcode, bad parameters,
    /// non-zero Reserved field).
    Ill,
    /// CERROR_ABT (0x02): external abort fetching the command.
    Abt,
    /// CERROR_ATC_INV_SYNC (0x03): a CMD_SYNC could not complete earlier
    /// ATC invalidations.
    AtcInvSync,
    /// Any other (IMPLEMENTATION DEFINED or later-architecture) code.
    Other(u8),
}

/// CMDQ_CONS.ERR code for CERROR_NONE.
pub const CERROR_NONE: u8 = 0x00;
/// CMDQ_CONS.ERR code for CERROR_ILL.
pub const CERROR_ILL: u8 = 0x01;
/// CMDQ_CONS.ERR code for CERROR_ABT.
pub const CERROR_ABT: u8 = 0x02;
/// CMDQ_CONS.ERR code for CERROR_ATC_INV_SYNC.
pub const CERROR_ATC_INV_SYNC: u8 = 0x03;

impl CmdqError {
    /// The error in a CMDQ_CONS value (bits `[30:24]`).
    pub const fn from_cons(cons: u32) -> Self {
        Self::from_code(get(cons as u64, 30, 24) as u8)
    }

    /// The error for a 7-bit ERR code.
    pub const fn from_code(code: u8) -> Self {
        match code {
            CERROR_NONE => CmdqError::None,
            CERROR_ILL => CmdqError::Ill,
            CERROR_ABT => CmdqError::Abt,
            CERROR_ATC_INV_SYNC => CmdqError::AtcInvSync,
            other => CmdqError::Other(other),
        }
    }

    /// The 7-bit ERR code.
    pub const fn code(self) -> u8 {
        match self {
            CmdqError::None => CERROR_NONE,
            CmdqError::Ill => CERROR_ILL,
            CmdqError::Abt => CERROR_ABT,
            CmdqError::AtcInvSync => CERROR_ATC_INV_SYNC,
            CmdqError::Other(c) => c,
        }
    }
}

impl fmt::Display for CmdqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdqError::None => f.write_str("CERROR_NONE"),
            CmdqError::Ill => f.write_str("CERROR_ILL"),
            CmdqError::Abt => f.write_str("CERROR_ABT"),
            CmdqError::AtcInvSync => f.write_str("CERROR_ATC_INV_SYNC"),
            CmdqError::Other(c) => write!(f, "CERROR_{c:#04x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_widths() {
        let idr_offsets: [usize; 6] = IDRS.map(|r| r.offset());
        assert_eq!(idr_offsets, [0x00, 0x04, 0x08, 0x0C, 0x10, 0x14]);
        assert_eq!(IIDR.offset(), 0x18);
        assert_eq!(AIDR.offset(), 0x1C);
        assert_eq!(GBPA.offset(), 0x44);
        assert_eq!(STRTAB_BASE.offset(), 0x80);
        assert_eq!(EVENTQ_PROD.offset(), 0x100A8);
        assert_eq!(EVENTQ_CONS.offset(), 0x100AC);
        assert_eq!(PRIQ_CONS.offset(), 0x100CC);
        assert_eq!(CMDQ_CONS.name(), "CMDQ_CONS");
        // Offsets are naturally aligned to the width and strictly increasing.
        let mut last = None;
        for r in ALL {
            let (off, width) = match r {
                Register::R32(r) => (r.offset(), 4),
                Register::R64(r) => (r.offset(), 8),
            };
            assert_eq!(off % width, 0, "{r:?}");
            assert!(off + width <= FRAME_SIZE);
            if let Some(prev) = last {
                assert!(off > prev, "{r:?}");
            }
            last = Some(off);
        }
    }

    #[test]
    fn cr0_flags() {
        let v = Cr0::SMMUEN | Cr0::CMDQEN | Cr0::EVENTQEN;
        assert_eq!(v.bits(), 0b1101);
        assert!(v.contains(Cr0::CMDQEN));
        assert!(!v.contains(Cr0::PRIQEN));
        assert_eq!(v.without(Cr0::SMMUEN).bits(), 0b1100);
        assert_eq!(format!("{v}"), "SMMUEN EVENTQEN CMDQEN");
        assert_eq!(format!("{}", Cr0::empty()), "none");
        assert_eq!((Cr2::RECINVSID | Cr2::PTM).bits(), 0b110);
        assert_eq!(IrqCtrl::ALL.bits(), 0b111);
    }

    #[test]
    fn gerror_is_xor_of_gerrorn() {
        assert!(GError::active(0, 0).is_empty());
        // The SMMU toggled CMDQ_ERR: active until GERRORN toggles too.
        let e = GError::active(0x1, 0x0);
        assert_eq!(e, GError::CMDQ_ERR);
        let n = GError::acknowledge(0x0, e);
        assert!(GError::active(0x1, n).is_empty());
        // A second toggle (bit back to 0) is again an active error.
        assert_eq!(GError::active(0x0, n), GError::CMDQ_ERR);
        let e = GError::active(0x105, 0x0);
        assert_eq!(format!("{e}"), "CMDQ_ERR EVENTQ_ABT_ERR SFM_ERR");
        // Undefined bits are not errors.
        assert!(GError::active(1 << 1, 0).is_empty());
        assert_eq!(format!("{}", GError::from_bits(1 << 20)), "0x100000");
    }

    #[test]
    fn cr1_round_trip() {
        let c = Cr1::for_coherency(true);
        assert_eq!(c.encode(), 0b11_01_01_11_01_01);
        assert_eq!(Cr1::decode(c.encode()), c);
        let n = Cr1::for_coherency(false);
        assert_eq!(n.encode(), 0b10_00_00_10_00_00);
        assert_eq!(Cr1::decode(n.encode()), n);
    }

    #[test]
    fn gbpa_abort_request() {
        let v = gbpa_request(0x0000_1000, true);
        assert_eq!(v, 0x8010_1000);
        assert!(gbpa_update_pending(v));
        assert!(gbpa_aborts(v));
        assert!(!gbpa_aborts(gbpa_request(v, false)));
    }

    #[test]
    fn strtab_cfg_and_base() {
        let cfg = StrtabCfg {
            format: StrtabFormat::TwoLevel(Split::Bits8),
            log2size: 16,
        };
        let v = cfg.encode().unwrap();
        assert_eq!(v, (1 << 16) | (8 << 6) | 16);
        assert_eq!(StrtabCfg::decode(v), cfg);
        // 256 level-1 descriptors: 2 KiB, so the base is 2 KiB aligned.
        assert_eq!(cfg.base_table_bytes(), 2048);
        assert!(strtab_base(PhysAddr::new(0x4000_0800), false, cfg).is_ok());
        assert!(strtab_base(PhysAddr::new(0x4000_0400), false, cfg).is_err());
        let b = strtab_base(PhysAddr::new(0x4000_0000), true, cfg).unwrap();
        assert_eq!(b, (1 << 62) | 0x4000_0000);
        assert_eq!(strtab_base_addr(b), PhysAddr::new(0x4000_0000));
        let lin = StrtabCfg {
            format: StrtabFormat::Linear,
            log2size: 6,
        };
        assert_eq!(lin.encode().unwrap(), 6);
        assert_eq!(lin.base_table_bytes(), 4096);
        assert!(strtab_base(PhysAddr::new(0x4000_0040), false, lin).is_err());
        assert!(strtab_base(PhysAddr::new(1 << 56), false, lin).is_err());
        assert!(
            StrtabCfg {
                format: StrtabFormat::Linear,
                log2size: 33
            }
            .encode()
            .is_err()
        );
    }

    #[test]
    fn queue_base_round_trip() {
        let q = QueueBase {
            addr: PhysAddr::new(0x4010_0000),
            log2size: 8,
            alloc_hint: true,
        };
        let v = q.encode(QueueKind::Command).unwrap();
        assert_eq!(v, (1 << 62) | 0x4010_0000 | 8);
        assert_eq!(QueueBase::decode(v), q);
        // 2^8 commands are 4 KiB: a 2 KiB-aligned base is refused.
        let bad = QueueBase {
            addr: PhysAddr::new(0x4010_0800),
            ..q
        };
        assert!(bad.encode(QueueKind::Command).is_err());
        // 2^8 events are 8 KiB.
        let e = QueueBase {
            addr: PhysAddr::new(0x4010_1000),
            log2size: 8,
            alloc_hint: false,
        };
        assert!(e.encode(QueueKind::Event).is_err());
        let small = QueueBase {
            addr: PhysAddr::new(0x4010_0020),
            log2size: 0,
            alloc_hint: false,
        };
        assert!(small.encode(QueueKind::Command).is_ok());
        let big = QueueBase { log2size: 20, ..q };
        assert!(big.encode(QueueKind::Command).is_err());
    }

    #[test]
    fn cmdq_errors() {
        assert_eq!(CmdqError::from_cons(0x0100_0005), CmdqError::Ill);
        assert_eq!(CmdqError::from_cons(0x0000_0005), CmdqError::None);
        assert_eq!(CmdqError::from_cons(0x0300_0000), CmdqError::AtcInvSync);
        assert_eq!(CmdqError::from_cons(0x7f00_0000), CmdqError::Other(0x7f));
        assert_eq!(CmdqError::Abt.code(), 2);
        assert_eq!(format!("{}", CmdqError::Ill), "CERROR_ILL");
    }
}

//! Controller registers in BAR0 [NVMe-2.0 §3.1.3, Controller Properties]:
//! their offsets (shared [`mmio::Reg`] declarations) and typed
//! encoders/decoders. Owns the bit layouts; never performs an access (the
//! driver does one volatile access per register).

pub use mmio::Reg;

use crate::QueueId;

/// Controller Capabilities [NVMe-2.0 §3.1.3.1].
pub const CAP: Reg<u64> = Reg::named(0x00, "CAP");
/// Version [NVMe-2.0 §3.1.3.2].
pub const VS: Reg<u32> = Reg::named(0x08, "VS");
/// Interrupt Mask Set [NVMe-2.0 §3.1.3.3] (pin-based and MSI only).
pub const INTMS: Reg<u32> = Reg::named(0x0c, "INTMS");
/// Interrupt Mask Clear [NVMe-2.0 §3.1.3.4] (pin-based and MSI only).
pub const INTMC: Reg<u32> = Reg::named(0x10, "INTMC");
/// Controller Configuration [NVMe-2.0 §3.1.3.5].
pub const CC: Reg<u32> = Reg::named(0x14, "CC");
/// Controller Status [NVMe-2.0 §3.1.3.6].
pub const CSTS: Reg<u32> = Reg::named(0x1c, "CSTS");
/// Admin Queue Attributes [NVMe-2.0 §3.1.3.8].
pub const AQA: Reg<u32> = Reg::named(0x24, "AQA");
/// Admin Submission Queue Base Address [NVMe-2.0 §3.1.3.9].
pub const ASQ: Reg<u64> = Reg::named(0x28, "ASQ");
/// Admin Completion Queue Base Address [NVMe-2.0 §3.1.3.10].
pub const ACQ: Reg<u64> = Reg::named(0x30, "ACQ");
/// First doorbell register [NVMe-2.0 §3.1.3, SQ0TDBL at 1000h].
pub const DOORBELL_BASE: usize = 0x1000;

/// Extracts `width` bits at `shift`.
const fn field(v: u64, shift: u32, width: u32) -> u64 {
    (v >> shift) & ((1 << width) - 1)
}

/// CAP: what the controller supports [NVMe-2.0 §3.1.3.1].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap(pub u64);

impl Cap {
    /// MQES: largest I/O queue, in entries, 0's based.
    pub const fn mqes(self) -> u16 {
        field(self.0, 0, 16) as u16
    }
    /// Largest I/O queue in entries (MQES + 1).
    pub const fn max_queue_entries(self) -> u32 {
        self.mqes() as u32 + 1
    }
    /// CQR: I/O queues must be physically (here: IOVA-) contiguous.
    pub const fn cqr(self) -> bool {
        field(self.0, 16, 1) != 0
    }
    /// AMS: optional arbitration mechanisms (bit 0 weighted round robin
    /// with urgent, bit 1 vendor specific).
    pub const fn ams(self) -> u8 {
        field(self.0, 17, 2) as u8
    }
    /// TO: worst-case time for CSTS.RDY to change, in 500 ms units.
    pub const fn to(self) -> u8 {
        field(self.0, 24, 8) as u8
    }
    /// TO in microseconds.
    pub const fn timeout_us(self) -> u64 {
        self.to() as u64 * 500_000
    }
    /// DSTRD: doorbell stride is `4 << DSTRD` bytes.
    pub const fn dstrd(self) -> u8 {
        field(self.0, 32, 4) as u8
    }
    /// NSSRS: NVM subsystem reset supported.
    pub const fn nssrs(self) -> bool {
        field(self.0, 36, 1) != 0
    }
    /// CSS: command sets supported (bit 0 NVM, bit 6 I/O sets, bit 7 no I/O).
    pub const fn css(self) -> u8 {
        field(self.0, 37, 8) as u8
    }
    /// CSS bit 0: the NVM command set.
    pub const fn supports_nvm(self) -> bool {
        self.css() & 1 != 0
    }
    /// MPSMIN: smallest memory page size is `2^(12 + MPSMIN)`.
    pub const fn mpsmin(self) -> u8 {
        field(self.0, 48, 4) as u8
    }
    /// MPSMAX: largest memory page size is `2^(12 + MPSMAX)`.
    pub const fn mpsmax(self) -> u8 {
        field(self.0, 52, 4) as u8
    }
    /// Smallest memory page size in bytes.
    pub const fn min_page_size(self) -> u64 {
        1 << (12 + self.mpsmin() as u32)
    }
    /// Largest memory page size in bytes.
    pub const fn max_page_size(self) -> u64 {
        1 << (12 + self.mpsmax() as u32)
    }
    /// Whether the memory page size `bytes` (a power of two) is allowed.
    pub const fn page_size_ok(self, bytes: u64) -> bool {
        bytes.is_power_of_two() && bytes >= self.min_page_size() && bytes <= self.max_page_size()
    }
    /// Submission queue `qid`'s tail doorbell
    /// [NVMe-2.0 §3.1.3, SQyTDBL = 1000h + (2y × (4 << DSTRD))].
    pub const fn sq_tail_doorbell(self, qid: QueueId) -> Reg<u32> {
        Reg::at(DOORBELL_BASE + (2 * qid.0 as usize) * (4 << self.dstrd()))
    }
    /// Completion queue `qid`'s head doorbell
    /// [NVMe-2.0 §3.1.3, CQyHDBL = 1000h + ((2y + 1) × (4 << DSTRD))].
    pub const fn cq_head_doorbell(self, qid: QueueId) -> Reg<u32> {
        Reg::at(DOORBELL_BASE + (2 * qid.0 as usize + 1) * (4 << self.dstrd()))
    }
}

/// VS: the specification version the controller implements
/// [NVMe-2.0 §3.1.3.2].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version(pub u32);

impl Version {
    /// MJR.
    pub const fn major(self) -> u16 {
        (self.0 >> 16) as u16
    }
    /// MNR.
    pub const fn minor(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// TER.
    pub const fn tertiary(self) -> u8 {
        self.0 as u8
    }
}

/// An INTMS/INTMC value: one bit per interrupt vector
/// [NVMe-2.0 §3.1.3.3, §3.1.3.4]. With pin-based interrupts only vector 0
/// exists.
pub const fn interrupt_vector_mask(vector: u8) -> u32 {
    1 << (vector & 31)
}

/// CC.CSS: which I/O command set to enable [NVMe-2.0 §3.1.3.5].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CommandSet {
    /// The NVM command set.
    Nvm = 0b000,
    /// Every I/O command set CAP.CSS bit 6 allows.
    AllSupported = 0b110,
    /// Admin commands only.
    AdminOnly = 0b111,
}

/// CC.AMS: arbitration mechanism [NVMe-2.0 §3.1.3.5, §3.4.4].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Arbitration {
    /// Round robin (always supported).
    RoundRobin = 0b000,
    /// Weighted round robin with urgent priority class.
    WeightedRoundRobin = 0b001,
}

/// CC.SHN: shutdown notification [NVMe-2.0 §3.1.3.5, §3.6].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ShutdownNotification {
    /// No notification.
    None = 0b00,
    /// Normal shutdown.
    Normal = 0b01,
    /// Abrupt shutdown.
    Abrupt = 0b10,
}

/// CC: how the host configures the controller [NVMe-2.0 §3.1.3.5].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cc {
    /// EN: enable.
    pub enable: bool,
    /// CSS.
    pub command_set: CommandSet,
    /// Memory page size in bytes (a power of two, 4 KiB..128 MiB): MPS.
    pub page_size: u64,
    /// AMS.
    pub arbitration: Arbitration,
    /// SHN.
    pub shutdown: ShutdownNotification,
    /// IOSQES: log2 of the I/O submission entry size (6: 64 bytes).
    pub io_sq_entry_shift: u8,
    /// IOCQES: log2 of the I/O completion entry size (4: 16 bytes).
    pub io_cq_entry_shift: u8,
}

impl Cc {
    /// The EN bit of a raw CC value.
    pub const EN: u32 = 1 << 0;

    /// The configuration this driver uses: NVM command set, round robin,
    /// 64-byte SQ entries, 16-byte CQ entries, no shutdown.
    pub const fn nvm(page_size: u64, enable: bool) -> Cc {
        Cc {
            enable,
            command_set: CommandSet::Nvm,
            page_size,
            arbitration: Arbitration::RoundRobin,
            shutdown: ShutdownNotification::None,
            io_sq_entry_shift: crate::cmd::SQE_SHIFT,
            io_cq_entry_shift: crate::cmd::CQE_SHIFT,
        }
    }

    /// The register value. A page size that is not a power of two of at
    /// least 4 KiB encodes as 4 KiB (callers check with [`Cap::page_size_ok`]).
    pub const fn encode(self) -> u32 {
        let mps = if self.page_size.is_power_of_two() && self.page_size >= 4096 {
            self.page_size.trailing_zeros() - 12
        } else {
            0
        };
        (self.enable as u32)
            | ((self.command_set as u32) << 4)
            | ((mps & 0xf) << 7)
            | ((self.arbitration as u32) << 11)
            | ((self.shutdown as u32) << 14)
            | (((self.io_sq_entry_shift & 0xf) as u32) << 16)
            | (((self.io_cq_entry_shift & 0xf) as u32) << 20)
    }

    /// Decodes a register value (unknown CSS/AMS/SHN encodings give `None`).
    pub const fn decode(v: u32) -> Option<Cc> {
        let command_set = match (v >> 4) & 0b111 {
            0b000 => CommandSet::Nvm,
            0b110 => CommandSet::AllSupported,
            0b111 => CommandSet::AdminOnly,
            _ => return None,
        };
        let arbitration = match (v >> 11) & 0b111 {
            0b000 => Arbitration::RoundRobin,
            0b001 => Arbitration::WeightedRoundRobin,
            _ => return None,
        };
        let shutdown = match (v >> 14) & 0b11 {
            0b00 => ShutdownNotification::None,
            0b01 => ShutdownNotification::Normal,
            0b10 => ShutdownNotification::Abrupt,
            _ => return None,
        };
        Some(Cc {
            enable: v & 1 != 0,
            command_set,
            page_size: 1 << (12 + ((v >> 7) & 0xf)),
            arbitration,
            shutdown,
            io_sq_entry_shift: ((v >> 16) & 0xf) as u8,
            io_cq_entry_shift: ((v >> 20) & 0xf) as u8,
        })
    }
}

/// CSTS.SHST: shutdown status [NVMe-2.0 §3.1.3.6].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownStatus {
    /// Normal operation.
    Normal,
    /// Shutdown processing in progress.
    Occurring,
    /// Shutdown processing complete.
    Complete,
    /// Reserved encoding.
    Reserved,
}

/// CSTS: controller status [NVMe-2.0 §3.1.3.6].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Csts(pub u32);

impl Csts {
    /// What a read returns when the function no longer answers (a PCIe
    /// master abort): every bit set.
    pub const GONE: Csts = Csts(u32::MAX);

    /// RDY: ready to process commands.
    pub const fn ready(self) -> bool {
        self.0 & 1 != 0
    }
    /// CFS: controller fatal status.
    pub const fn fatal(self) -> bool {
        self.0 & (1 << 1) != 0
    }
    /// SHST.
    pub const fn shutdown(self) -> ShutdownStatus {
        match (self.0 >> 2) & 0b11 {
            0b00 => ShutdownStatus::Normal,
            0b01 => ShutdownStatus::Occurring,
            0b10 => ShutdownStatus::Complete,
            _ => ShutdownStatus::Reserved,
        }
    }
    /// NSSRO: an NVM subsystem reset occurred.
    pub const fn subsystem_reset_occurred(self) -> bool {
        self.0 & (1 << 4) != 0
    }
    /// Whether the value says the controller failed or is gone (CFS, or
    /// the all-ones of a function that does not answer).
    pub const fn failed(self) -> bool {
        self.fatal() || self.0 == u32::MAX
    }
}

/// AQA: admin queue sizes [NVMe-2.0 §3.1.3.8]. Sizes are in entries
/// (2..=4096), encoded 0's based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aqa {
    /// ASQS + 1.
    pub sq_entries: u16,
    /// ACQS + 1.
    pub cq_entries: u16,
}

impl Aqa {
    /// Most entries in an admin queue.
    pub const MAX_ENTRIES: u16 = 4096;

    /// The register value, or `None` for a size outside 2..=4096.
    pub const fn encode(self) -> Option<u32> {
        if self.sq_entries < 2
            || self.cq_entries < 2
            || self.sq_entries > Self::MAX_ENTRIES
            || self.cq_entries > Self::MAX_ENTRIES
        {
            return None;
        }
        Some((self.sq_entries as u32 - 1) | ((self.cq_entries as u32 - 1) << 16))
    }
}

/// An ASQ/ACQ value: the queue's base IOVA, which must be 4 KiB aligned
/// [NVMe-2.0 §3.1.3.9, §3.1.3.10]; `None` otherwise.
pub const fn admin_queue_base(iova: abi::Iova) -> Option<u64> {
    if iova.is_aligned(4096) {
        Some(iova.get())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CAP of QEMU's NVMe (1b36:0010) as docs/PLATFORM.md describes it:
    /// MQES 2047 (2048 entries), CQR, TO 15 (7.5 s), CSS NVM, MPSMIN 0.
    const QEMU_CAP: u64 = 0x07ff | (1 << 16) | (15 << 24) | (1 << 37) | (4 << 52);

    #[test]
    fn cap_decodes() {
        let cap = Cap(QEMU_CAP | (1 << 32));
        assert_eq!(cap.mqes(), 2047);
        assert_eq!(cap.max_queue_entries(), 2048);
        assert!(cap.cqr());
        assert_eq!(cap.to(), 15);
        assert_eq!(cap.timeout_us(), 7_500_000);
        assert_eq!(cap.dstrd(), 1);
        assert!(cap.supports_nvm());
        assert_eq!(cap.min_page_size(), 4096);
        assert_eq!(cap.max_page_size(), 64 * 1024);
        assert!(cap.page_size_ok(4096));
        assert!(!cap.page_size_ok(2048));
        assert!(!cap.page_size_ok(128 * 1024));
    }

    #[test]
    fn doorbells_follow_the_stride() {
        let cap = Cap(QEMU_CAP);
        assert_eq!(cap.sq_tail_doorbell(QueueId::ADMIN).offset(), 0x1000);
        assert_eq!(cap.cq_head_doorbell(QueueId::ADMIN).offset(), 0x1004);
        assert_eq!(cap.sq_tail_doorbell(QueueId(1)).offset(), 0x1008);
        assert_eq!(cap.cq_head_doorbell(QueueId(1)).offset(), 0x100c);
        let wide = Cap(QEMU_CAP | (2 << 32));
        assert_eq!(wide.sq_tail_doorbell(QueueId(1)).offset(), 0x1020);
        assert_eq!(wide.cq_head_doorbell(QueueId(1)).offset(), 0x1030);
    }

    #[test]
    fn cc_encodes_and_round_trips() {
        let cc = Cc::nvm(4096, true);
        assert_eq!(cc.encode(), 0x0046_0001);
        assert_eq!(Cc::decode(cc.encode()), Some(cc));
        let off = Cc::nvm(16384, false);
        assert_eq!(off.encode(), 0x0046_0000 | (2 << 7));
        assert_eq!(Cc::decode(off.encode()), Some(off));
        let shn = Cc {
            shutdown: ShutdownNotification::Normal,
            ..cc
        };
        assert_eq!(shn.encode(), 0x0046_4001);
        assert_eq!(Cc::decode(0x0000_0010), None);
        assert_eq!(cc.encode() & !Cc::EN, Cc::nvm(4096, false).encode());
    }

    #[test]
    fn csts_decodes() {
        assert!(Csts(1).ready());
        assert!(!Csts(1).failed());
        assert!(Csts(2).fatal());
        assert!(Csts::GONE.failed());
        assert_eq!(Csts(0b1000).shutdown(), ShutdownStatus::Complete);
        assert_eq!(Csts(0b0100).shutdown(), ShutdownStatus::Occurring);
        assert_eq!(Csts(0).shutdown(), ShutdownStatus::Normal);
    }

    #[test]
    fn aqa_and_bases() {
        let aqa = Aqa {
            sq_entries: 32,
            cq_entries: 32,
        };
        assert_eq!(aqa.encode(), Some(0x001f_001f));
        assert_eq!(
            Aqa {
                sq_entries: 1,
                cq_entries: 2
            }
            .encode(),
            None
        );
        assert_eq!(
            Aqa {
                sq_entries: 4097,
                cq_entries: 2
            }
            .encode(),
            None
        );
        assert_eq!(admin_queue_base(abi::Iova::new(0x1000)), Some(0x1000));
        assert_eq!(admin_queue_base(abi::Iova::new(0x1010)), None);
        assert_eq!(interrupt_vector_mask(0), 1);
    }

    #[test]
    fn version_decodes() {
        let v = Version(0x0001_0400);
        assert_eq!((v.major(), v.minor(), v.tertiary()), (1, 4, 0));
    }
}

//! Submission queue entries (64 bytes) and completion queue entries (16
//! bytes) [NVMe-2.0 §4.2, §4.6]: typed builders for the commands this
//! driver issues, named opcodes, and a total completion decoder with named
//! status codes. Owns the entry layouts; never writes to queue memory.

use core::fmt;

use crate::{Cid, Nsid, QueueId};

/// log2 of a submission queue entry's size (64 bytes) [NVMe-2.0 §4.2].
pub const SQE_SHIFT: u8 = 6;
/// Bytes in a submission queue entry.
pub const SQE_BYTES: u64 = 1 << SQE_SHIFT;
/// log2 of a completion queue entry's size (16 bytes) [NVMe-2.0 §4.6].
pub const CQE_SHIFT: u8 = 4;
/// Bytes in a completion queue entry.
pub const CQE_BYTES: u64 = 1 << CQE_SHIFT;

/// Admin command opcodes [NVMe-2.0 §5, Figure "Opcodes for Admin Commands"].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AdminOpcode {
    /// Delete I/O Submission Queue [NVMe-2.0 §5.7].
    DeleteIoSq = 0x00,
    /// Create I/O Submission Queue [NVMe-2.0 §5.5].
    CreateIoSq = 0x01,
    /// Delete I/O Completion Queue [NVMe-2.0 §5.6].
    DeleteIoCq = 0x04,
    /// Create I/O Completion Queue [NVMe-2.0 §5.4].
    CreateIoCq = 0x05,
    /// Identify [NVMe-2.0 §5.17].
    Identify = 0x06,
    /// Abort [NVMe-2.0 §5.1].
    Abort = 0x08,
}

/// NVM command set I/O opcodes [NVM-CS-1.0 §3, Figure "Opcodes for NVM
/// Commands"; Flush: NVMe-2.0 §7.1].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum IoOpcode {
    /// Flush [NVMe-2.0 §7.1].
    Flush = 0x00,
    /// Write [NVM-CS-1.0 §3.2.6].
    Write = 0x01,
    /// Read [NVM-CS-1.0 §3.2.4].
    Read = 0x02,
}

/// A command's opcode, admin or I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    /// On the admin queue.
    Admin(AdminOpcode),
    /// On an I/O queue.
    Io(IoOpcode),
}

impl Opcode {
    /// The CDW0.OPC byte.
    pub const fn code(self) -> u8 {
        match self {
            Opcode::Admin(o) => o as u8,
            Opcode::Io(o) => o as u8,
        }
    }
}

/// Identify's Controller or Namespace Structure selector
/// [NVMe-2.0 §5.17.1, Figure "CNS Values"].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Cns {
    /// Identify Namespace data structure for the NSID (NVM command set).
    Namespace = 0x00,
    /// Identify Controller data structure.
    Controller = 0x01,
    /// Active namespace ID list.
    ActiveNamespaces = 0x02,
}

/// QPRIO of Create I/O Submission Queue [NVMe-2.0 §5.5, CDW11]; used only
/// with weighted round robin arbitration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum QueuePriority {
    /// Urgent.
    Urgent = 0b00,
    /// High.
    High = 0b01,
    /// Medium.
    Medium = 0b10,
    /// Low.
    Low = 0b11,
}

/// A submission queue entry, as its sixteen little-endian dwords
/// [NVMe-2.0 §4.2, Figure "Common Command Format"].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sqe {
    dw: [u32; 16],
}

impl fmt::Debug for Sqe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sqe {{ opc: {:#04x}, cid: {}, nsid: {}, prp1: {:#x}, prp2: {:#x}, cdw10..15: {:x?} }}",
            self.opcode(),
            self.cid().0,
            self.dw[NSID],
            self.prp1(),
            self.prp2(),
            &self.dw[CDW10..]
        )
    }
}

/// Dword indices of the common command format [NVMe-2.0 §4.2].
const CDW0: usize = 0;
const NSID: usize = 1;
const PRP1: usize = 6;
const PRP2: usize = 8;
const CDW10: usize = 10;
const CDW11: usize = 11;
const CDW12: usize = 12;

impl Sqe {
    /// An entry with CDW0 = `opcode` and `cid` (FUSE 0, PSDT 0: PRPs) and
    /// everything else zero.
    pub const fn new(opcode: Opcode, cid: Cid) -> Sqe {
        let mut dw = [0; 16];
        dw[CDW0] = opcode.code() as u32 | ((cid.0 as u32) << 16);
        Sqe { dw }
    }

    /// Sets NSID.
    pub const fn with_nsid(mut self, nsid: Nsid) -> Sqe {
        self.dw[NSID] = nsid.0;
        self
    }

    /// Sets the data pointer's PRP Entry 1 and 2 [NVMe-2.0 §4.1.1].
    pub const fn with_prps(mut self, prp1: u64, prp2: u64) -> Sqe {
        self.dw[PRP1] = prp1 as u32;
        self.dw[PRP1 + 1] = (prp1 >> 32) as u32;
        self.dw[PRP2] = prp2 as u32;
        self.dw[PRP2 + 1] = (prp2 >> 32) as u32;
        self
    }

    /// The sixteen dwords, in queue order.
    pub const fn dwords(&self) -> [u32; 16] {
        self.dw
    }

    /// The 64 bytes as the controller reads them.
    pub fn to_bytes(&self) -> [u8; SQE_BYTES as usize] {
        let mut b = [0; SQE_BYTES as usize];
        for (chunk, w) in b.chunks_exact_mut(4).zip(self.dw) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// CDW0.OPC.
    pub const fn opcode(&self) -> u8 {
        self.dw[CDW0] as u8
    }
    /// CDW0.CID.
    pub const fn cid(&self) -> Cid {
        Cid((self.dw[CDW0] >> 16) as u16)
    }
    /// PRP1.
    pub const fn prp1(&self) -> u64 {
        self.dw[PRP1] as u64 | ((self.dw[PRP1 + 1] as u64) << 32)
    }
    /// PRP2.
    pub const fn prp2(&self) -> u64 {
        self.dw[PRP2] as u64 | ((self.dw[PRP2 + 1] as u64) << 32)
    }
    /// CDW10..=CDW15.
    pub fn cdw(&self, n: usize) -> Option<u32> {
        (10..=15).contains(&n).then(|| self.dw[n])
    }

    /// Identify [NVMe-2.0 §5.17]: returns a 4 KiB structure into the page
    /// at `buf` (CDW10.CNS, CDW10.CNTID 0).
    pub const fn identify(cid: Cid, cns: Cns, nsid: Nsid, buf: abi::Iova) -> Sqe {
        let mut s = Sqe::new(Opcode::Admin(AdminOpcode::Identify), cid)
            .with_nsid(nsid)
            .with_prps(buf.get(), 0);
        s.dw[CDW10] = cns as u32;
        s
    }

    /// Create I/O Completion Queue [NVMe-2.0 §5.4]: `entries` (2..=65536)
    /// at `base`; CDW10 QSIZE (0's based) | QID, CDW11 IV | IEN | PC.
    /// `None` for a size out of range.
    pub const fn create_io_cq(
        cid: Cid,
        qid: QueueId,
        entries: u32,
        base: abi::Iova,
        interrupts: Option<u16>,
    ) -> Option<Sqe> {
        if entries < 2 || entries > 65536 {
            return None;
        }
        let mut s = Sqe::new(Opcode::Admin(AdminOpcode::CreateIoCq), cid).with_prps(base.get(), 0);
        s.dw[CDW10] = qid.0 as u32 | ((entries - 1) << 16);
        let pc = 1;
        s.dw[CDW11] = match interrupts {
            Some(iv) => pc | (1 << 1) | ((iv as u32) << 16),
            None => pc,
        };
        Some(s)
    }

    /// Create I/O Submission Queue [NVMe-2.0 §5.5]: `entries` (2..=65536)
    /// at `base`, completing into `cqid`; CDW10 QSIZE | QID, CDW11 CQID |
    /// QPRIO | PC. `None` for a size out of range.
    pub const fn create_io_sq(
        cid: Cid,
        qid: QueueId,
        entries: u32,
        base: abi::Iova,
        priority: QueuePriority,
        cqid: QueueId,
    ) -> Option<Sqe> {
        if entries < 2 || entries > 65536 {
            return None;
        }
        let mut s = Sqe::new(Opcode::Admin(AdminOpcode::CreateIoSq), cid).with_prps(base.get(), 0);
        s.dw[CDW10] = qid.0 as u32 | ((entries - 1) << 16);
        s.dw[CDW11] = 1 | ((priority as u32) << 1) | ((cqid.0 as u32) << 16);
        Some(s)
    }

    /// Delete I/O Submission Queue [NVMe-2.0 §5.7]: CDW10.QID.
    pub const fn delete_io_sq(cid: Cid, qid: QueueId) -> Sqe {
        let mut s = Sqe::new(Opcode::Admin(AdminOpcode::DeleteIoSq), cid);
        s.dw[CDW10] = qid.0 as u32;
        s
    }

    /// Delete I/O Completion Queue [NVMe-2.0 §5.6]: CDW10.QID.
    pub const fn delete_io_cq(cid: Cid, qid: QueueId) -> Sqe {
        let mut s = Sqe::new(Opcode::Admin(AdminOpcode::DeleteIoCq), cid);
        s.dw[CDW10] = qid.0 as u32;
        s
    }

    /// Abort [NVMe-2.0 §5.1]: asks the controller to abort command `target`
    /// of submission queue `sqid`; CDW10 SQID (15:0) | CID (31:16). Its
    /// completion's DW0 bit 0 is 0 when the command was aborted (it then
    /// completes with Command Abort Requested), 1 when it was not.
    pub const fn abort(cid: Cid, sqid: QueueId, target: Cid) -> Sqe {
        let mut s = Sqe::new(Opcode::Admin(AdminOpcode::Abort), cid);
        s.dw[CDW10] = sqid.0 as u32 | ((target.0 as u32) << 16);
        s
    }

    /// Read or Write [NVM-CS-1.0 §3.2.4, §3.2.6]: `blocks` (1..=65536)
    /// logical blocks from `slba`; CDW10/11 SLBA, CDW12 NLB (0's based).
    /// `None` for a block count out of range.
    pub const fn rw(
        op: IoOpcode,
        cid: Cid,
        nsid: Nsid,
        slba: u64,
        blocks: u32,
        prp1: u64,
        prp2: u64,
    ) -> Option<Sqe> {
        if blocks == 0 || blocks > 65536 || matches!(op, IoOpcode::Flush) {
            return None;
        }
        let mut s = Sqe::new(Opcode::Io(op), cid)
            .with_nsid(nsid)
            .with_prps(prp1, prp2);
        s.dw[CDW10] = slba as u32;
        s.dw[CDW11] = (slba >> 32) as u32;
        s.dw[CDW12] = blocks - 1;
        Some(s)
    }

    /// Flush [NVMe-2.0 §7.1]: no data pointer.
    pub const fn flush(cid: Cid, nsid: Nsid) -> Sqe {
        Sqe::new(Opcode::Io(IoOpcode::Flush), cid).with_nsid(nsid)
    }
}

/// Status Code Type [NVMe-2.0 §4.6.1.1].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusCodeType {
    /// Generic command status.
    Generic,
    /// Command specific status.
    CommandSpecific,
    /// Media and data integrity errors.
    Media,
    /// Path related status.
    Path,
    /// Vendor specific.
    Vendor,
    /// A reserved type (its value).
    Reserved(u8),
}

impl StatusCodeType {
    const fn from_bits(v: u8) -> StatusCodeType {
        match v {
            0 => StatusCodeType::Generic,
            1 => StatusCodeType::CommandSpecific,
            2 => StatusCodeType::Media,
            3 => StatusCodeType::Path,
            7 => StatusCodeType::Vendor,
            r => StatusCodeType::Reserved(r),
        }
    }
}

/// The Status field of a completion [NVMe-2.0 §4.6.1]: type, code, and
/// the More and Do Not Retry bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// SCT.
    pub sct: StatusCodeType,
    /// SC.
    pub sc: u8,
    /// CRD: command retry delay selector.
    pub crd: u8,
    /// M: more status information in the error log page.
    pub more: bool,
    /// DNR: retrying the same command is expected to fail.
    pub dnr: bool,
}

impl Status {
    /// Successful completion.
    pub const SUCCESS: Status = Status {
        sct: StatusCodeType::Generic,
        sc: 0,
        crd: 0,
        more: false,
        dnr: false,
    };

    /// Decodes the 15-bit status field (CQE DW3 bits 31:17).
    pub const fn from_field(v: u16) -> Status {
        Status {
            sc: v as u8,
            sct: StatusCodeType::from_bits(((v >> 8) & 0b111) as u8),
            crd: ((v >> 11) & 0b11) as u8,
            more: v & (1 << 13) != 0,
            dnr: v & (1 << 14) != 0,
        }
    }

    /// The 15-bit status field.
    pub const fn to_field(self) -> u16 {
        let sct = match self.sct {
            StatusCodeType::Generic => 0,
            StatusCodeType::CommandSpecific => 1,
            StatusCodeType::Media => 2,
            StatusCodeType::Path => 3,
            StatusCodeType::Vendor => 7,
            StatusCodeType::Reserved(r) => r & 0b111,
        };
        self.sc as u16
            | ((sct as u16) << 8)
            | (((self.crd & 0b11) as u16) << 11)
            | ((self.more as u16) << 13)
            | ((self.dnr as u16) << 14)
    }

    /// Whether the command succeeded.
    pub const fn is_success(self) -> bool {
        matches!(self.sct, StatusCodeType::Generic) && self.sc == 0
    }

    /// The name of a common status code, from [NVMe-2.0 §4.6.1.2]
    /// (generic), §4.6.1.2.2 (command specific, for queue creation and
    /// Identify) and §4.6.1.2.3 (media); `None` for the rest.
    pub const fn name(self) -> Option<&'static str> {
        Some(match (self.sct, self.sc) {
            (StatusCodeType::Generic, sc) => match sc {
                0x00 => "Successful Completion",
                0x01 => "Invalid Command Opcode",
                0x02 => "Invalid Field in Command",
                0x03 => "Command ID Conflict",
                0x04 => "Data Transfer Error",
                0x05 => "Commands Aborted due to Power Loss Notification",
                0x06 => "Internal Error",
                0x07 => "Command Abort Requested",
                0x08 => "Command Aborted due to SQ Deletion",
                0x0b => "Invalid Namespace or Format",
                0x0c => "Command Sequence Error",
                0x13 => "PRP Offset Invalid",
                0x80 => "LBA Out of Range",
                0x81 => "Capacity Exceeded",
                0x82 => "Namespace Not Ready",
                _ => return None,
            },
            (StatusCodeType::CommandSpecific, sc) => match sc {
                0x00 => "Completion Queue Invalid",
                0x01 => "Invalid Queue Identifier",
                0x02 => "Invalid Queue Size",
                0x08 => "Invalid Interrupt Vector",
                0x0b => "Invalid Namespace or Format",
                0x80 => "Conflicting Attributes",
                _ => return None,
            },
            (StatusCodeType::Media, sc) => match sc {
                0x80 => "Write Fault",
                0x81 => "Unrecovered Read Error",
                0x82 => "End-to-end Guard Check Error",
                0x85 => "Compare Failure",
                0x86 => "Access Denied",
                0x87 => "Deallocated or Unwritten Logical Block",
                _ => return None,
            },
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}")?,
            None => write!(f, "SCT {:?} SC {:#04x}", self.sct, self.sc)?,
        }
        if self.dnr {
            write!(f, " (DNR)")?;
        }
        Ok(())
    }
}

/// A completion queue entry [NVMe-2.0 §4.6, Figure "Common Completion
/// Queue Entry Layout"], decoded from its four dwords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cqe {
    /// DW0: command specific.
    pub dw0: u32,
    /// DW2 bits 15:0: the submission queue head after this command.
    pub sq_head: u16,
    /// DW2 bits 31:16: the submission queue the command came from.
    pub sq_id: QueueId,
    /// DW3 bits 15:0: the command's identifier.
    pub cid: Cid,
    /// DW3 bit 16: phase tag.
    pub phase: bool,
    /// DW3 bits 31:17.
    pub status: Status,
}

impl Cqe {
    /// Dword index of DW3, the one that holds the phase tag (read it first).
    pub const PHASE_DWORD: usize = 3;

    /// Whether DW3 carries phase tag `phase`.
    pub const fn dw3_phase(dw3: u32) -> bool {
        dw3 & (1 << 16) != 0
    }

    /// Decodes the four dwords (never fails: every bit pattern decodes).
    pub const fn from_dwords(dw: [u32; 4]) -> Cqe {
        Cqe {
            dw0: dw[0],
            sq_head: dw[2] as u16,
            sq_id: QueueId((dw[2] >> 16) as u16),
            cid: Cid(dw[3] as u16),
            phase: Self::dw3_phase(dw[3]),
            status: Status::from_field((dw[3] >> 17) as u16),
        }
    }

    /// Encodes (for fakes in tests).
    pub const fn to_dwords(self) -> [u32; 4] {
        [
            self.dw0,
            0,
            self.sq_head as u32 | ((self.sq_id.0 as u32) << 16),
            self.cid.0 as u32
                | ((self.phase as u32) << 16)
                | ((self.status.to_field() as u32) << 17),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::Iova;
    use proptest::prelude::*;

    #[test]
    fn identify_layout() {
        let s = Sqe::identify(Cid(7), Cns::Controller, Nsid(0), Iova::new(0x1_2345_6000));
        let d = s.dwords();
        assert_eq!(d[0], 0x0007_0006);
        assert_eq!(d[1], 0);
        assert_eq!((d[6], d[7]), (0x2345_6000, 1));
        assert_eq!(d[10], 1);
        assert_eq!(s.cid(), Cid(7));
        let b = s.to_bytes();
        assert_eq!(&b[0..4], &[0x06, 0, 7, 0]);
        assert_eq!(&b[24..32], &0x1_2345_6000u64.to_le_bytes());
    }

    #[test]
    fn queue_creation_layout() {
        let cq = Sqe::create_io_cq(Cid(1), QueueId(1), 65, Iova::new(0x4000), Some(0)).unwrap();
        let d = cq.dwords();
        assert_eq!(d[0] & 0xff, 0x05);
        assert_eq!(d[10], 0x0040_0001);
        assert_eq!(d[11], 0b11);
        let polled = Sqe::create_io_cq(Cid(1), QueueId(1), 65, Iova::new(0x4000), None).unwrap();
        assert_eq!(polled.dwords()[11], 0b01);
        let sq = Sqe::create_io_sq(
            Cid(2),
            QueueId(1),
            65,
            Iova::new(0x8000),
            QueuePriority::Medium,
            QueueId(1),
        )
        .unwrap();
        let d = sq.dwords();
        assert_eq!(d[0] & 0xff, 0x01);
        assert_eq!(d[10], 0x0040_0001);
        assert_eq!(d[11], 0x0001_0005);
        assert_eq!(sq.prp1(), 0x8000);
        assert!(
            Sqe::create_io_sq(
                Cid(0),
                QueueId(1),
                1,
                Iova::new(0),
                QueuePriority::Low,
                QueueId(1)
            )
            .is_none()
        );
        assert_eq!(Sqe::delete_io_sq(Cid(3), QueueId(1)).dwords()[10], 1);
        assert_eq!(Sqe::delete_io_cq(Cid(3), QueueId(1)).opcode(), 0x04);
        let abort = Sqe::abort(Cid(9), QueueId(1), Cid(0x1234));
        assert_eq!(abort.opcode(), 0x08);
        assert_eq!(abort.cid(), Cid(9));
        assert_eq!(abort.cdw(10), Some(0x1234_0001));
        assert_eq!((abort.prp1(), abort.prp2()), (0, 0));
        assert_eq!(abort.dwords()[1], 0, "no namespace");
    }

    #[test]
    fn io_layout() {
        let r = Sqe::rw(
            IoOpcode::Read,
            Cid(9),
            Nsid(1),
            0x1_0000_0002,
            8,
            0x1000,
            0x2000,
        )
        .unwrap();
        let d = r.dwords();
        assert_eq!(d[0], 0x0009_0002);
        assert_eq!(d[1], 1);
        assert_eq!((d[10], d[11], d[12]), (2, 1, 7));
        assert_eq!((r.prp1(), r.prp2()), (0x1000, 0x2000));
        let w = Sqe::rw(IoOpcode::Write, Cid(9), Nsid(1), 0, 1, 0x1000, 0).unwrap();
        assert_eq!(w.opcode(), 0x01);
        assert_eq!(w.cdw(12), Some(0));
        assert_eq!(w.cdw(9), None);
        assert!(Sqe::rw(IoOpcode::Read, Cid(0), Nsid(1), 0, 0, 0, 0).is_none());
        assert!(Sqe::rw(IoOpcode::Flush, Cid(0), Nsid(1), 0, 1, 0, 0).is_none());
        let f = Sqe::flush(Cid(4), Nsid(1));
        assert_eq!(f.dwords()[0], 0x0004_0000);
        assert_eq!(f.prp1(), 0);
    }

    #[test]
    fn completion_decodes() {
        // CID 5, phase 1, SCT 0 SC 0x80 (LBA out of range), DNR.
        let dw3 = 5 | (1 << 16) | (0x80 << 17) | (1 << 31);
        let c = Cqe::from_dwords([0xdead, 0, 0x0001_0003, dw3]);
        assert_eq!(c.cid, Cid(5));
        assert!(c.phase);
        assert_eq!(c.sq_head, 3);
        assert_eq!(c.sq_id, QueueId(1));
        assert_eq!(c.status.sct, StatusCodeType::Generic);
        assert_eq!(c.status.sc, 0x80);
        assert!(c.status.dnr);
        assert!(!c.status.is_success());
        assert_eq!(c.status.name(), Some("LBA Out of Range"));
        assert_eq!(format!("{}", c.status), "LBA Out of Range (DNR)");
        let media = Status::from_field((2 << 8) | 0x81);
        assert_eq!(media.name(), Some("Unrecovered Read Error"));
        let odd = Status::from_field((5 << 8) | 0x42);
        assert_eq!(odd.sct, StatusCodeType::Reserved(5));
        assert_eq!(format!("{odd}"), "SCT Reserved(5) SC 0x42");
        assert!(Cqe::from_dwords([0, 0, 0, 1 << 16]).status.is_success());
    }

    proptest! {
        #[test]
        fn cqe_round_trips(dw0 in any::<u32>(), dw2 in any::<u32>(), dw3 in any::<u32>()) {
            let c = Cqe::from_dwords([dw0, 0, dw2, dw3]);
            // SCT 4..=6 are reserved and round-trip as such.
            prop_assert_eq!(c.to_dwords(), [dw0, 0, dw2, dw3]);
        }

        #[test]
        fn rw_fields_round_trip(slba in any::<u64>(), blocks in 1u32..=65536, cid in any::<u16>(), p1 in any::<u64>(), p2 in any::<u64>()) {
            let s = Sqe::rw(IoOpcode::Write, Cid(cid), Nsid(1), slba, blocks, p1, p2).unwrap();
            let d = s.dwords();
            prop_assert_eq!(d[10] as u64 | ((d[11] as u64) << 32), slba);
            prop_assert_eq!(d[12] + 1, blocks);
            prop_assert_eq!(s.cid(), Cid(cid));
            prop_assert_eq!((s.prp1(), s.prp2()), (p1, p2));
        }
    }
}

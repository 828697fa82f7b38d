//! Event queue records [SMMUv3 §7.3]: decoding the 32-byte records the SMMU
//! writes into a typed [`Event`] for fault attribution and reports, and
//! encoding them for the host-side SMMU model that produces them.

use core::fmt;

use abi::{Iova, PAGE_SHIFT, PhysAddr, StreamId};

use crate::bits::{bit, get, set, set_bit};

/// 64-bit words in an event record (32 bytes) [SMMUv3 §7.3].
pub const EVT_DWORDS: usize = 4;

/// Event numbers, bits `[7:0]` of every record [SMMUv3 §7.3.2-§7.3.20].
pub mod event_id {
    /// F_UUT: unsupported upstream transaction [SMMUv3 §7.3.2].
    pub const F_UUT: u8 = 0x01;
    /// C_BAD_STREAMID: StreamID out of range [SMMUv3 §7.3.3].
    pub const C_BAD_STREAMID: u8 = 0x02;
    /// F_STE_FETCH: abort fetching an STE [SMMUv3 §7.3.4].
    pub const F_STE_FETCH: u8 = 0x03;
    /// C_BAD_STE: STE invalid or ILLEGAL [SMMUv3 §7.3.5].
    pub const C_BAD_STE: u8 = 0x04;
    /// F_BAD_ATS_TREQ: ATS request disallowed [SMMUv3 §7.3.6].
    pub const F_BAD_ATS_TREQ: u8 = 0x05;
    /// F_STREAM_DISABLED: non-substream traffic disabled [SMMUv3 §7.3.7].
    pub const F_STREAM_DISABLED: u8 = 0x06;
    /// F_TRANSL_FORBIDDEN: Translated traffic not allowed [SMMUv3 §7.3.8].
    pub const F_TRANSL_FORBIDDEN: u8 = 0x07;
    /// C_BAD_SUBSTREAMID: SubstreamID not allowed [SMMUv3 §7.3.9].
    pub const C_BAD_SUBSTREAMID: u8 = 0x08;
    /// F_CD_FETCH: abort fetching a CD [SMMUv3 §7.3.10].
    pub const F_CD_FETCH: u8 = 0x09;
    /// C_BAD_CD: CD invalid or ILLEGAL [SMMUv3 §7.3.11].
    pub const C_BAD_CD: u8 = 0x0A;
    /// F_WALK_EABT: abort fetching a translation table descriptor [SMMUv3 §7.3.12].
    pub const F_WALK_EABT: u8 = 0x0B;
    /// F_TRANSLATION: no valid translation [SMMUv3 §7.3.13].
    pub const F_TRANSLATION: u8 = 0x10;
    /// F_ADDR_SIZE: output address too large [SMMUv3 §7.3.14].
    pub const F_ADDR_SIZE: u8 = 0x11;
    /// F_ACCESS: Access flag fault [SMMUv3 §7.3.15].
    pub const F_ACCESS: u8 = 0x12;
    /// F_PERMISSION: permission fault [SMMUv3 §7.3.16].
    pub const F_PERMISSION: u8 = 0x13;
    /// F_TLB_CONFLICT [SMMUv3 §7.3.17].
    pub const F_TLB_CONFLICT: u8 = 0x20;
    /// F_CFG_CONFLICT [SMMUv3 §7.3.18].
    pub const F_CFG_CONFLICT: u8 = 0x21;
    /// E_PAGE_REQUEST: speculative page request hint [SMMUv3 §7.3.19].
    pub const E_PAGE_REQUEST: u8 = 0x24;
    /// F_VMS_FETCH: abort fetching a VMS [SMMUv3 §7.3.20].
    pub const F_VMS_FETCH: u8 = 0x25;
}

/// The event type of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// F_UUT.
    Uut,
    /// C_BAD_STREAMID.
    BadStreamId,
    /// F_STE_FETCH.
    SteFetch,
    /// C_BAD_STE.
    BadSte,
    /// F_BAD_ATS_TREQ.
    BadAtsTreq,
    /// F_STREAM_DISABLED.
    StreamDisabled,
    /// F_TRANSL_FORBIDDEN.
    TranslForbidden,
    /// C_BAD_SUBSTREAMID.
    BadSubstreamId,
    /// F_CD_FETCH.
    CdFetch,
    /// C_BAD_CD.
    BadCd,
    /// F_WALK_EABT.
    WalkEabt,
    /// F_TRANSLATION.
    Translation,
    /// F_ADDR_SIZE.
    AddrSize,
    /// F_ACCESS.
    Access,
    /// F_PERMISSION.
    Permission,
    /// F_TLB_CONFLICT.
    TlbConflict,
    /// F_CFG_CONFLICT.
    CfgConflict,
    /// E_PAGE_REQUEST.
    PageRequest,
    /// F_VMS_FETCH.
    VmsFetch,
    /// Any other number (IMPLEMENTATION DEFINED 0xE0..0xEF, or later
    /// architecture); software treats it as non-fatal [SMMUv3 §7.3].
    Unknown(u8),
}

impl EventKind {
    /// The kind for an event number.
    pub const fn from_id(id: u8) -> Self {
        use event_id::*;
        match id {
            F_UUT => EventKind::Uut,
            C_BAD_STREAMID => EventKind::BadStreamId,
            F_STE_FETCH => EventKind::SteFetch,
            C_BAD_STE => EventKind::BadSte,
            F_BAD_ATS_TREQ => EventKind::BadAtsTreq,
            F_STREAM_DISABLED => EventKind::StreamDisabled,
            F_TRANSL_FORBIDDEN => EventKind::TranslForbidden,
            C_BAD_SUBSTREAMID => EventKind::BadSubstreamId,
            F_CD_FETCH => EventKind::CdFetch,
            C_BAD_CD => EventKind::BadCd,
            F_WALK_EABT => EventKind::WalkEabt,
            F_TRANSLATION => EventKind::Translation,
            F_ADDR_SIZE => EventKind::AddrSize,
            F_ACCESS => EventKind::Access,
            F_PERMISSION => EventKind::Permission,
            F_TLB_CONFLICT => EventKind::TlbConflict,
            F_CFG_CONFLICT => EventKind::CfgConflict,
            E_PAGE_REQUEST => EventKind::PageRequest,
            F_VMS_FETCH => EventKind::VmsFetch,
            other => EventKind::Unknown(other),
        }
    }

    /// The event number.
    pub const fn id(self) -> u8 {
        use event_id::*;
        match self {
            EventKind::Uut => F_UUT,
            EventKind::BadStreamId => C_BAD_STREAMID,
            EventKind::SteFetch => F_STE_FETCH,
            EventKind::BadSte => C_BAD_STE,
            EventKind::BadAtsTreq => F_BAD_ATS_TREQ,
            EventKind::StreamDisabled => F_STREAM_DISABLED,
            EventKind::TranslForbidden => F_TRANSL_FORBIDDEN,
            EventKind::BadSubstreamId => C_BAD_SUBSTREAMID,
            EventKind::CdFetch => F_CD_FETCH,
            EventKind::BadCd => C_BAD_CD,
            EventKind::WalkEabt => F_WALK_EABT,
            EventKind::Translation => F_TRANSLATION,
            EventKind::AddrSize => F_ADDR_SIZE,
            EventKind::Access => F_ACCESS,
            EventKind::Permission => F_PERMISSION,
            EventKind::TlbConflict => F_TLB_CONFLICT,
            EventKind::CfgConflict => F_CFG_CONFLICT,
            EventKind::PageRequest => E_PAGE_REQUEST,
            EventKind::VmsFetch => F_VMS_FETCH,
            EventKind::Unknown(id) => id,
        }
    }

    /// The architectural name, e.g. `F_TRANSLATION`.
    pub const fn name(self) -> &'static str {
        match self {
            EventKind::Uut => "F_UUT",
            EventKind::BadStreamId => "C_BAD_STREAMID",
            EventKind::SteFetch => "F_STE_FETCH",
            EventKind::BadSte => "C_BAD_STE",
            EventKind::BadAtsTreq => "F_BAD_ATS_TREQ",
            EventKind::StreamDisabled => "F_STREAM_DISABLED",
            EventKind::TranslForbidden => "F_TRANSL_FORBIDDEN",
            EventKind::BadSubstreamId => "C_BAD_SUBSTREAMID",
            EventKind::CdFetch => "F_CD_FETCH",
            EventKind::BadCd => "C_BAD_CD",
            EventKind::WalkEabt => "F_WALK_EABT",
            EventKind::Translation => "F_TRANSLATION",
            EventKind::AddrSize => "F_ADDR_SIZE",
            EventKind::Access => "F_ACCESS",
            EventKind::Permission => "F_PERMISSION",
            EventKind::TlbConflict => "F_TLB_CONFLICT",
            EventKind::CfgConflict => "F_CFG_CONFLICT",
            EventKind::PageRequest => "E_PAGE_REQUEST",
            EventKind::VmsFetch => "F_VMS_FETCH",
            EventKind::Unknown(_) => "EVENT",
        }
    }

    /// The four Translation-related faults governed by CD.{A,R,S}
    /// [SMMUv3 §5.5]: the ones a misbehaving device causes.
    pub const fn is_translation_fault(self) -> bool {
        matches!(
            self,
            EventKind::Translation
                | EventKind::AddrSize
                | EventKind::Access
                | EventKind::Permission
        )
    }

    /// Whether the record carries the transaction's InputAddr (word 2) and
    /// its RnW/InD/PnU attributes.
    pub const fn has_input(self) -> bool {
        matches!(
            self,
            EventKind::Uut
                | EventKind::BadAtsTreq
                | EventKind::StreamDisabled
                | EventKind::TranslForbidden
                | EventKind::WalkEabt
                | EventKind::Translation
                | EventKind::AddrSize
                | EventKind::Access
                | EventKind::Permission
                | EventKind::TlbConflict
                | EventKind::CfgConflict
                | EventKind::PageRequest
        )
    }

    /// Whether word 3 is a `FetchAddr[55:3]` (structure or descriptor fetch).
    pub const fn has_fetch_addr(self) -> bool {
        matches!(
            self,
            EventKind::SteFetch | EventKind::CdFetch | EventKind::WalkEabt | EventKind::VmsFetch
        )
    }
}

/// CLASS: what the faulting access was doing [SMMUv3 §7.3].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultClass {
    /// CD fetch (0b00).
    Cd,
    /// Stage-1 translation table fetch (0b01).
    Ttd,
    /// The input address itself (0b10).
    In,
    /// Reserved (0b11).
    Reserved,
}

impl FaultClass {
    const fn from_bits(v: u64) -> Self {
        match v & 3 {
            0 => FaultClass::Cd,
            1 => FaultClass::Ttd,
            2 => FaultClass::In,
            _ => FaultClass::Reserved,
        }
    }
    const fn bits(self) -> u64 {
        match self {
            FaultClass::Cd => 0,
            FaultClass::Ttd => 1,
            FaultClass::In => 2,
            FaultClass::Reserved => 3,
        }
    }
}

/// A decoded event record. Fields that a given event type does not define
/// are RES0 in the record and decode as zero/false.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Event type.
    pub kind: EventKind,
    /// StreamID of the transaction: whose device it was.
    pub sid: StreamId,
    /// SubstreamID, when SSV == 1.
    pub ssid: Option<u32>,
    /// STAG: stall tag, for CMD_RESUME (valid when `stall`).
    pub stag: u16,
    /// Stall: the transaction is stalled awaiting CMD_RESUME.
    pub stall: bool,
    /// PnU: privileged access.
    pub pnu: bool,
    /// InD: instruction fetch.
    pub ind: bool,
    /// RnW: read (true) or write (false).
    pub rnw: bool,
    /// S2: the fault arose at stage 2.
    pub s2: bool,
    /// CLASS.
    pub class: FaultClass,
    /// InputAddr: the address the device used (an IOVA at stage 1).
    pub input_addr: u64,
    /// Word 3: `FetchAddr[55:3]` for fetch aborts, `IPA[55:12]` for stage-2
    /// translation faults, otherwise 0.
    pub addr2: u64,
}

const fn addr2_mask(kind: EventKind) -> u64 {
    if kind.has_fetch_addr() {
        ((1 << 56) - 1) & !0x7
    } else if kind.is_translation_fault() {
        ((1 << 56) - 1) & !0xfff
    } else {
        0
    }
}

impl Event {
    /// A Translation-related fault record as the model produces one:
    /// stage 1, CLASS = IN, not stalled.
    pub const fn translation_fault(kind: EventKind, sid: StreamId, iova: Iova, read: bool) -> Self {
        Self {
            kind,
            sid,
            ssid: None,
            stag: 0,
            stall: false,
            pnu: false,
            ind: false,
            rnw: read,
            s2: false,
            class: FaultClass::In,
            input_addr: iova.get(),
            addr2: 0,
        }
    }

    /// Decodes a record [SMMUv3 §7.3].
    pub const fn decode(r: &[u64; EVT_DWORDS]) -> Event {
        let kind = EventKind::from_id(get(r[0], 7, 0) as u8);
        Event {
            kind,
            sid: StreamId(get(r[0], 63, 32) as u32),
            ssid: if bit(r[0], 11) {
                Some(get(r[0], 31, 12) as u32)
            } else {
                None
            },
            stag: get(r[1], 15, 0) as u16,
            stall: bit(r[1], 31),
            pnu: bit(r[1], 33),
            ind: bit(r[1], 34),
            rnw: bit(r[1], 35),
            s2: bit(r[1], 39),
            class: FaultClass::from_bits(get(r[1], 41, 40)),
            input_addr: r[2],
            addr2: r[3] & addr2_mask(kind),
        }
    }

    /// Encodes the record (for the host SMMU model).
    pub const fn encode(&self) -> [u64; EVT_DWORDS] {
        let mut w0 = set(0, 7, 0, self.kind.id() as u64);
        w0 = set(w0, 63, 32, self.sid.0 as u64);
        if let Some(ss) = self.ssid {
            w0 = set_bit(w0, 11, true);
            w0 = set(w0, 31, 12, ss as u64);
        }
        let mut w1 = set(0, 15, 0, self.stag as u64);
        w1 = set_bit(w1, 31, self.stall);
        w1 = set_bit(w1, 33, self.pnu);
        w1 = set_bit(w1, 34, self.ind);
        w1 = set_bit(w1, 35, self.rnw);
        w1 = set_bit(w1, 39, self.s2);
        w1 = set(w1, 41, 40, self.class.bits());
        [w0, w1, self.input_addr, self.addr2 & addr2_mask(self.kind)]
    }

    /// The faulting IOVA, for Translation-related faults at stage 1.
    pub const fn iova(&self) -> Option<Iova> {
        if self.kind.is_translation_fault() && !self.s2 {
            Some(Iova::new(self.input_addr))
        } else {
            None
        }
    }

    /// The structure or descriptor address whose fetch aborted.
    pub const fn fetch_addr(&self) -> Option<PhysAddr> {
        if self.kind.has_fetch_addr() {
            Some(PhysAddr::new(self.addr2))
        } else {
            None
        }
    }

    /// Key for coalescing the flood of records one faulting DMA produces
    /// (QEMU writes one per 4 bytes): (StreamID, kind, 4 KiB page of the
    /// input address).
    pub const fn coalesce_key(&self) -> (StreamId, EventKind, u64) {
        (self.sid, self.kind, self.input_addr >> PAGE_SHIFT)
    }
}

impl fmt::Display for Event {
    /// E.g. `F_TRANSLATION sid 0x8 addr 0x12345678 write data unpriv class IN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.name())?;
        if let EventKind::Unknown(id) = self.kind {
            write!(f, " {id:#04x}")?;
        }
        write!(f, " sid {}", self.sid)?;
        if let Some(ss) = self.ssid {
            write!(f, " ssid {ss:#x}")?;
        }
        if self.kind.has_input() {
            write!(
                f,
                " addr {:#x} {} {} {}",
                self.input_addr,
                if self.rnw { "read" } else { "write" },
                if self.ind { "insn" } else { "data" },
                if self.pnu { "priv" } else { "unpriv" },
            )?;
        }
        if self.kind.is_translation_fault() || self.kind == EventKind::WalkEabt {
            let class = match self.class {
                FaultClass::Cd => "CD",
                FaultClass::Ttd => "TTD",
                FaultClass::In => "IN",
                FaultClass::Reserved => "?",
            };
            write!(f, " class {class}")?;
            if self.s2 {
                write!(f, " stage 2 ipa {:#x}", self.addr2)?;
            }
        }
        if let Some(a) = self.fetch_addr() {
            write!(f, " fetch {a:#x}")?;
        }
        if self.stall {
            write!(f, " stalled stag {:#x}", self.stag)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn translation_fault_layout() {
        // As QEMU writes it for an NVMe write into an unmapped IOVA.
        let r = [
            (0x8u64 << 32) | 0x10,
            1 << 40, // CLASS = TTD, RnW = 0 (write)
            0x1_2345_6788,
            0,
        ];
        let e = Event::decode(&r);
        assert_eq!(e.kind, EventKind::Translation);
        assert_eq!(e.sid, StreamId(8));
        assert_eq!(e.ssid, None);
        assert!(!e.rnw && !e.stall && !e.s2);
        assert_eq!(e.class, FaultClass::Ttd);
        assert_eq!(e.iova(), Some(Iova::new(0x1_2345_6788)));
        assert_eq!(e.encode(), r);
        assert_eq!(
            format!("{e}"),
            "F_TRANSLATION sid 0x8 addr 0x123456788 write data unpriv class TTD"
        );
        let f = Event::translation_fault(
            EventKind::Permission,
            StreamId(0x10),
            Iova::new(0x5000),
            true,
        );
        let d = Event::decode(&f.encode());
        assert_eq!(d, f);
        assert_eq!(
            format!("{d}"),
            "F_PERMISSION sid 0x10 addr 0x5000 read data unpriv class IN"
        );
        assert_eq!(d.coalesce_key(), (StreamId(0x10), EventKind::Permission, 5));
    }

    #[test]
    fn fetch_and_config_events() {
        let r = [(0x10u64 << 32) | 0x03, 0, 0, 0x4000_1040];
        let e = Event::decode(&r);
        assert_eq!(e.kind, EventKind::SteFetch);
        assert_eq!(e.fetch_addr(), Some(PhysAddr::new(0x4000_1040)));
        assert_eq!(e.iova(), None);
        assert_eq!(format!("{e}"), "F_STE_FETCH sid 0x10 fetch 0x40001040");
        let e = Event::decode(&[(0x8u64 << 32) | 0x04, 0, 0, 0]);
        assert_eq!(format!("{e}"), "C_BAD_STE sid 0x8");
        let e = Event::decode(&[(0x8u64 << 32) | (1 << 11) | (7 << 12) | 0x08, 0, 0, 0]);
        assert_eq!(e.kind, EventKind::BadSubstreamId);
        assert_eq!(e.ssid, Some(7));
        let e = Event::decode(&[0xe3, 0, 0, 0]);
        assert_eq!(e.kind, EventKind::Unknown(0xe3));
        assert_eq!(format!("{e}"), "EVENT 0xe3 sid 0x0");
        let stalled = Event {
            stall: true,
            stag: 0x42,
            ..Event::translation_fault(EventKind::Access, StreamId(1), Iova::new(0), false)
        };
        assert!(format!("{stalled}").ends_with("stalled stag 0x42"));
    }

    #[test]
    fn every_id_round_trips() {
        for id in 0..=255u8 {
            let k = EventKind::from_id(id);
            assert_eq!(k.id(), id);
            if !matches!(k, EventKind::Unknown(_)) {
                assert!(k.name().starts_with(['F', 'C', 'E']));
            }
        }
        assert_eq!(EventKind::from_id(0x25), EventKind::VmsFetch);
        assert_eq!(EventKind::from_id(0x24), EventKind::PageRequest);
        assert_eq!(EventKind::from_id(0x21), EventKind::CfgConflict);
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            id in any::<u8>(),
            sid in any::<u32>(),
            ssid in proptest::option::of(0u32..(1 << 20)),
            stag in any::<u16>(),
            flags in 0u8..32,
            class in 0u64..4,
            input in any::<u64>(),
            addr2 in any::<u64>(),
        ) {
            let kind = EventKind::from_id(id);
            let e = Event {
                kind,
                sid: StreamId(sid),
                ssid,
                stag,
                stall: flags & 1 != 0,
                pnu: flags & 2 != 0,
                ind: flags & 4 != 0,
                rnw: flags & 8 != 0,
                s2: flags & 16 != 0,
                class: FaultClass::from_bits(class),
                input_addr: input,
                addr2: addr2 & addr2_mask(kind),
            };
            prop_assert_eq!(Event::decode(&e.encode()), e);
        }
    }
}

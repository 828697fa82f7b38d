//! The block protocol's wire forms, written once per type: its list
//! entries ([`WireEntry`]: the 24-byte [`Io`], the 8-byte [`Completion`])
//! and its fields ([`RequestField`], [`ResponseField`]: `Reap`'s two
//! `u16`s in the request header's `arg`, [`BenchMode`] in `arg` plus one
//! 8-byte entry, [`Info`], [`BlockStats`], the lists). The traits and the
//! layout of fields one after another are `ipc-proto`'s; the protocol
//! declaration (`protocol.rs`) names field types only.
//!
//! Reading never panics, never allocates, and refuses what the protocol
//! never sends (reserved bytes, unknown codes, wrong sizes).

use ipc_proto::wire::{put, u16_at, u32_at, u64_at, zero};
use ipc_proto::{List, Refused, RequestField, ResponseField, WireEntry};

use crate::{
    BenchMode, BlockError, BlockStats, COMPLETION_BYTES, Completion, INFO_BYTES, IO_BYTES, Info,
    Io, IoKind, MAX_COMPLETIONS, MAX_IOS,
};

ipc_proto::u16_wire_error!(BlockError);

/// `{tag: u16, kind: u8, flags: u8, sectors: u32, lba: u64, offset: u64}`;
/// an unknown kind is `UnknownOp`.
impl WireEntry for Io {
    const SIZE: usize = IO_BYTES;

    fn read(b: &[u8]) -> Result<Io, Refused> {
        let (Some(tag), Some(&kind), Some(&flags), Some(sectors), Some(lba), Some(offset)) = (
            u16_at(b, 0),
            b.get(2),
            b.get(3),
            u32_at(b, 4),
            u64_at(b, 8),
            u64_at(b, 16),
        ) else {
            return Err(Refused::Malformed);
        };
        let kind = match kind {
            1 => IoKind::Read,
            2 => IoKind::Write,
            3 => IoKind::Flush,
            _ => return Err(Refused::UnknownOp),
        };
        if b.len() != Self::SIZE {
            return Err(Refused::Malformed);
        }
        Ok(Io {
            tag,
            kind,
            flags,
            sectors,
            lba,
            offset,
        })
    }

    fn write(&self, b: &mut [u8]) {
        put(b, 0, &self.tag.to_le_bytes());
        put(b, 2, &[self.kind as u8, self.flags]);
        put(b, 4, &self.sectors.to_le_bytes());
        put(b, 8, &self.lba.to_le_bytes());
        put(b, 16, &self.offset.to_le_bytes());
    }
}

/// `{tag: u16, status: u16 (0 or a BlockError code), 0: u32}`.
impl WireEntry for Completion {
    const SIZE: usize = COMPLETION_BYTES;

    fn read(b: &[u8]) -> Result<Completion, Refused> {
        let (Some(tag), Some(code)) = (u16_at(b, 0), u16_at(b, 2)) else {
            return Err(Refused::Malformed);
        };
        if b.len() != Self::SIZE || !zero(b, 4, 8) {
            return Err(Refused::Malformed);
        }
        let status = match code {
            0 => Ok(()),
            c => Err(BlockError::from_code(c).ok_or(Refused::Malformed)?),
        };
        Ok(Completion { tag, status })
    }

    fn write(&self, b: &mut [u8]) {
        put(b, 0, &self.tag.to_le_bytes());
        put(
            b,
            2,
            &self.status.err().map_or(0, BlockError::code).to_le_bytes(),
        );
        put(b, 4, &[0; 4]);
    }
}

// `Reap`'s `min` and `max`: sixteen bits of `arg` each.
ipc_proto::u16_arg_field!(BlockError);

/// The mode's code in `arg` (1 bypass, 2 strict-per-unmap, 3 strict, 4
/// deferred), then one 8-byte `{max_entries: u32, max_age_us: u32}`:
/// both non-zero for deferred, both 0 otherwise.
impl RequestField<'_, BlockError> for BenchMode {
    const ENTRY: usize = 8;
    const ARG_BITS: u32 = 32;
    fn arg(&self) -> u32 {
        self.code()
    }
    fn write(&self, out: &mut [u8]) -> Result<(), BlockError> {
        let (n, t) = match *self {
            BenchMode::Deferred {
                max_entries,
                max_age_us,
            } => (max_entries, max_age_us),
            _ => (0, 0),
        };
        put(out, 0, &n.to_le_bytes());
        put(out, 4, &t.to_le_bytes());
        Ok(())
    }
    fn read(arg: u32, b: &[u8]) -> Result<Self, BlockError> {
        let (Some(n), Some(t)) = (u32_at(b, 0), u32_at(b, 4)) else {
            return Err(BlockError::Malformed);
        };
        match (arg, n, t) {
            (1, 0, 0) => Ok(BenchMode::Bypass),
            (2, 0, 0) => Ok(BenchMode::StrictPerUnmap),
            (3, 0, 0) => Ok(BenchMode::Strict),
            (4, n, t) if n > 0 && t > 0 => Ok(BenchMode::Deferred {
                max_entries: n,
                max_age_us: t,
            }),
            _ => Err(BlockError::Malformed),
        }
    }
}

/// 1..=[`MAX_IOS`] 24-byte I/Os.
impl<'a> RequestField<'a, BlockError> for List<'a, Io> {
    const ENTRY: usize = IO_BYTES;
    const MAX: usize = MAX_IOS;
    fn entries(&self) -> usize {
        self.len()
    }
    fn write(&self, out: &mut [u8]) -> Result<(), BlockError> {
        if self.write_all(out) {
            Ok(())
        } else {
            Err(BlockError::Malformed)
        }
    }
    fn read(_arg: u32, b: &'a [u8]) -> Result<Self, BlockError> {
        Ok(List::from_wire(b, b.len() / IO_BYTES)?)
    }
}

/// One 24-byte `{sectors: u64, sector_size: u32, max_transfer: u32,
/// queue_depth: u16, device_kind: u16, 0: u32}`.
impl ResponseField<'_, BlockError> for Info {
    const ENTRY: usize = INFO_BYTES;
    fn write(&self, out: &mut [u8]) {
        put(out, 0, &self.sectors.to_le_bytes());
        put(out, 8, &self.sector_size.to_le_bytes());
        put(out, 12, &self.max_transfer.to_le_bytes());
        put(out, 16, &self.queue_depth.to_le_bytes());
        put(out, 18, &self.device_kind.to_le_bytes());
        put(out, 20, &[0; 4]);
    }
    fn read(b: &[u8]) -> Result<Self, BlockError> {
        match (
            u64_at(b, 0),
            u32_at(b, 8),
            u32_at(b, 12),
            u16_at(b, 16),
            u16_at(b, 18),
        ) {
            (
                Some(sectors),
                Some(sector_size),
                Some(max_transfer),
                Some(queue_depth),
                Some(kind),
            ) if b.len() == INFO_BYTES && zero(b, 20, 24) => Ok(Info {
                sectors,
                sector_size,
                max_transfer,
                queue_depth,
                device_kind: kind,
            }),
            _ => Err(BlockError::Malformed),
        }
    }
}

ipc_proto::counters_field!(BlockStats, BlockError);

/// 1..=[`MAX_COMPLETIONS`] 8-byte completions.
impl<'a> ResponseField<'a, BlockError> for List<'a, Completion> {
    const ENTRY: usize = COMPLETION_BYTES;
    const MAX: usize = MAX_COMPLETIONS;
    fn entries(&self) -> usize {
        self.len()
    }
    fn write(&self, out: &mut [u8]) {
        self.write_all(out);
    }
    fn read(b: &'a [u8]) -> Result<Self, BlockError> {
        Ok(List::from_wire(b, b.len() / COMPLETION_BYTES)?)
    }
}

//! The IOMMU protocol's field wire forms, written once per field type:
//! [`RequestField`] (16-byte entries after the request header, whose `arg`
//! stays 0) and [`ResponseField`] (entries of the type's own size after
//! the response header); the traits and the layout of fields one after
//! another are `ipc-proto`'s. The protocol declaration (`protocol.rs`)
//! names field types only.
//!
//! Reading never panics, never allocates, and refuses anything but what
//! writing produces (non-zero reserved bytes, unknown codes, wrong sizes).

use abi::{Iova, StreamId};

use ipc_proto::wire::{put, u32_at, u64_at, zero};
use ipc_proto::{List, RequestField, ResponseField, WireEntry};

use crate::error::ApiError;
use crate::list::{Extent, FaultRecord};
use crate::overview::{ClientSummary, MAX_OVERVIEW_CLIENTS, ServerTotals};
use crate::policy::InvalidationPolicy;
use crate::request::Dir;
use crate::response::Stats;
use crate::{ENTRY_BYTES, MAX_FAULT_RECORDS, MAX_MAP_ENTRIES, MAX_REQUEST_ENTRIES};

/// The parameter byte of a 16-byte entry whose other bytes are zero.
fn param_byte(b: &[u8]) -> Result<u8, ApiError> {
    match b.first() {
        Some(&p) if b.len() == ENTRY_BYTES && zero(b, 1, ENTRY_BYTES) => Ok(p),
        _ => Err(ApiError::Malformed),
    }
}

/// `{v: u8, 15 zero bytes}`.
impl RequestField<'_, ApiError> for u8 {
    const ENTRY: usize = ENTRY_BYTES;
    fn write(&self, out: &mut [u8]) -> Result<(), ApiError> {
        put(out, 0, &[*self]);
        Ok(())
    }
    fn read(_arg: u32, b: &[u8]) -> Result<Self, ApiError> {
        param_byte(b)
    }
}

/// `{dir: u8, 15 zero bytes}`.
impl RequestField<'_, ApiError> for Dir {
    const ENTRY: usize = ENTRY_BYTES;
    fn write(&self, out: &mut [u8]) -> Result<(), ApiError> {
        put(out, 0, &[*self as u8]);
        Ok(())
    }
    fn read(_arg: u32, b: &[u8]) -> Result<Self, ApiError> {
        Dir::from_code(param_byte(b)?).ok_or(ApiError::Malformed)
    }
}

/// `{v: u32, 12 zero bytes}`.
impl RequestField<'_, ApiError> for u32 {
    const ENTRY: usize = ENTRY_BYTES;
    fn write(&self, out: &mut [u8]) -> Result<(), ApiError> {
        put(out, 0, &self.to_le_bytes());
        Ok(())
    }
    fn read(_arg: u32, b: &[u8]) -> Result<Self, ApiError> {
        match u32_at(b, 0) {
            Some(v) if b.len() == ENTRY_BYTES && zero(b, 4, ENTRY_BYTES) => Ok(v),
            _ => Err(ApiError::Malformed),
        }
    }
}

/// `SetPolicy`'s parameter entry: `{kind: u8, 0: u8, 0: u16, max_entries:
/// u32, max_age_us: u64}`.
mod policy_kind {
    pub const STRICT: u8 = 1;
    pub const STRICT_PER_UNMAP: u8 = 2;
    pub const DEFERRED: u8 = 3;
    pub const BYPASS: u8 = 4;
}

impl RequestField<'_, ApiError> for InvalidationPolicy {
    const ENTRY: usize = ENTRY_BYTES;
    fn write(&self, out: &mut [u8]) -> Result<(), ApiError> {
        let (kind, n, t) = match *self {
            InvalidationPolicy::Strict => (policy_kind::STRICT, 0, 0),
            InvalidationPolicy::StrictPerUnmap => (policy_kind::STRICT_PER_UNMAP, 0, 0),
            InvalidationPolicy::Deferred {
                max_entries,
                max_age_us,
            } => (policy_kind::DEFERRED, max_entries, max_age_us),
            InvalidationPolicy::Bypass => (policy_kind::BYPASS, 0, 0),
        };
        let mut e = [0u8; ENTRY_BYTES];
        e[0] = kind;
        put(&mut e, 4, &n.to_le_bytes());
        put(&mut e, 8, &t.to_le_bytes());
        Self::read(0, &e)?;
        put(out, 0, &e);
        Ok(())
    }
    fn read(_arg: u32, e: &[u8]) -> Result<Self, ApiError> {
        let (Some(&kind), Some(n), Some(t)) = (e.first(), u32_at(e, 4), u64_at(e, 8)) else {
            return Err(ApiError::Malformed);
        };
        if e.len() != ENTRY_BYTES || !zero(e, 1, 4) {
            return Err(ApiError::Malformed);
        }
        let policy = match kind {
            policy_kind::STRICT => InvalidationPolicy::Strict,
            policy_kind::STRICT_PER_UNMAP => InvalidationPolicy::StrictPerUnmap,
            policy_kind::BYPASS => InvalidationPolicy::Bypass,
            policy_kind::DEFERRED => {
                return InvalidationPolicy::deferred(n, t).map_err(|_| ApiError::Malformed);
            }
            _ => return Err(ApiError::Malformed),
        };
        if n != 0 || t != 0 {
            return Err(ApiError::Malformed);
        }
        Ok(policy)
    }
}

/// 1.. `{start: u64, len: u64}` entries, as many as the message holds.
impl<'a> RequestField<'a, ApiError> for List<'a, Extent> {
    const ENTRY: usize = ENTRY_BYTES;
    const MAX: usize = MAX_REQUEST_ENTRIES;
    fn entries(&self) -> usize {
        self.len()
    }
    fn write(&self, out: &mut [u8]) -> Result<(), ApiError> {
        if self.write_all(out) {
            Ok(())
        } else {
            Err(ApiError::Malformed)
        }
    }
    fn read(_arg: u32, b: &'a [u8]) -> Result<Self, ApiError> {
        Ok(List::from_wire(b, b.len() / Extent::SIZE)?)
    }
}

const _: () = assert!(Extent::SIZE == ENTRY_BYTES);

/// An 8-byte `{v: u32, 0: u32}`.
fn write_u32_entry(v: u32, out: &mut [u8]) {
    put(out, 0, &v.to_le_bytes());
    put(out, 4, &[0; 4]);
}

fn read_u32_entry(b: &[u8]) -> Result<u32, ApiError> {
    match u32_at(b, 0) {
        Some(v) if b.len() == 8 && zero(b, 4, 8) => Ok(v),
        _ => Err(ApiError::Malformed),
    }
}

/// One 8-byte `{v: u32, 0: u32}`.
impl ResponseField<'_, ApiError> for u32 {
    const ENTRY: usize = 8;
    fn write(&self, out: &mut [u8]) {
        write_u32_entry(*self, out);
    }
    fn read(b: &[u8]) -> Result<Self, ApiError> {
        read_u32_entry(b)
    }
}

/// One 8-byte `{sid: u32, 0: u32}`.
impl ResponseField<'_, ApiError> for StreamId {
    const ENTRY: usize = 8;
    fn write(&self, out: &mut [u8]) {
        write_u32_entry(self.0, out);
    }
    fn read(b: &[u8]) -> Result<Self, ApiError> {
        read_u32_entry(b).map(StreamId)
    }
}

ipc_proto::counters_field!(Stats, ApiError);

/// One 8-byte IOVA per mapped range: 1..=[`MAX_MAP_ENTRIES`].
impl<'a> ResponseField<'a, ApiError> for List<'a, Iova> {
    const ENTRY: usize = Iova::SIZE;
    const MAX: usize = MAX_MAP_ENTRIES;
    fn entries(&self) -> usize {
        self.len()
    }
    fn write(&self, out: &mut [u8]) {
        self.write_all(out);
    }
    fn read(b: &'a [u8]) -> Result<Self, ApiError> {
        Ok(List::from_wire(b, b.len() / Self::ENTRY)?)
    }
}

/// 0..=[`MAX_FAULT_RECORDS`] 24-byte records.
impl<'a> ResponseField<'a, ApiError> for List<'a, FaultRecord> {
    const ENTRY: usize = FaultRecord::SIZE;
    const MIN: usize = 0;
    const MAX: usize = MAX_FAULT_RECORDS;
    fn entries(&self) -> usize {
        self.len()
    }
    fn write(&self, out: &mut [u8]) {
        self.write_all(out);
    }
    fn read(b: &'a [u8]) -> Result<Self, ApiError> {
        Ok(List::from_wire(b, b.len() / Self::ENTRY)?)
    }
}

ipc_proto::counters_field!(ServerTotals, ApiError);

/// 0..=[`MAX_OVERVIEW_CLIENTS`] 104-byte client summaries.
impl<'a> ResponseField<'a, ApiError> for List<'a, ClientSummary> {
    const ENTRY: usize = ClientSummary::SIZE;
    const MIN: usize = 0;
    const MAX: usize = MAX_OVERVIEW_CLIENTS;
    fn entries(&self) -> usize {
        self.len()
    }
    fn write(&self, out: &mut [u8]) {
        self.write_all(out);
    }
    fn read(b: &'a [u8]) -> Result<Self, ApiError> {
        Ok(List::from_wire(b, b.len() / Self::ENTRY)?)
    }
}

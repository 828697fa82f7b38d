//! Requests, client to server: the operation codes, the typed [`Request`],
//! its encoder and its validating decoder. The decoder refuses anything
//! that is not exactly what the encoder would produce; it never panics and
//! never allocates.

use crate::error::ApiError;
use crate::list::{Extent, List, WireEntry};
use crate::policy::InvalidationPolicy;
use crate::wire::{put, u16_at, u32_at, u64_at, zero};
use crate::{ENTRY_BYTES, HEADER_BYTES, MAX_MAP_ENTRIES, MAX_UNMAP_ENTRIES, MSG_MAX};

/// Operation codes (the header's `op`). Stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Op {
    /// Attach the presented device to the caller's domain.
    Attach = 1,
    /// Map byte ranges of the grant.
    Map = 2,
    /// Unmap IOVA ranges.
    Unmap = 3,
    /// Wait until every pending invalidation of the caller has completed.
    Flush = 4,
    /// The caller's counters.
    Stats = 5,
    /// Drain the caller's coalesced fault records.
    Faults = 6,
    /// Switch the caller's invalidation policy (benchmark client only).
    SetPolicy = 7,
    /// Zero the caller's counters (benchmark client only).
    ResetStats = 8,
}

impl Op {
    /// The op for a code.
    pub const fn from_code(v: u16) -> Option<Op> {
        match v {
            1 => Some(Op::Attach),
            2 => Some(Op::Map),
            3 => Some(Op::Unmap),
            4 => Some(Op::Flush),
            5 => Some(Op::Stats),
            6 => Some(Op::Faults),
            7 => Some(Op::SetPolicy),
            8 => Some(Op::ResetStats),
            _ => None,
        }
    }
}

/// Who accesses a mapped buffer, from the device's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Dir {
    /// The device only reads (the buffer goes to the device): read-only.
    ToDevice = 1,
    /// The device writes (and may read) the buffer.
    FromDevice = 2,
    /// The device reads and writes.
    Bidirectional = 3,
}

impl Dir {
    /// The direction for a code.
    pub const fn from_code(v: u8) -> Option<Dir> {
        match v {
            1 => Some(Dir::ToDevice),
            2 => Some(Dir::FromDevice),
            3 => Some(Dir::Bidirectional),
            _ => None,
        }
    }

    /// Whether the device may write through the mapping.
    pub const fn device_writes(self) -> bool {
        !matches!(self, Dir::ToDevice)
    }
}

/// A request, client to server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Attach the call's presented PCI device; it can emit `dma_bits`-bit
    /// addresses (1..=64). Answer: `Attached`.
    Attach {
        /// Address bits the device can drive (the `edu` device: 28).
        dma_bits: u8,
    },
    /// Map byte ranges of the call's grant (offsets from its first byte).
    /// All or nothing. Answer: `Mapped`, one IOVA per range, each keeping
    /// the range's page offset.
    Map {
        /// Device access direction.
        dir: Dir,
        /// `{offset, len}` ranges, 1..=[`MAX_MAP_ENTRIES`].
        ranges: List<'a, Extent>,
    },
    /// Unmap `{iova, len}` ranges exactly as mapped. All or nothing.
    /// Answer: `Unmapped` (held until the covering sync for strict clients).
    Unmap {
        /// Ranges, 1..=[`MAX_UNMAP_ENTRIES`].
        ranges: List<'a, Extent>,
    },
    /// Answer `Flushed` once every pending invalidation has completed.
    Flush,
    /// Answer `Stats`.
    Stats,
    /// Answer `Faults`, draining up to `MAX_FAULT_RECORDS` records.
    Faults,
    /// Switch the caller's invalidation policy. Only a benchmark client
    /// (trust `bench`) may, and only with no live mapping; its pending
    /// invalidations are completed first. Answer: `PolicySet`.
    SetPolicy {
        /// The new policy (deferred bounds non-zero).
        policy: InvalidationPolicy,
    },
    /// Zero the caller's counters (benchmark client only), after
    /// completing its pending invalidations. Answer: `StatsReset`.
    ResetStats,
}

/// `SetPolicy`'s parameter entry: `{kind: u8, 0: u8, 0: u16, max_entries:
/// u32, max_age_us: u64}`.
mod policy_kind {
    pub const STRICT: u8 = 1;
    pub const STRICT_PER_UNMAP: u8 = 2;
    pub const DEFERRED: u8 = 3;
    pub const BYPASS: u8 = 4;
}

fn encode_policy(p: InvalidationPolicy) -> [u8; ENTRY_BYTES] {
    let (kind, n, t) = match p {
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
    e
}

fn decode_policy(e: &[u8]) -> Result<InvalidationPolicy, ApiError> {
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

impl<'a> Request<'a> {
    /// The request's op.
    pub const fn op(&self) -> Op {
        match self {
            Request::Attach { .. } => Op::Attach,
            Request::Map { .. } => Op::Map,
            Request::Unmap { .. } => Op::Unmap,
            Request::Flush => Op::Flush,
            Request::Stats => Op::Stats,
            Request::Faults => Op::Faults,
            Request::SetPolicy { .. } => Op::SetPolicy,
            Request::ResetStats => Op::ResetStats,
        }
    }

    /// Encodes into `buf`, returning the message length. Refuses lists
    /// that are empty ([`ApiError::Malformed`]) or too long
    /// ([`ApiError::TooMany`]), and a deferred policy with a zero bound
    /// ([`ApiError::Malformed`]).
    pub fn encode(&self, buf: &mut [u8; MSG_MAX]) -> Result<usize, ApiError> {
        let byte = |b: u8| {
            let mut e = [0u8; ENTRY_BYTES];
            e[0] = b;
            e
        };
        let (param, ranges, max) = match self {
            Request::Attach { dma_bits } => (Some(byte(*dma_bits)), None, 0),
            Request::Map { dir, ranges } => (Some(byte(*dir as u8)), Some(ranges), MAX_MAP_ENTRIES),
            Request::Unmap { ranges } => (None, Some(ranges), MAX_UNMAP_ENTRIES),
            Request::SetPolicy { policy } => {
                let e = encode_policy(*policy);
                decode_policy(&e)?;
                (Some(e), None, 0)
            }
            Request::Flush | Request::Stats | Request::Faults | Request::ResetStats => {
                (None, None, 0)
            }
        };
        let n = ranges.map_or(0, |r| r.len());
        if ranges.is_some() && n == 0 {
            return Err(ApiError::Malformed);
        }
        if n > max {
            return Err(ApiError::TooMany);
        }
        let count = n + usize::from(param.is_some());
        let len = HEADER_BYTES + count * ENTRY_BYTES;
        buf[..len].fill(0);
        put(buf, 0, &(self.op() as u16).to_le_bytes());
        put(buf, 2, &(count as u16).to_le_bytes());
        let mut at = HEADER_BYTES;
        if let Some(p) = param {
            put(buf, at, &p);
            at += ENTRY_BYTES;
        }
        if let Some(r) = ranges
            && !r.write_all(&mut buf[at..len])
        {
            return Err(ApiError::Malformed);
        }
        Ok(len)
    }

    /// Decodes a request message.
    pub fn decode(msg: &'a [u8]) -> Result<Request<'a>, ApiError> {
        if msg.len() < HEADER_BYTES || msg.len() > MSG_MAX {
            return Err(ApiError::Malformed);
        }
        let (Some(op), Some(count), Some(reserved)) =
            (u16_at(msg, 0), u16_at(msg, 2), u32_at(msg, 4))
        else {
            return Err(ApiError::Malformed);
        };
        let op = Op::from_code(op).ok_or(ApiError::UnknownOp)?;
        let count = usize::from(count);
        if reserved != 0 || HEADER_BYTES + count * ENTRY_BYTES != msg.len() {
            return Err(ApiError::Malformed);
        }
        let body = &msg[HEADER_BYTES..];
        // The parameter byte of a parameter entry whose other bytes are 0.
        let param = || match body.first() {
            Some(&p) if zero(body, 1, ENTRY_BYTES) => Ok(p),
            _ => Err(ApiError::Malformed),
        };
        match op {
            Op::Attach => {
                if count != 1 {
                    return Err(ApiError::Malformed);
                }
                Ok(Request::Attach { dma_bits: param()? })
            }
            Op::Map => {
                if !(2..=MAX_MAP_ENTRIES + 1).contains(&count) {
                    return Err(ApiError::Malformed);
                }
                let dir = Dir::from_code(param()?).ok_or(ApiError::Malformed)?;
                let ranges = List::from_wire(&body[ENTRY_BYTES..], count - 1)?;
                Ok(Request::Map { dir, ranges })
            }
            Op::Unmap => {
                if !(1..=MAX_UNMAP_ENTRIES).contains(&count) {
                    return Err(ApiError::Malformed);
                }
                Ok(Request::Unmap {
                    ranges: List::from_wire(body, count)?,
                })
            }
            Op::SetPolicy => {
                if count != 1 {
                    return Err(ApiError::Malformed);
                }
                Ok(Request::SetPolicy {
                    policy: decode_policy(body)?,
                })
            }
            Op::Flush | Op::Stats | Op::Faults | Op::ResetStats => {
                if count != 0 {
                    return Err(ApiError::Malformed);
                }
                Ok(match op {
                    Op::Flush => Request::Flush,
                    Op::Stats => Request::Stats,
                    Op::ResetStats => Request::ResetStats,
                    _ => Request::Faults,
                })
            }
        }
    }
}

const _: () = assert!(Extent::SIZE == ENTRY_BYTES);

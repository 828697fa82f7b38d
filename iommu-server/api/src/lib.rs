//! The IOMMU server's IPC protocol: the one definition of every request,
//! response and error code that crosses between the server and its clients
//! (driver tasks). Both sides encode and decode with this crate; nothing is
//! written twice.
//!
//! Each request is declared once, in `protocol.rs` (`protocol!`, from the
//! `ipc-proto` crate, which the block service's protocol shares): from
//! that entry come [`Op`], [`Request`], [`Response`] and their codecs, the
//! server's [`Handler`] method and [`Request::dispatch`], and the client's
//! [`Client`] stub over any [`Transport`] (`userlib::ipc::Call` on a
//! task). Field wire forms are written once per type here (`field.rs`:
//! [`RequestField`], [`ResponseField`]); the framing is `ipc-proto`'s.
//!
//! It owns the wire layout and its validation. It must never trust a
//! message: decoding checks lengths, counts, reserved fields and enum values
//! and returns an [`ApiError`] instead of panicking; it never allocates (lists
//! are views over the message bytes). It knows nothing of the server's state.
//!
//! # Wire format (little-endian, at most [`MSG_MAX`] bytes)
//!
//! Request: header `{op: u16, count: u16, reserved: u32 = 0}`, then `count`
//! 16-byte entries.
//!
//! | op | entries |
//! |---|---|
//! | 1 `Attach` | one parameter entry `{dma_bits: u8, 15 zero bytes}`; the device is the call's presented PCI capability |
//! | 2 `Map` | one parameter entry `{dir: u8, 15 zero bytes}`, then 1..=[`MAX_MAP_ENTRIES`] `{offset: u64, len: u64}` inside the call's grant |
//! | 3 `Unmap` | 1..=[`MAX_UNMAP_ENTRIES`] `{iova: u64, len: u64}` |
//! | 4 `Flush`, 5 `Stats`, 6 `Faults`, 8 `ResetStats` | none |
//! | 9 `ClientStats`, 10 `Overview` | one parameter entry `{index: u32, 12 zero bytes}` (monitors only) |
//! | 7 `SetPolicy` | one parameter entry `{kind: u8, 0: u8, 0: u16, max_entries: u32, max_age_us: u64}`: kind 1 strict, 2 strict-per-unmap, 3 deferred (both bounds non-zero), 4 bypass (both bounds 0 unless deferred) |
//!
//! Response: header `{status: u32 (0 = ok, else an ApiError code), count:
//! u16, reserved: u16 = 0}`, then `count` entries whose size depends on the
//! request they answer: `Attached` one 8-byte `{sid: u32, 0: u32}`; `Mapped`
//! one 8-byte IOVA per map entry; `Unmapped` one 8-byte `{faults_pending:
//! u32, 0: u32}`; `Flushed`, `PolicySet`, `StatsReset` none; `Stats` twenty-one
//! 8-byte counters (see [`Stats`]; the ninth and tenth were appended after
//! the first eight, the client's quota use and limits (11..17) after those,
//! then its fault-handling state (18 `level`: 0 configured, 1 demoted to
//! strict, 2 quarantined; 19 `level_reason`: 0 none, 1 fault, 2 distinct
//! pages, 3 records; 20 `event_overflows`; 21 `fault_pages`), and no place
//! ever moves); `Faults` up to
//! [`MAX_FAULT_RECORDS`] 24-byte [`FaultRecord`]s; `ClientStatsOf` one
//! `{badge: u32, 0: u32}` then the twenty-one counters; `OverviewPage`
//! sixteen 8-byte [`ServerTotals`] then up to [`MAX_OVERVIEW_CLIENTS`]
//! 104-byte [`ClientSummary`]s. An error response has no
//! entries.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod error;
mod field;
mod list;
pub mod overview;
pub mod policy;
mod protocol;
pub mod quota;
mod request;
mod response;

pub use error::ApiError;
pub use ipc_proto::{
    HEADER_BYTES, List, MSG_MAX, RequestField, ResponseField, Transport, WireEntry,
};
pub use list::{Extent, FaultRecord, Iovas};
pub use overview::{ClientSummary, MAX_OVERVIEW_CLIENTS, ServerTotals};
pub use policy::{InvalidationPolicy, MONITOR, TrustLevel};
pub use protocol::{Client, Handler, Op, Request, Response};
pub use quota::ClientQuota;
pub use request::Dir;
pub use response::{Stats, level};

/// The op of a request message, read from its header alone (`None` for a
/// malformed header or an unknown op): for sorting requests before
/// decoding them, as the server's time accounting does.
pub fn request_op(msg: &[u8]) -> Option<Op> {
    let (op, ..) = ipc_proto::request::decode_header::<ApiError>(msg).ok()?;
    Op::from_code(op)
}

/// The pages a `Map` or `Unmap` request names: the sum of its ranges'
/// lengths in pages, each rounded up, read from the raw message without
/// validating it (0 for any other op or a malformed header). The server's
/// work on a call before it can look at the clock again grows with this
/// number, so it says how long the call may take before it is handled.
pub fn request_pages(msg: &[u8]) -> u64 {
    let Ok((op, count, _, body)) = ipc_proto::request::decode_header::<ApiError>(msg) else {
        return 0;
    };
    // A `Map`'s first entry is its parameters; every range is
    // `{start: u64, len: u64}`.
    let skip = match Op::from_code(op) {
        Some(Op::Map) => 1,
        Some(Op::Unmap) => 0,
        _ => return 0,
    };
    body.chunks_exact(ENTRY_BYTES)
        .take(count)
        .skip(skip)
        .map(|e| e[8..].try_into().map_or(0, u64::from_le_bytes))
        .fold(0u64, |sum, len| {
            sum.saturating_add(len.div_ceil(abi::PAGE_SIZE))
        })
}

/// The server task's fault-handling arguments (system description
/// `task_args`), with the values it accepts; xtask refuses others.
pub mod server_args {
    use core::ops::RangeInclusive;

    /// log2 of the event queue's records (capped by the SMMU's IDR1).
    pub const EVTQ_LOG2: RangeInclusive<u64> = 4..=19;
    /// Distinct faulting (StreamID, page)s a client may pass before it is
    /// quarantined.
    pub const QUARANTINE_AFTER: RangeInclusive<u64> = 0..=65_535;
    /// Fault records, on any pages, at which a client is quarantined.
    pub const QUARANTINE_RECORDS: RangeInclusive<u64> = 1..=(1 << 32);
    /// Every one of them, by name.
    pub const ALL: [(&str, RangeInclusive<u64>); 3] = [
        ("evtq_log2", EVTQ_LOG2),
        ("quarantine_after", QUARANTINE_AFTER),
        ("quarantine_records", QUARANTINE_RECORDS),
    ];
}

/// Bytes in one request entry.
pub const ENTRY_BYTES: usize = 16;
/// Most 16-byte entries a request can carry.
pub const MAX_REQUEST_ENTRIES: usize = (MSG_MAX - HEADER_BYTES) / ENTRY_BYTES;
/// Most byte ranges one `Map` can carry (one entry is the parameter entry).
pub const MAX_MAP_ENTRIES: usize = MAX_REQUEST_ENTRIES - 1;
/// Most IOVA ranges one `Unmap` can carry.
pub const MAX_UNMAP_ENTRIES: usize = MAX_REQUEST_ENTRIES;
/// Most fault records one `Faults` response carries; ask again for more.
pub const MAX_FAULT_RECORDS: usize = (MSG_MAX - HEADER_BYTES) / FaultRecord::SIZE;

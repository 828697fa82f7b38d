//! The declaration of the IOMMU protocol: every request, its op code, its
//! fields, the handler/stub method that serves or sends it, and the
//! response that answers it, written once. `ipc_proto::protocol!`
//! generates [`Op`], [`Request`], [`Response`], their codecs, the server's
//! [`Handler`] with [`Request::dispatch`], and the client's [`Client`]
//! stubs from it (over [`Transport`](crate::Transport)).
//!
//! Adding a request is one entry here (with a new op code; codes never
//! change or get reused), its handler in the server, and a test. A field
//! type with no wire form yet gets one in `field.rs`. This module must
//! never hold behaviour: only the list.

use abi::StreamId;
use ipc_proto::{List, protocol};

use crate::error::ApiError;
use crate::list::{Extent, FaultRecord, Iovas};
use crate::overview::{ClientSummary, ServerTotals};
use crate::policy::InvalidationPolicy;
use crate::request::Dir;
use crate::response::Stats;

protocol! {
    error: ApiError;

    /// Attach the call's presented PCI device; it can emit `dma_bits`-bit
    /// addresses (1..=64). Answer: `Attached`.
    1 Attach {
        /// Address bits the device can drive (the `edu` device: 28).
        dma_bits: u8,
    } => fn attach
    -> /// To `Attach`: the device's StreamID now translates in the caller's
       /// domain.
       Attached {
           /// The attached StreamID.
           sid: StreamId,
       };

    /// Map byte ranges of the call's grant (offsets from its first byte).
    /// All or nothing. Answer: `Mapped`, one IOVA per range, each keeping
    /// the range's page offset.
    2 Map {
        /// Device access direction.
        dir: Dir,
        /// `{offset, len}` ranges, 1..=[`MAX_MAP_ENTRIES`](crate::MAX_MAP_ENTRIES).
        ranges: List<'a, Extent>,
    } => fn map
    -> /// To `Map`: one IOVA per requested range, in order.
       Mapped {
           /// The IOVAs (page offset of each range kept).
           iovas: Iovas<'a>,
       };

    /// Unmap `{iova, len}` ranges exactly as mapped. All or nothing.
    /// Answer: `Unmapped` (held until the covering sync for strict clients).
    3 Unmap {
        /// Ranges, 1..=[`MAX_UNMAP_ENTRIES`](crate::MAX_UNMAP_ENTRIES).
        ranges: List<'a, Extent>,
    } => fn unmap
    -> /// To `Unmap`. `faults_pending`: coalesced fault records waiting for
       /// this client's next `Faults` request (0 on the fast path). The
       /// devices complete a faulted transfer as if it succeeded, so a driver
       /// learns of the fault only here or from `Faults`.
       Unmapped {
           /// Fault records not yet drained.
           faults_pending: u32,
       };

    /// Answer `Flushed` once every pending invalidation has completed.
    4 Flush => fn flush
    -> /// To `Flush`.
       Flushed;

    /// Answer `Stats`, the caller's counters.
    5 Stats => fn stats
    -> /// To `Stats`.
       Stats(stats: Stats);

    /// Answer `Faults`, draining up to
    /// [`MAX_FAULT_RECORDS`](crate::MAX_FAULT_RECORDS) records.
    6 Faults => fn faults
    -> /// To `Faults`: drained records, at most
       /// [`MAX_FAULT_RECORDS`](crate::MAX_FAULT_RECORDS).
       Faults {
           /// The records.
           records: List<'a, FaultRecord>,
       };

    /// Switch the caller's invalidation policy. Only a benchmark client
    /// (trust `bench`) may, and only with no live mapping; its pending
    /// invalidations are completed first. Answer: `PolicySet`.
    7 SetPolicy {
        /// The new policy (deferred bounds non-zero).
        policy: InvalidationPolicy,
    } => fn set_policy
    -> /// To `SetPolicy`: the caller's unmaps now follow the new policy.
       PolicySet;

    /// Zero the caller's counters (benchmark client only), after
    /// completing its pending invalidations. Answer: `StatsReset`.
    8 ResetStats => fn reset_stats
    -> /// To `ResetStats`: the caller's counters are zero.
       StatsReset;

    /// A monitor (trust `monitor` in the system description) reads the
    /// counters of the client at `index` (0-based, in badge order; the
    /// ones that died and were not readmitted included until forgotten).
    /// Read-only. From a client: `NotPermitted`; past the last client:
    /// `NoSuchClient`. Answer: `ClientStatsOf`.
    9 ClientStats {
        /// Which client, 0-based.
        index: u32,
    } => fn client_stats
    -> /// To `ClientStats`: whose counters, and the counters.
       ClientStatsOf {
           /// The client's badge (its task index plus one).
           badge: u32,
           /// Its counters, as its own `Stats` request would answer.
           stats: Stats,
       };

    /// A monitor (trust `monitor`) reads the server's totals and a page of
    /// client summaries, from the client at index `first` (0-based, in
    /// badge order) on, at most
    /// [`MAX_OVERVIEW_CLIENTS`](crate::MAX_OVERVIEW_CLIENTS) of them; it
    /// asks again from `first + n` while that is below `totals.clients`.
    /// Read-only. From a client: `NotPermitted`; `first` past the number
    /// of clients: `NoSuchClient` (equal to it: an empty page). Answer:
    /// `OverviewPage`.
    10 Overview {
        /// Index of the first client of the page, 0-based.
        first: u32,
    } => fn overview
    -> /// To `Overview`: the totals, then the page's clients in badge order.
       OverviewPage {
           /// Server-wide figures.
           totals: ServerTotals,
           /// The clients from `first` on (fewer at the end).
           clients: List<'a, ClientSummary>,
       };
}

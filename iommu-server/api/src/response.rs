//! [`Stats`], the counters a `Stats` response carries, and the encoder of
//! the I/O path's usual answer ([`Response::encode_mapped_one`]). The
//! responses themselves are declared once in `protocol.rs`; the response
//! header (`{status: u32, count: u16, reserved: u16 = 0}`, then `count`
//! entries whose size depends on the request answered) is `ipc-proto`'s
//! framing.

use abi::Iova;
use ipc_proto::WireEntry;

use crate::ApiError;
use crate::protocol::Response;

impl Response<'_> {
    /// `Mapped` of one IOVA encoded into `out`, byte for byte as
    /// [`Response::encode_into`] encodes it (the same framing and entry
    /// layout, without the general encoder's dispatch over every
    /// response); its length. A `Map` of one range, the I/O path's usual
    /// request, answers with it.
    #[inline]
    pub fn encode_mapped_one(iova: Iova, out: &mut [u8]) -> Result<usize, ApiError> {
        ipc_proto::response::encode_with::<ApiError>(out, 1, Iova::SIZE, |body| {
            iova.write(body);
            Ok(())
        })
    }
}

ipc_proto::counters! {
    /// A client's counters, as the `Stats` response carries them (twenty-five
    /// little-endian `u64`s in this order; `doorbells` and `server_ticks` were
    /// appended after the first eight, the quota fields after those, the
    /// fault-handling fields (`level`, `level_reason`, `event_overflows`,
    /// `fault_pages`) after those, `server_ticks` by phase (`map_ticks`,
    /// `unmap_ticks`, `flush_ticks`, `pin_ticks`) after those; no place
    /// ever moves).
    ///
    /// Consistency: every range a client unmapped is counted in `unmaps`
    /// (bypass unmaps too, which need no invalidation); `syncs <= unmaps`,
    /// since each sync counted covered at least one of its unmaps; and
    /// `ResetStats` zeroes every counter but the gauges (`iova_bytes_in_use`,
    /// `pending_unmaps`, the quota uses and limits), after completing the client's
    /// pending unmaps so that none of them is counted on the far side.
    pub struct Stats {
        /// Map requests accepted.
        pub maps: u64,
        /// Unmapped ranges accepted.
        pub unmaps: u64,
        /// TLBI commands issued for this client's domain.
        pub tlbi_commands: u64,
        /// CMD_SYNCs this client's unmaps took part in.
        pub syncs: u64,
        /// Fault records attributed to this client (before coalescing).
        pub faults: u64,
        /// IOVA space held by live or not-yet-released mappings, in bytes.
        pub iova_bytes_in_use: u64,
        /// Unmaps accepted whose covering sync has not completed yet.
        pub pending_unmaps: u64,
        /// Longest deferred stale window (unmap to covering sync), in µs.
        pub max_stale_window_us: u64,
        /// Command-queue doorbells rung for batches this client's unmaps took
        /// part in: one per non-empty command batch plus one per CMD_SYNC
        /// (the server's hardware layer queues each CMD_SYNC behind its own
        /// doorbell). A doorbell shared by several clients counts for each.
        pub doorbells: u64,
        /// Counter ticks (`CNTVCT`, at the frequency `userlib::time` reports)
        /// the server spent on this client's requests, and its share of the
        /// flushes that covered its unmaps (see `Server::charge_flush`).
        pub server_ticks: u64,
        /// Bytes mapped now (whole pages), against `quota_mapped_bytes`.
        pub mapped_bytes: u64,
        /// Live mappings now, against `quota_mappings`.
        pub mappings: u64,
        /// Page-table pages held now (freed ones until their sync), against
        /// `quota_table_pages`.
        pub table_pages: u64,
        /// The client's quota of mapped bytes.
        pub quota_mapped_bytes: u64,
        /// The client's quota of live mappings.
        pub quota_mappings: u64,
        /// The client's quota of page-table pages.
        pub quota_table_pages: u64,
        /// The client's quota of IOVA space (`iova_bytes_in_use` counts
        /// against it), in bytes.
        pub quota_iova_bytes: u64,
        /// Where the server holds the client now: [`level::CONFIGURED`] (the
        /// policy its system description gave, or its own `SetPolicy`),
        /// [`level::DEMOTED`] (a trusted client whose device faulted: strict
        /// from then on, never undone), [`level::QUARANTINED`] (its streams
        /// abort; only `Stats` and `Faults` are served).
        pub level: u64,
        /// Why it is at that level: [`level::REASON_NONE`],
        /// [`level::REASON_FAULT`] (demoted after a fault),
        /// [`level::REASON_DISTINCT_PAGES`] or [`level::REASON_RECORDS`]
        /// (the quarantine threshold it passed).
        pub level_reason: u64,
        /// Event-queue overflows charged to this client (records lost while
        /// its device's records were the ones being drained).
        pub event_overflows: u64,
        /// Distinct (StreamID, page) faults counted against the quarantine
        /// threshold.
        pub fault_pages: u64,
        /// The part of `server_ticks` spent handling its `Map` requests,
        /// less the kernel's pin calls (`pin_ticks`).
        pub map_ticks: u64,
        /// The part spent handling its `Unmap` requests, less unpins.
        pub unmap_ticks: u64,
        /// Its share of the flushes that covered its unmaps, less unpins.
        pub flush_ticks: u64,
        /// The kernel's pin and unpin calls for its frames. The rest of
        /// `server_ticks` went to its other requests.
        pub pin_ticks: u64,
    }
}

/// The codes of [`Stats::level`] and [`Stats::level_reason`].
pub mod level {
    /// The level its system description (or its own `SetPolicy`) gave.
    pub const CONFIGURED: u64 = 0;
    /// Demoted to strict after a fault of its device.
    pub const DEMOTED: u64 = 1;
    /// Quarantined: its streams abort.
    pub const QUARANTINED: u64 = 2;
    /// No reason: at its configured level.
    pub const REASON_NONE: u64 = 0;
    /// Its device faulted (demotion).
    pub const REASON_FAULT: u64 = 1;
    /// Too many distinct faulting (StreamID, page)s.
    pub const REASON_DISTINCT_PAGES: u64 = 2;
    /// Too many fault records, whatever their pages.
    pub const REASON_RECORDS: u64 = 3;
}

impl Stats {
    /// [`Stats::level`] and [`Stats::level_reason`] in words, e.g.
    /// `"strict (demoted: fault)"` or `"quarantined (records)"`.
    pub fn level_text(&self) -> &'static str {
        match (self.level, self.level_reason) {
            (level::CONFIGURED, _) => "as configured",
            (level::DEMOTED, _) => "strict (demoted: fault)",
            (level::QUARANTINED, level::REASON_DISTINCT_PAGES) => "quarantined (distinct pages)",
            (level::QUARANTINED, level::REASON_RECORDS) => "quarantined (records)",
            (level::QUARANTINED, _) => "quarantined",
            _ => "unknown",
        }
    }
}

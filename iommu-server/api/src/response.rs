//! [`Stats`], the counters a `Stats` response carries. The responses
//! themselves are declared once in `protocol.rs`; the response header
//! (`{status: u32, count: u16, reserved: u16 = 0}`, then `count` entries
//! whose size depends on the request answered) is `ipc-proto`'s framing.

/// A client's counters, as the `Stats` response carries them (seventeen
/// little-endian `u64`s in this order; `doorbells` and `server_ticks` were
/// appended after the first eight, the quota fields after those).
///
/// Consistency: every range a client unmapped is counted in `unmaps`
/// (bypass unmaps too, which need no invalidation); `syncs <= unmaps`,
/// since each sync counted covered at least one of its unmaps; and
/// `ResetStats` zeroes every counter but the gauges (`iova_bytes_in_use`,
/// `pending_unmaps`, the quota uses and limits), after completing the client's
/// pending unmaps so that none of them is counted on the far side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
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
}

impl Stats {
    pub(crate) const FIELDS: usize = 17;

    pub(crate) fn to_array(self) -> [u64; Self::FIELDS] {
        [
            self.maps,
            self.unmaps,
            self.tlbi_commands,
            self.syncs,
            self.faults,
            self.iova_bytes_in_use,
            self.pending_unmaps,
            self.max_stale_window_us,
            self.doorbells,
            self.server_ticks,
            self.mapped_bytes,
            self.mappings,
            self.table_pages,
            self.quota_mapped_bytes,
            self.quota_mappings,
            self.quota_table_pages,
            self.quota_iova_bytes,
        ]
    }

    pub(crate) fn from_array(a: [u64; Self::FIELDS]) -> Self {
        let [
            maps,
            unmaps,
            tlbi_commands,
            syncs,
            faults,
            iova_bytes_in_use,
            pending_unmaps,
            max_stale_window_us,
            doorbells,
            server_ticks,
            mapped_bytes,
            mappings,
            table_pages,
            quota_mapped_bytes,
            quota_mappings,
            quota_table_pages,
            quota_iova_bytes,
        ] = a;
        Self {
            maps,
            unmaps,
            tlbi_commands,
            syncs,
            faults,
            iova_bytes_in_use,
            pending_unmaps,
            max_stale_window_us,
            doorbells,
            server_ticks,
            mapped_bytes,
            mappings,
            table_pages,
            quota_mapped_bytes,
            quota_mappings,
            quota_table_pages,
            quota_iova_bytes,
        }
    }
}

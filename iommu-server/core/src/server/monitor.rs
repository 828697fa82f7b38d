//! A monitor's `Overview`: the server's totals and a page of compact
//! client summaries (trust, policy, demoted, quarantined, the counters a
//! dashboard shows), in badge order.
//!
//! Read-only: it must never change a client, the engine or the hardware,
//! and never answer anyone but a monitor (`dispatch` routes only
//! monitors here; clients get `NotPermitted` from the handler).

use iommu_api::{ApiError, ClientSummary, List, MAX_OVERVIEW_CLIENTS, Response, ServerTotals};

use super::ReplyBytes;
use super::Server;
use super::dispatch::reply_bytes;
use super::hw::SmmuHw;

impl<H: SmmuHw, R> Server<H, R> {
    /// The server-wide figures of an `Overview` answer.
    pub fn totals(&self) -> ServerTotals {
        let s = self.stats;
        let mut t = ServerTotals {
            clients: self.clients.len() as u64,
            doorbells: s.doorbells,
            syncs: s.syncs,
            tlbi_commands: s.tlbi_commands,
            cfgi_commands: s.cfgi_commands,
            events: s.events,
            unattributed_events: s.unattributed_events,
            hw_errors: s.hw_errors,
            quarantines: s.quarantines,
            demotions: s.demotions,
            pinned_frames: s.pinned_frames,
            unpinned_frames: s.unpinned_frames,
            event_overflows: s.event_overflows,
            ..ServerTotals::default()
        };
        for &badge in self.clients.keys() {
            if let Some(c) = self.stats(badge) {
                t.maps = t.maps.saturating_add(c.maps);
                t.unmaps = t.unmaps.saturating_add(c.unmaps);
                t.iova_bytes_in_use = t.iova_bytes_in_use.saturating_add(c.iova_bytes_in_use);
            }
        }
        t
    }

    /// The summary of client `badge`, if registered.
    pub fn summary(&self, badge: u32) -> Option<ClientSummary> {
        let c = self.clients.get(&badge)?;
        let st = self.stats(badge)?;
        let mut s = ClientSummary::new(badge, &c.name, c.trust, c.policy);
        s.demoted = c.demoted;
        s.quarantined = c.quarantined;
        s.attached = c.domain.is_some();
        s.maps = st.maps;
        s.unmaps = st.unmaps;
        s.tlbi_commands = st.tlbi_commands;
        s.syncs = st.syncs;
        s.faults = st.faults;
        s.iova_bytes_in_use = st.iova_bytes_in_use;
        s.pending_unmaps = st.pending_unmaps;
        s.mappings = st.mappings;
        Some(s)
    }

    /// A monitor's `Overview` from client index `first`, encoded as
    /// `OverviewPage`. Allocates nothing: the page is on the stack.
    pub(super) fn overview(&self, first: u32) -> Result<ReplyBytes, ApiError> {
        let first = usize::try_from(first).map_err(|_| ApiError::NoSuchClient)?;
        if first > self.clients.len() {
            return Err(ApiError::NoSuchClient);
        }
        let mut page = [ClientSummary::empty(); MAX_OVERVIEW_CLIENTS];
        let mut n = 0;
        for (slot, &badge) in page.iter_mut().zip(self.clients.keys().skip(first)) {
            if let Some(s) = self.summary(badge) {
                *slot = s;
                n += 1;
            }
        }
        Ok(reply_bytes(&Response::OverviewPage {
            totals: self.totals(),
            clients: List::new(&page[..n]),
        }))
    }
}

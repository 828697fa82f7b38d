//! The server's side of the protocol declaration: one [`Handler`] method
//! per request, reached through [`iommu_api::Request::dispatch`] from
//! [`Server::handle`]. A [`Call`] is everything one call brings besides the
//! message (time, caller, grant, presented device, reply token); each
//! method hands the request's fields to its handler and answers now or
//! holds the reply.
//!
//! It owns no state and no checks of its own: decoding, the caller's
//! registration and quarantine are checked in `handle` before dispatch,
//! and every refusal is the handler's. It must never answer with a
//! response other than the one declared for its request.

use iommu_api::{ApiError, Dir, Extent, Handler, List, Response};

use super::ReplyBytes;
use super::dispatch::{error_bytes, reply_bytes};
use super::{Grant, Handled, Presented, Server, SmmuHw};
use crate::policy::InvalidationPolicy;

/// One call being handled.
pub(super) struct Call<'s, 'g, H, R> {
    pub(super) server: &'s mut Server<H, R>,
    pub(super) now: u64,
    pub(super) badge: u32,
    /// Where the caller's client sits in the server's table (found by
    /// `handle`; checked again where it is used).
    pub(super) slot: usize,
    pub(super) grant: Option<Grant<'g>>,
    pub(super) presented: Option<Presented>,
    pub(super) reply: R,
}

impl<H, R> Call<'_, '_, H, R> {
    /// Answers now: the response bytes, or the error.
    fn answer(self, r: Result<ReplyBytes, ApiError>) -> Handled<R> {
        Handled::Reply(self.reply, r.unwrap_or_else(error_bytes))
    }
}

impl<'a, H: SmmuHw, R> Handler<'a> for Call<'_, '_, H, R> {
    type Out = Handled<R>;

    fn attach(self, dma_bits: u8) -> Handled<R> {
        let r = self.server.attach(self.badge, dma_bits, self.presented);
        self.answer(r)
    }

    fn map(self, dir: Dir, ranges: List<'a, Extent>) -> Handled<R> {
        if ranges.len() == 1
            && self.server.cfg.one_range_paths
            && let Some(one) = ranges.get(0)
            && let Some(r) = self
                .server
                .map_one(self.slot, self.badge, dir, one, self.grant)
        {
            return self.answer(r);
        }
        let r = self
            .server
            .map(self.now, self.badge, dir, ranges, self.grant);
        self.answer(r)
    }

    fn unmap(self, ranges: List<'a, Extent>) -> Handled<R> {
        match ranges.get(0) {
            Some(one) if ranges.len() == 1 && self.server.cfg.one_range_paths => self
                .server
                .unmap_one(self.now, self.slot, self.badge, ranges, one, self.reply),
            _ => self.server.unmap(self.now, self.badge, ranges, self.reply),
        }
    }

    fn flush(self) -> Handled<R> {
        self.server.flush(self.badge, self.reply)
    }

    fn stats(self) -> Handled<R> {
        let r = self.server.stats(self.badge).map_or_else(
            || error_bytes(ApiError::NotPermitted),
            |s| reply_bytes(&Response::Stats(s)),
        );
        self.answer(Ok(r))
    }

    fn faults(self) -> Handled<R> {
        let r = self.server.drain_faults(self.badge);
        self.answer(Ok(r))
    }

    fn set_policy(self, policy: InvalidationPolicy) -> Handled<R> {
        let r = self.server.set_policy(self.now, self.badge, policy);
        self.answer(r)
    }

    fn reset_stats(self) -> Handled<R> {
        let r = self.server.reset_stats(self.now, self.badge);
        self.answer(r)
    }

    /// Clients never may (monitors are answered in `handle`).
    fn client_stats(self, _index: u32) -> Handled<R> {
        self.answer(Err(ApiError::NotPermitted))
    }

    /// Clients never may (monitors are answered in `handle`).
    fn overview(self, _first: u32) -> Handled<R> {
        self.answer(Err(ApiError::NotPermitted))
    }
}

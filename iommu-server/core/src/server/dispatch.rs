//! Taking one call: decoding its request, refusing it from an unknown
//! badge or a quarantined client (which may still read its counters and
//! faults), completing a demoted client's demotion before anything else,
//! and routing it to the handler of its role (a monitor's requests,
//! `ClientStats` and `Overview`, or a client's); encoding responses and errors.
//!
//! It must never act on a request itself: every check and change is the
//! handler's. A request that does not decode, or comes from a badge that
//! is not a client's, changes nothing.

use iommu_api::{ApiError, MSG_MAX, Request, Response};

use super::Server;
use super::hw::SmmuHw;
use super::spare::Pool;
use super::types::{Grant, Handled, Presented, ReplyBytes};

/// `r` encoded (inline when it fits, with no message buffer); `NoMemory`
/// if it needs the heap and the heap cannot hold it (an error always fits
/// inline).
pub(super) fn reply_bytes(r: &Response<'_>) -> ReplyBytes {
    ReplyBytes::encode_inline(r)
        .unwrap_or_else(|| encode_in(&mut [0u8; MSG_MAX], r, &mut Pool::new(0)))
}

/// `r` encoded in `zeroed`, a message buffer of zeros, which is left zeroed
/// (the hot paths keep one in the server rather than clear a fresh one);
/// its heap bytes, if it needs them, from `pool`.
fn encode_in(zeroed: &mut [u8; MSG_MAX], r: &Response<'_>, pool: &mut Pool<u8>) -> ReplyBytes {
    match r.encode(zeroed) {
        Ok(n) => {
            let bytes = zeroed.get_mut(..n).unwrap_or_default();
            let reply = ReplyBytes::try_from_slice_in(bytes, pool)
                .unwrap_or_else(|| error_bytes(ApiError::NoMemory));
            bytes.fill(0);
            reply
        }
        Err(e) => {
            zeroed.fill(0);
            error_bytes(e)
        }
    }
}

/// The error response `e` (a header alone: always inline).
pub(super) fn error_bytes(e: ApiError) -> ReplyBytes {
    let mut buf = [0u8; MSG_MAX];
    let n = Response::encode_error(e, &mut buf);
    ReplyBytes::inline(&buf[..n])
}

impl<H: SmmuHw, R> Server<H, R> {
    /// `r` encoded inline, or, when longer, through the server's zeroed
    /// message buffer (as [`reply_bytes`], without clearing a fresh one).
    pub(super) fn reply_bytes(&mut self, r: &Response<'_>) -> ReplyBytes {
        if let Some(inline) = ReplyBytes::encode_inline(r) {
            return inline;
        }
        match <&mut [u8; MSG_MAX]>::try_from(self.zeroed.as_mut_slice()) {
            Ok(zeroed) => encode_in(zeroed, r, &mut self.spare.replies),
            Err(_) => reply_bytes(r),
        }
    }

    /// Takes back a reply the caller has sent: a long one's heap bytes
    /// serve a later reply (a batched `Map`'s, every time), so that a warm
    /// I/O path allocates nothing for its replies. Optional: a reply
    /// dropped instead is freed.
    pub fn recycle(&mut self, reply: ReplyBytes) {
        if let Some(v) = reply.into_heap() {
            self.spare.replies.put(v);
        }
    }

    /// Handles one call. Replies now, or holds the reply (strict unmaps,
    /// flushes) until [`Server::poll`] has completed the covering sync.
    pub fn handle(
        &mut self,
        now_us: u64,
        badge: u32,
        msg: &[u8],
        grant: Option<Grant<'_>>,
        presented: Option<Presented>,
        reply: R,
    ) -> Handled<R> {
        self.last_now = self.last_now.max(now_us);
        let now = self.last_now;
        let req = match Request::decode(msg) {
            Ok(r) => r,
            Err(e) => return Handled::Reply(reply, error_bytes(e)),
        };
        // Found once: the one-range paths reach it again by its index.
        let Some((slot, client)) = self.clients.find(&badge) else {
            // A monitor's only requests (read-only); anything else from a
            // badge that is not a client's is refused.
            let r = match req {
                Request::ClientStats { index } if self.monitors.contains(&badge) => {
                    self.client_stats(index)
                }
                Request::Overview { first } if self.monitors.contains(&badge) => {
                    self.overview(first)
                }
                _ => Err(ApiError::NotPermitted),
            };
            return Handled::Reply(reply, r.unwrap_or_else(error_bytes));
        };
        if client.quarantined && !matches!(req, Request::Stats | Request::Faults) {
            return Handled::Reply(reply, error_bytes(ApiError::Quarantined));
        }
        // A client demoted after a fault is answered only once its
        // deferred unmaps are flushed and its policy is strict.
        if client.demoted && !self.finish_demotion(badge) {
            return Handled::Reply(reply, error_bytes(ApiError::Hardware));
        }
        req.dispatch(super::requests::Call {
            server: self,
            now,
            badge,
            slot,
            grant,
            presented,
            reply,
        })
    }
}

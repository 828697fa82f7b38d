//! The driver loop's side of the block protocol declaration: one
//! [`Handler`] method per request, reached through
//! [`block_api::Request::dispatch`] from the loop's `call`. A [`Call`] is
//! everything one call brings besides the message (the caller's badge,
//! the reply token, the grant); each method hands the request's fields to
//! the loop and answers now (or, for `Reap` and `SubmitWait`, holds the
//! token).
//!
//! It owns no state and no checks of its own: decoding is checked before
//! dispatch, and every refusal is the loop's. It must never answer with a
//! response other than the one declared for its request.

use alloc::vec::Vec;

use block_api::{BenchMode, Handler, Io, Ios, Response};

use super::{Loop, reply};
use crate::device::BlockDevice;

/// One call being handled.
pub(super) struct Call<'l, 'i, D> {
    pub(super) l: &'l mut Loop<'i, D>,
    pub(super) badge: u32,
    pub(super) token: u64,
    pub(super) grant_va: u64,
    pub(super) grant_len: u64,
}

impl<'a, D: BlockDevice> Handler<'a> for Call<'_, '_, D> {
    type Out = ();

    fn info(self) {
        reply(self.token, Ok(Response::Info(self.l.info)));
    }

    fn submit(self, ios: Ios<'a>) {
        let ios: Vec<Io> = ios.iter().collect();
        let r = self
            .l
            .submit(self.badge, &ios, self.token, self.grant_va, self.grant_len);
        reply(self.token, r.map(|()| Response::Accepted));
        self.l.complete();
    }

    fn reap(self, min: u16, max: u16) {
        self.l.reap(self.badge, self.token, min, max);
    }

    fn submit_wait(self, min: u16, max: u16, ios: Ios<'a>) {
        let ios: Vec<Io> = ios.iter().collect();
        let r = self.l.submit_wait(
            self.badge,
            &ios,
            (self.token, self.grant_va, self.grant_len),
            min,
            max,
        );
        if let Err(e) = r {
            reply(self.token, Err(e));
        }
        self.l.complete();
    }

    fn stats(self) {
        reply(self.token, self.l.stats().map(Response::Stats));
    }

    fn set_mode(self, mode: BenchMode) {
        let r = self.l.set_mode(mode);
        reply(self.token, r.map(|()| Response::ModeSet));
    }

    fn reset_stats(self) {
        let r = self.l.reset_stats();
        reply(self.token, r.map(|()| Response::StatsReset));
    }
}

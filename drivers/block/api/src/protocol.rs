//! The declaration of the block protocol: every request, its op code, its
//! fields, the handler/stub method that serves or sends it, and the
//! response that answers it, written once. `ipc_proto::protocol!`
//! generates [`Op`], [`Request`], [`Response`], their codecs, the driver
//! loop's [`Handler`] with [`Request::dispatch`], and the client's
//! [`Client`] stubs (over [`Transport`](crate::Transport)) from it.
//!
//! Adding a request is one entry here (with a new op code; codes never
//! change or get reused), its handler in `block-server`
//! (`serve/requests.rs`), and a test. A field type with no wire form yet
//! gets one in `field.rs`. This module must never hold behaviour: only the
//! list (and the request-wide checks it names).

use ipc_proto::protocol;

use crate::{BenchMode, BlockError, BlockStats, Completions, Info, Ios, MAX_COMPLETIONS};

/// `Reap`'s window: at least one completion, `min <= max`, and no more
/// than one answer carries.
fn reap_window(min: &u16, max: &u16) -> bool {
    *min >= 1 && min <= max && usize::from(*max) <= MAX_COMPLETIONS
}

/// `SubmitWait`'s window: `Reap`'s (the I/Os are checked by the driver).
fn submit_wait_window(min: &u16, max: &u16, _ios: &Ios<'_>) -> bool {
    reap_window(min, max)
}

protocol! {
    error: BlockError;

    /// Device geometry and limits. Answer: `Info`.
    1 Info => fn info
    -> /// To `Info`.
       Info(info: Info);

    /// Start these I/Os (1..=[`MAX_IOS`](crate::MAX_IOS)), all or nothing:
    /// each is checked (range, alignment, size, grant, tag) before any is
    /// started. Their buffers are the call's grant. Answer: `Accepted`, as
    /// soon as they are on the device.
    2 Submit(ios: Ios<'a>) => fn submit
    -> /// To `Submit`: every I/O was started.
       Accepted;

    /// Wait until at least `min` of the client's I/Os completed, and return
    /// up to `max` completions (oldest first). Answer: `Completions`.
    3 Reap {
        /// At least this many (1..=in flight).
        min: u16,
        /// At most this many (`min..=`[`MAX_COMPLETIONS`]).
        max: u16,
    } if reap_window => fn reap
    -> /// To `Reap`.
       Completions(completions: Completions<'a>);

    /// The driver's counters since the last `SetMode` or `ResetStats`.
    /// Answer: `Stats`.
    4 Stats => fn stats
    -> /// To `Stats`.
       Stats(stats: BlockStats);

    /// Benchmark systems only: switch the driver's IOMMU policy (the driver
    /// quiesces its device, the IOMMU server changes the policy, the device
    /// comes back up) and reset the counters. Answer: `ModeSet`.
    5 SetMode(mode: BenchMode) => fn set_mode
    -> /// To `SetMode`: the device is back up in the new mode.
       ModeSet;

    /// `Submit` and `Reap` in one call, for a client that keeps its queue
    /// full: start these I/Os exactly as `Submit` does (all or nothing,
    /// every check first; a refusal starts nothing and waits for nothing),
    /// then wait as `Reap { min, max }` does, counting the I/Os just
    /// started. `min` above what would then be in flight or unreaped is
    /// `NothingInFlight`, and a client already waiting in a `Reap` is
    /// `Busy`; both are refused before anything starts. Answer:
    /// `Completed`.
    7 SubmitWait {
        /// At least this many completions (1..=in flight after the start).
        min: u16,
        /// At most this many (`min..=`[`MAX_COMPLETIONS`]).
        max: u16,
        /// The I/Os, as `Submit`'s.
        ios: Ios<'a>,
    } if submit_wait_window => fn submit_wait
    -> /// To `SubmitWait`: every I/O was started, and these completed.
       Completed(completions: Completions<'a>);

    /// Benchmark systems only: start the counters afresh (the driver's and
    /// the IOMMU server's for it, whose pending invalidations are completed
    /// first), so that a peak such as the largest stale window is one
    /// measurement's. Nothing may be in flight. Answer: `StatsReset`.
    6 ResetStats => fn reset_stats
    -> /// To `ResetStats`.
       StatsReset;
}

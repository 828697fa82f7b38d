//! The deferred flush lead: how far ahead of now the server looks for
//! deferred windows to close, around each call it handles. The server is
//! single-threaded, so a window whose deadline falls inside a call closes
//! late by what is left of that call; and a window that would close before
//! the next call arrives costs a timer wake-up (two address-space
//! switches) unless it is flushed while the server runs anyway.
//!
//! A window is kept open so that later unmaps can share its sync. When
//! the next unmap is not expected before the window must close (counting
//! that unmap's own handling, before which the window would be flushed),
//! nothing can join it: keeping it open would only arm a timer that is
//! disarmed again (under TCG a timer write costs 9–23 µs), so it is
//! flushed right after the call too. The unmap estimate can only make
//! that flush earlier than the next-call rule would (`flush_lead` is never
//! below `next_call_in`), so no client's calls, refused ones included,
//! can keep a window open longer than before.
//!
//! An average can still be wrong about the next unmap: when unmaps come
//! about as far apart as a window stays open, it foresees a join that
//! rarely happens, and each window kept open for nothing costs its timer
//! armed and disarmed (two compare-value writes, 20-46 µs under TCG) on
//! top of the sync it still needs. So [`Lead`] also scores that bet: each
//! unmap says whether it came in time to join the window left open when
//! the call before it ended (whether or not that window was then kept),
//! and while fewer than half did, every deferred window is flushed right
//! after its call.
//!
//! [`Lead`] owns only those estimates: a call's expected length (the
//! longest recent call, plus the call's own pages at the largest recent
//! cost per page, so that a long call after many short ones is foreseen
//! from its size rather than from history a client controls), the
//! expected gap until the next call, the expected gap until the next
//! unmap, and the share of unmaps that came in time to join. It reads no
//! clock (times are passed in), never flushes anything itself, and never
//! panics on any input.

/// The longest gap between two calls [`Lead::next_call_in`] counts (µs):
/// an idle spell makes the server flush early for a few calls, not for
/// long.
pub const MAX_GAP_US: u64 = 2_000;

/// The fewest pages a call must name for its length to teach [`Lead`] what
/// a page costs (below that, the fixed cost of a call hides it).
pub const LEARN_PAGES: u64 = 64;

/// The cost per page assumed until a call of [`LEARN_PAGES`] pages or more
/// has been measured, and the least ever assumed (ns): more than any
/// measured under TCG, about 0.5 µs on a quiet host and up to 1.7 µs on
/// a loaded one (a 512-page map, pins included).
pub const FIRST_PAGE_NS: u64 = 2_000;

/// The join rate (`Lead`'s share of unmaps that came in time to join) when
/// every recent unmap did.
pub const JOINED_ALL: u32 = 256;

/// The estimates; see the module documentation.
#[derive(Clone, Debug)]
pub struct Lead {
    /// The longest recent call (µs), decaying by 1/16 per call.
    call_us: u64,
    /// The largest recent cost per page of a carried-out call of at least
    /// [`LEARN_PAGES`] pages (ns), decaying by 1/16 per call, never below
    /// [`FIRST_PAGE_NS`].
    page_ns: u64,
    /// The average gap between two calls' arrivals (µs, each counted up
    /// to [`MAX_GAP_US`], weight 1/8).
    gap_us: u64,
    /// When the last call arrived (µs).
    last_call_us: Option<u64>,
    /// The average gap between two unmaps' arrivals, any client's (µs,
    /// each counted up to [`MAX_GAP_US`], weight 1/8).
    unmap_gap_us: u64,
    /// When the last unmap arrived (µs).
    last_unmap_us: Option<u64>,
    /// The share of unmaps that came in time to join the window open
    /// when the call before them ended, in 1/[`JOINED_ALL`] (weight 1/8;
    /// all of them until told otherwise).
    join_rate: u32,
    /// When the earliest deferred window was due as the first call since
    /// the last unmap ended with one open (µs): the next unmap scores it.
    bet_due: Option<u64>,
}

impl Default for Lead {
    fn default() -> Self {
        Self::new()
    }
}

impl Lead {
    /// No call seen yet.
    pub const fn new() -> Self {
        Self {
            call_us: 0,
            page_ns: FIRST_PAGE_NS,
            gap_us: 0,
            last_call_us: None,
            unmap_gap_us: 0,
            last_unmap_us: None,
            join_rate: JOINED_ALL,
            bet_due: None,
        }
    }

    /// A call naming `pages` pages (`iommu_api::request_pages`) arrived at
    /// `now_us`: counts the gap since the last one and returns how long
    /// handling it may take (µs). A deferred window that closes within
    /// that is flushed before the call.
    pub fn arrive(&mut self, now_us: u64, pages: u64) -> u64 {
        if let Some(last) = self.last_call_us {
            let gap = now_us.saturating_sub(last).min(MAX_GAP_US);
            self.gap_us = self.gap_us - self.gap_us / 8 + gap / 8;
        }
        self.last_call_us = Some(now_us);
        self.call_us
            .saturating_add(pages.saturating_mul(self.page_ns) / 1_000)
    }

    /// The call that arrived last took `took_us`; `carried_out` says
    /// whether it did its work (a refused call is cheap whatever its size,
    /// and must not teach that pages are cheap). It is asked only of a
    /// call of [`LEARN_PAGES`] pages or more, so that the usual small call
    /// does not pay for decoding its reply.
    pub fn handled(&mut self, pages: u64, took_us: u64, carried_out: impl FnOnce() -> bool) {
        self.call_us = (self.call_us - self.call_us / 16).max(took_us);
        // A cost per page is forgotten as calls go by, as the longest call
        // is: one slow call (QEMU translating the server's code for the
        // first time made a 64-page map take 5 ms) would otherwise be
        // assumed for good, since few calls name that many pages. Never
        // below FIRST_PAGE_NS: no run of calls, refused or small, makes
        // pages look cheaper than that.
        self.page_ns = (self.page_ns - self.page_ns / 16).max(FIRST_PAGE_NS);
        if pages >= LEARN_PAGES && carried_out() {
            let per_page = took_us.saturating_mul(1_000) / pages;
            self.page_ns = self.page_ns.max(per_page);
        }
    }

    /// The call that arrived last (at `now_us`, expected to take
    /// `expect_us`: what [`Lead::arrive`] returned) is an `Unmap`: counts
    /// the gap since the last one, and whether it came in time to join
    /// the window a call left open before it (in time: before the window
    /// is due, counting its own handling, as the before-call flush does).
    pub fn unmap_arrived(&mut self, now_us: u64, expect_us: u64) {
        if let Some(due) = self.bet_due.take() {
            let joined = now_us.saturating_add(expect_us) < due;
            self.join_rate =
                self.join_rate - self.join_rate / 8 + if joined { JOINED_ALL / 8 } else { 0 };
        }
        if let Some(last) = self.last_unmap_us {
            let gap = now_us.saturating_sub(last).min(MAX_GAP_US);
            self.unmap_gap_us = self.unmap_gap_us - self.unmap_gap_us / 8 + gap / 8;
        }
        self.last_unmap_us = Some(now_us);
    }

    /// How long until the next call is expected (µs).
    pub fn next_call_in(&self) -> u64 {
        self.gap_us
    }

    /// A call ended, with the earliest deferred window due at `window_due`
    /// (µs; `None`: no window open). The first such window since the last
    /// unmap is the one the next unmap is scored against.
    pub fn call_ended(&mut self, window_due: Option<u64>) {
        if self.bet_due.is_none() {
            self.bet_due = window_due;
        }
    }

    /// How far ahead of `now_us` a deferred window is flushed right after
    /// a call (µs): one that closes before the next call would cost a
    /// timer wake-up, and one that closes before the next unmap could join
    /// it would only cost a timer armed and disarmed. The next unmap is
    /// expected one average unmap gap after the last one arrived, and a
    /// window closing within the longest recent call after that is
    /// flushed before it is handled (`arrive`'s estimate, less its pages).
    /// Until a second unmap has arrived the unmap gap is unknown and
    /// counts as none. While fewer than half the recent unmaps came in time
    /// to join, every window is flushed after its call (`u64::MAX`).
    pub fn flush_lead(&self, now_us: u64) -> u64 {
        if self.join_rate < JOINED_ALL / 2 {
            return u64::MAX;
        }
        let join = match self.last_unmap_us {
            Some(last) if self.unmap_gap_us > 0 => last
                .saturating_add(self.unmap_gap_us)
                .saturating_add(self.call_us)
                .saturating_sub(now_us),
            _ => 0,
        };
        self.gap_us.max(join)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` one-page calls, `every_us` apart, each taking `took_us`, from
    /// `t`; returns the time after them.
    fn short_calls(l: &mut Lead, mut t: u64, n: u32, every_us: u64, took_us: u64) -> u64 {
        for _ in 0..n {
            l.arrive(t, 1);
            l.handled(1, took_us, || true);
            t += every_us;
        }
        t
    }

    #[test]
    fn a_long_call_after_many_short_ones_is_foreseen_from_its_size() {
        let mut l = Lead::new();
        // One 512-page call teaches the cost of a page: 200 µs.
        l.arrive(0, 512);
        l.handled(512, 200, || true);
        // Two hundred short calls wear the longest-call memory down.
        let t = short_calls(&mut l, 1_000, 200, 30, 10);
        let expect = l.arrive(t, 512);
        assert!(expect >= 190, "expected {expect} us for a 512-page call");
        // A one-page call is expected short.
        l.handled(512, 200, || true);
        let t = short_calls(&mut l, t + 1_000, 200, 30, 10);
        assert!(l.arrive(t, 1) < 20);
    }

    #[test]
    fn a_slow_first_long_call_is_forgotten() {
        // QEMU translating the server's code for the first time made one
        // 64-page call take 5 ms (78 µs a page, against about 0.4 under
        // TCG after it); the calls after it took 30 µs. A hundred calls
        // later an 8-page unmap must not be expected to take 8 × 78 µs,
        // which flushed before it every deferred window it could have
        // joined, nor less than FIRST_PAGE_NS a page.
        let mut l = Lead::new();
        l.arrive(0, 64);
        l.handled(64, 5_000, || true);
        let t = short_calls(&mut l, 10_000, 100, 200, 30);
        let expect = l.arrive(t, 8);
        let floor = 8 * FIRST_PAGE_NS / 1_000;
        assert!(
            (30 + floor..=30 + 2 * floor).contains(&expect),
            "an 8-page call expected to take {expect} us"
        );
    }

    #[test]
    fn the_first_long_call_is_assumed_slow() {
        let mut l = Lead::new();
        assert_eq!(l.arrive(0, 512), 512 * FIRST_PAGE_NS / 1_000);
    }

    #[test]
    fn refused_or_small_calls_never_teach_that_pages_are_cheap() {
        let mut l = Lead::new();
        // A slow large call: 4 µs a page.
        l.arrive(0, 512);
        l.handled(512, 2_048, || true);
        assert_eq!(l.page_ns, 4_000);
        // Refused large calls and small ones wear it down to the floor,
        // never below, and a small call's reply is never decoded.
        for i in 0..100 {
            l.arrive(100 + i, 4_096);
            l.handled(4_096, 1, || false);
            l.arrive(200 + i, 63);
            l.handled(63, 0, || panic!("a small call's reply is never decoded"));
        }
        assert_eq!(l.page_ns, FIRST_PAGE_NS);
        // Nor do carried-out cheap large calls.
        l.arrive(1_000, 512);
        l.handled(512, 0, || true);
        assert_eq!(l.page_ns, FIRST_PAGE_NS);
        // A large call is foreseen from its size at that cost at least.
        assert!(l.arrive(2_000, 512) >= 512 * FIRST_PAGE_NS / 1_000);
    }

    #[test]
    fn the_gap_is_an_average_capped_per_gap() {
        let mut l = Lead::new();
        let t = short_calls(&mut l, 0, 100, 40, 5);
        let g = l.next_call_in();
        assert!((30..=40).contains(&g), "gap {g}");
        // One idle hour counts as MAX_GAP_US, at weight 1/8.
        l.arrive(t + 3_600_000_000, 1);
        assert!(l.next_call_in() <= g + MAX_GAP_US / 8 + 1);
    }

    #[test]
    fn a_window_nothing_can_join_is_flushed_after_its_call() {
        let mut l = Lead::new();
        // A driver at QD8: a Map and an Unmap per batch, the Unmap every
        // 440 µs, calls 220 µs apart, each taking 30 µs.
        let mut t = 0;
        for _ in 0..64 {
            l.arrive(t, 8);
            l.handled(8, 30, || true);
            t += 220;
            let e = l.arrive(t, 8);
            l.unmap_arrived(t, e);
            l.handled(8, 30, || true);
            t += 220;
        }
        // Calls come every 220 µs, but the next unmap only 440 µs after the
        // last one, plus its handling: right after the last unmap (30 µs
        // after it arrived), a window closing 430 µs from now cannot be
        // shared.
        assert!((200..=220).contains(&l.next_call_in()));
        let last_unmap = t - 220;
        let lead = l.flush_lead(last_unmap + 30);
        assert!((430..=450).contains(&lead), "lead {lead}");
        // After the next Map (220 µs later) the next unmap is nearer.
        let lead = l.flush_lead(last_unmap + 250);
        assert!((210..=230).contains(&lead), "lead {lead}");
        // Unmaps every 60 µs: the lead is the next call's gap again, and a
        // window 460 µs away stays open for the unmaps to come.
        for _ in 0..64 {
            let e = l.arrive(t, 1);
            l.unmap_arrived(t, e);
            l.handled(1, 10, || true);
            t += 60;
        }
        let lead = l.flush_lead(t - 60 + 10);
        assert!(lead < 120, "lead {lead}");
        // Long after the last unmap, the next-call rule still holds.
        assert_eq!(l.flush_lead(t + 10_000), l.next_call_in());
    }

    #[test]
    fn one_unmap_alone_does_not_set_the_lead() {
        let mut l = Lead::new();
        let t = short_calls(&mut l, 0, 20, 100, 5);
        let e = l.arrive(t, 1);
        l.unmap_arrived(t, e);
        assert_eq!(l.flush_lead(t + 5), l.next_call_in());
    }

    #[test]
    fn extreme_values_saturate() {
        let mut l = Lead::new();
        l.arrive(u64::MAX, u64::MAX);
        l.handled(u64::MAX, u64::MAX, || true);
        assert_eq!(l.arrive(0, u64::MAX), u64::MAX);
        l.handled(0, 0, || true);
        l.call_ended(Some(u64::MAX));
        l.unmap_arrived(u64::MAX, u64::MAX);
        l.call_ended(Some(0));
        l.unmap_arrived(0, 0);
        l.call_ended(None);
        for now in [0, u64::MAX] {
            assert!(l.flush_lead(now) >= l.next_call_in());
        }
    }
    /// A driver whose Unmap opens a window due `due_after` µs later and
    /// ends `took` µs after it arrives, unmaps `gaps` µs apart (cycled):
    /// `rounds` unmaps, each scored against the window its predecessor
    /// left open. Returns the time of the last unmap.
    fn unmaps_against_windows(
        l: &mut Lead,
        mut t: u64,
        gaps: &[u64],
        rounds: usize,
        due_after: u64,
    ) -> u64 {
        let took = 30;
        let mut last = t;
        for i in 0..rounds {
            let e = l.arrive(t, 8);
            l.unmap_arrived(t, e);
            l.handled(8, took, || true);
            l.call_ended(Some(t + due_after));
            last = t;
            t += gaps[i % gaps.len()];
        }
        last
    }

    #[test]
    fn windows_that_unmaps_seldom_join_are_flushed_after_their_call() {
        // Unmaps 100, 700 and 700 µs apart (500 on average), a window due
        // 600 µs after the unmap that opened it: the average foresees a
        // join every time, one unmap in three comes in time.
        let mut l = Lead::new();
        let last = unmaps_against_windows(&mut l, 0, &[100, 700, 700], 96, 600);
        assert!(l.join_rate < JOINED_ALL / 2, "join rate {}", l.join_rate);
        // Right after the last unmap's call, its window (due 570 µs from
        // now) is flushed, not kept for an unmap that seldom comes.
        assert!(l.flush_lead(last + 30) >= 570);
    }

    #[test]
    fn windows_that_unmaps_join_stay_open_and_the_rate_comes_back() {
        // Unmaps 300 µs apart, windows due 500 µs after: every one joins,
        // and the window stays open after the call (the average rule).
        let mut l = Lead::new();
        let last = unmaps_against_windows(&mut l, 0, &[300], 64, 500);
        assert_eq!(l.join_rate, JOINED_ALL);
        let lead = l.flush_lead(last + 30);
        assert!(lead < 470, "lead {lead}");
        // Unmaps 700 µs apart: none joins, and a few of them are enough
        // to stop keeping windows.
        let t = unmaps_against_windows(&mut l, last + 300, &[700], 8, 500);
        assert!(l.flush_lead(t + 30) >= 470);
        // In time again: the windows stay open once more than half of the
        // recent unmaps joined, while the misses are still scored (the
        // windows were flushed, but would the unmap have joined them?).
        let t = unmaps_against_windows(&mut l, t + 700, &[300], 16, 500);
        assert!(l.join_rate >= JOINED_ALL / 2, "rate {}", l.join_rate);
        assert!(l.flush_lead(t + 30) < 470);
    }

    #[test]
    fn only_the_first_open_window_after_an_unmap_is_bet_on() {
        let mut l = Lead::new();
        // The Unmap's call ends with its window due at 500; the Map after
        // it ends with the same window open and one of another client's
        // due later: the next unmap is scored against 500 alone.
        let e = l.arrive(0, 1);
        l.unmap_arrived(0, e);
        l.call_ended(Some(500));
        l.call_ended(Some(2_000));
        for _ in 0..8 {
            let e = l.arrive(900, 1);
            l.unmap_arrived(900, e);
            l.call_ended(Some(500));
        }
        assert!(l.join_rate < JOINED_ALL / 2, "rate {}", l.join_rate);
        // A call that ended with no window open bets on nothing.
        let mut l = Lead::new();
        for t in 0..64 {
            l.call_ended(None);
            let e = l.arrive(t * 1_000, 1);
            l.unmap_arrived(t * 1_000, e);
        }
        assert_eq!(l.join_rate, JOINED_ALL);
    }
}

//! Bounded waiting: [`poll_until`], the one helper every poll of a device
//! or of the kernel's own state goes through, with its deadline measured on
//! a caller-supplied [`Clock`] (CNTVCT_EL0 at EL1 or EL0; a fake one in
//! tests). It never waits without a deadline, and it looks once more after
//! the deadline, so a wait descheduled past it cannot turn success into a
//! timeout.

/// A free-running counter and what to do between two polls.
pub trait Clock {
    /// The counter now, in ticks.
    fn now(&mut self) -> u64;

    /// Ticks per second (at least 1).
    fn hz(&self) -> u64;

    /// Runs between two polls: by default a spin-loop hint; a task may
    /// sleep instead.
    fn pause(&mut self) {
        core::hint::spin_loop();
    }
}

/// A wait ran out of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOut {
    /// How long was waited, in microseconds.
    pub waited_us: u64,
}

/// Counter ticks at `hz` in `us` microseconds (saturating).
pub fn us_to_ticks(us: u64, hz: u64) -> u64 {
    let t = u128::from(us) * u128::from(hz) / 1_000_000;
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// Microseconds in `ticks` counter ticks at `hz` (saturating).
pub fn ticks_to_us(ticks: u64, hz: u64) -> u64 {
    let us = u128::from(ticks) * 1_000_000 / u128::from(hz.max(1));
    u64::try_from(us).unwrap_or(u64::MAX)
}

/// Calls `poll` until it returns `Some`, pausing on `clock` in between, for
/// at most `timeout_us` microseconds; after the deadline `poll` is called
/// once more. A condition is `|| ready().then_some(())`; a poll that can
/// fail ends the wait early by returning `Some(Err(..))`.
pub fn poll_until<C: Clock + ?Sized, T>(
    clock: &mut C,
    timeout_us: u64,
    mut poll: impl FnMut() -> Option<T>,
) -> Result<T, TimedOut> {
    let hz = clock.hz().max(1);
    let limit = us_to_ticks(timeout_us, hz);
    let start = clock.now();
    loop {
        if let Some(v) = poll() {
            return Ok(v);
        }
        let waited = clock.now().wrapping_sub(start);
        if waited >= limit {
            return poll().ok_or(TimedOut {
                waited_us: ticks_to_us(waited, hz),
            });
        }
        clock.pause();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1 MHz clock that advances `step` ticks per reading and counts
    /// pauses.
    struct Fake {
        t: u64,
        step: u64,
        pauses: u32,
    }

    impl Clock for Fake {
        fn now(&mut self) -> u64 {
            self.t = self.t.wrapping_add(self.step);
            self.t
        }
        fn hz(&self) -> u64 {
            1_000_000
        }
        fn pause(&mut self) {
            self.pauses += 1;
        }
    }

    #[test]
    fn returns_as_soon_as_the_condition_holds() {
        let mut c = Fake {
            t: 0,
            step: 10,
            pauses: 0,
        };
        let mut n = 0;
        let got = poll_until(&mut c, 1_000, || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(got, Ok(3));
        assert_eq!(c.pauses, 2);
    }

    #[test]
    fn times_out_at_the_deadline_and_reports_the_wait() {
        let mut c = Fake {
            t: 0,
            step: 100,
            pauses: 0,
        };
        let mut calls = 0;
        let got: Result<(), _> = poll_until(&mut c, 1_000, || {
            calls += 1;
            None
        });
        assert_eq!(got, Err(TimedOut { waited_us: 1_000 }));
        // Polls at 100, 200, .. 900 us, then the deadline, then one last look.
        assert_eq!(calls, 11);
    }

    #[test]
    fn looks_once_more_after_the_deadline() {
        // The first reading after the start is already past the deadline
        // (the waiter was descheduled); the condition became true meanwhile.
        let mut c = Fake {
            t: 0,
            step: 5_000,
            pauses: 0,
        };
        let mut calls = 0;
        let got = poll_until(&mut c, 1_000, || {
            calls += 1;
            (calls == 2).then_some(())
        });
        assert_eq!(got, Ok(()));
    }

    #[test]
    fn survives_counter_wrap() {
        let mut c = Fake {
            t: u64::MAX - 150,
            step: 100,
            pauses: 0,
        };
        let got: Result<(), _> = poll_until(&mut c, 500, || None);
        assert_eq!(got, Err(TimedOut { waited_us: 500 }));
    }

    #[test]
    fn errors_end_the_wait_early() {
        let mut c = Fake {
            t: 0,
            step: 1,
            pauses: 0,
        };
        let got = poll_until(&mut c, 1_000_000, || Some(Err::<(), _>("refused")));
        assert_eq!(got, Ok(Err("refused")));
    }

    #[test]
    fn conversions_saturate() {
        assert_eq!(us_to_ticks(1_000_000, 62_500_000), 62_500_000);
        assert_eq!(us_to_ticks(u64::MAX, 1_000_000_000), u64::MAX);
        assert_eq!(ticks_to_us(62_500_000, 62_500_000), 1_000_000);
        assert_eq!(ticks_to_us(u64::MAX, 1), u64::MAX);
        assert_eq!(ticks_to_us(10, 0), 10_000_000);
    }
}

//! Bounded waiting, in one place for every block driver: each poll of a
//! device (NVMe CSTS and admin completions, virtio reset) goes through
//! [`wait_for`], which has a deadline on the architected counter. Never
//! spins without sleeping between polls and never waits forever.

use userlib::counter;

/// The counter's frequency, for turning microseconds into ticks.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    hz: u64,
}

impl Clock {
    /// A clock ticking at `hz` (at least 1).
    pub fn new(hz: u64) -> Clock {
        Clock { hz: hz.max(1) }
    }

    /// Ticks in `us` microseconds (saturating).
    pub fn ticks(self, us: u64) -> u64 {
        let t = u128::from(us) * u128::from(self.hz) / 1_000_000;
        u64::try_from(t).unwrap_or(u64::MAX)
    }
}

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited<T> {
    /// `poll` returned this.
    Done(T),
    /// The deadline passed first.
    TimedOut,
}

/// Calls `poll` until it returns `Some`, sleeping `poll_us` in between,
/// for at most `timeout_us` (it is called once more after the deadline,
/// so a slow scheduler cannot turn a success into a timeout).
pub fn wait_for<T>(
    clock: Clock,
    timeout_us: u64,
    poll_us: u64,
    mut poll: impl FnMut() -> Option<T>,
) -> Waited<T> {
    let deadline = counter().saturating_add(clock.ticks(timeout_us));
    loop {
        if let Some(v) = poll() {
            return Waited::Done(v);
        }
        if counter() >= deadline {
            return match poll() {
                Some(v) => Waited::Done(v),
                None => Waited::TimedOut,
            };
        }
        let _ = userlib::sleep(poll_us);
    }
}

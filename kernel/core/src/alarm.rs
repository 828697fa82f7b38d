//! Whether the scheduler re-arms its one timer for the earliest deadline.
//! It owns only that decision; the kernel keeps the tasks' deadlines and
//! the architecture code writes the timer.
//!
//! Writing the timer is expensive under emulation: QEMU takes its global
//! lock and re-arms a host timer, 9–23 µs a write of CNTV_CVAL under TCG
//! (counter reads around the write, block benchmark at QD1 and QD8). A
//! server that waits with a deadline and is woken by a call loses its
//! deadline while it runs, and waits again until the same time right
//! after: re-arming for the later deadline in between, and back, costs two
//! writes for nothing. So a later deadline than the one armed is not armed
//! while the task that deadline belongs to is not waiting: it runs (or is
//! ready to), and most likely waits until the same time again. Once it
//! waits with another deadline, or none, or the armed time has passed,
//! the earliest deadline is armed as usual. The kernel forgets what is
//! armed on every timer interrupt, whose handler re-arms the tick.
//!
//! It must never leave the timer armed later than a waiting task's
//! deadline.

/// What was last armed: a deadline and whether the task it belongs to is
/// waiting now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Armed {
    /// The deadline (counter ticks).
    pub at: u64,
    /// The task it belongs to still waits (with some deadline, maybe
    /// another one, or none).
    pub owner_waits: bool,
}

/// Whether to leave the timer as it is instead of arming `next` (the
/// earliest deadline of the waiting tasks) at `now`.
pub fn keep(armed: Option<Armed>, next: Option<u64>, now: u64) -> bool {
    let Some(a) = armed else {
        return false;
    };
    // Only a later (or no) deadline may wait, and only while the armed
    // one is still ahead and its task is not waiting.
    next.is_none_or(|n| n > a.at) && a.at > now && !a.owner_waits
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RUNS: Armed = Armed {
        at: 500,
        owner_waits: false,
    };

    #[test]
    fn a_later_deadline_waits_while_the_owner_runs() {
        assert!(keep(Some(RUNS), Some(900), 100));
        assert!(keep(Some(RUNS), None, 100));
    }

    #[test]
    fn an_earlier_deadline_is_armed() {
        assert!(!keep(Some(RUNS), Some(400), 100));
        // The same one: armed again, which writes nothing.
        assert!(!keep(Some(RUNS), Some(500), 100));
    }

    #[test]
    fn a_waiting_owner_or_a_passed_time_re_arms() {
        let waits = Armed {
            owner_waits: true,
            ..RUNS
        };
        assert!(!keep(Some(waits), Some(900), 100));
        assert!(!keep(Some(RUNS), Some(900), 500));
        assert!(!keep(None, Some(900), 100));
    }

    /// What happens to two tasks that wait with deadlines, and the clock.
    #[derive(Clone, Debug)]
    enum Step {
        /// Task `.0` waits until `now + .1` (or without a deadline).
        Wait(usize, Option<u64>),
        /// Task `.0` is woken (by a call) and runs.
        Wake(usize),
        /// The clock moves on.
        Advance(u64),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                (0usize..2, prop::option::of(1u64..3_000)).prop_map(|(t, d)| Step::Wait(t, d)),
                (0usize..2).prop_map(Step::Wake),
                (1u64..1_000).prop_map(Step::Advance),
            ],
            1..300,
        )
    }

    proptest! {
        /// Against a model scheduler and timer: after every decision the
        /// armed time is no later than every waiting task's deadline.
        #[test]
        fn never_armed_later_than_a_waiting_deadline(steps in steps()) {
            let mut now = 0u64;
            // Per task: waiting, and its deadline if it has one.
            let mut tasks = [(false, None::<u64>); 2];
            // The armed time and whose deadline it is, as the kernel
            // records it.
            let mut armed: Option<(u64, usize)> = None;
            for s in steps {
                match s {
                    Step::Wait(t, d) => tasks[t] = (true, d.map(|d| now + d)),
                    Step::Wake(t) => tasks[t] = (false, None),
                    Step::Advance(d) => {
                        now += d;
                        if armed.is_some_and(|(at, _)| at <= now) {
                            // The interrupt: the kernel forgets it.
                            armed = None;
                        }
                        for task in &mut tasks {
                            if task.1.is_some_and(|d| d <= now) {
                                // Woken by its deadline.
                                *task = (false, None);
                            }
                        }
                    }
                }
                let next = (0..2)
                    .filter_map(|t| tasks[t].1.map(|d| (d, t)))
                    .min();
                let record = armed.map(|(at, t)| Armed {
                    at,
                    owner_waits: tasks[t].0,
                });
                if !keep(record, next.map(|n| n.0), now) {
                    armed = next;
                }
                // Every deadline here belongs to a waiting task.
                for d in tasks.iter().filter_map(|t| t.1) {
                    prop_assert!(
                        armed.is_some_and(|(at, _)| at <= d),
                        "deadline {} not covered by {:?}",
                        d,
                        armed
                    );
                }
            }
        }
    }
}

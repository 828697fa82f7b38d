//! The scheduler: fixed priorities (higher number first), round-robin
//! among equal priorities on the timer tick, preemption when a more urgent
//! task becomes ready, timeouts, and idling when nothing can run. It is the
//! only code that switches address spaces and decides the end of the run.
//! Must never run a task that is not `Ready`.

use kernel_core::alarm;

use super::{End, KERNEL, Kernel, PRIORITIES, State, TaskIdx};
use crate::arch::TrapFrame;
use crate::arch::timer;
use crate::timeout::us_to_ticks;
use crate::{arch, kprintln};

/// A deadline at most this far away is waited for by polling the counter
/// rather than sleeping on the timer interrupt ([`arch::idle_poll`]): a
/// deferred IOMMU window (T less the server's lead, 500 µs in the
/// benchmark) is closed on time even while QEMU is slow to deliver the
/// timer interrupt.
const IDLE_POLL_US: u64 = 1_000;

impl Kernel {
    /// Makes `t` ready to run (its saved registers say what it sees).
    pub fn make_ready(&mut self, t: TaskIdx) {
        let task = &mut self.tasks[t];
        task.state = State::Ready;
        self.ready[usize::from(task.priority)].push_back(t);
        if let Some(c) = self.current
            && self.tasks[c].priority < self.tasks[t].priority
        {
            self.resched = true;
        }
    }

    pub(super) fn highest_ready(&self) -> Option<u8> {
        (0..PRIORITIES)
            .rev()
            .find(|&p| {
                self.ready[p]
                    .iter()
                    .any(|&t| self.tasks[t].state == State::Ready)
            })
            .map(|p| p as u8)
    }

    fn pick(&mut self) -> Option<TaskIdx> {
        for p in (0..PRIORITIES).rev() {
            while let Some(t) = self.ready[p].pop_front() {
                if self.tasks[t].state == State::Ready {
                    return Some(t);
                }
            }
        }
        None
    }

    /// Wakes every task whose deadline has passed.
    pub fn wake_expired(&mut self, now: u64) {
        for t in 0..self.tasks.len() {
            if let Some(d) = self.tasks[t].state.deadline()
                && d <= now
            {
                crate::latency::note_wake_late(now - d);
                super::ipc::time_out(self, t);
                self.counters.timer_wakeups += 1;
            }
        }
    }

    fn earliest_deadline(&self) -> Option<u64> {
        self.tasks.iter().filter_map(|t| t.state.deadline()).min()
    }

    /// Arms the timer for the earliest deadline (and the tick), and returns
    /// that deadline; leaves it as it is while the armed deadline's task is
    /// busy with what woke it before that deadline and no waiting task
    /// needs an earlier one ([`kernel_core::alarm`]: each re-arming costs
    /// 9–23 µs under QEMU TCG). Called with `current` set when a task is
    /// about to run, and cleared before idling.
    fn arm_timer(&mut self, now: u64) -> Option<u64> {
        let next = self
            .tasks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.state.deadline().map(|d| (d, i)))
            .min();
        // Busy: it runs, is ready to, or waits on a call of its own; not
        // when the CPU idles (then nothing is busy with anything).
        let busy = |t: TaskIdx| {
            self.current.is_some()
                && matches!(
                    self.tasks[t].state,
                    State::Running
                        | State::Ready
                        | State::SendBlocked { .. }
                        | State::ReplyWait { .. }
                )
        };
        let armed = self.armed.map(|(at, owner)| alarm::Armed {
            at,
            owner_waits: !busy(owner),
        });
        if !alarm::keep(armed, next.map(|n| n.0), now) {
            timer::program(next.map(|n| n.0));
            self.armed = next;
        }
        next.map(|n| n.0)
    }

    /// The run is over: no task is ready, and either only servers are left,
    /// idle in `recv` (with every client gone nothing will call them), or
    /// nothing can ever run again (no deadline, no interrupt that could
    /// still arrive for a waiting task).
    fn quiescent(&self) -> bool {
        if self.highest_ready().is_some() {
            return false;
        }
        let only_idle_servers_left = self.tasks.iter().all(|t| {
            t.end.is_some() || (t.is_server() && matches!(t.state, State::RecvBlocked { .. }))
        });
        if only_idle_servers_left {
            return true;
        }
        let irq_waiter = self.irqs.values().any(|b| {
            !b.masked
                && matches!(
                    self.tasks[b.task].state,
                    State::WaitNotify { .. } | State::RecvBlocked { .. }
                )
        });
        !irq_waiter && self.earliest_deadline().is_none()
    }
}

/// Saves the running task's registers from `frame` (on every trap from user mode).
pub fn save_current(frame: &TrapFrame) {
    let mut guard = KERNEL.lock();
    let k = guard.as_mut().expect("tasks exist once user mode runs");
    if let Some(c) = k.current {
        k.tasks[c].ctx = *frame;
    }
}

/// Chooses who runs next and loads its registers into `frame`, idling
/// while nobody can run. Ends the run when nothing ever will again.
pub fn schedule(frame: &mut TrapFrame) {
    let mut guard = KERNEL.lock();
    loop {
        let k = guard.as_mut().expect("tasks exist");
        let now = arch::counter();
        // The time since the last charge was the running task's (in user mode,
        // or in the kernel on its behalf); idle time is nobody's.
        if let Some(c) = k.current {
            let ran = now.saturating_sub(k.charged_at);
            k.tasks[c].cpu_ticks = k.tasks[c].cpu_ticks.saturating_add(ran);
        }
        k.charged_at = now;
        k.wake_expired(now);
        if let Some(c) = k.current
            && k.tasks[c].state == State::Running
        {
            let prio = k.tasks[c].priority;
            let preempt = match k.highest_ready() {
                Some(p) => p > prio || (p == prio && k.resched),
                None => false,
            };
            if !preempt {
                k.resched = false;
                *frame = k.tasks[c].ctx;
                arch::install_fp_state(&k.tasks[c].fp);
                k.arm_timer(now);
                return;
            }
            k.make_ready(c);
        }
        if let Some(n) = k.pick() {
            k.tasks[n].state = State::Running;
            k.current = Some(n);
            k.resched = false;
            let space = k.tasks[n]
                .space
                .as_ref()
                .expect("a runnable task has memory");
            let want = (space.root(), space.asid());
            // Only a change costs: installing the same root and tag again
            // would be a no-op (the same task picked after an idle wait).
            if Some(want) != k.user_space {
                arch::mmu::set_user_space(want.0, want.1);
                k.user_space = Some(want);
                k.counters.as_switches += 1;
            }
            *frame = k.tasks[n].ctx;
            arch::install_fp_state(&k.tasks[n].fp);
            k.arm_timer(now);
            return;
        }
        k.current = None;
        if k.quiescent() {
            finish(k);
        }
        let dl = k.arm_timer(now);
        drop(guard);
        crate::latency::masked_end();
        match dl {
            Some(d) if d.saturating_sub(arch::counter()) <= us_to_ticks(IDLE_POLL_US) => {
                arch::idle_poll(d);
            }
            _ => arch::idle_once(),
        }
        crate::latency::masked_begin();
        guard = KERNEL.lock();
        if let Some(k) = guard.as_mut() {
            k.charged_at = arch::counter();
        }
    }
}

/// Ends the run: a summary line, then the exit status (0 unless a task
/// exited with a non-zero code or panicked).
fn finish(k: &Kernel) -> ! {
    let (mut exited, mut failed, mut faulted, mut serving) = (0, 0, 0, 0);
    for t in &k.tasks {
        match t.end {
            Some(End::Exited(0)) => exited += 1,
            Some(End::Exited(_)) => failed += 1,
            Some(End::Faulted) => faulted += 1,
            None => serving += 1,
        }
    }
    kprintln!(
        "kernel: all tasks finished: {exited} exited ok, {failed} exited with an error, {faulted} faulted, {serving} still serving"
    );
    match crate::integrity::check() {
        (true, sum) => {
            kprintln!("kernel: code and read-only data unchanged since boot (checksum {sum:#018x})")
        }
        (false, sum) => kprintln!(
            "kernel: CODE OR READ-ONLY DATA CHANGED since boot (checksum now {sum:#018x})"
        ),
    }
    let (used, size) = crate::mm::stack_high_water();
    kprintln!(
        "kernel: deepest kernel stack use {} KiB of {} KiB",
        used / 1024,
        size / 1024
    );
    // Every frame in exactly one state, adding up to the boot total.
    let totals = match crate::mm::frames::audit() {
        Ok(t) => {
            kprintln!(
                "kernel: frames: {} free, {} kernel, {} tasks, {} IOMMU pool, {} held for DMA = {} of {} at boot: consistent",
                t.free,
                t.kernel,
                t.task,
                t.pool,
                t.held,
                t.sum(),
                t.boot
            );
            t
        }
        Err(why) => {
            kprintln!("kernel: frames: FAIL: accounting inconsistent: {why}");
            crate::exit(crate::status::FAIL);
        }
    };
    let (free, total) = (totals.free as usize, totals.boot as usize);
    if serving == 0 {
        // Every task ended and was reclaimed: all its frames came back,
        // except those a device may still reach (held for DMA) and a dead
        // IOMMU server's pool (kept).
        let kept = (totals.held + totals.pool) as usize;
        if free + kept == k.frames_free_before_load {
            kprintln!(
                "kernel: every task's memory reclaimed ({free} of {total} frames free, {kept} kept for DMA)"
            );
        } else {
            let missing = k.frames_free_before_load as i64 - (free + kept) as i64;
            kprintln!("kernel: LEAK: {missing} frames not returned by ended tasks");
            crate::exit(crate::status::FAIL);
        }
    } else {
        kprintln!("kernel: {free} of {total} frames free, {serving} tasks still hold theirs");
    }
    crate::exit(if failed == 0 {
        crate::status::PASS
    } else {
        crate::status::FAIL
    })
}

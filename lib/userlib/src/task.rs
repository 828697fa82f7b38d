//! The calling task's own life: [`exit`] and [`yield_now`]; and what the
//! kernel tells any task about the machine ([`kernel_integrity`]) or a
//! monitor about its memory ([`frame_stats`]).

use abi::{
    FrameCounts, KERNEL_STATS_HEAD_BYTES, KERNEL_STATS_RESET_PEAKS, KernelCounters, LatencyPeaks,
    SysResult, Sysno, TASK_NAME_MAX, TASK_TIME_BYTES,
};

use crate::raw::check;
use crate::sys::syscall;

/// Ends the calling task with `code` (x0, sign-extended). Never returns.
pub fn exit(code: i32) -> ! {
    let _ = syscall(Sysno::Exit as u64, [code as i64 as u64, 0, 0, 0, 0, 0]);
    // The kernel never resumes an exited task; if it ever did, stay put.
    loop {
        let _ = yield_now();
    }
}

/// Whether the kernel's code and read-only data are unchanged since boot,
/// and their checksum now.
pub fn kernel_integrity() -> SysResult<(bool, u64)> {
    check(syscall(Sysno::Integrity as u64, [0; 6])).map(|r| (r[1] == 1, r[2]))
}

/// The kernel's frame ledger by state (only with a monitor capability).
pub fn frame_stats(monitor_cap: u32) -> SysResult<FrameCounts> {
    check(syscall(
        Sysno::FrameStats as u64,
        [u64::from(monitor_cap), 0, 0, 0, 0, 0],
    ))
    .map(|r| FrameCounts::from_regs([r[1], r[2], r[3]]))
}

/// One task slot's run time, as [`kernel_stats`] reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskTime {
    name: [u8; TASK_NAME_MAX],
    /// Counter ticks it ran (kernel time on its behalf included).
    pub ticks: u64,
}

impl TaskTime {
    /// The task's name.
    pub fn name(&self) -> &str {
        let n = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(TASK_NAME_MAX);
        core::str::from_utf8(&self.name[..n]).unwrap_or("?")
    }
}

/// Most task slots [`kernel_stats`] reads at once.
pub const KERNEL_STATS_TASKS: usize = 32;

/// What [`kernel_stats`] returns besides the task records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// What the kernel counted since boot.
    pub counters: KernelCounters,
    /// Latency peaks since they were last reset.
    pub peaks: LatencyPeaks,
    /// Task slots written into the caller's `tasks`.
    pub slots: usize,
}

/// What the kernel counted since boot and its latency peaks (only with a
/// monitor capability), and the run time of up to `tasks.len()` task slots
/// (at most [`KERNEL_STATS_TASKS`]), written into `tasks`. With
/// `reset_peaks` the kernel starts new peaks after this read.
pub fn kernel_stats(
    monitor_cap: u32,
    tasks: &mut [TaskTime],
    reset_peaks: bool,
) -> SysResult<KernelStats> {
    let mut buf = [0u8; KERNEL_STATS_HEAD_BYTES + KERNEL_STATS_TASKS * TASK_TIME_BYTES];
    let want = KERNEL_STATS_HEAD_BYTES + tasks.len().min(KERNEL_STATS_TASKS) * TASK_TIME_BYTES;
    let flags = if reset_peaks {
        KERNEL_STATS_RESET_PEAKS
    } else {
        0
    };
    let r = check(syscall(
        Sysno::KernelStats as u64,
        [
            u64::from(monitor_cap),
            buf.as_mut_ptr() as u64,
            want as u64,
            flags,
            0,
            0,
        ],
    ))?;
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let counters = KernelCounters::from_array(core::array::from_fn(|i| u64_at(i * 8)));
    let peaks = LatencyPeaks::from_array(core::array::from_fn(|i| {
        u64_at(KernelCounters::BYTES + i * 8)
    }));
    let slots = (r[2] as usize).min(tasks.len()).min(KERNEL_STATS_TASKS);
    for (i, t) in tasks[..slots].iter_mut().enumerate() {
        let at = KERNEL_STATS_HEAD_BYTES + i * TASK_TIME_BYTES;
        t.name.copy_from_slice(&buf[at..at + TASK_NAME_MAX]);
        t.ticks = u64_at(at + TASK_NAME_MAX);
    }
    Ok(KernelStats {
        counters,
        peaks,
        slots,
    })
}

/// Yields the CPU to another ready task of equal priority. `true` if there
/// was one (it ran before this returns), `false` if the caller kept the CPU.
pub fn yield_now() -> SysResult<bool> {
    check(syscall(Sysno::Yield as u64, [0; 6])).map(|r| r[1] != 0)
}

/// Vector registers [`hold_vector_registers`] holds (32 on aarch64, 16 on
/// x86_64); the rest of its result is 0.
pub const VECTOR_REGISTERS: usize = crate::sys::VECTOR_REGISTERS;

/// Holds a pattern in the vector registers over `rounds` yields and
/// preemptions (each round spins `spin_us`) and returns what the registers
/// held afterwards: a probe of the kernel's FP/SIMD context switching.
pub fn hold_vector_registers(pattern: &[u128; 32], rounds: u64, spin_us: u64) -> [u128; 32] {
    let hz = crate::time().map(|(_, hz)| hz).unwrap_or(1).max(1);
    crate::sys::hold_vector_registers(pattern, rounds, spin_us * hz / 1_000_000)
}

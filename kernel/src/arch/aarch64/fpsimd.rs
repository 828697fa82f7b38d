//! The FP/SIMD state of tasks: v0..v31, FPSR and FPCR.
//!
//! The kernel is built for a target with FP/SIMD (the compiler uses the
//! vector registers for copies), so a task's vector registers do not
//! survive kernel code. The vectors therefore save them on every exception
//! from EL0, before any Rust code runs, into the [`FpState`] the scheduler
//! installed for the running task, and load them from the installed state
//! on every return to EL0 (vectors.S). Switching tasks is only a matter of
//! installing another task's state.
//!
//! It must never let the installed pointer name memory that is freed while
//! a task can still enter or leave the kernel with it.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, Ordering};

/// One task's FP/SIMD registers, laid out as vectors.S stores them:
/// q0..q31 at 16-byte steps, then FPSR and FPCR.
#[repr(C, align(16))]
#[derive(Clone, Default)]
pub struct FpState {
    /// v0..v31.
    pub q: [u128; 32],
    /// FPSR (cumulative exception flags).
    pub fpsr: u64,
    /// FPCR (rounding mode and other controls).
    pub fpcr: u64,
}

const _: () = assert!(core::mem::size_of::<FpState>() == 528);
const _: () = assert!(core::mem::offset_of!(FpState, fpsr) == 512);

/// The state the vectors save to and load from (symbol read by vectors.S).
/// Null until the scheduler installs the first task's state, which it does
/// before the first return to EL0.
#[unsafe(no_mangle)]
static USER_FP: AtomicPtr<FpState> = AtomicPtr::new(core::ptr::null_mut());

/// Makes `state` the one the next return to EL0 loads and the next
/// exception from EL0 saves. The scheduler calls it with the state of the
/// task it is about to run, after which nothing frees that task's state
/// before the task is left again (a task's state lives in its slot, boxed,
/// for as long as the slot holds that task).
/// The state sits in an `UnsafeCell` because the vectors write it behind
/// Rust's back; Rust code never reads it while it is installed.
pub fn install(state: &UnsafeCell<FpState>) {
    USER_FP.store(state.get(), Ordering::Relaxed);
}

//! The task runtime: what runs before `main` and after a panic.
//!
//! The kernel enters a task at its ELF entry `_start` (defined by
//! [`entry!`](crate::entry!)) at EL0, with SP at `layout::STACK_TOP` and
//! x0 = `layout::TASK_INFO`. [`start`] gives the heap its 1 MiB of `.bss`,
//! decodes the task-info page, runs `main` and exits with its code. A
//! panic logs `panicked at file:line: message` and exits with 101.

use core::panic::PanicInfo;

use bootimage::TaskInfo;

use crate::task::exit;

/// Exit code of a task that panicked.
pub const PANIC_EXIT: i32 = 101;
/// Exit code of a task whose task-info page did not decode.
pub const BAD_INFO_EXIT: i32 = 102;

static INCARNATION: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// How many times the kernel restarted this task (0 for the first run):
/// the kernel passes it in x1 at entry.
pub fn incarnation() -> u64 {
    INCARNATION.load(core::sync::atomic::Ordering::Relaxed)
}

/// Runs the task: called by `_start` with the x0 and x1 the kernel passed.
///
/// The page is read at `layout::TASK_INFO` (its length is encoded inside,
/// `parse` decides how much of the page it uses); x0 must name the same
/// address.
pub fn start(info_addr: u64, incarnation: u64, main: fn(&TaskInfo<'static>) -> i32) -> ! {
    crate::sys::init_heap();
    INCARNATION.store(incarnation, core::sync::atomic::Ordering::Relaxed);
    if info_addr != abi::syscall::layout::TASK_INFO {
        crate::log!("task info at {info_addr:#x}, expected it at the fixed address");
        exit(BAD_INFO_EXIT);
    }
    match TaskInfo::parse(crate::sys::task_info_page()) {
        Ok(info) => exit(main(&info)),
        Err(e) => {
            crate::log!("task info page refused: {e}");
            exit(BAD_INFO_EXIT)
        }
    }
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    match info.location() {
        Some(at) => crate::log!(
            "panicked at {}:{}: {}",
            at.file(),
            at.line(),
            info.message()
        ),
        None => crate::log!("panicked: {}", info.message()),
    }
    exit(PANIC_EXIT)
}

/// `entry!(main)`: makes `main` (a `fn(&TaskInfo<'static>) -> i32`) the
/// task's body, by defining the ELF entry point `_start`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// The ELF entry point the kernel jumps to (x0 = task-info page,
        /// x1 = incarnation).
        #[unsafe(no_mangle)]
        pub extern "C" fn _start(info: u64, incarnation: u64) -> ! {
            $crate::rt::start(info, incarnation, $main)
        }
    };
}

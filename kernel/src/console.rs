//! The kernel console: the architecture's boot UART (`arch::console`),
//! behind a lock so lines from different contexts do not interleave. Must never block on input or depend on interrupts (it is
//! used by the panic and fault paths).

use core::fmt::{self, Write};

use hermit_sync::{InterruptSpinMutex, OnceCell};
use kernel_core::dt::Platform;

use crate::arch::console::Uart;

/// Text out through the UART, with CR before each LF.
struct Out<'a>(&'a Uart);

impl Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.0.put(b'\r');
            }
            self.0.put(b);
        }
        Ok(())
    }
}

static UART: OnceCell<Uart> = OnceCell::new();
/// Serialises writers so that lines do not interleave.
static LOCK: InterruptSpinMutex<()> = InterruptSpinMutex::new(());

/// Starts the console on the platform's UART, if it has one.
pub fn init(platform: &Platform<'_>) {
    if let Some(uart) = crate::arch::console::init(platform) {
        let _ = UART.set(uart);
    }
}

/// Writes formatted text; a no-op before [`init`].
pub fn write_fmt(args: fmt::Arguments<'_>) {
    if let Some(uart) = UART.get() {
        let _guard = LOCK.lock();
        let _ = Out(uart).write_fmt(args);
    }
}

/// Writes formatted text even if another writer holds the lock (the panic
/// and fault paths: the holder may be the code that failed).
pub fn force_write_fmt(args: fmt::Arguments<'_>) {
    if let Some(uart) = UART.get() {
        let _guard = LOCK.try_lock();
        let _ = Out(uart).write_fmt(args);
    }
}

/// `print!` to the kernel console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!($($arg)*)) };
}

/// `println!` to the kernel console.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

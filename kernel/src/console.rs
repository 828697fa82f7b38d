//! The kernel console: a PL011 UART found in the device tree, polled
//! transmit, behind a lock so lines from different contexts do not
//! interleave. Must never block on input or depend on interrupts (it is
//! used by the panic and fault paths).

use core::fmt::{self, Write};

use abi::PhysAddr;
use hermit_sync::{InterruptSpinMutex, OnceCell};

use crate::mmio::{Mmio, Reg};
use crate::timeout::{Counter, poll_until};

/// PL011 registers [PrimeCell UART (PL011) TRM §3.2].
mod regs {
    use super::Reg;
    /// Data register.
    pub const DR: Reg<u32> = Reg::at(0x000);
    /// Flag register.
    pub const FR: Reg<u32> = Reg::at(0x018);
    /// FR.TXFF: transmit FIFO full.
    pub const FR_TXFF: u32 = 1 << 5;
    /// Control register.
    pub const CR: Reg<u32> = Reg::at(0x030);
    /// CR: UARTEN | TXE | RXE.
    pub const CR_ENABLE: u32 = (1 << 0) | (1 << 8) | (1 << 9);
}

/// Longest wait for room in the transmit FIFO (a 32-byte FIFO drains in
/// under 3 ms at 115200 baud).
const FIFO_DRAIN_US: u64 = 10_000;

struct Pl011<'a> {
    mmio: &'a Mmio,
}

impl Pl011<'_> {
    fn put(&self, byte: u8) {
        // A full FIFO drains at the line rate; QEMU never reports it full.
        // On timeout the byte is written anyway (it may be lost): the
        // console must never hang the kernel.
        let _ = poll_until(&mut Counter, FIFO_DRAIN_US, || {
            (self.mmio.read(regs::FR) & regs::FR_TXFF == 0).then_some(())
        });
        self.mmio.write(regs::DR, byte as u32);
    }
}

impl Write for Pl011<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

static UART: OnceCell<Mmio> = OnceCell::new();
/// Serialises writers so that lines do not interleave.
static LOCK: InterruptSpinMutex<()> = InterruptSpinMutex::new(());

/// Starts the console on the PL011 at `base`.
pub fn init(base: PhysAddr) {
    let mmio = Mmio::new(base, 0x1000);
    mmio.modify(regs::CR, |cr| cr | regs::CR_ENABLE);
    let _ = UART.set(mmio);
}

/// Writes formatted text; a no-op before [`init`].
pub fn write_fmt(args: fmt::Arguments<'_>) {
    if let Some(mmio) = UART.get() {
        let _guard = LOCK.lock();
        let _ = Pl011 { mmio }.write_fmt(args);
    }
}

/// Writes formatted text even if another writer holds the lock (the panic
/// and fault paths: the holder may be the code that failed).
pub fn force_write_fmt(args: fmt::Arguments<'_>) {
    if let Some(mmio) = UART.get() {
        let _guard = LOCK.try_lock();
        let _ = Pl011 { mmio }.write_fmt(args);
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

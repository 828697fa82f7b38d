//! The boot console's device on x86_64: the 16550 UART at COM1 (I/O port
//! 0x3f8), polled transmit [PC16550D datasheet, "Registers"]. Must never
//! block on input or depend on interrupts (the panic and fault paths use
//! it); serialising writers is the shared console's job.

use kernel_core::dt::Platform;
use x86_64::instructions::port::Port;

use crate::timeout::{Counter, poll_until};

/// COM1's base port.
const COM1: u16 = 0x3f8;
/// Register offsets from the base.
mod regs {
    /// Transmit holding register (DLAB = 0) / divisor latch low (DLAB = 1).
    pub const THR_DLL: u16 = 0;
    /// Interrupt enable (DLAB = 0) / divisor latch high (DLAB = 1).
    pub const IER_DLM: u16 = 1;
    /// FIFO control.
    pub const FCR: u16 = 2;
    /// Line control.
    pub const LCR: u16 = 3;
    /// Modem control.
    pub const MCR: u16 = 4;
    /// Line status.
    pub const LSR: u16 = 5;
    /// LCR: divisor latch access.
    pub const LCR_DLAB: u8 = 0x80;
    /// LCR: 8 data bits, no parity, one stop bit.
    pub const LCR_8N1: u8 = 0x03;
    /// FCR: enable and clear both FIFOs, 14-byte trigger.
    pub const FCR_ENABLE: u8 = 0xc7;
    /// MCR: DTR, RTS, OUT2.
    pub const MCR_READY: u8 = 0x0b;
    /// LSR: transmit holding register empty.
    pub const LSR_THRE: u8 = 0x20;
}

/// Longest wait for room in the transmitter (a 16-byte FIFO drains in
/// under 2 ms at 115200 baud).
const FIFO_DRAIN_US: u64 = 10_000;

/// COM1.
pub struct Uart {
    base: u16,
}

fn out(port: u16, value: u8) {
    // SAFETY: COM1's ports belong to this console alone; writing its
    // registers has no effect beyond the UART.
    unsafe { Port::<u8>::new(port).write(value) }
}

fn inb(port: u16) -> u8 {
    // SAFETY: as in `out`; reading LSR has no side effect.
    unsafe { Port::<u8>::new(port).read() }
}

/// Starts COM1 at 115200 8N1, interrupts off. Every PC platform has it.
pub fn init(_platform: &Platform<'_>) -> Option<Uart> {
    let b = COM1;
    out(b + regs::IER_DLM, 0);
    out(b + regs::LCR, regs::LCR_DLAB);
    out(b + regs::THR_DLL, 1);
    out(b + regs::IER_DLM, 0);
    out(b + regs::LCR, regs::LCR_8N1);
    out(b + regs::FCR, regs::FCR_ENABLE);
    out(b + regs::MCR, regs::MCR_READY);
    Some(Uart { base: b })
}

impl Uart {
    /// Sends one byte.
    pub fn put(&self, byte: u8) {
        // On timeout the byte is written anyway (it may be lost): the
        // console must never hang the kernel.
        let _ = poll_until(&mut Counter, FIFO_DRAIN_US, || {
            (inb(self.base + regs::LSR) & regs::LSR_THRE != 0).then_some(())
        });
        out(self.base + regs::THR_DLL, byte);
    }
}

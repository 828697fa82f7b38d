//! The boot console's device on QEMU `virt`: a PL011 UART found in the
//! device tree, polled transmit. Must never block on input or depend on
//! interrupts (the panic and fault paths use it); serialising writers is
//! the shared console's job.

use kernel_core::dt::Platform;

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

/// The PL011.
pub struct Uart {
    mmio: Mmio,
}

/// Starts the PL011 the device tree names, if any.
pub fn init(platform: &Platform<'_>) -> Option<Uart> {
    let mmio = Mmio::new(platform.uart?.base, 0x1000);
    mmio.modify(regs::CR, |cr| cr | regs::CR_ENABLE);
    Some(Uart { mmio })
}

impl Uart {
    /// Sends one byte.
    pub fn put(&self, byte: u8) {
        // A full FIFO drains at the line rate; QEMU never reports it full.
        // On timeout the byte is written anyway (it may be lost): the
        // console must never hang the kernel.
        let _ = poll_until(&mut Counter, FIFO_DRAIN_US, || {
            (self.mmio.read(regs::FR) & regs::FR_TXFF == 0).then_some(())
        });
        self.mmio.write(regs::DR, byte as u32);
    }
}

//! QEMU's `edu` device (1234:11e8) as a DMA engine: the simplest way to aim
//! a device's DMA at any bus address, for IOMMU tests and attack demos.
//! Owns the device's register layout [QEMU docs/specs/edu.rst] and one
//! transfer at a time. Never hands it a physical address: every RAM-side
//! address it is given is an IOVA the IOMMU server returned (or, in attack
//! demos, deliberately one that was never mapped).
#![no_std]
#![forbid(unsafe_code)]

use abi::Error;
use userlib::{Counter, DeviceRegion, Reg, SysResult, poll_until};

/// Vendor:device of the edu device.
pub const ID: u32 = 0x11e8_1234;

/// Registers in BAR0 [edu.rst].
mod regs {
    use userlib::Reg;

    /// Identification: 0x010000ed (major 1, minor 0, 0xed).
    pub const IDENT: Reg<u32> = Reg::named(0x00, "IDENT");
    /// Liveness check: reads back the bitwise NOT of what was written.
    pub const LIVENESS: Reg<u32> = Reg::named(0x04, "LIVENESS");
    /// Interrupt status: the OR of the values raised and not yet
    /// acknowledged.
    pub const IRQ_STATUS: Reg<u32> = Reg::named(0x24, "IRQ_STATUS");
    /// Interrupt raise: ORs the value into IRQ_STATUS and interrupts.
    pub const IRQ_RAISE: Reg<u32> = Reg::named(0x60, "IRQ_RAISE");
    /// Interrupt acknowledge: clears the value's bits from IRQ_STATUS.
    pub const IRQ_ACK: Reg<u32> = Reg::named(0x64, "IRQ_ACK");
    /// DMA source address (RAM side: an IOVA; device side: 0x40000 + off).
    pub const DMA_SRC: Reg<u64> = Reg::named(0x80, "DMA_SRC");
    /// DMA destination address.
    pub const DMA_DST: Reg<u64> = Reg::named(0x88, "DMA_DST");
    /// DMA transfer count in bytes.
    pub const DMA_COUNT: Reg<u64> = Reg::named(0x90, "DMA_COUNT");
    /// DMA command: start, direction, raise an interrupt when done.
    pub const DMA_CMD: Reg<u64> = Reg::named(0x98, "DMA_CMD");
    /// DMA_CMD: start the transfer; reads 1 until it completes.
    pub const CMD_START: u64 = 1 << 0;
    /// DMA_CMD: direction device → RAM (clear: RAM → device).
    pub const CMD_TO_RAM: u64 = 1 << 1;
}

/// The identification value of edu 1.0.
pub const IDENT_1_0: u32 = 0x0100_00ed;
/// Device-side address of the device's internal DMA buffer.
pub const DEVICE_BUFFER: u64 = 0x40000;
/// Size of that buffer.
pub const DEVICE_BUFFER_SIZE: u64 = 4096;
/// The largest transfer: QEMU 7.2's range check wrongly refuses a transfer
/// that ends exactly at the end of the buffer, and refuses it with a fatal
/// `hw_error` that stops the whole emulator, so transfers stop one byte
/// short of it.
pub const MAX_TRANSFER: u64 = DEVICE_BUFFER_SIZE - 1;
/// The device masks RAM-side DMA addresses to this many bits (its default
/// `dma_mask`); the IOMMU server must hand out IOVAs below 2^28.
pub const DMA_BITS: u8 = 28;
/// A transfer takes 100 ms of virtual time in QEMU's model; wait up to 2 s.
const DMA_TIMEOUT_US: u64 = 2_000_000;
/// Poll interval while a transfer runs.
const POLL_US: u64 = 1_000;

/// Direction of a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// RAM (an IOVA) → the device's buffer.
    ToDevice,
    /// The device's buffer → RAM (an IOVA).
    ToRam,
}

/// An edu device whose BAR0 this task mapped.
pub struct Edu {
    bar: DeviceRegion,
    clock: Counter,
}

impl Edu {
    /// Maps BAR0 of the function the PCI capability `cap` names and checks
    /// that it is an edu device that answers.
    pub fn open(cap: u32) -> SysResult<Edu> {
        let bar = DeviceRegion::pci_bar(cap, 0)?;
        let mut edu = Edu {
            bar,
            clock: Counter::from_kernel(),
        };
        if edu.read32(regs::IDENT) != IDENT_1_0 {
            return Err(Error::BadArgument);
        }
        edu.bar
            .write(regs::LIVENESS, 0x1234_5678)
            .ok_or(Error::BadAddress)?;
        if edu.read32(regs::LIVENESS) != !0x1234_5678 {
            return Err(Error::BadArgument);
        }
        Ok(edu)
    }

    /// Raises the device's interrupt with `value` (its bits join the
    /// interrupt status).
    pub fn raise_interrupt(&mut self, value: u32) -> SysResult<()> {
        self.bar
            .write(regs::IRQ_RAISE, value)
            .ok_or(Error::BadAddress)
    }

    /// The interrupt status: the bits raised and not yet acknowledged.
    pub fn interrupt_status(&self) -> u32 {
        self.read32(regs::IRQ_STATUS)
    }

    /// Acknowledges `value`'s bits of the interrupt status at the device.
    pub fn ack_interrupt(&mut self, value: u32) -> SysResult<()> {
        self.bar
            .write(regs::IRQ_ACK, value)
            .ok_or(Error::BadAddress)
    }

    fn read32(&self, r: Reg<u32>) -> u32 {
        self.bar.read(r).unwrap_or(u32::MAX)
    }

    /// Copies `len` bytes between `ram_iova` and the device buffer at
    /// `offset`, and waits for completion. The device completes even when
    /// the SMMU faulted the access (the data is then dropped): only the
    /// IOMMU server's fault report tells.
    pub fn dma(&mut self, dir: Direction, ram_iova: u64, offset: u64, len: u64) -> SysResult<()> {
        if len == 0 || offset.checked_add(len).is_none_or(|e| e > MAX_TRANSFER) {
            return Err(Error::BadArgument);
        }
        let dev = DEVICE_BUFFER + offset;
        let (src, dst, cmd) = match dir {
            Direction::ToDevice => (ram_iova, dev, regs::CMD_START),
            Direction::ToRam => (dev, ram_iova, regs::CMD_START | regs::CMD_TO_RAM),
        };
        // The device must see what the task wrote to RAM before it starts.
        userlib::publish_to_device();
        let mut w = |r, v: u64| self.bar.write(r, v).ok_or(Error::BadAddress);
        w(regs::DMA_SRC, src)?;
        w(regs::DMA_DST, dst)?;
        w(regs::DMA_COUNT, len)?;
        w(regs::DMA_CMD, cmd)?;
        let bar = &self.bar;
        let mut clock = self.clock.sleeping(POLL_US);
        poll_until(&mut clock, DMA_TIMEOUT_US, || {
            match bar.read(regs::DMA_CMD) {
                Some(cmd) if cmd & regs::CMD_START != 0 => None,
                Some(_) => Some(Ok(())),
                None => Some(Err(Error::BadAddress)),
            }
        })
        .unwrap_or(Err(Error::TimedOut))
    }
}

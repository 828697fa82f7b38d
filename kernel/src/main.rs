//! The EL1 microkernel for QEMU `virt` aarch64: boots, owns memory,
//! exceptions, the interrupt controller and the timer, and reports what the
//! machine holds. It must never touch a device's registers on a driver's
//! behalf once tasks exist, and `unsafe` lives only in `arch`, `mmio` and
//! `mm` (the crate denies it elsewhere).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod arch;
mod console;
#[allow(unsafe_code)]
mod mm;
#[allow(unsafe_code)]
mod mmio;
mod exceptions;

use abi::PhysAddr;

/// The kernel proper, entered from the boot code with the MMU on, at EL1,
/// on the boot stack. `loader_dtb` is what the loader passed in x0 (QEMU
/// passes 0 and leaves the DTB at the start of RAM).
fn kmain(_loader_dtb: u64) -> ! {
    console::init(PhysAddr::new(0x0900_0000));
    kprintln!("hello from EL{}", arch::current_el());
    exit(0)
}

/// Ends the run: semihosting exit status, or PSCI power-off without it.
pub fn exit(code: u32) -> ! {
    arch::semihosting::exit(code);
    arch::psci::system_off(arch::psci::Conduit::Hvc);
    loop {
        arch::wait_for_interrupt();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    console::force_write_fmt(format_args!("\nKERNEL PANIC: {info}\n"));
    exit(101)
}

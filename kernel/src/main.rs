#![no_std]
#![no_main]
//! placeholder
#[panic_handler]
fn p(_: &core::panic::PanicInfo) -> ! {
    loop {}
}

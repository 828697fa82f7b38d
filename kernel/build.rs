//! Links the kernel with its architecture's linker script (the kernel runs
//! in the high half of the address space but is loaded at a physical
//! address in RAM).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    println!("cargo:rustc-link-arg-bins=-T{dir}/src/arch/{arch}/linker.ld");
    println!("cargo:rerun-if-changed=src/arch/{arch}/linker.ld");
}

//! Links the kernel with its own linker script (the kernel runs in the high
//! half of the address space but is loaded at a physical address in RAM).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/src/arch/aarch64/linker.ld");
    println!("cargo:rerun-if-changed=src/arch/aarch64/linker.ld");
}

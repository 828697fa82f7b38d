//! Links the task so that no two ELF segments share a page: the kernel
//! maps each segment with its own permissions (text R-X, rodata R, data
//! RW) and would otherwise have to merge them.

fn main() {
    println!("cargo:rustc-link-arg-bins=-zseparate-loadable-segments");
    println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
}

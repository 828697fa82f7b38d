//! The guest architectures: each one's Rust target, QEMU binary and Debian
//! package, and how QEMU's exit status carries the kernel's. On x86_64 the
//! kernel and the systems without the IOMMU server run
//! (docs/ARCHITECTURE.md).

use std::fmt;
use std::str::FromStr;

/// A guest architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Arch {
    /// QEMU `virt` with the SMMUv3 and GICv3: everything runs here.
    #[default]
    Aarch64,
    /// QEMU `q35`, TCG: the kernel and the systems without the IOMMU server.
    X86_64,
}

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 2] = [Arch::Aarch64, Arch::X86_64];

    /// The bare-metal Rust target the kernel and tasks build for.
    pub fn target(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-unknown-none",
            Arch::X86_64 => "x86_64-unknown-none",
        }
    }

    /// The ELF `e_machine` of its executables: EM_AARCH64 or EM_X86_64.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::Aarch64 => 183,
            Arch::X86_64 => 62,
        }
    }

    /// Where QEMU's generic loader puts a boot image (the kernel learns it
    /// from `bootimage=` on its command line): 128 MiB into RAM on `virt`
    /// (RAM starts at 1 GiB), 64 MiB on `q35`; above the kernel, its heap
    /// and what the firmware keeps low, far below what it keeps at the top
    /// of RAM (an `-initrd` QEMU places itself can overlap that: seen with
    /// the three devices attached).
    pub fn boot_image_addr(self) -> u64 {
        match self {
            Arch::Aarch64 => crate::qemu::BOOT_IMAGE_ADDR,
            Arch::X86_64 => 0x0400_0000,
        }
    }

    /// The QEMU binary (found on PATH).
    pub fn qemu(self) -> &'static str {
        match self {
            Arch::Aarch64 => "qemu-system-aarch64",
            Arch::X86_64 => "qemu-system-x86_64",
        }
    }

    /// The Debian package that provides [`Arch::qemu`].
    pub fn qemu_package(self) -> &'static str {
        match self {
            Arch::Aarch64 => "qemu-system-arm",
            Arch::X86_64 => "qemu-system-x86",
        }
    }

    /// The kernel's exit status from QEMU's. On aarch64 semihosting passes
    /// it unchanged. On x86_64 `isa-debug-exit` makes QEMU exit with
    /// `2 * status + 1`; an even status means QEMU ended some other way
    /// (e.g. a triple fault under `-no-reboot` exits 0), which is reported
    /// as -1 so it can never pass as 0.
    pub fn kernel_status(self, qemu_status: i32) -> i32 {
        match self {
            Arch::Aarch64 => qemu_status,
            Arch::X86_64 if qemu_status % 2 == 1 => (qemu_status - 1) / 2,
            Arch::X86_64 => -1,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::Aarch64 => "aarch64",
            Arch::X86_64 => "x86_64",
        })
    }
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "aarch64" => Ok(Arch::Aarch64),
            "x86_64" => Ok(Arch::X86_64),
            other => Err(format!(
                "unknown architecture `{other}` (aarch64 or x86_64)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Arch::ALL {
            assert_eq!(a.to_string().parse::<Arch>(), Ok(a));
        }
        assert!("riscv64".parse::<Arch>().is_err());
    }

    #[test]
    fn x86_exit_status_decodes_and_never_fakes_a_pass() {
        assert_eq!(Arch::X86_64.kernel_status(1), 0);
        assert_eq!(Arch::X86_64.kernel_status(7), 3);
        assert_eq!(Arch::X86_64.kernel_status(203), 101);
        assert_eq!(Arch::X86_64.kernel_status(0), -1);
        assert_eq!(Arch::Aarch64.kernel_status(3), 3);
    }
}

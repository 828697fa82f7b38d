//! Which QEMU accelerator x86_64 guests get: KVM only where the host CPU
//! has hardware virtualization (`vmx` or `svm` in /proc/cpuinfo's flags)
//! and /dev/kvm opens read-write; TCG otherwise. KVM is never required, and
//! aarch64 guests always run under TCG. The choice is made and printed
//! once per run.

use std::fs::OpenOptions;
use std::sync::OnceLock;

/// The accelerator chosen, with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accel {
    /// `-accel kvm`.
    Kvm,
    /// `-accel tcg`, and why not KVM.
    Tcg(String),
}

impl Accel {
    /// QEMU's name for it.
    pub fn name(&self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg(_) => "tcg",
        }
    }
}

/// Whether /proc/cpuinfo text names hardware virtualization (`vmx`, Intel
/// VT-x; `svm`, AMD-V) among a CPU's `flags`.
pub fn has_hw_virt(cpuinfo: &str) -> bool {
    cpuinfo.lines().any(|line| {
        let Some((key, value)) = line.split_once(':') else {
            return false;
        };
        key.trim() == "flags"
            && value
                .split_whitespace()
                .any(|flag| flag == "vmx" || flag == "svm")
    })
}

/// Decides from the cpuinfo text (`None`: unreadable) and whether /dev/kvm
/// opens read-write (`Err`: why not).
pub fn decide(cpuinfo: Option<&str>, kvm: Result<(), String>) -> Accel {
    match cpuinfo {
        None => Accel::Tcg("/proc/cpuinfo unreadable".into()),
        Some(text) if !has_hw_virt(text) => Accel::Tcg("no vmx/svm in /proc/cpuinfo".into()),
        Some(_) => match kvm {
            Ok(()) => Accel::Kvm,
            Err(why) => Accel::Tcg(format!("/dev/kvm: {why}")),
        },
    }
}

/// The accelerator for x86_64 guests on this host, decided and printed on
/// the first call.
pub fn x86_64() -> &'static Accel {
    static CHOICE: OnceLock<Accel> = OnceLock::new();
    CHOICE.get_or_init(|| {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok();
        let kvm = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .map(|_| ())
            .map_err(|e| e.to_string());
        let a = decide(cpuinfo.as_deref(), kvm);
        match &a {
            Accel::Kvm => println!(
                "xtask: x86_64 accelerator: kvm (vmx/svm in /proc/cpuinfo, /dev/kvm opens)"
            ),
            Accel::Tcg(why) => println!("xtask: x86_64 accelerator: tcg ({why})"),
        }
        a
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTEL: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme de pse tsc msr pae vmx smx est\nbugs\t\t: spectre_v1\n";
    const AMD: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu vme svm extapic\n";
    const GUEST: &str =
        "processor\t: 0\nflags\t\t: fpu vme hypervisor avx2 vmx_ept_no\nvmx flags\t: vnmi\n";
    const ARM: &str = "processor\t: 0\nFeatures\t: fp asimd evtstrm\n";

    #[test]
    fn flags_parsed() {
        assert!(has_hw_virt(INTEL));
        assert!(has_hw_virt(AMD));
        // `vmx flags` lines and flags that merely start with vmx do not count.
        assert!(!has_hw_virt(GUEST));
        assert!(!has_hw_virt(ARM));
        assert!(!has_hw_virt(""));
    }

    #[test]
    fn kvm_needs_both() {
        assert_eq!(decide(Some(INTEL), Ok(())), Accel::Kvm);
        assert_eq!(decide(Some(AMD), Ok(())), Accel::Kvm);
        assert_eq!(
            decide(Some(GUEST), Ok(())),
            Accel::Tcg("no vmx/svm in /proc/cpuinfo".into())
        );
        assert_eq!(
            decide(Some(INTEL), Err("Permission denied".into())).name(),
            "tcg"
        );
        assert_eq!(decide(None, Ok(())).name(), "tcg");
    }
}

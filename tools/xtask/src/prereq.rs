//! Prerequisites on the host: the `aarch64-unknown-none` Rust target and
//! `qemu-system-aarch64`, and for x86_64 boots `x86_64-unknown-none` and
//! `qemu-system-x86_64`. Installs what is missing when it safely can, and
//! says exactly what to install when it cannot.

use std::process::{Command, Stdio};

use crate::arch::Arch;
use crate::artifacts::{GUEST_TARGET, Workspace};

/// The QEMU binary every run uses.
pub const QEMU: &str = "qemu-system-aarch64";
/// The Debian package that provides [`QEMU`].
const QEMU_PACKAGE: &str = "qemu-system-arm";

/// Everything `run` and `test` need: the Rust target and QEMU.
pub fn ensure_all(ws: &Workspace) -> Result<(), String> {
    ensure_rust_target(ws)?;
    ensure_qemu()
}

/// Adds the guest targets (aarch64, and x86_64 for the kernel's port)
/// through rustup if rustup exists and lacks them.
pub fn ensure_rust_target(ws: &Workspace) -> Result<(), String> {
    ensure_target(ws, GUEST_TARGET)?;
    ensure_target(ws, Arch::X86_64.target())
}

/// Adds Rust target `target` through rustup if rustup exists and lacks it.
fn ensure_target(ws: &Workspace, target: &str) -> Result<(), String> {
    // Run from the root so that rust-toolchain.toml picks the toolchain.
    let Some(installed) = capture(Command::new("rustup").current_dir(&ws.root).args([
        "target",
        "list",
        "--installed",
    ])) else {
        return Ok(()); // No rustup: the toolchain is managed some other way.
    };
    if installed.lines().any(|line| line.trim() == target) {
        return Ok(());
    }
    println!("xtask: installing Rust target {target} (rustup target add)");
    let status = Command::new("rustup")
        .current_dir(&ws.root)
        .args(["target", "add", target])
        .status()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`rustup target add {target}` failed ({status})"))
    }
}

/// Makes sure QEMU is on PATH (installing it with apt-get as root) and prints
/// its version.
pub fn ensure_qemu() -> Result<(), String> {
    let machine = crate::qemu::machine();
    if qemu_version().is_none() {
        if !machine.is_default() {
            return Err(format!(
                "{} does not run (`--version` failed); check --qemu or QEMU",
                machine.binary.display()
            ));
        }
        install_qemu()?;
    }
    let version = qemu_version().ok_or_else(|| {
        format!("{QEMU} still not runnable; install the Debian package `{QEMU_PACKAGE}`")
    })?;
    println!(
        "xtask: {version} ({}, -cpu {})",
        machine.binary.display(),
        machine.cpu
    );
    Ok(())
}

/// What booting `arch` needs besides the aarch64 defaults: its Rust target
/// and its QEMU (`qemu-system-x86` for x86_64), installed like the arm one.
pub fn ensure_arch(ws: &Workspace, arch: Arch) -> Result<(), String> {
    ensure_target(ws, arch.target())?;
    let version = |bin: &str| {
        capture(Command::new(bin).arg("--version"))
            .and_then(|o| o.lines().next().map(str::to_owned))
    };
    if version(arch.qemu()).is_none() {
        install_package(arch.qemu(), arch.qemu_package())?;
    }
    let v = version(arch.qemu()).ok_or_else(|| {
        format!(
            "{} still not runnable; install the Debian package `{}`",
            arch.qemu(),
            arch.qemu_package()
        )
    })?;
    println!("xtask: {v} ({}, TCG)", arch.qemu());
    Ok(())
}

/// The first line of the chosen QEMU's `--version`, if it runs.
pub fn qemu_version() -> Option<String> {
    let machine = crate::qemu::machine();
    let mut cmd = Command::new(&machine.binary);
    if let Some(dir) = &machine.data_dir {
        cmd.arg("-L").arg(dir);
    }
    let out = capture(cmd.arg("--version"))?;
    out.lines().next().map(str::to_owned)
}

fn install_qemu() -> Result<(), String> {
    install_package(QEMU, QEMU_PACKAGE)
}

/// Installs Debian package `package` (for `binary`) with apt-get when run
/// as root; otherwise says what to install.
fn install_package(binary: &str, package: &str) -> Result<(), String> {
    let is_root = capture(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0");
    let has_apt = capture(Command::new("apt-get").arg("--version")).is_some();
    if !(is_root && has_apt) {
        return Err(format!(
            "{binary} is not on PATH: install the Debian/Ubuntu package `{package}` \
             (sudo apt-get install {package})"
        ));
    }
    println!("xtask: {binary} not found; installing `{package}` with apt-get");
    for args in [
        &["update"][..],
        &["install", "-y", "--no-install-recommends", package][..],
    ] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        if !status.success() {
            return Err(format!("`apt-get {}` failed ({status})", args.join(" ")));
        }
    }
    Ok(())
}

/// Runs a command and returns its stdout if it ran and succeeded.
fn capture(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

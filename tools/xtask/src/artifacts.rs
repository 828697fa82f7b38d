//! Where things are (workspace root, target directory) and how the bare-metal
//! images are built. The list of packages built for the target lives here and
//! nowhere else.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Rust target every guest program is built for.
pub const GUEST_TARGET: &str = "aarch64-unknown-none";

/// Workspace packages that are bare-metal programs: built by `cargo xtask`
/// for [`GUEST_TARGET`], and excluded from the host `cargo test`. Add each new
/// task here (and, once tasks are packed into the boot image, in [`build`]).
pub const GUEST_PACKAGES: &[&str] = &["kernel"];

/// The workspace as seen from the host.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The directory holding the workspace `Cargo.toml`.
    pub root: PathBuf,
    /// Cargo's target directory (honours `CARGO_TARGET_DIR` and config).
    pub target_dir: PathBuf,
    /// The cargo binary that started us (`$CARGO`), or `cargo`.
    pub cargo: String,
}

/// The images a boot needs.
#[derive(Debug, Clone)]
pub struct Images {
    /// The kernel ELF that QEMU loads with `-kernel`.
    pub kernel: PathBuf,
}

impl Workspace {
    /// Finds the workspace root from this crate's manifest directory
    /// (tools/xtask/../..) and asks cargo for the target directory.
    pub fn locate() -> Result<Self, String> {
        let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir
            .ancestors()
            .nth(2)
            .ok_or("cannot find the workspace root above tools/xtask")?
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let target_dir = query_target_dir(&cargo, &root)?;
        Ok(Self {
            root,
            target_dir,
            cargo,
        })
    }

    /// A fresh-able scratch directory for one scenario: `target/xtask/<name>/`.
    pub fn scratch_dir(&self, scenario: &str) -> PathBuf {
        self.target_dir.join("xtask").join(scenario)
    }

    /// A `cargo` command run from the workspace root.
    pub fn cargo(&self) -> Command {
        let mut cmd = Command::new(&self.cargo);
        cmd.current_dir(&self.root);
        cmd
    }
}

/// Asks `cargo metadata` for the target directory, so that a `CARGO_TARGET_DIR`
/// or `build.target-dir` setting is honoured like cargo itself would.
fn query_target_dir(cargo: &str, root: &Path) -> Result<PathBuf, String> {
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot run `{cargo} metadata`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo metadata` failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cannot parse `cargo metadata` output: {e}"))?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| "`cargo metadata` gave no target_directory".to_owned())
}

/// Where cargo puts the release ELF of a guest package's binary.
pub fn guest_elf(ws: &Workspace, binary: &str) -> PathBuf {
    ws.target_dir
        .join(GUEST_TARGET)
        .join("release")
        .join(binary)
}

/// The kernel ELF (built or not).
pub fn kernel_elf(ws: &Workspace) -> PathBuf {
    guest_elf(ws, "kernel")
}

/// Builds every guest package in one cargo invocation and returns the images.
pub fn build(ws: &Workspace) -> Result<Images, String> {
    let mut cmd = ws.cargo();
    cmd.args(["build", "--release", "--target", GUEST_TARGET]);
    for package in GUEST_PACKAGES {
        cmd.args(["-p", package]);
    }
    println!(
        "xtask: building {} for {GUEST_TARGET}",
        GUEST_PACKAGES.join(", ")
    );
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build of the guest failed ({status})"));
    }
    let kernel = kernel_elf(ws);
    if !kernel.is_file() {
        return Err(format!(
            "build succeeded but {} is missing",
            kernel.display()
        ));
    }
    Ok(Images { kernel })
}

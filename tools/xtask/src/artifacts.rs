//! Where things are (workspace root, target directory, member packages) and
//! how the bare-metal images are built: the kernel and the task packages a
//! system needs, in one cargo invocation, and the boot image made of them.
//! Which members are guest (bare-metal) packages is read from the root
//! `Cargo.toml` (those outside `default-members`), never listed here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::system::System;

/// The Rust target every guest program is built for.
pub const GUEST_TARGET: &str = "aarch64-unknown-none";

/// The kernel's package (and binary) name.
pub const KERNEL_PACKAGE: &str = "kernel";

/// The workspace as seen from the host.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The directory holding the workspace `Cargo.toml`.
    pub root: PathBuf,
    /// Cargo's target directory (honours `CARGO_TARGET_DIR` and config).
    pub target_dir: PathBuf,
    /// The cargo binary that started us (`$CARGO`), or `cargo`.
    pub cargo: String,
    /// Every workspace member, from `cargo metadata`.
    pub members: Vec<Member>,
    /// Cargo features guest builds get (empty but for test-only variants).
    pub features: Vec<String>,
}

/// A workspace member package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Its binary targets.
    pub bins: Vec<String>,
    /// Listed in the root `default-members`: a host crate. The others (the
    /// kernel, the tasks, their runtime) are bare-metal guest packages.
    pub host: bool,
}

/// The images a boot needs.
#[derive(Debug, Clone)]
pub struct Images {
    /// The kernel ELF that QEMU loads with `-kernel`.
    pub kernel: PathBuf,
    /// The ELF of each task package that was built, by package name.
    pub tasks: BTreeMap<String, PathBuf>,
}

impl Workspace {
    /// Finds the workspace root from this crate's manifest directory
    /// (tools/xtask/../..) and asks cargo for the target directory and the
    /// members.
    pub fn locate() -> Result<Self, String> {
        let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir
            .ancestors()
            .nth(2)
            .ok_or("cannot find the workspace root above tools/xtask")?
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let (target_dir, members) = query_metadata(&cargo, &root)?;
        Ok(Self {
            root,
            target_dir,
            cargo,
            members,
            features: Vec::new(),
        })
    }

    /// Members that are bare-metal programs or libraries: excluded from the
    /// host `cargo test`.
    pub fn guest_packages(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .filter(|m| !m.host)
            .map(|m| m.name.as_str())
    }

    /// The binary of task package `package`, or why it cannot be a task.
    pub fn task_binary(&self, package: &str) -> Result<&str, String> {
        let member = self
            .members
            .iter()
            .find(|m| m.name == package)
            .ok_or_else(|| {
                format!(
                    "package `{package}` is not a workspace member (task packages are \
                     listed in the root Cargo.toml `members`)"
                )
            })?;
        match member.bins.as_slice() {
            [bin] => Ok(bin),
            [] => Err(format!("package `{package}` has no binary target")),
            _ => Err(format!(
                "package `{package}` has several binaries ({}); a task package has one",
                member.bins.join(", ")
            )),
        }
    }

    /// A fresh-able scratch directory for one scenario: `target/xtask/<name>/`.
    pub fn scratch_dir(&self, scenario: &str) -> PathBuf {
        self.target_dir.join("xtask").join(scenario)
    }

    /// A `cargo` command run from the workspace root (building into this
    /// workspace's target directory).
    pub fn cargo(&self) -> Command {
        let mut cmd = Command::new(&self.cargo);
        cmd.current_dir(&self.root);
        cmd.env("CARGO_TARGET_DIR", &self.target_dir);
        cmd
    }

    /// The same workspace building with extra cargo `features` (test-only
    /// switches such as `iommu-server/insecure-demo`) into a target
    /// directory of its own, so the normal images are never rebuilt with
    /// them, nor they with the normal ones.
    pub fn variant(&self, features: &[String]) -> Workspace {
        let mut v = self.clone();
        if !features.is_empty() {
            let tag: String = features
                .join("+")
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            v.target_dir = self.target_dir.join("variants").join(tag);
            v.features = features.to_vec();
        }
        v
    }
}

/// Asks `cargo metadata` for the target directory, so that a
/// `CARGO_TARGET_DIR` or `build.target-dir` setting is honoured like cargo
/// itself would, and for the workspace members.
fn query_metadata(cargo: &str, root: &Path) -> Result<(PathBuf, Vec<Member>), String> {
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
    let target_dir = meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or("`cargo metadata` gave no target_directory")?;
    Ok((target_dir, members(&meta)?))
}

/// The workspace members of `cargo metadata` output.
fn members(meta: &serde_json::Value) -> Result<Vec<Member>, String> {
    let ids = |key: &str| -> Result<Vec<&str>, String> {
        meta[key]
            .as_array()
            .ok_or_else(|| format!("`cargo metadata` gave no {key}"))
            .map(|ids| ids.iter().filter_map(|id| id.as_str()).collect())
    };
    let all = ids("workspace_members")?;
    let default = ids("workspace_default_members")?;
    let packages = meta["packages"]
        .as_array()
        .ok_or("`cargo metadata` gave no packages")?;
    let mut out = Vec::new();
    for package in packages {
        let id = package["id"].as_str().unwrap_or_default();
        if !all.contains(&id) {
            continue;
        }
        let bins = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bin"))
            })
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect();
        out.push(Member {
            name: package["name"].as_str().unwrap_or_default().to_owned(),
            bins,
            host: default.contains(&id),
        });
    }
    Ok(out)
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
    guest_elf(ws, KERNEL_PACKAGE)
}

/// Builds, in one cargo invocation, the kernel (unless `prebuilt_kernel` is
/// given) and every task package in `tasks`, and returns the images.
pub fn build(
    ws: &Workspace,
    prebuilt_kernel: Option<&Path>,
    tasks: &[String],
) -> Result<Images, String> {
    let mut binaries = BTreeMap::new();
    for package in tasks {
        binaries.insert(package.clone(), ws.task_binary(package)?.to_owned());
    }
    let mut packages: Vec<&str> = Vec::new();
    if prebuilt_kernel.is_none() {
        packages.push(KERNEL_PACKAGE);
    }
    packages.extend(tasks.iter().map(String::as_str));
    if !packages.is_empty() {
        let mut cmd = ws.cargo();
        cmd.args(["build", "--release", "--target", GUEST_TARGET]);
        for package in &packages {
            cmd.args(["-p", package]);
        }
        if !ws.features.is_empty() {
            cmd.args(["--features", &ws.features.join(",")]);
            println!("xtask: test-only features {}", ws.features.join(", "));
        }
        println!("xtask: building {} for {GUEST_TARGET}", packages.join(", "));
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run cargo build: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build of the guest failed ({status})"));
        }
    }
    let kernel = match prebuilt_kernel {
        Some(path) => path.to_path_buf(),
        None => kernel_elf(ws),
    };
    let mut images = Images {
        kernel,
        tasks: BTreeMap::new(),
    };
    for (package, binary) in binaries {
        images.tasks.insert(package, guest_elf(ws, &binary));
    }
    for elf in std::iter::once(&images.kernel).chain(images.tasks.values()) {
        if !elf.is_file() {
            return Err(format!("build succeeded but {} is missing", elf.display()));
        }
    }
    Ok(images)
}

/// Checks that every task of `system` names a workspace package with one
/// binary, so a missing package is reported with its system file and task.
pub fn check_tasks(ws: &Workspace, system: &System) -> Result<(), String> {
    for task in &system.tasks {
        ws.task_binary(&task.package)
            .map_err(|e| format!("{}: task \"{}\": {e}", system.origin, task.name))?;
    }
    Ok(())
}

/// Encodes `system`'s boot image from the task ELFs in `images` and writes
/// it to `out`; returns its length.
pub fn write_boot_image(system: &System, images: &Images, out: &Path) -> Result<usize, String> {
    let bytes = system.encode(|package| {
        let path = images
            .tasks
            .get(package)
            .ok_or_else(|| format!("package `{package}` was not built"))?;
        let elf =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        check_elf(&elf).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(elf)
    })?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(out, &bytes).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(bytes.len())
}

/// ELF identification and machine of an AArch64 executable: 64-bit,
/// little-endian, `EM_AARCH64` [ELF gABI; AArch64 ELF ABI].
fn check_elf(elf: &[u8]) -> Result<(), String> {
    const EM_AARCH64: u16 = 183;
    let ident_ok = elf.get(..6) == Some(b"\x7fELF\x02\x01");
    let machine = elf.get(18..20).map(|m| u16::from_le_bytes([m[0], m[1]]));
    if ident_ok && machine == Some(EM_AARCH64) {
        Ok(())
    } else {
        Err("not a 64-bit little-endian AArch64 ELF".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_check() {
        let mut elf = b"\x7fELF\x02\x01".to_vec();
        elf.resize(64, 0);
        elf[18] = 183;
        assert!(check_elf(&elf).is_ok());
        elf[18] = 62; // x86-64
        assert!(check_elf(&elf).is_err());
        assert!(check_elf(b"\x7fELF").is_err());
    }

    #[test]
    fn members_split_host_and_guest() {
        let meta = serde_json::json!({
            "workspace_members": ["a", "k", "t"],
            "workspace_default_members": ["a"],
            "packages": [
                {"id": "a", "name": "abi", "targets": [{"kind": ["lib"], "name": "abi"}]},
                {"id": "k", "name": "kernel", "targets": [{"kind": ["bin"], "name": "kernel"}]},
                {"id": "t", "name": "ipc-demo", "targets": [{"kind": ["bin"], "name": "ipc-demo"}]},
                {"id": "x", "name": "dep", "targets": []}
            ]
        });
        let ws = Workspace {
            root: PathBuf::from("/w"),
            target_dir: PathBuf::from("/w/target"),
            cargo: "cargo".into(),
            members: members(&meta).unwrap(),
            features: Vec::new(),
        };
        let v = ws.variant(&["iommu-server/insecure-demo".to_owned()]);
        assert_eq!(
            v.target_dir,
            PathBuf::from("/w/target/variants/iommu-server-insecure-demo")
        );
        assert_eq!(ws.variant(&[]).target_dir, ws.target_dir);
        assert_eq!(
            ws.guest_packages().collect::<Vec<_>>(),
            ["kernel", "ipc-demo"]
        );
        assert_eq!(ws.task_binary("ipc-demo"), Ok("ipc-demo"));
        assert!(ws.task_binary("abi").unwrap_err().contains("no binary"));
        let missing = ws.task_binary("ipc-bench").unwrap_err();
        assert!(
            missing.contains("`ipc-bench` is not a workspace member"),
            "{missing}"
        );
    }
}

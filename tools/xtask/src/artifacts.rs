//! Where things are (workspace root, target directory, member packages) and
//! how the bare-metal images are built: the kernel and the product task
//! packages a system needs in one cargo invocation, its test-only packages
//! ([`crate::testonly`]) in another with a target directory of its own, and
//! the boot image made of them. Which members are guest (bare-metal)
//! packages is read from the root `Cargo.toml` (those outside
//! `default-members`), never listed here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::arch::Arch;
use crate::system::System;
use crate::testonly;

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
    /// The architecture guest builds are for.
    pub arch: Arch,
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
    /// A test-only package ([`testonly::is_test_only_package`]): never
    /// built in the same cargo invocation as a product package.
    pub test_only: bool,
}

/// The images a boot needs.
#[derive(Debug, Clone)]
pub struct Images {
    /// The kernel ELF that QEMU loads with `-kernel`.
    pub kernel: PathBuf,
    /// The ELF of each task package that was built, by package name.
    pub tasks: BTreeMap<String, PathBuf>,
    /// The architecture they are built for.
    pub arch: Arch,
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
            arch: Arch::Aarch64,
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

    /// The same workspace building guests for `arch`.
    pub fn for_arch(&self, arch: Arch) -> Workspace {
        let mut v = self.clone();
        v.arch = arch;
        v
    }

    /// Where this workspace's test-only packages are built: the same
    /// features, a target directory of its own (`<target>/test-only`), so
    /// cargo never unifies their features with the product packages'.
    pub fn test_only(&self) -> Workspace {
        let mut v = self.clone();
        v.target_dir = self.target_dir.join("test-only");
        v
    }

    /// Whether `package` is a test-only member (unknown names are not).
    pub fn is_test_only(&self, package: &str) -> bool {
        self.members
            .iter()
            .any(|m| m.name == package && m.test_only)
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
    let root = meta["workspace_root"].as_str().map(Path::new);
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
        let dir = package["manifest_path"]
            .as_str()
            .map(Path::new)
            .and_then(Path::parent)
            .zip(root)
            .and_then(|(dir, root)| dir.strip_prefix(root).ok());
        out.push(Member {
            name: package["name"].as_str().unwrap_or_default().to_owned(),
            bins,
            host: default.contains(&id),
            test_only: testonly::is_test_only_package(dir),
        });
    }
    Ok(out)
}

/// Where cargo puts the release ELF of a guest package's binary.
pub fn guest_elf(ws: &Workspace, binary: &str) -> PathBuf {
    ws.target_dir
        .join(ws.arch.target())
        .join("release")
        .join(binary)
}

/// The kernel ELF (built or not).
pub fn kernel_elf(ws: &Workspace) -> PathBuf {
    guest_elf(ws, KERNEL_PACKAGE)
}

/// Builds the kernel (unless `prebuilt_kernel` is given) and every task
/// package in `tasks`, and returns the images. Product packages (the kernel
/// and every task that is not test-only) are built in one cargo invocation
/// into `ws`'s target directory, after [`check_product_build`]; test-only
/// packages in another, into [`Workspace::test_only`]'s.
pub fn build(
    ws: &Workspace,
    prebuilt_kernel: Option<&Path>,
    tasks: &[String],
) -> Result<Images, String> {
    let test_ws = ws.test_only();
    let mut binaries = BTreeMap::new();
    for package in tasks {
        let built_in = if ws.is_test_only(package) {
            &test_ws
        } else {
            ws
        };
        binaries.insert(
            package.clone(),
            guest_elf(built_in, ws.task_binary(package)?),
        );
    }
    let (test, product): (Vec<&str>, Vec<&str>) = tasks
        .iter()
        .map(String::as_str)
        .partition(|p| ws.is_test_only(p));
    let mut packages: Vec<&str> = Vec::new();
    if prebuilt_kernel.is_none() {
        packages.push(KERNEL_PACKAGE);
    }
    packages.extend(product);
    let features = |packages: &[&str]| -> Vec<String> {
        ws.features
            .iter()
            .filter(|f| match f.split_once('/') {
                Some((package, _)) => packages.contains(&package),
                None => true,
            })
            .cloned()
            .collect()
    };
    if let Some(stray) = ws.features.iter().find(|f| {
        f.split_once('/')
            .is_some_and(|(p, _)| !packages.contains(&p) && !test.contains(&p))
    }) {
        return Err(format!(
            "feature `{stray}` names a package this build does not build"
        ));
    }
    if !packages.is_empty() {
        let features = features(&packages);
        check_product_build(ws, &packages, &features)?;
        cargo_build(ws, &packages, &features, "product")?;
    }
    if !test.is_empty() {
        cargo_build(&test_ws, &test, &features(&test), "test-only")?;
    }
    let kernel = match prebuilt_kernel {
        Some(path) => path.to_path_buf(),
        None => kernel_elf(ws),
    };
    let images = Images {
        kernel,
        tasks: binaries,
        arch: ws.arch,
    };
    for elf in std::iter::once(&images.kernel).chain(images.tasks.values()) {
        if !elf.is_file() {
            return Err(format!("build succeeded but {} is missing", elf.display()));
        }
    }
    Ok(images)
}

/// `cargo build --release --target aarch64-unknown-none -p ..` of `packages`
/// with `features`, into `ws`'s target directory.
fn cargo_build(
    ws: &Workspace,
    packages: &[&str],
    features: &[String],
    what: &str,
) -> Result<(), String> {
    let mut cmd = ws.cargo();
    cmd.args(["build", "--release", "--target", ws.arch.target()]);
    for package in packages {
        cmd.args(["-p", package]);
    }
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
        println!("xtask: test-only features {}", features.join(", "));
    }
    println!(
        "xtask: building {} for {} ({what})",
        packages.join(", "),
        ws.arch.target()
    );
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build of the guest failed ({status})"));
    }
    Ok(())
}

/// Fails if the product build of `packages` would enable a test-only
/// feature other than `features` (a variant's deliberate switches): asks
/// cargo for the features it resolves for exactly this build (`cargo tree`
/// with the same packages, target and features) and checks them with
/// [`testonly::check_product_features`]. Also refuses a test-only package
/// among them.
fn check_product_build(
    ws: &Workspace,
    packages: &[&str],
    features: &[String],
) -> Result<(), String> {
    if let Some(p) = packages.iter().find(|p| ws.is_test_only(p)) {
        return Err(format!("test-only package `{p}` in the product build"));
    }
    let mut cmd = ws.cargo();
    cmd.args([
        "tree",
        "--target",
        ws.arch.target(),
        "--edges",
        "normal,build",
    ]);
    cmd.args(["--prefix", "none", "--format", "{p}|{f}"]);
    for package in packages {
        cmd.args(["-p", package]);
    }
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run cargo tree: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo tree` of the product build failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    testonly::check_product_features(&String::from_utf8_lossy(&output.stdout), features)
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
        check_elf(&elf, images.arch).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(elf)
    })?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(out, &bytes).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(bytes.len())
}

/// ELF identification and machine of an executable for `arch`: 64-bit,
/// little-endian, its `e_machine` [ELF gABI].
fn check_elf(elf: &[u8], arch: Arch) -> Result<(), String> {
    let ident_ok = elf.get(..6) == Some(b"\x7fELF\x02\x01");
    let machine = elf.get(18..20).map(|m| u16::from_le_bytes([m[0], m[1]]));
    if ident_ok && machine == Some(arch.elf_machine()) {
        Ok(())
    } else {
        Err(format!("not a 64-bit little-endian {arch} ELF"))
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
        assert!(check_elf(&elf, Arch::Aarch64).is_ok());
        assert!(check_elf(&elf, Arch::X86_64).is_err());
        elf[18] = 62; // x86-64
        assert!(check_elf(&elf, Arch::Aarch64).is_err());
        assert!(check_elf(&elf, Arch::X86_64).is_ok());
        assert!(check_elf(b"\x7fELF", Arch::Aarch64).is_err());
    }

    #[test]
    fn members_split_host_and_guest() {
        let meta = serde_json::json!({
            "workspace_root": "/w",
            "workspace_members": ["a", "k", "t", "d", "n"],
            "workspace_default_members": ["a"],
            "packages": [
                {"id": "a", "name": "abi", "targets": [{"kind": ["lib"], "name": "abi"}]},
                {"id": "k", "name": "kernel", "targets": [{"kind": ["bin"], "name": "kernel"}],
                 "manifest_path": "/w/kernel/Cargo.toml"},
                {"id": "t", "name": "ipc-demo", "targets": [{"kind": ["bin"], "name": "ipc-demo"}],
                 "manifest_path": "/w/fixtures/ipc-demo/Cargo.toml"},
                {"id": "d", "name": "rogue", "targets": [{"kind": ["bin"], "name": "rogue"}],
                 "manifest_path": "/w/drivers/rogue/Cargo.toml",
                 "dependencies": [{"name": "nvme", "features": ["demo-rogue"]}]},
                {"id": "n", "name": "nvme-driver", "targets": [{"kind": ["bin"], "name": "nvme-driver"}],
                 "manifest_path": "/w/drivers/nvme/task/Cargo.toml",
                 "dependencies": [{"name": "nvme", "features": []}]},
                {"id": "x", "name": "dep", "targets": []}
            ]
        });
        let ws = Workspace {
            root: PathBuf::from("/w"),
            target_dir: PathBuf::from("/w/target"),
            cargo: "cargo".into(),
            members: members(&meta).unwrap(),
            features: Vec::new(),
            arch: Arch::Aarch64,
        };
        let v = ws.variant(&["iommu-server/insecure-demo".to_owned()]);
        assert_eq!(
            v.target_dir,
            PathBuf::from("/w/target/variants/iommu-server-insecure-demo")
        );
        assert_eq!(ws.variant(&[]).target_dir, ws.target_dir);
        assert_eq!(
            ws.guest_packages().collect::<Vec<_>>(),
            ["kernel", "ipc-demo", "rogue", "nvme-driver"]
        );
        // Test-only by folder (fixtures/); the kernel and driver tasks are
        // products, even one that turns on a test-only feature (rogue): the
        // product build's feature check stops that one.
        let test_only: Vec<&str> = ws
            .members
            .iter()
            .filter(|m| m.test_only)
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(test_only, ["ipc-demo"]);
        assert!(ws.is_test_only("ipc-demo") && !ws.is_test_only("rogue"));
        assert_eq!(
            ws.test_only().target_dir,
            PathBuf::from("/w/target/test-only")
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

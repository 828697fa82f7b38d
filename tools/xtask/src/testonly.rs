//! What is test-only, in one place: the cargo features and the packages
//! that must never reach a product binary (the kernel, the IOMMU server, a
//! driver task). Cargo unifies the features of every package in one
//! invocation, so a test package that turns on a test-only feature of a
//! library (e.g. `demos/demo-dma` → `nvme/demo-rogue`) would link that code
//! into a product task built beside it. [`crate::artifacts::build`]
//! therefore builds test-only packages (every test task, and so every
//! package that turns such a feature on, lives under [`DIRS`]) in a cargo
//! invocation and target directory of their own, and checks the product
//! build's resolved features with [`check_product_features`] before it
//! runs. Pure: unit-tested.

use std::path::Path;

/// A cargo feature whose name starts with one of these is test-only.
pub const FEATURE_PREFIXES: &[&str] = &["demo-", "insecure-", "test-", "fault-"];

/// Top-level folders whose packages are test-only by role.
pub const DIRS: &[&str] = &["fixtures", "benches", "demos"];

/// Whether `feature` (`name` or `package/name`) is a test-only feature.
pub fn is_test_only_feature(feature: &str) -> bool {
    let name = feature.rsplit('/').next().unwrap_or(feature);
    FEATURE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether a package is test-only: it lives under one of [`DIRS`] (`dir`
/// relative to the workspace root). Every other package is a product
/// package, whatever features it asks for: one outside these folders that
/// turns on a test-only feature is not moved out of the product build but
/// stops it ([`check_product_features`]).
pub fn is_test_only_package(dir: Option<&Path>) -> bool {
    dir.and_then(|d| d.components().next())
        .is_some_and(|top| DIRS.iter().any(|t| top.as_os_str() == *t))
}

/// Checks the resolved features of a product build, as printed by
/// `cargo tree --prefix none --format '{p}|{f}'` with the build's package
/// selection, target and `--features`: no package may have a test-only
/// feature but those in `allowed` (`package/name` or `name`: a test-only
/// variant's own switches, built into a target directory of its own).
pub fn check_product_features(tree: &str, allowed: &[String]) -> Result<(), String> {
    let mut found: Vec<String> = Vec::new();
    for line in tree.lines() {
        let Some((package, features)) = line.split_once('|') else {
            continue;
        };
        let name = package.split_whitespace().next().unwrap_or_default();
        let features = features.trim().trim_end_matches("(*)").trim();
        for feature in features.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let qualified = format!("{name}/{feature}");
            if is_test_only_feature(feature)
                && !allowed.iter().any(|a| *a == qualified || a == feature)
                && !found.contains(&qualified)
            {
                found.push(qualified);
            }
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the product build would enable test-only feature(s) {} (a product package, \
             or something it depends on, turns them on; test-only features are named \
             {}* and belong to packages under {}/ built on their own)",
            found.join(", "),
            FEATURE_PREFIXES.join("*, "),
            DIRS.join("/, "),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_by_name() {
        for f in [
            "demo-rogue",
            "nvme/demo-rogue",
            "iommu-server/insecure-demo",
            "test-hooks",
            "fault-inject",
        ] {
            assert!(is_test_only_feature(f), "{f}");
        }
        for f in [
            "alloc",
            "use_spin",
            "default",
            "nvme/demo",
            "demos",
            "x/latest-",
        ] {
            assert!(!is_test_only_feature(f), "{f}");
        }
    }

    #[test]
    fn packages_by_dir() {
        for dir in ["demos/demo-dma", "fixtures/blk-test", "benches/ipc-bench"] {
            assert!(is_test_only_package(Some(Path::new(dir))), "{dir}");
        }
        for dir in [
            "drivers/nvme/task",
            "kernel",
            "iommu-server/task",
            "lib/demos",
        ] {
            assert!(!is_test_only_package(Some(Path::new(dir))), "{dir}");
        }
        assert!(!is_test_only_package(None));
    }

    #[test]
    fn product_feature_check() {
        let clean = "\
kernel v0.1.0 (/w/kernel)|
buddy_system_allocator v0.13.0|alloc,spin,use_spin
buddy_system_allocator v0.13.0|alloc,spin,use_spin (*)

nvme v0.1.0 (/w/drivers/nvme/lib)|
";
        assert_eq!(check_product_features(clean, &[]), Ok(()));
        let rogue = "\
nvme-driver v0.1.0 (/w/drivers/nvme/task)|
nvme v0.1.0 (/w/drivers/nvme/lib)|demo-rogue
nvme v0.1.0 (/w/drivers/nvme/lib)|demo-rogue (*)
iommu-server v0.1.0 (/w/iommu-server/task)|insecure-demo
";
        let e = check_product_features(rogue, &[]).unwrap_err();
        assert!(
            e.contains("nvme/demo-rogue, iommu-server/insecure-demo"),
            "{e}"
        );
        // A variant allows exactly its own switches, nothing else.
        let allowed = ["iommu-server/insecure-demo".to_owned()];
        let e = check_product_features(rogue, &allowed).unwrap_err();
        assert!(
            e.contains("nvme/demo-rogue") && !e.contains("iommu-server/insecure-demo"),
            "{e}"
        );
        let variant = "iommu-server v0.1.0 (/w/iommu-server/task)|insecure-demo\n";
        assert_eq!(check_product_features(variant, &allowed), Ok(()));
    }
}

//! QEMU test scenarios as data: parsing `scenarios/*.toml` into [`Scenario`]s
//! and judging a [`RunOutcome`] against a scenario's expectations. Pure apart
//! from [`load_dir`], so it is unit-tested.

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::arch::Arch;
use crate::hostnet::{HostCheck, READY_LINE};
use crate::qemu::RunOutcome;

/// Default per-scenario timeout, in seconds.
pub const DEFAULT_TIMEOUT_S: u64 = 60;

/// One scenario file: a list of `[[scenario]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    scenario: Vec<RawScenario>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    bootargs: String,
    #[serde(default)]
    el2: bool,
    /// The guest architecture (default "aarch64").
    arch: Option<String>,
    system: Option<PathBuf>,
    #[serde(default = "default_timeout")]
    timeout_s: u64,
    #[serde(default)]
    expect_exit: RawExit,
    #[serde(default)]
    must_contain: Vec<String>,
    #[serde(default)]
    must_not_contain: Vec<String>,
    /// Each must match a line after the line the previous one matched.
    #[serde(default)]
    must_contain_in_order: Vec<String>,
    /// After the run, the disk images must hold the block test's pattern:
    /// `disk_check = { nvme = 1, vblk = 2 }` (the pattern seeds).
    #[serde(default)]
    disk_check: DiskCheck,
    /// Test-only cargo features the guest is built with for this scenario
    /// (e.g. `["iommu-server/insecure-demo"]`), in a target directory of
    /// their own.
    #[serde(default)]
    features: Vec<String>,
    /// Extra QEMU arguments, after the fixed devices (e.g. `["-device",
    /// "intel-iommu"]`).
    #[serde(default)]
    qemu_args: Vec<String>,
    /// A check the host runs while the guest runs (`hostnet::HostCheck`:
    /// `"dashboard"` or `"bad-input"`), once a line matches `ready`; QEMU
    /// is then ended, and the run judged without an exit status.
    host: Option<String>,
    /// The line that starts the host check (default
    /// `hostnet::READY_LINE`).
    ready: Option<String>,
    /// Part of the network driver's task name, for the host check
    /// (default `"net"`).
    host_driver: Option<String>,
}

/// Which disk images must hold the block test's pattern, by seed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskCheck {
    /// Seed the NVMe disk's pattern was written with.
    pub nvme: Option<u32>,
    /// Seed the virtio-blk disk's pattern was written with.
    pub vblk: Option<u32>,
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_S
}

/// `expect_exit = 0`, `= 3` or `= "nonzero"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawExit {
    Code(i32),
    Word(String),
}

impl Default for RawExit {
    fn default() -> Self {
        Self::Code(0)
    }
}

/// The exit status a scenario expects from QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectExit {
    /// Exactly this status (0 = the guest reported success).
    Code(i32),
    /// Any status but 0 (the guest reported a failure), not a timeout.
    NonZero,
}

/// One boot of the system with what it must (not) print and how it must end.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub bootargs: String,
    pub el2: bool,
    /// The guest architecture.
    pub arch: Arch,
    /// The system description to boot (relative to the workspace root), if
    /// any: its boot image is loaded beside the kernel.
    pub system: Option<PathBuf>,
    pub timeout: Duration,
    pub expect_exit: ExpectExit,
    /// Each must match at least one line of the serial log.
    pub must_contain: Vec<Regex>,
    /// None may match any line of the serial log.
    pub must_not_contain: Vec<Regex>,
    /// Each must match a line after the line the previous one matched
    /// (the first: any line).
    pub must_contain_in_order: Vec<Regex>,
    /// Disk images to check after the run.
    pub disk_check: DiskCheck,
    /// Test-only cargo features of this scenario's build.
    pub features: Vec<String>,
    /// Extra QEMU arguments, after the fixed devices.
    pub qemu_args: Vec<String>,
    /// The host's check during the run, if any.
    pub host: Option<HostStep>,
}

/// A check the host runs against the live guest.
#[derive(Debug, Clone)]
pub struct HostStep {
    /// Which check.
    pub check: HostCheck,
    /// The serial line after which it starts.
    pub ready: Regex,
    /// Part of the network driver's task name.
    pub driver: String,
}

/// Parses one scenario file's text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Scenario>, String> {
    let file: ScenarioFile = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
    file.scenario
        .into_iter()
        .map(|raw| {
            let name = raw.name.clone();
            convert(raw).map_err(|e| format!("{origin}: scenario `{name}`: {e}"))
        })
        .collect()
}

fn convert(raw: RawScenario) -> Result<Scenario, String> {
    let valid_name = !raw.name.is_empty()
        && raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_name {
        return Err("name must be non-empty [A-Za-z0-9_-] (it names a directory)".into());
    }
    if raw.timeout_s == 0 {
        return Err("timeout_s must be positive".into());
    }
    let arch: Arch = raw.arch.as_deref().unwrap_or("aarch64").parse()?;
    if raw.el2 && arch != Arch::Aarch64 {
        return Err("el2 is an aarch64 setting".into());
    }
    let expect_exit = match raw.expect_exit {
        RawExit::Code(code) => ExpectExit::Code(code),
        RawExit::Word(word) if word == "nonzero" => ExpectExit::NonZero,
        RawExit::Word(word) => {
            return Err(format!(
                "expect_exit must be an integer or \"nonzero\", not \"{word}\""
            ));
        }
    };
    let compile = |patterns: Vec<String>| -> Result<Vec<Regex>, String> {
        patterns
            .iter()
            .map(|p| Regex::new(p).map_err(|e| format!("bad pattern `{p}`: {e}")))
            .collect()
    };
    let host = match raw.host {
        None => {
            if raw.ready.is_some() || raw.host_driver.is_some() {
                return Err("ready and host_driver need a host check".into());
            }
            None
        }
        Some(name) => {
            let check = HostCheck::from_name(&name).ok_or_else(|| {
                format!(
                    "host must be \"dashboard\", \"bad-input\" or \"net-bench\", not \"{name}\""
                )
            })?;
            let ready = raw.ready.unwrap_or_else(|| regex::escape(READY_LINE));
            Some(HostStep {
                check,
                ready: Regex::new(&ready)
                    .map_err(|e| format!("bad ready pattern `{ready}`: {e}"))?,
                driver: raw.host_driver.unwrap_or_else(|| "net".to_owned()),
            })
        }
    };
    Ok(Scenario {
        host,
        name: raw.name,
        bootargs: raw.bootargs,
        el2: raw.el2,
        arch,
        system: raw.system,
        timeout: Duration::from_secs(raw.timeout_s),
        expect_exit,
        must_contain: compile(raw.must_contain)?,
        must_not_contain: compile(raw.must_not_contain)?,
        must_contain_in_order: compile(raw.must_contain_in_order)?,
        disk_check: raw.disk_check,
        features: raw.features,
        qemu_args: raw.qemu_args,
    })
}

/// Checks that `image` holds the block test's pattern for `seed` in every
/// region the guest's test writes (`block_api::pattern_regions`, the one
/// definition the guest uses too). Returns what is wrong, if anything.
pub fn check_disk(image: &std::path::Path, seed: u32) -> Result<(), String> {
    use std::io::{Read, Seek, SeekFrom};
    const REGIONS: u64 = 16;
    const REGION_SECTORS: u32 = 32;
    let mut f = std::fs::File::open(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let sectors = f.metadata().map_err(|e| e.to_string())?.len() / block_api::SECTOR_SIZE;
    let mut sector = [0u8; block_api::SECTOR_SIZE as usize];
    for (lba, n) in block_api::pattern_regions(sectors, REGIONS, REGION_SECTORS) {
        for s in lba..lba + u64::from(n) {
            f.seek(SeekFrom::Start(s * block_api::SECTOR_SIZE))
                .map_err(|e| e.to_string())?;
            f.read_exact(&mut sector).map_err(|e| e.to_string())?;
            if let Some(i) =
                (0..sector.len()).find(|&i| sector[i] != block_api::pattern_byte(seed, s, i as u32))
            {
                return Err(format!(
                    "{}: sector {s} byte {i} is not the pattern (seed {seed})",
                    image.display()
                ));
            }
        }
    }
    Ok(())
}

/// Loads every `*.toml` in `dir`, in file-name order; names must be unique.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    let mut all: Vec<Scenario> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        for scenario in parse(&text, &file.display().to_string())? {
            if all.iter().any(|s| s.name == scenario.name) {
                return Err(format!("duplicate scenario name `{}`", scenario.name));
            }
            all.push(scenario);
        }
    }
    Ok(all)
}

/// Everything wrong with `outcome` for `scenario`; empty means PASS.
pub fn judge(scenario: &Scenario, outcome: &RunOutcome) -> Vec<String> {
    let mut problems = Vec::new();
    if outcome.stopped {
        // Ended by the host after its checks: no exit status to judge.
    } else if scenario.host.is_some() && !outcome.timed_out {
        problems.push(format!(
            "QEMU ended (status {:?}) before the host's checks were done",
            outcome.exit_code
        ));
    } else if outcome.timed_out {
        problems.push(format!("TIMEOUT after {} s", scenario.timeout.as_secs()));
    } else {
        match (outcome.exit_code, scenario.expect_exit) {
            (None, _) => problems.push("QEMU was killed by a signal".into()),
            (Some(code), ExpectExit::Code(want)) if code != want => {
                problems.push(format!("exit status {code}, expected {want}"));
            }
            (Some(0), ExpectExit::NonZero) => {
                problems.push("exit status 0, expected non-zero".into());
            }
            _ => {}
        }
    }
    for pattern in &scenario.must_contain {
        if !outcome.serial.lines().any(|line| pattern.is_match(line)) {
            problems.push(format!("no line matches `{pattern}`"));
        }
    }
    if let Err(problem) = check_in_order(&scenario.must_contain_in_order, &outcome.serial) {
        problems.push(problem);
    }
    for pattern in &scenario.must_not_contain {
        if let Some(line) = outcome.serial.lines().find(|line| pattern.is_match(line)) {
            problems.push(format!(
                "forbidden `{pattern}` in line `{}`",
                line.trim_end()
            ));
        }
    }
    problems
}

/// Checks that each of `patterns` matches a line of `serial` after the line
/// the previous one matched (the earliest such line, so a later pattern
/// gets every chance). The first failure is reported: a pattern that
/// matches no line later than its predecessor's is named as out of order
/// if it matches an earlier line, as missing if it matches none.
pub fn check_in_order(patterns: &[Regex], serial: &str) -> Result<(), String> {
    let lines: Vec<&str> = serial.lines().collect();
    // (line index, pattern) of the previous match.
    let mut previous: Option<(usize, &Regex)> = None;
    for pattern in patterns {
        let from = previous.map_or(0, |(i, _)| i + 1);
        if let Some(i) = (from..lines.len()).find(|&i| pattern.is_match(lines[i])) {
            previous = Some((i, pattern));
            continue;
        }
        let earlier = (0..from).find(|&i| pattern.is_match(lines[i]));
        return Err(match (earlier, previous) {
            (Some(i), Some((p, before))) => format!(
                "out of order: `{pattern}` matches only at or before line {} (`{}`), \
                 not after line {} where `{before}` matched",
                i + 1,
                lines[i].trim_end(),
                p + 1
            ),
            _ => format!("no line matches `{pattern}` (must_contain_in_order)"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
        [[scenario]]
        name = "boot-report"
        must_contain = ['smmu:.*SMMUv3', 'pci 00:01\.0 1b36:0010.*sid 0x8\b']
        must_not_contain = ["panic"]

        [[scenario]]
        name = "kernel-fault"
        bootargs = "selftest=kernel-fault"
        el2 = true
        timeout_s = 5
        expect_exit = "nonzero"
        system = "systems/ipc.toml"
    "#;

    fn outcome(exit_code: Option<i32>, serial: &str) -> RunOutcome {
        RunOutcome {
            exit_code,
            timed_out: false,
            stopped: false,
            serial: serial.into(),
            qemu_stderr: String::new(),
            duration: Duration::from_millis(1200),
        }
    }

    #[test]
    fn parses_fields_and_defaults() {
        let list = parse(SAMPLE, "sample").unwrap();
        assert_eq!(list.len(), 2);
        let boot = &list[0];
        assert_eq!(boot.name, "boot-report");
        assert_eq!(boot.bootargs, "");
        assert!(!boot.el2);
        assert_eq!(boot.system, None);
        assert_eq!(boot.timeout, Duration::from_secs(DEFAULT_TIMEOUT_S));
        assert_eq!(boot.expect_exit, ExpectExit::Code(0));
        assert_eq!(boot.must_contain.len(), 2);
        let fault = &list[1];
        assert_eq!(fault.bootargs, "selftest=kernel-fault");
        assert!(fault.el2);
        assert_eq!(fault.timeout, Duration::from_secs(5));
        assert_eq!(fault.expect_exit, ExpectExit::NonZero);
        assert_eq!(fault.system, Some(PathBuf::from("systems/ipc.toml")));
    }

    #[test]
    fn rejects_bad_files() {
        for bad in [
            "[[scenario]]\nname = \"x\"\nexpect_exit = \"sometimes\"",
            "[[scenario]]\nname = \"x\"\nmust_contain = [\"(\"]",
            "[[scenario]]\nname = \"x\"\ntimeout = 3",
            "[[scenario]]\nname = \"a/b\"",
            "[[scenario]]\nname = \"x\"\ntimeout_s = 0",
            "[[scenario]]\nbootargs = \"\"",
        ] {
            assert!(parse(bad, "bad").is_err(), "accepted: {bad}");
        }
    }

    #[test]
    fn the_real_scenario_files_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let list = load_dir(&root.join("scenarios")).unwrap();
        assert!(list.iter().any(|s| s.name == "boot-report"));
        for s in &list {
            if let Some(system) = &s.system {
                crate::system::load(&root.join(system)).unwrap();
            }
        }
    }

    #[test]
    fn pass_when_everything_matches() {
        let list = parse(SAMPLE, "sample").unwrap();
        let serial = "smmu: SMMUv3.1 at 0x9050000\npci 00:01.0 1b36:0010 nvme sid 0x8\n";
        assert!(judge(&list[0], &outcome(Some(0), serial)).is_empty());
    }

    #[test]
    fn matches_are_per_line_with_word_boundaries() {
        let list = parse(SAMPLE, "sample").unwrap();
        // `sid 0x80` is not `sid 0x8`, and the two halves on separate lines
        // do not make a match.
        let serial = "smmu:\nSMMUv3\npci 00:01.0 1b36:0010 sid 0x80\n";
        let problems = judge(&list[0], &outcome(Some(0), serial));
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    fn ordered(patterns: &[&str]) -> Vec<Regex> {
        patterns.iter().map(|p| Regex::new(p).unwrap()).collect()
    }

    const LOG: &str = "a: teardown\nb: noise\nc: reclaimed\nd: restarted\n";

    #[test]
    fn in_order_passes() {
        let p = ordered(&["teardown", "reclaimed", "restarted"]);
        assert_eq!(check_in_order(&p, LOG), Ok(()));
        assert_eq!(check_in_order(&[], LOG), Ok(()));
        // The same pattern twice needs two lines.
        let twice = ordered(&["^[ab]:", "^[ab]:"]);
        assert_eq!(check_in_order(&twice, LOG), Ok(()));
        let thrice = ordered(&["^[ab]:", "^[ab]:", "^[ab]:"]);
        assert!(check_in_order(&thrice, LOG).is_err());
    }

    #[test]
    fn out_of_order_names_the_misplaced_pattern() {
        let p = ordered(&["reclaimed", "teardown", "restarted"]);
        let err = check_in_order(&p, LOG).unwrap_err();
        assert!(err.starts_with("out of order: `teardown`"), "{err}");
        assert!(err.contains("line 1 (`a: teardown`)"), "{err}");
        assert!(
            err.contains("after line 3 where `reclaimed` matched"),
            "{err}"
        );
    }

    #[test]
    fn missing_fails() {
        let p = ordered(&["teardown", "never printed", "restarted"]);
        let err = check_in_order(&p, LOG).unwrap_err();
        assert_eq!(
            err,
            "no line matches `never printed` (must_contain_in_order)"
        );
        assert!(check_in_order(&ordered(&["nothing"]), "").is_err());
    }

    #[test]
    fn judge_applies_the_order() {
        let text = r#"
            [[scenario]]
            name = "ordered"
            must_contain_in_order = ['teardown', 'reclaimed']
        "#;
        let s = &parse(text, "t").unwrap()[0];
        assert!(judge(s, &outcome(Some(0), "teardown\nreclaimed\n")).is_empty());
        let problems = judge(s, &outcome(Some(0), "reclaimed\nteardown\n"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("out of order: `reclaimed`"),
            "{problems:?}"
        );
        let bad = "[[scenario]]\nname = \"x\"\nmust_contain_in_order = [\"(\"]";
        assert!(parse(bad, "bad").is_err());
    }

    #[test]
    fn reports_exit_forbidden_and_timeout() {
        let list = parse(SAMPLE, "sample").unwrap();
        let serial = "smmu: SMMUv3\npci 00:01.0 1b36:0010 sid 0x8\nkernel panic at x\n";
        let problems = judge(&list[0], &outcome(Some(1), serial));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("exit status 1, expected 0"));
        assert!(problems[1].contains("kernel panic at x"));

        assert!(judge(&list[1], &outcome(Some(3), "")).is_empty());
        assert!(!judge(&list[1], &outcome(Some(0), "")).is_empty());
        let mut hung = outcome(None, "");
        hung.timed_out = true;
        assert_eq!(judge(&list[1], &hung), vec!["TIMEOUT after 5 s".to_owned()]);
    }

    #[test]
    fn host_checks_parse_and_are_judged_without_an_exit_status() {
        let list = parse(
            r#"
            [[scenario]]
            name = "net-dashboard"
            system = "systems/net.toml"
            host = "dashboard"

            [[scenario]]
            name = "custom"
            host = "bad-input"
            ready = "ready now"
            host_driver = "vnet"
            "#,
            "net",
        )
        .unwrap();
        let h = list[0].host.as_ref().unwrap();
        assert_eq!(h.check, HostCheck::Dashboard);
        assert!(h.ready.is_match("dashboard: listening on 10.0.2.15:80"));
        assert!(!h.ready.is_match("dashboard: listening on 10x0.2.15:80"));
        assert_eq!(h.driver, "net");
        let h = list[1].host.as_ref().unwrap();
        assert_eq!((h.check, h.driver.as_str()), (HostCheck::BadInput, "vnet"));
        for bad in [
            "[[scenario]]\nname = \"x\"\nhost = \"ping\"",
            "[[scenario]]\nname = \"x\"\nready = \"r\"",
            "[[scenario]]\nname = \"x\"\nhost = \"dashboard\"\nready = \"(\"",
        ] {
            assert!(parse(bad, "bad").is_err(), "{bad}");
        }
        // Stopped by the host: fine; ended by itself first: a failure.
        let mut o = outcome(None, "");
        o.stopped = true;
        assert!(judge(&list[0], &o).is_empty());
        let problems = judge(&list[0], &outcome(Some(0), ""));
        assert!(problems[0].contains("before the host"), "{problems:?}");
        let mut t = outcome(None, "");
        t.timed_out = true;
        assert!(judge(&list[0], &t)[0].contains("TIMEOUT"));
    }
}

#[cfg(test)]
mod disk_tests {
    use super::check_disk;

    #[test]
    fn disk_check_accepts_the_pattern_and_catches_one_wrong_byte() {
        let dir = std::env::temp_dir().join(format!("xtask-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("d.img");
        let sectors = 4096u64;
        let mut data = vec![0u8; (sectors * block_api::SECTOR_SIZE) as usize];
        for (lba, n) in block_api::pattern_regions(sectors, 16, 32) {
            for s in lba..lba + u64::from(n) {
                for i in 0..block_api::SECTOR_SIZE as usize {
                    data[(s * block_api::SECTOR_SIZE) as usize + i] =
                        block_api::pattern_byte(5, s, i as u32);
                }
            }
        }
        std::fs::write(&img, &data).unwrap();
        assert_eq!(check_disk(&img, 5), Ok(()));
        assert!(check_disk(&img, 6).is_err(), "another seed must not match");
        let last = block_api::pattern_regions(sectors, 16, 32)
            .last()
            .unwrap()
            .0;
        data[(last * block_api::SECTOR_SIZE) as usize + 17] ^= 1;
        std::fs::write(&img, &data).unwrap();
        let err = check_disk(&img, 5).unwrap_err();
        assert!(err.contains(&format!("sector {last} byte 17")), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

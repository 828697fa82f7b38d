//! `cargo xtask soak [--minutes M]`: boots systems/soak.toml with every
//! soak task told to run `M` minutes from boot, and judges the run like a
//! scenario: the monitor's verdict that the leak accounting came back to
//! its baseline once the clients were idle, every client ended cleanly
//! after its crashes and restarts, the kernel's frame accounting
//! consistent, and no panic, kernel fault or failure anywhere. Then it
//! prints what the run did (crashes, restarts, the monitor's reports). It
//! never edits the system file.

use std::process::ExitCode;

use crate::artifacts::{self, Workspace};
use crate::prereq;
use crate::scenario::{self, Scenario};
use crate::suite;
use crate::system::System;

/// The system the soak boots.
pub const SYSTEM: &str = "systems/soak.toml";
/// The package of every task whose `seconds` the soak sets.
const PACKAGE: &str = "soak";
/// Longest soak, in minutes (a day).
pub const MAX_MINUTES: u64 = 24 * 60;

/// Options of `cargo xtask soak`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoakOptions {
    pub minutes: u64,
}

impl Default for SoakOptions {
    fn default() -> Self {
        SoakOptions { minutes: 10 }
    }
}

impl SoakOptions {
    /// Seconds from boot the clients work.
    pub fn seconds(&self) -> u64 {
        self.minutes * 60
    }

    /// Seconds before QEMU is killed (a hang): the soak, plus time for the
    /// boot, the clients' last round, the settling and the teardown.
    pub fn timeout_s(&self) -> u64 {
        self.seconds() + 180
    }

    /// The expectations of the run, as a scenario file's text.
    pub fn scenario_toml(&self) -> String {
        format!(
            r#"[[scenario]]
name = "soak"
system = "{SYSTEM}"
timeout_s = {timeout}
must_contain = [
    '^\[monitor\] soak: PASS: back at the baseline',
    'kernel: frames: [0-9]+ free, [0-9]+ kernel, [0-9]+ tasks, [0-9]+ IOMMU pool, 0 held for DMA = [0-9]+ of [0-9]+ at boot: consistent',
    'kernel: all tasks finished: 4 exited ok, 0 exited with an error, 0 faulted, 3 still serving',
]
must_not_contain = ['(?i)panic', 'KERNEL FAULT', 'FAILED', 'DRIFT', 'SMMU refused command', 'restart failed']
"#,
            timeout = self.timeout_s(),
        )
    }
}

/// Sets `seconds` on every soak task of `system`.
pub fn configure(system: &mut System, opts: &SoakOptions) -> Result<(), String> {
    let mut found = 0;
    for task in system.tasks.iter_mut().filter(|t| t.package == PACKAGE) {
        task.args
            .insert("seconds".to_owned(), opts.seconds().to_string());
        found += 1;
    }
    if found == 0 {
        return Err(format!("{SYSTEM} has no task of package \"{PACKAGE}\""));
    }
    Ok(())
}

/// What the serial log says the run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Clients the kernel restarted after a crash.
    pub restarts: usize,
    /// The monitor's periodic reports (frames lines).
    pub reports: usize,
    /// The clients' "idle after" lines.
    pub idle: Vec<String>,
}

/// Reads the soak's serial log.
pub fn summarize(log: &str) -> Summary {
    let mut s = Summary::default();
    for line in log.lines() {
        if line.contains(": restarted (incarnation ") {
            s.restarts += 1;
        } else if line.starts_with("[monitor] soak: t+") && line.contains(": frames: ") {
            s.reports += 1;
        } else if line.contains(" idle after ") && line.starts_with("[soak-") {
            s.idle.push(line.to_owned());
        }
    }
    s
}

/// `cargo xtask soak`.
pub fn soak(opts: &SoakOptions) -> Result<ExitCode, String> {
    let ws = Workspace::locate()?;
    prereq::ensure_all(&ws)?;
    let mut system = suite::load_system(&ws, SYSTEM.as_ref())?;
    configure(&mut system, opts)?;
    let images = artifacts::build(&ws, None, &system.packages())?;
    let s: Scenario = scenario::parse(&opts.scenario_toml(), "cargo xtask soak")?
        .pop()
        .ok_or("no soak scenario")?;
    println!(
        "xtask: soak: {} minute(s) of strict, deferred and untrusted clients on NVMe, virtio-blk and edu, crashing and restarting; leak accounting every 10 s",
        opts.minutes
    );
    let passed = suite::run_scenario(&ws, &images, &s, Some(&system), false)?;
    let log_path = ws.scratch_dir(&s.name).join("serial.log");
    if let Ok(log) = std::fs::read_to_string(&log_path) {
        let sum = summarize(&log);
        println!(
            "xtask: soak: {} crash(es) restarted, {} leak reports; serial log {}",
            sum.restarts,
            sum.reports,
            log_path.display()
        );
        for line in &sum.idle {
            println!("xtask: soak:   {line}");
        }
    }
    if passed {
        println!("xtask: soak PASSED ({} min)", opts.minutes);
        Ok(ExitCode::SUCCESS)
    } else {
        println!("xtask: soak FAILED");
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_parses_and_scales_with_minutes() {
        let opts = SoakOptions { minutes: 2 };
        assert_eq!(opts.seconds(), 120);
        let s = scenario::parse(&opts.scenario_toml(), "test").unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].timeout.as_secs(), 300);
        assert!(s[0].must_contain[0].is_match(
            "[monitor] soak: PASS: back at the baseline: 1 frames free, 0 held for DMA, 3 IOMMU clients"
        ));
        assert!(s[0].must_not_contain.iter().any(|r| r.is_match(
            "[monitor] soak: DRIFT: frames free: 1 at the baseline, 0 now"
        )));
    }

    #[test]
    fn summary_counts_restarts_reports_and_idle_clients() {
        let log = "\
task soak-vblk: restarted (incarnation 1)
[monitor] soak: t+10 s: frames: 1 free, 2 kernel, 3 tasks, 4 IOMMU pool, 0 held for DMA (of 10)
[monitor] soak: t+10 s: client badge 2: 1 mappings
task soak-edu: restarted (incarnation 1)
[soak-edu] soak: soak-edu: incarnation 1 idle after 5 rounds (9 bytes of DMA checked)
";
        let s = summarize(log);
        assert_eq!(s.restarts, 2);
        assert_eq!(s.reports, 1);
        assert_eq!(s.idle.len(), 1);
    }
}

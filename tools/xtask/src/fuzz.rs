//! `cargo xtask fuzz`: boots systems/fuzz.toml with the fuzz task's seed,
//! iterations and target taken from the command line, and judges the run
//! like a scenario: the fuzzer's own verdict line for that seed, every
//! task finished cleanly, the kernel's frame accounting consistent, and no
//! panic, fault, server restart or failure anywhere. Reproducible: the
//! same options replay the same run. It never edits the system file.

use std::process::ExitCode;

use crate::artifacts::{self, Workspace};
use crate::prereq;
use crate::scenario::{self, Scenario};
use crate::suite;
use crate::system::System;

/// The system the fuzzer boots in.
pub const SYSTEM: &str = "systems/fuzz.toml";
/// The fuzz task's name in it.
const TASK: &str = "fuzz";

/// What the fuzz task attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    Kernel,
    Iommu,
    Block,
    #[default]
    All,
}

impl Target {
    /// Its spelling on the command line and in the task's arguments.
    pub fn name(self) -> &'static str {
        match self {
            Target::Kernel => "kernel",
            Target::Iommu => "iommu",
            Target::Block => "block",
            Target::All => "all",
        }
    }
}

/// Options of `cargo xtask fuzz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuzzOptions {
    pub iterations: u64,
    pub seed: u64,
    pub target: Target,
}

impl Default for FuzzOptions {
    fn default() -> Self {
        FuzzOptions {
            iterations: 120_000,
            seed: 1,
            target: Target::All,
        }
    }
}

impl FuzzOptions {
    /// Watchdog period: about a hundred checks per run, at least every
    /// 5000 iterations.
    pub fn watchdog(&self) -> u64 {
        (self.iterations / 100).clamp(1, 5000)
    }

    /// Seconds before QEMU is killed (a hang): generous, the fuzzer runs
    /// tens of thousands of iterations a second under TCG.
    pub fn timeout_s(&self) -> u64 {
        60 + self.iterations / 1000
    }

    /// The task arguments that select this run.
    pub fn task_args(&self) -> [(&'static str, String); 4] {
        [
            ("seed", self.seed.to_string()),
            ("iterations", self.iterations.to_string()),
            ("target", self.target.name().to_owned()),
            ("watchdog", self.watchdog().to_string()),
        ]
    }

    /// The expectations of the run, as a scenario file's text.
    pub fn scenario_toml(&self) -> String {
        format!(
            r#"[[scenario]]
name = "fuzz"
system = "{SYSTEM}"
timeout_s = {timeout}
must_contain = [
    '^\[fuzz\] fuzz: done, seed {seed}: [0-9]+ syscalls, [0-9]+ server messages, servers responsive',
    'kernel: frames: [0-9]+ free, [0-9]+ kernel, [0-9]+ tasks, [0-9]+ IOMMU pool, 0 held for DMA = [0-9]+ of [0-9]+ at boot: consistent',
    'kernel: all tasks finished: 1 exited ok, 0 exited with an error, 0 faulted',
]
must_not_contain = ['(?i)panic', 'KERNEL FAULT', 'FAILED', 'restarting', 'SMMU refused command']
"#,
            timeout = self.timeout_s(),
            seed = self.seed,
        )
    }

    /// The command line that replays this run.
    pub fn replay(&self) -> String {
        format!(
            "cargo xtask fuzz --seed {} --iterations {} --target {}",
            self.seed,
            self.iterations,
            self.target.name()
        )
    }
}

/// Sets the fuzz task's arguments in `system`.
pub fn configure(system: &mut System, opts: &FuzzOptions) -> Result<(), String> {
    let task = system
        .tasks
        .iter_mut()
        .find(|t| t.name == TASK)
        .ok_or_else(|| format!("{SYSTEM} has no task \"{TASK}\""))?;
    for (key, value) in opts.task_args() {
        task.args.insert(key.to_owned(), value);
    }
    Ok(())
}

/// `cargo xtask fuzz`.
pub fn fuzz(opts: &FuzzOptions) -> Result<ExitCode, String> {
    let ws = Workspace::locate()?;
    prereq::ensure_all(&ws)?;
    let mut system = suite::load_system(&ws, SYSTEM.as_ref())?;
    configure(&mut system, opts)?;
    let images = artifacts::build(&ws, None, &system.packages())?;
    let s: Scenario = scenario::parse(&opts.scenario_toml(), "cargo xtask fuzz")?
        .pop()
        .ok_or("no fuzz scenario")?;
    println!(
        "xtask: fuzz: seed {}, {} iterations, target {} (watchdog every {})",
        opts.seed,
        opts.iterations,
        opts.target.name(),
        opts.watchdog()
    );
    if suite::run_scenario(&ws, &images, &s, Some(&system), false)? {
        println!("xtask: fuzz PASSED ({})", opts.replay());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("xtask: fuzz FAILED; replay with: {}", opts.replay());
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip_through_the_command_line() {
        for t in [Target::Kernel, Target::Iommu, Target::Block, Target::All] {
            let cli = crate::cli::parse(["fuzz", "--target", t.name()]).unwrap();
            let Some(crate::cli::Command::Fuzz(f)) = cli.command else {
                panic!("not fuzz");
            };
            assert_eq!(f.options().target, t);
        }
    }

    #[test]
    fn scenario_names_the_seed_and_parses() {
        let opts = FuzzOptions {
            iterations: 5000,
            seed: 77,
            target: Target::Block,
        };
        let s = scenario::parse(&opts.scenario_toml(), "test").unwrap();
        assert_eq!(s.len(), 1);
        assert!(s[0].must_contain[0].is_match(
            "[fuzz] fuzz: done, seed 77: 5012 syscalls, 900 server messages, servers responsive"
        ));
        assert!(!s[0].must_contain[0].is_match(
            "[fuzz] fuzz: done, seed 7: 1 syscalls, 0 server messages, servers responsive"
        ));
        assert_eq!(s[0].timeout.as_secs(), 65);
        assert_eq!(opts.watchdog(), 50);
        assert_eq!(
            opts.replay(),
            "cargo xtask fuzz --seed 77 --iterations 5000 --target block"
        );
    }

    #[test]
    fn watchdog_is_bounded() {
        let with = |iterations| FuzzOptions {
            iterations,
            ..FuzzOptions::default()
        };
        assert_eq!(with(1).watchdog(), 1);
        assert_eq!(with(10_000_000).watchdog(), 5000);
    }
}

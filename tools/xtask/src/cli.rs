//! Command-line parsing for `cargo xtask`: turns argv into a [`Command`].
//! Pure: no I/O, so it is unit-tested.

/// Shown on `help` and on a usage error.
pub const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  build [--system FILE]      build the kernel for aarch64-unknown-none; with a system
                             description, also its task packages and its boot image
                             (target/xtask/build/<system>/boot.img)
  run [options] [-- ARGS..]  without options: the main job (discovery report, the
                             benchmark with short points, every isolation demo);
                             with options: build and boot under QEMU with the serial
                             console live; ARGS become the kernel's bootargs; exits
                             with QEMU's status
      --system FILE          boot this system description (systems/*.toml): its boot
                             image is loaded beside the kernel (default: none)
      --el2                  enter the kernel at EL2 (virtualization=on)
      --timeout SECS         kill QEMU after SECS seconds (default 120)
      --kernel ELF           boot this kernel ELF instead of building one
  test [options] [NAME..]    lint (fmt, clippy), host unit tests, then every QEMU scenario
                             in scenarios/*.toml
                             (only those whose name contains one of NAME.., if given)
      --timeout SECS         override every scenario's timeout
      --skip-host            skip the host side: `cargo fmt --check`, `cargo clippy -D
                             warnings` (host and guest crates) and `cargo test`
      --echo                 echo each scenario's serial console live
      --el2                  boot every scenario at EL2 (virtualization=on)
      --repeat N             run the selected scenarios N times; report every one that
                             failed even once (its logs kept under target/xtask/repeat/)
      --kernel ELF           boot this kernel ELF instead of building one
  bench [options]            the benchmark matrix (systems/bench.toml) and the mixed
                             run (systems/bench-mixed.toml) under QEMU, every mode as a
                             ratio of bypass in the same boot, plus the hardware
                             projection; writes docs/bench/{results.json,results.csv,
                             chart.svg,table.txt}
      --ms MS                milliseconds per point (default: the system's)
      --out DIR              write the report files there instead
  fuzz [options]             the syscall and IPC fuzzer (systems/fuzz.toml): random
                             syscalls and mutated IOMMU and block requests from a seed,
                             with a watchdog on both servers; fails on any panic, fault,
                             server restart, hang or frame accounting error, and prints
                             the command that replays the run
      --iterations N         fuzz iterations (default 120000)
      --seed S               PRNG seed (default 1); the same options replay the run
      --target T             kernel, iommu, block or all (default all)
  soak [options]             the soak (systems/soak.toml): strict, deferred and untrusted
                             clients on NVMe, virtio-blk and edu doing mixed I/O and
                             map/unmap churn, crashing and restarting; a monitor prints
                             the leak accounting every 10 s and fails on any drift that
                             does not return to the baseline once the clients are idle
      --minutes M            how long the clients work, from boot (default 10)
  demo [NAME..]              the isolation demos (scenarios named demo-*), narrated live;
                             NAME picks one (e.g. `rogue-dma`); ends with PASS/FAIL
  help                       this text

options of every command that boots QEMU (run, test, bench, demo):
      --qemu PATH            the QEMU binary (default: $QEMU, else qemu-system-aarch64 on
                             PATH); one unpacked with `dpkg -x DIR` (DIR/usr/bin/...) gets
                             -L DIR/usr/share/qemu and -audio none
      --cpu MODEL            the -cpu model (default: $QEMU_CPU, else max)";

use std::path::PathBuf;

/// What the user asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Build(BuildOptions),
    Run(RunOptions),
    Test(TestOptions),
    Bench(crate::bench::BenchOptions),
    Fuzz(crate::fuzz::FuzzOptions),
    Soak(crate::soak::SoakOptions),
    /// Demo names (empty: all).
    Demo(Vec<String>),
}

/// Options of `cargo xtask build`.
#[derive(Debug, PartialEq, Eq, Default)]
pub struct BuildOptions {
    pub system: Option<PathBuf>,
}

/// Options of `cargo xtask run`.
#[derive(Debug, PartialEq, Eq, Default)]
pub struct RunOptions {
    pub system: Option<PathBuf>,
    pub el2: bool,
    pub timeout_s: Option<u64>,
    pub kernel: Option<PathBuf>,
    pub bootargs: Vec<String>,
}

/// Options of `cargo xtask test`.
#[derive(Debug, PartialEq, Eq, Default)]
pub struct TestOptions {
    pub timeout_s: Option<u64>,
    pub kernel: Option<PathBuf>,
    pub skip_host: bool,
    pub echo: bool,
    /// Boot every scenario at EL2.
    pub el2: bool,
    /// Rounds of the selected scenarios (0 and 1: once).
    pub repeat: u64,
    pub filters: Vec<String>,
}

/// The emulator options every booting command takes (see [`USAGE`]).
#[derive(Debug, PartialEq, Eq, Default)]
pub struct MachineOptions {
    pub qemu: Option<PathBuf>,
    pub cpu: Option<String>,
}

/// Takes `--qemu PATH` and `--cpu MODEL` out of `args` (anywhere before a
/// `--`), leaving the rest for [`parse`].
pub fn take_machine_options(args: &[String]) -> Result<(MachineOptions, Vec<String>), String> {
    let mut opts = MachineOptions::default();
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--" => {
                rest.push(arg.clone());
                rest.extend(it.by_ref().cloned());
            }
            "--qemu" => opts.qemu = Some(parse_path("--qemu", it.next())?),
            "--cpu" => {
                let model = it.next().filter(|m| !m.is_empty() && !m.starts_with('-'));
                opts.cpu = Some(
                    model
                        .ok_or("--cpu needs a CPU model (e.g. max, cortex-a72)")?
                        .clone(),
                );
            }
            _ => rest.push(arg.clone()),
        }
    }
    Ok((opts, rest))
}

/// Parses the arguments after `cargo xtask`.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let Some((sub, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    match sub.as_str() {
        "help" | "-h" | "--help" => Ok(Command::Help),
        "build" => parse_build(rest).map(Command::Build),
        "run" => parse_run(rest).map(Command::Run),
        "test" => parse_test(rest).map(Command::Test),
        "bench" => parse_bench(rest).map(Command::Bench),
        "fuzz" => parse_fuzz(rest).map(Command::Fuzz),
        "soak" => parse_soak(rest).map(Command::Soak),
        "demo" => Ok(Command::Demo(rest.to_vec())),
        other => Err(format!("unknown command `{other}`")),
    }
}

fn parse_bench(args: &[String]) -> Result<crate::bench::BenchOptions, String> {
    let mut opts = crate::bench::BenchOptions::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--ms" => opts.ms = Some(parse_positive("--ms", "milliseconds", it.next())?),
            "--out" => opts.out = Some(parse_path("--out", it.next())?),
            other => return Err(format!("`bench`: unexpected argument `{other}`")),
        }
    }
    Ok(opts)
}

fn parse_fuzz(args: &[String]) -> Result<crate::fuzz::FuzzOptions, String> {
    let mut opts = crate::fuzz::FuzzOptions::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--iterations" => {
                opts.iterations = parse_positive("--iterations", "iterations", it.next())?
            }
            "--seed" => {
                let value = it.next().ok_or("--seed needs a number")?;
                opts.seed = value
                    .parse()
                    .map_err(|_| format!("--seed: `{value}` is not a number"))?;
            }
            "--target" => {
                let value = it
                    .next()
                    .ok_or("--target needs kernel, iommu, block or all")?;
                opts.target = crate::fuzz::Target::parse(value).ok_or_else(|| {
                    format!("--target: `{value}` is not kernel, iommu, block or all")
                })?;
            }
            other => return Err(format!("`fuzz`: unexpected argument `{other}`")),
        }
    }
    Ok(opts)
}

fn parse_soak(args: &[String]) -> Result<crate::soak::SoakOptions, String> {
    let mut opts = crate::soak::SoakOptions::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--minutes" => {
                opts.minutes = parse_positive("--minutes", "minutes", it.next())?;
                if opts.minutes > crate::soak::MAX_MINUTES {
                    return Err(format!(
                        "--minutes: at most {} (a day)",
                        crate::soak::MAX_MINUTES
                    ));
                }
            }
            other => return Err(format!("`soak`: unexpected argument `{other}`")),
        }
    }
    Ok(opts)
}

fn parse_build(args: &[String]) -> Result<BuildOptions, String> {
    let mut opts = BuildOptions::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--system" => opts.system = Some(parse_path("--system", it.next())?),
            other => return Err(format!("`build`: unexpected argument `{other}`")),
        }
    }
    Ok(opts)
}

fn parse_run(args: &[String]) -> Result<RunOptions, String> {
    let mut opts = RunOptions::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--system" => opts.system = Some(parse_path("--system", it.next())?),
            "--el2" => opts.el2 = true,
            "--timeout" => {
                opts.timeout_s = Some(parse_positive("--timeout", "seconds", it.next())?)
            }
            "--kernel" => opts.kernel = Some(parse_path("--kernel", it.next())?),
            "--" => {
                opts.bootargs.extend(it.by_ref().cloned());
            }
            other => return Err(format!("`run`: unexpected argument `{other}`")),
        }
    }
    Ok(opts)
}

fn parse_test(args: &[String]) -> Result<TestOptions, String> {
    let mut opts = TestOptions::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--timeout" => {
                opts.timeout_s = Some(parse_positive("--timeout", "seconds", it.next())?)
            }
            "--kernel" => opts.kernel = Some(parse_path("--kernel", it.next())?),
            "--skip-host" => opts.skip_host = true,
            "--echo" => opts.echo = true,
            "--el2" => opts.el2 = true,
            "--repeat" => opts.repeat = parse_positive("--repeat", "rounds", it.next())?,
            flag if flag.starts_with('-') => {
                return Err(format!("`test`: unknown option `{flag}`"));
            }
            name => opts.filters.push(name.to_owned()),
        }
    }
    Ok(opts)
}

fn parse_path(flag: &str, value: Option<&String>) -> Result<PathBuf, String> {
    value
        .map(PathBuf::from)
        .ok_or_else(|| format!("{flag} needs a path"))
}

/// The positive number `flag` takes, counted in `unit`.
fn parse_positive(flag: &str, unit: &str, value: Option<&String>) -> Result<u64, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a number of {unit}"))?;
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{flag}: `{value}` is not a positive number of {unit}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn no_arguments_is_help() {
        assert_eq!(parse(&[]), Ok(Command::Help));
    }

    #[test]
    fn run_takes_bootargs_after_double_dash() {
        let cmd = parse(&args("run --el2 --timeout 5 -- selftest=x --weird")).unwrap();
        assert_eq!(
            cmd,
            Command::Run(RunOptions {
                system: None,
                el2: true,
                timeout_s: Some(5),
                kernel: None,
                bootargs: args("selftest=x --weird"),
            })
        );
    }

    #[test]
    fn system_option_of_run_and_build() {
        let Command::Run(run) = parse(&args("run --system systems/ipc.toml -- x")).unwrap() else {
            panic!("not run");
        };
        assert_eq!(run.system, Some(PathBuf::from("systems/ipc.toml")));
        assert_eq!(run.bootargs, args("x"));
        assert_eq!(
            parse(&args("build --system s.toml")),
            Ok(Command::Build(BuildOptions {
                system: Some(PathBuf::from("s.toml"))
            }))
        );
        assert_eq!(
            parse(&args("build")),
            Ok(Command::Build(BuildOptions::default()))
        );
        assert!(parse(&args("run --system")).is_err());
        assert!(parse(&args("build --system")).is_err());
    }

    #[test]
    fn test_takes_filters_and_flags() {
        let cmd = parse(&args("test --skip-host boot --timeout 3")).unwrap();
        assert_eq!(
            cmd,
            Command::Test(TestOptions {
                timeout_s: Some(3),
                kernel: None,
                skip_host: true,
                echo: false,
                el2: false,
                repeat: 0,
                filters: args("boot"),
            })
        );
        let Command::Test(t) = parse(&args("test --el2 --repeat 40 --skip-host")).unwrap() else {
            panic!("not test");
        };
        assert!(t.el2 && t.skip_host);
        assert_eq!(t.repeat, 40);
        assert!(parse(&args("test --repeat 0")).is_err());
        assert!(parse(&args("test --repeat")).is_err());
    }

    #[test]
    fn machine_options_anywhere_before_double_dash() {
        let (m, rest) =
            take_machine_options(&args("test --qemu /q/qemu boot --cpu cortex-a72")).unwrap();
        assert_eq!(m.qemu, Some(PathBuf::from("/q/qemu")));
        assert_eq!(m.cpu.as_deref(), Some("cortex-a72"));
        assert_eq!(rest, args("test boot"));
        let (m, rest) = take_machine_options(&args("run --system s -- --cpu x")).unwrap();
        assert_eq!(m, MachineOptions::default());
        assert_eq!(rest, args("run --system s -- --cpu x"));
        assert!(take_machine_options(&args("test --cpu")).is_err());
        assert!(take_machine_options(&args("test --cpu --el2")).is_err());
        assert!(take_machine_options(&args("test --qemu")).is_err());
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(parse(&args("frobnicate")).is_err());
        assert!(parse(&args("run --timeout 0")).is_err());
        assert!(parse(&args("run --timeout")).is_err());
        assert!(parse(&args("test --nope")).is_err());
        assert!(parse(&args("build extra")).is_err());
        assert!(parse(&args("run --kernel")).is_err());
        assert!(parse(&args("test --timeout x")).is_err());
        let ms = parse(&args("bench --ms 0")).unwrap_err();
        assert!(
            ms.starts_with("--ms:") && ms.contains("milliseconds"),
            "{ms}"
        );
        assert!(parse(&args("bench --ms")).unwrap_err().starts_with("--ms"));
    }

    #[test]
    fn fuzz_takes_iterations_seed_and_target() {
        use crate::fuzz::{FuzzOptions, Target};
        assert_eq!(
            parse(&args("fuzz")),
            Ok(Command::Fuzz(FuzzOptions::default()))
        );
        assert_eq!(
            parse(&args("fuzz --iterations 500 --seed 0 --target iommu")),
            Ok(Command::Fuzz(FuzzOptions {
                iterations: 500,
                seed: 0,
                target: Target::Iommu,
            }))
        );
        let Command::Fuzz(f) =
            parse(&args("fuzz --target kernel --seed 18446744073709551615")).unwrap()
        else {
            panic!("not fuzz");
        };
        assert_eq!((f.seed, f.target), (u64::MAX, Target::Kernel));
        assert_eq!(f.iterations, FuzzOptions::default().iterations);
        for bad in [
            "fuzz --iterations 0",
            "fuzz --iterations",
            "fuzz --iterations x",
            "fuzz --seed",
            "fuzz --seed -1",
            "fuzz --target",
            "fuzz --target smmu",
            "fuzz extra",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
        assert!(
            parse(&args("fuzz --target x"))
                .unwrap_err()
                .contains("kernel, iommu, block or all")
        );
    }

    #[test]
    fn bench_takes_ms_and_out() {
        let Command::Bench(b) = parse(&args("bench --ms 20 --out /tmp/b")).unwrap() else {
            panic!("not bench");
        };
        assert_eq!(b.ms, Some(20));
        assert_eq!(b.out, Some(PathBuf::from("/tmp/b")));
    }
}

//! Command-line parsing for `cargo xtask` (clap derive): turns argv into a
//! [`Command`]. Pure: no I/O, so it is unit-tested; clap prints the help,
//! the version and the one-line usage errors (exit status 2).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::arch::Arch;

/// Guest RAM the kernel can use: the boot image sits 128 MiB into RAM and
/// the kernel's boot-time linear map ends at 0x8000_0000 (1 GiB of RAM).
pub const MEM_RANGE_MIB: std::ops::RangeInclusive<u32> = 256..=1024;
/// CPUs the kernel runs on: one (SMP is future work, docs/DESIGN.md).
pub const MAX_SMP: u32 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    about = "Build, boot, test, benchmark and demo the microkernel under QEMU.",
    after_help = "`cargo xtask <command> --help` describes each command.\n\
                  `cargo xtask list` names the scenarios, systems and demos."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What the user asked for.
#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Build the kernel (and a system's tasks and boot image).
    ///
    /// Builds the kernel for aarch64-unknown-none; with --system, also that
    /// system's task packages and its boot image
    /// (target/xtask/build/<system>/boot.img).
    Build(BuildOptions),
    /// The main job: discovery report, short benchmark, every demo.
    ///
    /// Boots and prints the discovery report, runs the benchmark with short
    /// points, then every isolation demo. Its options only tune it; to boot
    /// one system use `boot --system FILE`.
    Run(RunOptions),
    /// Boot one system interactively (quit with Ctrl-A X).
    ///
    /// Builds and boots one system with the serial console live; quit with
    /// Ctrl-A X. No timeout unless given. Exits with QEMU's status.
    Boot(BootOptions),
    /// Lint, host tests, then every QEMU scenario (or those named).
    ///
    /// Lint (cargo fmt, clippy), host tests, then every QEMU scenario in
    /// scenarios/*.toml (or those whose name contains one of NAME..).
    Test(TestOptions),
    /// The benchmark: every IOMMU mode against bypass, with a report.
    ///
    /// The benchmark matrix (systems/bench.toml) and the mixed run
    /// (systems/bench-mixed.toml): every mode as a ratio of bypass in the
    /// same boot, plus the hardware projection; writes results.json,
    /// results.csv, chart.svg and table.txt.
    Bench(BenchArgs),
    /// The syscall and IPC fuzzer.
    ///
    /// The syscall and IPC fuzzer (systems/fuzz.toml); fails on any panic,
    /// fault, server restart, hang or frame accounting error, and prints
    /// the command that replays the run.
    Fuzz(FuzzArgs),
    /// The soak: long mixed I/O with crashes, checked for leaks.
    ///
    /// The soak (systems/soak.toml): mixed I/O, map/unmap churn, crashes and
    /// restarts; fails on any leak that does not return to the baseline.
    Soak(SoakArgs),
    /// The isolation demos, narrated live.
    ///
    /// The isolation demos (scenarios named demo-*), narrated live; NAME
    /// picks some (e.g. `rogue-dma`). Ends with PASS/FAIL.
    Demo(DemoArgs),
    /// Boot systems/net.toml and serve the IOMMU dashboard to this host.
    ///
    /// Boots systems/net.toml (the IOMMU server, the virtio-net driver,
    /// the network stack, the dashboard and block clients) with QEMU's
    /// user networking, forwards a free port of 127.0.0.1 (only) to the
    /// guest's port 80, and prints the URL to open. Runs until Ctrl-C (or
    /// Ctrl-A X) at a terminal; elsewhere until --timeout (default 300 s).
    Dashboard(DashboardOptions),
    /// List the scenarios, systems and demos, one line each.
    List,
}

/// Options of `cargo xtask dashboard`.
#[derive(Debug, PartialEq, Eq, Default, Args)]
pub struct DashboardOptions {
    /// Kill QEMU after SECS seconds (default: never at a terminal, else
    /// 300).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// The system to boot [default: systems/net.toml].
    #[arg(long, value_name = "FILE")]
    pub system: Option<PathBuf>,
    #[command(flatten)]
    pub machine: MachineOptions,
}

/// The emulator options of every command that boots QEMU.
#[derive(Debug, Clone, PartialEq, Eq, Default, Args)]
#[command(next_help_heading = "QEMU options")]
pub struct MachineOptions {
    /// The QEMU binary [env: QEMU; default: qemu-system-aarch64 on PATH].
    /// One unpacked with `dpkg -x DIR` (DIR/usr/bin/...) gets
    /// `-L DIR/usr/share/qemu -audio none`.
    #[arg(long, value_name = "PATH")]
    pub qemu: Option<PathBuf>,
    /// The -cpu model [env: QEMU_CPU; default: max], e.g. cortex-a72.
    #[arg(long, value_name = "MODEL", value_parser = cpu_model)]
    pub cpu: Option<String>,
    /// Enter the kernel at EL2 (virtualization=on).
    #[arg(long)]
    pub el2: bool,
    /// Guest RAM in MiB (256..=1024; a trailing M or G is accepted) [default: 512].
    #[arg(long, value_name = "MIB", value_parser = mem_mib)]
    pub mem: Option<u32>,
    /// Number of CPUs; the kernel runs on one CPU only, so only 1 is valid.
    #[arg(long, value_name = "N", value_parser = smp)]
    pub smp: Option<u32>,
    /// Start QEMU halted with a gdb stub on port 1234 (-s -S) and print the
    /// gdb-multiarch command that attaches to it.
    #[arg(long)]
    pub gdb: bool,
}

/// Options of `cargo xtask build`.
#[derive(Debug, PartialEq, Eq, Default, Args)]
pub struct BuildOptions {
    /// A system description (systems/*.toml).
    #[arg(long, value_name = "FILE")]
    pub system: Option<PathBuf>,
}

/// Options of `cargo xtask run` (the main job).
#[derive(Debug, PartialEq, Eq, Default, Args)]
pub struct RunOptions {
    /// Milliseconds per benchmark point in the main job [default: 200].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub bench_ms: Option<u64>,
    /// Not an option of `run`: booting one system is `boot --system FILE`.
    #[arg(long, value_name = "FILE", hide = true)]
    pub system: Option<PathBuf>,
    /// The guest architecture: aarch64 only (QEMU virt). x86_64 is
    /// refused: this command boots the IOMMU server and device drivers,
    /// which need the VT-d backend (not built yet).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<Arch>,
    #[command(flatten)]
    pub machine: MachineOptions,
}

/// Options of `cargo xtask boot`.
#[derive(Debug, PartialEq, Eq, Default, Args)]
pub struct BootOptions {
    /// The system description to boot (systems/*.toml); without it, the
    /// kernel alone.
    #[arg(long, value_name = "FILE")]
    pub system: Option<PathBuf>,
    /// Kill QEMU after SECS seconds (default: never).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Boot this kernel ELF instead of building one.
    #[arg(long, value_name = "ELF")]
    pub kernel: Option<PathBuf>,
    /// The kernel command line (/chosen/bootargs), e.g. "selftest=kernel-fault".
    #[arg(long, value_name = "ARGS", default_value = "")]
    pub bootargs: String,
    /// The guest architecture: aarch64 (QEMU virt, default) or x86_64
    /// (QEMU q35 under TCG; the kernel alone so far, no --system).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<Arch>,
    #[command(flatten)]
    pub machine: MachineOptions,
    /// Extra QEMU arguments, appended after the fixed devices.
    #[arg(last = true, value_name = "QEMU ARGS")]
    pub qemu_args: Vec<String>,
}

/// Options of `cargo xtask test`.
#[derive(Debug, PartialEq, Eq, Default, Args)]
pub struct TestOptions {
    /// Override every scenario's timeout.
    #[arg(long = "timeout", value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_s: Option<u64>,
    /// Boot this kernel ELF instead of building one.
    #[arg(long, value_name = "ELF")]
    pub kernel: Option<PathBuf>,
    /// Skip the host side: cargo fmt --check, cargo clippy -D warnings
    /// (host and guest crates) and cargo test.
    #[arg(long)]
    pub skip_host: bool,
    /// Echo each scenario's serial console live.
    #[arg(long)]
    pub echo: bool,
    /// Run the selected scenarios N times; report every one that failed
    /// even once (its logs kept under target/xtask/repeat/).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub repeat: u64,
    /// Only the scenarios of this architecture (aarch64 or x86_64; default:
    /// both).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<Arch>,
    /// Run only the scenarios whose name contains one of these.
    #[arg(value_name = "NAME")]
    pub filters: Vec<String>,
    #[command(flatten)]
    pub machine: MachineOptions,
}

/// Options of `cargo xtask bench`.
#[derive(Debug, PartialEq, Eq, Default, Args)]
pub struct BenchArgs {
    /// Milliseconds per point [default: the system description's].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub ms: Option<u64>,
    /// Where the report files go [default: target/bench/<timestamp>/];
    /// `--out docs/bench` to publish.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Boot each run K times, rotating the mode order each time, and report
    /// the median with a 95% bootstrap interval [default: until every
    /// matrix and ceiling point's IOPS interval is within ±5% of its
    /// median, at least 3 and at most 24 times; `--net`: 1].
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=50))]
    pub repeat: Option<u64>,
    /// Boot nothing: redraw the table, CSV and chart from DIR/results.json
    /// (into --out, else DIR).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["ms", "repeat"])]
    pub replot: Option<PathBuf>,
    /// The network benchmark instead: TCP bulk transfer each way through
    /// the 127.0.0.1 forward, in bypass and in strict, MIB MiB each way
    /// (net.json and net.md in --out).
    #[arg(long, value_name = "MIB", num_args = 0..=1, default_missing_value = "64",
          value_parser = clap::value_parser!(u64).range(1..=4096), conflicts_with_all = ["ms", "replot"])]
    pub net: Option<u64>,
    /// The guest architecture: aarch64 only (QEMU virt). x86_64 is
    /// refused: this command boots the IOMMU server and device drivers,
    /// which need the VT-d backend (not built yet).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<Arch>,
    #[command(flatten)]
    pub machine: MachineOptions,
}

/// What `fuzz --target` attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum FuzzTarget {
    Kernel,
    Iommu,
    Block,
    #[default]
    All,
}

/// Options of `cargo xtask fuzz`.
#[derive(Debug, PartialEq, Eq, Args)]
pub struct FuzzArgs {
    /// Fuzz iterations.
    #[arg(long, value_name = "N", default_value_t = 120_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: u64,
    /// PRNG seed; the same options replay the run.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// What to attack.
    #[arg(long, value_name = "T", value_enum, default_value_t = FuzzTarget::All)]
    pub target: FuzzTarget,
    #[command(flatten)]
    pub machine: MachineOptions,
}

/// Options of `cargo xtask soak`.
#[derive(Debug, PartialEq, Eq, Args)]
pub struct SoakArgs {
    /// How long the clients work, from boot (at most a day).
    #[arg(long, value_name = "M", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=crate::soak::MAX_MINUTES))]
    pub minutes: u64,
    #[command(flatten)]
    pub machine: MachineOptions,
}

/// Options of `cargo xtask demo`.
#[derive(Debug, PartialEq, Eq, Default, Args)]
pub struct DemoArgs {
    /// Demo names (e.g. rogue-dma); none: every demo.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// The guest architecture: aarch64 only (QEMU virt). x86_64 is
    /// refused: this command boots the IOMMU server and device drivers,
    /// which need the VT-d backend (not built yet).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<Arch>,
    #[command(flatten)]
    pub machine: MachineOptions,
}

impl Command {
    /// The emulator options, for the commands that boot QEMU.
    pub fn machine(&self) -> Option<&MachineOptions> {
        match self {
            Command::Build(_) | Command::List => None,
            Command::Run(o) => Some(&o.machine),
            Command::Boot(o) => Some(&o.machine),
            Command::Test(o) => Some(&o.machine),
            Command::Bench(o) => Some(&o.machine),
            Command::Fuzz(o) => Some(&o.machine),
            Command::Soak(o) => Some(&o.machine),
            Command::Demo(o) => Some(&o.machine),
            Command::Dashboard(o) => Some(&o.machine),
        }
    }
}

impl FuzzArgs {
    /// The fuzzer's options.
    pub fn options(&self) -> crate::fuzz::FuzzOptions {
        use crate::fuzz::Target;
        crate::fuzz::FuzzOptions {
            iterations: self.iterations,
            seed: self.seed,
            target: match self.target {
                FuzzTarget::Kernel => Target::Kernel,
                FuzzTarget::Iommu => Target::Iommu,
                FuzzTarget::Block => Target::Block,
                FuzzTarget::All => Target::All,
            },
        }
    }
}

impl SoakArgs {
    /// The soak's options.
    pub fn options(&self) -> crate::soak::SoakOptions {
        crate::soak::SoakOptions {
            minutes: self.minutes,
        }
    }
}

/// Parses the arguments after `cargo xtask` (argv without the program).
pub fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(
        std::iter::once("cargo xtask".into()).chain(args.into_iter().map(Into::into)),
    )?;
    if let Some(Command::Run(RunOptions {
        system: Some(system),
        ..
    })) = &cli.command
    {
        use clap::CommandFactory;
        return Err(Cli::command().error(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "`run` is the main job and boots no chosen system; to boot one: \
                 cargo xtask boot --system {}",
                system.display()
            ),
        ));
    }
    let device_command = match &cli.command {
        Some(Command::Run(o)) => Some(("run", "the main job's benchmark and demos", o.arch)),
        Some(Command::Bench(o)) => Some(("bench", "the benchmark", o.arch)),
        Some(Command::Demo(o)) => Some(("demo", "every demo", o.arch)),
        _ => None,
    };
    if let Some((name, what, Some(arch @ Arch::X86_64))) = device_command {
        use clap::CommandFactory;
        return Err(Cli::command().error(
            clap::error::ErrorKind::InvalidValue,
            format!(
                "`{name} --arch {arch}` is not available yet: {what} boot the IOMMU server \
                 and the NVMe, virtio-blk and edu drivers, and on {arch} the IOMMU is VT-d, \
                 whose backend is not built. On {arch}: `cargo xtask boot --arch {arch}` \
                 and `cargo xtask test --arch {arch}` (the systems without the IOMMU server)."
            ),
        ));
    }
    Ok(cli)
}

fn cpu_model(word: &str) -> Result<String, String> {
    let ok = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_,=.".contains(c));
    if ok {
        Ok(word.to_owned())
    } else {
        Err("not a QEMU CPU model (e.g. max, cortex-a72, cortex-a57)".into())
    }
}

fn mem_mib(word: &str) -> Result<u32, String> {
    let (digits, scale) = match word.strip_suffix(['G', 'g']) {
        Some(d) => (d, 1024),
        None => (word.strip_suffix(['M', 'm']).unwrap_or(word), 1),
    };
    let mib = digits
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or("not a size in MiB (e.g. 512, 512M, 1G)")?;
    if MEM_RANGE_MIB.contains(&mib) {
        Ok(mib)
    } else {
        Err(format!(
            "{mib} MiB is outside {}..={} MiB: the boot image is loaded 128 MiB into RAM \
             and the kernel maps at most 1 GiB of RAM at boot",
            MEM_RANGE_MIB.start(),
            MEM_RANGE_MIB.end()
        ))
    }
}

fn smp(word: &str) -> Result<u32, String> {
    let n: u32 = word.parse().map_err(|_| "not a number of CPUs")?;
    if (1..=MAX_SMP).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "the kernel supports only {MAX_SMP} CPU (it never starts a secondary core; \
             SMP is future work in docs/DESIGN.md)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn cmd(s: &str) -> Command {
        parse(s.split_whitespace())
            .unwrap_or_else(|e| panic!("`{s}`: {e}"))
            .command
            .expect("a command")
    }

    fn err(s: &str) -> clap::Error {
        match parse(s.split_whitespace()) {
            Ok(cli) => panic!("`{s}` parsed: {cli:?}"),
            Err(e) => e,
        }
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn the_cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn no_arguments_is_no_command() {
        assert_eq!(parse(Vec::<String>::new()).unwrap().command, None);
    }

    #[test]
    fn help_and_version_anywhere() {
        for s in [
            "--help",
            "-h",
            "help",
            "run --help",
            "bench -h",
            "help test",
            "list --help",
        ] {
            assert_eq!(err(s).kind(), ErrorKind::DisplayHelp, "{s}");
        }
        assert_eq!(err("--version").kind(), ErrorKind::DisplayVersion);
        let help = err("run --help").to_string();
        assert!(
            help.contains("main job") && help.contains("--bench-ms"),
            "{help}"
        );
        assert!(
            help.contains("--cpu <MODEL>") && help.contains("--gdb"),
            "{help}"
        );
        let help = err("bench --help").to_string();
        assert!(help.contains("--repeat <K>") && help.contains("--out <DIR>"));
    }

    #[test]
    fn bad_input_is_a_usage_error_with_status_2() {
        for s in [
            "frobnicate",
            "test --nope",
            "test --timeout 0",
            "test --timeout x",
            "test --repeat 0",
            "test --repeat",
            "build extra",
            "boot --timeout",
            "boot --kernel",
            "bench --ms 0",
            "bench --ms",
            "fuzz --iterations 0",
            "fuzz --iterations x",
            "fuzz --seed",
            "fuzz --seed -1",
            "fuzz --target",
            "fuzz --target smmu",
            "fuzz extra",
            "soak --minutes 0",
            "soak --minutes 1441",
            "test --cpu",
            "test --cpu=",
            "test --mem 64",
            "test --mem 2G",
            "test --smp 0",
            "list extra",
        ] {
            let e = err(s);
            assert_eq!(e.exit_code(), 2, "{s}: {e}");
        }
        let e = err("test --nope").to_string();
        assert!(e.starts_with("error: unexpected argument '--nope'"), "{e}");
        assert!(e.contains("--help"), "{e}");
    }

    #[test]
    fn device_commands_take_aarch64_and_refuse_x86_64_saying_why() {
        for sub in ["run", "bench", "demo"] {
            let arm = cmd(&format!("{sub} --arch aarch64"));
            let arch = match arm {
                Command::Run(o) => o.arch,
                Command::Bench(o) => o.arch,
                Command::Demo(o) => o.arch,
                other => panic!("{sub}: {other:?}"),
            };
            assert_eq!(arch, Some(Arch::Aarch64), "{sub}");
            let e = err(&format!("{sub} --arch x86_64"));
            assert_eq!(e.exit_code(), 2, "{sub}: {e}");
            let text = e.to_string();
            assert!(
                text.contains(&format!("`{sub} --arch x86_64` is not available yet"))
                    && text.contains("VT-d")
                    && text.contains("cargo xtask test --arch x86_64"),
                "{sub}: {text}"
            );
        }
        // The commands that run on x86_64 still take it.
        assert!(
            matches!(cmd("test --arch x86_64"), Command::Test(o) if o.arch == Some(Arch::X86_64))
        );
        assert!(
            matches!(cmd("boot --arch x86_64"), Command::Boot(o) if o.arch == Some(Arch::X86_64))
        );
        assert!(matches!(cmd("demo rogue-dma"), Command::Demo(o) if o.arch.is_none()));
    }

    #[test]
    fn smp_names_the_kernel_limit() {
        let e = err("boot --smp 2").to_string();
        assert!(e.contains("supports only 1 CPU"), "{e}");
        let Command::Boot(b) = cmd("boot --smp 1") else {
            panic!("not boot");
        };
        assert_eq!(b.machine.smp, Some(1));
    }

    #[test]
    fn run_is_the_main_job_and_boot_boots() {
        assert_eq!(cmd("run"), Command::Run(RunOptions::default()));
        let Command::Run(r) = cmd("run --el2 --cpu=cortex-a72 --bench-ms=50") else {
            panic!("not run");
        };
        assert!(r.machine.el2);
        assert_eq!(r.machine.cpu.as_deref(), Some("cortex-a72"));
        assert_eq!(r.bench_ms, Some(50));
        let Command::Boot(b) = cmd("boot --system systems/ipc.toml --timeout=5 -- -d int") else {
            panic!("not boot");
        };
        assert_eq!(b.system, Some(PathBuf::from("systems/ipc.toml")));
        assert_eq!(b.timeout, Some(5));
        assert_eq!(b.qemu_args, words("-d int"));
        assert_eq!(b.bootargs, "");
        let Command::Boot(b) = cmd("boot") else {
            panic!("not boot");
        };
        assert_eq!((b.system, b.timeout), (None, None));
    }

    #[test]
    fn test_takes_filters_and_flags_in_any_order() {
        assert_eq!(
            cmd("test --skip-host boot --timeout 3"),
            Command::Test(TestOptions {
                timeout_s: Some(3),
                skip_host: true,
                repeat: 1,
                filters: words("boot"),
                ..Default::default()
            })
        );
        let Command::Test(t) = cmd("test --el2 --repeat=40 --skip-host --echo a b --kernel k")
        else {
            panic!("not test");
        };
        assert!(t.machine.el2 && t.skip_host && t.echo);
        assert_eq!(t.repeat, 40);
        assert_eq!(t.filters, words("a b"));
        assert_eq!(t.kernel, Some(PathBuf::from("k")));
    }

    #[test]
    fn machine_options_on_every_booting_command() {
        for sub in ["run", "boot", "test", "bench", "fuzz", "soak", "demo"] {
            let c = cmd(&format!(
                "{sub} --qemu /q/usr/bin/qemu-system-aarch64 --cpu cortex-a72 --mem 1G --smp 1 --gdb --el2"
            ));
            let m = c.machine().expect("boots");
            assert_eq!(
                *m,
                MachineOptions {
                    qemu: Some(PathBuf::from("/q/usr/bin/qemu-system-aarch64")),
                    cpu: Some("cortex-a72".into()),
                    el2: true,
                    mem: Some(1024),
                    smp: Some(1),
                    gdb: true,
                },
                "{sub}"
            );
        }
        assert!(parse(words("build --cpu max")).is_err());
        let Command::Boot(b) = cmd("boot --mem 768M") else {
            panic!("not boot");
        };
        assert_eq!(b.machine.mem, Some(768));
    }

    #[test]
    fn fuzz_soak_bench_and_demo() {
        use crate::fuzz::{FuzzOptions, Target};
        let Command::Fuzz(f) = cmd("fuzz") else {
            panic!("not fuzz")
        };
        assert_eq!(f.options(), FuzzOptions::default());
        let Command::Fuzz(f) = cmd("fuzz --iterations 500 --seed 0 --target iommu") else {
            panic!("not fuzz")
        };
        assert_eq!(
            f.options(),
            FuzzOptions {
                iterations: 500,
                seed: 0,
                target: Target::Iommu
            }
        );
        let Command::Fuzz(f) = cmd("fuzz --target=kernel --seed 18446744073709551615") else {
            panic!("not fuzz")
        };
        assert_eq!((f.seed, f.options().target), (u64::MAX, Target::Kernel));
        let Command::Soak(s) = cmd("soak") else {
            panic!("not soak")
        };
        assert_eq!(s.options(), crate::soak::SoakOptions::default());
        let e = err("fuzz --target x").to_string();
        assert!(
            e.contains("possible values: kernel, iommu, block, all"),
            "{e}"
        );
        let Command::Bench(b) = cmd("bench --ms 20 --out /tmp/b --repeat 3") else {
            panic!("not bench")
        };
        assert_eq!(
            (b.ms, b.out, b.repeat),
            (Some(20), Some(PathBuf::from("/tmp/b")), Some(3))
        );
        // No --repeat: the bench decides (until its intervals are narrow).
        let Command::Bench(b) = cmd("bench") else {
            panic!("not bench")
        };
        assert_eq!(b.repeat, None);
        let Command::Bench(b) = cmd("bench --replot docs/bench") else {
            panic!("not bench")
        };
        assert_eq!(b.replot, Some(PathBuf::from("docs/bench")));
        assert!(parse(words("bench --replot d --repeat 3")).is_err());
        let Command::Demo(d) = cmd("demo rogue-dma") else {
            panic!("not demo")
        };
        assert_eq!(d.names, words("rogue-dma"));
        assert_eq!(cmd("list"), Command::List);
    }
}

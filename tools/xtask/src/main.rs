//! `cargo xtask`: the one host entry point that builds the bare-metal images,
//! boots them under QEMU and runs the test scenarios. It only drives other
//! programs (cargo, rustup, apt-get, qemu-system-aarch64); it never touches
//! the guest's sources.
#![forbid(unsafe_code)]

mod accel;
mod arch;
mod artifacts;
mod bench;
mod cli;
mod fuzz;
mod hostnet;
mod list;
mod netbench;
mod prereq;
mod projection_glue;
mod qemu;
mod scenario;
mod soak;
mod suite;
mod system;
mod testonly;

use std::process::ExitCode;

use cli::Command;

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os().skip(1)) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0; a usage error is
            // one line with a hint, status 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let Some(command) = cli.command else {
        use clap::CommandFactory;
        let _ = cli::Cli::command().print_help();
        return ExitCode::SUCCESS;
    };
    if let Some(machine) = command.machine() {
        qemu::select(qemu::Machine::from_options(machine));
    }
    match dispatch(command) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask run`: the main job. Boots the system and prints its
/// discovery report, runs the benchmark (short points; the report files go
/// to target/xtask/bench-report, `cargo xtask bench --out docs/bench`
/// publishes), then every isolation demo, narrated, then the network
/// dashboard (scenario `net-dashboard`, which prints where it came up).
/// Fails if any part does.
fn main_job(opts: &cli::RunOptions) -> Result<ExitCode, String> {
    println!("xtask: main job 1/4: boot and discovery report");
    let boot = suite::boot(
        &cli::BootOptions {
            timeout: Some(60),
            ..Default::default()
        },
        false,
    )?;
    println!("xtask: main job 2/4: benchmark (cargo xtask bench for the full-length run)");
    let ws = artifacts::Workspace::locate()?;
    let bench = bench::bench(&bench::BenchOptions {
        ms: Some(opts.bench_ms.unwrap_or(200)),
        out: Some(ws.scratch_dir("bench-report")),
        repeat: bench::Repeat::Fixed(1),
    })?;
    println!("xtask: main job 3/4: isolation demos");
    let demos = demo(&[])?;
    println!(
        "xtask: main job 4/4: the IOMMU dashboard over the network (cargo xtask dashboard to browse it)"
    );
    let dashboard = suite::test(&cli::TestOptions {
        skip_host: true,
        repeat: 1,
        filters: vec!["net-dashboard".to_owned()],
        ..Default::default()
    })?;
    let ok = [boot, bench, demos, dashboard]
        .iter()
        .all(|c| *c == ExitCode::SUCCESS);
    println!("xtask: main job {}", if ok { "PASSED" } else { "FAILED" });
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The isolation demos named `names` (empty: all), narrated live.
fn demo(names: &[String]) -> Result<ExitCode, String> {
    suite::test(&cli::TestOptions {
        skip_host: true,
        echo: true,
        repeat: 1,
        filters: if names.is_empty() {
            vec!["demo-".to_owned()]
        } else {
            names.iter().map(|n| format!("demo-{n}")).collect()
        },
        ..Default::default()
    })
}

/// Runs one subcommand. Add new subcommands here and in [`cli`].
fn dispatch(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Build(opts) => {
            let ws = artifacts::Workspace::locate()?;
            prereq::ensure_rust_target(&ws)?;
            let system = opts
                .system
                .as_deref()
                .map(|path| suite::load_system(&ws, path))
                .transpose()?;
            let packages = system.as_ref().map(system::System::packages);
            let images = artifacts::build(&ws, None, &packages.unwrap_or_default())?;
            println!("kernel: {}", images.kernel.display());
            if let (Some(system), Some(path)) = (&system, &opts.system) {
                let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                let out = ws.scratch_dir("build").join(&*stem).join("boot.img");
                let len = artifacts::write_boot_image(system, &images, &out)?;
                println!("boot image: {} ({len} bytes)", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(opts) => main_job(&opts),
        Command::Boot(opts) => suite::boot(&opts, true),
        Command::Test(opts) => suite::test(&opts),
        Command::Bench(opts) if opts.replot.is_some() => {
            let dir = opts.replot.unwrap_or_default();
            bench::replot(&dir, opts.out.as_deref().unwrap_or(&dir))
        }
        Command::Bench(opts) if opts.net.is_some() => {
            netbench::bench(opts.out, opts.net.unwrap_or(64), opts.repeat.unwrap_or(1))
        }
        Command::Bench(opts) => bench::bench(&bench::BenchOptions {
            ms: opts.ms,
            out: opts.out,
            repeat: opts
                .repeat
                .map_or(bench::Repeat::AUTO, bench::Repeat::Fixed),
        }),
        Command::Fuzz(opts) => fuzz::fuzz(&opts.options()),
        Command::Soak(opts) => soak::soak(&opts.options()),
        Command::Demo(opts) => demo(&opts.names),
        Command::Dashboard(opts) => suite::dashboard(&opts),
        Command::List => list::list(),
    }
}

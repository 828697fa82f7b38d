//! `cargo xtask`: the one host entry point that builds the bare-metal images,
//! boots them under QEMU and runs the test scenarios. It only drives other
//! programs (cargo, rustup, apt-get, qemu-system-aarch64); it never touches
//! the guest's sources.
#![forbid(unsafe_code)]

mod artifacts;
mod bench;
mod cli;
mod fuzz;
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::take_machine_options(&args).and_then(|(machine, rest)| {
        qemu::select(qemu::Machine::new(machine.qemu, machine.cpu));
        cli::parse(&rest)
    }) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("xtask: {message}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match dispatch(command) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask run` with no options: the main job. Boots the system and
/// prints its discovery report, runs the benchmark (short points; the
/// report files go to target/xtask/bench-report, `cargo xtask bench` writes
/// docs/bench), then every isolation demo, narrated. Fails if any part does.
fn main_job() -> Result<ExitCode, String> {
    println!("xtask: main job 1/3: boot and discovery report");
    let boot = suite::run(&cli::RunOptions {
        timeout_s: Some(60),
        ..Default::default()
    })?;
    println!("xtask: main job 2/3: benchmark (cargo xtask bench for the full-length run)");
    let ws = artifacts::Workspace::locate()?;
    let bench = bench::bench(&bench::BenchOptions {
        ms: Some(200),
        out: Some(ws.scratch_dir("bench-report")),
    })?;
    println!("xtask: main job 3/3: isolation demos");
    let demos = dispatch(Command::Demo(Vec::new()))?;
    let ok = [boot, bench, demos].iter().all(|c| *c == ExitCode::SUCCESS);
    println!("xtask: main job {}", if ok { "PASSED" } else { "FAILED" });
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs one subcommand. Add new subcommands here and in [`cli`].
fn dispatch(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Help => {
            println!("{}", cli::USAGE);
            Ok(ExitCode::SUCCESS)
        }
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
        Command::Run(opts) if opts == cli::RunOptions::default() => main_job(),
        Command::Run(opts) => suite::run(&opts),
        Command::Test(opts) => suite::test(&opts),
        Command::Bench(opts) => bench::bench(&opts),
        Command::Fuzz(opts) => fuzz::fuzz(&opts),
        Command::Soak(opts) => soak::soak(&opts),
        Command::Demo(names) => suite::test(&cli::TestOptions {
            skip_host: true,
            echo: true,
            filters: if names.is_empty() {
                vec!["demo-".to_owned()]
            } else {
                names.iter().map(|n| format!("demo-{n}")).collect()
            },
            ..Default::default()
        }),
    }
}

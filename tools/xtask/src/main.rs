//! `cargo xtask`: the one host entry point that builds the bare-metal images,
//! boots them under QEMU and runs the test scenarios. It only drives other
//! programs (cargo, rustup, apt-get, qemu-system-aarch64); it never touches
//! the guest's sources.
#![forbid(unsafe_code)]

mod artifacts;
mod cli;
mod prereq;
mod qemu;
mod scenario;
mod suite;

use std::process::ExitCode;

use cli::Command;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
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

/// Runs one subcommand. Add new subcommands here and in [`cli`].
fn dispatch(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Help => {
            println!("{}", cli::USAGE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Build => {
            let ws = artifacts::Workspace::locate()?;
            prereq::ensure_rust_target(&ws)?;
            let images = artifacts::build(&ws)?;
            println!("kernel: {}", images.kernel.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(opts) => suite::run(&opts),
        Command::Test(opts) => suite::test(&opts),
    }
}

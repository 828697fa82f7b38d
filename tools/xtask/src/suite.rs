//! The `boot` and `test` commands: booting once interactively, and running
//! the host tests plus every QEMU scenario with a PASS/FAIL report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::arch::Arch;
use crate::artifacts::{self, Images, Workspace};
use crate::cli::{BootOptions, DashboardOptions, TestOptions};
use crate::hostnet::{self, HostCheck};
use crate::prereq;
use crate::qemu::{self, QemuConfig, RunOutcome};
use crate::scenario::{self, Scenario};
use crate::system::{self, System};

/// `boot` without `--timeout` waits this long (about 136 years: never).
const NO_TIMEOUT: Duration = Duration::from_secs(u32::MAX as u64);
/// Exit status of `boot` when QEMU had to be killed (as timeout(1) does).
const TIMEOUT_EXIT: u8 = 124;
/// Lines of serial log shown for a failed scenario.
const FAILURE_LOG_LINES: usize = 200;

/// `cargo xtask boot`: build, boot with the console live, exit with QEMU's
/// status. `interactive`: our stdin goes to the guest and Ctrl-A X quits;
/// otherwise the console is only shown.
pub fn boot(opts: &BootOptions, interactive: bool) -> Result<ExitCode, String> {
    let ws = Workspace::locate()?;
    prereq::ensure_all(&ws)?;
    let arch = opts.arch.unwrap_or_default();
    if arch != Arch::Aarch64 {
        prereq::ensure_arch(&ws, arch)?;
    }
    let system = opts
        .system
        .as_deref()
        .map(|path| load_system(&ws, path))
        .transpose()?;
    let packages = system.as_ref().map(System::packages).unwrap_or_default();
    let kernel = opts.kernel.as_deref().map(prebuilt).transpose()?;
    let images = artifacts::build(&ws.for_arch(arch), kernel.as_deref(), &packages)?;
    let scratch = ws.scratch_dir("boot");
    let mut cfg = QemuConfig::new(&images.kernel, &scratch);
    cfg.arch = arch;
    cfg.bootargs = opts.bootargs.clone();
    cfg.extra_args = opts.qemu_args.clone();
    prepare(&mut cfg, &scratch, system.as_ref(), &images)?;
    if cfg.user_net {
        let port = hostnet::free_loopback_port()?;
        cfg.host_forward = Some(port);
        println!(
            "xtask: 127.0.0.1:{port} is forwarded to the guest's port {} (a dashboard there: {})",
            hostnet::GUEST_PORT,
            hostnet::url(port)
        );
    }
    let timeout = opts.timeout.map_or(NO_TIMEOUT, Duration::from_secs);
    let log = scratch.join("serial.log");
    let outcome = if interactive {
        println!(
            "xtask: quit with Ctrl-A X{}; serial log {}",
            opts.timeout
                .map_or(String::new(), |t| format!(" (QEMU is killed after {t} s)")),
            log.display()
        );
        qemu::run_interactive(&cfg, &log, timeout)?
    } else {
        qemu::run(&cfg, &log, timeout, true)?
    };
    eprint!("{}", outcome.qemu_stderr);
    println!();
    if outcome.timed_out {
        println!(
            "xtask: TIMEOUT after {} s; serial log in {}",
            timeout.as_secs(),
            log.display()
        );
        return Ok(ExitCode::from(TIMEOUT_EXIT));
    }
    match outcome.exit_code {
        Some(code) => {
            println!(
                "xtask: QEMU exited with status {code} after {:.1} s",
                secs(&outcome)
            );
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        None => {
            println!("xtask: QEMU was killed by a signal");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `cargo xtask test`: host tests, then every selected scenario, in order.
pub fn test(opts: &TestOptions) -> Result<ExitCode, String> {
    let started = std::time::Instant::now();
    let ws = Workspace::locate()?;
    prereq::ensure_all(&ws)?;

    let lint_ok = opts.skip_host || lint(&ws)?;
    let host_ok = opts.skip_host || host_tests(&ws)?;

    let scenarios: Vec<Scenario> = scenario::load_dir(&ws.root.join("scenarios"))?
        .into_iter()
        .filter(|s| opts.filters.is_empty() || opts.filters.iter().any(|f| s.name.contains(f)))
        .filter(|s| opts.arch.is_none_or(|a| s.arch == a))
        .collect();
    if scenarios.is_empty() {
        return Err(format!("no scenario matches {:?}", opts.filters));
    }
    for arch in Arch::ALL.into_iter().filter(|a| *a != Arch::Aarch64) {
        if scenarios.iter().any(|s| s.arch == arch) {
            prereq::ensure_arch(&ws, arch)?;
        }
    }
    // A scenario whose system is invalid or names a missing package fails
    // alone; the others still run.
    let systems: Vec<Result<Option<System>, String>> = scenarios
        .iter()
        .map(|s| {
            let Some(path) = &s.system else {
                return Ok(None);
            };
            let system = system::load(&ws.root.join(path))?;
            artifacts::check_tasks(&ws, &system)?;
            Ok(Some(system))
        })
        .collect();
    let mut packages: Vec<String> = Vec::new();
    for system in systems.iter().flatten().flatten() {
        for package in system.packages() {
            if !packages.contains(&package) {
                packages.push(package);
            }
        }
    }

    let (mut passed, mut failed) = (0usize, 0usize);
    // Every failure by name, with where to look.
    let mut failures: Vec<String> = Vec::new();
    let rounds = opts.repeat.max(1);
    let total = scenarios.len() * usize::try_from(rounds).unwrap_or(usize::MAX);
    let mut index = 0usize;
    // Scenario name -> rounds it failed in, with the kept log of each.
    let mut flaky: Vec<(String, Vec<(u64, String)>)> = Vec::new();
    if rounds > 1 {
        let _ = std::fs::remove_dir_all(ws.scratch_dir("repeat"));
    }
    let images = opts
        .kernel
        .as_deref()
        .map(prebuilt)
        .transpose()
        .and_then(|kernel| artifacts::build(&ws, kernel.as_deref(), &packages));
    match images {
        Err(e) => {
            println!("xtask: {e}");
            for s in &scenarios {
                println!("FAIL {}: guest build failed", s.name);
                failures.push(format!("{}: guest build failed (output above)", s.name));
            }
            failed = scenarios.len();
        }
        Ok(images) => {
            // Test-only variants (e.g. a protection switched off to show
            // that the demo would see the breach), built once per feature
            // set and package set.
            type VariantKey = (Vec<String>, Vec<String>);
            let mut variants: std::collections::BTreeMap<VariantKey, Result<Images, String>> =
                std::collections::BTreeMap::new();
            for round in 1..=rounds {
                if rounds > 1 {
                    println!(
                        "xtask: round {round}/{rounds} ({:.0} s so far)",
                        started.elapsed().as_secs_f64()
                    );
                }
                for (s, system) in scenarios.iter().zip(&systems) {
                    let s = Scenario {
                        timeout: opts.timeout_s.map_or(s.timeout, Duration::from_secs),
                        ..s.clone()
                    };
                    index += 1;
                    println!(
                        "[{index}/{total}] {} (timeout {} s)",
                        s.name,
                        s.timeout.as_secs()
                    );
                    let system = match system {
                        Ok(system) => system.as_ref(),
                        Err(e) => {
                            println!("FAIL {}: {e}", s.name);
                            failures.push(format!("{}: {e}", s.name));
                            failed += 1;
                            continue;
                        }
                    };
                    // Other architectures build their own, variants
                    // included (`images_for`).
                    let images = if s.features.is_empty() || s.arch != Arch::Aarch64 {
                        &images
                    } else {
                        let packages = system.map(System::packages).unwrap_or_default();
                        let built = variants
                            .entry((s.features.clone(), packages.clone()))
                            .or_insert_with(|| {
                                artifacts::build(&ws.variant(&s.features), None, &packages)
                            });
                        match built {
                            Ok(i) => &*i,
                            Err(e) => {
                                println!("FAIL {}: variant build failed: {e}", s.name);
                                failures.push(format!("{}: variant build failed", s.name));
                                failed += 1;
                                continue;
                            }
                        }
                    };
                    if run_scenario(&ws, images, &s, system, opts.echo)? {
                        passed += 1;
                        continue;
                    }
                    failed += 1;
                    let log = ws.scratch_dir(&s.name).join("serial.log");
                    failures.push(format!("{}: log {}", s.name, log.display()));
                    if rounds > 1 {
                        let kept = keep_failed_log(&ws, &s.name, round);
                        if let Some(last) = failures.last_mut() {
                            *last = format!("{} (round {round}): log {kept}", s.name);
                        }
                        match flaky.iter_mut().find(|(n, _)| *n == s.name) {
                            Some((_, v)) => v.push((round, kept)),
                            None => flaky.push((s.name.clone(), vec![(round, kept)])),
                        }
                    }
                }
            }
        }
    }
    if rounds > 1 {
        println!(
            "xtask: {rounds} rounds of {} scenarios in {:.0} s; {} failed at least once",
            scenarios.len(),
            started.elapsed().as_secs_f64(),
            flaky.len()
        );
        for (name, fails) in &flaky {
            println!("FLAKY {name}: failed {} of {rounds} rounds", fails.len());
            for (round, log) in fails {
                println!("  round {round}: {log}");
            }
        }
    }

    // The host test run counts as one item of the summary, so a failing
    // `cargo test` can never hide behind passing scenarios.
    if !opts.skip_host {
        if lint_ok {
            println!(
                "PASS lint (cargo fmt --check, cargo clippy -D warnings on host and guest crates)"
            );
            passed += 1;
        } else {
            println!("FAIL lint (see the cargo fmt / cargo clippy output above)");
            failures.push("lint: cargo fmt / cargo clippy output above".into());
            failed += 1;
        }
        if host_ok {
            println!("PASS host tests (cargo test --workspace)");
            passed += 1;
        } else {
            println!("FAIL host tests (see the `cargo test` output above)");
            failures.push("host tests: cargo test output above".into());
            failed += 1;
        }
    }
    println!(
        "{passed} passed, {failed} failed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    for f in &failures {
        println!("  FAILED {f}");
    }
    Ok(if host_ok && lint_ok && failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Copies a failed scenario's serial log to
/// `target/xtask/repeat/<name>-round<k>.log`, so the next round's fresh
/// scratch directory does not erase it.
fn keep_failed_log(ws: &Workspace, name: &str, round: u64) -> String {
    let dir = ws.scratch_dir("repeat");
    let kept = dir.join(format!("{name}-round{round}.log"));
    let log = ws.scratch_dir(name).join("serial.log");
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::copy(&log, &kept)) {
        Ok(_) => kept.display().to_string(),
        // A scenario that failed before QEMU ran has no serial log.
        Err(e) => format!("no serial log kept ({}: {e})", log.display()),
    }
}

/// `cargo fmt --check` on the workspace, then `cargo clippy -D warnings` on
/// the host crates (all targets: tests, benches), on the guest crates for
/// the bare-metal aarch64 target, and on the kernel for x86_64. True if all
/// four are clean.
fn lint(ws: &Workspace) -> Result<bool, String> {
    let mut fmt = ws.cargo();
    fmt.args(["fmt", "--all", "--check"]);
    let mut host = ws.cargo();
    host.args(["clippy", "--workspace", "--all-targets"]);
    for package in ws.guest_packages() {
        host.args(["--exclude", package]);
    }
    host.args(["--", "-D", "warnings"]);
    let mut guest = ws.cargo();
    guest.args(["clippy", "--release", "--target", artifacts::GUEST_TARGET]);
    for package in ws.guest_packages() {
        guest.args(["-p", package]);
    }
    guest.args(["--", "-D", "warnings"]);
    // The x86_64 kernel: clean but for code only the parts of the port not
    // built yet will use (MMIO device helpers for PCI and the IOAPIC), which
    // is dead on x86_64 until then.
    let mut x86 = ws.cargo();
    x86.args([
        "clippy",
        "--release",
        "--target",
        Arch::X86_64.target(),
        "-p",
        artifacts::KERNEL_PACKAGE,
        "--",
        "-D",
        "warnings",
        "-A",
        "dead_code",
    ]);
    let mut ok = true;
    for (what, mut cmd) in [
        ("cargo fmt --all --check", fmt),
        ("cargo clippy (host crates)", host),
        ("cargo clippy (guest crates)", guest),
        ("cargo clippy (x86_64 kernel)", x86),
    ] {
        println!("xtask: lint: {what}");
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run {what}: {e}"))?;
        ok &= status.success();
    }
    Ok(ok)
}

/// `cargo test` on every host crate. The guest packages (members outside the
/// root `default-members`) are excluded by name: `--workspace` would
/// otherwise build them for the host, where a `no_main` bare-metal binary
/// cannot link.
fn host_tests(ws: &Workspace) -> Result<bool, String> {
    let mut cmd = ws.cargo();
    cmd.args(["test", "--workspace"]);
    for package in ws.guest_packages() {
        cmd.args(["--exclude", package]);
    }
    println!("xtask: host tests (cargo test --workspace)");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    Ok(status.success())
}

/// Reads a system file named on the command line: relative to the current
/// directory, or else to the workspace root.
pub fn load_system(ws: &Workspace, path: &Path) -> Result<System, String> {
    let path = if path.is_relative() && !path.exists() {
        ws.root.join(path)
    } else {
        path.to_path_buf()
    };
    let system = system::load(&path)?;
    artifacts::check_tasks(ws, &system)?;
    Ok(system)
}

/// Fresh scratch disks, and the system's boot image in `scratch/boot.img`
/// (loaded by QEMU and announced in the bootargs) when there is a system.
fn prepare(
    cfg: &mut QemuConfig,
    scratch: &Path,
    system: Option<&System>,
    images: &Images,
) -> Result<(), String> {
    qemu::prepare_scratch(scratch, cfg)?;
    if let Some(system) = system {
        cfg.user_net = system.network == Some(system::Network::User);
        let image = scratch.join("boot.img");
        let len = artifacts::write_boot_image(system, images, &image)?;
        cfg.check_boot_image_fits(len)?;
        cfg.boot_image = Some(image);
    }
    Ok(())
}

/// The kernel and `system`'s tasks built for `arch` (not aarch64, whose
/// images the caller builds for the whole run) with the scenario's
/// test-only `features` (a variant, as on aarch64), built once per
/// feature set and set of packages per run of xtask.
fn images_for(
    ws: &Workspace,
    arch: Arch,
    features: &[String],
    system: Option<&System>,
) -> Result<Images, String> {
    type Key = (Arch, Vec<String>, Vec<String>);
    static BUILT: std::sync::Mutex<Vec<(Key, Result<Images, String>)>> =
        std::sync::Mutex::new(Vec::new());
    let packages = system.map(System::packages).unwrap_or_default();
    let key = (arch, features.to_vec(), packages);
    let mut built = BUILT.lock().map_err(|_| "build cache poisoned")?;
    if let Some((_, r)) = built.iter().find(|(k, _)| *k == key) {
        return r.clone();
    }
    let r = artifacts::build(&ws.variant(features).for_arch(arch), None, &key.2);
    built.push((key, r.clone()));
    r
}

/// Boots one scenario and prints its verdict; true on PASS.
pub fn run_scenario(
    ws: &Workspace,
    images: &Images,
    s: &Scenario,
    system: Option<&System>,
    echo: bool,
) -> Result<bool, String> {
    let scratch = ws.scratch_dir(&s.name);
    let own;
    let images = match s.arch {
        Arch::Aarch64 => images,
        other => match images_for(ws, other, &s.features, system) {
            Ok(i) => {
                own = i;
                &own
            }
            Err(e) => {
                println!("FAIL {}: {other} build failed: {e}", s.name);
                return Ok(false);
            }
        },
    };
    let mut cfg = QemuConfig::new(&images.kernel, &scratch);
    cfg.arch = s.arch;
    cfg.bootargs = s.bootargs.clone();
    cfg.el2 = s.el2;
    cfg.extra_args = s.qemu_args.clone();
    if let Err(e) = prepare(&mut cfg, &scratch, system, images) {
        println!("FAIL {}: {e}", s.name);
        return Ok(false);
    }
    let log = scratch.join("serial.log");
    let (outcome, host) = match &s.host {
        None => (qemu::run(&cfg, &log, s.timeout, echo)?, None),
        Some(step) => {
            if !cfg.user_net {
                println!(
                    "FAIL {}: a host check needs a system with network = \"user\"",
                    s.name
                );
                return Ok(false);
            }
            let port = hostnet::free_loopback_port()?;
            cfg.host_forward = Some(port);
            let (check, driver, name) = (step.check, step.driver.clone(), s.name.clone());
            let (outcome, result) = qemu::run_with_host(
                &cfg,
                &log,
                s.timeout,
                echo,
                step.ready.clone(),
                move |line| {
                    let what = match check {
                        HostCheck::NetBench => "net-bench",
                        HostCheck::Dashboard | HostCheck::BadInput => "dashboard",
                    };
                    println!(
                        "      {name}: {what} up at {} (`{}`)",
                        hostnet::url(port),
                        line.trim()
                    );
                },
                move || check.run(hostnet::loopback(port), &driver),
            )?;
            (outcome, Some((step.ready.as_str().to_owned(), result)))
        }
    };
    let mut problems = scenario::judge(s, &outcome);
    match host {
        None => {}
        Some((ready, None)) => problems.push(format!(
            "no line matched `{ready}`: the host checks never started"
        )),
        Some((_, Some(Err(e)))) => problems.push(format!("host check: {e}")),
        Some((_, Some(Ok(notes)))) => {
            for note in notes {
                println!("      host: {note}");
            }
        }
    }
    for (seed, image) in [
        (s.disk_check.nvme, &cfg.nvme_image),
        (s.disk_check.vblk, &cfg.vblk_image),
    ] {
        if let Some(seed) = seed
            && let Err(e) = scenario::check_disk(image, seed)
        {
            problems.push(format!("disk image check: {e}"));
        }
    }
    if problems.is_empty() {
        println!("PASS {} ({:.1} s)", s.name, secs(&outcome));
        return Ok(true);
    }
    println!("FAIL {}: {}", s.name, problems.join("; "));
    let lines: Vec<&str> = outcome.serial.lines().collect();
    let shown = &lines[lines.len().saturating_sub(FAILURE_LOG_LINES)..];
    println!(
        "---- serial log of {} (last {} of {} lines; full log {}) ----",
        s.name,
        shown.len(),
        lines.len(),
        log.display()
    );
    for line in shown {
        println!("{line}");
    }
    if !outcome.qemu_stderr.trim().is_empty() {
        println!("---- QEMU stderr ----\n{}", outcome.qemu_stderr.trim_end());
    }
    println!("---- end of {} ----", s.name);
    Ok(false)
}

/// A kernel ELF given with `--kernel`, made absolute.
fn prebuilt(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path)
        .ok()
        .filter(|p| p.is_file())
        .ok_or_else(|| format!("--kernel: {} is not a file", path.display()))
}

fn secs(outcome: &RunOutcome) -> f64 {
    outcome.duration.as_secs_f64()
}

/// `cargo xtask dashboard`: boots `systems/net.toml` (or `--system`)
/// with a free port of 127.0.0.1 forwarded to the guest's port 80, prints
/// the URL once the dashboard says it listens, and runs until Ctrl-C at a
/// terminal, or until the timeout elsewhere.
pub fn dashboard(opts: &DashboardOptions) -> Result<ExitCode, String> {
    use std::io::IsTerminal;
    let ws = Workspace::locate()?;
    prereq::ensure_all(&ws)?;
    let path = opts
        .system
        .clone()
        .unwrap_or_else(|| PathBuf::from("systems/net.toml"));
    let system = load_system(&ws, &path)?;
    if system.network.is_none() {
        return Err(format!(
            "{}: no network = \"user\": the dashboard cannot be reached",
            path.display()
        ));
    }
    let images = artifacts::build(&ws, None, &system.packages())?;
    let scratch = ws.scratch_dir("dashboard");
    let mut cfg = QemuConfig::new(&images.kernel, &scratch);
    prepare(&mut cfg, &scratch, Some(&system), &images)?;
    let port = hostnet::free_loopback_port()?;
    cfg.host_forward = Some(port);
    let interactive = std::io::stdin().is_terminal();
    let timeout = match (opts.timeout, interactive) {
        (Some(t), _) => Duration::from_secs(t),
        (None, true) => NO_TIMEOUT,
        (None, false) => Duration::from_secs(DASHBOARD_TIMEOUT_S),
    };
    let log = scratch.join("serial.log");
    let url = hostnet::url(port);
    println!(
        "xtask: booting {}; the dashboard will be at {url} (127.0.0.1 only); {}",
        path.display(),
        if interactive {
            "quit with Ctrl-C or Ctrl-A X".to_owned()
        } else {
            format!("QEMU is killed after {} s", timeout.as_secs())
        }
    );
    // QEMU's raw mode on a terminal keeps output processing (OPOST), so
    // a plain newline ends a line everywhere.
    let watch = qemu::Watch::Lines(Box::new(move |line: &str| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let line = line.trim_end_matches('\r');
        let _ = writeln!(out, "{line}");
        if line.contains(hostnet::READY_LINE) {
            let _ = writeln!(out, "dashboard: {url}");
        }
        let _ = out.flush();
    }));
    let outcome = if interactive {
        qemu::run_interactive_watched(&cfg, &log, timeout, watch)?
    } else {
        qemu::run_watched(&cfg, &log, timeout, watch)?
    };
    eprint!("{}", outcome.qemu_stderr);
    if outcome.timed_out {
        println!(
            "xtask: dashboard run ended after {} s; serial log {}",
            timeout.as_secs(),
            log.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "xtask: QEMU exited with status {:?}; serial log {}",
        outcome.exit_code,
        log.display()
    );
    Ok(match outcome.exit_code {
        Some(0) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

/// `cargo xtask dashboard` away from a terminal stops after this long.
const DASHBOARD_TIMEOUT_S: u64 = 300;

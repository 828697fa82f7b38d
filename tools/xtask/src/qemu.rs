//! The QEMU side: the one function that builds the command line
//! ([`command_line`]), the scratch disk images, and running QEMU as a child
//! with its serial console captured and a hard timeout.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use std::sync::OnceLock;

use crate::arch::Arch;
use crate::hostnet;
use crate::prereq::QEMU;

/// Which emulator every boot of this xtask process uses, and with which CPU
/// model: chosen once, at start, from `--qemu`/`--cpu` or the environment
/// (`QEMU`, `QEMU_CPU`), else `qemu-system-aarch64` on PATH and `-cpu max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The QEMU binary.
    pub binary: PathBuf,
    /// The `-cpu` model.
    pub cpu: String,
    /// The firmware/ROM directory of a QEMU unpacked from a Debian package
    /// (`dpkg -x DIR`): `DIR/usr/share/qemu` beside `DIR/usr/bin/`. Such a
    /// QEMU gets `-L` and `-audio none`, since the host's audio modules do
    /// not match its build.
    pub data_dir: Option<PathBuf>,
    /// Whether to pass `-audio none` (with [`data_dir`](Self::data_dir)):
    /// QEMU 8 and later take it; 7.2 wants `-audio driver,model=...` and
    /// starts no audio backend without a sound device anyway.
    pub audio_none: bool,
    /// Every boot enters at EL2 (`--el2`), whatever the scenario says.
    pub el2: bool,
    /// Guest RAM, in MiB (`--mem`).
    pub mem_mib: u32,
    /// CPUs (`--smp`; the kernel runs on one).
    pub smp: u32,
    /// Start halted with a gdb stub on [`GDB_PORT`] (`--gdb`: `-s -S`).
    pub gdb: bool,
}

/// The major version `binary --version` reports (`None` if it does not
/// run or says something else).
fn major_version(binary: &Path, data_dir: Option<&Path>) -> Option<u32> {
    let mut cmd = Command::new(binary);
    if let Some(dir) = data_dir {
        cmd.arg("-L").arg(dir);
    }
    let out = cmd.arg("--version").stderr(Stdio::null()).output().ok()?;
    parse_major(&String::from_utf8_lossy(&out.stdout))
}

/// `QEMU emulator version 7.2.22 (...)` → 7.
fn parse_major(version: &str) -> Option<u32> {
    let rest = version.split("version ").nth(1)?;
    rest.split('.').next()?.trim().parse().ok()
}

/// The port of QEMU's gdb stub (`-s`).
pub const GDB_PORT: u16 = 1234;
/// Guest RAM unless `--mem` says otherwise.
pub const DEFAULT_MEM_MIB: u32 = 512;

impl Machine {
    /// The machine for `qemu` and `cpu` (each falling back to the
    /// environment, then to the defaults).
    pub fn new(qemu: Option<PathBuf>, cpu: Option<String>) -> Self {
        let binary = qemu
            .or_else(|| std::env::var_os("QEMU").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(QEMU));
        let cpu = cpu
            .or_else(|| std::env::var("QEMU_CPU").ok())
            .unwrap_or_else(|| "max".to_owned());
        let data_dir = binary
            .parent()
            .filter(|bin| bin.ends_with("usr/bin"))
            .and_then(|bin| bin.parent())
            .map(|usr| usr.join("share/qemu"))
            .filter(|d| {
                binary.is_absolute() && d.join("keymaps").is_dir() && !d.starts_with("/usr")
            });
        let audio_none = data_dir.is_some()
            && major_version(&binary, data_dir.as_deref()).is_none_or(|major| major >= 8);
        Self {
            binary,
            cpu,
            data_dir,
            audio_none,
            el2: false,
            mem_mib: DEFAULT_MEM_MIB,
            smp: 1,
            gdb: false,
        }
    }

    /// The machine the command-line options ask for.
    pub fn from_options(o: &crate::cli::MachineOptions) -> Self {
        Self {
            el2: o.el2,
            mem_mib: o.mem.unwrap_or(DEFAULT_MEM_MIB),
            smp: o.smp.unwrap_or(1),
            gdb: o.gdb,
            ..Self::new(o.qemu.clone(), o.cpu.clone())
        }
    }

    /// The command that attaches gdb to a guest started with `--gdb`.
    pub fn gdb_command(kernel: &Path) -> String {
        format!(
            "gdb-multiarch -q {} -ex 'target remote localhost:{GDB_PORT}'",
            kernel.display()
        )
    }

    /// Whether this is the default QEMU on PATH (which xtask may install).
    pub fn is_default(&self) -> bool {
        self.binary == Path::new(QEMU)
    }
}

static MACHINE: OnceLock<Machine> = OnceLock::new();

/// Chooses the machine for this process; the first choice stands.
pub fn select(machine: Machine) {
    let _ = MACHINE.set(machine);
}

/// The machine chosen with [`select`], or the default one.
pub fn machine() -> &'static Machine {
    MACHINE.get_or_init(|| Machine::new(None, None))
}

/// A run whose console is not echoed says it is still running this often.
const NOTICE_EVERY: Duration = Duration::from_secs(30);

/// Size of each scratch disk image (sparse).
pub const DISK_SIZE: u64 = 64 << 20;

/// Guest-physical address where QEMU's generic loader puts the boot image,
/// 128 MiB into RAM: above the kernel, its heap and the DTB. The kernel
/// learns it from the bootargs (`bootimage=`), so it is written here only.
pub const BOOT_IMAGE_ADDR: u64 = 0x4800_0000;

/// Start of RAM on QEMU `virt`.
const RAM_BASE: u64 = 0x4000_0000;

/// What differs from one boot to the next; everything else is fixed by the
/// platform (see docs/PLATFORM.md).
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// The kernel ELF, loaded by QEMU with `-kernel`.
    pub kernel: PathBuf,
    /// The kernel command line (`/chosen/bootargs`).
    pub bootargs: String,
    /// Guest RAM, in MiB.
    pub memory_mib: u32,
    /// Raw image behind the NVMe controller (00:01.0, StreamID 0x8).
    pub nvme_image: PathBuf,
    /// Raw image behind virtio-blk (00:02.0, StreamID 0x10).
    pub vblk_image: PathBuf,
    /// Enter at EL2 (`virtualization=on`).
    pub el2: bool,
    /// A boot image (`bootimage` crate format) to load at
    /// [`BOOT_IMAGE_ADDR`]; the bootargs then begin with
    /// `bootimage=<addr>`.
    pub boot_image: Option<PathBuf>,
    /// Extra arguments appended after the fixed devices, so the fixed devices
    /// keep their PCI addresses and StreamIDs.
    pub extra_args: Vec<String>,
    /// A virtio-net NIC on restricted user networking ([`user_netdev`]),
    /// placed after the fixed devices: PCI 00:04.0 (StreamID 0x20).
    pub user_net: bool,
    /// With [`user_net`](Self::user_net): forward this port of 127.0.0.1
    /// (never another address) to the guest's dashboard port
    /// ([`hostnet::hostfwd`]).
    pub host_forward: Option<u16>,
    /// A person at the console: the serial port shares stdio with QEMU's
    /// monitor (`mon:stdio`), so Ctrl-A X quits and Ctrl-A C opens the monitor.
    pub interactive: bool,
    /// The guest architecture: which QEMU and machine.
    pub arch: Arch,
}

impl QemuConfig {
    /// The standard machine for `kernel` with both disks in `scratch`.
    pub fn new(kernel: &Path, scratch: &Path) -> Self {
        Self {
            kernel: kernel.to_path_buf(),
            bootargs: String::new(),
            memory_mib: machine().mem_mib,
            nvme_image: scratch.join("nvme.img"),
            vblk_image: scratch.join("vblk.img"),
            el2: false,
            boot_image: None,
            extra_args: Vec::new(),
            user_net: false,
            host_forward: None,
            interactive: false,
            arch: Arch::Aarch64,
        }
    }

    /// The kernel command line: `bootimage=<addr>` first when there is a
    /// boot image, then [`bootargs`](Self::bootargs).
    pub fn kernel_command_line(&self) -> String {
        let addr = self.arch.boot_image_addr();
        match &self.boot_image {
            None => self.bootargs.clone(),
            Some(_) if self.bootargs.is_empty() => format!("bootimage={addr:#x}"),
            Some(_) => format!("bootimage={addr:#x} {}", self.bootargs),
        }
    }

    /// Refuses a boot image of `len` bytes that would run past the end of
    /// RAM from [`BOOT_IMAGE_ADDR`].
    pub fn check_boot_image_fits(&self, len: usize) -> Result<(), String> {
        let addr = self.arch.boot_image_addr();
        let ram_base = match self.arch {
            Arch::Aarch64 => RAM_BASE,
            Arch::X86_64 => 0,
        };
        let room = ram_base + (u64::from(self.memory_mib) << 20) - addr;
        if u64::try_from(len).is_ok_and(|len| len <= room) {
            Ok(())
        } else {
            Err(format!(
                "boot image of {len} bytes does not fit in the {room} bytes of RAM \
                 above {addr:#x}"
            ))
        }
    }
}

/// The id of the NIC's backend.
pub const NETDEV_ID: &str = "net0";

/// The `-netdev` options of the NIC's backend, in one place: QEMU's user
/// networking (slirp) with `restrict=on`, so the guest reaches only
/// slirp's own hosts (gateway 10.0.2.2, DNS 10.0.2.3; the guest is
/// 10.0.2.15) and never any other network. A host forward added here must
/// bind 127.0.0.1 only: `host_forward` is a port of 127.0.0.1 forwarded to
/// the guest's dashboard ([`hostnet::hostfwd`]).
pub fn user_netdev(host_forward: Option<u16>) -> String {
    match host_forward {
        None => format!("user,id={NETDEV_ID},restrict=on"),
        Some(port) => format!("user,id={NETDEV_ID},restrict=on,{}", hostnet::hostfwd(port)),
    }
}

/// The NIC itself: modern virtio-net only, its DMA translated by the SMMU
/// (the driver must negotiate VIRTIO_F_ACCESS_PLATFORM). `romfile=` leaves
/// out the iPXE option ROM: nothing here boots from the network, and
/// without the `ipxe-qemu` package QEMU would refuse to start.
fn nic_device() -> String {
    format!("virtio-net-pci,netdev={NETDEV_ID},disable-legacy=on,iommu_platform=on,romfile=")
}

/// The full QEMU argument list (without the program name) for `cfg`.
///
/// Device order fixes PCI addresses: NVMe 00:01.0 (SID 0x8), virtio-blk
/// 00:02.0 (SID 0x10), edu 00:03.0 (SID 0x18), then with
/// [`QemuConfig::user_net`] virtio-net 00:04.0 (SID 0x20). `-nic none`
/// removes the default virtio-net that would otherwise take 00:01.0.
pub fn command_line(cfg: &QemuConfig) -> Vec<String> {
    command_line_for(machine(), cfg)
}

/// [`command_line`] on a given [`Machine`].
pub fn command_line_for(m: &Machine, cfg: &QemuConfig) -> Vec<String> {
    if cfg.arch == Arch::X86_64 {
        return command_line_x86(m, cfg);
    }
    let mut machine = String::from("virt,iommu=smmuv3,gic-version=3");
    if cfg.el2 || m.el2 {
        machine.push_str(",virtualization=on");
    }
    let mut args: Vec<String> = vec![
        "-machine".into(),
        machine,
        "-cpu".into(),
        m.cpu.clone(),
        "-m".into(),
        format!("{}M", cfg.memory_mib),
        "-smp".into(),
        m.smp.to_string(),
        "-nic".into(),
        "none".into(),
        "-nographic".into(),
    ];
    args.extend(console_args(cfg));
    args.extend([
        "-no-reboot".into(),
        "-semihosting-config".into(),
        "enable=on,target=native".into(),
        "-kernel".into(),
        cfg.kernel.display().to_string(),
        "-append".into(),
        cfg.kernel_command_line(),
    ]);
    if let Some(dir) = &m.data_dir {
        args.extend(["-L".into(), dir.display().to_string()]);
        if m.audio_none {
            args.extend(["-audio".into(), "none".into()]);
        }
    }
    if m.gdb {
        args.extend(["-s".into(), "-S".into()]);
    }
    if let Some(image) = &cfg.boot_image {
        args.push("-device".into());
        args.push(format!(
            "loader,file={},addr={BOOT_IMAGE_ADDR:#x},force-raw=on",
            image.display()
        ));
    }
    let devices = [
        format!(
            "file={},if=none,id=nvm,format=raw",
            cfg.nvme_image.display()
        ),
        "nvme,serial=iommu-nvme0,drive=nvm".to_owned(),
        format!(
            "file={},if=none,id=vblk,format=raw",
            cfg.vblk_image.display()
        ),
        "virtio-blk-pci,drive=vblk,iommu_platform=on,disable-legacy=on".to_owned(),
        "edu".to_owned(),
    ];
    for dev in devices {
        let flag = if dev.starts_with("file=") {
            "-drive"
        } else {
            "-device"
        };
        args.push(flag.into());
        args.push(dev);
    }
    if cfg.user_net {
        args.extend([
            "-netdev".into(),
            user_netdev(cfg.host_forward),
            "-device".into(),
            nic_device(),
        ]);
    }
    args.extend(cfg.extra_args.iter().cloned());
    args
}

/// The x86_64 machine: `q35` under KVM where the host can
/// ([`crate::accel::x86_64`]) and TCG otherwise, `-cpu max`, the kernel loaded
/// through its PVH note, COM1 on the serial console, and `isa-debug-exit`
/// so the kernel's status reaches QEMU's ([`Arch::kernel_status`]). The
/// boot image, if any, placed by the generic loader like on aarch64 and
/// named on the command line (in the PVH start info); NVMe, virtio-blk and
/// edu at 00:01.0, 00:02.0, 00:03.0 as on aarch64 (no VGA).
/// The serial console on stdio: with QEMU's monitor multiplexed on it when
/// a person is at the terminal, without a monitor otherwise.
fn console_args(cfg: &QemuConfig) -> Vec<String> {
    let args: &[&str] = if cfg.interactive {
        &["-serial", "mon:stdio"]
    } else {
        &["-monitor", "none", "-serial", "stdio"]
    };
    args.iter().map(|a| (*a).to_owned()).collect()
}

fn command_line_x86(m: &Machine, cfg: &QemuConfig) -> Vec<String> {
    let accel = crate::accel::x86_64().name();
    let mut args: Vec<String> = ["-machine", "q35", "-accel", accel, "-cpu", "max", "-m"]
        .map(String::from)
        .to_vec();
    args.push(format!("{}M", cfg.memory_mib));
    args.extend(["-smp".into(), m.smp.to_string()]);
    args.extend(["-nic", "none", "-vga", "none", "-nographic", "-no-reboot"].map(String::from));
    args.extend(console_args(cfg));
    args.extend([
        "-device".into(),
        "isa-debug-exit,iobase=0xf4,iosize=0x04".into(),
        "-kernel".into(),
        cfg.kernel.display().to_string(),
        "-append".into(),
        cfg.kernel_command_line(),
    ]);
    if let Some(image) = &cfg.boot_image {
        args.push("-device".into());
        args.push(format!(
            "loader,file={},addr={:#x},force-raw=on",
            image.display(),
            Arch::X86_64.boot_image_addr()
        ));
    }
    // The same devices at the same PCI addresses as on aarch64 (system
    // descriptions name them by address); no IOMMU yet.
    args.extend([
        "-drive".into(),
        format!(
            "file={},if=none,id=nvm,format=raw",
            cfg.nvme_image.display()
        ),
        "-device".into(),
        "nvme,serial=iommu-nvme0,drive=nvm,addr=01.0".into(),
        "-drive".into(),
        format!(
            "file={},if=none,id=vblk,format=raw",
            cfg.vblk_image.display()
        ),
        "-device".into(),
        "virtio-blk-pci,drive=vblk,iommu_platform=on,disable-legacy=on,addr=02.0".into(),
        "-device".into(),
        "edu,addr=03.0".into(),
    ]);
    if m.gdb {
        args.extend(["-s".into(), "-S".into()]);
    }
    args.extend(cfg.extra_args.iter().cloned());
    args
}

/// Empties `scratch` and creates fresh sparse disk images for `cfg` in it.
pub fn prepare_scratch(scratch: &Path, cfg: &QemuConfig) -> Result<(), String> {
    if scratch.exists() {
        fs::remove_dir_all(scratch)
            .map_err(|e| format!("cannot clear {}: {e}", scratch.display()))?;
    }
    fs::create_dir_all(scratch).map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    for image in [&cfg.nvme_image, &cfg.vblk_image] {
        File::create(image)
            .and_then(|f| f.set_len(DISK_SIZE))
            .map_err(|e| format!("cannot create disk image {}: {e}", image.display()))?;
    }
    Ok(())
}

/// How a QEMU run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// QEMU's exit status; `None` if it was killed (timeout or signal).
    pub exit_code: Option<i32>,
    /// QEMU was killed by the timeout.
    pub timed_out: bool,
    /// QEMU was ended by the host once its checks were done
    /// ([`run_with_host`]): not a failure by itself.
    pub stopped: bool,
    /// Everything the guest wrote to its serial console.
    pub serial: String,
    /// What QEMU itself wrote to stderr (start-up errors and warnings).
    pub qemu_stderr: String,
    /// Wall-clock time from spawn to exit.
    pub duration: Duration,
}

/// What happens to the serial console besides the log.
pub enum Watch {
    /// Nothing: a still-running line every [`NOTICE_EVERY`] says it lives.
    Quiet,
    /// Copied to our stdout as it comes.
    Echo,
    /// Each complete line handed to this function as it comes.
    Lines(Box<dyn FnMut(&str) + Send>),
}

/// Boots `cfg`, copying the serial console to `log` (and to our stdout if
/// `echo`), and kills QEMU after `timeout`.
pub fn run(
    cfg: &QemuConfig,
    log: &Path,
    timeout: Duration,
    echo: bool,
) -> Result<RunOutcome, String> {
    let watch = if echo { Watch::Echo } else { Watch::Quiet };
    spawn_and_wait(cfg, log, timeout, watch, Stdio::null(), None)
}

/// [`run`] handing each serial line to `watch` as it comes.
pub fn run_watched(
    cfg: &QemuConfig,
    log: &Path,
    timeout: Duration,
    watch: Watch,
) -> Result<RunOutcome, String> {
    spawn_and_wait(cfg, log, timeout, watch, Stdio::null(), None)
}

/// [`run`] with a person at the console: our stdin goes to the guest's
/// serial port (and to QEMU's Ctrl-A escapes), the console is echoed.
pub fn run_interactive(
    cfg: &QemuConfig,
    log: &Path,
    timeout: Duration,
) -> Result<RunOutcome, String> {
    let cfg = QemuConfig {
        interactive: true,
        ..cfg.clone()
    };
    spawn_and_wait(&cfg, log, timeout, Watch::Echo, Stdio::inherit(), None)
}

/// [`run_interactive`] handing each serial line to `watch` (which shows
/// it) instead of echoing raw output.
pub fn run_interactive_watched(
    cfg: &QemuConfig,
    log: &Path,
    timeout: Duration,
    watch: Watch,
) -> Result<RunOutcome, String> {
    let cfg = QemuConfig {
        interactive: true,
        ..cfg.clone()
    };
    spawn_and_wait(&cfg, log, timeout, watch, Stdio::inherit(), None)
}

/// What the host's step during a run saw: `None` if the ready line never
/// came (QEMU ended or the timeout passed first), else the step's result.
pub type HostResult = Option<Result<Vec<String>, String>>;

/// Boots `cfg` and, once a serial line matches `ready`, runs `step` on
/// this host while the guest runs; when the step returns, QEMU is ended
/// ([`RunOutcome::stopped`]). The timeout covers the whole run: a step
/// that outlives it has QEMU killed under it (its sockets then fail
/// fast). `on_ready` is called with the ready line first (to say where
/// the guest can be reached). Never hangs: the step's own waits are
/// bounded, and QEMU is killed at the timeout whatever the step does.
pub fn run_with_host<S, F>(
    cfg: &QemuConfig,
    log: &Path,
    timeout: Duration,
    echo: bool,
    ready: regex::Regex,
    on_ready: F,
    step: S,
) -> Result<(RunOutcome, HostResult), String>
where
    S: FnOnce() -> Result<Vec<String>, String> + Send + 'static,
    F: FnOnce(&str) + Send + 'static,
{
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    let (tx, rx) = mpsc::channel::<String>();
    let mut tx = Some(tx);
    let watch = Watch::Lines(Box::new(move |line: &str| {
        if echo {
            println!("{line}");
        }
        if ready.is_match(line)
            && let Some(tx) = tx.take()
        {
            let _ = tx.send(line.to_owned());
        }
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = Arc::clone(&stop);
    let host = thread::spawn(move || {
        // The sender is dropped when the console closes (QEMU ended).
        let result = match rx.recv_timeout(timeout) {
            Ok(line) => {
                on_ready(&line);
                Some(step())
            }
            Err(_) => None,
        };
        stopper.store(true, Ordering::SeqCst);
        result
    });
    let outcome = spawn_and_wait(cfg, log, timeout, watch, Stdio::null(), Some(stop))?;
    let result = host
        .join()
        .unwrap_or_else(|_| Some(Err("the host step panicked".into())));
    Ok((outcome, result))
}

/// Whether the command line was printed already, per architecture (once
/// per process: the later boots differ only in their bootargs, boot image
/// and disks).
static SHOWN: [std::sync::atomic::AtomicBool; 2] = [
    std::sync::atomic::AtomicBool::new(false),
    std::sync::atomic::AtomicBool::new(false),
];

/// The QEMU binary for `cfg`: the chosen one (`--qemu`) on aarch64, the
/// architecture's own on PATH otherwise.
fn binary_for(cfg: &QemuConfig) -> PathBuf {
    match cfg.arch {
        Arch::Aarch64 => machine().binary.clone(),
        other => PathBuf::from(other.qemu()),
    }
}

/// Prints the full command line on the first boot of this process, and the
/// gdb command on every boot started with `--gdb`.
fn announce(cfg: &QemuConfig) {
    let m = machine();
    let shown = &SHOWN[usize::from(cfg.arch != Arch::Aarch64)];
    if !shown.swap(true, std::sync::atomic::Ordering::Relaxed) || cfg.interactive || m.gdb {
        println!(
            "xtask: {} {}",
            binary_for(cfg).display(),
            shell_words(&command_line(cfg))
        );
    }
    if m.gdb {
        println!(
            "xtask: QEMU waits for gdb on port {GDB_PORT}; in another terminal:\n  {}\n\
             xtask: the kernel is linked high and entered with the MMU off: use hardware \
             breakpoints (e.g. `hbreak kernel::kmain`, then `continue`)",
            Machine::gdb_command(&cfg.kernel)
        );
    }
}

/// Arguments joined for display, quoting the ones a shell would split.
pub fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn spawn_and_wait(
    cfg: &QemuConfig,
    log: &Path,
    timeout: Duration,
    mut watch: Watch,
    stdin: Stdio,
    stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
) -> Result<RunOutcome, String> {
    let quiet = matches!(watch, Watch::Quiet);
    let mut log_file =
        File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    announce(cfg);
    let start = Instant::now();
    let binary = &binary_for(cfg);
    let mut child = Command::new(binary)
        .args(command_line(cfg))
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;

    let mut stdout = child.stdout.take().expect("stdout is piped");
    let serial_reader = thread::spawn(move || {
        let mut captured = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = &buf[..n];
                    captured.extend_from_slice(chunk);
                    // The log is best effort: losing it must not hang QEMU.
                    let _ = log_file.write_all(chunk);
                    match &mut watch {
                        Watch::Quiet => {}
                        Watch::Echo => {
                            let mut out = std::io::stdout().lock();
                            let _ = out.write_all(chunk);
                            let _ = out.flush();
                        }
                        Watch::Lines(f) => {
                            let start = captured.len() - n;
                            let from = captured[..start]
                                .iter()
                                .rposition(|&b| b == b'\n')
                                .map_or(0, |i| i + 1);
                            let done = captured.iter().rposition(|&b| b == b'\n');
                            if let Some(end) = done.filter(|&e| e >= start) {
                                for line in captured[from..end].split(|&b| b == b'\n') {
                                    f(&String::from_utf8_lossy(line));
                                }
                            }
                        }
                    }
                }
            }
        }
        captured
    });
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr_reader = thread::spawn(move || {
        let mut captured = Vec::new();
        let _ = stderr.read_to_end(&mut captured);
        captured
    });

    let mut timed_out = false;
    let mut stopped = false;
    let mut next_notice = NOTICE_EVERY;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None)
                if stop
                    .as_ref()
                    .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst)) =>
            {
                stopped = true;
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) if start.elapsed() >= timeout => {
                timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => {
                // A quiet run says it is alive; an echoed one shows itself.
                if quiet && start.elapsed() >= next_notice {
                    println!(
                        "      still running: {} s of at most {} s (log {})",
                        next_notice.as_secs(),
                        timeout.as_secs(),
                        log.display()
                    );
                    next_notice += NOTICE_EVERY;
                }
                thread::sleep(Duration::from_millis(20))
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("waiting for {} failed: {e}", binary.display()));
            }
        }
    };
    let duration = start.elapsed();
    let serial = serial_reader.join().unwrap_or_default();
    let qemu_stderr = stderr_reader.join().unwrap_or_default();
    Ok(RunOutcome {
        exit_code: status
            .and_then(|s| s.code())
            .map(|c| cfg.arch.kernel_status(c)),
        timed_out,
        stopped,
        serial: String::from_utf8_lossy(&serial).into_owned(),
        qemu_stderr: String::from_utf8_lossy(&qemu_stderr).into_owned(),
        duration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> QemuConfig {
        QemuConfig::new(Path::new("/k/kernel"), Path::new("/s"))
    }

    fn position(args: &[String], needle: &str) -> usize {
        args.iter()
            .position(|a| a.contains(needle))
            .unwrap_or_else(|| panic!("`{needle}` missing from {args:?}"))
    }

    #[test]
    fn fixed_machine_and_console() {
        let args = command_line_for(
            &Machine::new(Some(QEMU.into()), Some("max".into())),
            &config(),
        );
        let joined = args.join(" ");
        assert!(joined.starts_with("-machine virt,iommu=smmuv3,gic-version=3 -cpu max"));
        assert!(!joined.contains("virtualization=on"));
        for needle in [
            "-m 512M",
            "-smp 1",
            "-nic none",
            "-nographic",
            "-monitor none",
            "-serial stdio",
            "-no-reboot",
            "-semihosting-config enable=on,target=native",
            "-kernel /k/kernel",
        ] {
            assert!(joined.contains(needle), "`{needle}` missing from {joined}");
        }
        assert!(!joined.contains("loader"));
        assert!(!joined.contains("-audio"));
    }

    #[test]
    fn the_nic_comes_after_the_fixed_devices_only_when_asked() {
        let m = Machine::new(Some(QEMU.into()), Some("max".into()));
        let plain = command_line_for(&m, &config());
        assert!(!plain.join(" ").contains("netdev"), "{plain:?}");
        let mut cfg = config();
        cfg.user_net = true;
        let args = command_line_for(&m, &cfg);
        let joined = args.join(" ");
        assert!(joined.contains("-nic none"), "no default NIC: {joined}");
        assert!(
            joined.contains(
                "-netdev user,id=net0,restrict=on -device virtio-net-pci,netdev=net0,disable-legacy=on,iommu_platform=on,romfile="
            ),
            "{joined}"
        );
        let edu = args.iter().position(|a| a == "edu").expect("edu missing");
        assert!(position(&args, "virtio-net-pci") > edu);
        // Everything before it is the command line without a NIC.
        assert_eq!(&args[..plain.len()], &plain[..]);
    }

    #[test]
    fn the_host_forward_binds_loopback_only() {
        assert_eq!(user_netdev(None), "user,id=net0,restrict=on");
        let mut cfg = config();
        cfg.user_net = true;
        cfg.host_forward = Some(40123);
        let joined = command_line(&cfg).join(" ");
        assert!(
            joined.contains("-netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:40123-:80 "),
            "{joined}"
        );
        assert!(!joined.contains("0.0.0.0"));
        // No NIC, no forward.
        cfg.user_net = false;
        assert!(!command_line(&cfg).join(" ").contains("hostfwd"));
    }

    #[test]
    fn cpu_model_and_unpacked_qemu() {
        let dir = std::env::temp_dir().join(format!("xtask-qemu-{}", std::process::id()));
        let share = dir.join("usr/share/qemu");
        fs::create_dir_all(share.join("keymaps")).unwrap();
        let m = Machine::new(
            Some(dir.join("usr/bin/qemu-system-aarch64")),
            Some("cortex-a72".into()),
        );
        assert_eq!(m.data_dir.as_deref(), Some(share.as_path()));
        assert!(!m.is_default());
        let joined = command_line_for(&m, &config()).join(" ");
        assert!(joined.contains("-cpu cortex-a72 "), "{joined}");
        assert!(
            joined.contains(&format!("-L {} -audio none", share.display())),
            "{joined}"
        );
        // A QEMU on PATH gets neither.
        let plain = Machine::new(Some(QEMU.into()), None);
        assert_eq!(plain.data_dir, None);
        assert!(plain.is_default());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn audio_none_only_where_qemu_takes_it() {
        assert_eq!(
            parse_major("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)"),
            Some(7)
        );
        assert_eq!(
            parse_major("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)\nCopyright"),
            Some(10)
        );
        assert_eq!(parse_major("something else"), None);
        let m = Machine {
            data_dir: Some(PathBuf::from("/d/usr/share/qemu")),
            audio_none: false,
            ..Machine::new(Some(QEMU.into()), None)
        };
        let joined = command_line_for(&m, &config()).join(" ");
        assert!(joined.contains("-L /d/usr/share/qemu") && !joined.contains("-audio"));
    }

    #[test]
    fn boot_image_is_loaded_and_announced() {
        let cfg = QemuConfig {
            boot_image: Some(PathBuf::from("/s/boot.img")),
            bootargs: "log=debug".into(),
            ..config()
        };
        let args = command_line(&cfg);
        let i = position(&args, "-append");
        assert_eq!(args[i + 1], "bootimage=0x48000000 log=debug");
        let i = position(&args, "loader,");
        assert_eq!(args[i - 1], "-device");
        assert_eq!(
            args[i],
            "loader,file=/s/boot.img,addr=0x48000000,force-raw=on"
        );
        let alone = QemuConfig {
            bootargs: String::new(),
            ..cfg
        };
        assert_eq!(alone.kernel_command_line(), "bootimage=0x48000000");
    }

    #[test]
    fn boot_image_must_fit_in_ram() {
        let cfg = config();
        let room = (512 << 20) - (BOOT_IMAGE_ADDR - RAM_BASE) as usize;
        assert!(cfg.check_boot_image_fits(room).is_ok());
        assert!(cfg.check_boot_image_fits(room + 1).is_err());
    }

    #[test]
    fn machine_options_shape_the_command_line() {
        let m = Machine {
            el2: true,
            mem_mib: 1024,
            smp: 1,
            gdb: true,
            ..Machine::new(Some(QEMU.into()), Some("cortex-a72".into()))
        };
        let joined = command_line_for(&m, &config()).join(" ");
        assert!(
            joined.starts_with(
                "-machine virt,iommu=smmuv3,gic-version=3,virtualization=on -cpu cortex-a72 -m 512M"
            ),
            "{joined}"
        );
        assert!(joined.contains(" -s -S "), "{joined}");
        let cfg = QemuConfig {
            memory_mib: m.mem_mib,
            interactive: true,
            ..config()
        };
        let joined = command_line_for(&m, &cfg).join(" ");
        assert!(joined.contains("-m 1024M -smp 1"), "{joined}");
        assert!(joined.contains("-serial mon:stdio") && !joined.contains("-monitor none"));
        assert_eq!(
            Machine::gdb_command(Path::new("/t/kernel")),
            "gdb-multiarch -q /t/kernel -ex 'target remote localhost:1234'"
        );
    }

    #[test]
    fn el2_turns_on_virtualization() {
        let cfg = QemuConfig {
            el2: true,
            ..config()
        };
        assert_eq!(
            command_line(&cfg)[1],
            "virt,iommu=smmuv3,gic-version=3,virtualization=on"
        );
    }

    #[test]
    fn bootargs_are_one_argument() {
        let cfg = QemuConfig {
            bootargs: "selftest=kernel-fault log=debug".into(),
            ..config()
        };
        let args = command_line(&cfg);
        let i = position(&args, "-append");
        assert_eq!(args[i + 1], "selftest=kernel-fault log=debug");
    }

    #[test]
    fn devices_in_stream_id_order() {
        let mut cfg = config();
        cfg.extra_args = vec!["-device".into(), "virtio-net-pci".into()];
        let args = command_line(&cfg);
        let nvme_drive = position(&args, "file=/s/nvme.img,if=none,id=nvm,format=raw");
        let nvme = position(&args, "nvme,serial=iommu-nvme0,drive=nvm");
        let vblk_drive = position(&args, "file=/s/vblk.img,if=none,id=vblk,format=raw");
        let vblk = position(
            &args,
            "virtio-blk-pci,drive=vblk,iommu_platform=on,disable-legacy=on",
        );
        let edu = args.iter().position(|a| a == "edu").expect("edu missing");
        let extra = position(&args, "virtio-net-pci");
        assert!(nvme_drive < nvme && nvme < vblk_drive && vblk_drive < vblk);
        assert!(vblk < edu && edu < extra);
        assert_eq!(args[nvme_drive - 1], "-drive");
        assert_eq!(args[nvme - 1], "-device");
        assert_eq!(args[vblk_drive - 1], "-drive");
        assert_eq!(args[vblk - 1], "-device");
        assert_eq!(args[edu - 1], "-device");
    }

    #[test]
    fn scratch_gets_fresh_sparse_images() {
        let dir = std::env::temp_dir().join(format!("xtask-scratch-{}", std::process::id()));
        let cfg = QemuConfig::new(Path::new("/k"), &dir);
        prepare_scratch(&dir, &cfg).unwrap();
        fs::write(dir.join("stale"), b"x").unwrap();
        prepare_scratch(&dir, &cfg).unwrap();
        assert!(!dir.join("stale").exists());
        assert_eq!(fs::metadata(&cfg.nvme_image).unwrap().len(), DISK_SIZE);
        assert_eq!(fs::metadata(&cfg.vblk_image).unwrap().len(), DISK_SIZE);
        fs::remove_dir_all(&dir).unwrap();
    }
}

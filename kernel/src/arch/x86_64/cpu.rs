//! This CPU's descriptor tables and features: the GDT (kernel and user
//! segments, the TSS), the TSS (the kernel stack for traps from user mode,
//! separate stacks for double faults and for NMIs and machine checks), the IDT (every exception and the
//! interrupt vectors in use, pointing at vectors.S's stubs), and the CPUID
//! bits the kernel reports or relies on. Must never change a table once
//! loaded.

use hermit_sync::OnceCell;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags, Msr};
use x86_64::registers::xcontrol::{XCr0, XCr0Flags};
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::structures::tss::TaskStateSegment;

/// The IST slot (0-based in the TSS) for double faults.
const DOUBLE_FAULT_IST: u16 = 0;
/// The IST slot for NMIs and machine checks: they can arrive at any
/// instruction, `syscall_entry`'s first (still on the task's stack) too.
const NMI_MC_IST: u16 = 1;
/// Size of each IST stack.
const IST_STACK_SIZE: usize = 16 * 1024;

/// An IST stack.
#[repr(C, align(16))]
struct IstStack([u8; IST_STACK_SIZE]);
/// The double-fault stack: a fault on a broken kernel stack still reports.
static DF_STACK: IstStack = IstStack([0; IST_STACK_SIZE]);
/// The NMI and machine-check stack.
static NMI_STACK: IstStack = IstStack([0; IST_STACK_SIZE]);

static TSS: OnceCell<TaskStateSegment> = OnceCell::new();
static GDT: OnceCell<(GlobalDescriptorTable, Selectors)> = OnceCell::new();
static IDT: OnceCell<InterruptDescriptorTable> = OnceCell::new();

/// The GDT's selectors. The order (kernel code, kernel data, user data,
/// user code) is the one `syscall`/`sysret` require of STAR.
#[derive(Clone, Copy, Debug)]
pub struct Selectors {
    /// Ring 0 code.
    pub kernel_code: SegmentSelector,
    /// Ring 0 data.
    pub kernel_data: SegmentSelector,
    /// Ring 3 data.
    pub user_data: SegmentSelector,
    /// Ring 3 code.
    pub user_code: SegmentSelector,
    /// The TSS.
    pub tss: SegmentSelector,
}

unsafe extern "C" {
    /// vectors.S: stub addresses for vectors 0..31, 32, 255 and the device
    /// vectors 48..63 (in that order).
    static TRAP_STUBS: [u64; 50];
    static __boot_stack_top: u8;
}

/// Loads the GDT, the TSS and the IDT. Called once, first thing in
/// `kernel_entry`.
pub fn init() {
    let tss = TSS.get_or_init(|| {
        let mut tss = TaskStateSegment::new();
        tss.privilege_stack_table[0] = VirtAddr::from_ptr(&raw const __boot_stack_top);
        let df = VirtAddr::from_ptr(&raw const DF_STACK) + IST_STACK_SIZE as u64;
        tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST)] = df;
        let nmi = VirtAddr::from_ptr(&raw const NMI_STACK) + IST_STACK_SIZE as u64;
        tss.interrupt_stack_table[usize::from(NMI_MC_IST)] = nmi;
        tss
    });
    let (gdt, sel) = GDT.get_or_init(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let sel = Selectors {
            kernel_code: gdt.append(Descriptor::kernel_code_segment()),
            kernel_data: gdt.append(Descriptor::kernel_data_segment()),
            user_data: gdt.append(Descriptor::user_data_segment()),
            user_code: gdt.append(Descriptor::user_code_segment()),
            tss: gdt.append(Descriptor::tss_segment(tss)),
        };
        (gdt, sel)
    });
    gdt.load();
    // SAFETY: the selectors name the descriptors of the GDT just loaded
    // (static, never changed); CS is reloaded with a far return, the data
    // segments are flat; the TSS descriptor describes the static TSS.
    unsafe {
        CS::set_reg(sel.kernel_code);
        SS::set_reg(sel.kernel_data);
        DS::set_reg(sel.kernel_data);
        ES::set_reg(sel.kernel_data);
        load_tss(sel.tss);
    }
    IDT.get_or_init(build_idt).load();
    init_syscall(sel);
    enable_sse_state();
}

/// The extended-state components the kernel keeps for tasks (XCR0), once
/// [`enable_xsave`] ran: 0 while tasks' state is kept with FXSAVE.
#[unsafe(no_mangle)]
static XSAVE_MASK: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The XSAVE area tasks' state needs for [`XSAVE_MASK`] (bytes).
static XSAVE_SIZE: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Where the CPU has XSAVE: turns it on (CR4.OSXSAVE) for x87, SSE and, if
/// present, AVX state (XCR0), so the trap path keeps tasks' state with
/// XSAVE64/XRSTOR64 (the whole of it, AVX's upper halves included) instead
/// of FXSAVE, provided the area fits `area_limit` bytes. Returns the
/// components and the area size, or `None` (FXSAVE stays).
pub fn enable_xsave(features: &Features, area_limit: usize) -> Option<(u64, u32)> {
    use core::arch::x86_64::__cpuid_count;
    if !features.xsave {
        return None;
    }
    let supported = __cpuid_count(0xd, 0).eax as u64;
    let want = supported & (XCr0Flags::X87 | XCr0Flags::SSE | XCr0Flags::AVX).bits();
    // SAFETY: CR4.OSXSAVE only enables XSAVE/XGETBV/XSETBV; XCR0 then names
    // only components the CPU supports (CPUID.0Dh), x87 and SSE always.
    unsafe {
        Cr4::update(|f| f.insert(Cr4Flags::OSXSAVE));
        XCr0::write_raw(want | XCr0Flags::X87.bits() | XCr0Flags::SSE.bits());
    }
    // EBX: the area size for the components XCR0 enables now.
    let size = __cpuid_count(0xd, 0).ebx;
    if size as usize > area_limit {
        // SAFETY: back to x87 and SSE only, which FXSAVE covers; the trap
        // path keeps using FXSAVE.
        unsafe { XCr0::write_raw(XCr0Flags::X87.bits() | XCr0Flags::SSE.bits()) };
        return None;
    }
    let mask = XCr0::read().bits();
    XSAVE_SIZE.store(size, core::sync::atomic::Ordering::Relaxed);
    XSAVE_MASK.store(mask, core::sync::atomic::Ordering::Relaxed);
    Some((mask, size))
}

/// The components and area size XSAVE keeps (0, 0: FXSAVE).
pub fn xsave_state() -> (u64, u32) {
    (
        XSAVE_MASK.load(core::sync::atomic::Ordering::Relaxed),
        XSAVE_SIZE.load(core::sync::atomic::Ordering::Relaxed),
    )
}

/// Lets FXSAVE/FXRSTOR carry MXCSR and XMM0-15 (CR4.OSFXSR) and SSE
/// exceptions be reported as #XM (CR4.OSXMMEXCPT), with x87 instructions
/// native (CR0.EM = 0, MP = 1): tasks' vector state is then kept whole.
fn enable_sse_state() {
    // SAFETY: these bits only enable SSE state handling and FPU behaviour
    // the kernel itself never uses (it is built without SSE), and make
    // G-marked translations (the kernel's only) survive CR3 writes.
    unsafe {
        Cr0::update(|f| {
            f.remove(Cr0Flags::EMULATE_COPROCESSOR);
            f.insert(Cr0Flags::MONITOR_COPROCESSOR);
        });
        Cr4::update(|f| {
            f.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE);
            // Global pages: the kernel's mappings survive CR3 writes.
            f.insert(Cr4Flags::PAGE_GLOBAL);
        });
    }
}

/// IA32_STAR, IA32_LSTAR, IA32_FMASK.
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_FMASK: u32 = 0xc000_0084;
/// RFLAGS bits `syscall` clears: TF, IF, DF, NT, AC. NT matters: a task
/// can set it with POPF, and the kernel's IRETQ faults while it is set.
const SYSCALL_FMASK: u64 = (1 << 8) | (1 << 9) | (1 << 10) | (1 << 14) | (1 << 18);

/// Enables `syscall` (EFER.SCE) into vectors.S's `syscall_entry`, with the
/// kernel's segments on entry and the user's (data at STAR[63:48] + 8,
/// code at + 16) on the way back, interrupts and NT off on entry.
fn init_syscall(sel: &Selectors) {
    unsafe extern "C" {
        fn syscall_entry();
    }
    // syscall_entry builds the user frame with these selectors.
    assert!(
        sel.user_data.0 == 0x1b && sel.user_code.0 == 0x23,
        "GDT order changed under vectors.S"
    );
    let star = (u64::from(sel.kernel_code.0) << 32) | (u64::from(sel.kernel_data.0) << 48);
    // SAFETY: these MSRs only configure the `syscall` instruction: it will
    // enter `syscall_entry` (kernel text) with the kernel's code segment
    // and IF, TF, DF, AC cleared; EFER.SCE only enables the instruction.
    unsafe {
        Msr::new(MSR_STAR).write(star);
        Msr::new(MSR_LSTAR).write(syscall_entry as *const () as u64);
        Msr::new(MSR_FMASK).write(SYSCALL_FMASK);
        Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
    }
}

/// The GDT's selectors (after [`init`]).
pub fn selectors() -> Selectors {
    GDT.get().expect("cpu::init ran").1
}

fn build_idt() -> InterruptDescriptorTable {
    let mut idt = InterruptDescriptorTable::new();
    // SAFETY: TRAP_STUBS is vectors.S's read-only table of stub addresses.
    let stubs = unsafe { &TRAP_STUBS };
    let a = |v: usize| VirtAddr::new(stubs[v]);
    macro_rules! set {
        ($($field:ident = $vector:expr),* $(,)?) => {$(
            // SAFETY: the stub for this vector saves a full TrapFrame
            // (pushing a zero where the CPU pushes no error code) and
            // returns with iretq: a valid handler for any gate type.
            unsafe { idt.$field.set_handler_addr(a($vector)) };
        )*};
    }
    set!(
        divide_error = 0,
        debug = 1,
        breakpoint = 3,
        overflow = 4,
        bound_range_exceeded = 5,
        invalid_opcode = 6,
        device_not_available = 7,
        invalid_tss = 10,
        segment_not_present = 11,
        stack_segment_fault = 12,
        general_protection_fault = 13,
        page_fault = 14,
        x87_floating_point = 16,
        alignment_check = 17,
        simd_floating_point = 19,
        virtualization = 20,
        cp_protection_exception = 21,
        hv_injection_exception = 28,
        vmm_communication_exception = 29,
        security_exception = 30,
    );
    // SAFETY: as above; the double-fault, NMI and machine-check stacks are
    // in the TSS's IST slots.
    unsafe {
        idt.double_fault
            .set_handler_addr(a(8))
            .set_stack_index(DOUBLE_FAULT_IST);
        idt.non_maskable_interrupt
            .set_handler_addr(a(2))
            .set_stack_index(NMI_MC_IST);
        idt.machine_check
            .set_handler_addr(a(18))
            .set_stack_index(NMI_MC_IST);
    }
    // SAFETY: as above, for the timer and spurious interrupt vectors.
    unsafe {
        idt[32].set_handler_addr(a(32));
        idt[255].set_handler_addr(a(33));
    }
    for (i, v) in (super::irq::FIRST_DEVICE_VECTOR..super::irq::END_DEVICE_VECTOR).enumerate() {
        // SAFETY: as above, for the device vectors MSI targets.
        unsafe { idt[v as u8].set_handler_addr(a(34 + i)) };
    }
    idt
}

/// The CPU features the kernel reports (and will rely on).
#[derive(Clone, Copy, Debug, Default)]
pub struct Features {
    /// The vendor string.
    pub vendor: [u8; 12],
    /// Process-context identifiers (CPUID.1:ECX.PCID).
    pub pcid: bool,
    /// INVPCID (CPUID.7:EBX.INVPCID).
    pub invpcid: bool,
    /// Supervisor-mode access prevention (CPUID.7:EBX.SMAP).
    pub smap: bool,
    /// Supervisor-mode execution prevention (CPUID.7:EBX.SMEP).
    pub smep: bool,
    /// x2APIC (CPUID.1:ECX.x2APIC).
    pub x2apic: bool,
    /// The local APIC's TSC-deadline mode (CPUID.1:ECX.TSC-Deadline).
    pub tsc_deadline: bool,
    /// XSAVE (CPUID.1:ECX.XSAVE).
    pub xsave: bool,
    /// No-execute pages (CPUID.80000001:EDX.NX).
    pub nx: bool,
    /// 1 GiB pages (CPUID.80000001:EDX.Page1GB).
    pub page1g: bool,
    /// Physical address bits (CPUID.80000008:EAX[7:0]).
    pub pa_bits: u8,
}

impl Features {
    /// Reads them with CPUID.
    pub fn read() -> Self {
        use core::arch::x86_64::__cpuid_count;
        let l0 = __cpuid_count(0, 0);
        let mut vendor = [0; 12];
        vendor[0..4].copy_from_slice(&l0.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&l0.edx.to_le_bytes());
        vendor[8..12].copy_from_slice(&l0.ecx.to_le_bytes());
        let l1 = __cpuid_count(1, 0);
        let l7 = if l0.eax >= 7 {
            __cpuid_count(7, 0)
        } else {
            __cpuid_count(0, 0)
        };
        let ext = __cpuid_count(0x8000_0000, 0).eax;
        let e1 = if ext >= 0x8000_0001 {
            __cpuid_count(0x8000_0001, 0).edx
        } else {
            0
        };
        let pa_bits = if ext >= 0x8000_0008 {
            (__cpuid_count(0x8000_0008, 0).eax & 0xff) as u8
        } else {
            36
        };
        let l7b = if l0.eax >= 7 { l7.ebx } else { 0 };
        Self {
            vendor,
            pcid: l1.ecx & (1 << 17) != 0,
            invpcid: l7b & (1 << 10) != 0,
            smap: l7b & (1 << 20) != 0,
            smep: l7b & (1 << 7) != 0,
            x2apic: l1.ecx & (1 << 21) != 0,
            tsc_deadline: l1.ecx & (1 << 24) != 0,
            xsave: l1.ecx & (1 << 26) != 0,
            nx: e1 & (1 << 20) != 0,
            page1g: e1 & (1 << 26) != 0,
            pa_bits,
        }
    }
}

/// Turns on SMEP and SMAP where the CPU has them: ring 0 can then never
/// execute a user page, nor read or write one (the kernel reaches task
/// memory only through its linear map, never through user addresses).
pub fn enable_user_protection(features: &Features) {
    let mut add = Cr4Flags::empty();
    if features.smep {
        add |= Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION;
    }
    if features.smap {
        add |= Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION;
    }
    // SAFETY: SMEP/SMAP only forbid ring 0 from executing or accessing
    // user pages; the kernel's code and data are supervisor pages and it
    // touches task memory through the linear map.
    unsafe { Cr4::update(|f| f.insert(add)) };
}

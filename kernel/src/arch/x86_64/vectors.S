// Trap entry stubs (the IDT's targets, idt.rs) and the common path. Each
// stub makes the frame uniform (a zero where the CPU pushes no error code),
// pushes its vector and joins trap_common, which saves the general
// registers as a TrapFrame (trap.rs; 176 bytes, 16-byte aligned because
// the CPU aligns the stack on entry) and calls trap_entry(frame).
// trap_return restores a TrapFrame and returns with iretq; interrupt gates
// enter with IF clear and iretq restores RFLAGS atomically, so no
// interrupt can land between the restore and the return.

.macro STUB n, err
    .p2align 4
trap_stub_\n:
    .if \err == 0
    push    $0
    .endif
    push    $\n
    jmp     trap_common
.endm

.section .text.vectors, "ax"
.code64

// Exceptions 0..31: 8, 10..14, 17, 21, 29, 30 push an error code.
STUB 0, 0
STUB 1, 0
STUB 2, 0
STUB 3, 0
STUB 4, 0
STUB 5, 0
STUB 6, 0
STUB 7, 0
STUB 8, 1
STUB 9, 0
STUB 10, 1
STUB 11, 1
STUB 12, 1
STUB 13, 1
STUB 14, 1
STUB 15, 0
STUB 16, 0
STUB 17, 1
STUB 18, 0
STUB 19, 0
STUB 20, 0
STUB 21, 1
STUB 22, 0
STUB 23, 0
STUB 24, 0
STUB 25, 0
STUB 26, 0
STUB 27, 0
STUB 28, 0
STUB 29, 1
STUB 30, 1
STUB 31, 0
// Interrupts: the local APIC timer (32), the spurious vector (255) and
// the device vectors MSI targets (48..63, irq.rs).
STUB 32, 0
STUB 255, 0
.irp n, 48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63
STUB \n, 0
.endr

// `syscall` from user mode: RCX = return RIP, R11 = RFLAGS, RSP still the
// task's. Switches to the kernel stack (one CPU: a scratch word holds the
// task's RSP for the moment), builds the frame an interrupt from ring 3
// would have (user SS/CS as STAR makes them, see cpu.rs), marks it with
// SYSCALL_VECTOR and joins the common path; the return is the common
// `iretq`.
.global syscall_entry
syscall_entry:
    mov     %rsp, syscall_user_rsp(%rip)
    lea     __boot_stack_top(%rip), %rsp
    push    $0x1b                           // SS: user data | 3
    push    syscall_user_rsp(%rip)          // RSP
    push    %r11                            // RFLAGS
    push    $0x23                           // CS: user code | 3
    push    %rcx                            // RIP
    push    $0                              // error code
    push    $0x100                          // SYSCALL_VECTOR
    jmp     trap_common

trap_common:
    push    %r15
    push    %r14
    push    %r13
    push    %r12
    push    %r11
    push    %r10
    push    %r9
    push    %r8
    push    %rbp
    push    %rdi
    push    %rsi
    push    %rdx
    push    %rcx
    push    %rbx
    push    %rax
    // From user mode: save the task's x87/SSE state into the installed
    // FpState (mod.rs, USER_FP) before any Rust runs.
    // XSAVE64 with the components in XSAVE_MASK when the kernel turned
    // XSAVE on (cpu.rs), FXSAVE64 otherwise.
    testb   $3, 144(%rsp)
    jz      1f
    mov     USER_FP(%rip), %rcx
    mov     XSAVE_MASK(%rip), %rax
    test    %rax, %rax
    jz      3f
    mov     %rax, %rdx
    shr     $32, %rdx
    xsave64 (%rcx)
    jmp     1f
3:  fxsave64 (%rcx)
1:  mov     %rsp, %rdi
    cld
    call    trap_entry
.global trap_return
trap_return:
    // IRQs masked (RFLAGS.IF = 0) from here to the iretq: an interrupt in
    // between would run the scheduler under a half-restored frame. Checked
    // on every return; trap_return_irqs_unmasked reports a breach.
    pushfq
    testl   $0x200, (%rsp)
    lea     8(%rsp), %rsp                   // lea keeps the flags
    jz      6f
    mov     %rsp, %rdi
    and     $-16, %rsp
    call    trap_return_irqs_unmasked
6:
    // Back to user mode: load the installed FpState (the scheduler may
    // have installed another task's), and return with only the RFLAGS
    // bits a task may hold (CF PF AF ZF SF TF DF OF AC ID) plus IF and the
    // reserved 1: a task can set NT with POPF, and IRETQ with NT set
    // faults in the kernel (#GP in long mode).
    testb   $3, 144(%rsp)
    jz      2f
    mov     USER_FP(%rip), %rcx
    mov     XSAVE_MASK(%rip), %rax
    test    %rax, %rax
    jz      4f
    mov     %rax, %rdx
    shr     $32, %rdx
    xrstor64 (%rcx)
    jmp     5f
4:  fxrstor64 (%rcx)
5:  andq    $0x240dd5, 152(%rsp)
    orq     $0x202, 152(%rsp)
2:  pop     %rax
    pop     %rbx
    pop     %rcx
    pop     %rdx
    pop     %rsi
    pop     %rdi
    pop     %rbp
    pop     %r8
    pop     %r9
    pop     %r10
    pop     %r11
    pop     %r12
    pop     %r13
    pop     %r14
    pop     %r15
    add     $16, %rsp                       // vector, error code
    iretq

.section .bss
.p2align 3
syscall_user_rsp:
    .quad 0

// The stubs' addresses, for the IDT: vectors 0..31, 32, 255.
.section .rodata
.p2align 3
.global TRAP_STUBS
TRAP_STUBS:
    .quad trap_stub_0, trap_stub_1, trap_stub_2, trap_stub_3
    .quad trap_stub_4, trap_stub_5, trap_stub_6, trap_stub_7
    .quad trap_stub_8, trap_stub_9, trap_stub_10, trap_stub_11
    .quad trap_stub_12, trap_stub_13, trap_stub_14, trap_stub_15
    .quad trap_stub_16, trap_stub_17, trap_stub_18, trap_stub_19
    .quad trap_stub_20, trap_stub_21, trap_stub_22, trap_stub_23
    .quad trap_stub_24, trap_stub_25, trap_stub_26, trap_stub_27
    .quad trap_stub_28, trap_stub_29, trap_stub_30, trap_stub_31
    .quad trap_stub_32, trap_stub_255
    .quad trap_stub_48, trap_stub_49, trap_stub_50, trap_stub_51
    .quad trap_stub_52, trap_stub_53, trap_stub_54, trap_stub_55
    .quad trap_stub_56, trap_stub_57, trap_stub_58, trap_stub_59
    .quad trap_stub_60, trap_stub_61, trap_stub_62, trap_stub_63

// x86_64 entry from QEMU's PVH loader: 32-bit protected mode, paging off,
// ebx = physical address of the hvm_start_info. Builds boot tables (the
// first GiB by 2 MiB pages, identity, in the linear map and at the image's
// link address), enters long mode with NX enabled, jumps to the high half,
// zeroes .bss and the boot stack and calls kernel_entry(start_info).
// Everything before the jump runs at physical addresses: symbols are used
// as `sym - KERNEL_BASE`.

.set KB, 0xFFFFFFFF80000000

.section .note.Xen, "a"
.p2align 2
    .long 4                      // name size
    .long 4                      // descriptor size
    .long 18                     // XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .p2align 2
    .long _start32_phys

.section .boot_tables, "aw", @nobits
.p2align 12
boot_pml4:      .skip 4096
boot_pdpt_low:  .skip 4096
boot_pdpt_high: .skip 4096
boot_pd:        .skip 4096

.section .rodata
.p2align 4
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF     // 0x08: 64-bit code, ring 0
    .quad 0x00CF92000000FFFF     // 0x10: data, ring 0
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt - KB

.section .text.boot, "ax"
.code32
.global _start32
_start32:
    cli
    cld
    mov     %ebx, %esi                      // start_info, kept in esi

    // Zero the four boot table pages.
    mov     $(boot_pml4 - KB), %edi
    mov     $(4 * 4096 / 4), %ecx
    xor     %eax, %eax
    rep stosl

    // PD: 512 x 2 MiB, present | writable | page size.
    xor     %ecx, %ecx
1:  mov     %ecx, %eax
    shl     $21, %eax
    or      $0x83, %eax
    mov     %eax, (boot_pd - KB)(,%ecx,8)
    inc     %ecx
    cmp     $512, %ecx
    jne     1b

    mov     $(boot_pd - KB + 3), %eax
    mov     %eax, (boot_pdpt_low - KB)                  // 0..1 GiB
    mov     %eax, (boot_pdpt_high - KB + 510 * 8)       // KERNEL_BASE..+1 GiB
    mov     $(boot_pdpt_low - KB + 3), %eax
    mov     %eax, (boot_pml4 - KB)                      // identity
    mov     %eax, (boot_pml4 - KB + 256 * 8)            // linear map
    mov     $(boot_pdpt_high - KB + 3), %eax
    mov     %eax, (boot_pml4 - KB + 511 * 8)            // image

    mov     %cr4, %eax
    or      $0x20, %eax                     // PAE
    mov     %eax, %cr4
    mov     $(boot_pml4 - KB), %eax
    mov     %eax, %cr3
    mov     $0xC0000080, %ecx               // EFER
    rdmsr
    or      $0x900, %eax                    // LME | NXE
    wrmsr
    mov     %cr0, %eax
    or      $0x80010001, %eax               // PG | WP | PE
    mov     %eax, %cr0

    lgdt    (boot_gdt_ptr - KB)
    ljmp    $0x08, $(long_mode - KB)

.code64
long_mode:
    mov     $0x10, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    xor     %eax, %eax
    mov     %eax, %fs
    mov     %eax, %gs
    movabs  $high_half, %rax
    jmp     *%rax

high_half:
    // Zero .bss and the boot stack (the stack's high-water mark relies on
    // it), then run on that stack.
    mov     %esi, %r12d
    lea     __bss_start(%rip), %rdi
    lea     __bss_end(%rip), %rcx
    sub     %rdi, %rcx
    shr     $3, %rcx
    xor     %eax, %eax
    rep stosq
    lea     __boot_stack_top(%rip), %rsp
    xor     %ebp, %ebp
    mov     %r12, %rdi
    call    kernel_entry
2:  hlt
    jmp     2b

/*
 * Guest entry point. The VMM starts us in 64-bit long mode with RDI = boot
 * info, RSP near the top of RAM and IF = 0, but with no GDT or IDT of our
 * own: load both, move to a stack inside the image, zero .bss, run kmain and
 * power off with its return value.
 */
#define BOOT_STACK_SIZE (64 * 1024)

    .section .text.boot, "ax"
    .code64
    .globl _start
    .type _start, @function
_start:
    /* rep stosb below clobbers RDI; keep the boot info pointer in RBX. */
    movq %rdi, %rbx

    lgdt gdt_descriptor(%rip)
    /* Reload CS: far return to the next instruction with selector 0x08. */
    pushq $0x08
    leaq 1f(%rip), %rax
    pushq %rax
    lretq
1:
    movl $0x10, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs

    /* Zero .bss (it holds our stack, which we do not use yet). */
    leaq __bss_start(%rip), %rdi
    leaq __bss_end(%rip), %rcx
    subq %rdi, %rcx
    shrq $3, %rcx           /* link.ld aligns both ends to 16 bytes */
    xorl %eax, %eax
    cld
    rep stosq

    leaq boot_stack_top(%rip), %rsp
    xorl %ebp, %ebp

    movq %rbx, %rdi
    call sdk_init          /* IDT, heap, boot args */
    movq %rbx, %rdi
    call kmain

    /* kmain returned: its int return value is the exit status. */
    movl %eax, %edi
    call poweroff
2:  cli
    hlt
    jmp 2b
    .size _start, . - _start

    .section .rodata
    .balign 16
gdt:
    .quad 0                     /* null */
    .quad 0x00AF9A000000FFFF    /* 0x08: 64-bit code, ring 0 */
    .quad 0x00CF92000000FFFF    /* 0x10: data, ring 0 */
gdt_end:

    .balign 16
gdt_descriptor:
    .word gdt_end - gdt - 1
    .quad gdt

    .section .bss
    .balign 16
    .globl boot_stack_bottom
boot_stack_bottom:
    .skip BOOT_STACK_SIZE
    .globl boot_stack_top
boot_stack_top:

    .section .note.GNU-stack, "", @progbits

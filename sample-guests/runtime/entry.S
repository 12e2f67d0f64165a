/* Guest entry: the PVH 32-bit entry point, the trampoline to 64-bit long mode,
 * the trap and interrupt stubs, and the return-to-CPL3 path. */
#define KCODE 0x08
#define KDATA 0x10

    .section .note.Xen, "a"
    .p2align 2
    .long 4          /* namesz: "Xen\0" */
    .long 4          /* descsz */
    .long 18         /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long _start32

    .section .text.boot, "ax"
    .code32
    .globl _start32
_start32:
    cli
    mov %ebx, %esi                  /* PVH: ebx = hvm_start_info */
    lgdt gdt_ptr

    /* Identity-map the first 1 GiB with 2 MiB pages, user-accessible. */
    movl $pdpt, %eax
    orl $0x7, %eax
    movl %eax, pml4
    movl $pd, %eax
    orl $0x7, %eax
    movl %eax, pdpt
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x87, %eax                 /* PS | U | W | P */
    movl %eax, pd(,%ecx,8)
    incl %ecx
    cmpl $512, %ecx
    jne 1b

    movl $pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 9) | (1 << 10)), %eax   /* PAE, OSFXSR, OSXMMEXCPT */
    movl %eax, %cr4
    movl $0xC0000080, %ecx          /* EFER */
    rdmsr
    orl $(1 << 8), %eax             /* LME */
    wrmsr
    movl %cr0, %eax
    andl $~(1 << 2), %eax           /* EM off: CPL3 code may use SSE */
    orl $((1 << 31) | (1 << 1) | 1), %eax          /* PG | MP | PE */
    movl %eax, %cr0
    ljmp $KCODE, $start64

    .text
    .code64
start64:
    movw $KDATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movq $kernel_stack_top, %rsp
    xorl %ebp, %ebp
    movl %esi, %edi                 /* kmain(start_info) */
    call kmain
2:  cli
    hlt
    jmp 2b

/* Traps: every vector pushes (error code or 0) and its number, then shares
 * one path that saves the registers in struct trap_frame order. */
.macro VEC n, has_err
    .globl vec\n
vec\n:
    .if \has_err == 0
    pushq $0
    .endif
    pushq $\n
    jmp trap_common
.endm

    VEC 0, 0
    VEC 1, 0
    VEC 2, 0
    VEC 3, 0
    VEC 4, 0
    VEC 5, 0
    VEC 6, 0
    VEC 7, 0
    VEC 8, 1
    VEC 9, 0
    VEC 10, 1
    VEC 11, 1
    VEC 12, 1
    VEC 13, 1
    VEC 14, 1
    VEC 15, 0
    VEC 16, 0
    VEC 17, 1
    VEC 18, 0
    VEC 19, 0
    VEC 20, 0
    VEC 21, 1
    VEC 32, 0
    VEC 33, 0
    VEC 34, 0
    VEC 35, 0
    VEC 36, 0
    VEC 37, 0
    VEC 38, 0
    VEC 39, 0
    VEC 40, 0
    VEC 41, 0
    VEC 42, 0
    VEC 43, 0
    VEC 44, 0
    VEC 45, 0
    VEC 46, 0
    VEC 47, 0
    VEC 128, 0
    VEC 255, 0


trap_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    /* A frame-pointer link to the interrupted code, for stack walkers. */
    movq %rsp, %rbp
    call trap
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq

/* enter_user(entry, user_stack, arg): iretq to CPL3 with interrupts on. */
    .globl enter_user
enter_user:
    pushq $0x1b                     /* SS: user data | RPL 3 */
    pushq %rsi                      /* RSP */
    pushq $0x202                    /* RFLAGS: IF */
    pushq $0x23                     /* CS: user code | RPL 3 */
    pushq %rdi                      /* RIP */
    movq %rdx, %rdi
    xorl %ebp, %ebp
    iretq

    .section .data
    .p2align 4
    .globl gdt
gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF        /* 0x08 kernel code, 64-bit */
    .quad 0x00CF92000000FFFF        /* 0x10 kernel data */
    .quad 0x00CFF2000000FFFF        /* 0x18 user data */
    .quad 0x00AFFA000000FFFF        /* 0x20 user code, 64-bit */
    .quad 0, 0                      /* 0x28 TSS, filled in by tss_init() */
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .quad gdt

    .section .bss
    .p2align 12
pml4: .skip 4096
pdpt: .skip 4096
pd:   .skip 4096
    .p2align 4
    .skip 16384
    .globl kernel_stack_top
kernel_stack_top:

/* ctx_save(ctx) returns 0; ctx_restore(ctx, v) resumes it returning v. They
 * carry the kernel back from a CPL3 program's sys_exit to run_user(). */
    .text
    .globl ctx_save
ctx_save:
    movq %rbx, 0(%rdi)
    movq %rbp, 8(%rdi)
    movq %r12, 16(%rdi)
    movq %r13, 24(%rdi)
    movq %r14, 32(%rdi)
    movq %r15, 40(%rdi)
    leaq 8(%rsp), %rdx
    movq %rdx, 48(%rdi)
    movq (%rsp), %rdx
    movq %rdx, 56(%rdi)
    xorl %eax, %eax
    ret

    .globl ctx_restore
ctx_restore:
    movq 0(%rdi), %rbx
    movq 8(%rdi), %rbp
    movq 16(%rdi), %r12
    movq 24(%rdi), %r13
    movq 32(%rdi), %r14
    movq 40(%rdi), %r15
    movq 48(%rdi), %rsp
    movq %rsi, %rax
    jmpq *56(%rdi)

/*
 * Multiboot entry and the interrupt entry/exit path of the multitasking
 * kernel (tests/support/kernels/kernel.c).
 *
 * Every vector enters through isr_common, which builds a `struct frame`
 * (kernel.h) on the current kernel stack: segment registers, pusha block,
 * vector, error code, then what the CPU pushed (EIP CS EFLAGS, plus ESP SS
 * when the interrupt came from ring 3).  isr_dispatch() returns the frame to
 * resume: the same one, or another task's frame saved on that task's kernel
 * stack.  That is the whole task switch: the full register state of a task
 * lives in its frame, and the scheduler has already loaded CR3 and TSS.ESP0
 * for the task it picked.
 */

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003 /* page-align modules, memory info */

	.section .multiboot, "a"
	.align 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.text
	.globl _start
_start:
	cli
	cld
	mov $boot_stack_top, %esp
	xor %ebp, %ebp
	push %ebx /* multiboot info */
	push %eax /* multiboot magic */
	call kmain
1:	cli
	hlt
	jmp 1b

/* Exceptions that push an error code: 8, 10-14, 17, 21, 29, 30. */
.macro ISR_NOERR n
	.globl isr\n
isr\n:
	push $0
	push $\n
	jmp isr_common
.endm
.macro ISR_ERR n
	.globl isr\n
isr\n:
	push $\n
	jmp isr_common
.endm

ISR_NOERR 0
ISR_NOERR 1
ISR_NOERR 2
ISR_NOERR 3
ISR_NOERR 4
ISR_NOERR 5
ISR_NOERR 6
ISR_NOERR 7
ISR_ERR   8
ISR_NOERR 9
ISR_ERR   10
ISR_ERR   11
ISR_ERR   12
ISR_ERR   13
ISR_ERR   14
ISR_NOERR 15
ISR_NOERR 16
ISR_ERR   17
ISR_NOERR 18
ISR_NOERR 19
ISR_NOERR 20
ISR_ERR   21
ISR_NOERR 22
ISR_NOERR 23
ISR_NOERR 24
ISR_NOERR 25
ISR_NOERR 26
ISR_NOERR 27
ISR_NOERR 28
ISR_ERR   29
ISR_ERR   30
ISR_NOERR 31
/* IRQ 0-15 after the PIC remap */
ISR_NOERR 32
ISR_NOERR 33
ISR_NOERR 34
ISR_NOERR 35
ISR_NOERR 36
ISR_NOERR 37
ISR_NOERR 38
ISR_NOERR 39
ISR_NOERR 40
ISR_NOERR 41
ISR_NOERR 42
ISR_NOERR 43
ISR_NOERR 44
ISR_NOERR 45
ISR_NOERR 46
ISR_NOERR 47
/* system calls */
ISR_NOERR 128

isr_common:
	pusha
	push %ds
	push %es
	push %fs
	push %gs
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %fs
	mov %ax, %gs
	cld
	push %esp
	call isr_dispatch
	mov %eax, %esp /* the frame to resume: maybe another task's */
	.globl isr_return
isr_return:
	pop %gs
	pop %fs
	pop %es
	pop %ds
	popa
	add $8, %esp /* vector, error code */
	iret

	.globl isr_table
	.section .rodata
	.align 4
isr_table:
	.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.long isr\n
	.endr
	.irp n, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
	.long isr\n
	.endr
	.globl isr_syscall
	.set isr_syscall, isr128

	.bss
	.align 16
	.space 16384
boot_stack_top:

	.section .note.GNU-stack, "", @progbits

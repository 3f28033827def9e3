/*
 * Ring-3 helpers that must be exact instructions (the kernel names two of
 * them by address when it reports the fault they cause).  Linked into the
 * user image at 0x40000000, like user.c.
 */
	.text

/*
 * uint32_t spin_until(volatile uint32_t *word, uint32_t want)
 *
 * Spins in ring 3, with no system call, until *word == want.  While it
 * spins every general register and EFLAGS.DF hold known values; only
 * another task can change *word, so leaving the loop proves the timer
 * preempted this task, and the returned mask (0 = all intact) proves the
 * kernel saved and restored its full register state across the switch.
 */
	.globl spin_until
spin_until:
	push %ebp
	push %ebx
	push %esi
	push %edi
	mov 20(%esp), %eax
	mov 24(%esp), %ecx
	mov $0x11111111, %ebx
	mov $0x22222222, %edx
	mov $0x33333333, %esi
	mov $0x44444444, %edi
	mov $0x55555555, %ebp
	std
1:	cmp %ecx, (%eax)
	jne 1b
	pushf
	push $0
	cmp $0x11111111, %ebx
	je 2f
	orl $0x01, (%esp)
2:	cmp $0x22222222, %edx
	je 2f
	orl $0x02, (%esp)
2:	cmp $0x33333333, %esi
	je 2f
	orl $0x04, (%esp)
2:	cmp $0x44444444, %edi
	je 2f
	orl $0x08, (%esp)
2:	cmp $0x55555555, %ebp
	je 2f
	orl $0x10, (%esp)
2:	cmp 28(%esp), %eax
	je 2f
	orl $0x20, (%esp)
2:	cmp 32(%esp), %ecx
	je 2f
	orl $0x40, (%esp)
2:	testl $0x400, 4(%esp)
	jnz 2f
	orl $0x80, (%esp)
2:	xor %ebx, %ebx
	mov %fs, %bx
	cmp $0x23, %ebx
	je 2f
	orl $0x100, (%esp)
2:	mov %gs, %bx
	cmp $0x23, %ebx
	je 2f
	orl $0x200, (%esp)
2:	pop %eax
	add $4, %esp
	cld
	pop %edi
	pop %esi
	pop %ebx
	pop %ebp
	ret

/* void divide_by_zero(void): #DE at user_div_insn. */
	.globl divide_by_zero, user_div_insn
divide_by_zero:
	mov $1000, %eax
	xor %edx, %edx
	xor %ecx, %ecx
user_div_insn:
	divl %ecx
	ret

/* void privileged_cli(void): cli at CPL 3 with IOPL 0 is #GP(0) at user_cli_insn. */
	.globl privileged_cli, user_cli_insn
privileged_cli:
user_cli_insn:
	cli
	ret

/* uint32_t read_cs(void) */
	.globl read_cs
read_cs:
	xor %eax, %eax
	mov %cs, %ax
	ret

	.section .note.GNU-stack, "", @progbits

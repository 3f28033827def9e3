/*
 * What the kernel and its ring-3 tasks agree on: the system calls, the
 * user address-space layout and the page they share.
 */
#ifndef ABI_H
#define ABI_H

#include <stdint.h>

/* int 0x80: EAX = number, EBX/ECX = arguments, result in EAX. */
#define SYS_WRITE 1 /* (const char *buf, uint32_t len) -> bytes written */
#define SYS_TICKS 2 /* () -> timer ticks since boot */
#define SYS_YIELD 3 /* () -> 0: let the next runnable task run */
#define SYS_EXIT 4  /* (int status): never returns */

/* User address space, identical in every task's page directory. */
#define USER_CODE 0x40000000u   /* the user image: read-only, shared by all tasks */
#define USER_HEAP 0x50000000u   /* private, mapped on demand by the page-fault handler */
#define USER_HEAP_END 0x50400000u
#define USER_SHARED 0x60000000u /* one page, read-write, shared by all tasks (and written by the kernel) */
#define USER_STACK_TOP 0xC0000000u /* one private page below */

#define TASK_A 1
#define TASK_B 2
#define TASK_C 3

struct shared_page {
	volatile uint32_t turn;      /* whose turn it is: tasks hand over by writing it */
	volatile uint32_t dead_mask; /* bit n: task n was killed or exited (written by the kernel) */
	volatile uint32_t failures;  /* checks that failed in ring 3 (the kernel reads it for its verdict) */
};

#endif

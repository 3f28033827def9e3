/*
 * The three ring-3 tasks.  Linked at USER_CODE (0x40000000) into pages the
 * kernel maps user-readable and read-only in every task's page directory;
 * they have no writable globals: each task's state lives on its private
 * stack and heap, and the only shared memory is the page at USER_SHARED.
 *
 * Why the transcript is the same on every emulator: a task prints only
 * while it "holds the turn" (SHARED->turn, or the kernel's dead_mask for
 * the last steps), and hands the turn over only after its last line; a task
 * waiting for its turn prints nothing.  Timer interrupts can land anywhere,
 * on QEMU and on gdbemu at different instructions, and only change how long
 * the waiters wait.  One wait (A's spin_until) makes no system call at all:
 * it can only end if the timer preempts A and B runs.
 */
#include "abi.h"
#include "lib.h"

#define SHARED ((struct shared_page *)USER_SHARED)

uint32_t spin_until(volatile uint32_t *word, uint32_t want);
void divide_by_zero(void);
void privileged_cli(void);
uint32_t read_cs(void);

static inline uint32_t syscall2(uint32_t nr, uint32_t a, uint32_t b)
{
	uint32_t ret;
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b) : "memory");
	return ret;
}

static void print(const char *s) { syscall2(SYS_WRITE, (uint32_t)s, strlen(s)); }
static uint32_t sys_ticks(void) { return syscall2(SYS_TICKS, 0, 0); }
static void sys_yield(void) { syscall2(SYS_YIELD, 0, 0); }

static void __attribute__((noreturn)) sys_exit(int status)
{
	syscall2(SYS_EXIT, (uint32_t)status, 0);
	for (;;)
		;
}

static void uprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void uprintf(const char *fmt, ...)
{
	char buf[200];
	va_list ap;
	va_start(ap, fmt);
	vformat(buf, sizeof buf, fmt, ap);
	va_end(ap);
	print(buf);
}

/* A failed check prints a FAIL line (so the transcript differs) and is counted for the kernel's verdict. */
static void check(int ok, const char *who, const char *what)
{
	if (!ok) {
		__atomic_fetch_add(&SHARED->failures, 1, __ATOMIC_SEQ_CST);
		uprintf("%s: FAIL %s\n", who, what);
	}
}

static void wait_turn(uint32_t turn)
{
	while (SHARED->turn != turn)
		sys_yield();
}

static void wait_dead(uint32_t mask)
{
	while ((SHARED->dead_mask & mask) != mask)
		sys_yield();
}

void task_a(void)
{
	volatile uint32_t *heap = (volatile uint32_t *)USER_HEAP;
	uint32_t cs = read_cs();

	uprintf("A: hello from ring 3 (cs=0x%x, cpl %u)\n", cs, cs & 3);
	check((cs & 3) == 3, "A", "not running in ring 3");
	print("A: writing 0xaaaaaaaa at 0x50000000 and 0x50001ffc (unmapped heap)\n");
	heap[0] = 0xaaaaaaaa;
	heap[0x7ff] = 0xaaaaaaaa;
	check(heap[0] == 0xaaaaaaaa && heap[0x7ff] == 0xaaaaaaaa, "A", "heap readback");
	print("A: both heap pages were mapped on demand\n");
	print("A: handing the turn to B; spinning in ring 3 with no system calls\n");
	SHARED->turn = 1;
	uint32_t bad = spin_until(&SHARED->turn, 2);
	print("A: B ran while I was spinning: the timer preempted me\n");
	if (bad)
		uprintf("A: FAIL registers changed across preemption (mask 0x%x)\n", bad);
	check(bad == 0, "A", "register state");
	print("A: EAX..EBP, DF, FS and GS survived the task switches\n");
	check(heap[0] == 0xaaaaaaaa && heap[0x7ff] == 0xaaaaaaaa, "A", "heap overwritten by B");
	print("A: my heap still holds 0xaaaaaaaa: B's page at 0x50000000 is another frame\n");
	uint32_t t0 = sys_ticks();
	while (sys_ticks() == t0)
		sys_yield();
	print("A: the tick count advanced while I was yielding\n");
	print("A: dividing by zero\n");
	divide_by_zero();
	check(0, "A", "survived a divide by zero");
	sys_exit(1);
}

void task_b(void)
{
	volatile uint32_t *heap = (volatile uint32_t *)USER_HEAP;
	uint32_t cs = read_cs();

	wait_turn(1);
	uprintf("B: hello from ring 3 (cs=0x%x, cpl %u)\n", cs, cs & 3);
	check((cs & 3) == 3, "B", "not running in ring 3");
	uint32_t first = heap[0];
	uprintf("B: my heap at 0x50000000 reads 0x%x (A's 0xaaaaaaaa is not visible)\n", first);
	check(first == 0, "B", "heap page not private or not zeroed");
	heap[0] = 0xbbbbbbbb;
	print("B: wrote 0xbbbbbbbb there; handing the turn back to A\n");
	SHARED->turn = 2;
	wait_dead(1u << TASK_A);
	print("B: A is gone\n");
	check(heap[0] == 0xbbbbbbbb, "B", "heap changed");
	print("B: my heap still holds 0xbbbbbbbb\n");
	print("B: executing cli in ring 3\n");
	privileged_cli();
	check(0, "B", "cli in ring 3 did not fault");
	sys_exit(1);
}

void task_c(void)
{
	wait_dead((1u << TASK_A) | (1u << TASK_B));
	uint32_t t = sys_ticks();
	check(t > 0, "C", "no timer ticks");
	print("C: A and B are gone; exiting with status 7\n");
	sys_exit(7);
}

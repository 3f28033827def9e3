/*
 * A small preemptive multitasking kernel: the guest that proves the PC
 * board of an emulator works (8259 PIC, 8254 PIT, 16550 UART, isa-debug-exit)
 * together with the CPU's protection model (GDT/TSS/IDT, ring 3, paging,
 * faults, interrupts from ring 3 and from hlt).
 *
 *   - GDT: ring-0 and ring-3 code/data segments and a TSS (ESP0 per task).
 *   - IDT: exceptions 0-31, IRQs 0-15 at 0x20-0x2F (PIC remapped),
 *     int 0x80 system calls (DPL 3).
 *   - PIT channel 0, mode 2 (or 3), 100 Hz: ticks and preemption (one tick slices).
 *   - COM1 output, interrupt-driven (THRE interrupts through IRQ 4, FIFO
 *     bursts when the 16550 has one), polled before the IDT is up and on panic.
 *   - Paging: one page directory per task; the kernel's identity map of
 *     0-8 MiB (supervisor only) is in every directory; the user image is
 *     shared read-only; stack and heap pages are private; heap pages are
 *     mapped on demand by the page-fault handler.
 *   - Tasks A, B, C in ring 3 (user.c); a task that faults is killed with a
 *     message; the kernel's own idle loop (task 0) runs when no task can.
 *
 * The transcript on COM1 is deterministic whatever the timer's phase (see
 * user.c); the kernel never prints on a task switch.  At the end it prints
 * a verdict and writes it to isa-debug-exit: 0 all good, 1 a check failed,
 * 2 kernel panic.
 */
#include "abi.h"
#include "lib.h"

/* ---- port I/O -------------------------------------------------------------------------- */

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }

static inline uint32_t irq_save(void)
{
	uint32_t flags;
	__asm__ volatile("pushf; pop %0; cli" : "=r"(flags) : : "memory");
	return flags;
}
static inline void irq_restore(uint32_t flags)
{
	if (flags & 0x200)
		__asm__ volatile("sti" : : : "memory");
}
static inline uint32_t read_cr2(void)
{
	uint32_t v;
	__asm__ volatile("mov %%cr2, %0" : "=r"(v));
	return v;
}
static inline void write_cr3(uint32_t v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }

#define DEBUG_EXIT_PORT 0xf4

/* ---- COM1 -------------------------------------------------------------------------------- */

#define COM1 0x3f8
#define UART_THR 0
#define UART_IER 1
#define UART_IIR 2
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define IER_THRI 0x02

#define TXBUF_SIZE 4096
static char txbuf[TXBUF_SIZE];
static volatile uint32_t tx_head, tx_tail; /* head: next to send; tail: next free */
static int uart_irq_mode;                  /* 0: polled */
static int uart_fifo_depth = 1;
static volatile uint32_t uart_interrupts;

static void uart_init(void)
{
	outb(COM1 + UART_IER, 0);
	outb(COM1 + UART_LCR, 0x80); /* DLAB */
	outb(COM1 + 0, 1);           /* 115200 baud */
	outb(COM1 + 1, 0);
	outb(COM1 + UART_LCR, 0x03); /* 8N1 */
	outb(COM1 + UART_FCR, 0xc7); /* FIFO on, both cleared, 14-byte trigger */
	outb(COM1 + UART_MCR, 0x0b); /* DTR, RTS, OUT2 (the IRQ line's gate on a PC) */
	if ((inb(COM1 + UART_IIR) & 0xc0) == 0xc0)
		uart_fifo_depth = 16;
}

static void uart_putc_polled(char c)
{
	while (!(inb(COM1 + UART_LSR) & LSR_THRE))
		;
	outb(COM1 + UART_THR, (uint8_t)c);
}

/* Send what the ring buffer holds by polling, and leave interrupt mode (panic, and before exit). */
static void uart_flush_polled(void)
{
	uint32_t flags = irq_save();
	outb(COM1 + UART_IER, 0);
	uart_irq_mode = 0;
	while (tx_head != tx_tail) {
		uart_putc_polled(txbuf[tx_head % TXBUF_SIZE]);
		tx_head++;
	}
	while (!(inb(COM1 + UART_LSR) & LSR_TEMT))
		;
	irq_restore(flags);
}

static void uart_irq(void)
{
	uint8_t iir;
	uart_interrupts++;
	while (!((iir = inb(COM1 + UART_IIR)) & 1)) {
		switch (iir & 0x0e) {
		case 0x02: /* THR empty: refill */
			for (int i = 0; i < uart_fifo_depth; i++) {
				if (tx_head == tx_tail) {
					outb(COM1 + UART_IER, 0);
					break;
				}
				outb(COM1 + UART_THR, (uint8_t)txbuf[tx_head % TXBUF_SIZE]);
				tx_head++;
			}
			if (tx_head == tx_tail)
				outb(COM1 + UART_IER, 0);
			break;
		case 0x06:
			inb(COM1 + UART_LSR);
			break;
		case 0x04:
		case 0x0c:
			inb(COM1 + UART_THR);
			break;
		default:
			inb(COM1 + UART_MSR);
			break;
		}
	}
}

static void console_putc(char c)
{
	if (!uart_irq_mode) {
		uart_putc_polled(c);
		return;
	}
	uint32_t flags = irq_save();
	while (tx_tail - tx_head >= TXBUF_SIZE) {
		/* Full: wait for THRE interrupts to drain it (we may be inside a system call). */
		__asm__ volatile("sti; hlt; cli" : : : "memory");
	}
	txbuf[tx_tail % TXBUF_SIZE] = c;
	tx_tail++;
	outb(COM1 + UART_IER, IER_THRI); /* THR empty now or later: an interrupt comes */
	irq_restore(flags);
}

static void console_write(const char *s, uint32_t n)
{
	while (n--)
		console_putc(*s++);
}

static void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void kprintf(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vformat(buf, sizeof buf, fmt, ap);
	va_end(ap);
	console_write(buf, n < (int)sizeof buf ? (uint32_t)n : sizeof buf - 1);
}

static void __attribute__((noreturn)) finish(uint32_t status)
{
	uart_flush_polled();
	outl(DEBUG_EXIT_PORT, status);
	for (;;)
		__asm__ volatile("cli; hlt");
}

static void __attribute__((noreturn)) panic(const char *what)
{
	uart_flush_polled();
	kprintf("[kernel] PANIC: %s\n", what);
	finish(2);
}

/* ---- descriptor tables ------------------------------------------------------------------ */

#define KCODE 0x08
#define KDATA 0x10
#define UCODE 0x1b
#define UDATA 0x23
#define TSS_SEL 0x28

struct tss {
	uint32_t link, esp0, ss0, esp1, ss1, esp2, ss2, cr3, eip, eflags;
	uint32_t eax, ecx, edx, ebx, esp, ebp, esi, edi;
	uint32_t es, cs, ss, ds, fs, gs, ldt;
	uint16_t trap, iomap_base;
} __attribute__((packed));

static uint64_t gdt[6];
static struct tss tss;
static uint64_t idt[256];

static uint64_t seg_desc(uint32_t base, uint32_t limit, uint32_t access, uint32_t gran)
{
	return (uint64_t)(limit & 0xffff) | ((uint64_t)(base & 0xffffff) << 16) | ((uint64_t)access << 40) |
	       ((uint64_t)((limit >> 16) & 0xf) << 48) | ((uint64_t)gran << 52) | ((uint64_t)(base >> 24) << 56);
}

static void gdt_init(void)
{
	gdt[0] = 0;
	gdt[1] = seg_desc(0, 0xfffff, 0x9a, 0xc); /* ring-0 code */
	gdt[2] = seg_desc(0, 0xfffff, 0x92, 0xc); /* ring-0 data */
	gdt[3] = seg_desc(0, 0xfffff, 0xfa, 0xc); /* ring-3 code */
	gdt[4] = seg_desc(0, 0xfffff, 0xf2, 0xc); /* ring-3 data */
	memset(&tss, 0, sizeof tss);
	tss.ss0 = KDATA;
	tss.iomap_base = sizeof tss; /* no I/O bitmap: every port is privileged in ring 3 */
	gdt[5] = seg_desc((uint32_t)&tss, sizeof tss - 1, 0x89, 0x0);
	struct {
		uint16_t limit;
		uint32_t base;
	} __attribute__((packed)) gdtr = {sizeof gdt - 1, (uint32_t)gdt};
	__asm__ volatile("lgdt %0\n\t"
			 "ljmp %1, $1f\n"
			 "1:\n\t"
			 "mov %2, %%ax\n\t"
			 "mov %%ax, %%ds\n\t"
			 "mov %%ax, %%es\n\t"
			 "mov %%ax, %%fs\n\t"
			 "mov %%ax, %%gs\n\t"
			 "mov %%ax, %%ss\n\t"
			 "mov %3, %%ax\n\t"
			 "ltr %%ax"
			 :
			 : "m"(gdtr), "i"(KCODE), "i"(KDATA), "i"(TSS_SEL)
			 : "eax", "memory");
}

extern const uint32_t isr_table[48];
extern void isr_syscall(void);
extern void isr_return(void);

static uint64_t gate(uint32_t handler, uint32_t dpl)
{
	/* 32-bit interrupt gate: IF cleared on entry, so the kernel runs with interrupts off */
	return (uint64_t)(handler & 0xffff) | ((uint64_t)KCODE << 16) | ((uint64_t)(0x8e | (dpl << 5)) << 40) |
	       ((uint64_t)(handler >> 16) << 48);
}

static void idt_init(void)
{
	for (int i = 0; i < 48; i++)
		idt[i] = gate(isr_table[i], 0);
	idt[0x80] = gate((uint32_t)isr_syscall, 3);
	struct {
		uint16_t limit;
		uint32_t base;
	} __attribute__((packed)) idtr = {sizeof idt - 1, (uint32_t)idt};
	__asm__ volatile("lidt %0" : : "m"(idtr));
}

/* ---- 8259 PIC and 8254 PIT ------------------------------------------------------------- */

#define PIC1 0x20
#define PIC2 0xa0
#define IRQ_BASE 0x20

static void pic_init(void)
{
	outb(PIC1, 0x11); /* ICW1: edge, cascade, ICW4 */
	outb(PIC2, 0x11);
	outb(PIC1 + 1, IRQ_BASE); /* ICW2: vectors */
	outb(PIC2 + 1, IRQ_BASE + 8);
	outb(PIC1 + 1, 0x04); /* ICW3: slave on IRQ 2 */
	outb(PIC2 + 1, 0x02);
	outb(PIC1 + 1, 0x01); /* ICW4: 8086 mode, normal EOI */
	outb(PIC2 + 1, 0x01);
	outb(PIC1 + 1, (uint8_t)~((1 << 0) | (1 << 2) | (1 << 4))); /* timer, cascade, COM1 */
	outb(PIC2 + 1, 0xff);
}

/* A spurious IRQ 7/15 is not in service: no EOI for it (OCW3 reads the ISR). */
static int pic_spurious(int irq)
{
	uint16_t port = irq < 8 ? PIC1 : PIC2;
	outb(port, 0x0b);
	return !(inb(port) & 0x80);
}

static void pic_eoi(int irq)
{
	if (irq >= 8)
		outb(PIC2, 0x20);
	outb(PIC1, 0x20);
}

#define PIT_HZ 100
#define PIT_DIVISOR 11932 /* 1193182 Hz / 11932 = 100.0 Hz */
#ifndef PIT_MODE
#define PIT_MODE 2 /* rate generator; 3 (square wave) works too: the tests build both */
#endif

static void pit_init(void)
{
	outb(0x43, 0x30 | (PIT_MODE << 1)); /* channel 0, lobyte/hibyte, PIT_MODE, binary */
	outb(0x40, PIT_DIVISOR & 0xff);
	outb(0x40, PIT_DIVISOR >> 8);
}

/* ---- physical frames and paging -------------------------------------------------------- */

#define PAGE 4096u
#define PTE_P 0x1u
#define PTE_W 0x2u
#define PTE_U 0x4u
#define KERNEL_MAP_END 0x800000u /* identity-mapped, supervisor, in every directory */
#define FRAMES_START 0x400000u
#define FRAMES_END KERNEL_MAP_END

extern char __kernel_end[], __user_start[], __user_end[], __user_phys[];

static uint32_t next_frame = FRAMES_START;
static uint32_t kernel_pd;
static uint32_t kernel_pt[KERNEL_MAP_END >> 22];
static uint32_t user_code_pt, shared_pt, shared_frame;
static uint32_t demand_frames;

static uint32_t frame_alloc(void)
{
	if (next_frame >= FRAMES_END)
		panic("out of physical frames");
	uint32_t f = next_frame;
	next_frame += PAGE;
	memset((void *)f, 0, PAGE);
	return f;
}

static uint32_t *pde_of(uint32_t pd, uint32_t va) { return (uint32_t *)pd + (va >> 22); }

/* The page table entry for va in directory pd, allocating the table (user-accessible) if asked. */
static uint32_t *pte_of(uint32_t pd, uint32_t va, int create)
{
	uint32_t *pde = pde_of(pd, va);
	if (!(*pde & PTE_P)) {
		if (!create)
			return 0;
		*pde = frame_alloc() | PTE_P | PTE_W | PTE_U;
	}
	return (uint32_t *)(*pde & ~0xfffu) + ((va >> 12) & 0x3ff);
}

static uint32_t new_directory(void)
{
	uint32_t pd = frame_alloc();
	for (uint32_t i = 0; i < (KERNEL_MAP_END >> 22); i++)
		((uint32_t *)pd)[i] = kernel_pt[i] | PTE_P | PTE_W;
	*pde_of(pd, USER_CODE) = user_code_pt | PTE_P | PTE_W | PTE_U;
	*pde_of(pd, USER_SHARED) = shared_pt | PTE_P | PTE_W | PTE_U;
	return pd;
}

static void paging_init(void)
{
	if ((uint32_t)__kernel_end > FRAMES_START)
		panic("kernel image overlaps the frame pool");
	for (uint32_t i = 0; i < (KERNEL_MAP_END >> 22); i++) {
		kernel_pt[i] = frame_alloc();
		for (uint32_t j = 0; j < 1024; j++) {
			uint32_t pa = (i << 22) | (j << 12);
			((uint32_t *)kernel_pt[i])[j] = pa ? pa | PTE_P | PTE_W : 0; /* page 0 unmapped */
		}
	}
	kernel_pd = frame_alloc();
	for (uint32_t i = 0; i < (KERNEL_MAP_END >> 22); i++)
		((uint32_t *)kernel_pd)[i] = kernel_pt[i] | PTE_P | PTE_W;
	/* The user image: shared, read-only, user. */
	user_code_pt = frame_alloc();
	uint32_t user_size = (uint32_t)(__user_end - __user_start);
	for (uint32_t off = 0; off < user_size; off += PAGE)
		((uint32_t *)user_code_pt)[(off >> 12) & 0x3ff] = ((uint32_t)__user_phys + off) | PTE_P | PTE_U;
	shared_pt = frame_alloc();
	shared_frame = frame_alloc();
	((uint32_t *)shared_pt)[(USER_SHARED >> 12) & 0x3ff] = shared_frame | PTE_P | PTE_W | PTE_U;
	write_cr3(kernel_pd);
	uint32_t cr0;
	__asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
	cr0 |= 0x80010000u; /* PG, WP */
	__asm__ volatile("mov %0, %%cr0" : : "r"(cr0) : "memory");
}

/* ---- tasks ------------------------------------------------------------------------------- */

/* What isr_common leaves on the stack (boot.S); ring-3 entries add useresp/ss. */
struct frame {
	uint32_t gs, fs, es, ds;
	uint32_t edi, esi, ebp, esp_dummy, ebx, edx, ecx, eax;
	uint32_t vector, err;
	uint32_t eip, cs, eflags, useresp, ss;
};

enum { DEAD, RUNNABLE };

#define NTASKS 4 /* 0: the kernel's idle loop, 1-3: A, B, C */
#define KSTACK_SIZE 8192

struct task {
	const char *name;
	int state;
	struct frame *frame; /* saved state, on this task's kernel stack (idle: the boot stack) */
	uint32_t cr3;
	uint32_t kstack_top;
	const char *fate;
	int exit_status;
};

static struct task tasks[NTASKS];
static uint8_t kstacks[NTASKS][KSTACK_SIZE] __attribute__((aligned(16)));
static struct task *current = &tasks[0];
static volatile uint32_t ticks;
static uint32_t preemptions, syscalls;
static struct shared_page *shared;

void task_a(void);
void task_b(void);
void task_c(void);
extern char user_div_insn[], user_cli_insn[];

static void task_create(int id, const char *name, void (*entry)(void))
{
	struct task *t = &tasks[id];
	t->name = name;
	t->cr3 = new_directory();
	uint32_t stack_page = USER_STACK_TOP - PAGE;
	uint32_t stack_frame = frame_alloc();
	*pte_of(t->cr3, stack_page, 1) = stack_frame | PTE_P | PTE_W | PTE_U;
	t->kstack_top = (uint32_t)&kstacks[id][KSTACK_SIZE];
	struct frame *f = (struct frame *)(t->kstack_top - sizeof(struct frame));
	memset(f, 0, sizeof *f);
	f->gs = f->fs = f->es = f->ds = UDATA;
	f->eip = (uint32_t)entry;
	f->cs = UCODE;
	f->eflags = 0x202; /* IF, IOPL 0 */
	f->useresp = USER_STACK_TOP - 16;
	f->ss = UDATA;
	t->frame = f;
	t->state = RUNNABLE;
	kprintf("[kernel] task %d (%s): page directory at 0x%x, user stack frame 0x%x\n", id, name, t->cr3,
		stack_frame);
}

static void switch_to(struct task *t)
{
	current = t;
	if (t == &tasks[0]) {
		write_cr3(kernel_pd);
	} else {
		tss.esp0 = t->kstack_top;
		write_cr3(t->cr3);
	}
}

/* Round robin over the user tasks after the current one; the idle loop when none can run. */
static void schedule(void)
{
	int cur = (int)(current - tasks);
	for (int k = 1; k <= NTASKS - 1; k++) {
		int id = (cur + k - 1) % (NTASKS - 1) + 1;
		if (tasks[id].state == RUNNABLE) {
			switch_to(&tasks[id]);
			return;
		}
	}
	switch_to(&tasks[0]);
}

static void task_end(const char *fate)
{
	current->state = DEAD;
	current->fate = fate;
	shared->dead_mask |= 1u << (current - tasks);
	schedule();
}

/* ---- exceptions, interrupts, system calls ---------------------------------------------- */

static const char *const exc_names[32] = {
	"divide error (#DE)", "debug (#DB)", "NMI", "breakpoint (#BP)", "overflow (#OF)", "bound (#BR)",
	"invalid opcode (#UD)", "no FPU (#NM)", "double fault (#DF)", "coprocessor overrun", "invalid TSS (#TS)",
	"segment not present (#NP)", "stack fault (#SS)", "general protection (#GP)", "page fault (#PF)",
	"reserved 15", "x87 error (#MF)", "alignment check (#AC)", "machine check (#MC)", "SIMD (#XM)",
};

static const char *where(uint32_t eip)
{
	if (eip == (uint32_t)user_div_insn)
		return "at A's div instruction";
	if (eip == (uint32_t)user_cli_insn)
		return "at B's cli instruction";
	return "at an unexpected address";
}

static void exception(struct frame *f)
{
	const char *name = f->vector < 20 ? exc_names[f->vector] : "reserved exception";
	if ((f->cs & 3) != 3) {
		uart_flush_polled();
		kprintf("[kernel] %s in ring 0: error 0x%x eip 0x%x cr2 0x%x\n", name, f->err, f->eip, read_cr2());
		panic("exception in the kernel");
	}
	if (f->vector == 14) {
		uint32_t addr = read_cr2();
		if (!(f->err & PTE_P) && addr >= USER_HEAP && addr < USER_HEAP_END) {
			uint32_t *pte = pte_of(current->cr3, addr, 1);
			*pte = frame_alloc() | PTE_P | PTE_W | PTE_U;
			demand_frames++;
			kprintf("[kernel] #PF in task %s at 0x%x (user %s, not present): mapped a zeroed frame\n",
				current->name, addr, f->err & 2 ? "write" : "read");
			return; /* the instruction runs again */
		}
		kprintf("[kernel] task %s: page fault at 0x%x (error 0x%x), killed\n", current->name, addr, f->err);
		task_end("killed by #PF");
		return;
	}
	kprintf("[kernel] task %s: %s, error code 0x%x, %s in ring 3: task killed\n", current->name, name, f->err,
		where(f->eip));
	task_end(f->vector == 0 ? "killed by #DE" : f->vector == 13 ? "killed by #GP" : "killed");
}

static void irq(struct frame *f)
{
	int line = (int)f->vector - IRQ_BASE;
	if ((line == 7 || line == 15) && pic_spurious(line)) {
		if (line == 15)
			outb(PIC1, 0x20); /* the master did see IRQ 2 */
		return;
	}
	pic_eoi(line);
	if (line == 4) {
		uart_irq();
	} else if (line == 0) {
		ticks++;
		/* Preempt ring-3 code (and the idle loop); a task waiting inside the kernel keeps the CPU. */
		if (current == &tasks[0] || (f->cs & 3) == 3) {
			struct task *was = current;
			schedule();
			if (was != &tasks[0] && current != was)
				preemptions++;
		}
	}
}

static int user_range_ok(uint32_t p, uint32_t n)
{
	return n <= 4096 && p >= USER_CODE && p + n >= p && p + n <= USER_STACK_TOP;
}

static void syscall(struct frame *f)
{
	syscalls++;
	switch (f->eax) {
	case SYS_WRITE:
		if (!user_range_ok(f->ebx, f->ecx)) {
			f->eax = (uint32_t)-1;
			break;
		}
		console_write((const char *)f->ebx, f->ecx);
		f->eax = f->ecx;
		break;
	case SYS_TICKS:
		f->eax = ticks;
		break;
	case SYS_YIELD:
		f->eax = 0;
		schedule();
		break;
	case SYS_EXIT:
		kprintf("[kernel] task %s exited with status %d\n", current->name, (int)f->ebx);
		current->exit_status = (int)f->ebx;
		task_end("exited");
		break;
	default:
		f->eax = (uint32_t)-1;
		break;
	}
}

/*
 * Called by isr_common with the frame it built; returns the frame to resume.
 * Only an outermost entry (from ring 3, or into the idle loop) may switch
 * tasks: an interrupt taken while a system call waits for the UART (sti; hlt)
 * nests on that task's kernel stack and must return to it.
 */
struct frame *isr_dispatch(struct frame *f)
{
	int outermost = (f->cs & 3) == 3 || current == &tasks[0];
	if (outermost)
		current->frame = f;
	if (f->vector < 32)
		exception(f);
	else if (f->vector < 48)
		irq(f);
	else
		syscall(f);
	return outermost ? current->frame : f;
}

/* ---- boot -------------------------------------------------------------------------------- */

static int str_eq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

void kmain(uint32_t magic, uint32_t mbi)
{
	(void)mbi;
	uart_init();
	kprintf("[kernel] gdbemu test kernel: multitasking on the PC board\n");
	if (magic != 0x2badb002)
		panic("not started by a multiboot loader");
	kprintf("[kernel] multiboot magic ok\n");
	gdt_init();
	idt_init();
	kprintf("[kernel] GDT (ring 0 and ring 3 segments, TSS) and IDT loaded\n");
	pic_init();
	kprintf("[kernel] 8259 PIC remapped to 0x20/0x28; IRQ 0, 2, 4 unmasked\n");
	pit_init();
	kprintf("[kernel] PIT channel 0: mode %d, divisor %d (%d Hz)\n", PIT_MODE, PIT_DIVISOR, PIT_HZ);
	paging_init();
	kprintf("[kernel] paging on: 0-8 MiB identity-mapped for the kernel, user image at 0x%x (%u bytes)\n",
		USER_CODE, (uint32_t)(__user_end - __user_start));
	shared = (struct shared_page *)shared_frame;
	tasks[0].name = "idle";
	tasks[0].state = RUNNABLE;
	task_create(TASK_A, "A", task_a);
	task_create(TASK_B, "B", task_b);
	task_create(TASK_C, "C", task_c);
	uart_irq_mode = 1;
	kprintf("[kernel] COM1 output is interrupt-driven from here on (%s)\n",
		uart_fifo_depth > 1 ? "16-byte FIFO" : "no FIFO");
	kprintf("[kernel] interrupts on; the first timer tick starts the tasks\n");
	__asm__ volatile("sti");

	/* The idle loop (task 0): the timer switches away from it while any task can run. */
	for (;;) {
		__asm__ volatile("cli");
		int alive = 0;
		for (int i = 1; i < NTASKS; i++)
			alive |= tasks[i].state == RUNNABLE;
		if (!alive)
			break;
		__asm__ volatile("sti; hlt" : : : "memory");
	}
	__asm__ volatile("sti");

	uint32_t bad = 0;
	kprintf("[kernel] all tasks have ended: A %s, B %s, C %s (status %d)\n", tasks[1].fate, tasks[2].fate,
		tasks[3].fate, tasks[3].exit_status);
	bad += !str_eq(tasks[1].fate, "killed by #DE");
	bad += !str_eq(tasks[2].fate, "killed by #GP");
	bad += !str_eq(tasks[3].fate, "exited") || tasks[3].exit_status != 7;
	kprintf("[kernel] heap frames mapped on demand: %u\n", demand_frames);
	bad += demand_frames != 3;
	kprintf("[kernel] timer preemptions of ring-3 code: %s\n", preemptions ? "yes" : "none");
	bad += preemptions == 0;
	kprintf("[kernel] COM1 interrupts: %s\n", uart_interrupts ? "yes" : "none");
	bad += uart_interrupts == 0;
	kprintf("[kernel] checks failed in ring 3: %u\n", shared->failures);
	bad += shared->failures;
	kprintf("[kernel] verdict: %s\n", bad ? "FAIL" : "PASS");
	/* Drain the buffer through THRE interrupts, then leave through isa-debug-exit. */
	while (tx_head != tx_tail)
		__asm__ volatile("hlt");
	finish(bad ? 1 : 0);
}

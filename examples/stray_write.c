/*
 * stray_write.c -- a tiny multiboot kernel with a use-after-free that only a
 * watchpoint finds quickly.  examples/test_stray_write.py is its regression test.
 *
 * The kernel has a pool of `struct stats` objects with a free list (freed
 * objects are reused last-in first-out, as most allocators do).  Every change
 * of an object's `count` is meant to go through owner_update().
 *
 *   1. The "logger" allocates an object, counts 7 events, and schedules a
 *      deferred flush of its statistics (pending_flush = obj).
 *   2. The logger shuts down and frees its object.
 *      THE BUG: obj_free() does not cancel the scheduled flush, so
 *      pending_flush is now a dangling pointer.
 *   3. The "netdev" allocates an object -- the very same slot -- and counts
 *      packets in rounds, through owner_update().
 *   4. After round 1 the deferred work runs: flush_stats() writes
 *      `pending_flush->count = 0` through the stale pointer -- into the
 *      netdev's counter.  The netdev's total comes out short.
 *
 * Build (gdbemu.testing.build_kernel does this):
 *   gcc -m32 -ffreestanding -fno-pic -fno-pie -nostdlib -g -O0 [-DFIXED] -c stray_write.c
 *   ld -m elf_i386 -T stray_write.ld stray_write.o -o stray_write.elf
 * -DFIXED builds the fixed variant: obj_free() cancels the pending flush.
 *
 * The kernel command line (gdbemu -append) is echoed on COM1; "hang" makes
 * the kernel spin forever before exiting (for tests of timeouts).  Exit:
 * isa-debug-exit with 0 when the netdev's total is right (gdbemu's status 1),
 * 1 when it is not (status 3).
 */

#define COM1 0x3F8
#define NOBJ 4
#define ROUNDS 5

/* ---- the multiboot header and the entry point ------------------------------------------ */
__asm__(
    ".section .multiboot, \"a\"\n"
    ".align 4\n"
    ".long 0x1BADB002, 0x00000003, -(0x1BADB002 + 0x00000003)\n"
    ".text\n"
    ".globl _start\n"
    "_start:\n"
    "    mov $stack_top, %esp\n"
    "    push %ebx\n" /* the multiboot information structure */
    "    call kmain\n"
    "    cli\n"
    "1:  hlt\n"
    "    jmp 1b\n"
    ".bss\n"
    ".align 16\n"
    "    .skip 16384\n"
    "stack_top:\n"
    ".text\n");

/* ---- port I/O and the console ------------------------------------------------------------- */
static inline void outb(unsigned short port, unsigned char value)
{
    __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline unsigned char inb(unsigned short port)
{
    unsigned char value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
    return value;
}

void serial_init(void)
{
    outb(COM1 + 1, 0x00); /* no interrupts */
    outb(COM1 + 3, 0x80); /* DLAB */
    outb(COM1 + 0, 0x01); /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); /* 8N1 */
}

void putc(char c)
{
    while (!(inb(COM1 + 5) & 0x20))
        ;
    outb(COM1, (unsigned char)c);
}

void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

void putnum(int n)
{
    char buf[12];
    int i = 0;
    unsigned int u = n < 0 ? -(unsigned int)n : (unsigned int)n;
    if (n < 0)
        putc('-');
    do {
        buf[i++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (i)
        putc(buf[--i]);
}

void exit_qemu(int code)
{
    outb(0xF4, (unsigned char)code); /* isa-debug-exit: gdbemu exits with (code << 1) | 1 */
}

/* ---- the objects -------------------------------------------------------------------------- */
struct stats {
    const char *owner;
    int count;
    struct stats *next_free;
};

struct stats pool[NOBJ];
struct stats *free_list;
struct stats *pending_flush; /* deferred work: run_deferred() flushes this object's statistics */

void pool_init(void)
{
    int i;
    for (i = NOBJ - 1; i >= 0; i--) {
        pool[i].owner = "(free)";
        pool[i].next_free = free_list;
        free_list = &pool[i];
    }
}

/* The one function meant to change ->count. */
void owner_update(struct stats *s, int count)
{
    s->count = count;
}

struct stats *obj_alloc(const char *owner)
{
    struct stats *s = free_list;
    free_list = s->next_free;
    s->next_free = 0;
    s->owner = owner;
    owner_update(s, 0);
    return s;
}

void obj_free(struct stats *s)
{
#ifdef FIXED
    if (pending_flush == s)
        pending_flush = 0; /* cancel the deferred work that points at the object */
#endif
    s->owner = "(free)";
    s->next_free = free_list;
    free_list = s;
}

void schedule_flush(struct stats *s)
{
    pending_flush = s;
}

/* Deferred work: report an object's count and start it again from zero. */
void flush_stats(struct stats *s)
{
    puts("flush: ");
    puts(s->owner);
    puts(" had ");
    putnum(s->count);
    puts("\n");
    s->count = 0; /* the stray write, when s is stale */
}

void run_deferred(void)
{
    struct stats *s = pending_flush;
    if (s) {
        pending_flush = 0;
        flush_stats(s);
    }
}

int has_word(const char *text, const char *word)
{
    const char *t, *w;
    for (; *text; text++) {
        for (t = text, w = word; *w && *t == *w; t++, w++)
            ;
        if (!*w)
            return 1;
    }
    return 0;
}

struct multiboot_info {
    unsigned int flags, mem_lower, mem_upper, boot_device, cmdline;
};

void kmain(struct multiboot_info *mbi)
{
    const char *cmdline = (mbi && (mbi->flags & 4)) ? (const char *)mbi->cmdline : "";
    struct stats *logger, *netdev;
    int round, expected = 0;

    serial_init();
    pool_init();
    puts("stray-write example kernel\ncmdline: ");
    puts(cmdline);
    puts("\n");
    if (has_word(cmdline, "hang")) {
        puts("hanging as asked\n");
        for (;;)
            ;
    }

    logger = obj_alloc("logger");
    owner_update(logger, 7);
    schedule_flush(logger);
    obj_free(logger); /* BUG (unless FIXED): the flush stays scheduled */

    netdev = obj_alloc("netdev"); /* the logger's slot, reused */
    for (round = 1; round <= ROUNDS; round++) {
        owner_update(netdev, netdev->count + round);
        expected += round;
        run_deferred();
        puts("round ");
        putnum(round);
        puts(": netdev count ");
        putnum(netdev->count);
        puts("\n");
    }
    if (netdev->count == expected) {
        puts("ok\n");
        exit_qemu(0);
    }
    puts("FAIL: netdev count ");
    putnum(netdev->count);
    puts(", expected ");
    putnum(expected);
    puts("\n");
    exit_qemu(1);
}

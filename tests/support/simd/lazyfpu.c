/* Lazy FPU context switching between two tasks with #NM (tests/guests/test_simd_guest.py).
   Two cooperative tasks keep values in XMM registers and MMX/x87 state across switches;
   the switch only sets CR0.TS; the #NM handler (vector 7) does CLTS, FXSAVEs the previous
   owner's registers and FXRSTORs the current task's.  Printed: each task's checks and the
   number of #NM faults, compared with QEMU. */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

static inline void outb(u8 v, u16 port) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static void puts_(const char *s) { while (*s) outb((u8)*s++, 0xE9); }
static void hex(const char *name, u32 v) {
    static const char d[] = "0123456789abcdef";
    char buf[9];
    for (int i = 7; i >= 0; i--, v >>= 4) buf[i] = d[v & 15];
    buf[8] = 0;
    puts_(name);
    puts_("=");
    puts_(buf);
    puts_("\n");
}

struct fxarea { u8 b[512]; } __attribute__((aligned(16)));
static struct fxarea fx[2];
static int current, owner = 0;
static u32 nm_count;
static u32 saved_esp[2];
static u32 stacks[2][2048] __attribute__((aligned(16)));

void nm_handler(void) {
    __asm__ volatile("clts");
    nm_count++;
    if (owner != current) {
        __asm__ volatile("fxsave %0" : "=m"(fx[owner]));
        __asm__ volatile("fxrstor %0" : : "m"(fx[current]));
        owner = current;
    }
}

/* switch_to(&save_esp, new_esp): callee-saved registers on the stack, then the stack pointer */
extern void switch_stacks(u32 *save, u32 next);
__asm__(
    ".globl switch_stacks\n"
    "switch_stacks:\n"
    "  movl 4(%esp), %eax\n"
    "  movl 8(%esp), %edx\n"
    "  pushl %ebp; pushl %ebx; pushl %esi; pushl %edi\n"
    "  movl %esp, (%eax)\n"
    "  movl %edx, %esp\n"
    "  popl %edi; popl %esi; popl %ebx; popl %ebp\n"
    "  ret\n"
    ".globl nm_stub\n"
    "nm_stub:\n"
    "  pushal\n"
    "  call nm_handler\n"
    "  popal\n"
    "  iret\n");
extern void nm_stub(void);

static void yield(void) {
    int from = current;
    current ^= 1;
    u32 cr0;
    __asm__ volatile("movl %%cr0, %0" : "=r"(cr0));
    __asm__ volatile("movl %0, %%cr0" : : "r"(cr0 | 8));  /* TS: the next FPU/SSE use faults */
    switch_stacks(&saved_esp[from], saved_esp[current]);
}

static u32 fails[2], rounds[2], done;

static void task(int id) {
    u32 pattern = 0x11111111u * (u32)(id + 1);
    for (int r = 0; r < 20; r++) {
        u32 in[4] __attribute__((aligned(16))) = {pattern, pattern + r, ~pattern, (u32)r};
        u32 out[4] __attribute__((aligned(16)));
        u64 mm = ((u64)pattern << 32) | (u32)r, mmout;
        __asm__ volatile("movdqa %0, %%xmm3" : : "m"(in));
        __asm__ volatile("movq %0, %%mm2" : : "m"(mm));
        yield();
        __asm__ volatile("movdqa %%xmm3, %0" : "=m"(out));
        __asm__ volatile("movq %%mm2, %0" : "=m"(mmout));
        __asm__ volatile("emms");
        for (int k = 0; k < 4; k++) fails[id] += out[k] != in[k];
        fails[id] += mmout != mm;
        rounds[id]++;
        if (r % 5 == 4) yield();  /* a switch with no FPU use in between: no #NM for it */
    }
    hex(id ? "task1_rounds" : "task0_rounds", rounds[id]);
    hex(id ? "task1_fails" : "task0_fails", fails[id]);
    if (++done == 2) {
        hex("nm_faults", nm_count);
        __asm__ volatile("outl %0, $0xf4" : : "a"(0));
    }
    for (;;) yield();
}

static void task1_entry(void) { task(1); }

struct idt_entry { u16 off_lo, sel; u8 zero, flags; u16 off_hi; } __attribute__((packed));
static struct idt_entry idt[32];
static struct { u16 limit; u32 base; } __attribute__((packed)) idtr = {sizeof idt - 1, 0};

int main(void) {
    u16 cs;
    __asm__ volatile("movw %%cs, %0" : "=r"(cs));
    u32 h = (u32)nm_stub;
    idt[7] = (struct idt_entry){(u16)h, cs, 0, 0x8E, (u16)(h >> 16)};
    idtr.base = (u32)idt;
    __asm__ volatile("lidt %0" : : "m"(idtr));
    __asm__ volatile("fxsave %0" : "=m"(fx[1]));  /* task 1 starts from the initial state */
    u32 *sp = &stacks[1][2047];  /* task1_entry starts as if called: ESP = 12 mod 16 */
    *--sp = (u32)task1_entry;  /* ret address of switch_stacks */
    for (int i = 0; i < 4; i++) *--sp = 0;
    saved_esp[1] = (u32)sp;
    puts_("lazyfpu\n");
    task(0);  /* on the boot stack; the last task to finish ends the run */
    return 0;
}

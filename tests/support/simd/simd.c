/* Integer code as gcc -O2 -msse2 compiles it (tests/guests/test_simd_guest.py): loops gcc
   vectorizes (copies, fills, sums, compares, min/max, shifts, byte maps), struct copies, and
   bit counts; results printed on port 0xE9 and compared with QEMU's. */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef int i32;
typedef short i16;
typedef signed char i8;

static inline void outb(u8 v, u16 port) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static void puts_(const char *s) { while (*s) outb((u8)*s++, 0xE9); }
static void hex(const char *name, u64 v) {
    static const char d[] = "0123456789abcdef";
    char buf[17];
    for (int i = 15; i >= 0; i--, v >>= 4) buf[i] = d[v & 15];
    buf[16] = 0;
    puts_(name);
    puts_("=");
    puts_(buf);
    puts_("\n");
}

/* libgcc's, for the -msse2 build (no POPCNT instruction); not linked from libgcc (-m32 multilib). */
int __popcountsi2(u32 x) {
    int n = 0;
    for (; x; x &= x - 1) n++;
    return n;
}

void *memcpy(void *dst, const void *src, unsigned n) {
    u8 *d = dst;
    const u8 *s = src;
    for (unsigned i = 0; i < n; i++) d[i] = s[i];
    return dst;
}
void *memset(void *dst, int c, unsigned n) {
    u8 *d = dst;
    for (unsigned i = 0; i < n; i++) d[i] = (u8)c;
    return dst;
}

#define N 1024
static u8 a8[N] __attribute__((aligned(16))), b8[N] __attribute__((aligned(16))), c8[N + 32];
static u16 a16[N], b16[N];
static i32 a32[N] __attribute__((aligned(16))), b32[N] __attribute__((aligned(16))), c32[N];
static u64 a64[N / 2];

static u32 seed = 12345;
static u32 rnd(void) { seed = seed * 1103515245u + 12345u; return seed >> 7; }

struct big { u32 w[13]; u8 tail[7]; };
static struct big s1, s2;

__attribute__((noinline)) static u64 fold8(const u8 *p, unsigned n) {
    u64 h = 0;
    for (unsigned i = 0; i < n; i++) h = h * 31 + p[i];
    return h;
}
__attribute__((noinline)) static u64 fold32(const i32 *p, unsigned n) {
    u64 h = 0;
    for (unsigned i = 0; i < n; i++) h = h * 1000003u + (u32)p[i];
    return h;
}

__attribute__((noinline)) static void copies(void) {
    for (int i = 0; i < N; i++) a8[i] = (u8)rnd();
    memcpy(b8, a8, N);
    hex("copy", fold8(b8, N));
    memcpy(c8 + 3, a8 + 1, 700);  /* unaligned both sides */
    hex("copy_unaligned", fold8(c8, N));
    memset(c8 + 5, 0xA5, 333);
    hex("memset", fold8(c8, N));
    for (int i = 0; i < 13; i++) s1.w[i] = rnd();
    for (int i = 0; i < 7; i++) s1.tail[i] = (u8)rnd();
    s2 = s1;
    hex("struct", fold8((const u8 *)&s2, sizeof s2));
}

__attribute__((noinline)) static void arith(void) {
    for (int i = 0; i < N; i++) { a32[i] = (i32)rnd() - 0x1000000; b32[i] = (i32)rnd(); }
    for (int i = 0; i < N; i++) c32[i] = a32[i] + b32[i];
    hex("add32", fold32(c32, N));
    for (int i = 0; i < N; i++) c32[i] = a32[i] * b32[i];
    hex("mul32", fold32(c32, N));
    for (int i = 0; i < N; i++) c32[i] = (a32[i] > b32[i]) ? a32[i] : b32[i];
    hex("max32", fold32(c32, N));
    for (int i = 0; i < N; i++) c32[i] = (a32[i] >> 3) ^ (b32[i] << 5) ^ (i32)((u32)b32[i] >> 7);
    hex("shift32", fold32(c32, N));
    u32 sum = 0;
    for (int i = 0; i < N; i++) sum += (u32)a32[i];
    hex("sum32", sum);
    i32 cnt = 0;
    for (int i = 0; i < N; i++) cnt += a32[i] == b32[i] || (a32[i] & 0xFF) == 7;
    hex("count_eq", (u32)cnt);
    for (int i = 0; i < N; i++) { a16[i] = (u16)rnd(); b16[i] = (u16)rnd(); }
    for (int i = 0; i < N; i++) a16[i] = (u16)(a16[i] + b16[i] * 3);
    u64 h16 = 0;
    for (int i = 0; i < N; i++) h16 = h16 * 7 + a16[i];
    hex("mix16", h16);
    for (int i = 0; i < N; i++) b8[i] = (u8)rnd();
    for (int i = 0; i < N; i++) a8[i] = (u8)(a8[i] > b8[i] ? a8[i] - b8[i] : b8[i] - a8[i]);
    hex("absdiff8", fold8(a8, N));
    for (int i = 0; i < N; i++) b8[i] = (u8)((b8[i] & 0x0F) | (a8[i] << 4));
    hex("nibble8", fold8(b8, N));
    u32 s8 = 0;
    for (int i = 0; i < N; i++) s8 += a8[i];
    hex("sum8", s8);
    for (int i = 0; i < N / 2; i++) a64[i] = ((u64)rnd() << 32 | rnd()) + (u64)i * 0x100000001ull;
    u64 x64 = 0;
    for (int i = 0; i < N / 2; i++) x64 ^= a64[i] + (a64[i] >> 11);
    hex("xor64", x64);
    i16 m16 = 0x7FFF;
    for (int i = 0; i < N; i++) { i16 v = (i16)a16[i]; if (v < m16) m16 = v; }
    hex("min16", (u16)m16);
}

__attribute__((noinline)) static unsigned my_strlen(const char *s) {
    unsigned n = 0;
    while (s[n]) n++;
    return n;
}

__attribute__((noinline)) static void bits(void) {
    u32 pc = 0, ctz = 0, clz = 0;
    for (int i = 0; i < 512; i++) {
        u32 v = rnd() | 1u << (i & 31);
        pc += (u32)__builtin_popcount(v);
        ctz += (u32)__builtin_ctz(v);
        clz += (u32)__builtin_clz(v);
    }
    hex("popcount", pc);
    hex("ctz", ctz);
    hex("clz", clz);
    static char text[300];
    for (int i = 0; i < 299; i++) text[i] = (char)('a' + i % 26);
    text[257] = 0;
    hex("strlen", my_strlen(text + 3));
}

int main(void) {
    puts_("simd guest\n");
    copies();
    arith();
    bits();
    puts_("done\n");
    return 0;
}

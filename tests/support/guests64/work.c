/*
 * work.c -- a freestanding 64-bit workload for the translator, run twice: natively
 * on the host (the reference) and as a guest in long mode (tests/unit/test_x64_cguest.py).
 * Every result goes into results[]; the test compares the two arrays.
 *
 * What gcc makes of it at -O0/-O2 exercises the 64-bit code generator broadly:
 * 64-bit arithmetic and shifts, mul/div by constants and by variables (signed
 * and unsigned), RIP-relative data, jump tables (switch), function pointers,
 * recursion, struct copies, memcpy/memset, byte/word/dword/qword accesses,
 * r8-r15 under register pressure, setcc/cmov, bit scans.
 */
typedef unsigned long u64;
typedef long i64;
typedef unsigned int u32;
typedef int i32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef short i16;
typedef signed char i8;

#define N_RESULTS 64
u64 results[N_RESULTS];
static int nres;

static void put(u64 v) { results[nres++ % N_RESULTS] ^= v + (u64)nres * 0x9E3779B97F4A7C15UL; }

static u64 rng_state = 0x123456789ABCDEF1UL;
static u64 rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

void *memcpy(void *d, const void *s, u64 n) {
    u8 *dd = d;
    const u8 *ss = s;
    while (n--) *dd++ = *ss++;
    return d;
}
void *memset(void *d, int c, u64 n) {
    u8 *dd = d;
    while (n--) *dd++ = (u8)c;
    return d;
}

static u64 crc64(const u8 *p, u64 n) {
    u64 crc = ~0UL;
    for (u64 i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xC96C5795D7870F42UL & -(crc & 1));
    }
    return ~crc;
}

static i64 sdiv_mix(i64 a, i64 b) {
    if (b == 0 || (a == (i64)0x8000000000000000UL && b == -1)) return 0;
    return a / b + a % b * 3 + (a / 7) - (a % 13) + (i64)((u64)a / 10);
}

static u32 divs32(u32 a, u32 b) { return b ? a / b + a % b : 0; }

static int classify(u64 v) {
    switch (v % 11) {
    case 0: return 17;
    case 1: return (int)(v >> 60);
    case 2: return -5;
    case 3: { int c = 0; while (v) { v &= v - 1; c++; } return c; }
    case 4: return (int)__builtin_ctzl(v | 1UL << 63);
    case 5: return (int)__builtin_clzl(v | 1);
    case 6: return (int)(v & 0xFF) * 3;
    case 7: return (int)(i16)v;
    case 8: return (int)(i8)(v >> 8);
    case 9: return 1000;
    default: return (int)(v % 1000003);
    }
}
struct big { u64 a, b, c; u32 d; u16 e; u8 f; i64 g[5]; };

static struct big make_big(u64 seed) {
    struct big s;
    s.a = seed; s.b = seed * 3; s.c = ~seed; s.d = (u32)(seed >> 7); s.e = (u16)seed; s.f = (u8)(seed >> 3);
    for (int i = 0; i < 5; i++) s.g[i] = (i64)(seed << i) - 77;
    return s;
}

static u64 fold_big(struct big s) {
    u64 r = s.a ^ s.b ^ s.c ^ s.d ^ s.e ^ s.f;
    for (int i = 0; i < 5; i++) r = r * 31 + (u64)s.g[i];
    return r;
}

static u64 fib(int n) { return n < 2 ? (u64)n : fib(n - 1) + fib(n - 2); }

static u64 op_add(u64 a, u64 b) { return a + b; }
static u64 op_mul(u64 a, u64 b) { return a * b; }
static u64 op_rot(u64 a, u64 b) { return a << (b & 63) | a >> (-b & 63); }
static u64 op_sar(u64 a, u64 b) { return (u64)((i64)a >> (b & 63)); }
static u64 (*const ops[])(u64, u64) = {op_add, op_mul, op_rot, op_sar};

static u64 many_regs(u64 a, u64 b, u64 c, u64 d, u64 e, u64 f, u64 g, u64 h) {
    u64 x1 = a * b, x2 = c ^ d, x3 = e + f, x4 = g - h, x5 = a + h, x6 = b ^ g, x7 = c * f, x8 = d - e;
    for (int i = 0; i < 20; i++) {
        x1 += x2 >> 3; x2 ^= x3 << 5; x3 -= x4; x4 = x4 * 7 + x5; x5 ^= x6 >> 11;
        x6 += x7; x7 = x7 * 13 ^ x8; x8 += x1;
    }
    return x1 ^ x2 ^ x3 ^ x4 ^ x5 ^ x6 ^ x7 ^ x8;
}

static u8 buf[4096];
static u64 qbuf[256];

void work(void) {
    for (int i = 0; i < (int)sizeof buf; i++) buf[i] = (u8)rnd();
    put(crc64(buf, sizeof buf));
    for (int i = 0; i < 200; i++) {
        i64 a = (i64)rnd(), b = (i64)(rnd() >> (rnd() & 63));
        put((u64)sdiv_mix(a, b));
        put(divs32((u32)rnd(), (u32)(rnd() >> 40)));
        put((u64)(i64)classify(rnd()));
        put(ops[i & 3](rnd(), rnd()));
        u64 x = rnd(), y = rnd();
        put(x < y ? x - y : y * 5);
        put((i64)x < (i64)y);
        put((unsigned __int128)x * y >> 64);
        put((u64)(((__int128)(i64)x * (i64)y) >> 64));
    }
    put(fib(20));
    struct big s = make_big(rnd());
    struct big t = s;
    t.g[2] ^= 5;
    put(fold_big(s) ^ fold_big(t));
    memset(qbuf, 0xA5, sizeof qbuf);
    memcpy(buf + 3, qbuf, 1000);
    put(crc64(buf, 1100));
    for (int i = 0; i < 256; i++) qbuf[i] = rnd() % (u64)(i + 1);
    u64 acc = 0;
    for (int i = 0; i < 256; i++)
        for (int j = i + 1; j < 256; j++)
            if (qbuf[j] < qbuf[i]) { u64 t2 = qbuf[i]; qbuf[i] = qbuf[j]; qbuf[j] = t2; }
    for (int i = 0; i < 256; i++) acc = acc * 1000003 ^ qbuf[i];
    put(acc);
    put(many_regs(rnd(), rnd(), rnd(), rnd(), rnd(), rnd(), rnd(), rnd()));
    put((u64)nres);
}

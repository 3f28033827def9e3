/* SSE floating point the way gcc -m32 -O2 -msse4.1 -mfpmath=sse compiles it (scalar double and
 * float arithmetic in XMM registers, conversions, comparisons through ucomisd/comisd) plus the
 * packed forms through GCC's vector types and __builtin_ia32_* (SSE, SSE2, SSE3, SSE4.1), in
 * every MXCSR rounding mode, with DAZ/FTZ, and the MXCSR flags each operation leaves.  Prints
 * every result's bits on port 0xE9; tests/guests/test_sse_fp_guest.py runs it on gdbemu and on
 * QEMU (-cpu max) and compares the text. */

typedef float v4sf __attribute__((vector_size(16)));
typedef double v2df __attribute__((vector_size(16)));
typedef int v4si __attribute__((vector_size(16)));

static inline void outb(unsigned short port, unsigned char v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }

static void puts_(const char *s) { while (*s) outb(0xE9, (unsigned char)*s++); }

static void hex(unsigned long long v, int digits) {
    static const char d[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--) outb(0xE9, (unsigned char)d[(v >> (4 * i)) & 15]);
}

static void name(const char *n) { puts_(n); outb(0xE9, '='); }
static void nl(void) { outb(0xE9, '\n'); }

static void show_d(const char *n, double x) {
    union { double d; unsigned long long u; } u = {x};
    name(n); hex(u.u, 16); nl();
}

static void show_f(const char *n, float x) {
    union { float f; unsigned u; } u = {x};
    name(n); hex(u.u, 8); nl();
}

static void show_i(const char *n, unsigned v) { name(n); hex(v, 8); nl(); }

static void show_v(const char *n, v4si v) {
    name(n);
    for (int i = 3; i >= 0; i--) hex((unsigned)v[i], 8);
    nl();
}

#define SHOW_PS(n, x) show_v(n, (v4si)(x))
#define SHOW_PD(n, x) show_v(n, (v4si)(x))

static unsigned mxcsr(void) { return __builtin_ia32_stmxcsr(); }
static void set_mxcsr(unsigned v) { __builtin_ia32_ldmxcsr(v); }

/* The result and the MXCSR an operation leaves (flags cleared before it).  Operands are read from
 * volatile globals and the result stored to one, so the computation stays between LDMXCSR and STMXCSR. */
#define FLAGS(n, ...)                  \
    do {                               \
        set_mxcsr(base);               \
        sink = (v4si)(__VA_ARGS__);    \
        unsigned f_ = mxcsr();         \
        show_v(n, sink);               \
        show_i(n "_mxcsr", f_);        \
    } while (0)

volatile double va = 1.0, vb = 3.0, vc = -2.5, vtiny = 1e-310, vbig = 1.7e308, vneg = -7.75, vzero = 0.0;
volatile double vmin = 2.2250738585072014e-308, vthird = 0.3;
volatile double vhalf = 2.5, vmhalf = -3.5, vlarge = 3e9;
volatile float fa = 0.1f, fb = 3.0f, ftiny = 1e-40f, fbig = 3e38f;
volatile int vi = -123456789;
volatile v4sf pa = {1.0f, -2.5f, 1e-40f, 3e38f}, pb = {3.0f, 0.5f, 2.0f, 10.0f};
volatile v4sf pc = {0.1f, -0.0f, 7.5f, -1e-30f};
volatile v2df da = {1.0, -1e-310}, db = {3.0, 0.25};
volatile v4sf pr = {0.5f, 2.5f, -2.5f, 1.25f};
volatile v4sf pt = {1.2e-38f, 1e-37f, 0, 0};
volatile v4si ia = {1, -7, 16777217, 0x7fffffff};
volatile v4si sink;

static double poly(double x) { return ((x * 0.5 + 1.25) * x - 3.0) * x + 0.125; }

static void scalar(const char *mode) {
    puts_(mode); nl();
    show_d("div", va / vb);
    show_d("mul", va / vb * vc);
    show_d("sqrt", __builtin_sqrt(vb));
    show_d("poly", poly(vc));
    show_d("denormal", vtiny * 0.5);
    show_d("tinyadd", vtiny + vtiny * 0.75);
    show_d("overflow", vbig * 10.0);
    show_f("fdiv", fa / fb);
    show_f("fsqrt", __builtin_sqrtf(fb));
    show_f("d2f", (float)(va / vb));
    show_f("d2f_tiny", (float)vtiny);
    show_f("d2f_big", (float)vbig);
    show_d("f2d", (double)fa);
    show_d("i2d", (double)vi);
    show_f("i2f", (float)vi);
    show_i("d2i_trunc", (unsigned)(int)vneg);
    show_i("d2i_big", (unsigned)(int)vlarge);
    show_i("cvtsd2si_half", (unsigned)__builtin_ia32_cvtsd2si((v2df){vhalf, 0}));
    show_i("cvtsd2si_mhalf", (unsigned)__builtin_ia32_cvtsd2si((v2df){vmhalf, 0}));
    show_i("cvtss2si", (unsigned)__builtin_ia32_cvtss2si((v4sf){fa * 25.0f, 0, 0, 0}));
    show_i("lt", vc < va);
    show_i("ge", va >= vb);
    show_i("eq", va == va / vb * vb);
    show_i("mxcsr", mxcsr());
}

static void packed(void) {
#define a pa
#define b pb
#define c pc
#define x da
#define y db
    unsigned base = 0x1f80;
    FLAGS("addps", a + b);
    FLAGS("subps", a - c);
    FLAGS("mulps", a * b);
    FLAGS("divps", a / b);
    FLAGS("sqrtps", __builtin_ia32_sqrtps(b));
    FLAGS("minps", __builtin_ia32_minps(a, c));
    FLAGS("maxps", __builtin_ia32_maxps(a, c));
    FLAGS("cmpltps", __builtin_ia32_cmpltps(a, b));
    FLAGS("cmpunordps", __builtin_ia32_cmpunordps(a, b / (b - b)));
    FLAGS("rcpps", __builtin_ia32_rcpps(b));
    FLAGS("rsqrtps", __builtin_ia32_rsqrtps(b));
    FLAGS("addpd", x + y);
    FLAGS("divpd", x / y);
    FLAGS("sqrtpd", __builtin_ia32_sqrtpd(y));
    FLAGS("minpd", __builtin_ia32_minpd(x, y));
    FLAGS("cvtdq2ps", __builtin_ia32_cvtdq2ps(ia));
    FLAGS("cvtps2dq", __builtin_ia32_cvtps2dq(a * 1e9f));
    FLAGS("cvttps2dq", __builtin_ia32_cvttps2dq(c * 100.0f));
    FLAGS("cvtps2pd", __builtin_ia32_cvtps2pd(a));
    FLAGS("cvtpd2ps", __builtin_ia32_cvtpd2ps(x / y));
    FLAGS("cvtpd2dq", __builtin_ia32_cvtpd2dq(y * 10.0));
    FLAGS("cvttpd2dq", __builtin_ia32_cvttpd2dq(x * 1e10));
    FLAGS("cvtdq2pd", __builtin_ia32_cvtdq2pd(ia));
    FLAGS("haddps", __builtin_ia32_haddps(a, b));
    FLAGS("hsubps", __builtin_ia32_hsubps(c, b));
    FLAGS("addsubps", __builtin_ia32_addsubps(a, b));
    FLAGS("haddpd", __builtin_ia32_haddpd(x, y));
    FLAGS("addsubpd", __builtin_ia32_addsubpd(x, y));
    FLAGS("dpps", __builtin_ia32_dpps(b, b, 0xf3));
    FLAGS("dppd", __builtin_ia32_dppd(y, y, 0x31));
    for (int m = 0; m < 4; m++) {
        /* ROUNDPS takes its mode as an immediate (4: MXCSR's, 8: no precision exception) */
        base = 0x1f80 | m << 13;
        FLAGS("roundps0", __builtin_ia32_roundps(pr, 0));
        FLAGS("roundps9", __builtin_ia32_roundps(pr, 9));
        FLAGS("roundps2", __builtin_ia32_roundps(pr, 2));
        FLAGS("roundps4", __builtin_ia32_roundps(pr, 4));
        FLAGS("roundps3", __builtin_ia32_roundps(pr, 3));
    }
    FLAGS("roundsd", __builtin_ia32_roundsd(x, y * 3.0, 3));
    /* flags one by one (masked) */
    base = 0x1f80;
    FLAGS("f_pe", (v2df){va, 0} / (v2df){vb, 1});
    FLAGS("f_ze", (v2df){va, 0} / (v2df){vzero, 1});
    FLAGS("f_ie", (v2df){vzero, 0} / (v2df){vzero, 1});
    FLAGS("f_oe", (v2df){vbig, 0} * (v2df){vbig, 1});
    FLAGS("f_ue", (v2df){vtiny, 0} * (v2df){0.3, 1});
    FLAGS("f_de", (v2df){vtiny, 0} + (v2df){va, 1});
    FLAGS("f_exact_tiny", (v2df){vtiny, 0} * (v2df){0.5, 1});
    base = 0x1f80 | 0x8000 | 0x40; /* FTZ and DAZ */
    FLAGS("ftz_ue", (v2df){vmin, 0} * (v2df){vthird, 1});
    FLAGS("daz_de", (v2df){vtiny, 0} + (v2df){va, 1});
    FLAGS("daz_ps", a * b);
    base = 0x1f80 | 0x8000; /* FTZ only */
    FLAGS("ftz_ps", pt * (v4sf){0.3f, 0.5f, 1, 1});
    base = 0x1f80; /* the same without FTZ */
    FLAGS("noftz_ps", pt * (v4sf){0.3f, 0.5f, 1, 1});
}

int main(void) {
    static const char *modes[] = {"nearest", "down", "up", "zero"};
    for (int rc = 0; rc < 4; rc++) {
        set_mxcsr(0x1f80 | rc << 13);
        scalar(modes[rc]);
    }
    set_mxcsr(0x1f80);
    packed();
    set_mxcsr(0x1f80);
    return 0;
}

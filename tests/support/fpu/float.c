/* Floating point the way gcc -m32 -O2 compiles it (x87 code: fld/fstp, fadd/fmul/fdiv, fsqrt,
 * fistp with the FNSTCW/FLDCW rounding dance, long double, float<->double<->int conversions,
 * comparisons through fucomi/fcomi or fnstsw+sahf).  Prints every result's bits on port 0xE9;
 * tests/guests/test_fpu_guests.py runs it on gdbemu and on QEMU and compares the text. */

static inline void outb(unsigned short port, unsigned char v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }

static void puts_(const char *s) { while (*s) outb(0xE9, (unsigned char)*s++); }

static void hex(unsigned long long v, int digits) {
    static const char d[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--) outb(0xE9, (unsigned char)d[(v >> (4 * i)) & 15]);
}

static void show_d(const char *name, double x) {
    union { double d; unsigned long long u; } u = {x};
    puts_(name); outb(0xE9, '='); hex(u.u, 16); outb(0xE9, '\n');
}

static void show_f(const char *name, float x) {
    union { float f; unsigned u; } u = {x};
    puts_(name); outb(0xE9, '='); hex(u.u, 8); outb(0xE9, '\n');
}

static void show_ld(const char *name, long double x) {
    union { long double l; struct { unsigned long long m; unsigned short e; } s; } u;
    u.l = x;
    puts_(name); outb(0xE9, '='); hex(u.s.e, 4); hex(u.s.m, 16); outb(0xE9, '\n');
}

static void show_i(const char *name, long long v) {
    puts_(name); outb(0xE9, '='); hex((unsigned long long)v, 16); outb(0xE9, '\n');
}

/* volatile inputs: nothing is folded at compile time */
volatile double va = 1.0, vb = 3.0, vc = -2.5, vtiny = 1e-310, vbig = 1.7e308, vneg = -7.75;
volatile float fa = 0.1f, fb = 3.0f;
volatile long double la = 2.0L;
volatile int vi = -123456789;
volatile long long vll = 0x123456789abcdefLL;

double poly(double x) { return ((x * 0.5 + 1.25) * x - 3.0) * x + 0.125; }

int main(void) {
    show_d("div", va / vb);
    show_d("mul", va / vb * vc);
    show_d("sqrt", __builtin_sqrt(vb));
    show_d("poly", poly(vc));
    show_d("denormal", vtiny * 0.5);
    show_d("overflow", vbig * 10.0);
    show_d("sub_zero", va - va);
    show_f("fdiv", fa / fb);
    show_f("f_from_d", (float)(va / vb));
    show_d("d_from_f", (double)fa);
    show_ld("ld_div", la / 3.0L);
    show_ld("ld_sqrt", __builtin_sqrtl(la));
    show_i("trunc", (long long)(vneg * 1.5));
    show_i("to_int", (int)(va / vb * 1000000.0));
    show_d("from_int", (double)vi);
    show_d("from_ll", (double)vll);
    show_f("f_from_ll", (float)vll);
    show_i("lt", va < vb);
    show_i("ge", vc >= vneg);
    show_i("eq", va / vb * vb == va);
    double acc = 0;
    for (int i = 1; i <= 50; i++) acc += 1.0 / (i * (double)i);
    show_d("basel50", acc);
    long double lacc = 0;
    for (int i = 1; i <= 50; i++) lacc += 1.0L / (i * (long double)i);
    show_ld("lbasel50", lacc);
    return 0;
}

/* mb2check: a multiboot2 kernel that checks every information tag against
 * the command line it was given ("key=value" words, built by the test), and
 * the machine state at entry (spec section 3.3).  Reports "ok NAME" /
 * "FAIL NAME got X want Y" on port 0xE9, then "done fails=N", and exits
 * through isa-debug-exit with N.  Built -m32; the ELF64 variant is the same
 * code in an ELF64 file (objcopy -O elf64-x86-64): the entry is 32-bit. */
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef unsigned long long u64;

u32 entry_regs[4]; /* eax, ebx, cr0, eflags (boot.S) */
extern char __kernel_start[];
static int fails;

static void outb(u16 p, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(p)); }
static void puts(const char *s) { while (*s) outb(0xe9, *s++); }
static void hex(u32 v) { puts("0x"); for (int i = 28; i >= 0; i -= 4) outb(0xe9, "0123456789abcdef"[(v >> i) & 15]); }
static int streq(const char *a, const char *b) { while (*a && *a == *b) a++, b++; return *a == *b; }
static int memeq(const void *a, const void *b, u32 n) { const u8 *x = a, *y = b; while (n--) if (*x++ != *y++) return 0; return 1; }
static u8 sum8(const void *p, u32 n) { const u8 *b = p; u8 s = 0; while (n--) s += *b++; return s; }

static void check(const char *name, u32 got, u32 want) {
    if (got == want) { puts("ok "); puts(name); puts("\n"); return; }
    fails++; puts("FAIL "); puts(name); puts(" got "); hex(got); puts(" want "); hex(want); puts("\n");
}

/* The value of "key=" in the command line (a number, decimal or 0x hex); `dflt` when absent. */
static const char *cmdline;
static const char *arg_str(const char *key) {
    const char *p = cmdline;
    while (p && *p) {
        const char *k = key, *q = p;
        while (*k && *q == *k) k++, q++;
        if (!*k && *q == '=') return q + 1;
        while (*p && *p != ' ') p++;
        while (*p == ' ') p++;
    }
    return 0;
}
static u32 arg(const char *key, u32 dflt) {
    const char *s = arg_str(key);
    if (!s) return dflt;
    u32 v = 0, base = 10;
    if (s[0] == '0' && s[1] == 'x') base = 16, s += 2;
    for (; *s && *s != ' '; s++) {
        u32 d = *s >= 'a' ? *s - 'a' + 10 : *s - '0';
        v = v * base + d;
    }
    return v;
}
static int arg_is(const char *key, const char *text) {
    const char *s = arg_str(key);
    if (!s) return 0;
    while (*text && *s == *text) s++, text++;
    return !*text && (*s == ' ' || !*s);
}

struct tag { u32 type, size; };

void cmain(void) {
    u32 magic = entry_regs[0], mbi = entry_regs[1];
    check("magic", magic, 0x36d76289);
    check("mbi_aligned", mbi & 7, 0);
    check("cr0_pg", entry_regs[2] >> 31, 0);
    check("cr0_pe", entry_regs[2] & 1, 1);
    check("eflags_if", (entry_regs[3] >> 9) & 1, 0);
    check("eflags_vm", (entry_regs[3] >> 17) & 1, 0);
    u32 total = *(u32 *)mbi;
    /* first pass: find the command line, which says what to expect */
    for (struct tag *t = (struct tag *)(mbi + 8); t->type; t = (struct tag *)((u32)t + ((t->size + 7) & ~7)))
        if (t->type == 1) cmdline = (const char *)(t + 1);
    check("cmdline_present", cmdline != 0, 1);
    u32 seen = 0, nmods = 0, rsdt_entries = 0, rsdt_first = 0;
    u32 lower = 0, upper = 0;
    struct tag *t = (struct tag *)(mbi + 8);
    for (; t->type; t = (struct tag *)((u32)t + ((t->size + 7) & ~7))) {
        u32 *w = (u32 *)(t + 1);
        check("tag_aligned", (u32)t & 7, 0);
        seen |= 1u << t->type;
        switch (t->type) {
        case 2: check("loader_name", arg_is("loader", (const char *)w), 1); break;
        case 3: {
            const char *mc = (const char *)(w + 2), *text = mc;
            while (*text && *text != ' ') text++;
            if (*text) text++;
            u32 len = 0;
            while (text[len]) len++;
            check("module_aligned", w[0] & 0xfff, 0);
            check("module_size", w[1] - w[0], len);
            check("module_content", memeq((void *)w[0], text, len), 1);
            nmods++;
            break;
        }
        case 4: lower = w[0]; upper = w[1];
            check("mem_lower", w[0], arg("lower", 0)); check("mem_upper", w[1], arg("upper", 0)); break;
        case 5: check("bootdev", w[0], 0x80); break;
        case 6: {
            u32 esize = w[0], n = (t->size - 16) / esize, ram1m = 0;
            check("mmap_entry_size", esize, 24);
            check("mmap_version", w[1], 0);
            check("mmap_count", n, arg("mmap", 0));
            u64 prev_end = 0;
            for (u32 i = 0; i < n; i++) {
                u32 *e = (u32 *)((u32)(w + 2) + i * esize);
                u64 base = e[0] | ((u64)e[1] << 32), len = e[2] | ((u64)e[3] << 32);
                check("mmap_sorted", base >= prev_end, 1);
                prev_end = base + len;
                if (base == 0x100000 && e[4] == 1) ram1m = (u32)len;
            }
            check("mmap_matches_upper", ram1m, arg("upper", 0) * 1024);
            break;
        }
        case 8: {
            u64 addr = w[0] | ((u64)w[1] << 32);
            check("fb_addr", (u32)addr, 0xb8000);
            check("fb_pitch", w[2], 160); check("fb_width", w[3], 80); check("fb_height", w[4], 25);
            check("fb_bpp", ((u8 *)(w + 5))[0], 16); check("fb_type", ((u8 *)(w + 5))[1], 2);
            break;
        }
        case 9: {
            u32 num = w[0], entsize = w[1];
            u8 *sh = (u8 *)(w + 3);
            check("elf_entsize", entsize, arg("entsize", 40));
            int found = 0;
            for (u32 i = 0; i < num; i++) {
                u8 *s = sh + i * entsize;
                u32 type = *(u32 *)(s + 4);
                if (type != 2) continue; /* SHT_SYMTAB */
                u32 addr, size, link, symsize;
                if (entsize == 64) { addr = *(u32 *)(s + 16); size = *(u32 *)(s + 32); link = *(u32 *)(s + 40); symsize = 24; }
                else { addr = *(u32 *)(s + 12); size = *(u32 *)(s + 20); link = *(u32 *)(s + 24); symsize = 16; }
                u8 *str = sh + link * entsize;
                u32 straddr = entsize == 64 ? *(u32 *)(str + 16) : *(u32 *)(str + 12);
                check("symtab_loaded", addr != 0 && straddr != 0, 1);
                if (!addr || !straddr) break;
                for (u32 off = symsize; off < size; off += symsize) {
                    u8 *sym = (u8 *)addr + off;
                    u32 value = entsize == 64 ? *(u32 *)(sym + 8) : *(u32 *)(sym + 4);
                    if (streq((const char *)straddr + *(u32 *)sym, "cmain")) { found = 1; check("symbol_cmain", value, (u32)&cmain); }
                }
            }
            check("symtab_has_cmain", found, 1);
            break;
        }
        case 14: {
            u8 *r = (u8 *)w;
            check("rsdp_old_sig", memeq(r, "RSD PTR ", 8), 1);
            check("rsdp_old_sum", sum8(r, 20), 0);
            check("rsdp_old_rev", r[15], 0);
            u8 *rsdt = (u8 *)*(u32 *)(r + 16);
            check("rsdt_sig", memeq(rsdt, "RSDT", 4), 1);
            check("rsdt_sum", sum8(rsdt, *(u32 *)(rsdt + 4)), 0);
            rsdt_entries = (*(u32 *)(rsdt + 4) - 36) / 4;
            rsdt_first = *(u32 *)(rsdt + 36);
            break;
        }
        case 15: {
            u8 *r = (u8 *)w;
            check("rsdp_new_sig", memeq(r, "RSD PTR ", 8), 1);
            check("rsdp_new_sum", sum8(r, 20), 0);
            check("rsdp_new_rev", r[15], 2);
            check("rsdp_new_len", *(u32 *)(r + 20), 36);
            check("rsdp_new_xsum", sum8(r, 36), 0);
            u8 *xsdt = (u8 *)*(u32 *)(r + 24);
            check("xsdt_sig", memeq(xsdt, "XSDT", 4), 1);
            check("xsdt_sum", sum8(xsdt, *(u32 *)(xsdt + 4)), 0);
            check("xsdt_entries", (*(u32 *)(xsdt + 4) - 36) / 8, rsdt_entries);
            check("xsdt_first", *(u32 *)(xsdt + 36), rsdt_first);
            break;
        }
        case 21: check("load_base", w[0], (u32)__kernel_start); break;
        }
    }
    check("end_tag_size", t->size, 8);
    check("total_size", (u32)t + 8 - mbi, total);
    check("mods", nmods, arg("mods", 0));
    (void)lower; (void)upper;
    u32 want = (1u << 1) | (1u << 2) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 8) | (1u << 9) | (1u << 14) | (1u << 15) | (1u << 21);
    if (nmods) want |= 1u << 3;
    if (arg("elf", 1) == 0) want &= ~(1u << 9); /* a flat image has no ELF sections */
    check("tags_seen", seen, want);
    puts("done fails="); hex(fails); puts("\n");
    __asm__ volatile("outl %0, %1" ::"a"(fails), "Nd"((u16)0xf4));
    for (;;) __asm__ volatile("cli; hlt");
}

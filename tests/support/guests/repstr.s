/*
 * repstr.s -- rep movs/stos (byte and dword) across page boundaries with
 * paging on and scattered frames, forward (DF=0) and backward (DF=1), and
 * rep movs whose destination overlaps its source.
 *
 * Why: emulators speed string instructions up by copying whole runs at a
 * time; the run must stop at every page boundary of source and destination
 * (the frames are not contiguous), must honour DF, and must keep the
 * element-by-element semantics x86 defines when the operands overlap (a
 * forward movsb with dst = src + 1 replicates the first byte; a memmove
 * would shift instead) -- also when the overlap exists only in the frames,
 * through two virtual mappings of one frame. repe cmps / repne scas must
 * stop right after the deciding element across the same boundaries. Every case is checked against a plain mov loop
 * doing the same element order, plus the final ESI/EDI/ECX.
 */
        .include "lib.inc"

        .set V_S,   0x400a0000          /* source: 3 pages */
        .set V_D,   0x400b0000          /* workspace/destination: 3 pages */
        .set WS,    0x3000
        .set REF,   FRAMES + 0x60000    /* reference image of the workspace (identity) */
        .set SENT,  FRAMES + 0x58000    /* frame physically after V_D's first frame */
        .set V_AL,  0x400c0000          /* alias of V_D's first frame */

/* MOVS_CASE insn, elem size, step (+-size), src, dst, count, "name":
 * the reference runs on REF with the workspace offsets of src/dst (a src in
 * V_S is read as is), then the real rep instruction runs on the workspace. */
.macro MOVS_CASE insn:req, size:req, step:req, src:req, dst:req, count:req, name:req
        call ws_init
        movl $(\src), %eax
        call ws_to_ref
        movl %eax, %esi
        movl $(\dst), %eax
        call ws_to_ref
        movl %eax, %edi
        movl $(\count), %ecx
        movl $(\size), %ebx
        movl $(\step), %edx
        call ref_movs
        movl $(\src), %esi
        movl $(\dst), %edi
        movl $(\count), %ecx
        .if (\step) < 0
        std
        .endif
        rep \insn
        cld
        CHECK_BUF $V_D, $REF, $WS, "\name-data"
        CHECK_EQ %esi, $((\src)+(\count)*(\step)), "\name-esi"
        CHECK_EQ %edi, $((\dst)+(\count)*(\step)), "\name-edi"
        CHECK_EQ %ecx, $0, "\name-ecx"
.endm

/* STOS_CASE insn, size, step, dst, count, value, "name" */
.macro STOS_CASE insn:req, size:req, step:req, dst:req, count:req, value:req, name:req
        call ws_init
        movl $(\dst), %eax
        call ws_to_ref
        movl %eax, %edi
        movl $(\count), %ecx
        movl $(\size), %ebx
        movl $(\step), %edx
        movl $(\value), %eax
        call ref_stos
        movl $(\dst), %edi
        movl $(\count), %ecx
        movl $(\value), %eax
        .if (\step) < 0
        std
        .endif
        rep \insn
        cld
        CHECK_BUF $V_D, $REF, $WS, "\name-data"
        CHECK_EQ %edi, $((\dst)+(\count)*(\step)), "\name-edi"
        CHECK_EQ %ecx, $0, "\name-ecx"
        CHECK_EQ %eax, $(\value), "\name-eax"
.endm

        .text
main:
        movl $SENT, %edi
        movb $0xee, %al
        movl $4096, %ecx
        call memset_slow
        call pt_reset
        movl $V_S, %eax
        movl $(FRAMES + 0x52000 + PG_PW), %edx
        call map_page
        movl $(V_S + 0x1000), %eax
        movl $(FRAMES + 0x50000 + PG_PW), %edx
        call map_page
        movl $(V_S + 0x2000), %eax
        movl $(FRAMES + 0x54000 + PG_PW), %edx
        call map_page
        movl $V_D, %eax
        movl $(FRAMES + 0x57000 + PG_PW), %edx
        call map_page
        movl $V_AL, %eax
        movl $(FRAMES + 0x57000 + PG_PW), %edx
        call map_page
        movl $(V_D + 0x1000), %eax
        movl $(FRAMES + 0x55000 + PG_PW), %edx
        call map_page
        movl $(V_D + 0x2000), %eax
        movl $(FRAMES + 0x59000 + PG_PW), %edx
        call map_page
        xorl %eax, %eax
        call paging_on
        movl $V_S, %edi
        movl $WS, %ecx
        movb $0x80, %al
        call fill_pattern

        /*        insn   size step  src            dst            count  */
        MOVS_CASE movsb, 1, 1,  V_S+0xf80,    V_D+0x7b3,    0x1100, "movsb-fwd"
        MOVS_CASE movsl, 4, 4,  V_S+0xffe,    V_D+0x1ffd,   0x300,  "movsd-fwd"
        MOVS_CASE movsb, 1, -1, V_S+0x2100,   V_D+0x1803,   0x1200, "movsb-bwd"
        MOVS_CASE movsl, 4, -4, V_S+0x1ffe,   V_D+0x2001,   0x200,  "movsd-bwd"
        STOS_CASE stosb, 1, 1,  V_D+0xabc,    0x1800, 0x3c,       "stosb-fwd"
        STOS_CASE stosl, 4, 4,  V_D+0xfff,    0x401,  0x11223344, "stosd-fwd"
        STOS_CASE stosb, 1, -1, V_D+0x2002,   0x1500, 0xa7,       "stosb-bwd"
        STOS_CASE stosl, 4, -4, V_D+0x2ffa,   0x400,  0xdeadbeef, "stosd-bwd"
        /* overlapping source and destination, inside the workspace */
        MOVS_CASE movsb, 1, 1,  V_D+0xff0,    V_D+0xff1,    0x40,   "overlap-movsb-fwd-dst-above"
        MOVS_CASE movsl, 4, 4,  V_D+0x1ff0,   V_D+0x1ff4,   0x20,   "overlap-movsd-fwd-dst-above"
        MOVS_CASE movsb, 1, 1,  V_D+0xff1,    V_D+0xff0,    0x40,   "overlap-movsb-fwd-dst-below"
        MOVS_CASE movsb, 1, -1, V_D+0x1010,   V_D+0x1011,   0x40,   "overlap-movsb-bwd-dst-above"
        MOVS_CASE movsl, 4, -4, V_D+0x2010,   V_D+0x200e,   0x10,   "overlap-movsd-bwd-dst-below"
        MOVS_CASE movsl, 4, 4,  V_D+0xffd,    V_D+0xfff,    0x30,   "overlap-movsd-fwd-unaligned"
        /* overlap that only the frames show: V_AL is a second mapping of
         * V_D's first frame, so virtually disjoint operands overlap */
        MOVS_CASE movsb, 1, 1,  V_D+0x100,    V_AL+0x101,   0x40,   "alias-overlap-movsb-fwd"
        MOVS_CASE movsl, 4, 4,  V_D+0x200,    V_AL+0x204,   0x20,   "alias-overlap-movsd-fwd"
        MOVS_CASE movsb, 1, -1, V_AL+0x340,   V_D+0x341,    0x40,   "alias-overlap-movsb-bwd"

        /* repe cmps / repne scas across page boundaries (memcmp, strlen):
         * they stop right after the deciding element */
        call ws_init
        movl $(V_D + 0xe80), %edi       /* copy 0x300 bytes of V_S+0xf00 ... */
        movl $(V_S + 0xf00), %esi
        movl $0x300, %ecx
        call memcpy_slow
        notb V_D + 0xe80 + 0x1a0        /* ... and make byte 0x1a0 differ */
        movl $(V_S + 0xf00), %esi
        movl $(V_D + 0xe80), %edi
        movl $0x300, %ecx
        repe cmpsb
        setz %al
        movzbl %al, %eax
        CHECK_EQ %eax, $0, "repe-cmpsb-mismatch-zf"
        CHECK_EQ %ecx, $(0x300-0x1a1), "repe-cmpsb-mismatch-ecx"
        CHECK_EQ %esi, $(V_S+0xf00+0x1a1), "repe-cmpsb-mismatch-esi"
        CHECK_EQ %edi, $(V_D+0xe80+0x1a1), "repe-cmpsb-mismatch-edi"
        movl $(V_S + 0xf00), %esi
        movl $(V_D + 0xe80), %edi
        movl $(0x1a0/4), %ecx           /* every dword before the mismatch */
        repe cmpsl
        setz %al
        movzbl %al, %eax
        CHECK_EQ %eax, $1, "repe-cmpsd-equal-zf"
        CHECK_EQ %ecx, $0, "repe-cmpsd-equal-ecx"
        CHECK_EQ %edi, $(V_D+0xe80+0x1a0), "repe-cmpsd-equal-edi"
        movl $(V_S + 0xf80), %edi       /* V_S byte i is 0x80 + 7*i: unique in 256 */
        movb $((0x80 + 7 * (0xf80 + 0xa0)) & 0xff), %al
        movl $0x200, %ecx
        repne scasb
        setz %dl
        movzbl %dl, %edx
        CHECK_EQ %edx, $1, "repne-scasb-found-zf"
        CHECK_EQ %ecx, $(0x200-0xa1), "repne-scasb-found-ecx"
        CHECK_EQ %edi, $(V_S+0xf80+0xa1), "repne-scasb-found-edi"
        std                             /* backwards over the boundary */
        movl $(V_S + 0x1040), %edi
        movb $((0x80 + 7 * (0x1040 - 0x60)) & 0xff), %al
        movl $0x100, %ecx
        repne scasb
        cld
        CHECK_EQ %ecx, $(0x100-0x61), "repne-scasb-bwd-found-ecx"
        CHECK_EQ %edi, $(V_S+0x1040-0x61), "repne-scasb-bwd-found-edi"

        /* a zero count moves nothing and leaves the pointers alone */
        call ws_init
        movl $V_S, %esi
        movl $V_D, %edi
        xorl %ecx, %ecx
        rep movsb
        CHECK_EQ %esi, $V_S, "count-zero-esi"
        CHECK_EQ %edi, $V_D, "count-zero-edi"
        CHECK_BUF $V_D, $REF, $WS, "count-zero-data"

        CHECK_EQ SENT, $0xeeeeeeee, "next-frame-untouched"
        ret

/* ws_init: the workspace and its reference image get the same pattern. */
ws_init:
        pushal
        movl $V_D, %edi
        movl $WS, %ecx
        movb $0x11, %al
        call fill_pattern
        movl $REF, %edi
        call fill_pattern
        popal
        ret

/* ws_to_ref(eax = address) -> eax: a workspace address moved onto REF,
 * anything else (the V_S source) unchanged. */
ws_to_ref:
        cmpl $V_AL, %eax                /* the alias page is the workspace's first */
        jb 2f
        cmpl $(V_AL + 0x1000), %eax
        jae 2f
        subl $(V_AL - V_D), %eax
2:      cmpl $V_D, %eax
        jb 1f
        cmpl $(V_D + WS), %eax
        jae 1f
        subl $V_D, %eax
        addl $REF, %eax
1:      ret

/* ref_movs(esi, edi, ecx = count, ebx = size 1|4, edx = step): mov loop. */
ref_movs:
        pushal
        jecxz 9f
1:      cmpl $4, %ebx
        je 2f
        movb (%esi), %al
        movb %al, (%edi)
        jmp 3f
2:      movl (%esi), %eax
        movl %eax, (%edi)
3:      addl %edx, %esi
        addl %edx, %edi
        decl %ecx
        jnz 1b
9:      popal
        ret

/* ref_stos(edi, ecx = count, ebx = size, edx = step, eax = value) */
ref_stos:
        pushal
        jecxz 9f
1:      cmpl $4, %ebx
        je 2f
        movb %al, (%edi)
        jmp 3f
2:      movl %eax, (%edi)
3:      addl %edx, %edi
        decl %ecx
        jnz 1b
9:      popal
        ret

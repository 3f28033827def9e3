/* The real-mode part of a test bzImage: one setup sector and the boot sector,
 * holding a protocol 2.15 setup header (Documentation/arch/x86/boot.rst).
 * gdbemu's 32-bit boot never runs this code; it reads the header. */
        .code16
        .text
        .org 0x1f1
setup_sects:    .byte 1
root_flags:     .word 0
syssize:        .long 0                 /* patched by the builder */
ram_size:       .word 0
vid_mode:       .word 0xfffd
root_dev:       .word 0
boot_flag:      .word 0xaa55
        .org 0x200
jump:           .byte 0xeb, hdr_end - 0x202
header:         .ascii "HdrS"
version:        .word 0x020f
realmode_swtch: .long 0
start_sys_seg:  .word 0x1000
kernel_version: .word 0
type_of_loader: .byte 0
loadflags:      .byte 0x01              /* LOADED_HIGH */
setup_move_size: .word 0x8000
code32_start:   .long 0x100000
ramdisk_image:  .long 0
ramdisk_size:   .long 0
bootsect_kludge: .long 0
heap_end_ptr:   .word 0
ext_loader_ver: .byte 0
ext_loader_type: .byte 0
cmd_line_ptr:   .long 0
initrd_addr_max: .long 0x7fffffff
kernel_alignment: .long 0x200000
relocatable_kernel: .byte 0
min_alignment:  .byte 0
xloadflags:     .word 0
cmdline_size:   .long 2047
hardware_subarch: .long 0
hardware_subarch_data: .quad 0
payload_offset: .long 0
payload_length: .long 0
setup_data:     .quad 0
pref_address:   .quad 0x100000
init_size:      .long 0x100000
handover_offset: .long 0
kernel_info_offset: .long 0
hdr_end:
        .org 0x400

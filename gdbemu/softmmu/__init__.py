"""QEMU-style softmmu: TLB with flag bits, slow paths, dirty tracking, physical memory."""

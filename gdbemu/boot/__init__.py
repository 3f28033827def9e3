"""Loaders: ELF and multiboot."""

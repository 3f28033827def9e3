/*
 * The freestanding runtime shared by the kernel and its ring-3 tasks.
 * lib.c is compiled twice: once into the kernel and once into the user
 * image (user pages are the only ones ring 3 may execute), so neither side
 * calls into the other's code.
 */
#ifndef LIB_H
#define LIB_H

#include <stdarg.h>
#include <stdint.h>

typedef uint32_t size_t;

void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
size_t strlen(const char *s);
/* A small vsnprintf: %s %c %d %u %x (optionally %08x style zero-padded width) %%. */
int vformat(char *buf, size_t size, const char *fmt, va_list ap);
int format(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

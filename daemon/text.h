/* text.h - bytes and text on the wire, shared by engramd and engramctl:
 * strict UTF-8 validation, and RFC 4648 base64 (standard alphabet, '='
 * padding) for bytes that are not UTF-8 inside JSON ("data" fields). */
#ifndef ENGRAM_DAEMON_TEXT_H
#define ENGRAM_DAEMON_TEXT_H

#include <stddef.h>

/* 1 when s[0..n) is valid, complete UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF), else 0. */
int ed_utf8_valid(const char *s, size_t n);

/* Output size for n input bytes, without a terminating NUL. */
size_t ed_b64_encoded_len(size_t n);
/* Encodes n bytes into out (ed_b64_encoded_len(n) bytes); adds no NUL. */
void ed_b64_encode(const unsigned char *in, size_t n, char *out);
/* Decodes n chars into out (at least n / 4 * 3 bytes); returns the number
 * of bytes written, or -1 when the input is not canonical padded base64. */
long ed_b64_decode(const char *in, size_t n, unsigned char *out);

#endif

/* text.c - UTF-8 validation and base64 (text.h). */
#include "config.h"
#include "text.h"

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past
 * U+10FFFF. */
int ed_utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str, *e = s + n;

	while (s < e) {
		unsigned c = *s;
		if (c < 0x80) {
			s++;
			continue;
		}
		int k;
		unsigned lo = 0x80, hi = 0xBF;
		if (c >= 0xC2 && c <= 0xDF)
			k = 1;
		else if (c >= 0xE0 && c <= 0xEF) {
			k = 2;
			if (c == 0xE0) lo = 0xA0;
			if (c == 0xED) hi = 0x9F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			k = 3;
			if (c == 0xF0) lo = 0x90;
			if (c == 0xF4) hi = 0x8F;
		} else
			return 0;
		if (e - s <= k)
			return 0;
		if (s[1] < lo || s[1] > hi)
			return 0;
		for (int i = 2; i <= k; i++)
			if ((s[i] & 0xC0) != 0x80)
				return 0;
		s += k + 1;
	}
	return 1;
}


static const char alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ed_b64_encoded_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

void ed_b64_encode(const unsigned char *in, size_t n, char *out)
{
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		unsigned v = in[i] << 16 | in[i + 1] << 8 | in[i + 2];
		*out++ = alphabet[v >> 18];
		*out++ = alphabet[(v >> 12) & 63];
		*out++ = alphabet[(v >> 6) & 63];
		*out++ = alphabet[v & 63];
	}
	if (i < n) {
		unsigned v = in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0);
		*out++ = alphabet[v >> 18];
		*out++ = alphabet[(v >> 12) & 63];
		*out++ = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
		*out++ = '=';
	}
}

static int value(char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

long ed_b64_decode(const char *in, size_t n, unsigned char *out)
{
	long w = 0;
	if (n % 4)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		int last = i + 4 == n;
		int pad = last ? (in[i + 3] == '=') + (in[i + 2] == '=') : 0;
		if (pad == 1 && in[i + 2] == '=')
			return -1;	/* "x=y=" */
		int a = value(in[i]), b = value(in[i + 1]);
		int c = pad >= 2 ? 0 : value(in[i + 2]);
		int d = pad >= 1 ? 0 : value(in[i + 3]);
		if (a < 0 || b < 0 || c < 0 || d < 0)
			return -1;
		unsigned v = a << 18 | b << 12 | c << 6 | d;
		out[w++] = v >> 16;
		if (pad < 2)
			out[w++] = (v >> 8) & 255;
		if (pad < 1)
			out[w++] = v & 255;
		/* Canonical: the bits the padding drops are zero. */
		if ((pad == 1 && (v & 255)) || (pad == 2 && (v & 0xffff)))
			return -1;
	}
	return w;
}

/* gguf_writer.c - a small GGUF writer for test fixtures (see gguf_writer.h).
 * Aborts on out of memory: it only ever runs in tests.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "gguf_writer.h"

struct tensor {
	char    *name;
	uint32_t type, n_dims;
	uint64_t ne[4];
	uint8_t *data;
	size_t   n_bytes;
};

struct gw {
	uint32_t      version, alignment;
	uint64_t      n_kv;
	struct gw_buf kv;
	struct tensor *t;
	size_t        n_t;
	size_t        info_off;
};

void gw_buf_put(struct gw_buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->n + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p)
			abort();
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->n, p, n);
	b->n += n;
}

void gw_buf_u32(struct gw_buf *b, uint32_t v)
{
	gw_buf_put(b, &v, 4);
}

void gw_buf_u64(struct gw_buf *b, uint64_t v)
{
	gw_buf_put(b, &v, 8);
}

void gw_buf_strn(struct gw_buf *b, const char *s, size_t n)
{
	gw_buf_u64(b, n);
	gw_buf_put(b, s, n);
}

void gw_buf_str(struct gw_buf *b, const char *s)
{
	gw_buf_strn(b, s, strlen(s));
}

gw *gw_new(uint32_t version)
{
	gw *w = calloc(1, sizeof *w);

	if (!w)
		abort();
	w->version = version;
	w->alignment = 32;
	return w;
}

void gw_free(gw *w)
{
	size_t i;

	if (!w)
		return;
	for (i = 0; i < w->n_t; i++) {
		free(w->t[i].name);
		free(w->t[i].data);
	}
	free(w->t);
	free(w->kv.p);
	free(w);
}

static void kv_head(gw *w, const char *key, uint32_t type)
{
	gw_buf_str(&w->kv, key);
	gw_buf_u32(&w->kv, type);
	w->n_kv++;
}

#define SCALAR(fn, ctype, id) \
	void fn(gw *w, const char *key, ctype v) \
	{ \
		kv_head(w, key, id); \
		gw_buf_put(&w->kv, &v, sizeof v); \
	}
SCALAR(gw_kv_u8, uint8_t, ENG_GGUF_UINT8)
SCALAR(gw_kv_i8, int8_t, ENG_GGUF_INT8)
SCALAR(gw_kv_u16, uint16_t, ENG_GGUF_UINT16)
SCALAR(gw_kv_i16, int16_t, ENG_GGUF_INT16)
SCALAR(gw_kv_u32, uint32_t, ENG_GGUF_UINT32)
SCALAR(gw_kv_i32, int32_t, ENG_GGUF_INT32)
SCALAR(gw_kv_f32, float, ENG_GGUF_FLOAT32)
SCALAR(gw_kv_u64, uint64_t, ENG_GGUF_UINT64)
SCALAR(gw_kv_i64, int64_t, ENG_GGUF_INT64)
SCALAR(gw_kv_f64, double, ENG_GGUF_FLOAT64)

void gw_kv_bool(gw *w, const char *key, int v)
{
	uint8_t b = v ? 1 : 0;

	kv_head(w, key, ENG_GGUF_BOOL);
	gw_buf_put(&w->kv, &b, 1);
}

void gw_kv_str(gw *w, const char *key, const char *s)
{
	kv_head(w, key, ENG_GGUF_STRING);
	gw_buf_str(&w->kv, s);
}

static size_t scalar_size(uint32_t t)
{
	switch (t) {
	case ENG_GGUF_UINT8: case ENG_GGUF_INT8: case ENG_GGUF_BOOL: return 1;
	case ENG_GGUF_UINT16: case ENG_GGUF_INT16: return 2;
	case ENG_GGUF_UINT32: case ENG_GGUF_INT32: case ENG_GGUF_FLOAT32:
		return 4;
	default: return 8;
	}
}

void gw_kv_arr(gw *w, const char *key, uint32_t elem_type, uint64_t count,
    const void *data)
{
	kv_head(w, key, ENG_GGUF_ARRAY);
	gw_buf_u32(&w->kv, elem_type);
	gw_buf_u64(&w->kv, count);
	gw_buf_put(&w->kv, data, (size_t)count * scalar_size(elem_type));
}

void gw_kv_arr_str(gw *w, const char *key, const char *const *s,
    const size_t *lens, size_t n)
{
	size_t i;

	kv_head(w, key, ENG_GGUF_ARRAY);
	gw_buf_u32(&w->kv, ENG_GGUF_STRING);
	gw_buf_u64(&w->kv, n);
	for (i = 0; i < n; i++)
		gw_buf_strn(&w->kv, s[i], lens ? lens[i] : strlen(s[i]));
}

void gw_kv_raw(gw *w, const char *key, uint32_t type, const void *val,
    size_t n)
{
	kv_head(w, key, type);
	gw_buf_put(&w->kv, val, n);
}

void gw_set_alignment(gw *w, uint32_t a)
{
	w->alignment = a;
}

void gw_tensor(gw *w, const char *name, uint32_t type, uint32_t n_dims,
    const uint64_t *ne, const void *data)
{
	struct tensor *t;
	uint64_t n = 1;
	size_t i;

	w->t = realloc(w->t, (w->n_t + 1) * sizeof *w->t);
	if (!w->t)
		abort();
	t = &w->t[w->n_t++];
	memset(t, 0, sizeof *t);
	t->name = strdup(name);
	t->type = type;
	t->n_dims = n_dims;
	for (i = 0; i < n_dims && i < 4; i++) {
		t->ne[i] = ne[i];
		n *= ne[i];
	}
	if (eng_type_block_size((int)type))
		t->n_bytes = (size_t)(n / eng_type_block_size((int)type) *
		    eng_type_size((int)type));
	t->data = malloc(t->n_bytes ? t->n_bytes : 1);
	if (!t->name || !t->data)
		abort();
	for (i = 0; i < t->n_bytes; i++)
		t->data[i] = data ? ((const uint8_t *)data)[i] :
		    (uint8_t)(i * 7 + w->n_t);
}

static void put_zeros(struct gw_buf *b, size_t n)
{
	static const uint8_t zero[64];

	while (n) {
		size_t k = n < sizeof zero ? n : sizeof zero;
		gw_buf_put(b, zero, k);
		n -= k;
	}
}

static size_t pad(size_t n, size_t a)
{
	return (n + a - 1) / a * a;
}

uint8_t *gw_finish(gw *w, size_t *size)
{
	struct gw_buf b = { 0 };
	uint64_t off = 0;
	size_t i, data_start;

	gw_buf_put(&b, "GGUF", 4);
	gw_buf_u32(&b, w->version);
	gw_buf_u64(&b, w->n_t);
	gw_buf_u64(&b, w->n_kv);
	gw_buf_put(&b, w->kv.p, w->kv.n);
	w->info_off = b.n;
	for (i = 0; i < w->n_t; i++) {
		const struct tensor *t = &w->t[i];
		uint32_t d;
		gw_buf_str(&b, t->name);
		gw_buf_u32(&b, t->n_dims);
		for (d = 0; d < t->n_dims; d++)
			gw_buf_u64(&b, t->ne[d]);
		gw_buf_u32(&b, t->type);
		gw_buf_u64(&b, off);
		off = pad(off + t->n_bytes, w->alignment);
	}
	data_start = pad(b.n, w->alignment);
	put_zeros(&b, data_start - b.n);
	for (i = 0; i < w->n_t; i++) {
		const struct tensor *t = &w->t[i];
		gw_buf_put(&b, t->data, t->n_bytes);
		if (i + 1 < w->n_t)
			put_zeros(&b, pad(b.n - data_start, w->alignment) -
			    (b.n - data_start));
	}
	*size = b.n;
	return b.p;
}

size_t gw_tensor_info_offset(const gw *w)
{
	return w->info_off;
}

int gw_write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	int rc = 0;

	if (!f)
		return -1;
	if (n && fwrite(p, 1, n, f) != n)
		rc = -1;
	if (fclose(f) != 0)
		rc = -1;
	return rc;
}

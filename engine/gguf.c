/* gguf.c - GGUF reader: maps a file, checks every count, length, offset and
 * size against the file before anything else looks at it, and answers typed
 * lookups of metadata and tensors.  Format: ggml's docs/gguf.md.
 *
 * DESIGN
 *  - The whole file is parsed once, in eng_gguf_open, with a bounds-checked
 *    cursor; after that every lookup is a table access, and every offset in
 *    the tables is known to lie inside the map.
 *  - Allocations sized by a count from the file happen only after the count
 *    has been bounded by the bytes left (each entry takes at least k bytes,
 *    so count <= remaining / k).  Hash tables (keys, tensor names) make
 *    duplicate checks linear, so a hostile file of millions of entries
 *    cannot make us quadratic.
 *  - Nested arrays are walked recursively to ENG_GGUF_MAX_DEPTH levels.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "eng_internal.h"

/* ------------------------------------------------------------------------
 * Shared helpers
 * ------------------------------------------------------------------------ */

void eng__assert_fail(const char *expr, const char *file, int line)
{
	fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
	abort();
}

int eng__err(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

uint64_t eng__hash64(const void *p, size_t n)
{
	return XXH3_64bits(p, n);
}

/* ------------------------------------------------------------------------
 * Tensor type table
 * ------------------------------------------------------------------------ */

struct type_info {
	const char *name;
	uint16_t    block;	/* elements per block */
	uint16_t    size;	/* bytes per block */
	uint8_t     in_files;	/* may appear in a model file */
};

/* Indexed by ggml type id; sizes from ggml-common.h's block structs
 * (e.g. block_q4_K: 2 fp16 + 12 scale bytes + 128 nibble bytes = 144). */
static const struct type_info types[] = {
	[ENG_TYPE_F32]  = { "F32",  1,   4,   1 },
	[ENG_TYPE_F16]  = { "F16",  1,   2,   1 },
	[ENG_TYPE_Q4_0] = { "Q4_0", 32,  18,  1 },
	[ENG_TYPE_Q4_1] = { "Q4_1", 32,  20,  1 },
	[ENG_TYPE_Q5_0] = { "Q5_0", 32,  22,  1 },
	[ENG_TYPE_Q5_1] = { "Q5_1", 32,  24,  1 },
	[ENG_TYPE_Q8_0] = { "Q8_0", 32,  34,  1 },
	[ENG_TYPE_Q8_1] = { "Q8_1", 32,  36,  0 },
	[ENG_TYPE_Q2_K] = { "Q2_K", 256, 84,  1 },
	[ENG_TYPE_Q3_K] = { "Q3_K", 256, 110, 1 },
	[ENG_TYPE_Q4_K] = { "Q4_K", 256, 144, 1 },
	[ENG_TYPE_Q5_K] = { "Q5_K", 256, 176, 1 },
	[ENG_TYPE_Q6_K] = { "Q6_K", 256, 210, 1 },
	[ENG_TYPE_Q8_K] = { "Q8_K", 256, 292, 0 },
	[ENG_TYPE_BF16] = { "BF16", 1,   2,   1 },
};
#define N_TYPES (sizeof types / sizeof types[0])

static const struct type_info *type_get(int t)
{
	if (t < 0 || (size_t)t >= N_TYPES || !types[t].name)
		return NULL;
	return &types[t];
}

size_t eng_type_block_size(int t)
{
	const struct type_info *ti = type_get(t);
	return ti ? ti->block : 0;
}

size_t eng_type_size(int t)
{
	const struct type_info *ti = type_get(t);
	return ti ? ti->size : 0;
}

const char *eng_type_name(int t)
{
	const struct type_info *ti = type_get(t);
	return ti ? ti->name : "?";
}

/* ------------------------------------------------------------------------
 * The open file
 * ------------------------------------------------------------------------ */

/* One metadata entry.  For an ARRAY, data_off is the first element; for a
 * STRING array, str_off[i] is the offset of element i's length field. */
struct kv {
	char     *key;		/* NUL-terminated copy */
	uint32_t  type;
	uint64_t  val_off;	/* value (after the type field) */
	uint32_t  elem_type;	/* arrays */
	uint64_t  count;	/* arrays */
	uint64_t  data_off;	/* arrays */
	uint64_t *str_off;	/* string arrays; NULL otherwise */
};

/* Open-addressing table of indices + 1 (0 = empty); cap is a power of 2
 * at least twice the entries. */
struct htab {
	uint32_t *slot;
	size_t    mask;
};

struct eng_gguf {
	const uint8_t   *base;	/* the file */
	size_t           size;
	int              mapped;	/* base came from mmap */
	uint32_t         version;
	uint32_t         alignment;
	uint64_t         data_start;	/* tensor data section */
	size_t           n_kv;
	struct kv       *kv;
	size_t           n_tensors;
	eng_gguf_tensor *tensors;
	char           **tnames;	/* owned copies behind tensors[i].name */
	struct htab      kv_tab, t_tab;
};

/* Bounds-checked cursor over the file. */
struct rd {
	const uint8_t *p;
	size_t         size;
	size_t         off;
	char          *err;
	size_t         errlen;
};

static size_t rd_left(const struct rd *r)
{
	return r->size - r->off;
}

static int rd_bytes(struct rd *r, void *dst, size_t n, const char *what)
{
	if (n > rd_left(r))
		return eng__err(r->err, r->errlen, ENG_EFORMAT,
		    "offset %zu: file truncated reading %s (%zu bytes needed, "
		    "%zu left)", r->off, what, n, rd_left(r));
	memcpy(dst, r->p + r->off, n);
	r->off += n;
	return 0;
}

static int rd_u32(struct rd *r, uint32_t *v, const char *what)
{
	return rd_bytes(r, v, 4, what);
}

static int rd_u64(struct rd *r, uint64_t *v, const char *what)
{
	return rd_bytes(r, v, 8, what);
}

/* A GGUF string: u64 length then bytes.  Sets *off to the bytes. */
static int rd_str(struct rd *r, uint64_t *off, uint64_t *len,
    const char *what)
{
	size_t at = r->off;
	int rc = rd_u64(r, len, what);

	if (rc)
		return rc;
	if (*len > rd_left(r))
		return eng__err(r->err, r->errlen, ENG_EFORMAT,
		    "offset %zu: %s: string length %llu exceeds the %zu bytes "
		    "left in the file", at, what, (unsigned long long)*len,
		    rd_left(r));
	*off = r->off;
	r->off += *len;
	return 0;
}

/* Size of a scalar value type; 0 for STRING, ARRAY and unknown ids. */
static size_t vtype_size(uint32_t t)
{
	switch (t) {
	case ENG_GGUF_UINT8: case ENG_GGUF_INT8: case ENG_GGUF_BOOL:
		return 1;
	case ENG_GGUF_UINT16: case ENG_GGUF_INT16:
		return 2;
	case ENG_GGUF_UINT32: case ENG_GGUF_INT32: case ENG_GGUF_FLOAT32:
		return 4;
	case ENG_GGUF_UINT64: case ENG_GGUF_INT64: case ENG_GGUF_FLOAT64:
		return 8;
	}
	return 0;
}

static int vtype_known(uint32_t t)
{
	return t <= ENG_GGUF_FLOAT64;
}

/* ------------------------------------------------------------------------
 * Hash tables
 * ------------------------------------------------------------------------ */

static int htab_init(struct htab *h, size_t n)
{
	size_t cap = 16;

	while (cap < 2 * n)
		cap <<= 1;
	h->slot = calloc(cap, sizeof *h->slot);
	if (!h->slot)
		return ENG_ENOMEM;
	h->mask = cap - 1;
	return 0;
}

/* Find name among names[] through h; returns the index or -1.  With
 * insert_idx >= 0, inserts it when absent. */
static long htab_find(const struct htab *h, const char *name,
    const char *(*name_of)(const void *, size_t), const void *ctx,
    long insert_idx)
{
	size_t len = strlen(name);
	size_t i = (size_t)eng__hash64(name, len) & h->mask;

	if (!h->slot)
		return -1;
	for (;;) {
		uint32_t s = h->slot[i];
		if (s == 0) {
			if (insert_idx >= 0)
				h->slot[i] = (uint32_t)insert_idx + 1;
			return -1;
		}
		if (strcmp(name_of(ctx, s - 1), name) == 0)
			return (long)(s - 1);
		i = (i + 1) & h->mask;
	}
}

static const char *kv_name_of(const void *ctx, size_t i)
{
	return ((const eng_gguf *)ctx)->kv[i].key;
}

static const char *t_name_of(const void *ctx, size_t i)
{
	return ((const eng_gguf *)ctx)->tensors[i].name;
}

/* ------------------------------------------------------------------------
 * Parsing
 * ------------------------------------------------------------------------ */

static char *dup_str(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s) {
		memcpy(s, p, n);
		s[n] = 0;
	}
	return s;
}

/* Skip over the value of type t (for nested arrays), depth levels down. */
static int skip_value(struct rd *r, uint32_t t, int depth, const char *key)
{
	uint64_t off, len, count, i;
	uint32_t et;
	size_t at = r->off, sz;
	int rc;

	if (!vtype_known(t))
		return eng__err(r->err, r->errlen, ENG_EFORMAT,
		    "offset %zu: key '%s': unknown value type %u", at, key, t);
	if (t == ENG_GGUF_STRING)
		return rd_str(r, &off, &len, key);
	if (t != ENG_GGUF_ARRAY) {
		sz = vtype_size(t);
		if (sz > rd_left(r))
			return eng__err(r->err, r->errlen, ENG_EFORMAT,
			    "offset %zu: key '%s': file truncated in value", at,
			    key);
		r->off += sz;
		return 0;
	}
	if (depth >= ENG_GGUF_MAX_DEPTH)
		return eng__err(r->err, r->errlen, ENG_EFORMAT,
		    "offset %zu: key '%s': arrays nested deeper than %d", at,
		    key, ENG_GGUF_MAX_DEPTH);
	if ((rc = rd_u32(r, &et, key)) || (rc = rd_u64(r, &count, key)))
		return rc;
	if (!vtype_known(et))
		return eng__err(r->err, r->errlen, ENG_EFORMAT,
		    "offset %zu: key '%s': unknown array element type %u", at,
		    key, et);
	sz = vtype_size(et);
	if (sz) {
		if (count > rd_left(r) / sz)
			return eng__err(r->err, r->errlen, ENG_EFORMAT,
			    "offset %zu: key '%s': array of %llu elements "
			    "exceeds the %zu bytes left", at, key,
			    (unsigned long long)count, rd_left(r));
		r->off += count * sz;
		return 0;
	}
	/* Strings take at least 8 bytes, arrays at least 12. */
	if (count > rd_left(r) / (et == ENG_GGUF_STRING ? 8 : 12))
		return eng__err(r->err, r->errlen, ENG_EFORMAT,
		    "offset %zu: key '%s': array of %llu elements exceeds the "
		    "%zu bytes left", at, key, (unsigned long long)count,
		    rd_left(r));
	for (i = 0; i < count; i++)
		if ((rc = skip_value(r, et, depth + 1, key)))
			return rc;
	return 0;
}

static int parse_kv(eng_gguf *g, struct rd *r, size_t idx)
{
	struct kv *kv = &g->kv[idx];
	uint64_t koff, klen, i;
	size_t at = r->off;
	int rc;

	if ((rc = rd_str(r, &koff, &klen, "metadata key")))
		return rc;
	if (klen == 0)
		return eng__err(r->err, r->errlen, ENG_EFORMAT,
		    "offset %zu: metadata entry %zu has an empty key", at, idx);
	if (memchr(r->p + koff, 0, klen))
		return eng__err(r->err, r->errlen, ENG_EFORMAT,
		    "offset %zu: metadata key %zu contains a NUL byte", at,
		    idx);
	if (!(kv->key = dup_str(r->p + koff, klen)))
		return ENG_ENOMEM;
	if (htab_find(&g->kv_tab, kv->key, kv_name_of, g, (long)idx) >= 0)
		return eng__err(r->err, r->errlen, ENG_EFORMAT,
		    "offset %zu: duplicate metadata key '%s'", at, kv->key);
	if ((rc = rd_u32(r, &kv->type, kv->key)))
		return rc;
	kv->val_off = r->off;
	if (kv->type != ENG_GGUF_ARRAY)
		return skip_value(r, kv->type, 0, kv->key);

	/* Top-level arrays are indexed: remember where the elements are, and
	 * for strings where each one starts. */
	if ((rc = rd_u32(r, &kv->elem_type, kv->key)) ||
	    (rc = rd_u64(r, &kv->count, kv->key)))
		return rc;
	r->off = kv->val_off;	/* let skip_value check the whole array */
	if (kv->elem_type != ENG_GGUF_STRING) {
		if ((rc = skip_value(r, kv->type, 0, kv->key)))
			return rc;
		kv->data_off = kv->val_off + 12;
		return 0;
	}
	r->off += 12;
	kv->data_off = r->off;
	if (kv->count > rd_left(r) / 8)
		return eng__err(r->err, r->errlen, ENG_EFORMAT,
		    "offset %zu: key '%s': array of %llu strings exceeds the "
		    "%zu bytes left", at, kv->key,
		    (unsigned long long)kv->count, rd_left(r));
	kv->str_off = malloc((kv->count ? kv->count : 1) * sizeof(uint64_t));
	if (!kv->str_off)
		return ENG_ENOMEM;
	for (i = 0; i < kv->count; i++) {
		uint64_t soff, slen;
		kv->str_off[i] = r->off;
		if ((rc = rd_str(r, &soff, &slen, kv->key)))
			return rc;
	}
	return 0;
}

static int parse_tensor(eng_gguf *g, struct rd *r, size_t idx)
{
	eng_gguf_tensor *t = &g->tensors[idx];
	const struct type_info *ti;
	uint64_t noff, nlen, n = 1;
	uint32_t nd, type;
	size_t at = r->off, d;
	int rc;

	if ((rc = rd_str(r, &noff, &nlen, "tensor name")))
		return rc;
	if (nlen == 0 || nlen >= 64 || memchr(r->p + noff, 0, nlen))
		return eng__err(r->err, r->errlen, ENG_EFORMAT,
		    "offset %zu: tensor %zu: name must be 1 to 63 bytes "
		    "without NUL (length %llu)", at, idx,
		    (unsigned long long)nlen);
	if (!(g->tnames[idx] = dup_str(r->p + noff, nlen)))
		return ENG_ENOMEM;
	t->name = g->tnames[idx];
	if (htab_find(&g->t_tab, t->name, t_name_of, g, (long)idx) >= 0)
		return eng__err(r->err, r->errlen, ENG_EFORMAT,
		    "offset %zu: duplicate tensor name '%s'", at, t->name);
	if ((rc = rd_u32(r, &nd, t->name)))
		return rc;
	if (nd > ENG_GGUF_MAX_DIMS)
		return eng__err(r->err, r->errlen, ENG_EFORMAT,
		    "offset %zu: tensor '%s': %u dimensions (at most %d)", at,
		    t->name, nd, ENG_GGUF_MAX_DIMS);
	t->n_dims = nd;
	for (d = 0; d < ENG_GGUF_MAX_DIMS; d++)
		t->ne[d] = 1;
	for (d = 0; d < nd; d++) {
		if ((rc = rd_u64(r, &t->ne[d], t->name)))
			return rc;
		/* ggml keeps dims in int64: the product must fit too. */
		if (t->ne[d] > (uint64_t)INT64_MAX ||
		    (t->ne[d] && n > (uint64_t)INT64_MAX / t->ne[d]))
			return eng__err(r->err, r->errlen, ENG_EFORMAT,
			    "offset %zu: tensor '%s': dimensions overflow", at,
			    t->name);
		n *= t->ne[d];
	}
	t->n_elements = n;
	if ((rc = rd_u32(r, &type, t->name)))
		return rc;
	ti = type_get((int)type);
	if (!ti || !ti->in_files)
		return eng__err(r->err, r->errlen, ENG_EUNSUP,
		    "offset %zu: tensor '%s': unsupported type id %u", at,
		    t->name, type);
	t->type = (eng_type)type;
	if (t->ne[0] % ti->block)
		return eng__err(r->err, r->errlen, ENG_EFORMAT,
		    "offset %zu: tensor '%s': row of %llu elements is not a "
		    "multiple of %s's block of %u", at, t->name,
		    (unsigned long long)t->ne[0], ti->name, ti->block);
	/* n / block * size cannot overflow: size / block <= 4. */
	t->n_bytes = n / ti->block * ti->size;
	if ((rc = rd_u64(r, &t->offset, t->name)))
		return rc;
	return 0;
}

static int cmp_off(const void *a, const void *b)
{
	const eng_gguf_tensor *x = *(eng_gguf_tensor *const *)a;
	const eng_gguf_tensor *y = *(eng_gguf_tensor *const *)b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Place tensor data: offsets are relative to the aligned data section and
 * must be aligned, inside the file, and not overlap. */
static int place_tensors(eng_gguf *g, struct rd *r)
{
	eng_gguf_tensor **by_off = NULL;
	uint64_t room;
	size_t i;
	int rc = 0;

	if (g->data_start > g->size)
		room = 0;
	else
		room = g->size - g->data_start;
	for (i = 0; i < g->n_tensors; i++) {
		eng_gguf_tensor *t = &g->tensors[i];
		if (t->offset % g->alignment)
			return eng__err(r->err, r->errlen, ENG_EFORMAT,
			    "tensor '%s': data offset %llu is not a multiple "
			    "of the alignment %u", t->name,
			    (unsigned long long)t->offset, g->alignment);
		if (t->offset > room || t->n_bytes > room - t->offset)
			return eng__err(r->err, r->errlen, ENG_EFORMAT,
			    "tensor '%s': data [%llu, +%llu) past the end of "
			    "the file (data section at %llu, file %zu bytes)",
			    t->name, (unsigned long long)t->offset,
			    (unsigned long long)t->n_bytes,
			    (unsigned long long)g->data_start, g->size);
		t->offset += g->data_start;
		/* An empty tensor may sit at the very end of the file. */
		t->data = t->offset <= g->size ? g->base + t->offset : NULL;
	}
	if (g->n_tensors < 2)
		return 0;
	if (!(by_off = malloc(g->n_tensors * sizeof *by_off)))
		return ENG_ENOMEM;
	for (i = 0; i < g->n_tensors; i++)
		by_off[i] = &g->tensors[i];
	qsort(by_off, g->n_tensors, sizeof *by_off, cmp_off);
	for (i = 1; i < g->n_tensors; i++) {
		const eng_gguf_tensor *a = by_off[i - 1], *b = by_off[i];
		if (a->offset + a->n_bytes > b->offset) {
			rc = eng__err(r->err, r->errlen, ENG_EFORMAT,
			    "tensor '%s': data overlaps tensor '%s'", b->name,
			    a->name);
			break;
		}
	}
	free(by_off);
	return rc;
}

static int parse(eng_gguf *g, char *err, size_t errlen)
{
	struct rd r = { g->base, g->size, 0, err, errlen };
	uint64_t n_t, n_kv;
	uint32_t magic, ver;
	long ai;
	size_t i;
	int rc;

	if ((rc = rd_u32(&r, &magic, "magic")))
		return rc;
	if (memcmp(&magic, "GGUF", 4) != 0)
		return eng__err(err, errlen, ENG_EFORMAT,
		    "offset 0: not a GGUF file (bad magic)");
	if ((rc = rd_u32(&r, &ver, "version")))
		return rc;
	if (ver == 0x02000000 || ver == 0x03000000)
		return eng__err(err, errlen, ENG_EUNSUP,
		    "offset 4: big-endian GGUF files are not supported");
	if (ver != 2 && ver != 3)
		return eng__err(err, errlen, ENG_EUNSUP,
		    "offset 4: GGUF version %u not supported (2 or 3)", ver);
	g->version = ver;
	if ((rc = rd_u64(&r, &n_t, "tensor count")) ||
	    (rc = rd_u64(&r, &n_kv, "metadata count")))
		return rc;
	/* A tensor info takes at least 24 bytes, a metadata entry 13. */
	if (n_t > rd_left(&r) / 24 || n_t > UINT32_MAX - 1)
		return eng__err(err, errlen, ENG_EFORMAT,
		    "offset 8: tensor count %llu exceeds what %zu bytes can "
		    "hold", (unsigned long long)n_t, rd_left(&r));
	if (n_kv > rd_left(&r) / 13 || n_kv > UINT32_MAX - 1)
		return eng__err(err, errlen, ENG_EFORMAT,
		    "offset 16: metadata count %llu exceeds what %zu bytes "
		    "can hold", (unsigned long long)n_kv, rd_left(&r));

	g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
	g->tensors = calloc(n_t ? n_t : 1, sizeof *g->tensors);
	g->tnames = calloc(n_t ? n_t : 1, sizeof *g->tnames);
	if (!g->kv || !g->tensors || !g->tnames ||
	    htab_init(&g->kv_tab, n_kv) || htab_init(&g->t_tab, n_t))
		return ENG_ENOMEM;
	for (i = 0; i < n_kv; i++) {
		g->n_kv = i + 1;	/* so that close frees what was copied */
		if ((rc = parse_kv(g, &r, i)))
			return rc;
	}
	g->alignment = 32;
	ai = eng_gguf_find_key(g, "general.alignment");
	if (ai >= 0) {
		const struct kv *kv = &g->kv[ai];
		uint32_t a;
		if (kv->type != ENG_GGUF_UINT32)
			return eng__err(err, errlen, ENG_EFORMAT,
			    "offset %llu: key 'general.alignment' must be "
			    "UINT32", (unsigned long long)kv->val_off);
		memcpy(&a, g->base + kv->val_off, 4);
		if (a == 0 || (a & (a - 1)))
			return eng__err(err, errlen, ENG_EFORMAT,
			    "offset %llu: general.alignment %u is not a power "
			    "of two", (unsigned long long)kv->val_off, a);
		g->alignment = a;
	}
	for (i = 0; i < n_t; i++) {
		g->n_tensors = i + 1;
		if ((rc = parse_tensor(g, &r, i)))
			return rc;
	}
	/* The data section starts at the next multiple of the alignment
	 * (r.off <= size < SIZE_MAX - alignment, so this cannot wrap). */
	g->data_start = ((uint64_t)r.off + g->alignment - 1) /
	    g->alignment * g->alignment;
	return place_tensors(g, &r);
}

int eng_gguf_open_mem(const void *data, size_t size, eng_gguf **out,
    char *err, size_t errlen)
{
	eng_gguf *g;
	int rc;

	if (!out || (!data && size))
		return eng__err(err, errlen, ENG_EINVAL, "invalid argument");
	*out = NULL;
	if (err && errlen)
		err[0] = 0;
	if (size > (size_t)1 << 60)
		return eng__err(err, errlen, ENG_ERANGE, "file too large");
	if (!(g = calloc(1, sizeof *g)))
		return ENG_ENOMEM;
	g->base = data;
	g->size = size;
	if ((rc = parse(g, err, errlen)))
		goto fail;
	*out = g;
	return 0;
fail:
	if (rc == ENG_ENOMEM)
		eng__err(err, errlen, rc, "out of memory reading GGUF");
	eng_gguf_close(g);
	return rc;
}

int eng_gguf_open(const char *path, eng_gguf **out, char *err, size_t errlen)
{
	struct stat st;
	void *map = MAP_FAILED;
	int fd = -1, rc;

	if (!path || !out)
		return eng__err(err, errlen, ENG_EINVAL, "invalid argument");
	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = eng__err(err, errlen, ENG_EIO, "%s: %s", path,
		    strerror(errno));
		goto fail;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		rc = eng__err(err, errlen, ENG_EIO, "%s: not a regular file",
		    path);
		goto fail;
	}
	if (st.st_size < 24) {
		rc = eng__err(err, errlen, ENG_EFORMAT,
		    "%s: %lld bytes is too short for a GGUF header", path,
		    (long long)st.st_size);
		goto fail;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		rc = eng__err(err, errlen, ENG_EIO, "%s: mmap: %s", path,
		    strerror(errno));
		goto fail;
	}
	close(fd);
	fd = -1;
	rc = eng_gguf_open_mem(map, (size_t)st.st_size, out, err, errlen);
	if (rc)
		goto fail;
	(*out)->mapped = 1;
	return 0;
fail:
	if (map != MAP_FAILED)
		munmap(map, (size_t)st.st_size);
	if (fd >= 0)
		close(fd);
	return rc;
}

void eng_gguf_close(eng_gguf *g)
{
	size_t i;

	if (!g)
		return;
	for (i = 0; i < g->n_kv && g->kv; i++) {
		free(g->kv[i].key);
		free(g->kv[i].str_off);
	}
	for (i = 0; i < g->n_tensors && g->tnames; i++)
		free(g->tnames[i]);
	free(g->kv);
	free(g->tensors);
	free(g->tnames);
	free(g->kv_tab.slot);
	free(g->t_tab.slot);
	if (g->mapped)
		munmap((void *)g->base, g->size);
	free(g);
}

void eng_gguf_release(const eng_gguf *g, const void *p, size_t n)
{
	uintptr_t lo = (uintptr_t)p, hi, base, pg;
	long ps = sysconf(_SC_PAGESIZE);

	if (!g || !g->mapped || !p || ps <= 0)
		return;
	base = (uintptr_t)g->base;
	if (lo < base || n > g->size || lo - base > g->size - n)
		return;
	pg = (uintptr_t)ps;
	hi = (lo + n) & ~(pg - 1);	/* whole pages inside the range */
	lo = (lo + pg - 1) & ~(pg - 1);
	if (hi > lo)
		(void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* ------------------------------------------------------------------------
 * Lookups
 * ------------------------------------------------------------------------ */

uint32_t eng_gguf_version(const eng_gguf *g)
{
	return g->version;
}

uint32_t eng_gguf_alignment(const eng_gguf *g)
{
	return g->alignment;
}

const void *eng_gguf_bytes(const eng_gguf *g, size_t *size)
{
	if (size)
		*size = g->size;
	return g->base;
}

size_t eng_gguf_kv_count(const eng_gguf *g)
{
	return g->n_kv;
}

long eng_gguf_find_key(const eng_gguf *g, const char *key)
{
	if (!g || !key)
		return -1;
	return htab_find(&g->kv_tab, key, kv_name_of, g, -1);
}

const char *eng_gguf_kv_key(const eng_gguf *g, size_t idx)
{
	return idx < g->n_kv ? g->kv[idx].key : NULL;
}

int eng_gguf_kv_type(const eng_gguf *g, size_t idx)
{
	return idx < g->n_kv ? (int)g->kv[idx].type : -1;
}

static const struct kv *kv_get(const eng_gguf *g, const char *key)
{
	long i = eng_gguf_find_key(g, key);

	return i < 0 ? NULL : &g->kv[i];
}

/* Read an integer value of any integer type as a signed 128-bit-safe pair:
 * *neg tells whether it is negative, *mag its magnitude. */
static int kv_int(const eng_gguf *g, const char *key, int *neg,
    uint64_t *mag)
{
	const struct kv *kv = kv_get(g, key);
	const uint8_t *p;
	int64_t s = 0;
	uint64_t u = 0;
	int is_signed = 0;

	if (!kv)
		return ENG_ENOKEY;
	p = g->base + kv->val_off;
	switch (kv->type) {
	case ENG_GGUF_UINT8:  { uint8_t v;  memcpy(&v, p, 1); u = v; break; }
	case ENG_GGUF_UINT16: { uint16_t v; memcpy(&v, p, 2); u = v; break; }
	case ENG_GGUF_UINT32: { uint32_t v; memcpy(&v, p, 4); u = v; break; }
	case ENG_GGUF_UINT64: { memcpy(&u, p, 8); break; }
	case ENG_GGUF_INT8:   { int8_t v;  memcpy(&v, p, 1); s = v; is_signed = 1; break; }
	case ENG_GGUF_INT16:  { int16_t v; memcpy(&v, p, 2); s = v; is_signed = 1; break; }
	case ENG_GGUF_INT32:  { int32_t v; memcpy(&v, p, 4); s = v; is_signed = 1; break; }
	case ENG_GGUF_INT64:  { memcpy(&s, p, 8); is_signed = 1; break; }
	default:
		return ENG_EFORMAT;
	}
	if (is_signed && s < 0) {
		*neg = 1;
		*mag = (uint64_t)(-(s + 1)) + 1;
	} else {
		*neg = 0;
		*mag = is_signed ? (uint64_t)s : u;
	}
	return 0;
}

int eng_gguf_get_u32(const eng_gguf *g, const char *key, uint32_t *out)
{
	uint64_t mag;
	int neg, rc;

	if (!g || !key || !out)
		return ENG_EINVAL;
	if ((rc = kv_int(g, key, &neg, &mag)))
		return rc;
	if (neg || mag > UINT32_MAX)
		return ENG_ERANGE;
	*out = (uint32_t)mag;
	return 0;
}

int eng_gguf_get_i64(const eng_gguf *g, const char *key, int64_t *out)
{
	uint64_t mag;
	int neg, rc;

	if (!g || !key || !out)
		return ENG_EINVAL;
	if ((rc = kv_int(g, key, &neg, &mag)))
		return rc;
	if (!neg && mag > (uint64_t)INT64_MAX)
		return ENG_ERANGE;
	*out = neg ? (int64_t)(-(int64_t)(mag - 1) - 1) : (int64_t)mag;
	return 0;
}

int eng_gguf_get_f32(const eng_gguf *g, const char *key, float *out)
{
	const struct kv *kv;

	if (!g || !key || !out)
		return ENG_EINVAL;
	if (!(kv = kv_get(g, key)))
		return ENG_ENOKEY;
	if (kv->type == ENG_GGUF_FLOAT32) {
		memcpy(out, g->base + kv->val_off, 4);
	} else if (kv->type == ENG_GGUF_FLOAT64) {
		double d;
		memcpy(&d, g->base + kv->val_off, 8);
		*out = (float)d;
	} else {
		return ENG_EFORMAT;
	}
	return 0;
}

int eng_gguf_get_bool(const eng_gguf *g, const char *key, int *out)
{
	const struct kv *kv;

	if (!g || !key || !out)
		return ENG_EINVAL;
	if (!(kv = kv_get(g, key)))
		return ENG_ENOKEY;
	if (kv->type != ENG_GGUF_BOOL)
		return ENG_EFORMAT;
	*out = g->base[kv->val_off] != 0;
	return 0;
}

int eng_gguf_get_str(const eng_gguf *g, const char *key, const char **s,
    size_t *len)
{
	const struct kv *kv;
	uint64_t n;

	if (!g || !key || !s || !len)
		return ENG_EINVAL;
	if (!(kv = kv_get(g, key)))
		return ENG_ENOKEY;
	if (kv->type != ENG_GGUF_STRING)
		return ENG_EFORMAT;
	memcpy(&n, g->base + kv->val_off, 8);
	*s = (const char *)g->base + kv->val_off + 8;
	*len = (size_t)n;
	return 0;
}

int eng_gguf_get_arr(const eng_gguf *g, const char *key, int *elem_type,
    uint64_t *count, const void **data)
{
	const struct kv *kv;

	if (!g || !key)
		return ENG_EINVAL;
	if (!(kv = kv_get(g, key)))
		return ENG_ENOKEY;
	if (kv->type != ENG_GGUF_ARRAY)
		return ENG_EFORMAT;
	if (elem_type)
		*elem_type = (int)kv->elem_type;
	if (count)
		*count = kv->count;
	if (data)
		*data = g->base + kv->data_off;
	return 0;
}

int eng_gguf_arr_str(const eng_gguf *g, const char *key, uint64_t i,
    const char **s, size_t *len)
{
	const struct kv *kv;
	uint64_t n;

	if (!g || !key || !s || !len)
		return ENG_EINVAL;
	if (!(kv = kv_get(g, key)))
		return ENG_ENOKEY;
	if (kv->type != ENG_GGUF_ARRAY || kv->elem_type != ENG_GGUF_STRING)
		return ENG_EFORMAT;
	if (i >= kv->count)
		return ENG_ERANGE;
	memcpy(&n, g->base + kv->str_off[i], 8);
	*s = (const char *)g->base + kv->str_off[i] + 8;
	*len = (size_t)n;
	return 0;
}

size_t eng_gguf_tensor_count(const eng_gguf *g)
{
	return g->n_tensors;
}

const eng_gguf_tensor *eng_gguf_tensor_at(const eng_gguf *g, size_t idx)
{
	return idx < g->n_tensors ? &g->tensors[idx] : NULL;
}

const eng_gguf_tensor *eng_gguf_tensor_find(const eng_gguf *g,
    const char *name)
{
	long i;

	if (!g || !name)
		return NULL;
	i = htab_find(&g->t_tab, name, t_name_of, g, -1);
	return i < 0 ? NULL : &g->tensors[i];
}

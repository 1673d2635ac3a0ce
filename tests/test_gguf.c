/* test_gguf.c - the GGUF reader (engine/gguf.c): good files of versions 2
 * and 3 with every value type, alignments and tensor types; and malformed
 * files (truncated at every byte, hostile counts and lengths, bad offsets,
 * overlaps, unknown types, duplicates), each refused with the expected code
 * and a message, never a crash (the suite runs under ASan and UBSan).
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "gguf_writer.h"

/* ------------------------------------------------------------------------
 * Good files
 * ------------------------------------------------------------------------ */

static uint8_t *good_file(uint32_t version, uint32_t alignment, size_t *n)
{
	static const int32_t ints[3] = { -1, 0, 7 };
	static const char *const strs[3] = { "alpha", "", "gamma" };
	uint8_t nested[64];
	size_t nn = 0;
	uint64_t ne2[2] = { 64, 3 }, ne1[1] = { 256 }, ne4[4] = { 32, 2, 2, 2 };
	uint32_t t;
	uint64_t c;
	uint8_t *p;
	gw *w = gw_new(version);

	if (alignment != 32) {
		gw_kv_u32(w, "general.alignment", alignment);
		gw_set_alignment(w, alignment);
	}
	gw_kv_u8(w, "t.u8", 200);
	gw_kv_i8(w, "t.i8", -100);
	gw_kv_u16(w, "t.u16", 60000);
	gw_kv_i16(w, "t.i16", -30000);
	gw_kv_u32(w, "t.u32", 4000000000u);
	gw_kv_i32(w, "t.i32", -2000000000);
	gw_kv_f32(w, "t.f32", 1.5f);
	gw_kv_bool(w, "t.bool", 1);
	gw_kv_str(w, "t.str", "hello");
	gw_kv_u64(w, "t.u64", 1ull << 40);
	gw_kv_i64(w, "t.i64", -(1ll << 40));
	gw_kv_f64(w, "t.f64", 0.25);
	gw_kv_arr(w, "t.arr_i32", ENG_GGUF_INT32, 3, ints);
	gw_kv_arr_str(w, "t.arr_str", strs, NULL, 3);
	/* [[1, 2], ["x"]]: an array of two arrays. */
	t = ENG_GGUF_ARRAY; memcpy(nested + nn, &t, 4); nn += 4;
	c = 2; memcpy(nested + nn, &c, 8); nn += 8;
	t = ENG_GGUF_UINT8; memcpy(nested + nn, &t, 4); nn += 4;
	c = 2; memcpy(nested + nn, &c, 8); nn += 8;
	nested[nn++] = 1; nested[nn++] = 2;
	t = ENG_GGUF_STRING; memcpy(nested + nn, &t, 4); nn += 4;
	c = 1; memcpy(nested + nn, &c, 8); nn += 8;
	c = 1; memcpy(nested + nn, &c, 8); nn += 8;
	nested[nn++] = 'x';
	gw_kv_raw(w, "t.nested", ENG_GGUF_ARRAY, nested, nn);
	gw_kv_str(w, "general.architecture", "test");

	gw_tensor(w, "w.f32", ENG_TYPE_F32, 2, ne2, NULL);
	gw_tensor(w, "w.f16", ENG_TYPE_F16, 1, ne1, NULL);
	gw_tensor(w, "w.bf16", ENG_TYPE_BF16, 1, ne1, NULL);
	gw_tensor(w, "w.q8_0", ENG_TYPE_Q8_0, 4, ne4, NULL);
	gw_tensor(w, "w.q4_0", ENG_TYPE_Q4_0, 1, ne1, NULL);
	gw_tensor(w, "w.q4_1", ENG_TYPE_Q4_1, 1, ne1, NULL);
	gw_tensor(w, "w.q5_0", ENG_TYPE_Q5_0, 1, ne1, NULL);
	gw_tensor(w, "w.q5_1", ENG_TYPE_Q5_1, 1, ne1, NULL);
	gw_tensor(w, "w.q2_k", ENG_TYPE_Q2_K, 1, ne1, NULL);
	gw_tensor(w, "w.q3_k", ENG_TYPE_Q3_K, 1, ne1, NULL);
	gw_tensor(w, "w.q4_k", ENG_TYPE_Q4_K, 1, ne1, NULL);
	gw_tensor(w, "w.q5_k", ENG_TYPE_Q5_K, 1, ne1, NULL);
	gw_tensor(w, "w.q6_k", ENG_TYPE_Q6_K, 1, ne1, NULL);
	p = gw_finish(w, n);
	gw_free(w);
	return p;
}

static void check_good(uint32_t version, uint32_t alignment)
{
	size_t n, len, i;
	uint8_t *p = good_file(version, alignment, &n);
	eng_gguf *g;
	char err[256];
	uint32_t u32;
	int64_t i64;
	float f;
	int b, et;
	const char *s;
	uint64_t cnt;
	const void *data;
	const eng_gguf_tensor *t;
	int32_t v;

	ck_assert_msg(eng_gguf_open_mem(p, n, &g, err, sizeof err) == 0, "%s",
	    err);
	ck_assert_uint_eq(eng_gguf_version(g), version);
	ck_assert_uint_eq(eng_gguf_alignment(g), alignment);
	ck_assert_uint_eq(eng_gguf_kv_count(g), alignment != 32 ? 17 : 16);
	ck_assert_int_eq(eng_gguf_get_u32(g, "t.u8", &u32), 0);
	ck_assert_uint_eq(u32, 200);
	ck_assert_int_eq(eng_gguf_get_i64(g, "t.i8", &i64), 0);
	ck_assert_int_eq(i64, -100);
	ck_assert_int_eq(eng_gguf_get_u32(g, "t.u16", &u32), 0);
	ck_assert_uint_eq(u32, 60000);
	ck_assert_int_eq(eng_gguf_get_i64(g, "t.i16", &i64), 0);
	ck_assert_int_eq(i64, -30000);
	ck_assert_int_eq(eng_gguf_get_u32(g, "t.u32", &u32), 0);
	ck_assert_uint_eq(u32, 4000000000u);
	ck_assert_int_eq(eng_gguf_get_i64(g, "t.i32", &i64), 0);
	ck_assert_int_eq(i64, -2000000000);
	ck_assert_int_eq(eng_gguf_get_f32(g, "t.f32", &f), 0);
	ck_assert_float_eq(f, 1.5f);
	ck_assert_int_eq(eng_gguf_get_bool(g, "t.bool", &b), 0);
	ck_assert_int_eq(b, 1);
	ck_assert_int_eq(eng_gguf_get_str(g, "t.str", &s, &len), 0);
	ck_assert_uint_eq(len, 5);
	ck_assert(memcmp(s, "hello", 5) == 0);
	ck_assert_int_eq(eng_gguf_get_i64(g, "t.u64", &i64), 0);
	ck_assert_int_eq(i64, 1ll << 40);
	ck_assert_int_eq(eng_gguf_get_i64(g, "t.i64", &i64), 0);
	ck_assert_int_eq(i64, -(1ll << 40));
	ck_assert_int_eq(eng_gguf_get_f32(g, "t.f64", &f), 0);
	ck_assert_float_eq(f, 0.25f);
	ck_assert_int_eq(eng_gguf_get_arr(g, "t.arr_i32", &et, &cnt, &data),
	    0);
	ck_assert_int_eq(et, ENG_GGUF_INT32);
	ck_assert_uint_eq(cnt, 3);
	memcpy(&v, (const char *)data + 8, 4);
	ck_assert_int_eq(v, 7);
	ck_assert_int_eq(eng_gguf_arr_str(g, "t.arr_str", 2, &s, &len), 0);
	ck_assert(len == 5 && memcmp(s, "gamma", 5) == 0);
	ck_assert_int_eq(eng_gguf_arr_str(g, "t.arr_str", 1, &s, &len), 0);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(eng_gguf_arr_str(g, "t.arr_str", 3, &s, &len),
	    ENG_ERANGE);
	ck_assert_int_eq(eng_gguf_get_arr(g, "t.nested", &et, &cnt, NULL), 0);
	ck_assert_int_eq(et, ENG_GGUF_ARRAY);
	ck_assert_uint_eq(cnt, 2);

	/* Wrong kinds, missing keys, out of range. */
	ck_assert_int_eq(eng_gguf_get_u32(g, "t.str", &u32), ENG_EFORMAT);
	ck_assert_int_eq(eng_gguf_get_u32(g, "t.i8", &u32), ENG_ERANGE);
	ck_assert_int_eq(eng_gguf_get_u32(g, "t.u64", &u32), ENG_ERANGE);
	ck_assert_int_eq(eng_gguf_get_f32(g, "t.u32", &f), ENG_EFORMAT);
	ck_assert_int_eq(eng_gguf_get_bool(g, "t.u8", &b), ENG_EFORMAT);
	ck_assert_int_eq(eng_gguf_get_str(g, "nope", &s, &len), ENG_ENOKEY);
	ck_assert_int_eq(eng_gguf_arr_str(g, "t.arr_i32", 0, &s, &len),
	    ENG_EFORMAT);
	ck_assert_int_eq(eng_gguf_find_key(g, "nope"), -1);
	ck_assert_str_eq(eng_gguf_kv_key(g, (size_t)eng_gguf_find_key(g,
	    "t.f64")), "t.f64");
	ck_assert_int_eq(eng_gguf_kv_type(g, (size_t)eng_gguf_find_key(g,
	    "t.f64")), ENG_GGUF_FLOAT64);

	/* Tensors: shapes, sizes, data where the writer put it. */
	ck_assert_uint_eq(eng_gguf_tensor_count(g), 13);
	t = eng_gguf_tensor_find(g, "w.f32");
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq(t->n_dims, 2);
	ck_assert_uint_eq(t->ne[0], 64);
	ck_assert_uint_eq(t->ne[1], 3);
	ck_assert_uint_eq(t->ne[2], 1);
	ck_assert_uint_eq(t->n_bytes, 64 * 3 * 4);
	t = eng_gguf_tensor_find(g, "w.q8_0");
	ck_assert_uint_eq(t->n_elements, 256);
	ck_assert_uint_eq(t->n_bytes, 8 * 34);
	t = eng_gguf_tensor_find(g, "w.q6_k");
	ck_assert_uint_eq(t->type, ENG_TYPE_Q6_K);
	ck_assert_uint_eq(t->n_bytes, 210);
	ck_assert_ptr_null(eng_gguf_tensor_find(g, "w.none"));
	for (i = 0; i < eng_gguf_tensor_count(g); i++) {
		t = eng_gguf_tensor_at(g, i);
		ck_assert_uint_eq(t->offset % alignment, 0);
		ck_assert_ptr_eq(t->data, p + t->offset);
		/* The writer's pattern: byte k is k * 7 + (index + 1). */
		ck_assert_uint_eq(((const uint8_t *)t->data)[1],
		    (uint8_t)(7 + i + 1));
	}
	eng_gguf_close(g);
	free(p);
}

START_TEST(good_v3)
{
	check_good(3, 32);
}
END_TEST

START_TEST(good_v2)
{
	check_good(2, 32);
}
END_TEST

START_TEST(good_alignment)
{
	check_good(3, 64);
	check_good(3, 8);
	check_good(2, 256);
}
END_TEST

START_TEST(empty_file_ok)
{
	gw *w = gw_new(3);
	size_t n;
	uint8_t *p = gw_finish(w, &n);
	eng_gguf *g;

	ck_assert_int_eq(eng_gguf_open_mem(p, n, &g, NULL, 0), 0);
	ck_assert_uint_eq(eng_gguf_kv_count(g), 0);
	ck_assert_uint_eq(eng_gguf_tensor_count(g), 0);
	eng_gguf_close(g);
	gw_free(w);
	free(p);
}
END_TEST

START_TEST(type_table)
{
	static const struct { int t; size_t bs, ts; const char *name; } x[] = {
		{ ENG_TYPE_F32, 1, 4, "F32" }, { ENG_TYPE_F16, 1, 2, "F16" },
		{ ENG_TYPE_BF16, 1, 2, "BF16" }, { ENG_TYPE_Q8_0, 32, 34, "Q8_0" },
		{ ENG_TYPE_Q4_0, 32, 18, "Q4_0" }, { ENG_TYPE_Q4_1, 32, 20, "Q4_1" },
		{ ENG_TYPE_Q5_0, 32, 22, "Q5_0" }, { ENG_TYPE_Q5_1, 32, 24, "Q5_1" },
		{ ENG_TYPE_Q2_K, 256, 84, "Q2_K" }, { ENG_TYPE_Q3_K, 256, 110, "Q3_K" },
		{ ENG_TYPE_Q4_K, 256, 144, "Q4_K" }, { ENG_TYPE_Q5_K, 256, 176, "Q5_K" },
		{ ENG_TYPE_Q6_K, 256, 210, "Q6_K" }, { ENG_TYPE_Q8_K, 256, 292, "Q8_K" },
	};
	size_t i;

	for (i = 0; i < sizeof x / sizeof x[0]; i++) {
		ck_assert_uint_eq(eng_type_block_size(x[i].t), x[i].bs);
		ck_assert_uint_eq(eng_type_size(x[i].t), x[i].ts);
		ck_assert_str_eq(eng_type_name(x[i].t), x[i].name);
	}
	ck_assert_uint_eq(eng_type_size(4), 0);	/* removed Q4_2 */
	ck_assert_uint_eq(eng_type_block_size(-1), 0);
	ck_assert_uint_eq(eng_type_size(1000), 0);
	ck_assert_str_eq(eng_type_name(99), "?");
}
END_TEST

/* Every proper prefix of a good file is refused (the last tensor's data
 * ends the file), with a message, and never read out of bounds: each
 * prefix is copied into a buffer of exactly its size so ASan sees it. */
START_TEST(truncated_every_byte)
{
	size_t n, cut;
	uint8_t *p = good_file(3, 32, &n);

	for (cut = 0; cut < n; cut++) {
		uint8_t *q = malloc(cut ? cut : 1);
		eng_gguf *g = NULL;
		char err[200] = "";
		int rc;

		memcpy(q, p, cut);
		rc = eng_gguf_open_mem(q, cut, &g, err, sizeof err);
		ck_assert_msg(rc == ENG_EFORMAT, "cut at %zu: rc %d (%s)", cut,
		    rc, err);
		ck_assert_ptr_null(g);
		ck_assert_msg(err[0] != 0, "cut at %zu: no message", cut);
		free(q);
	}
	free(p);
}
END_TEST

/* ------------------------------------------------------------------------
 * Malformed files
 * ------------------------------------------------------------------------ */

static void header(struct gw_buf *b, uint32_t ver, uint64_t nt, uint64_t nkv)
{
	gw_buf_put(b, "GGUF", 4);
	gw_buf_u32(b, ver);
	gw_buf_u64(b, nt);
	gw_buf_u64(b, nkv);
}

/* One tensor info with the given fields; data section follows. */
static void tinfo(struct gw_buf *b, const char *name, uint32_t nd,
    const uint64_t *ne, uint32_t type, uint64_t off)
{
	uint32_t d;

	gw_buf_str(b, name);
	gw_buf_u32(b, nd);
	for (d = 0; d < nd; d++)
		gw_buf_u64(b, ne[d]);
	gw_buf_u32(b, type);
	gw_buf_u64(b, off);
}

static void pad_to(struct gw_buf *b, size_t a, size_t extra)
{
	static const uint8_t z[1] = { 0 };

	while (b->n % a)
		gw_buf_put(b, z, 1);
	while (extra--)
		gw_buf_put(b, z, 1);
}

static void kv_u32(struct gw_buf *b, const char *key, uint32_t type,
    uint32_t v)
{
	gw_buf_str(b, key);
	gw_buf_u32(b, type);
	gw_buf_u32(b, v);
}

enum bad {
	BAD_MAGIC, BAD_V1, BAD_V4, BAD_BIG_ENDIAN, BAD_TENSOR_COUNT,
	BAD_KV_COUNT, BAD_KEY_LEN, BAD_STR_LEN, BAD_ARR_COUNT,
	BAD_STR_ARR_COUNT, BAD_VTYPE, BAD_ELEM_TYPE, BAD_NESTING,
	BAD_EMPTY_KEY, BAD_DUP_KEY, BAD_ALIGN_ZERO, BAD_ALIGN_3,
	BAD_ALIGN_TYPE, BAD_NDIMS, BAD_DIM_OVERFLOW, BAD_DIM_HUGE,
	BAD_TTYPE, BAD_TTYPE_Q8K, BAD_ROW_BLOCK, BAD_OFFSET_EOF,
	BAD_SIZE_EOF, BAD_UNALIGNED, BAD_OVERLAP, BAD_DUP_TENSOR,
	BAD_NAME_LONG, BAD_KEY_NUL, BAD_OFFSET_HUGE, N_BAD
};

static const struct {
	const char *name;
	int         rc;
	const char *msg;	/* a word the message must contain */
} bad_cases[N_BAD] = {
	[BAD_MAGIC]         = { "bad magic", ENG_EFORMAT, "magic" },
	[BAD_V1]            = { "version 1", ENG_EUNSUP, "version" },
	[BAD_V4]            = { "version 4", ENG_EUNSUP, "version" },
	[BAD_BIG_ENDIAN]    = { "big-endian", ENG_EUNSUP, "big-endian" },
	[BAD_TENSOR_COUNT]  = { "huge tensor count", ENG_EFORMAT, "tensor count" },
	[BAD_KV_COUNT]      = { "huge kv count", ENG_EFORMAT, "metadata count" },
	[BAD_KEY_LEN]       = { "huge key length", ENG_EFORMAT, "string length" },
	[BAD_STR_LEN]       = { "huge string value", ENG_EFORMAT, "t.s" },
	[BAD_ARR_COUNT]     = { "huge array count", ENG_EFORMAT, "t.a" },
	[BAD_STR_ARR_COUNT] = { "huge string array", ENG_EFORMAT, "t.a" },
	[BAD_VTYPE]         = { "unknown value type", ENG_EFORMAT, "unknown value type" },
	[BAD_ELEM_TYPE]     = { "unknown element type", ENG_EFORMAT, "element type" },
	[BAD_NESTING]       = { "nesting too deep", ENG_EFORMAT, "nested" },
	[BAD_EMPTY_KEY]     = { "empty key", ENG_EFORMAT, "empty key" },
	[BAD_DUP_KEY]       = { "duplicate key", ENG_EFORMAT, "duplicate metadata key 'k'" },
	[BAD_ALIGN_ZERO]    = { "alignment 0", ENG_EFORMAT, "alignment" },
	[BAD_ALIGN_3]       = { "alignment 3", ENG_EFORMAT, "alignment" },
	[BAD_ALIGN_TYPE]    = { "alignment as i32", ENG_EFORMAT, "alignment" },
	[BAD_NDIMS]         = { "5 dims", ENG_EFORMAT, "dimensions" },
	[BAD_DIM_OVERFLOW]  = { "dims product overflow", ENG_EFORMAT, "overflow" },
	[BAD_DIM_HUGE]      = { "dim over INT64_MAX", ENG_EFORMAT, "overflow" },
	[BAD_TTYPE]         = { "unknown tensor type", ENG_EUNSUP, "type id 99" },
	[BAD_TTYPE_Q8K]     = { "Q8_K in a file", ENG_EUNSUP, "type id 15" },
	[BAD_ROW_BLOCK]     = { "row not whole blocks", ENG_EFORMAT, "block" },
	[BAD_OFFSET_EOF]    = { "offset past EOF", ENG_EFORMAT, "past the end" },
	[BAD_SIZE_EOF]      = { "data runs past EOF", ENG_EFORMAT, "past the end" },
	[BAD_UNALIGNED]     = { "unaligned offset", ENG_EFORMAT, "alignment" },
	[BAD_OVERLAP]       = { "overlapping tensors", ENG_EFORMAT, "overlaps" },
	[BAD_DUP_TENSOR]    = { "duplicate tensor", ENG_EFORMAT, "duplicate tensor name 'a'" },
	[BAD_NAME_LONG]     = { "64-byte name", ENG_EFORMAT, "name" },
	[BAD_KEY_NUL]       = { "NUL in key", ENG_EFORMAT, "NUL" },
	[BAD_OFFSET_HUGE]   = { "offset near 2^64", ENG_EFORMAT, "past the end" },
};

static void build_bad(int which, struct gw_buf *b)
{
	uint64_t ne1[1] = { 32 }, ne5[5] = { 1, 1, 1, 1, 1 };
	uint64_t big2[2] = { 1ull << 32, 1ull << 32 };
	uint64_t huge[1] = { (1ull << 63) + 32 }, odd[1] = { 33 };
	uint32_t u;
	int i;

	switch (which) {
	case BAD_MAGIC:
		gw_buf_put(b, "GGUG", 4); gw_buf_u32(b, 3);
		gw_buf_u64(b, 0); gw_buf_u64(b, 0);
		break;
	case BAD_V1: header(b, 1, 0, 0); break;
	case BAD_V4: header(b, 4, 0, 0); break;
	case BAD_BIG_ENDIAN: header(b, 0x03000000, 0, 0); break;
	case BAD_TENSOR_COUNT: header(b, 3, UINT64_MAX / 2, 0); break;
	case BAD_KV_COUNT: header(b, 3, 0, 1ull << 40); break;
	case BAD_KEY_LEN:
		header(b, 3, 0, 1);
		gw_buf_u64(b, UINT64_MAX);
		gw_buf_put(b, "abcdefgh", 8);
		break;
	case BAD_STR_LEN:
		header(b, 3, 0, 1);
		gw_buf_str(b, "t.s");
		gw_buf_u32(b, ENG_GGUF_STRING);
		gw_buf_u64(b, 1ull << 62);
		gw_buf_put(b, "xy", 2);
		break;
	case BAD_ARR_COUNT:
		header(b, 3, 0, 1);
		gw_buf_str(b, "t.a");
		gw_buf_u32(b, ENG_GGUF_ARRAY);
		gw_buf_u32(b, ENG_GGUF_UINT64);
		gw_buf_u64(b, 1ull << 61);	/* * 8 wraps to 0 */
		break;
	case BAD_STR_ARR_COUNT:
		header(b, 3, 0, 1);
		gw_buf_str(b, "t.a");
		gw_buf_u32(b, ENG_GGUF_ARRAY);
		gw_buf_u32(b, ENG_GGUF_STRING);
		gw_buf_u64(b, 1ull << 40);
		gw_buf_u64(b, 0);
		break;
	case BAD_VTYPE:
		header(b, 3, 0, 1);
		kv_u32(b, "k", 13, 0);
		break;
	case BAD_ELEM_TYPE:
		header(b, 3, 0, 1);
		gw_buf_str(b, "k");
		gw_buf_u32(b, ENG_GGUF_ARRAY);
		gw_buf_u32(b, 77);
		gw_buf_u64(b, 0);
		break;
	case BAD_NESTING:
		header(b, 3, 0, 1);
		gw_buf_str(b, "k");
		gw_buf_u32(b, ENG_GGUF_ARRAY);
		for (i = 0; i < 20; i++) {
			gw_buf_u32(b, ENG_GGUF_ARRAY);
			gw_buf_u64(b, 1);
		}
		gw_buf_u32(b, ENG_GGUF_UINT8);
		gw_buf_u64(b, 0);
		break;
	case BAD_EMPTY_KEY:
		header(b, 3, 0, 1);
		kv_u32(b, "", ENG_GGUF_UINT32, 1);
		break;
	case BAD_DUP_KEY:
		header(b, 3, 0, 2);
		kv_u32(b, "k", ENG_GGUF_UINT32, 1);
		kv_u32(b, "k", ENG_GGUF_UINT32, 2);
		break;
	case BAD_ALIGN_ZERO:
	case BAD_ALIGN_3:
		header(b, 3, 0, 1);
		kv_u32(b, "general.alignment", ENG_GGUF_UINT32,
		    which == BAD_ALIGN_3 ? 3 : 0);
		break;
	case BAD_ALIGN_TYPE:
		header(b, 3, 0, 1);
		kv_u32(b, "general.alignment", ENG_GGUF_INT32, 32);
		break;
	case BAD_NDIMS:
		header(b, 3, 1, 0);
		tinfo(b, "a", 5, ne5, ENG_TYPE_F32, 0);
		pad_to(b, 32, 4);
		break;
	case BAD_DIM_OVERFLOW:
		header(b, 3, 1, 0);
		tinfo(b, "a", 2, big2, ENG_TYPE_F32, 0);
		pad_to(b, 32, 64);
		break;
	case BAD_DIM_HUGE:
		header(b, 3, 1, 0);
		tinfo(b, "a", 1, huge, ENG_TYPE_F32, 0);
		pad_to(b, 32, 64);
		break;
	case BAD_TTYPE:
	case BAD_TTYPE_Q8K:
		header(b, 3, 1, 0);
		tinfo(b, "a", 1, ne1, which == BAD_TTYPE ? 99 : ENG_TYPE_Q8_K,
		    0);
		pad_to(b, 32, 512);
		break;
	case BAD_ROW_BLOCK:
		header(b, 3, 1, 0);
		tinfo(b, "a", 1, odd, ENG_TYPE_Q8_0, 0);
		pad_to(b, 32, 64);
		break;
	case BAD_OFFSET_EOF:
		header(b, 3, 1, 0);
		tinfo(b, "a", 1, ne1, ENG_TYPE_F32, 4096);
		pad_to(b, 32, 128);
		break;
	case BAD_SIZE_EOF:
		header(b, 3, 1, 0);
		tinfo(b, "a", 1, ne1, ENG_TYPE_F32, 0);
		pad_to(b, 32, 127);
		break;
	case BAD_UNALIGNED:
		header(b, 3, 1, 0);
		tinfo(b, "a", 1, ne1, ENG_TYPE_F32, 4);
		pad_to(b, 32, 256);
		break;
	case BAD_OVERLAP:
		header(b, 3, 2, 0);
		tinfo(b, "a", 1, ne1, ENG_TYPE_F32, 0);
		tinfo(b, "b", 1, ne1, ENG_TYPE_F32, 96);
		pad_to(b, 32, 512);
		/* a: [0, 128); b: [96, 224) */
		break;
	case BAD_DUP_TENSOR:
		header(b, 3, 2, 0);
		tinfo(b, "a", 1, ne1, ENG_TYPE_F32, 0);
		tinfo(b, "a", 1, ne1, ENG_TYPE_F32, 128);
		pad_to(b, 32, 256);
		break;
	case BAD_NAME_LONG:
		header(b, 3, 1, 0);
		tinfo(b, "0123456789012345678901234567890123456789012345678901"
		    "234567890123", 1, ne1, ENG_TYPE_F32, 0);
		pad_to(b, 32, 128);
		break;
	case BAD_KEY_NUL:
		header(b, 3, 0, 1);
		gw_buf_strn(b, "a\0b", 3);
		gw_buf_u32(b, ENG_GGUF_UINT8);
		u = 0;
		gw_buf_put(b, &u, 1);
		break;
	case BAD_OFFSET_HUGE:
		header(b, 3, 1, 0);
		tinfo(b, "a", 1, ne1, ENG_TYPE_F32, UINT64_MAX - 31);
		pad_to(b, 32, 128);
		break;
	}
}

START_TEST(malformed)
{
	struct gw_buf b = { 0 };
	eng_gguf *g = (eng_gguf *)1;
	char err[256] = "";
	uint8_t *q;
	int rc;

	build_bad(_i, &b);
	/* An exact-size copy, so that ASan catches any read past the end. */
	q = malloc(b.n);
	memcpy(q, b.p, b.n);
	rc = eng_gguf_open_mem(q, b.n, &g, err, sizeof err);
	ck_assert_msg(rc == bad_cases[_i].rc, "%s: rc %s, want %s (%s)",
	    bad_cases[_i].name, eng_errname(rc),
	    eng_errname(bad_cases[_i].rc), err);
	ck_assert_ptr_null(g);
	ck_assert_msg(strstr(err, bad_cases[_i].msg) != NULL,
	    "%s: message '%s' lacks '%s'", bad_cases[_i].name, err,
	    bad_cases[_i].msg);
	free(q);
	free(b.p);
}
END_TEST

/* ------------------------------------------------------------------------
 * Files on disk
 * ------------------------------------------------------------------------ */

START_TEST(open_files)
{
	char path[] = "/tmp/engram-test-gguf-XXXXXX";
	char err[256];
	size_t n;
	uint8_t *p = good_file(3, 32, &n);
	eng_gguf *g;
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(gw_write_file(path, p, n), 0);
	ck_assert_msg(eng_gguf_open(path, &g, err, sizeof err) == 0, "%s",
	    err);
	ck_assert_uint_eq(eng_gguf_tensor_count(g), 13);
	eng_gguf_close(g);

	ck_assert_int_eq(gw_write_file(path, p, 10), 0);
	ck_assert_int_eq(eng_gguf_open(path, &g, err, sizeof err),
	    ENG_EFORMAT);
	ck_assert_ptr_null(g);
	unlink(path);
	ck_assert_int_eq(eng_gguf_open(path, &g, err, sizeof err), ENG_EIO);
	ck_assert(strstr(err, path) != NULL);
	ck_assert_int_eq(eng_gguf_open("/", &g, err, sizeof err), ENG_EIO);
	ck_assert_int_eq(eng_gguf_open(NULL, &g, err, sizeof err),
	    ENG_EINVAL);
	free(p);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("gguf");
	TCase *tc = tcase_create("good");
	TCase *bad = tcase_create("bad");

	tcase_add_test(tc, good_v3);
	tcase_add_test(tc, good_v2);
	tcase_add_test(tc, good_alignment);
	tcase_add_test(tc, empty_file_ok);
	tcase_add_test(tc, type_table);
	tcase_add_test(tc, open_files);
	suite_add_tcase(s, tc);
	tcase_add_test(bad, truncated_every_byte);
	tcase_add_loop_test(bad, malformed, 0, N_BAD);
	suite_add_tcase(s, bad);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

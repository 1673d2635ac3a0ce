/* kernels.h - the engine's internal kernel API (prefix eng_): quantized block
 * formats, dot products, matrix products and the thread pool.
 *
 * Included by the forward pass; not installed and not part of engine.h.
 *
 * Design:
 *  - Weight block layouts are ggml's, byte for byte (ggml-common.h), so a
 *    tensor mapped from a GGUF file is used in place, never converted.
 *  - Every weight type has a "dot type": the format its activations are
 *    quantized to before a dot product, as llama.cpp pairs them.  Q4_0, Q5_0
 *    and Q8_0 take Q8_0; Q4_1 and Q5_1 take Q8_1; the K formats take Q8_K;
 *    F32, F16 and BF16 take plain f32 activations (no quantization).
 *  - Every kernel has a scalar reference (the *_ref functions).  The AVX2 and
 *    AVX-512 versions compute the same integer sums and differ from the
 *    reference only in the order of float additions; tests/test_matmul.c
 *    holds the named error bound of each format.
 *  - SIMD code is compiled with per-file target options and chosen at run
 *    time, so the library runs on any x86-64 (and builds elsewhere with the
 *    scalar path only).  ENGRAM_SIMD=scalar|avx2|avx512 caps the level.
 */
#ifndef ENGRAM_ENGINE_KERNELS_H
#define ENGRAM_ENGINE_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Block formats.  All little-endian, no padding (sizes are asserted).
 * "d" is the scale, "m"/"dmin" the offset; element i of a block is
 * d * q[i] (+ m) unless said otherwise.
 * ------------------------------------------------------------------------ */

#define ENG_QK      32	/* elements per block of the 32-element formats */
#define ENG_QK_K    256	/* elements per super-block of the K formats */
#define ENG_K_SCALE_SIZE 12

typedef uint16_t eng_f16;	/* IEEE half, as stored in files */
typedef uint16_t eng_bf16;	/* bfloat16: the top 16 bits of an f32 */

/* x = d * (q - 8); q[i] = qs[i] & 15 for i < 16, qs[i-16] >> 4 after. */
typedef struct { eng_f16 d; uint8_t qs[ENG_QK / 2]; } eng_block_q4_0;
/* x = d * q + m; nibbles as in q4_0. */
typedef struct { eng_f16 d, m; uint8_t qs[ENG_QK / 2]; } eng_block_q4_1;
/* x = d * (q - 16); q = nibble | (bit i of qh) << 4. */
typedef struct { eng_f16 d; uint8_t qh[4]; uint8_t qs[ENG_QK / 2]; } eng_block_q5_0;
/* x = d * q + m; q as in q5_0. */
typedef struct { eng_f16 d, m; uint8_t qh[4]; uint8_t qs[ENG_QK / 2]; } eng_block_q5_1;
/* x = d * qs[i]. */
typedef struct { eng_f16 d; int8_t qs[ENG_QK]; } eng_block_q8_0;
/* Activations only: x = d * qs[i]; s = d * sum(qs). */
typedef struct { eng_f16 d, s; int8_t qs[ENG_QK]; } eng_block_q8_1;
/* 16 groups of 16: x = d * (scales[g] & 15) * q - dmin * (scales[g] >> 4),
 * q 2 bits: element j*128 + s*32 + l is (qs[j*32 + l] >> 2s) & 3. */
typedef struct {
	uint8_t scales[ENG_QK_K / 16];
	uint8_t qs[ENG_QK_K / 4];
	eng_f16 d, dmin;
} eng_block_q2_K;
/* 16 groups of 16: x = d * (sc[g] - 32) * (q2 - (hbit ? 0 : 4)), q2 as in
 * q2_K, hbit of element e = bit e/32 of hmask[e % 32]; the 16 6-bit scales
 * are packed in scales[12] (see eng__q3_K_scales). */
typedef struct {
	uint8_t hmask[ENG_QK_K / 8];
	uint8_t qs[ENG_QK_K / 4];
	uint8_t scales[12];
	eng_f16 d;
} eng_block_q3_K;
/* 8 groups of 32: x = d * sc[g] * q - dmin * mn[g], 6-bit sc/mn packed in
 * scales[12] (eng__k_scale_min); element j*64 + h*32 + l is
 * (qs[j*32 + l] >> 4h) & 15. */
typedef struct {
	eng_f16 d, dmin;
	uint8_t scales[ENG_K_SCALE_SIZE];
	uint8_t qs[ENG_QK_K / 2];
} eng_block_q4_K;
/* As q4_K plus a fifth bit: bit e/32 of qh[e % 32]. */
typedef struct {
	eng_f16 d, dmin;
	uint8_t scales[ENG_K_SCALE_SIZE];
	uint8_t qh[ENG_QK_K / 8];
	uint8_t qs[ENG_QK_K / 2];
} eng_block_q5_K;
/* 16 groups of 16: x = d * scales[g] * (q - 32), q 6 bits: element
 * j*128 + s*32 + l has low nibble (ql[j*64 + (s&1)*32 + l] >> 4*(s>>1)) & 15
 * and high bits (qh[j*32 + l] >> 2s) & 3. */
typedef struct {
	uint8_t ql[ENG_QK_K / 2];
	uint8_t qh[ENG_QK_K / 4];
	int8_t scales[ENG_QK_K / 16];
	eng_f16 d;
} eng_block_q6_K;
/* Activations only: x = d * qs[i]; bsums[g] = sum of qs[16g .. 16g+15]. */
typedef struct {
	float d;
	int8_t qs[ENG_QK_K];
	int16_t bsums[ENG_QK_K / 16];
} eng_block_q8_K;

_Static_assert(sizeof(eng_block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(eng_block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(eng_block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(eng_block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(eng_block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(eng_block_q8_1) == 36, "q8_1 layout");
_Static_assert(sizeof(eng_block_q2_K) == 84, "q2_K layout");
_Static_assert(sizeof(eng_block_q3_K) == 110, "q3_K layout");
_Static_assert(sizeof(eng_block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(eng_block_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(eng_block_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(eng_block_q8_K) == 292, "q8_K layout");

/* What a type is made of. */
typedef struct eng_type_traits {
	const char *name;	/* "q4_K", as ggml spells it */
	int64_t blck;		/* elements per block */
	size_t bytes;		/* bytes per block */
	eng_type dot_type;	/* activation format of its dot products */
	int has_dot;		/* 0 for activation-only types (q8_1, q8_K) */
} eng_type_traits;

/* The traits of t, or NULL when t is not one of eng_type's values.
 * Static storage. */
const eng_type_traits *eng_type_traits_get(eng_type t);

/* Bytes of a row of n elements of type t.  ENG_EINVAL if t is unknown or n
 * is not a positive multiple of the block size; ENG_ERANGE on overflow. */
int eng_row_bytes(eng_type t, int64_t n, size_t *bytes);

/* Half and bfloat16 conversions (round to nearest even; NaN stays NaN). */
float eng_f16_to_f32(eng_f16 h);
eng_f16 eng_f32_to_f16(float f);
float eng_bf16_to_f32(eng_bf16 h);
eng_bf16 eng_f32_to_bf16(float f);

/* Unpacks 6-bit scale and min j (0..7) of a q4_K/q5_K block. */
static inline void eng__k_scale_min(int j, const uint8_t *q, uint8_t *sc,
				    uint8_t *mn)
{
	if (j < 4) {
		*sc = q[j] & 63;
		*mn = q[j + 4] & 63;
	} else {
		*sc = (uint8_t)((q[j + 4] & 15) | ((q[j - 4] >> 6) << 4));
		*mn = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
	}
}

/* Unpacks the 16 signed scales (-32..31) of a q3_K block. */
void eng__q3_K_scales(const uint8_t packed[12], int8_t out[16]);

/* The quants of one block as integers, in element order: q4_0 q-8,
 * q5_0 q-16 (signed); q4_1 0..15, q5_1 0..31; q2_K 0..3; q3_K -4..3;
 * q4_K 0..15; q5_K 0..31; q6_K q-32.  Scales are applied by the caller. */
void eng__unpack_q4_0(const void *blk, int8_t q[32]);
void eng__unpack_q4_1(const void *blk, int8_t q[32]);
void eng__unpack_q5_0(const void *blk, int8_t q[32]);
void eng__unpack_q5_1(const void *blk, int8_t q[32]);
void eng__unpack_q2_K(const void *blk, int8_t q[256]);
void eng__unpack_q3_K(const void *blk, int8_t q[256]);
void eng__unpack_q4_K(const void *blk, int8_t q[256]);
void eng__unpack_q5_K(const void *blk, int8_t q[256]);
void eng__unpack_q6_K(const void *blk, int8_t q[256]);

/* ------------------------------------------------------------------------
 * Scalar references: conversion of rows.  n is the element count, a
 * multiple of the type's block size (checked: ENG_EINVAL otherwise).
 * src/dst are caller-owned and must not overlap; block rows are read
 * through their structs, so src is 2-byte aligned (4 for q8_K).
 * ------------------------------------------------------------------------ */

/* dst[0..n) = the values of the n elements at src, for every type with a
 * file layout (all of eng_type; q8_1 and q8_K too). */
int eng_dequant_row_ref(eng_type t, const void *src, float *dst, int64_t n);

/* Activation quantizers: symmetric, d = max|x| / 127, q = round(x / d),
 * so |q| <= 127 (the SIMD kernels rely on q != -128). */
void eng_quantize_row_q8_0_ref(const float *x, void *y, int64_t n);
void eng_quantize_row_q8_1_ref(const float *x, void *y, int64_t n);
void eng_quantize_row_q8_K_ref(const float *x, void *y, int64_t n);

/* Quantizes n activations into dot type dt (one of F32, Q8_0, Q8_1, Q8_K;
 * F32 copies).  Uses the fastest path available. */
int eng_quantize_row(eng_type dt, const float *x, void *y, int64_t n);

/* ------------------------------------------------------------------------
 * Dot products: one weight row times nt activation rows.
 *
 *   s[t * s_stride] = sum_i w[i] * a_t[i],   a_t = (char *)a + t * a_stride
 *
 * for t in [0, nt), 1 <= nt <= ENG_NT_MAX.  w is a row of the weight type,
 * a_t rows of its dot type, both of n elements (n a positive multiple of the
 * block size; not checked here: eng_matmul checks).  The nt form lets a
 * kernel unpack a weight block once and use it for several tokens.
 * ------------------------------------------------------------------------ */

#define ENG_NT_MAX 4

typedef void (*eng_vec_dot_fn)(int64_t n, const void *w, const void *a,
			       size_t a_stride, float *s, size_t s_stride,
			       int nt);

#define ENG__VEC_DOT_REFS(X) \
	X(f32) X(f16) X(bf16) X(q4_0) X(q4_1) X(q5_0) X(q5_1) X(q8_0) \
	X(q2_K) X(q3_K) X(q4_K) X(q5_K) X(q6_K)
#define ENG__DECL_REF(name)                                               \
	void eng_vec_dot_##name##_ref(int64_t n, const void *w,           \
				      const void *a, size_t a_stride,     \
				      float *s, size_t s_stride, int nt);
ENG__VEC_DOT_REFS(ENG__DECL_REF)
#undef ENG__DECL_REF

/* SIMD levels, in increasing order.  AVX512 means F, BW, VL, DQ and VNNI
 * (integer dots use 256-bit VPDPBUSD; float dots use 512-bit FMA). */
typedef enum eng_simd {
	ENG_SIMD_SCALAR = 0,
	ENG_SIMD_AVX2 = 1,	/* AVX2 + FMA + F16C */
	ENG_SIMD_AVX512 = 2,
} eng_simd;

/* The best level this CPU supports. */
eng_simd eng_simd_supported(void);
/* The level kernels use: the supported one, capped by the environment
 * variable ENGRAM_SIMD (scalar|avx2|avx512, read once) or eng_simd_force. */
eng_simd eng_simd_active(void);
/* Makes level the active one (tests, benchmarks).  ENG_ERANGE if the CPU
 * lacks it.  Not thread-safe against running kernels: call between them. */
int eng_simd_force(eng_simd level);
/* "scalar", "avx2", "avx512"; static storage. */
const char *eng_simd_name(eng_simd level);

/* The dot product of weight type t at a given level: the best implemented
 * at or below that level (types without SIMD code get the reference).
 * NULL if t has no dot product. */
eng_vec_dot_fn eng_vec_dot_get(eng_type t, eng_simd level);

/* Per-level tables (kernels_avx2.c, kernels_avx512.c): NULL where a type
 * has no kernel at that level. */
eng_vec_dot_fn eng__vec_dot_avx2(eng_type t);
eng_vec_dot_fn eng__vec_dot_avx512(eng_type t);
/* Tile kernels for prefill: ENG_TILE_ROWS weight rows (row r at
 * (char *)w + r * w_stride) times ENG_NT_MAX activation rows:
 *   s[t * s_stride + r] = dot(row r, a_t).
 * Each weight block is unpacked once for all tokens of the tile and each
 * activation block loaded once for all rows. */
#define ENG_TILE_ROWS 4
typedef void (*eng_tile_fn)(int64_t n, const void *w, size_t w_stride,
			    const void *a, size_t a_stride, float *s,
			    size_t s_stride);
/* The tile kernel of weight type t at a level (or the best below it);
 * NULL where there is none: callers then use eng_vec_dot_get's kernel. */
eng_tile_fn eng_tile_get(eng_type t, eng_simd level);
eng_tile_fn eng__tile_avx512(eng_type t);

/* Rewrites a row of n q4_0 or q5_0 weights as q8_0 blocks holding the same
 * values (same d; quants widened to signed bytes).  Prefill unpacks each
 * row panel once this way and runs the q8_0 kernels on it for every token:
 * the integer sums, hence the results, are those of the direct kernels.
 * dst holds eng_row_bytes(Q8_0, n) bytes.  NULL for other types. */
typedef void (*eng_repack_fn)(const void *src, void *dst, int64_t n);
eng_repack_fn eng_repack_q8_0_get(eng_type t, eng_simd level);
eng_repack_fn eng__repack_q8_0_avx2(eng_type t);
eng_repack_fn eng__repack_q8_0_avx512(eng_type t);

/* Prefill products on interleaved rows (gemm_avx512.c; AVX-512 VNNI).
 *
 * A group of ENG_GEMM_ROWS weight rows is packed once per call so that
 * one 256-bit vector holds 4 consecutive quants of each of the 8 rows as
 * unsigned bytes; VPDPBUSD with 4 broadcast activation bytes then adds to
 * all 8 rows' integer sums, and each scale block's float work is shared by
 * the 8 rows.  Per scale block of bl elements a group is
 *     float s[8]; float m[8] (min formats only); uint8 q[bl / 4][8][4]
 * Activations take a companion layout per token: the n quants of its dot
 * type's row, then n / bl entries of ENG_GEMM_SIDE_BYTES (the block's
 * scale and its sum, see gemm_avx512.c).  The integer sums are those of
 * the row kernels; only the order of float additions differs. */
#define ENG_GEMM_ROWS 8
#define ENG_GEMM_NT 8		/* tokens per kernel call, at most */
#define ENG_GEMM_SIDE_BYTES 8
typedef struct eng_gemm {
	int bl;			/* elements per scale block: 16 or 32 */
	int min;		/* 1: blocks carry m[8] (q4_K, q5_K) */
	/* Packs rows [0, nr) of w (row stride ws, nr <= 8, missing rows as
	 * zeros) into dst, eng_gemm_pack_bytes(g, n) bytes. */
	void (*pack)(const void *w, size_t ws, int nr, int64_t n, void *dst);
	/* One row of the dot type (n elements) to its companion layout,
	 * eng_gemm_act_bytes(g, n) bytes. */
	void (*act)(const void *src, void *dst, int64_t n);
	/* s[t * ss + r] = dot(row r, token t) for r < nr, t < nt, nt in
	 * 1..ENG_GEMM_NT; token t's companion row at act + t * as. */
	void (*run)(int64_t n, const void *pw, const void *act, size_t as,
		    float *s, size_t ss, int nr, int nt);
	size_t block_bytes;	/* bytes of a scale block of a group where the
				 * layout is not the one above; 0: it is */
	/* Such a layout's group (n elements) rewritten in the one above, for
	 * the kernels of wide: a product of many tokens widens each panel
	 * once rather than unpack it for every group of tokens.  NULL for
	 * the layout above. */
	void (*widen)(const void *src, void *dst, int64_t n);
	const struct eng_gemm *wide;
} eng_gemm;
/* The interleaved kernels of weight type t at a level; NULL below
 * AVX-512 and for types without them (callers use the tiles or rows). */
const eng_gemm *eng_gemm_get(eng_type t, eng_simd level);
size_t eng_gemm_pack_bytes(const eng_gemm *g, int64_t n);
/* The kernels of a matrix packed whole (eng_qpack): eng_gemm_get's,
 * except that q5_0 keeps its 5 bits (gemm_avx512.c): a panel packed per
 * call is cheapest unpacked to bytes, a whole matrix read at every decode
 * step is cheapest read at its own size. */
const eng_gemm *eng_gemm_get_whole(eng_type t, eng_simd level);
size_t eng_gemm_act_bytes(const eng_gemm *g, int64_t n);

/* Tiled attention's kernels (attn_avx512.c): forward.c runs several
 * tokens' query rows against each block of at most ENG__ATTN_KB keys or
 * values, converted to f32 once.  hd is a multiple of 16. */
#define ENG__ATTN_KB 16
typedef struct eng__attn_kern {
	/* dst[j * hd + d] = row j of src (stride bytes apart; f16 or f32). */
	void (*to_f32)(uint32_t kb, uint32_t hd, const void *src,
		       size_t stride, int is_f16, float *dst);
	/* S[r * ss + j] = Q[r] . K[j] for r < R, j < kb (rows hd apart). */
	void (*scores)(uint32_t R, uint32_t hd, const float *Q, const float *K,
		       uint32_t kb, float *S, size_t ss);
	/* acc[r * hd + d] += sum_j P[r * ps + j] * V[j * hd + d]. */
	void (*pv)(uint32_t R, uint32_t hd, const float *P, size_t ps,
		   const float *V, uint32_t kb, float *acc);
	/* One row's online-softmax step over a chunk of c scores sc, of which
	 * [lo, hi) are visible (the rest get weight 0): sc becomes the weights
	 * e^(scale * s - m') against the new running maximum m' (in *m), *l
	 * and the row's hd accumulators acc are rescaled to m' and *l adds
	 * the chunk's weights.  Nothing visible: sc is zeroed, nothing else
	 * changes. */
	void (*softmax)(float *sc, uint32_t c, uint32_t lo, uint32_t hi,
			float scale, float *m, float *l, float *acc,
			uint32_t hd);
} eng__attn_kern;
/* NULL below AVX-512: forward.c then attends one token at a time. */
const eng__attn_kern *eng__attn_kern_get(eng_simd level);

/* Fast activation quantizers (NULL if none at the level). */
typedef void (*eng_quantize_fn)(const float *x, void *y, int64_t n);
eng_quantize_fn eng__quantize_avx2(eng_type dt);

/* ------------------------------------------------------------------------
 * Thread pool: n threads (the caller's included) that run one task at a
 * time.  Workers spin briefly after each task, then sleep on a condition
 * variable, so a pool costs nothing when idle and little between the many
 * small matrix products of a decode step.
 *
 * A pool is used by one caller thread at a time (it is not reentrant: a
 * task must not call eng_pool_run on its own pool).
 * ------------------------------------------------------------------------ */

typedef struct eng_pool eng_pool;

/* The task: called once per thread with ith in [0, nth); ith 0 runs on the
 * caller's thread.  Returns when all have returned. */
typedef void (*eng_pool_fn)(void *arg, int ith, int nth);

#define ENG_POOL_MAX_THREADS 256

/* Starts n_threads - 1 workers (n_threads <= 0: one per online CPU).
 * *out is owned by the caller; free with eng_pool_close.  ENG_EINVAL for
 * n_threads > ENG_POOL_MAX_THREADS, ENG_ENOMEM, or -errno of
 * pthread_create. */
int eng_pool_open(eng_pool **out, int n_threads);
/* Stops and joins the workers, frees the pool.  NULL is a no-op. */
void eng_pool_close(eng_pool *pool);
/* Threads of the pool, the caller's included; 1 for NULL. */
int eng_pool_threads(const eng_pool *pool);
/* Runs fn(arg, ith, nth) on every thread and waits.  pool NULL: runs
 * fn(arg, 0, 1) on the caller's thread. */
void eng_pool_run(eng_pool *pool, eng_pool_fn fn, void *arg);
/* Scratch memory owned by the pool, at least bytes long and 64-byte
 * aligned; valid until the next call of eng__pool_scratch or
 * eng_pool_close.  NULL on allocation failure. */
void *eng__pool_scratch(eng_pool *pool, size_t bytes);

/* ------------------------------------------------------------------------
 * Matrix products.
 * ------------------------------------------------------------------------ */

/* A weight matrix packed whole, once, in the interleaved layout of its
 * eng_gemm (see eng_qpack_make). */
typedef struct eng_qpack eng_qpack;

/* A weight matrix: n_rows rows of n_cols elements of type type; row r
 * starts at (char *)data + r * row_stride.  data is borrowed (typically
 * from the mapped model file) and must outlive every call using it; so
 * must pack, where set. */
typedef struct eng_qmat {
	eng_type type;
	int64_t n_rows;
	int64_t n_cols;
	size_t row_stride;	/* >= eng_row_bytes(type, n_cols); data and
				 * row_stride multiples of 4 for f32, of 2
				 * for the other types (GGUF's 32-byte
				 * alignment gives this) */
	const void *data;
	const eng_qpack *pack;	/* NULL, or this matrix packed: products
				 * then read the pack (at AVX-512) */
} eng_qmat;

/* out[t * n_rows + r] = sum_c W[r][c] * x[t * n_cols + c]
 * for t < n_tokens, r < w->n_rows.
 *
 * x is quantized once per call to the weight's dot type (in the pool's
 * scratch, or a temporary buffer when pool is NULL), then rows are split
 * among the pool's threads.  One token is a memory-bound row-parallel
 * matrix-vector product; more tokens go through kernels that reuse each
 * unpacked weight block for ENG_NT_MAX tokens, over row panels small
 * enough to stay in cache while all tokens stream past.
 *
 * Errors: ENG_EINVAL (NULL pointers, n_tokens < 1, n_cols not a multiple of
 * the block size, row_stride too small or misaligned, a type without dot
 * product),
 * ENG_ERANGE (sizes that overflow), ENG_ENOMEM.  out and x must not
 * overlap; pool may be NULL (one thread). */
int eng_matmul(float *out, const eng_qmat *w, const float *x,
	       int64_t n_tokens, eng_pool *pool);

/* Packs all of w's rows, ENG_GEMM_ROWS at a time, in the layout its
 * eng_gemm's kernels read, into memory *out owns (eng_qpack_bytes of it).
 *
 * Why: a product with few tokens reads each weight once, so packing a
 * panel per call (eng_matmul's prefill path) would cost as much as the
 * product; the row kernels instead pay, per 32-element block of each row,
 * a sign fix-up, a conversion and a scale, and reach about half the
 * machine's memory bandwidth on a decode step.  Packed once, a decode
 * step runs the interleaved kernels at memory speed.  The integer sums
 * are the row kernels'; only the order of float additions differs.
 *
 * The pack keeps no reference to w.  A product through a qmat whose pack
 * is set reads the pack while the active SIMD level is AVX-512, and the
 * matrix itself otherwise (eng_simd_force in tests).  pool (may be NULL)
 * shares the packing among its threads.
 *
 * Errors: ENG_EUNSUP (no interleaved kernels for w's type, or the active
 * level is below AVX-512), ENG_EINVAL and ENG_ERANGE as eng_matmul's,
 * ENG_ENOMEM. */
int eng_qpack_make(const eng_qmat *w, eng_pool *pool, eng_qpack **out);
void eng_qpack_free(eng_qpack *p);
size_t eng_qpack_bytes(const eng_qpack *p);

/* Like eng_matmul but always with the scalar reference kernels, one
 * thread, one token at a time: the yardstick of tests and benchmarks. */
int eng_matmul_ref(float *out, const eng_qmat *w, const float *x,
		   int64_t n_tokens);

#ifdef __cplusplus
}
#endif
#endif /* ENGRAM_ENGINE_KERNELS_H */

/* matmul.c - matrix products of a quantized weight matrix with a batch of
 * f32 activations (eng_matmul).
 *
 * Plan of a call: (1) quantize every token of x once to the weight's dot
 * type, tokens split among threads; (2) split the rows into chunks handed
 * out through an atomic counter (threads that get more CPU take more
 * chunks: the machine is shared); per chunk, walk the tokens ENG_NT_MAX at
 * a time and call the nt-token dot kernel on each row.
 *
 * Decode (one token) is bound by memory: each weight byte is read once, so
 * chunks are only sized for balance.  Prefill reuses weights: a chunk is a
 * panel of rows small enough (PANEL_BYTES) to stay in L1/L2 while every
 * token group streams past; tile kernels multiply ENG_TILE_ROWS rows by
 * ENG_NT_MAX tokens in registers, and from REPACK_MIN_TOKENS tokens on a
 * q4_0/q5_0 panel is unpacked to q8_0 blocks once (per-thread buffer after
 * the activations in the scratch) so the bit fiddling is not repeated for
 * every token group.
 *
 * Where the CPU has AVX-512 VNNI and the type an eng_gemm, prefill from
 * GEMM_MIN_TOKENS tokens on takes that path instead: each thread packs its
 * panel's rows in groups of 8 (kernels.h) and runs every token group
 * against each packed group; activations are quantized as usual, then
 * copied into the gemm's companion layout.  A matrix packed whole ahead
 * of time (eng_qpack) takes that path for any number of tokens, its
 * panels read in place; with one token group the panels are sized for
 * balance only, as the row path's are.
 */
#include "config.h"
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"

#define PANEL_BYTES (48 * 1024)	/* weight panel kept hot during prefill */
#define CHUNKS_PER_THREAD 8	/* decode granularity, for balance */
/* From this many tokens on, q4_0/q5_0 panels are unpacked to q8_0 once and
 * shared by all tokens (the unpacking then costs a few percent at most). */
#define REPACK_MIN_TOKENS 32
/* From this many tokens on, the interleaved kernels (packing a panel
 * costs about what one token's products do). */
#define GEMM_MIN_TOKENS 16

/* A whole matrix in its gemm's layout: group i (rows 8i..8i+7, past
 * n_rows zeros) at data + i * gpack. */
struct eng_qpack {
	const eng_gemm *g;
	eng_type type;
	int64_t n_rows;
	int64_t n_cols;
	size_t gpack;		/* bytes of a packed group */
	int64_t n_groups;
	void *data;		/* owned, n_groups * gpack bytes */
};

struct mm_task {
	const eng_qmat *w;
	const eng_qpack *pk;	/* non-NULL: panels read from it, not packed */
	int widen;		/* 1: pk's panels widened (pk->g->widen) first */
	eng_vec_dot_fn dot;
	eng_tile_fn tile;	/* NULL: rows one by one */
	eng_repack_fn repack;	/* non-NULL: panels unpacked to q8_0 first */
	void *rbuf;		/* per thread rbuf_bytes for unpacked panels */
	size_t rbuf_bytes;
	size_t rrow;		/* bytes of an unpacked row */
	eng_type dt;
	const float *x;		/* n_tokens x n_cols */
	const eng_gemm *gemm;	/* non-NULL: the interleaved path */
	void *gact;		/* companion rows, gact_stride bytes each */
	size_t gact_stride;
	size_t gpack;		/* bytes of a packed group */
	const void *act;	/* quantized x, act_stride bytes per token */
	void *qbuf;		/* where x is quantized (NULL: act = x) */
	size_t act_stride;
	float *out;
	int64_t n_tokens;
	int64_t chunk_rows;
	int64_t n_chunks;
	_Atomic int64_t next;
};

/* The next chunk of rows [*r0, *r1) handed out; 0 when none is left. */
static int next_chunk(struct mm_task *k, int64_t *r0, int64_t *r1)
{
	int64_t c = atomic_fetch_add_explicit(&k->next, 1, memory_order_relaxed);
	if (c >= k->n_chunks)
		return 0;
	*r0 = c * k->chunk_rows;
	*r1 = *r0 + k->chunk_rows < k->w->n_rows ? *r0 + k->chunk_rows
						  : k->w->n_rows;
	return 1;
}

static void quantize_task(void *arg, int ith, int nth)
{
	struct mm_task *k = arg;
	for (int64_t t = ith; t < k->n_tokens; t += nth) {
		/* gemm: one row per thread, then its companion layout */
		char *q = k->gemm ? (char *)k->qbuf + (size_t)ith * k->act_stride
				  : (char *)k->qbuf + (size_t)t * k->act_stride;
		eng_quantize_row(k->dt, k->x + t * k->w->n_cols, q, k->w->n_cols);
		if (k->gemm)
			k->gemm->act(q, (char *)k->gact + (size_t)t * k->gact_stride,
				     k->w->n_cols);
	}
}

/* The interleaved path: a chunk is a panel of whole groups of rows. */
static void gemm_task(void *arg, int ith, int nth)
{
	struct mm_task *k = arg;
	const eng_qmat *w = k->w;
	const eng_gemm *g = k->gemm;
	char *rbuf = (char *)k->rbuf + (size_t)ith * k->rbuf_bytes, *buf = rbuf;
	const eng_qpack *pk = k->pk;
	int64_t r0, r1;
	(void)nth;
	while (next_chunk(k, &r0, &r1)) {
		if (pk && !k->widen)
			buf = (char *)pk->data + (size_t)(r0 / ENG_GEMM_ROWS) * pk->gpack;
		else if (pk)
			for (int64_t r = r0; r < r1; r += ENG_GEMM_ROWS)
				pk->g->widen((const char *)pk->data + (size_t)(r / ENG_GEMM_ROWS) *
					     pk->gpack, buf + (size_t)(r - r0) / ENG_GEMM_ROWS * k->gpack,
					     w->n_cols);
		else
			for (int64_t r = r0; r < r1; r += ENG_GEMM_ROWS) {
				int nr = r1 - r < ENG_GEMM_ROWS ? (int)(r1 - r) : ENG_GEMM_ROWS;
				g->pack((const char *)w->data + (size_t)r * w->row_stride,
					w->row_stride, nr, w->n_cols,
					buf + (size_t)(r - r0) / ENG_GEMM_ROWS * k->gpack);
			}
		for (int64_t t0 = 0; t0 < k->n_tokens; t0 += ENG_GEMM_NT) {
			int nt = k->n_tokens - t0 < ENG_GEMM_NT ? (int)(k->n_tokens - t0)
							       : ENG_GEMM_NT;
			const char *a = (const char *)k->gact + (size_t)t0 * k->gact_stride;
			for (int64_t r = r0; r < r1; r += ENG_GEMM_ROWS) {
				int nr = r1 - r < ENG_GEMM_ROWS ? (int)(r1 - r) : ENG_GEMM_ROWS;
				g->run(w->n_cols,
				       buf + (size_t)(r - r0) / ENG_GEMM_ROWS * k->gpack,
				       a, k->gact_stride, k->out + t0 * w->n_rows + r,
				       (size_t)w->n_rows, nr, nt);
			}
		}
	}
}

static void dot_task(void *arg, int ith, int nth)
{
	struct mm_task *k = arg;
	const eng_qmat *w = k->w;
	int64_t r0, r1;
	(void)nth;
	while (next_chunk(k, &r0, &r1)) {
		/* rows r0..r1 of the panel: in place, or unpacked once here */
		const char *base = (const char *)w->data + (size_t)r0 * w->row_stride;
		size_t stride = w->row_stride;
		if (k->repack) {
			char *buf = (char *)k->rbuf + (size_t)ith * k->rbuf_bytes;
			for (int64_t r = r0; r < r1; r++)
				k->repack((const char *)w->data + (size_t)r * w->row_stride,
					  buf + (size_t)(r - r0) * k->rrow, w->n_cols);
			base = buf;
			stride = k->rrow;
		}
		for (int64_t t0 = 0; t0 < k->n_tokens; t0 += ENG_NT_MAX) {
			int nt = k->n_tokens - t0 < ENG_NT_MAX ? (int)(k->n_tokens - t0)
							      : ENG_NT_MAX;
			const char *a = (const char *)k->act + (size_t)t0 * k->act_stride;
			float *o = k->out + t0 * w->n_rows;
			int64_t r = r0;
			if (k->tile && nt == ENG_NT_MAX)
				for (; r + ENG_TILE_ROWS <= r1; r += ENG_TILE_ROWS)
					k->tile(w->n_cols, base + (size_t)(r - r0) * stride,
						stride, a, k->act_stride, o + r,
						(size_t)w->n_rows);
			for (; r < r1; r++)
				k->dot(w->n_cols, base + (size_t)(r - r0) * stride,
				       a, k->act_stride, o + r, (size_t)w->n_rows, nt);
		}
	}
}

/* Checks w and sizes; fills the activation format and row size. */
static int check_args(const float *out, const eng_qmat *w, const float *x,
		      int64_t n_tokens, const eng_type_traits **dtr,
		      size_t *act_stride)
{
	if (!out || !w || !x || !w->data || n_tokens < 1 || w->n_rows < 1)
		return ENG_EINVAL;
	const eng_type_traits *tr = eng_type_traits_get(w->type);
	if (!tr || !tr->has_dot)
		return ENG_EINVAL;
	size_t wrow;
	int rc = eng_row_bytes(w->type, w->n_cols, &wrow);
	if (rc)
		return rc;
	/* blocks are read through their structs: keep them aligned (2 bytes
	 * for the half-led blocks, 4 for f32) */
	size_t align = w->type == ENG_TYPE_F32 ? 4 : 2;
	if (w->row_stride < wrow || w->row_stride % align ||
	    (uintptr_t)w->data % align)
		return ENG_EINVAL;
	*dtr = eng_type_traits_get(tr->dot_type);
	rc = eng_row_bytes(tr->dot_type, w->n_cols, act_stride);
	if (rc)
		return rc;
	if ((uint64_t)n_tokens > SIZE_MAX / *act_stride ||
	    (uint64_t)n_tokens > SIZE_MAX / sizeof(float) / (uint64_t)w->n_rows ||
	    (uint64_t)w->n_rows > SIZE_MAX / w->row_stride)
		return ENG_ERANGE;
	return 0;
}

/* The interleaved path (checked arguments), on panels packed here or
 * read from pk.  Scratch: the companion rows, then per thread one
 * quantized row and (without pk, or widening it) one packed panel. */
static int gemm_matmul(float *out, const eng_qmat *w, const float *x,
		       int64_t n_tokens, eng_pool *pool, const eng_gemm *g,
		       size_t act_stride, const eng_qpack *pk)
{
	int nth = eng_pool_threads(pool);
	/* a pack in a layout of its own widened per panel for many tokens */
	int widen = pk && pk->g->widen && n_tokens > ENG_GEMM_NT;
	if (widen)
		g = pk->g->wide;
	struct mm_task k = {
		.w = w, .pk = pk, .widen = widen, .gemm = g, .x = x, .out = out,
		.n_tokens = n_tokens,
		.dt = eng_type_traits_get(w->type)->dot_type,
		.act_stride = (act_stride + 63) & ~(size_t)63,
		.gact_stride = (eng_gemm_act_bytes(g, w->n_cols) + 63) & ~(size_t)63,
		.gpack = eng_gemm_pack_bytes(g, w->n_cols),
	};
	/* a panel: whole groups within PANEL_BYTES and a fair share */
	int64_t groups = (w->n_rows + ENG_GEMM_ROWS - 1) / ENG_GEMM_ROWS;
	int64_t panel = PANEL_BYTES / (int64_t)k.gpack;
	int64_t fair = (groups + nth - 1) / nth;
	if (panel > fair)
		panel = fair;
	if (pk && n_tokens <= ENG_GEMM_NT)	/* each weight read once */
		panel = (groups + nth * CHUNKS_PER_THREAD - 1) / (nth * CHUNKS_PER_THREAD);
	if (panel < 1)
		panel = 1;
	k.chunk_rows = panel * ENG_GEMM_ROWS;
	k.n_chunks = (w->n_rows + k.chunk_rows - 1) / k.chunk_rows;
	k.rbuf_bytes = pk && !widen ? 0 : ((size_t)panel * k.gpack + 63) & ~(size_t)63;
	if ((uint64_t)n_tokens > SIZE_MAX / 2 / k.gact_stride ||
	    k.rbuf_bytes + k.act_stride > SIZE_MAX / 4 / (size_t)nth)
		return ENG_ERANGE;
	size_t gbytes = (size_t)n_tokens * k.gact_stride;
	size_t need = gbytes + (size_t)nth * (k.act_stride + k.rbuf_bytes);
	void *tmp = NULL;
	char *mem = pool ? eng__pool_scratch(pool, need) : (tmp = malloc(need));
	if (!mem)
		return ENG_ENOMEM;
	k.gact = mem;
	k.qbuf = mem + gbytes;
	k.rbuf = mem + gbytes + (size_t)nth * k.act_stride;
	eng_pool_run(pool, quantize_task, &k);
	atomic_init(&k.next, 0);
	eng_pool_run(pool, gemm_task, &k);
	free(tmp);
	return 0;
}

int eng_matmul(float *out, const eng_qmat *w, const float *x,
	       int64_t n_tokens, eng_pool *pool)
{
	const eng_type_traits *dtr;
	size_t act_stride;
	int rc = check_args(out, w, x, n_tokens, &dtr, &act_stride);
	if (rc)
		return rc;
	eng_simd lv = eng_simd_active();
	const eng_qpack *pk = w->pack && lv >= ENG_SIMD_AVX512 ? w->pack : NULL;
	if (pk && (pk->type != w->type || pk->n_rows != w->n_rows ||
		   pk->n_cols != w->n_cols))
		return ENG_EINVAL;
	if (pk)
		return gemm_matmul(out, w, x, n_tokens, pool, pk->g, act_stride, pk);
	const eng_gemm *g = n_tokens >= GEMM_MIN_TOKENS ? eng_gemm_get(w->type, lv) : NULL;
	if (g)
		return gemm_matmul(out, w, x, n_tokens, pool, g, act_stride, NULL);
	eng_type dt = eng_type_traits_get(w->type)->dot_type;
	eng_type kt = w->type;	/* the type the kernels see */
	int nth = eng_pool_threads(pool);
	struct mm_task k = {
		.w = w, .dt = dt, .x = x, .out = out, .n_tokens = n_tokens,
		.act_stride = act_stride,
		.repack = n_tokens >= REPACK_MIN_TOKENS ? eng_repack_q8_0_get(w->type, lv) : NULL,
	};
	if (k.repack) {
		kt = ENG_TYPE_Q8_0;
		eng_row_bytes(kt, w->n_cols, &k.rrow);	/* cannot fail: same blocks */
	}
	k.dot = eng_vec_dot_get(kt, lv);
	k.tile = n_tokens >= ENG_NT_MAX ? eng_tile_get(kt, lv) : NULL;
	/* prefill panels: rows that fit PANEL_BYTES, whole tiles of rows */
	int64_t panel = PANEL_BYTES / (int64_t)(k.repack ? k.rrow : w->row_stride);
	int64_t fair = (w->n_rows + nth - 1) / nth;
	if (panel > fair)
		panel = fair;
	panel -= panel % ENG_TILE_ROWS;
	if (panel < ENG_TILE_ROWS)
		panel = ENG_TILE_ROWS;
	if (k.repack)
		k.rbuf_bytes = ((size_t)panel * k.rrow + 63) & ~(size_t)63;
	void *tmp = NULL;
	if (dt == ENG_TYPE_F32) {
		k.act = x;	/* float weights take x as it is */
	} else {
		size_t abytes = ((size_t)n_tokens * act_stride + 63) & ~(size_t)63;
		if (k.rbuf_bytes > (SIZE_MAX - abytes) / (size_t)nth)
			return ENG_ERANGE;
		size_t need = abytes + (size_t)nth * k.rbuf_bytes;
		k.qbuf = pool ? eng__pool_scratch(pool, need) : (tmp = malloc(need));
		if (!k.qbuf)
			return ENG_ENOMEM;
		k.act = k.qbuf;
		k.rbuf = (char *)k.qbuf + abytes;
		if (n_tokens > 1)
			eng_pool_run(pool, quantize_task, &k);
		else
			quantize_task(&k, 0, 1);
	}

	if (n_tokens == 1) {
		int64_t want = (int64_t)nth * CHUNKS_PER_THREAD;
		k.chunk_rows = (w->n_rows + want - 1) / want;
		if (k.chunk_rows < 16)
			k.chunk_rows = 16;
	} else {
		k.chunk_rows = panel;
	}
	k.n_chunks = (w->n_rows + k.chunk_rows - 1) / k.chunk_rows;
	atomic_init(&k.next, 0);
	if (nth > 1 && k.n_chunks > 1)
		eng_pool_run(pool, dot_task, &k);
	else
		dot_task(&k, 0, 1);
	free(tmp);
	return 0;
}

/* ------------------------------------------------------------------------
 * Packing a whole matrix ahead of time
 * ------------------------------------------------------------------------ */

struct pack_task {
	const eng_qmat *w;
	eng_qpack *p;
	_Atomic int64_t next;	/* next run of PACK_RUN groups */
};

#define PACK_RUN 64

static void pack_task(void *arg, int ith, int nth)
{
	struct pack_task *k = arg;
	const eng_qmat *w = k->w;
	eng_qpack *p = k->p;
	int64_t c;
	(void)ith;
	(void)nth;
	while ((c = atomic_fetch_add_explicit(&k->next, 1, memory_order_relaxed)) *
	       PACK_RUN < p->n_groups) {
		int64_t i1 = (c + 1) * PACK_RUN < p->n_groups ? (c + 1) * PACK_RUN : p->n_groups;
		for (int64_t i = c * PACK_RUN; i < i1; i++) {
			int64_t r = i * ENG_GEMM_ROWS;
			int nr = w->n_rows - r < ENG_GEMM_ROWS ? (int)(w->n_rows - r)
							      : ENG_GEMM_ROWS;
			p->g->pack((const char *)w->data + (size_t)r * w->row_stride,
				   w->row_stride, nr, w->n_cols,
				   (char *)p->data + (size_t)i * p->gpack);
		}
	}
}

int eng_qpack_make(const eng_qmat *w, eng_pool *pool, eng_qpack **out)
{
	const eng_type_traits *dtr;
	size_t act_stride;
	float probe = 0.0f;
	if (!out)
		return ENG_EINVAL;
	*out = NULL;
	/* the arguments eng_matmul would check (out and x are dummies) */
	int rc = check_args(&probe, w, &probe, 1, &dtr, &act_stride);
	if (rc)
		return rc;
	if (eng_simd_active() < ENG_SIMD_AVX512)
		return ENG_EUNSUP;
	const eng_gemm *g = eng_gemm_get_whole(w->type, eng_simd_active());
	if (!g || w->n_cols % g->bl)
		return ENG_EUNSUP;
	eng_qpack *p = calloc(1, sizeof *p);
	if (!p)
		return ENG_ENOMEM;
	p->g = g;
	p->type = w->type;
	p->n_rows = w->n_rows;
	p->n_cols = w->n_cols;
	p->gpack = eng_gemm_pack_bytes(g, w->n_cols);
	p->n_groups = (w->n_rows + ENG_GEMM_ROWS - 1) / ENG_GEMM_ROWS;
	if ((uint64_t)p->n_groups > SIZE_MAX / 2 / p->gpack) {
		free(p);
		return ENG_ERANGE;
	}
	size_t bytes = ((size_t)p->n_groups * p->gpack + 63) & ~(size_t)63;
	if (!(p->data = aligned_alloc(64, bytes))) {
		free(p);
		return ENG_ENOMEM;
	}
	struct pack_task k = { .w = w, .p = p };
	atomic_init(&k.next, 0);
	if (pool)
		eng_pool_run(pool, pack_task, &k);
	else
		pack_task(&k, 0, 1);
	*out = p;
	return 0;
}

void eng_qpack_free(eng_qpack *p)
{
	if (!p)
		return;
	free(p->data);
	free(p);
}

size_t eng_qpack_bytes(const eng_qpack *p)
{
	return p ? (size_t)p->n_groups * p->gpack : 0;
}

int eng_matmul_ref(float *out, const eng_qmat *w, const float *x,
		   int64_t n_tokens)
{
	const eng_type_traits *dtr;
	size_t act_stride;
	int rc = check_args(out, w, x, n_tokens, &dtr, &act_stride);
	if (rc)
		return rc;
	eng_type dt = eng_type_traits_get(w->type)->dot_type;
	eng_vec_dot_fn dot = eng_vec_dot_get(w->type, ENG_SIMD_SCALAR);
	void *q = malloc(act_stride);
	if (!q)
		return ENG_ENOMEM;
	for (int64_t t = 0; t < n_tokens; t++) {
		const float *xt = x + t * w->n_cols;
		switch (dt) {
		case ENG_TYPE_Q8_0: eng_quantize_row_q8_0_ref(xt, q, w->n_cols); break;
		case ENG_TYPE_Q8_1: eng_quantize_row_q8_1_ref(xt, q, w->n_cols); break;
		case ENG_TYPE_Q8_K: eng_quantize_row_q8_K_ref(xt, q, w->n_cols); break;
		default: memcpy(q, xt, act_stride); break;
		}
		for (int64_t r = 0; r < w->n_rows; r++)
			dot(w->n_cols, (const char *)w->data + (size_t)r * w->row_stride,
			    q, act_stride, out + t * w->n_rows + r, 1, 1);
	}
	free(q);
	return 0;
}

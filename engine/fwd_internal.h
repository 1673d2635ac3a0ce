/* fwd_internal.h - what forward.c and attention.c share: the forward
 * pass's state (struct eng_fwd, owned by eng_fwd_open's caller through
 * eng_fwd_close) and the calls between the two files.  Internal to the
 * engine; the API is engine.h.
 *
 * forward.c: weights, norms and activations, RoPE, the step through the
 * layers, evaluation, open/close.  attention.c: attention of a layer for
 * a step (dense, windowed, sparse plans; one token at a time, llama.cpp's
 * f16 accumulation, or tiles of tokens) and the record of what the last
 * token attended.
 */
#ifndef ENGRAM_ENGINE_FWD_INTERNAL_H
#define ENGRAM_ENGINE_FWD_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "eng_internal.h"
#include "engine.h"
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FWD_X86 1
#else
#define FWD_X86 0
#endif

/* One block's weights.  Matrices are eng_qmat: n_rows outputs of n_cols
 * inputs (ggml's ne[1] x ne[0]).  Vectors are f32 copies owned by the
 * eng_fwd (norm weights are tiny; copying lets any file type work). */
struct fwd_layer {
	float *attn_norm;	/* (n_embd) */
	eng_qmat wq;		/* (n_head*hd_k, n_embd) */
	eng_qmat wk;		/* (n_kv*hd_k, n_embd) */
	eng_qmat wv;		/* (n_kv*hd_v, n_embd) */
	float *bq, *bk, *bv;	/* (n_head*hd_k), (n_kv*hd_k), (n_kv*hd_v) or NULL */
	float *q_norm;		/* gemma3: (hd_k) */
	float *k_norm;		/* gemma3: (hd_k) */
	eng_qmat wo;		/* (n_embd, n_head*hd_v) */
	float *post_attn_norm;	/* gemma3: (n_embd) */
	float *ffn_norm;	/* (n_embd) */
	eng_qmat w_gate;	/* (n_ff, n_embd) */
	eng_qmat w_up;		/* (n_ff, n_embd) */
	eng_qmat w_down;	/* (n_embd, n_ff) */
	float *post_ffn_norm;	/* gemma3: (n_embd) */
	int swa;		/* 1: sliding-window (local) layer */
	int rope_set;		/* which rope table: 0 global, 1 local */
};

/* Per-thread scratch of the attention task. */
struct attn_scratch {
	float *scores;		/* (group, n_keys) */
	float *acc;		/* (group, hd_v) */
	float *qrow;		/* (group, hd_k) f32, or f16 queries */
	float *qrot;		/* (group, hd_k) queries of a shifted range */
	/* Tiled attention, R = TILE_TOKENS * group rows: */
	float *tq;		/* (R, hd_k) the tile's queries */
	float *tkv;		/* (ENG__ATTN_KB, max(hd_k, hd_v)) as f32 */
	float *ts;		/* (R, TILE_CHUNK) scores, then weights */
	float *tacc;		/* (R, hd_v) unnormalized outputs */
	float *tm, *tl;		/* (R) running maxima and sums */
};

/* Tiled attention (prefill, AVX-512): tokens per work item, and keys per
 * online-softmax update. */
#define TILE_TOKENS 32
#define TILE_CHUNK 64

struct eng_fwd {
	const eng_model *model;	/* borrowed */
	eng_hparams hp;
	eng_pool *pool;		/* owned */
	uint32_t n_batch;
	int rope_neox;		/* 1: rotate (i, i+n_rot/2); 0: (2i, 2i+1) */
	float attn_scale;	/* applied to q . k */
	float attn_scale0;	/* gemma3: applied to Q after RoPE */
	int scale_q_first;	/* gemma3 scales Q before attention */
	float emb_scale;	/* gemma3: sqrt(n_embd); else 1 */
	float freq_scale;	/* linear rope scaling: 1/factor */
	uint32_t rope_offset;	/* added to every position RoPE sees */

	eng_qmat tok_embd;	/* (n_vocab, n_embd) */
	eng_qmat output;	/* (n_vocab, n_embd), may be tok_embd */
	float *output_norm;	/* (n_embd) */
	float *rope_freqs;	/* (n_rot/2) llama3 frequency divisors or NULL */
	struct fwd_layer *layers;	/* (n_layer) */

	/* Activations of one step of n <= n_batch tokens, token-major. */
	float *x;		/* (n_batch, n_embd) residual stream */
	float *xb;		/* (n_batch, n_embd) normed input of a sublayer */
	float *xb2;		/* (n_batch, n_embd) sublayer output */
	float *q;		/* (n_batch, n_head*hd_k) */
	float *k;		/* (n_batch, n_kv*hd_k) */
	float *v;		/* (n_batch, n_kv*hd_v) */
	float *att;		/* (n_batch, n_head*hd_v) attention output */
	float *hb;		/* (n_batch, n_ff) gate */
	float *hb2;		/* (n_batch, n_ff) up */
	float *rope;		/* (2, n_batch, n_rot) cos/sin pairs, per rope set */
	float *logits;		/* (logits_cap / n_vocab, n_vocab) */
	size_t logits_cap;	/* floats */

	struct attn_scratch *ts;	/* (nth) */
	size_t ts_keys;		/* keys the scratch has room for */
	float *ts_mem;
	float *fa_part;		/* a split decode step's chunk results */
	size_t fa_part_cap;	/* floats */

	/* SIMD helpers chosen at open. */
	void (*rmsnorm)(float *out, const float *x, const float *w,
	    uint32_t n, size_t rows, float eps);
	void (*geglu)(float *y, const float *g, const float *u, size_t n);
	void (*vacc)(uint32_t n, float *out, uint32_t ng, const float *p,
	    size_t ps, const void *v, size_t vs, uint32_t nk, int is_f16);
	void (*scale_f16)(uint32_t n, eng_f16 *y, float a);
	void (*round_f16)(uint32_t n, float *y, const float *x);
	/* y_h += x * a[h] for ng f16 rows of n, y_h = y + h * n */
	void (*mad_f16_group)(uint32_t n, eng_f16 *y, const eng_f16 *x,
	    const float *a, uint32_t ng);
	/* The two above for a group of 4 heads over nr rows in turn, row r's
	 * rescales ms[r * 4 + h] (1: none) and weights a[r * 4 + h]; NULL:
	 * row by row. */
	void (*mad_f16_rows)(uint32_t n, eng_f16 *y, const eng_f16 *const *x,
	    uint32_t nr, const float *ms, const float *a);
	eng_attn_mode attn_mode;
	/* out[h] = k . q_h for ng f32 query rows of n, q_h = q + h * n */
	void (*kq_dot_group)(uint32_t n, const eng_f16 *k, const float *q,
	    uint32_t ng, float *out);
	eng_vec_dot_fn kdot;	/* key (cache type) . f32 query rows */
	eng_type kdot_type;
	const eng__attn_kern *akern;	/* tiled attention; NULL: none */

	/* Sparse attention: settings, a plan per layer and kv head (kept
	 * from step to step: a question's picks stay pinned while it is
	 * answered), the rotation tables of the current layer's ranges. */
	eng_sparse_params sparse;
	struct eng__plan *plans;	/* (n_layer, n_head_kv) */
	float *rot;		/* (n_head_kv, rot_ranges, n_rot) */
	size_t rot_cap;		/* floats */
	uint32_t rot_ranges;

	/* Recording what the last token attended (eng_fwd_record). */
	int rec_on;
	float *rec_w;		/* attention mass per block */
	size_t rec_cap;		/* blocks */
	uint32_t rec_B, rec_end;	/* block size; end of the context */
	double rec_keys;	/* sum of keys attended */
	uint32_t rec_count;	/* (layer, kv head) pairs recorded */
	uint32_t rec_group;
	uint32_t rec_skip;	/* positions below are not recorded */
	eng_rank rec_rank;	/* the step's plans' least exact ranking */
};


/* attention.c: sets f's attention helpers for the active SIMD level. */
void eng__attn_setup(eng_fwd *f);
/* Makes the per-thread scratch hold n_keys keys.  ENG_ENOMEM. */
int eng__attn_reserve(eng_fwd *f, size_t n_keys);
/* Attention of layer il for the step of n tokens at pos0: q, k and v are
 * in f (k and v already written to kv); the output goes to f->att. */
int eng__attention(eng_fwd *f, eng_kv *kv, uint32_t il, uint32_t n,
    uint32_t pos0);

#endif /* ENGRAM_ENGINE_FWD_INTERNAL_H */

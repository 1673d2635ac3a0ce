/* forward.c - the transformer forward pass for gemma3, llama and qwen2:
 * weights borrowed from the model's map, a step of up to n_batch tokens
 * through every layer, keys and values kept through the eng_kv interface.
 *
 * Numerics follow llama.cpp's CPU backend where it is cheap to do so, so
 * that greedy outputs agree: RMSNorm sums squares in double; RoPE angles
 * are built by repeated multiplication (theta *= base^(-2/n_rot)) as ggml
 * does; Gemma's GELU goes through a table of f16 inputs as ggml's
 * GGML_GELU_FP16; keys and values are rounded to the cache type (F16)
 * before attention reads them back; activations are quantized to each
 * weight's dot type by eng_matmul as ggml does.  Attention has two paths
 * (eng_attn_mode): steps of fewer than 64 tokens reproduce llama.cpp's
 * one-chunk flash attention (Q rounded to f16, q.k summed in ggml's order,
 * online softmax, values accumulated in f16), longer steps and ENG_ATTN_F32
 * are f32: on AVX-512, tiles of TILE_TOKENS tokens share each key and
 * value block (an online softmax over chunks of keys, kernels in
 * attn_avx512.c), elsewhere or for one token a two-pass softmax per token;
 * attention lives in attention.c.  A token over more than 1024 keys
 * runs that kernel on fixed chunks of 1024 and combines them in order, as
 * llama.cpp's decode splits its keys over its threads (one chunk per
 * thread there, so its bits depend on its thread count; ours do not).
 * With equal inputs and at most 1024 keys the attention output is
 * bit-identical to llama.cpp's; what still differs is
 * the summation order inside the quantized matrix kernels, and since the
 * next layer rounds activations to 8 bits, a last-bit difference sometimes
 * flips a rounding and grows (see /work/notes/forward-results.md).
 *
 * Layout: activations are token-major, (n_tokens, width) row after row, as
 * eng_matmul takes and returns them.  API: engine.h.
 */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eng_internal.h"
#include "engine.h"
#include "fwd_internal.h"
#include "kernels.h"

/* ------------------------------------------------------------------------
 * Weights
 * ------------------------------------------------------------------------ */


/* ggml's GELU (tanh form) looked up by the f16 rounding of its input, the
 * result rounded to f16: GGML_GELU_FP16 in ggml-cpu/vec.h. */
static eng_f16 gelu_table[(1 << 16) + 2];	/* +2: 4-byte gathers */
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;

static float gelu_f32(float x)
{
	const float c = 0.79788456080286535587989211986876f;	/* sqrt(2/pi) */
	return 0.5f * x * (1.0f + tanhf(c * x * (1.0f + 0.044715f * x * x)));
}

static void gelu_table_init(void)
{
	for (uint32_t i = 0; i < (1u << 16); i++)
		gelu_table[i] = eng_f32_to_f16(gelu_f32(eng_f16_to_f32(
		    (eng_f16)i)));
}

/* y = gelu(g) * u, elementwise over n. */
static void geglu(float *y, const float *g, const float *u, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		float x = g[i];
		if (x <= -10.0f)
			y[i] = 0.0f;
		else if (x >= 10.0f)
			y[i] = x * u[i];
		else
			y[i] = eng_f16_to_f32(gelu_table[eng_f32_to_f16(x)]) *
			    u[i];
	}
}

#if FWD_X86
/* geglu with the rounding and the table lookup done 8 at a time: the
 * same values as geglu's (F16C rounds to nearest even as eng_f32_to_f16
 * does). */
__attribute__((target("avx2,fma,f16c")))
static void geglu_avx2(float *y, const float *g, const float *u, size_t n)
{
	const __m256 lo = _mm256_set1_ps(-10.0f), hi = _mm256_set1_ps(10.0f);
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		__m256 x = _mm256_loadu_ps(g + i), uu = _mm256_loadu_ps(u + i);
		__m256i idx = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(x,
		    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
		__m256i t = _mm256_and_si256(_mm256_i32gather_epi32(
		    (const int *)(const void *)gelu_table, idx, 2),
		    _mm256_set1_epi32(0xffff));
		__m256 gv = _mm256_cvtph_ps(_mm_packus_epi32(
		    _mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1)));
		__m256 r = _mm256_mul_ps(gv, uu);
		r = _mm256_blendv_ps(r, _mm256_setzero_ps(),
		    _mm256_cmp_ps(x, lo, _CMP_LE_OQ));
		r = _mm256_blendv_ps(r, _mm256_mul_ps(x, uu),
		    _mm256_cmp_ps(x, hi, _CMP_GE_OQ));
		_mm256_storeu_ps(y + i, r);
	}
	if (i < n)
		geglu(y + i, g + i, u + i, n - i);
}
#endif

/* y = silu(g) * u. */
static void swiglu(float *y, const float *g, const float *u, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* out = x / rms(x) * w over n elements, for rows rows of stride n.  The
 * sum of squares in double as ggml's rms_norm. */
static void rmsnorm(float *out, const float *x, const float *w, uint32_t n,
    size_t rows, float eps)
{
	for (size_t r = 0; r < rows; r++, x += n, out += n) {
		double sum = 0.0;
		for (uint32_t i = 0; i < n; i++)
			sum += (double)(x[i] * x[i]);
		float mean = (float)(sum / n);
		float scale = 1.0f / sqrtf(mean + eps);
		for (uint32_t i = 0; i < n; i++)
			out[i] = (x[i] * scale) * w[i];
	}
}

#if FWD_X86
/* rmsnorm 8 lanes at a time, squares summed in double as there (each
 * float square is exact in double; only the order of the sum differs). */
__attribute__((target("avx2,fma")))
static void rmsnorm_avx2(float *out, const float *x, const float *w,
    uint32_t n, size_t rows, float eps)
{
	for (size_t r = 0; r < rows; r++, x += n, out += n) {
		__m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
		uint32_t i = 0;
		for (; i + 8 <= n; i += 8) {
			__m256 v = _mm256_loadu_ps(x + i);
			__m256 sq = _mm256_mul_ps(v, v);
			s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(
			    _mm256_castps256_ps128(sq)));
			s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(
			    _mm256_extractf128_ps(sq, 1)));
		}
		double d[4], sum;
		_mm256_storeu_pd(d, _mm256_add_pd(s0, s1));
		sum = (d[0] + d[1]) + (d[2] + d[3]);
		for (; i < n; i++)
			sum += (double)(x[i] * x[i]);
		float scale = 1.0f / sqrtf((float)(sum / n) + eps);
		__m256 vs = _mm256_set1_ps(scale);
		for (i = 0; i + 8 <= n; i += 8)
			_mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(
			    _mm256_loadu_ps(x + i), vs), _mm256_loadu_ps(w + i)));
		for (; i < n; i++)
			out[i] = (x[i] * scale) * w[i];
	}
}
#endif

static void add_rows(float *x, const float *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] += y[i];
}

static void add_bias(float *x, const float *b, uint32_t dim, uint32_t rows)
{
	if (!b)
		return;
	for (uint32_t r = 0; r < rows; r++)
		add_rows(x + (size_t)r * dim, b, dim);
}

/* ------------------------------------------------------------------------
 * RoPE
 * ------------------------------------------------------------------------ */

/* cos/sin pairs for n positions from pos0: tab[t][2i], tab[t][2i+1] for
 * pair i < n_rot/2.  The angle is built as ggml_rope_cache_init does:
 * theta = pos, then theta *= base^(-2/n_rot) per pair, divided by the
 * pair's frequency factor, times freq_scale. */
void eng__rope_table(float *tab, uint32_t pos0, uint32_t n, uint32_t n_rot,
    float base, float freq_scale, const float *freq_factors)
{
	float theta_scale = powf(base, -2.0f / (float)n_rot);
	for (uint32_t t = 0; t < n; t++) {
		float theta = (float)(pos0 + t);
		float *c = tab + (size_t)t * n_rot;
		for (uint32_t i = 0; i < n_rot / 2; i++) {
			float ff = freq_factors ? freq_factors[i] : 1.0f;
			float th = freq_scale * (theta / ff);
			c[2 * i] = cosf(th);
			c[2 * i + 1] = sinf(th);
			theta *= theta_scale;
		}
	}
}

void eng__rope_back(const float *cs, const float *x, size_t xs, float *y,
    size_t ys, uint32_t n, uint32_t hd, uint32_t n_rot, int neox)
{
	uint32_t half = n_rot / 2;

	for (uint32_t h = 0; h < n; h++) {
		const float *xi = x + h * xs;
		float *yo = y + h * ys;
		memcpy(yo, xi, hd * sizeof(float));
		for (uint32_t i = 0; i < half; i++) {
			uint32_t a = neox ? i : 2 * i;
			uint32_t b = neox ? i + half : 2 * i + 1;
			float c = cs[2 * i], sn = cs[2 * i + 1];
			yo[a] = xi[a] * c + xi[b] * sn;
			yo[b] = xi[b] * c - xi[a] * sn;
		}
	}
}

/* Rotates the first n_rot dims of each of n_heads heads (stride hd) of n
 * token rows (stride row). */
static void rope_apply(float *x, const float *tab, uint32_t n,
    uint32_t n_heads, uint32_t hd, size_t row, uint32_t n_rot, int neox)
{
	uint32_t half = n_rot / 2;
	for (uint32_t t = 0; t < n; t++) {
		const float *c = tab + (size_t)t * n_rot;
		for (uint32_t h = 0; h < n_heads; h++) {
			float *v = x + t * row + (size_t)h * hd;
			for (uint32_t i = 0; i < half; i++) {
				uint32_t a = neox ? i : 2 * i;
				uint32_t b = neox ? i + half : 2 * i + 1;
				float x0 = v[a], x1 = v[b];
				v[a] = x0 * c[2 * i] - x1 * c[2 * i + 1];
				v[b] = x0 * c[2 * i + 1] + x1 * c[2 * i];
			}
		}
	}
}

/* ------------------------------------------------------------------------
 * The forward pass of one step
 * ------------------------------------------------------------------------ */

static int mm(eng_fwd *f, float *out, const eng_qmat *w, const float *x,
    uint32_t n)
{
	return eng_matmul(out, w, x, n, f->pool);
}

/* Row-wise work of a step split over the pool: fn(args, r0, r1) on a
 * contiguous share of the rows per thread (the caller's included).  Small
 * work stays on the caller: waking workers costs more. */
struct rows_job {
	void (*fn)(const struct rows_job *j, size_t r0, size_t r1);
	size_t rows;
	float *out;
	const float *x, *w;
	uint32_t n;		/* floats per row */
	float eps;
	const eng_fwd *f;
	/* rope */
	const float *tab;
	uint32_t n_heads, hd, n_rot;
	size_t row;
};

static void rows_task(void *arg, int ith, int nth)
{
	const struct rows_job *j = arg;
	size_t r0 = j->rows * (size_t)ith / (size_t)nth;
	size_t r1 = j->rows * (size_t)(ith + 1) / (size_t)nth;
	if (r0 < r1)
		j->fn(j, r0, r1);
}

static void par_rows(eng_fwd *f, struct rows_job *j)
{
	if (j->rows * j->n < 16384 || eng_pool_threads(f->pool) < 2)
		j->fn(j, 0, j->rows);
	else
		eng_pool_run(f->pool, rows_task, j);
}

static void norm_rows(const struct rows_job *j, size_t r0, size_t r1)
{
	j->f->rmsnorm(j->out + r0 * j->n, j->x + r0 * j->n, j->w, j->n,
	    r1 - r0, j->eps);
}

/* out = rmsnorm(x) * w over rows of n (out may be x). */
static void norm(eng_fwd *f, float *out, const float *x, const float *w,
    uint32_t n, size_t rows)
{
	struct rows_job j = { .fn = norm_rows, .rows = rows, .out = out,
	    .x = x, .w = w, .n = n, .eps = f->hp.rms_eps, .f = f };
	par_rows(f, &j);
}

static void glu_rows(const struct rows_job *j, size_t r0, size_t r1)
{
	size_t a = r0 * j->n, c = (r1 - r0) * j->n;
	if (j->f->hp.arch == ENG_ARCH_GEMMA3)
		j->f->geglu(j->out + a, j->out + a, j->x + a, c);
	else
		swiglu(j->out + a, j->out + a, j->x + a, c);
}

/* g = act(g) * u over rows of n. */
static void glu(eng_fwd *f, float *g, const float *u, uint32_t n,
    size_t rows)
{
	struct rows_job j = { .fn = glu_rows, .rows = rows, .out = g, .x = u,
	    .n = n, .f = f };
	par_rows(f, &j);
}

static void add_rows_job(const struct rows_job *j, size_t r0, size_t r1)
{
	add_rows(j->out + r0 * j->n, j->x + r0 * j->n, (r1 - r0) * j->n);
}

/* x += y over rows of n. */
static void add(eng_fwd *f, float *x, const float *y, uint32_t n,
    size_t rows)
{
	struct rows_job j = { .fn = add_rows_job, .rows = rows, .out = x,
	    .x = y, .n = n, .f = f };
	par_rows(f, &j);
}

static void rope_rows(const struct rows_job *j, size_t r0, size_t r1)
{
	rope_apply(j->out + r0 * j->row, j->tab + r0 * j->n_rot,
	    (uint32_t)(r1 - r0), j->n_heads, j->hd, j->row, j->n_rot,
	    j->f->rope_neox);
}

/* RoPE of n tokens' n_heads heads (rows of width row). */
static void rope(eng_fwd *f, float *x, const float *tab, uint32_t n,
    uint32_t n_heads, uint32_t hd, size_t row)
{
	struct rows_job j = { .fn = rope_rows, .rows = n, .out = x,
	    .n = (uint32_t)row, .f = f, .tab = tab, .n_heads = n_heads,
	    .hd = hd, .n_rot = f->hp.n_rot, .row = row };
	par_rows(f, &j);
}

/* Runs tokens[0..n) at positions pos0.. (n <= n_batch) through the model,
 * writing keys and values of every layer into kv.  If logits is not NULL,
 * it receives the logits of the last n_out tokens of the step
 * ((n_out, n_vocab)). */
static int forward(eng_fwd *f, eng_kv *kv, const int32_t *tokens,
    uint32_t n, uint32_t pos0, float *logits, uint32_t n_out)
{
	const eng_hparams *hp = &f->hp;
	uint32_t dim = hp->n_embd, hdk = hp->head_dim_k, hdv = hp->head_dim_v;
	uint32_t nh = hp->n_head, nkv = hp->n_head_kv, n_ff = hp->n_ff;
	uint32_t qdim = nh * hdk, kdim = nkv * hdk, vdim = nkv * hdv;
	float *x = f->x;	/* (n, dim) */
	int rc;

	if (f->rec_on) {
		f->rec_B = kv->block_tokens ? kv->block_tokens : 64;
		if (f->rec_w)
			memset(f->rec_w, 0, f->rec_cap * sizeof(float));
		f->rec_keys = 0;
		f->rec_count = 0;
		f->rec_rank = ENG_RANK_NONE;
	}

	/* Token embeddings, (n, dim), times sqrt(dim) for Gemma. */
	for (uint32_t t = 0; t < n; t++) {
		const char *row = (const char *)f->tok_embd.data +
		    (size_t)tokens[t] * f->tok_embd.row_stride;
		if ((rc = eng_dequant_row_ref(f->tok_embd.type, row,
		    x + (size_t)t * dim, dim)))
			return rc;
		if (f->emb_scale != 1.0f)
			for (uint32_t i = 0; i < dim; i++)
				x[(size_t)t * dim + i] *= f->emb_scale;
	}

	/* RoPE tables for this step's positions: global, then local base. */
	eng__rope_table(f->rope, pos0 + f->rope_offset, n, hp->n_rot,
	    hp->rope_base, f->freq_scale, f->rope_freqs);
	if (hp->swa_pattern)
		eng__rope_table(f->rope + (size_t)f->n_batch * hp->n_rot,
		    pos0 + f->rope_offset, n, hp->n_rot, hp->rope_base_local,
		    1.0f, NULL);

	for (uint32_t il = 0; il < hp->n_layer; il++) {
		struct fwd_layer *L = &f->layers[il];
		const float *rtab = f->rope +
		    (size_t)L->rope_set * f->n_batch * hp->n_rot;

		/* ---- attention ---- */
		norm(f, f->xb, x, L->attn_norm, dim, n);
		/* q (n, nh*hdk), k (n, nkv*hdk), v (n, nkv*hdv) */
		if ((rc = mm(f, f->q, &L->wq, f->xb, n)) ||
		    (rc = mm(f, f->k, &L->wk, f->xb, n)) ||
		    (rc = mm(f, f->v, &L->wv, f->xb, n)))
			return rc;
		add_bias(f->q, L->bq, qdim, n);
		add_bias(f->k, L->bk, kdim, n);
		add_bias(f->v, L->bv, vdim, n);
		/* Gemma: RMSNorm of every head of q and k. */
		if (L->q_norm) {
			norm(f, f->q, f->q, L->q_norm, hdk, (size_t)n * nh);
			norm(f, f->k, f->k, L->k_norm, hdk, (size_t)n * nkv);
		}
		rope(f, f->q, rtab, n, nh, hdk, qdim);
		rope(f, f->k, rtab, n, nkv, hdk, kdim);
		if (f->scale_q_first)
			for (size_t i = 0; i < (size_t)n * qdim; i++)
				f->q[i] *= f->attn_scale0;
		/* Keys and values go into the cache first: attention reads
		 * them back in the cache's type, this step's included. */
		if ((rc = kv->ops->write(kv, il, pos0, n, f->k, f->v)))
			return rc;
		if ((rc = eng__attention(f, kv, il, n, pos0)))
			return rc;
		/* att (n, nh*hdv) -> xb2 (n, dim) */
		if ((rc = mm(f, f->xb2, &L->wo, f->att, n)))
			return rc;
		if (L->post_attn_norm)
			norm(f, f->xb2, f->xb2, L->post_attn_norm, dim, n);
		add(f, x, f->xb2, dim, n);

		/* ---- feed-forward ---- */
		norm(f, f->xb, x, L->ffn_norm, dim, n);
		/* hb = gate(xb), hb2 = up(xb): (n, n_ff) */
		if ((rc = mm(f, f->hb, &L->w_gate, f->xb, n)) ||
		    (rc = mm(f, f->hb2, &L->w_up, f->xb, n)))
			return rc;
		glu(f, f->hb, f->hb2, n_ff, n);
		/* xb2 = down(hb): (n, dim) */
		if ((rc = mm(f, f->xb2, &L->w_down, f->hb, n)))
			return rc;
		if (L->post_ffn_norm)
			norm(f, f->xb2, f->xb2, L->post_ffn_norm, dim, n);
		add(f, x, f->xb2, dim, n);
	}

	if (!logits || n_out == 0)
		return 0;
	/* Final norm and output head on the last n_out rows: (n_out, vocab) */
	norm(f, f->xb, x + (size_t)(n - n_out) * dim, f->output_norm, dim,
	    n_out);
	return mm(f, logits, &f->output, f->xb, n_out);
}

/* ------------------------------------------------------------------------
 * Evaluation: steps of n_batch tokens
 * ------------------------------------------------------------------------ */

int eng_fwd_eval(eng_fwd *f, eng_kv *kv, const int32_t *tokens, uint32_t n,
    int all_logits, const float **logits, const atomic_int *cancel)
{
	const eng_hparams *hp;
	size_t need;
	int rc;

	if (!f || !kv || !tokens || n == 0)
		return ENG_EINVAL;
	hp = &f->hp;
	if (kv->n_layer != hp->n_layer || kv->n_head_kv != hp->n_head_kv ||
	    kv->head_dim_k != hp->head_dim_k ||
	    kv->head_dim_v != hp->head_dim_v ||
	    (kv->type != ENG_TYPE_F16 && kv->type != ENG_TYPE_F32))
		return ENG_EINVAL;
	for (uint32_t i = 0; i < n; i++)
		if (tokens[i] < 0 || (uint32_t)tokens[i] >= hp->n_vocab)
			return ENG_EINVAL;
	if (kv->n_pos > kv->n_ctx || n > kv->n_ctx - kv->n_pos)
		return ENG_ERANGE;
	/* Logits kept: all rows or the last one; bounded at 4 Gi floats. */
	need = (size_t)(all_logits ? n : 1) * hp->n_vocab;
	if ((uint64_t)(all_logits ? n : 1) * hp->n_vocab > (1ull << 32))
		return ENG_ERANGE;
	if (logits && need > f->logits_cap) {
		float *nl = realloc(f->logits, need * sizeof(float));
		if (!nl)
			return ENG_ENOMEM;
		f->logits = nl;
		f->logits_cap = need;
	}
	if (kv->type == ENG_TYPE_F16 || kv->type == ENG_TYPE_F32) {
		eng_type kt = kv->type;
		if (kt != f->kdot_type) {
			f->kdot = eng_vec_dot_get(kt, eng_simd_active());
			f->kdot_type = kt;
		}
	}
	if ((rc = eng__attn_reserve(f, (size_t)kv->n_pos + n)))
		return rc;

	for (uint32_t done = 0; done < n;) {
		uint32_t nb = n - done < f->n_batch ? n - done : f->n_batch;
		uint32_t p0 = kv->n_pos;
		float *out = NULL;
		uint32_t n_out = 0;

		if (cancel && atomic_load(cancel))
			return ENG_ECANCELED;
		if (logits && all_logits) {
			out = f->logits + (size_t)done * hp->n_vocab;
			n_out = nb;
		} else if (logits && done + nb == n) {
			out = f->logits;
			n_out = 1;
		}
		rc = forward(f, kv, tokens + done, nb, p0, out, n_out);
		if (rc) {
			kv->ops->commit(kv, p0);
			return rc;
		}
		if ((rc = kv->ops->commit(kv, p0 + nb)))
			return rc;
		done += nb;
	}
	if (logits)
		*logits = f->logits;
	return 0;
}

/* ------------------------------------------------------------------------
 * Open / close
 * ------------------------------------------------------------------------ */

/* A 2-D weight (rows x cols as ggml's ne[1] x ne[0]) usable by eng_matmul. */
static int get_mat(eng_fwd *f, const char *name, uint64_t cols,
    uint64_t rows, int required, eng_qmat *out, char *err, size_t errlen)
{
	const eng_gguf_tensor *t = eng_gguf_tensor_find(
	    eng_model_gguf(f->model), name);
	const eng_type_traits *tr;
	size_t rb;

	memset(out, 0, sizeof *out);
	if (!t)
		return required ? eng__err(err, errlen, ENG_EFORMAT,
		    "tensor '%s' missing", name) : 0;
	if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows)
		return eng__err(err, errlen, ENG_EFORMAT,
		    "tensor '%s': shape [%llu, %llu], expected [%llu, %llu]",
		    name, (unsigned long long)t->ne[0],
		    (unsigned long long)t->ne[1], (unsigned long long)cols,
		    (unsigned long long)rows);
	tr = eng_type_traits_get(t->type);
	if (!tr || !tr->has_dot || eng_row_bytes(t->type, (int64_t)cols, &rb))
		return eng__err(err, errlen, ENG_EUNSUP,
		    "tensor '%s': type %s not supported for matrices", name,
		    eng_type_name(t->type));
	if ((uint64_t)rb * rows > t->n_bytes)
		return eng__err(err, errlen, ENG_EFORMAT,
		    "tensor '%s': data too short", name);
	out->type = t->type;
	out->n_rows = (int64_t)rows;
	out->n_cols = (int64_t)cols;
	out->row_stride = rb;
	out->data = t->data;
	out->pack = eng__model_pack_of(f->model, t->data);
	return 0;
}

/* A 1-D tensor of n elements copied to f32 (malloc'ed into *out). */
static int get_vec(eng_fwd *f, const char *name, uint64_t n, int required,
    float **out, char *err, size_t errlen)
{
	const eng_gguf_tensor *t = eng_gguf_tensor_find(
	    eng_model_gguf(f->model), name);
	const eng_type_traits *tr;

	*out = NULL;
	if (!t)
		return required ? eng__err(err, errlen, ENG_EFORMAT,
		    "tensor '%s' missing", name) : 0;
	tr = eng_type_traits_get(t->type);
	if (t->n_elements != n || t->ne[0] != n)
		return eng__err(err, errlen, ENG_EFORMAT,
		    "tensor '%s': %llu elements, expected %llu", name,
		    (unsigned long long)t->n_elements,
		    (unsigned long long)n);
	if (!tr || n % (uint64_t)tr->blck ||
	    n / (uint64_t)tr->blck * tr->bytes > t->n_bytes)
		return eng__err(err, errlen, ENG_EUNSUP,
		    "tensor '%s': type %s not supported for vectors", name,
		    eng_type_name(t->type));
	if (!(*out = malloc(n * sizeof(float))))
		return ENG_ENOMEM;
	if (eng_dequant_row_ref(t->type, t->data, *out, (int64_t)n)) {
		free(*out);
		*out = NULL;
		return eng__err(err, errlen, ENG_EUNSUP,
		    "tensor '%s': cannot convert type %s", name,
		    eng_type_name(t->type));
	}
	return 0;
}

static int load_layer(eng_fwd *f, uint32_t il, char *err, size_t errlen)
{
	const eng_hparams *hp = &f->hp;
	struct fwd_layer *L = &f->layers[il];
	uint64_t dim = hp->n_embd, qd = (uint64_t)hp->n_head * hp->head_dim_k;
	uint64_t kd = (uint64_t)hp->n_head_kv * hp->head_dim_k;
	uint64_t vd = (uint64_t)hp->n_head_kv * hp->head_dim_v;
	uint64_t od = (uint64_t)hp->n_head * hp->head_dim_v;
	int gemma = hp->arch == ENG_ARCH_GEMMA3;
	char nm[96];
	int rc;

#define NAME(s) (snprintf(nm, sizeof nm, "blk.%u." s, il), nm)
	if ((rc = get_vec(f, NAME("attn_norm.weight"), dim, 1, &L->attn_norm,
	    err, errlen)) ||
	    (rc = get_mat(f, NAME("attn_q.weight"), dim, qd, 1, &L->wq, err,
	    errlen)) ||
	    (rc = get_mat(f, NAME("attn_k.weight"), dim, kd, 1, &L->wk, err,
	    errlen)) ||
	    (rc = get_mat(f, NAME("attn_v.weight"), dim, vd, 1, &L->wv, err,
	    errlen)) ||
	    (rc = get_vec(f, NAME("attn_q.bias"), qd, 0, &L->bq, err,
	    errlen)) ||
	    (rc = get_vec(f, NAME("attn_k.bias"), kd, 0, &L->bk, err,
	    errlen)) ||
	    (rc = get_vec(f, NAME("attn_v.bias"), vd, 0, &L->bv, err,
	    errlen)) ||
	    (rc = get_mat(f, NAME("attn_output.weight"), od, dim, 1, &L->wo,
	    err, errlen)) ||
	    (rc = get_vec(f, NAME("ffn_norm.weight"), dim, 1, &L->ffn_norm,
	    err, errlen)) ||
	    (rc = get_mat(f, NAME("ffn_gate.weight"), dim, hp->n_ff, 1,
	    &L->w_gate, err, errlen)) ||
	    (rc = get_mat(f, NAME("ffn_up.weight"), dim, hp->n_ff, 1,
	    &L->w_up, err, errlen)) ||
	    (rc = get_mat(f, NAME("ffn_down.weight"), hp->n_ff, dim, 1,
	    &L->w_down, err, errlen)))
		return rc;
	if (gemma &&
	    ((rc = get_vec(f, NAME("attn_q_norm.weight"), hp->head_dim_k, 1,
	    &L->q_norm, err, errlen)) ||
	    (rc = get_vec(f, NAME("attn_k_norm.weight"), hp->head_dim_k, 1,
	    &L->k_norm, err, errlen)) ||
	    (rc = get_vec(f, NAME("post_attention_norm.weight"), dim, 1,
	    &L->post_attn_norm, err, errlen)) ||
	    (rc = get_vec(f, NAME("post_ffw_norm.weight"), dim, 1,
	    &L->post_ffn_norm, err, errlen))))
		return rc;
#undef NAME
	L->swa = !eng_hparams_layer_global(hp, il);
	L->rope_set = L->swa ? 1 : 0;
	return 0;
}

void eng_fwd_params_init(eng_fwd_params *p)
{
	if (!p)
		return;
	p->n_threads = 0;
	p->n_batch = 512;
	p->attn_mode = ENG_ATTN_LLAMACPP;
	memset(&p->sparse, 0, sizeof p->sparse);
	p->rope_offset = 0;
}

int eng_fwd_open(const eng_model *m, const eng_fwd_params *pp, eng_fwd **out,
    char *err, size_t errlen)
{
	eng_fwd_params p;
	const eng_hparams *hp;
	eng_fwd *f;
	size_t B;
	int rc;

	if (!m || !out)
		return eng__err(err, errlen, ENG_EINVAL, "invalid argument");
	*out = NULL;
	eng_fwd_params_init(&p);
	if (pp)
		p = *pp;
	if (p.n_batch == 0)
		p.n_batch = 512;
	if (p.n_batch > 65536)
		return eng__err(err, errlen, ENG_ERANGE,
		    "n_batch %u over 65536", p.n_batch);
	if (p.rope_offset > (1u << 30))
		return eng__err(err, errlen, ENG_ERANGE,
		    "rope_offset %u over 2^30", p.rope_offset);
	hp = eng_model_hparams(m);
	if (hp->rope_scaling == ENG_ROPE_SCALING_YARN)
		return eng__err(err, errlen, ENG_EUNSUP,
		    "YaRN rope scaling is not supported");
	if (hp->n_head % hp->n_head_kv || hp->n_rot > hp->head_dim_k ||
	    hp->n_rot % 2 || hp->n_layer > 4096 || hp->n_embd > 65536 ||
	    hp->n_ff > 1048576 || hp->head_dim_k > 4096 ||
	    hp->head_dim_v > 4096 || hp->n_head > 1024)
		return eng__err(err, errlen, ENG_ERANGE,
		    "model dimensions out of range");
	if (!(f = calloc(1, sizeof *f)))
		return ENG_ENOMEM;
	f->model = m;
	f->hp = *hp;
	f->n_batch = p.n_batch;
	f->rope_offset = p.rope_offset;
	f->attn_mode = p.attn_mode;
	eng_fwd_set_sparse(f, &p.sparse);
	pthread_once(&gelu_once, gelu_table_init);

	/* Architecture facts (llama.cpp: llama_model_rope_type, graphs). */
	f->rope_neox = hp->arch != ENG_ARCH_LLAMA;
	f->emb_scale = 1.0f;
	f->freq_scale = hp->rope_scaling == ENG_ROPE_SCALING_LINEAR ?
	    1.0f / hp->rope_scale_factor : 1.0f;
	f->attn_scale = 1.0f / sqrtf((float)hp->head_dim_k);
	if (hp->arch == ENG_ARCH_GEMMA3) {
		f->emb_scale = sqrtf((float)hp->n_embd);
		/* Gemma scales Q by 1/sqrt(head_dim) (1/sqrt(n_embd/n_head)
		 * for the 27B), then attends with scale 1. */
		f->attn_scale0 = hp->n_layer == 62 ?
		    1.0f / sqrtf((float)(hp->n_embd / hp->n_head)) :
		    1.0f / sqrtf((float)hp->head_dim_k);
		f->scale_q_first = 1;
		f->attn_scale = 1.0f;
	}

	if ((rc = get_mat(f, "token_embd.weight", hp->n_embd, hp->n_vocab, 1,
	    &f->tok_embd, err, errlen)) ||
	    (rc = get_mat(f, "output.weight", hp->n_embd, hp->n_vocab, 0,
	    &f->output, err, errlen)) ||
	    (rc = get_vec(f, "output_norm.weight", hp->n_embd, 1,
	    &f->output_norm, err, errlen)))
		goto fail;
	if (!f->output.data)
		f->output = f->tok_embd;
	if (hp->has_rope_freqs &&
	    (rc = get_vec(f, "rope_freqs.weight", hp->n_rot / 2, 1,
	    &f->rope_freqs, err, errlen)))
		goto fail;
	if (hp->rope_scaling == ENG_ROPE_SCALING_LLAMA3 && !f->rope_freqs) {
		rc = eng__err(err, errlen, ENG_EUNSUP,
		    "llama3 rope scaling without a rope_freqs tensor");
		goto fail;
	}
	if (!(f->layers = calloc(hp->n_layer, sizeof *f->layers))) {
		rc = ENG_ENOMEM;
		goto fail;
	}
	for (uint32_t il = 0; il < hp->n_layer; il++)
		if ((rc = load_layer(f, il, err, errlen)))
			goto fail;

	if ((rc = eng_pool_open(&f->pool, p.n_threads))) {
		eng__err(err, errlen, rc, "cannot start threads");
		goto fail;
	}
	B = f->n_batch;
	f->x = malloc(B * hp->n_embd * sizeof(float));
	f->xb = malloc(B * hp->n_embd * sizeof(float));
	f->xb2 = malloc(B * hp->n_embd * sizeof(float));
	f->q = malloc(B * hp->n_head * hp->head_dim_k * sizeof(float));
	f->k = malloc(B * hp->n_head_kv * hp->head_dim_k * sizeof(float));
	f->v = malloc(B * hp->n_head_kv * hp->head_dim_v * sizeof(float));
	f->att = malloc(B * hp->n_head * hp->head_dim_v * sizeof(float));
	f->hb = malloc(B * hp->n_ff * sizeof(float));
	f->hb2 = malloc(B * hp->n_ff * sizeof(float));
	f->rope = malloc(2 * B * (hp->n_rot ? hp->n_rot : 2) * sizeof(float));
	f->ts = calloc((size_t)eng_pool_threads(f->pool), sizeof *f->ts);
	f->plans = calloc((size_t)hp->n_layer * hp->n_head_kv,
	    sizeof *f->plans);
	if (!f->plans || !f->x || !f->xb || !f->xb2 || !f->q || !f->k || !f->v ||
	    !f->att || !f->hb || !f->hb2 || !f->rope || !f->ts) {
		rc = ENG_ENOMEM;
		goto fail;
	}
	f->rmsnorm = rmsnorm;
	f->geglu = geglu;
#if FWD_X86
	if (eng_simd_active() >= ENG_SIMD_AVX2) {
		f->rmsnorm = rmsnorm_avx2;
		f->geglu = geglu_avx2;
	}
#endif
	eng__attn_setup(f);
	*out = f;
	return 0;
fail:
	eng_fwd_close(f);
	return rc;
}

void eng_fwd_close(eng_fwd *f)
{
	if (!f)
		return;
	if (f->layers)
		for (uint32_t il = 0; il < f->hp.n_layer; il++) {
			struct fwd_layer *L = &f->layers[il];
			free(L->attn_norm);
			free(L->bq);
			free(L->bk);
			free(L->bv);
			free(L->q_norm);
			free(L->k_norm);
			free(L->post_attn_norm);
			free(L->ffn_norm);
			free(L->post_ffn_norm);
		}
	free(f->layers);
	free(f->output_norm);
	free(f->rope_freqs);
	eng_pool_close(f->pool);
	free(f->x);
	free(f->xb);
	free(f->xb2);
	free(f->q);
	free(f->k);
	free(f->v);
	free(f->att);
	free(f->hb);
	free(f->hb2);
	free(f->rope);
	free(f->logits);
	free(f->ts);
	free(f->ts_mem);
	free(f->fa_part);
	if (f->plans)
		for (size_t g = 0; g < (size_t)f->hp.n_layer *
		    f->hp.n_head_kv; g++)
			eng__plan_free(&f->plans[g]);
	free(f->plans);
	free(f->rot);
	free(f->rec_w);
	free(f);
}

uint32_t eng_fwd_n_batch(const eng_fwd *f)
{
	return f ? f->n_batch : 0;
}

uint32_t eng_fwd_n_vocab(const eng_fwd *f)
{
	return f ? f->hp.n_vocab : 0;
}

uint32_t eng__fwd_last_step(const eng_fwd *f, const eng_kv *kv, uint32_t n)
{
	if (n <= ENG_SPARSE_FEW || !f->sparse.top_k || !kv->block_tokens ||
	    !kv->ops->summary ||
	    (uint64_t)kv->n_pos + n <= f->sparse.dense_max)
		return n;
	return ENG_SPARSE_FEW;
}

void eng_fwd_set_sparse(eng_fwd *f, const eng_sparse_params *sp)
{
	uint64_t lim, trained;

	if (!f || !sp)
		return;
	f->sparse = *sp;
	/* Every distance inside the trained context: reach 0 is as far as
	 * that allows, and no reach but UINT32_MAX goes farther (1 where it
	 * leaves nothing: sparse.c then packs as tight as it can). */
	lim = (uint64_t)(sp->prefill_local > sp->local ? sp->prefill_local :
	    sp->local) + f->n_batch;
	trained = f->hp.n_ctx_train > lim ? f->hp.n_ctx_train - lim : 1;
	if (!sp->reach || (sp->reach != UINT32_MAX && sp->reach > trained))
		f->sparse.reach = (uint32_t)trained;
}

void eng_fwd_record(eng_fwd *f, int on)
{
	if (f)
		f->rec_on = !!on;
}

void eng_fwd_record_skip(eng_fwd *f, uint32_t n)
{
	if (f)
		f->rec_skip = n;
}

/* The heaviest blocks of the record, heaviest first (ties: earlier block
 * first); selection by repeated scans, cap is small. */
eng_rank eng_fwd_ranked(const eng_fwd *f)
{
	return f && f->rec_on ? f->rec_rank : ENG_RANK_NONE;
}

const char *eng_rank_name(eng_rank r)
{
	switch (r) {
	case ENG_RANK_KEYS: return "keys";
	case ENG_RANK_CODES: return "codes";
	case ENG_RANK_SUMMARIES: return "summaries";
	default: return "dense";
	}
}

int eng_fwd_attended(const eng_fwd *f, eng_attn_block *out, uint32_t cap,
    uint32_t *n_out, uint64_t *n_keys)
{
	uint32_t nblk, prev_b = UINT32_MAX;
	float prev_w = INFINITY, norm;

	if (!f || !n_out || (cap && !out))
		return ENG_EINVAL;
	*n_out = 0;
	if (n_keys)
		*n_keys = 0;
	if (!f->rec_count || !f->rec_w)
		return 0;
	nblk = (f->rec_end + f->rec_B - 1) / f->rec_B;
	if (nblk > f->rec_cap)
		nblk = (uint32_t)f->rec_cap;
	norm = 1.0f / ((float)f->rec_count * (float)f->rec_group);
	while (*n_out < cap) {
		uint32_t best = UINT32_MAX;
		for (uint32_t b = 0; b < nblk; b++) {
			float w = f->rec_w[b];
			/* Strictly after (prev_w, prev_b) in the order. */
			if (w <= 0.0f || w > prev_w ||
			    (w == prev_w && b <= prev_b))
				continue;
			if (best == UINT32_MAX || w > f->rec_w[best])
				best = b;
		}
		if (best == UINT32_MAX)
			break;
		out[*n_out].pos0 = best * f->rec_B;
		out[*n_out].n = f->rec_end - best * f->rec_B < f->rec_B ?
		    f->rec_end - best * f->rec_B : f->rec_B;
		out[*n_out].weight = f->rec_w[best] * norm;
		(*n_out)++;
		prev_w = f->rec_w[best];
		prev_b = best;
	}
	if (n_keys)
		*n_keys = (uint64_t)(f->rec_keys / f->rec_count + 0.5);
	return 0;
}

/* fixture_model.c - tiny random GGUF models in memory (fixture_model.h). */
#include "config.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture_model.h"
#include "gguf_writer.h"
#include "kernels.h"

#define LEN(a) (sizeof(a) / sizeof((a)[0]))


uint64_t fx_rng;

uint32_t fx_rnd(void)
{
	fx_rng ^= fx_rng << 13;
	fx_rng ^= fx_rng >> 7;
	fx_rng ^= fx_rng << 17;
	return (uint32_t)(fx_rng >> 16);
}

float fx_frand(float lo, float hi)
{
	return lo + (hi - lo) * (float)(fx_rnd() & 0xffffff) / 16777216.0f;
}

/* Random blocks of type t for n elements, scales chosen so that values are
 * about 0.05 in size. */
static void *rand_tensor(eng_type t, uint64_t n, float scale)
{
	size_t bs = eng_type_size(t), be = eng_type_block_size(t);
	size_t nb = n / be;
	uint8_t *p = malloc(nb * bs);
	ck_assert_ptr_nonnull(p);
	for (size_t i = 0; i < nb * bs; i++)
		p[i] = (uint8_t)fx_rnd();
	for (size_t b = 0; b < nb; b++) {
		uint8_t *blk = p + b * bs;
		eng_f16 d;
		switch (t) {
		case ENG_TYPE_F32:
			for (size_t i = 0; i < be; i++) {
				float v = fx_frand(-scale, scale);
				memcpy(blk + 4 * i, &v, 4);
			}
			break;
		case ENG_TYPE_F16:
			d = eng_f32_to_f16(fx_frand(-scale, scale));
			memcpy(blk, &d, 2);
			break;
		case ENG_TYPE_Q4_0:
		case ENG_TYPE_Q5_0:
		case ENG_TYPE_Q8_0:
			d = eng_f32_to_f16(scale * fx_frand(0.5f, 1.5f) /
			    (t == ENG_TYPE_Q4_0 ? 5 : t == ENG_TYPE_Q5_0 ? 10 :
			    75));
			memcpy(blk, &d, 2);
			break;
		case ENG_TYPE_Q4_K: {
			eng_block_q4_K *k = (eng_block_q4_K *)blk;
			k->d = eng_f32_to_f16(scale / 250 * fx_frand(0.5f, 1.5f));
			k->dmin = eng_f32_to_f16(scale / 60 * fx_frand(0.5f, 1.5f));
			break;
		}
		case ENG_TYPE_Q6_K: {
			eng_block_q6_K *k = (eng_block_q6_K *)blk;
			k->d = eng_f32_to_f16(scale / 1500 * fx_frand(0.5f, 1.5f));
			break;
		}
		default:
			ck_abort_msg("type not in fixture");
		}
	}
	if (t == ENG_TYPE_F16)
		for (size_t i = 0; i < n; i++) {
			eng_f16 v = eng_f32_to_f16(fx_frand(-scale, scale));
			memcpy(p + 2 * i, &v, 2);
		}
	return p;
}

static int all_f16;

static void add_mat(gw *w, void ***keep, size_t *nk, const char *name,
    eng_type t, uint64_t cols, uint64_t rows)
{
	if (all_f16)
		t = ENG_TYPE_F16;
	uint64_t ne[2] = { cols, rows };
	void *d = rand_tensor(t, cols * rows, 0.9f / sqrtf((float)cols) * 2);
	gw_tensor(w, name, t, 2, ne, d);
	(*keep)[(*nk)++] = d;
}

static void add_vec(gw *w, void ***keep, size_t *nk, const char *name,
    uint64_t n, float lo, float hi)
{
	uint64_t ne[1] = { n };
	float *d = malloc(n * sizeof *d);
	ck_assert_ptr_nonnull(d);
	for (uint64_t i = 0; i < n; i++)
		d[i] = fx_frand(lo, hi);
	gw_tensor(w, name, ENG_TYPE_F32, 1, ne, d);
	(*keep)[(*nk)++] = d;
}

/* Tokens: 0 <unk>, 1 <s>, 2 </s>, 3..258 bytes, then pieces. */
uint8_t *fx_build_gguf(const struct fx_cfg *c, size_t *size, int drop)
{
	static const char *const extra[] = {
		"a", "b", "c", "\xe2\x96\x81" "a", "ab", "<start_of_turn>",
		"<end_of_turn>", "<|start_header_id|>", "<|end_header_id|>",
		"<|eot_id|>", "<|im_start|>", "<|im_end|>", "hello", "world",
	};
	const char *tok[FX_N_VOCAB];
	char names[FX_N_VOCAB][16];
	float score[FX_N_VOCAB];
	int32_t type[FX_N_VOCAB];
	void **keep = calloc(512, sizeof *keep);
	size_t nk = 0;
	gw *w = gw_new(3);
	char key[128];
	all_f16 = c->f16;
	uint8_t *p;
	int gemma = !strcmp(c->arch, "gemma3");
	/* Every layer type, and the quantized formats of the real model. */
	static const eng_type qt[] = { ENG_TYPE_Q5_0, ENG_TYPE_Q8_0,
	    ENG_TYPE_Q4_0, ENG_TYPE_Q4_K, ENG_TYPE_Q6_K, ENG_TYPE_F16 };

	for (int i = 0; i < FX_N_VOCAB; i++) {
		snprintf(names[i], sizeof names[i], "<x%d>", i);
		tok[i] = names[i];
		type[i] = 1;
		score[i] = -(float)i;
	}
	tok[0] = "<unk>"; type[0] = 2;
	tok[1] = "<s>"; type[1] = 3;
	tok[2] = "</s>"; type[2] = 3;
	for (int i = 0; i < 256; i++) {
		snprintf(names[3 + i], sizeof names[i], "<0x%02X>", i);
		type[3 + i] = 6;
	}
	for (size_t i = 0; i < LEN(extra); i++) {
		tok[259 + i] = extra[i];
		type[259 + i] = extra[i][0] == '<' ? 3 : 1;
	}

	gw_kv_str(w, "general.architecture", c->arch);
	gw_kv_str(w, "general.name", "tiny forward fixture");
#define K(s) (snprintf(key, sizeof key, "%s." s, c->arch), key)
	gw_kv_u32(w, K("context_length"), 4096);
	gw_kv_u32(w, K("embedding_length"), c->n_embd);
	gw_kv_u32(w, K("block_count"), c->n_layer);
	gw_kv_u32(w, K("feed_forward_length"), c->n_ff);
	gw_kv_u32(w, K("attention.head_count"), c->n_head);
	gw_kv_u32(w, K("attention.head_count_kv"), c->n_kv);
	gw_kv_u32(w, K("attention.key_length"), c->hd);
	gw_kv_u32(w, K("attention.value_length"), c->hd);
	gw_kv_f32(w, K("attention.layer_norm_rms_epsilon"), 1e-6f);
	gw_kv_f32(w, K("rope.freq_base"), c->rope_base);
	if (gemma)
		gw_kv_u32(w, K("attention.sliding_window"), c->window);
#undef K
	gw_kv_str(w, "tokenizer.ggml.model", "llama");
	gw_kv_arr_str(w, "tokenizer.ggml.tokens", tok, NULL, FX_N_VOCAB);
	gw_kv_arr(w, "tokenizer.ggml.scores", ENG_GGUF_FLOAT32, FX_N_VOCAB, score);
	gw_kv_arr(w, "tokenizer.ggml.token_type", ENG_GGUF_INT32, FX_N_VOCAB,
	    type);
	gw_kv_u32(w, "tokenizer.ggml.bos_token_id", 1);
	gw_kv_u32(w, "tokenizer.ggml.eos_token_id", 2);

	add_mat(w, &keep, &nk, "token_embd.weight", c->f16 ? ENG_TYPE_F16 :
	    ENG_TYPE_Q8_0, c->n_embd, FX_N_VOCAB);
	add_vec(w, &keep, &nk, "output_norm.weight", c->n_embd, 0.5f, 1.5f);
	if (!c->tied)
		add_mat(w, &keep, &nk, "output.weight", ENG_TYPE_F16,
		    c->n_embd, FX_N_VOCAB);
	for (uint32_t il = 0; il < c->n_layer; il++) {
		uint32_t qd = c->n_head * c->hd, kd = c->n_kv * c->hd;
		char nm[64];
		eng_type t = qt[il % LEN(qt)];
		/* K formats need 256-element rows. */
		eng_type tk = c->n_embd % 256 ? ENG_TYPE_Q8_0 : t;
#define N(s) (snprintf(nm, sizeof nm, "blk.%u." s, il), nm)
		add_vec(w, &keep, &nk, N("attn_norm.weight"), c->n_embd, 0.5f,
		    1.5f);
		if (!(drop && il == 1))
			add_mat(w, &keep, &nk, N("attn_q.weight"), tk,
			    c->n_embd, qd);
		add_mat(w, &keep, &nk, N("attn_k.weight"), ENG_TYPE_Q5_0,
		    c->n_embd, kd);
		add_mat(w, &keep, &nk, N("attn_v.weight"), ENG_TYPE_Q8_0,
		    c->n_embd, kd);
		add_mat(w, &keep, &nk, N("attn_output.weight"),
		    qd % 256 ? ENG_TYPE_Q4_0 : ENG_TYPE_Q4_K, qd, c->n_embd);
		if (c->biases) {
			add_vec(w, &keep, &nk, N("attn_q.bias"), qd, -0.5f, 0.5f);
			add_vec(w, &keep, &nk, N("attn_k.bias"), kd, -0.5f, 0.5f);
			add_vec(w, &keep, &nk, N("attn_v.bias"), kd, -0.5f, 0.5f);
		}
		add_vec(w, &keep, &nk, N("ffn_norm.weight"), c->n_embd, 0.5f,
		    1.5f);
		add_mat(w, &keep, &nk, N("ffn_gate.weight"), tk, c->n_embd,
		    c->n_ff);
		add_mat(w, &keep, &nk, N("ffn_up.weight"), ENG_TYPE_Q5_0,
		    c->n_embd, c->n_ff);
		add_mat(w, &keep, &nk, N("ffn_down.weight"),
		    c->n_ff % 256 ? ENG_TYPE_Q8_0 : ENG_TYPE_Q6_K, c->n_ff,
		    c->n_embd);
		if (gemma) {
			add_vec(w, &keep, &nk, N("attn_q_norm.weight"), c->hd,
			    0.5f, 1.5f);
			add_vec(w, &keep, &nk, N("attn_k_norm.weight"), c->hd,
			    0.5f, 1.5f);
			add_vec(w, &keep, &nk, N("post_attention_norm.weight"),
			    c->n_embd, 0.5f, 1.5f);
			add_vec(w, &keep, &nk, N("post_ffw_norm.weight"),
			    c->n_embd, 0.5f, 1.5f);
		}
#undef N
	}
	p = gw_finish(w, size);
	gw_free(w);
	for (size_t i = 0; i < nk; i++)
		free(keep[i]);
	free(keep);
	return p;
}

void fx_open(struct fx_model *fx, const struct fx_cfg *c)
{
	eng_gguf *g;
	size_t size;
	char err[256];
	int rc;

	fx_rng = 0x9e3779b97f4a7c15ull;
	fx->bytes = fx_build_gguf(c, &size, 0);
	rc = eng_gguf_open_mem(fx->bytes, size, &g, err, sizeof err);
	ck_assert_msg(rc == 0, "gguf: %s", err);
	rc = eng_model_open_gguf(g, &fx->model, err, sizeof err);
	ck_assert_msg(rc == 0, "model: %s", err);
}

void fx_close(struct fx_model *fx)
{
	eng_model_close(fx->model);
	free(fx->bytes);
}

const struct fx_cfg fx_gemma = {
	.arch = "gemma3", .n_embd = 256, .n_head = 4, .n_kv = 1, .hd = 64,
	.n_ff = 512, .n_layer = 7, .window = 8, .tied = 1, .rope_base = 1e6f,
};
const struct fx_cfg fx_llama = {
	.arch = "llama", .n_embd = 128, .n_head = 4, .n_kv = 2, .hd = 32,
	.n_ff = 256, .n_layer = 2, .biases = 1, .rope_base = 1e4f,
};
const struct fx_cfg fx_gemma_f16 = {
	.arch = "gemma3", .n_embd = 256, .n_head = 4, .n_kv = 1, .hd = 64,
	.n_ff = 512, .n_layer = 7, .window = 8, .tied = 1, .rope_base = 1e6f,
	.f16 = 1,
};
const struct fx_cfg fx_llama_f16 = {
	.arch = "llama", .n_embd = 128, .n_head = 4, .n_kv = 2, .hd = 32,
	.n_ff = 256, .n_layer = 2, .biases = 1, .rope_base = 1e4f, .f16 = 1,
};
const struct fx_cfg fx_qwen = {
	.arch = "qwen2", .n_embd = 256, .n_head = 8, .n_kv = 2, .hd = 32,
	.n_ff = 512, .n_layer = 3, .biases = 1, .tied = 1, .rope_base = 1e6f,
};

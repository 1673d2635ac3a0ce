/* fuzz_gguf.c - libFuzzer target for the GGUF reader and what reads it
 * (tokenizer loading, tokenize/detokenize, model description).
 *
 * Build by hand (from the repository root, after configure in BUILD, which
 * holds config.h):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined \
 *     -fno-sanitize-recover=undefined -std=gnu11 -IBUILD -Iengine \
 *     tests/fuzz/fuzz_gguf.c engine/gguf.c engine/model.c \
 *     engine/tokenizer.c engine/unicode_data.c engine/errors.c \
 *     -o fuzz_gguf
 *   ./fuzz_gguf -max_total_time=60 -max_len=65536 \
 *     -rss_limit_mb=2048 tests/fuzz/corpus/gguf
 *
 * (Give a scratch directory first to keep new inputs out of the tree:
 *  ./fuzz_gguf NEWDIR tests/fuzz/corpus/gguf.)
 *
 * The seed corpus in tests/fuzz/corpus/gguf is written by the same file
 * built with -DFUZZ_GGUF_WRITE_SEEDS and the fixture writer:
 *
 *   cc -std=gnu11 -DFUZZ_GGUF_WRITE_SEEDS -IBUILD -Iengine -Itests \
 *     tests/fuzz/fuzz_gguf.c tests/gguf_writer.c engine/gguf.c \
 *     engine/errors.c -o write_seeds && ./write_seeds tests/fuzz/corpus/gguf
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

#ifndef FUZZ_GGUF_WRITE_SEEDS

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Touch every metadata value and tensor through the public getters. */
static void walk(const eng_gguf *g)
{
	size_t i, len;
	uint32_t u;
	int64_t i64;
	float f;
	int b, et;
	uint64_t cnt, k;
	const char *s;
	const void *d;
	volatile uint8_t sink = 0;

	for (i = 0; i < eng_gguf_kv_count(g); i++) {
		const char *key = eng_gguf_kv_key(g, i);
		eng_gguf_get_u32(g, key, &u);
		eng_gguf_get_i64(g, key, &i64);
		eng_gguf_get_f32(g, key, &f);
		eng_gguf_get_bool(g, key, &b);
		if (eng_gguf_get_str(g, key, &s, &len) == 0 && len)
			sink ^= (uint8_t)s[len - 1];
		if (eng_gguf_get_arr(g, key, &et, &cnt, &d) == 0)
			for (k = 0; k < cnt && k < 64; k++)
				if (eng_gguf_arr_str(g, key, k, &s, &len) == 0 &&
				    len)
					sink ^= (uint8_t)s[len - 1];
	}
	for (i = 0; i < eng_gguf_tensor_count(g); i++) {
		const eng_gguf_tensor *t = eng_gguf_tensor_at(g, i);
		if (t->n_bytes)
			sink ^= ((const uint8_t *)t->data)[t->n_bytes - 1];
		if (eng_gguf_tensor_find(g, t->name) != t)
			abort();
	}
	(void)sink;
}

/* Tokenize a few strings and detokenize every id that comes out. */
static void use_vocab(const eng_vocab *v)
{
	static const char *const texts[] = {
		"Hello world, it's 12345!", " \n\n<start_of_turn>user\t\xc3\xa9",
		"\xff\xfe<s></s><|endoftext|>", "",
	};
	size_t i, n, k, len;
	int32_t *ids;
	eng_detok *d;
	const char *t;

	for (i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		if (eng_tokenize(v, texts[i], strlen(texts[i]),
		    ENG_TOK_ADD_SPECIAL | (i & 1 ? ENG_TOK_PARSE_SPECIAL : 0),
		    &ids, &n) != 0)
			continue;
		if (eng_detok_open(v, (int)(i & 1), &d) == 0) {
			for (k = 0; k < n; k++)
				eng_detok_push(d, ids[k], &t, &len);
			eng_detok_flush(d, &t, &len);
			eng_detok_close(d);
		}
		free(ids);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	eng_gguf *g;
	eng_vocab *v;
	eng_model *m;
	char err[256];

	if (eng_gguf_open_mem(data, size, &g, err, sizeof err) != 0)
		return 0;
	walk(g);
	if (eng_vocab_open(g, &v, err, sizeof err) == 0) {
		/* Fuzzed vocabularies can be large; keep runs quick. */
		if (eng_vocab_size(v) < 5000)
			use_vocab(v);
		eng_vocab_close(v);
	}
	/* The model takes ownership of g. */
	if (eng_model_open_gguf(g, &m, err, sizeof err) == 0)
		eng_model_close(m);
	return 0;
}

#else /* FUZZ_GGUF_WRITE_SEEDS */

#include "gguf_writer.h"

static void save(const char *dir, const char *name, gw *w)
{
	char path[512];
	size_t n;
	uint8_t *p = gw_finish(w, &n);

	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (gw_write_file(path, p, n) != 0) {
		perror(path);
		exit(1);
	}
	free(p);
	gw_free(w);
}

/* Tiny models of both tokenizer kinds, plus plain metadata files. */
int main(int argc, char **argv)
{
	static const char *const spm_tok[] = {
		"<unk>", "<s>", "</s>", "<0x00>", "<0x41>", "<0xC3>", "<0xA9>",
		"\xe2\x96\x81", "a", "b", "\xe2\x96\x81" "a", "ab",
		"<start_of_turn>", "<u>", "",
	};
	static const float spm_score[15] = {
		0, 0, 0, 0, 0, 0, 0, -1, -2, -3, -1.5f, -0.5f, 0, 0, 0,
	};
	static const int32_t spm_type[15] = {
		2, 3, 3, 6, 6, 6, 6, 1, 1, 1, 1, 1, 3, 4, 1,
	};
	static const char *const bpe_tok[] = {
		"h", "e", "l", "o", "\xc4\xa0", "w", "he", "ll", "hello",
		"<|endoftext|>", "1", "2", "12", "'", "s",
	};
	static const char *const merges[] = { "h e", "l l", "1 2", "\xc4\xa0 w" };
	static const int32_t bpe_type[15] = {
		1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 1, 1, 1, 1, 1,
	};
	uint64_t ne[2] = { 32, 15 };
	const char *dir = argc > 1 ? argv[1] : ".";
	gw *w;

	w = gw_new(3);
	gw_kv_str(w, "general.architecture", "gemma3");
	gw_kv_str(w, "general.name", "seed spm");
	gw_kv_u32(w, "gemma3.context_length", 512);
	gw_kv_u32(w, "gemma3.embedding_length", 32);
	gw_kv_u32(w, "gemma3.block_count", 1);
	gw_kv_u32(w, "gemma3.feed_forward_length", 64);
	gw_kv_u32(w, "gemma3.attention.head_count", 2);
	gw_kv_f32(w, "gemma3.attention.layer_norm_rms_epsilon", 1e-6f);
	gw_kv_u32(w, "gemma3.attention.sliding_window", 16);
	gw_kv_str(w, "tokenizer.ggml.model", "llama");
	gw_kv_arr_str(w, "tokenizer.ggml.tokens", spm_tok, NULL, 15);
	gw_kv_arr(w, "tokenizer.ggml.scores", ENG_GGUF_FLOAT32, 15, spm_score);
	gw_kv_arr(w, "tokenizer.ggml.token_type", ENG_GGUF_INT32, 15,
	    spm_type);
	gw_kv_u32(w, "tokenizer.ggml.bos_token_id", 1);
	gw_kv_bool(w, "tokenizer.ggml.add_space_prefix", 0);
	gw_tensor(w, "token_embd.weight", ENG_TYPE_Q8_0, 2, ne, NULL);
	save(dir, "spm.gguf", w);

	w = gw_new(2);
	gw_kv_str(w, "general.architecture", "qwen2");
	gw_kv_u32(w, "qwen2.context_length", 512);
	gw_kv_u32(w, "qwen2.embedding_length", 32);
	gw_kv_u32(w, "qwen2.block_count", 1);
	gw_kv_u32(w, "qwen2.feed_forward_length", 64);
	gw_kv_u32(w, "qwen2.attention.head_count", 2);
	gw_kv_f32(w, "qwen2.attention.layer_norm_rms_epsilon", 1e-6f);
	gw_kv_str(w, "tokenizer.ggml.model", "gpt2");
	gw_kv_str(w, "tokenizer.ggml.pre", "llama-bpe");
	gw_kv_arr_str(w, "tokenizer.ggml.tokens", bpe_tok, NULL, 15);
	gw_kv_arr(w, "tokenizer.ggml.token_type", ENG_GGUF_INT32, 15,
	    bpe_type);
	gw_kv_arr_str(w, "tokenizer.ggml.merges", merges, NULL, 4);
	gw_tensor(w, "token_embd.weight", ENG_TYPE_F16, 2, ne, NULL);
	save(dir, "bpe.gguf", w);

	w = gw_new(3);
	gw_kv_u32(w, "general.alignment", 64);
	gw_set_alignment(w, 64);
	gw_kv_f64(w, "x.f64", 1.0);
	gw_kv_i16(w, "x.i16", -2);
	gw_kv_str(w, "tokenizer.ggml.model", "gpt2");
	gw_kv_str(w, "tokenizer.ggml.pre", "qwen2");
	gw_kv_arr_str(w, "tokenizer.ggml.tokens", bpe_tok, NULL, 15);
	gw_kv_arr_str(w, "tokenizer.ggml.merges", merges, NULL, 4);
	ne[1] = 1;
	gw_tensor(w, "a", ENG_TYPE_Q4_K, 1, (uint64_t[]){ 256 }, NULL);
	gw_tensor(w, "b", ENG_TYPE_Q6_K, 1, (uint64_t[]){ 256 }, NULL);
	gw_tensor(w, "c", ENG_TYPE_BF16, 2, ne, NULL);
	save(dir, "tensors.gguf", w);
	return 0;
}

#endif /* FUZZ_GGUF_WRITE_SEEDS */

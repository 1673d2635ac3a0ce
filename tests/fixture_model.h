/* fixture_model.h - tiny random models written as GGUF in memory, for the
 * tests of the engine and of what runs on it: gemma3 with local and global
 * layers, llama with GQA and biases (no sliding window), qwen2.  Weights
 * are random in every format the real model uses; the vocabulary is
 * <unk> <s> </s>, the 256 bytes, a few pieces and the chat markers.
 *
 * Ownership: fx_open's model and bytes belong to the caller until
 * fx_close; fx_build_gguf's buffer is the caller's to free. */
#ifndef ENGRAM_TESTS_FIXTURE_MODEL_H
#define ENGRAM_TESTS_FIXTURE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"

#define FX_N_VOCAB 300

struct fx_cfg {
	const char *arch;	/* "gemma3", "llama", "qwen2" */
	uint32_t n_embd, n_head, n_kv, hd, n_ff, n_layer, window;
	int biases, tied;
	float rope_base;
	int f16;	/* every matrix F16: no activation rounding at all */
};

struct fx_model {
	uint8_t *bytes;
	eng_model *model;
};

/* The generator behind every random value here (xorshift): tests set
 * fx_rng to repeat a sequence. */
extern uint64_t fx_rng;
uint32_t fx_rnd(void);
float fx_frand(float lo, float hi);

/* The GGUF file of model c, in memory (*size bytes); drop != 0 leaves out
 * layer 1's attn_q (a broken model). */
uint8_t *fx_build_gguf(const struct fx_cfg *c, size_t *size, int drop);

/* Builds model c with fx_rng reset (the same weights every time) and
 * opens it; check asserts on failure. */
void fx_open(struct fx_model *fx, const struct fx_cfg *c);
void fx_close(struct fx_model *fx);

extern const struct fx_cfg fx_gemma, fx_llama, fx_gemma_f16, fx_llama_f16,
    fx_qwen;

#endif

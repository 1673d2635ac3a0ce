/* forward.h - the engine's transformer API (prefix eng_): KV caches, the
 * forward pass, sampling, chat templates and generation.
 *
 * Internal for now; the public parts will move into engine.h.  Conventions
 * are engine.h's: int return codes (0 or a negative ENG_E*), _open/_close
 * pairs, borrowed pointers say how long they live.
 */
#ifndef ENGRAM_ENGINE_FORWARD_H
#define ENGRAM_ENGINE_FORWARD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * KV cache interface
 *
 * The forward pass reads and writes keys and values only through these
 * operations, so that a store can keep them anywhere (memory, LMDB blocks)
 * and keep any subset of them (sliding windows, sparse attention).
 *
 * A cache holds one sequence: positions 0 .. n_pos-1.  A forward step over
 * positions [p0, p0+n) with p0 == n_pos first calls write() for every layer,
 * then view() any number of times, then commit(p0+n).  Keys of a position
 * are n_head_kv rows of head_dim_k elements, values n_head_kv rows of
 * head_dim_v; they are written as f32 and stored as the cache's type
 * (F16 rounds to nearest even, as llama.cpp's default F16 cache does).
 *
 * Which positions a layer keeps is the store's choice: view() of a position
 * it does not hold gives ENG_ERANGE.  A layer with a sliding window of W
 * must keep at least positions p-W+1 .. p for every p being computed.
 *
 * Threading: one forward step at a time per cache.  During a step, view()
 * may be called from several pool threads at once (it must not modify the
 * store); write() and commit() come from the caller's thread.
 * ------------------------------------------------------------------------ */

typedef struct eng_kv eng_kv;

/* Positions [pos0, pos0+n) of one layer and kv head, contiguous in memory:
 * position pos0+i has its key at (char *)k + i*k_stride and its value at
 * (char *)v + i*v_stride, elements of the cache's type.  Valid until the
 * next write(), commit() or close of the cache. */
typedef struct eng_kv_span {
	const void *k;
	const void *v;
	size_t k_stride;	/* bytes */
	size_t v_stride;	/* bytes */
	uint32_t n;		/* positions in this span, >= 1 */
} eng_kv_span;

typedef struct eng_kv_ops {
	/* Store n positions starting at pos0 of layer: k is n rows of
	 * n_head_kv*head_dim_k f32, v n rows of n_head_kv*head_dim_v f32
	 * (borrowed for the call). */
	int (*write)(eng_kv *kv, uint32_t layer, uint32_t pos0, uint32_t n,
	    const float *k, const float *v);
	/* The longest contiguous run of positions starting at pos0 (at most
	 * n of them) of layer and kv head kvh; ENG_ERANGE if pos0 is not
	 * held.  Callers loop until they have the range they need. */
	int (*view)(eng_kv *kv, uint32_t layer, uint32_t kvh, uint32_t pos0,
	    uint32_t n, eng_kv_span *out);
	/* Sets the sequence length to n_pos: after a step (n_pos grows), or
	 * to drop positions n_pos.. (ENG_ERANGE if the store can no longer
	 * serve a sequence of that length, e.g. a ring that was overwritten).
	 * Positions at or beyond n_pos are forgotten. */
	int (*commit)(eng_kv *kv, uint32_t n_pos);
	/* Frees the store and kv itself. */
	void (*close)(eng_kv *kv);
} eng_kv_ops;

/* The common head of every store; an implementation embeds it first. */
struct eng_kv {
	const eng_kv_ops *ops;
	eng_type type;		/* ENG_TYPE_F16 or ENG_TYPE_F32 */
	uint32_t n_layer;
	uint32_t n_head_kv;
	uint32_t head_dim_k;
	uint32_t head_dim_v;
	uint32_t n_ctx;		/* most positions the store accepts */
	uint32_t n_pos;		/* committed length of the sequence */
};

/* An in-memory cache for model m: up to n_ctx positions, type F16 or F32.
 * Global layers grow their buffers as positions arrive; sliding-window
 * layers keep a ring of window + n_batch positions (a step of up to
 * n_batch tokens still sees each token's whole window).  n_batch must be
 * the eng_fwd's (or larger).  Free with eng_kv_close. */
int eng_kv_mem_open(const eng_model *m, uint32_t n_ctx, uint32_t n_batch,
    eng_type type, eng_kv **out);
/* Frees any store through its ops; NULL is a no-op. */
void eng_kv_close(eng_kv *kv);
/* Committed length. */
uint32_t eng_kv_length(const eng_kv *kv);
/* Forget positions n_pos..; see eng_kv_ops.commit. */
int eng_kv_truncate(eng_kv *kv, uint32_t n_pos);

/* ------------------------------------------------------------------------
 * Forward pass
 *
 * An eng_fwd holds a model's weights (borrowed from the model's map: the
 * model must outlive it), scratch buffers for up to n_batch tokens per step
 * and a thread pool.  One thread at a time may use an eng_fwd (the daemon's
 * worker); several eng_fwd over one model may run at once.
 * ------------------------------------------------------------------------ */

typedef struct eng_fwd eng_fwd;

/* How attention rounds.  ENG_ATTN_LLAMACPP reproduces llama.cpp's CPU
 * flash attention with an F16 cache: steps of fewer than 64 tokens round
 * queries to f16 and accumulate values in f16 (its one-chunk kernel),
 * longer steps work in f32 (its tiled kernel); greedy outputs then agree
 * with llama.cpp's far more often.  ENG_ATTN_F32 is f32 throughout, so a
 * prefill equals the same tokens decoded one by one up to float order. */
typedef enum eng_attn_mode {
	ENG_ATTN_LLAMACPP = 0,
	ENG_ATTN_F32 = 1,
} eng_attn_mode;

typedef struct eng_fwd_params {
	int n_threads;		/* pool size; <= 0: one per online CPU */
	uint32_t n_batch;	/* tokens per step (ubatch); default 512 */
	eng_attn_mode attn_mode;	/* default ENG_ATTN_LLAMACPP */
} eng_fwd_params;

/* Defaults: n_threads 0 (all CPUs), n_batch 512, ENG_ATTN_LLAMACPP. */
void eng_fwd_params_init(eng_fwd_params *p);

/* Checks that every tensor the architecture needs is present with the
 * right shape and a supported type.  ENG_EFORMAT / ENG_EUNSUP with a
 * message naming the tensor.  p may be NULL (defaults). */
int eng_fwd_open(const eng_model *m, const eng_fwd_params *p, eng_fwd **out,
    char *err, size_t errlen);
void eng_fwd_close(eng_fwd *f);
uint32_t eng_fwd_n_batch(const eng_fwd *f);
uint32_t eng_fwd_n_vocab(const eng_fwd *f);

/* Runs tokens[0..n) at positions kv->n_pos .. kv->n_pos+n-1, in steps of
 * at most n_batch tokens, storing their keys and values in kv and
 * committing them.  ids are checked against the vocabulary (ENG_EINVAL)
 * and n_pos+n against kv->n_ctx (ENG_ERANGE) before anything is computed.
 *
 * Logits: with all_logits 0, *logits (if logits is not NULL) is n_vocab
 * floats for the last token; with all_logits 1, n * n_vocab floats (token
 * i's row at i*n_vocab).  The array belongs to f and is valid until the
 * next call on f.  If cancel is not NULL and becomes nonzero, the call
 * stops between steps with ENG_ECANCELED; the steps already done stay
 * committed.  On another error the cache is rolled back to its length at
 * the start of the failed step. */
int eng_fwd_eval(eng_fwd *f, eng_kv *kv, const int32_t *tokens, uint32_t n,
    int all_logits, const float **logits, const atomic_int *cancel);

/* ------------------------------------------------------------------------
 * Sampling
 *
 * A sampler turns a logits row into a token id.  Order (as llama.cpp's
 * default chain): repetition penalty over the last repeat_last_n accepted
 * tokens, top-k, top-p, min-p, temperature, then a draw from the seeded
 * PRNG (xoshiro256**).  temperature <= 0 is greedy (argmax; ties go to the
 * lowest id).  The same seed and inputs give the same tokens.  One thread
 * at a time per sampler.
 * ------------------------------------------------------------------------ */

typedef struct eng_sampler eng_sampler;

typedef struct eng_sampler_params {
	float temperature;	/* default 0.8; <= 0 greedy */
	int32_t top_k;		/* default 40; <= 0 off */
	float top_p;		/* default 0.95; >= 1 off */
	float min_p;		/* default 0.05; <= 0 off */
	float repeat_penalty;	/* default 1.0 (off) */
	int32_t repeat_last_n;	/* default 64; 0 off, -1 all (last 65536) */
	uint64_t seed;		/* default 0 */
} eng_sampler_params;

void eng_sampler_params_init(eng_sampler_params *p);
/* ENG_EINVAL for values out of range (negative penalty, top_p < 0...). */
int eng_sampler_open(const eng_sampler_params *p, uint32_t n_vocab,
    eng_sampler **out);
void eng_sampler_close(eng_sampler *s);
/* Picks a token from logits[0..n_vocab) (not modified). */
int eng_sampler_sample(eng_sampler *s, const float *logits, int32_t *id);
/* Adds id to the penalty history (generate calls this for prompt and
 * output tokens). */
void eng_sampler_accept(eng_sampler *s, int32_t id);
/* Clears the history and reseeds. */
void eng_sampler_reset(eng_sampler *s);

/* ------------------------------------------------------------------------
 * Chat templates
 *
 * Built in per family, chosen from the model's architecture and vocabulary:
 * gemma3: <start_of_turn>user\n...<end_of_turn>\n (a system message is
 * prepended to the first user turn, as Gemma's template does), "model" for
 * the assistant; llama with <|start_header_id|>: Llama 3 headers;
 * qwen2 (or any vocabulary with <|im_start|>): ChatML.  The text does not
 * hold BOS: tokenize it with ENG_TOK_ADD_SPECIAL | ENG_TOK_PARSE_SPECIAL.
 * ------------------------------------------------------------------------ */

typedef struct eng_chat_msg {
	const char *role;	/* "system", "user" or "assistant" */
	const char *content;	/* NUL-terminated */
} eng_chat_msg;

/* *out is malloc'ed, NUL-terminated, *len bytes; the caller free()s it.
 * With add_assistant, ends with the opening of the assistant's turn.
 * ENG_EUNSUP if the model has no known template. */
int eng_chat_apply(const eng_model *m, const eng_chat_msg *msgs, size_t n,
    int add_assistant, char **out, size_t *len);

/* ------------------------------------------------------------------------
 * Generation
 *
 * eng_generate() runs a prompt through the model and samples up to
 * max_tokens tokens, calling on_token for each with its id and the text
 * it released (possibly empty: text is held back while it may be the start
 * of a stop string or an incomplete UTF-8 character); text is valid only
 * during the call.  A last call with id -1 hands over text still held at
 * the end (not after a stop string or a callback stop).  EOS/EOT tokens are
 * not passed on.  Stops at the
 * vocabulary's EOS/EOT, at a stop string (its text is not passed on), at
 * max_tokens, when on_token returns nonzero, or when *cancel becomes
 * nonzero (ENG_ECANCELED; checked between forward steps).  Runs on the
 * caller's thread (the daemon's worker); f, kv and s are used by this call
 * only.  The prompt is appended to whatever kv already holds.
 * ------------------------------------------------------------------------ */

typedef int (*eng_token_cb)(void *ud, int32_t id, const char *text,
    size_t len);

#define ENG_GEN_MAX_STOP 8

typedef struct eng_gen_params {
	uint32_t max_tokens;	/* default 256 */
	const char *stop[ENG_GEN_MAX_STOP];	/* NULL-terminated list or NULLs */
	int special;		/* render control tokens as text; default 0 */
} eng_gen_params;

typedef enum eng_stop_reason {
	ENG_STOP_NONE = 0,
	ENG_STOP_EOS = 1,	/* end-of-sequence/turn token */
	ENG_STOP_STRING = 2,
	ENG_STOP_MAX_TOKENS = 3,
	ENG_STOP_CALLBACK = 4,
	ENG_STOP_CANCEL = 5,
	ENG_STOP_CONTEXT = 6,	/* the cache is full */
} eng_stop_reason;

typedef struct eng_gen_stats {
	uint32_t n_prompt;
	double prompt_ms;
	uint32_t n_gen;
	double gen_ms;
	double prompt_tps;	/* prompt tokens per second */
	double gen_tps;		/* generated tokens per second */
	eng_stop_reason stop;
} eng_gen_stats;

void eng_gen_params_init(eng_gen_params *p);
/* stats may be NULL. */
int eng_generate(eng_fwd *f, eng_kv *kv, eng_sampler *s,
    const eng_vocab *vocab, const int32_t *prompt, uint32_t n_prompt,
    const eng_gen_params *gp, eng_token_cb on_token, void *ud,
    const atomic_int *cancel, eng_gen_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* ENGRAM_ENGINE_FORWARD_H */

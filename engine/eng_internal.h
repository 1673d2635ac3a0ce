/* eng_internal.h - helpers shared by the engine's files; not part of the API.
 *
 * Everything here is prefixed eng__ and may change with the files using it.
 */
#ifndef ENGRAM_ENG_INTERNAL_H
#define ENGRAM_ENG_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* Bugs abort with file:line; runtime failures return codes. */
#define ENG_ASSERT(x) \
	do { if (!(x)) eng__assert_fail(#x, __FILE__, __LINE__); } while (0)
void eng__assert_fail(const char *expr, const char *file, int line)
    __attribute__((noreturn));

/* Write a message into err[0..errlen) (if err is not NULL) and return code. */
int eng__err(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The matrices eng_model_pack (pack.c) packed, which the model owns: n
 * entries v, each found by the tensor's data pointer; free releases it
 * all (set by pack.c, called by eng_model_close).  model.c touches no
 * kernel: the GGUF fuzz target builds without them. */
struct eng_qpack;
struct eng__packs {
	size_t n;
	struct { const void *data; struct eng_qpack *pack; } *v;
	void (*free)(struct eng__packs *p);
};
/* Where the model keeps its table (NULL until something is packed). */
struct eng__packs **eng__model_packs(eng_model *m);
/* The pack of the tensor whose data is at data, or NULL (model.c). */
const struct eng_qpack *eng__model_pack_of(const eng_model *m,
    const void *data);

/* 64-bit XXH3 of a byte string (for hash tables). */
uint64_t eng__hash64(const void *p, size_t n);

/* Unicode properties used by the BPE pre-tokenizers (engine/unicode_data.c,
 * generated from Python's unicodedata, Unicode 14).  Bits as llama.cpp's
 * unicode_cpt_flags: one general-category bit (UNDEFINED for unassigned
 * code points) plus WHITESPACE for the White_Space property. */
#define ENG__U_UNDEFINED   0x001
#define ENG__U_NUMBER      0x002
#define ENG__U_LETTER      0x004
#define ENG__U_SEPARATOR   0x008
#define ENG__U_MARK        0x010
#define ENG__U_PUNCT       0x020
#define ENG__U_SYMBOL      0x040
#define ENG__U_CONTROL     0x080
#define ENG__U_WHITESPACE  0x100
/* Flags of code point cp; ENG__U_UNDEFINED past U+10FFFF. */
unsigned eng__unicode_flags(uint32_t cp);

/* Sparse attention plan of one layer and kv head for one step
 * (engine/sparse.c).  n_ranges == 0 means dense: each query attends
 * lo..p.  Otherwise ranges are in position order, the last one open (it
 * runs to the query's own position); shift is how far the range is moved
 * towards the query (see eng_sparse_params). */
struct eng__range {
	uint32_t pos0, n;	/* n unused for the open (last) range */
	uint32_t shift;
};
struct eng__plan {
	struct eng__range *ranges;	/* owned, grown as needed */
	uint32_t n_ranges;
	size_t cap;
	float *scores;		/* owned scratch: one per candidate block */
	uint32_t *pick;		/* owned scratch: selected block indices */
	size_t scores_cap, pick_cap;
	uint32_t *list;		/* owned scratch: a question's shortlist */
	size_t list_cap;
	float *qbar;		/* owned scratch: (group, 2*head_dim)
				 * scoring rows, then (group, head_dim)
				 * mean queries (sparse.c, mean_query) */
	size_t qbar_cap;
	/* The blocks the last step of several queries picked (a question,
	 * a prefill chunk): single-token steps on the same cache attend
	 * them too, so the blocks a question found stay in view while it is
	 * answered, whatever each answer token's own query scores. */
	uint32_t *pins;		/* owned: absolute block indices */
	uint32_t n_pins;
	size_t pins_cap;
	const eng_kv *pin_kv;	/* the cache they index; not owned */
	uint32_t pin_end;	/* the position that step ended at */
	/* That step attended every candidate, having fewer than the
	 * pin_dense it would have picked: single-token steps attend every
	 * candidate too while they have fewer than that, rather than
	 * top_k of them (at 8K a question attends all 111 blocks, and its
	 * answer lost the needle to decode steps that saw 64). */
	uint32_t pin_dense;
	eng_rank ranked;	/* how this plan ranked its candidates */
};
/* The queries of a step on one kv head: token t, head h of the group at
 * q[t*row + h*hd], already rotated and scaled as the forward pass scales
 * them; scale is the factor their dot products with keys are then
 * multiplied by (1/sqrt(hd), or 1 for gemma3, whose queries are scaled
 * first). */
struct eng__query {
	const float *q;
	size_t row;
	uint32_t group, hd;
	uint32_t n_tok, pos0;
	float scale;
	const struct eng__rope *rope;	/* NULL: blocks scored in place */
};
/* How the keys and queries were rotated (RoPE on the first n_rot dims,
 * pairs (i, i+n_rot/2) if neox, else (2i, 2i+1)), for scoring a block
 * beyond the reach as it will be attended: moved up to the start of the
 * reach, i.e. with the query rotated back by that shift.  Scored where it
 * stands instead, its distance is beyond the trained context and its
 * score noise: past ~50K tokens such blocks crowd out the ones that
 * matter (bench/RESULTS.md, Sessions VIII). */
struct eng__rope {
	uint32_t n_rot;
	int neox;
	float base, freq_scale;
	const float *freq_factors;	/* NULL: none */
};
/* cos/sin pairs for n positions from pos0 (forward.c; see there). */
void eng__rope_table(float *tab, uint32_t pos0, uint32_t n, uint32_t n_rot,
    float base, float freq_scale, const float *freq_factors);
/* y = R(-s) x for n rows of hd (strides xs, ys), cs the one row of
 * eng__rope_table for s: the rows as a query s positions earlier sees
 * them (dims past n_rot are copied). */
void eng__rope_back(const float *cs, const float *x, size_t xs, float *y,
    size_t ys, uint32_t n, uint32_t hd, uint32_t n_rot, int neox);
struct eng_pool;
/* Plans a step of queries qs on a global layer and kv head.  pool (may be
 * NULL) splits the scoring of many candidates.  0, or ENG_ENOMEM or the
 * store's error. */
int eng__sparse_plan(struct eng__plan *pl, const eng_sparse_params *sp,
    eng_kv *kv, uint32_t layer, uint32_t kvh, const struct eng__query *qs,
    struct eng_pool *pool);
void eng__plan_free(struct eng__plan *pl);
/* How many of a prompt's n tokens its last step should hold on kv: n, or
 * ENG_SPARSE_FEW where the step will be sparse, so that a long prompt
 * ends in a question step (sparse.c ranks its blocks by its last query)
 * rather than in a prefill chunk. */
uint32_t eng__fwd_last_step(const eng_fwd *f, const eng_kv *kv, uint32_t n);

#endif /* ENGRAM_ENG_INTERNAL_H */

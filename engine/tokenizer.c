/* tokenizer.c - the tokenizers of GGUF models, giving the same ids as
 * llama.cpp (src/llama-vocab.cpp, src/unicode.cpp): SentencePiece-style
 * ("llama": Gemma 3, Llama 2) and byte-level BPE ("gpt2": Llama 3, Qwen 2.5),
 * detokenization, and a streaming detokenizer.
 *
 * DESIGN
 *  - Token texts are read in place from the GGUF map; a hash table maps text
 *    to id (when two tokens share a text, the later id wins, as in
 *    llama.cpp's token_to_id).
 *  - Tokenizing is three steps, as in llama.cpp: (1) split the text around
 *    special tokens, longest special text first, each one over all
 *    remaining raw fragments (CONTROL tokens only with PARSE_SPECIAL,
 *    USER_DEFINED always); (2) per raw fragment, SPM merges pairs by
 *    highest score, or BPE pre-splits into words by the pre-tokenizer's
 *    regex (written out by hand below) and merges by lowest merge rank;
 *    (3) pieces that are not tokens fall back to bytes.
 *  - Merging keeps symbols contiguous in one buffer: a symbol is (offset,
 *    length) and a candidate pair is still valid iff both sides are alive
 *    and their lengths still add up to the pair's, which is how llama.cpp
 *    decides too; ties break the same way (leftmost first).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eng_internal.h"

/* Input larger than this is refused: symbols store 32-bit offsets into
 * the escaped (SPM: <= 3x) or byte-encoded (BPE: <= 8x) text. */
#define MAX_INPUT ((size_t)1 << 28)
/* Vocabularies and merge lists larger than this are refused, so that a
 * hostile file cannot make us allocate gigabytes (real ones: <= 262,144). */
#define MAX_TOKENS ((uint64_t)1 << 24)

enum pre_type { PRE_DEFAULT, PRE_LLAMA3, PRE_QWEN2 };

struct token {
	const char *text;	/* into the map, or an owned "[EMPTY_n]" */
	uint32_t    len;
	int         attr;
	float       score;
};

/* A merge rule "first second" of rank = its index. */
struct merge {
	const char *a;
	const char *b;
	uint32_t    alen, blen;
};

struct eng_vocab {
	int           kind;	/* ENG_VOCAB_SPM / _BPE */
	enum pre_type pre;
	uint32_t      n;
	struct token *tok;
	char        **owned;	/* replacement texts of empty tokens */
	size_t        n_owned;
	uint64_t     *tab;	/* text -> (hash high 32 bits << 32) | id + 1 */
	size_t        tab_mask;
	struct merge *merges;
	uint32_t      n_merges;
	uint64_t     *mtab;	/* (a, b) -> (hash high 32 << 32) | rank + 1 */
	size_t        mtab_mask;
	int32_t      *special;	/* CONTROL/USER_DEFINED/UNKNOWN ids, longest first */
	uint32_t      n_special;
	int32_t       bos, eos, eot, unk;
	int           add_bos, add_eos, add_space_prefix, ignore_merges;
	int32_t       byte_tok[256];	/* SPM byte fallback / BPE byte tokens */
};

/* ------------------------------------------------------------------------
 * Text -> id and merge tables
 * ------------------------------------------------------------------------ */

static size_t tab_size(size_t n)
{
	size_t cap = 16;

	while (cap < 2 * n)
		cap <<= 1;
	return cap;
}

/* Both tables keep the upper half of each entry's hash beside its index,
 * so that a probe touches the entry's text only when the hashes agree:
 * most lookups (candidate pairs that are no token) end on an empty slot
 * without a cache miss into the token array. */
#define TAB_ID(e) ((uint32_t)(e))
#define TAB_TAG(h) ((h) >> 32)

int32_t eng_vocab_find(const eng_vocab *v, const char *s, size_t len)
{
	uint64_t h = eng__hash64(s, len), e;
	size_t i = (size_t)h & v->tab_mask;

	while ((e = v->tab[i]) != 0) {
		if (e >> 32 == TAB_TAG(h)) {
			const struct token *t = &v->tok[TAB_ID(e) - 1];
			if (t->len == len && memcmp(t->text, s, len) == 0)
				return (int32_t)(TAB_ID(e) - 1);
		}
		i = (i + 1) & v->tab_mask;
	}
	return -1;
}

static void tab_put(eng_vocab *v, uint32_t id)
{
	const struct token *t = &v->tok[id];
	uint64_t h = eng__hash64(t->text, t->len), e;
	size_t i = (size_t)h & v->tab_mask;

	while ((e = v->tab[i]) != 0) {
		const struct token *o = &v->tok[TAB_ID(e) - 1];
		if (e >> 32 == TAB_TAG(h) && o->len == t->len &&
		    memcmp(o->text, t->text, t->len) == 0)
			break;	/* same text: the later id wins */
		i = (i + 1) & v->tab_mask;
	}
	v->tab[i] = TAB_TAG(h) << 32 | (id + 1);
}

static uint64_t pair_hash(const char *a, size_t alen, const char *b,
    size_t blen)
{
	return eng__hash64(a, alen) * 0x9E3779B97F4A7C15ull ^
	    eng__hash64(b, blen);
}

/* Rank of merging a with b, or -1. */
static long merge_rank(const eng_vocab *v, const char *a, size_t alen,
    const char *b, size_t blen)
{
	uint64_t h, e;
	size_t i;

	if (!v->mtab)
		return -1;
	h = pair_hash(a, alen, b, blen);
	i = (size_t)h & v->mtab_mask;
	while ((e = v->mtab[i]) != 0) {
		const struct merge *m = &v->merges[TAB_ID(e) - 1];
		if (e >> 32 == TAB_TAG(h) && m->alen == alen &&
		    m->blen == blen && !memcmp(m->a, a, alen) &&
		    !memcmp(m->b, b, blen))
			return (long)(TAB_ID(e) - 1);
		i = (i + 1) & v->mtab_mask;
	}
	return -1;
}

static void mtab_put(eng_vocab *v, uint32_t r)
{
	const struct merge *m = &v->merges[r];
	uint64_t h = pair_hash(m->a, m->alen, m->b, m->blen), e;
	size_t i = (size_t)h & v->mtab_mask;

	while ((e = v->mtab[i]) != 0) {
		const struct merge *o = &v->merges[TAB_ID(e) - 1];
		if (e >> 32 == TAB_TAG(h) && o->alen == m->alen &&
		    o->blen == m->blen && !memcmp(o->a, m->a, m->alen) &&
		    !memcmp(o->b, m->b, m->blen))
			return;	/* first rank wins, as std::map::emplace */
		i = (i + 1) & v->mtab_mask;
	}
	v->mtab[i] = TAB_TAG(h) << 32 | (r + 1);
}

/* ------------------------------------------------------------------------
 * GPT-2 byte <-> code point mapping
 * ------------------------------------------------------------------------ */

/* Printable Latin-1 bytes stand for themselves; the others are numbered
 * from U+0100 in byte order. */
static uint32_t byte_to_cp(uint8_t b)
{
	uint32_t n = 0;
	int c;

	if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
		return b;
	for (c = 0; c < b; c++)
		if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) ||
		    c >= 0xAE))
			n++;
	return 256 + n;
}

/* The byte code point cp stands for, or -1. */
static int cp_to_byte(uint32_t cp)
{
	static int16_t rev[324];
	static int init;
	int b;

	if (!init) {	/* benign race: every thread writes the same values */
		for (b = 0; b < 324; b++)
			rev[b] = -1;
		for (b = 0; b < 256; b++)
			rev[byte_to_cp((uint8_t)b)] = (int16_t)b;
		init = 1;
	}
	return cp < 324 ? rev[cp] : -1;
}

static size_t cp_to_utf8(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Length of the UTF-8 sequence a lead byte announces, by its high nibble
 * (llama.cpp's unicode_len_utf8: continuation bytes count as 1). */
static size_t utf8_len(uint8_t c)
{
	static const uint8_t len[16] = {
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4
	};
	return len[c >> 4];
}

/* Decode one code point at s[*i] (n bytes), as llama.cpp's
 * unicode_cpt_from_utf8 + unicode_cpts_from_utf8: an invalid sequence gives
 * U+FFFD and advances one byte. */
static uint32_t utf8_next(const uint8_t *s, size_t n, size_t *i)
{
	size_t o = *i;
	uint8_t c = s[o];

	if (!(c & 0x80)) {
		*i = o + 1;
		return c;
	}
	if ((c & 0x40) && !(c & 0x20)) {
		if (o + 1 < n && (s[o + 1] & 0xC0) == 0x80) {
			*i = o + 2;
			return ((uint32_t)(c & 0x1F) << 6) | (s[o + 1] & 0x3F);
		}
	} else if ((c & 0x40) && !(c & 0x10)) {
		if (o + 2 < n && (s[o + 1] & 0xC0) == 0x80 &&
		    (s[o + 2] & 0xC0) == 0x80) {
			*i = o + 3;
			return ((uint32_t)(c & 0x0F) << 12) |
			    ((uint32_t)(s[o + 1] & 0x3F) << 6) | (s[o + 2] & 0x3F);
		}
	} else if ((c & 0x40) && !(c & 0x08)) {
		if (o + 3 < n && (s[o + 1] & 0xC0) == 0x80 &&
		    (s[o + 2] & 0xC0) == 0x80 && (s[o + 3] & 0xC0) == 0x80) {
			*i = o + 4;
			return ((uint32_t)(c & 0x07) << 18) |
			    ((uint32_t)(s[o + 1] & 0x3F) << 12) |
			    ((uint32_t)(s[o + 2] & 0x3F) << 6) | (s[o + 3] & 0x3F);
		}
	}
	*i = o + 1;
	return 0xFFFD;
}

/* ------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------ */

/* Sort ids by text length, longest first, ties by id (llama.cpp uses an
 * unstable sort; same-length special texts that overlap in one input are
 * the only case where the order could differ). */
static int cmp_special(const void *pa, const void *pb, void *ctx)
{
	const eng_vocab *v = ctx;
	int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;

	if (v->tok[a].len != v->tok[b].len)
		return v->tok[a].len > v->tok[b].len ? -1 : 1;
	return a < b ? -1 : a > b;
}

static int load_tokens(eng_vocab *v, const eng_gguf *g, char *err,
    size_t errlen)
{
	const void *scores = NULL, *types = NULL;
	uint64_t n, ns, nt;
	int et, rc;
	uint32_t i;

	rc = eng_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, NULL);
	if (rc == ENG_ENOKEY)
		return eng__err(err, errlen, rc,
		    "required key 'tokenizer.ggml.tokens' missing");
	if (rc || et != ENG_GGUF_STRING)
		return eng__err(err, errlen, ENG_EFORMAT,
		    "key 'tokenizer.ggml.tokens' is not an array of strings");
	if (n == 0 || n > MAX_TOKENS)
		return eng__err(err, errlen, ENG_ERANGE,
		    "tokenizer.ggml.tokens: %llu tokens (1 to %llu)",
		    (unsigned long long)n, (unsigned long long)MAX_TOKENS);
	rc = eng_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &ns, &scores);
	if (rc == 0 && (et != ENG_GGUF_FLOAT32 || ns < n))
		return eng__err(err, errlen, ENG_EFORMAT,
		    "key 'tokenizer.ggml.scores' must be FLOAT32[%llu]",
		    (unsigned long long)n);
	if (rc != 0)
		scores = NULL;
	rc = eng_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &nt,
	    &types);
	if (rc == 0 && (et != ENG_GGUF_INT32 || nt < n))
		return eng__err(err, errlen, ENG_EFORMAT,
		    "key 'tokenizer.ggml.token_type' must be INT32[%llu]",
		    (unsigned long long)n);
	if (rc != 0)
		types = NULL;

	v->n = (uint32_t)n;
	v->tok = calloc(n, sizeof *v->tok);
	v->tab_mask = tab_size(n) - 1;
	v->tab = calloc(v->tab_mask + 1, sizeof *v->tab);
	if (!v->tok || !v->tab)
		return ENG_ENOMEM;
	for (i = 0; i < n; i++) {
		struct token *t = &v->tok[i];
		const char *s;
		size_t len;
		int32_t ty = 1;

		eng_gguf_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len);
		if (len == 0) {
			/* As llama.cpp: an empty token gets a placeholder text. */
			char **o = realloc(v->owned, (v->n_owned + 1) *
			    sizeof *o);
			if (!o)
				return ENG_ENOMEM;
			v->owned = o;
			if (!(o[v->n_owned] = malloc(24)))
				return ENG_ENOMEM;
			len = (size_t)snprintf(o[v->n_owned], 24, "[EMPTY_%u]",
			    i);
			s = o[v->n_owned++];
		}
		if (len > UINT32_MAX)
			return eng__err(err, errlen, ENG_ERANGE,
			    "token %u is too long", i);
		t->text = s;
		t->len = (uint32_t)len;
		if (scores)
			memcpy(&t->score, (const char *)scores + 4 * (size_t)i, 4);
		if (types)
			memcpy(&ty, (const char *)types + 4 * (size_t)i, 4);
		switch (ty) {
		case 2:  t->attr = ENG_TOKATTR_UNKNOWN; break;
		case 5:  t->attr = ENG_TOKATTR_UNUSED; break;
		case 1:  t->attr = ENG_TOKATTR_NORMAL; break;
		case 3:  t->attr = ENG_TOKATTR_CONTROL; break;
		case 4:  t->attr = ENG_TOKATTR_USER_DEFINED; break;
		case 6:  t->attr = ENG_TOKATTR_BYTE; break;
		default: t->attr = ENG_TOKATTR_UNDEFINED; break;
		}
		tab_put(v, i);
	}
	return 0;
}

static int load_merges(eng_vocab *v, const eng_gguf *g, char *err,
    size_t errlen)
{
	uint64_t n;
	uint32_t i;
	int et, rc;

	rc = eng_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n, NULL);
	if (rc == ENG_ENOKEY)
		return eng__err(err, errlen, rc,
		    "required key 'tokenizer.ggml.merges' missing");
	if (rc || et != ENG_GGUF_STRING)
		return eng__err(err, errlen, ENG_EFORMAT,
		    "key 'tokenizer.ggml.merges' is not an array of strings");
	if (n > MAX_TOKENS)
		return eng__err(err, errlen, ENG_ERANGE,
		    "tokenizer.ggml.merges: %llu merges (at most %llu)",
		    (unsigned long long)n, (unsigned long long)MAX_TOKENS);
	v->n_merges = (uint32_t)n;
	v->merges = calloc(n ? n : 1, sizeof *v->merges);
	v->mtab_mask = tab_size(n) - 1;
	v->mtab = calloc(v->mtab_mask + 1, sizeof *v->mtab);
	if (!v->merges || !v->mtab)
		return ENG_ENOMEM;
	for (i = 0; i < n; i++) {
		struct merge *m = &v->merges[i];
		const char *s, *sp;
		size_t len;

		eng_gguf_arr_str(g, "tokenizer.ggml.merges", i, &s, &len);
		/* Split at the first space after the first byte; without one
		 * the rule is ("", ""), which never matches. */
		sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
		if (!sp || len > UINT32_MAX) {
			m->a = m->b = s;
			continue;
		}
		m->a = s;
		m->alen = (uint32_t)(sp - s);
		m->b = sp + 1;
		m->blen = (uint32_t)(len - m->alen - 1);
		mtab_put(v, i);
	}
	return 0;
}

/* Optional string key compared with a literal. */
static int str_is(const char *s, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

static int load_settings(eng_vocab *v, const eng_gguf *g, char *err,
    size_t errlen)
{
	static const struct { const char *key; int32_t *dst; } ids[] = {
		{ "tokenizer.ggml.bos_token_id", NULL },
		{ "tokenizer.ggml.eos_token_id", NULL },
		{ "tokenizer.ggml.eot_token_id", NULL },
		{ "tokenizer.ggml.unknown_token_id", NULL },
	};
	int32_t *dst[4] = { &v->bos, &v->eos, &v->eot, &v->unk };
	const char *s;
	size_t len, k;
	int b;

	if (v->kind == ENG_VOCAB_SPM) {
		v->bos = 1; v->eos = 2; v->unk = 0; v->eot = -1;
		v->add_space_prefix = 1;
		v->add_bos = 1;
	} else {
		v->bos = 11; v->eos = 11; v->unk = -1; v->eot = -1;
		v->pre = PRE_DEFAULT;
		if (eng_gguf_get_str(g, "tokenizer.ggml.pre", &s, &len) == 0 &&
		    !str_is(s, len, "default")) {
			if (str_is(s, len, "llama3") || str_is(s, len, "llama-v3") ||
			    str_is(s, len, "llama-bpe")) {
				v->pre = PRE_LLAMA3;
				v->ignore_merges = 1;
				v->add_bos = 1;
			} else if (str_is(s, len, "qwen2")) {
				v->pre = PRE_QWEN2;
			} else {
				return eng__err(err, errlen, ENG_EUNSUP,
				    "unsupported pre-tokenizer '%.*s' "
				    "(llama-bpe, llama3, qwen2, default)",
				    (int)(len > 64 ? 64 : len), s);
			}
		}
	}
	for (k = 0; k < 4; k++) {
		uint32_t id;
		if (*dst[k] >= 0 && (uint32_t)*dst[k] >= v->n)
			*dst[k] = -1;
		if (eng_gguf_get_u32(g, ids[k].key, &id) == 0 && id < v->n)
			*dst[k] = (int32_t)id;
	}
	if (eng_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b) == 0)
		v->add_space_prefix = b;
	if (eng_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) == 0)
		v->add_bos = b;
	if (eng_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b) == 0)
		v->add_eos = b;
	if ((v->add_bos && v->bos < 0) || (v->add_eos && v->eos < 0))
		return eng__err(err, errlen, ENG_EFORMAT,
		    "tokenizer adds BOS/EOS but has no such token");
	return 0;
}

/* Token texts llama.cpp recognises after loading (llama-vocab.cpp, after
 * the special ids are read) and whose attributes it changes: end-of-turn,
 * end-of-generation and fill-in-the-middle markers become CONTROL, so that
 * they are never matched in plain text and are hidden when detokenizing.
 * The EOT list is a subset of the EOG list. */
static const char *const eot_texts[] = {
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
	"<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
	"<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
	"<end_of_utterance>",
};
static const char *const eog_texts[] = {
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
	"<|flush|>", "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>",
	"<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
	"<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
	"<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
	"[e~[",
};
/* Fill-in-the-middle markers: made CONTROL only when the file names no
 * id for that role. */
static const struct {
	const char *key;
	const char *texts[9];
} fim_texts[] = {
	{ "tokenizer.ggml.fim_pre_token_id", { "<|fim_prefix|>",
	    "<fim-prefix>", "<fim_prefix>",
	    "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>",
	    "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>" } },
	{ "tokenizer.ggml.fim_suf_token_id", { "<|fim_suffix|>",
	    "<fim-suffix>", "<fim_suffix>",
	    "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>", "<SUF>",
	    "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>" } },
	{ "tokenizer.ggml.fim_mid_token_id", { "<|fim_middle|>",
	    "<fim-middle>", "<fim_middle>",
	    "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>",
	    "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>" } },
	{ "tokenizer.ggml.fim_pad_token_id", { "<|fim_pad|>", "<fim-pad>",
	    "<fim_pad>", "<PAD>", "[PAD]" } },
	{ "tokenizer.ggml.fim_rep_token_id", { "<|fim_repo|>",
	    "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>" } },
	{ "tokenizer.ggml.fim_sep_token_id", { "<|file_sep|>" } },
};

static int32_t find_text(const eng_vocab *v, const char *s)
{
	return eng_vocab_find(v, s, strlen(s));
}

static void fix_attrs(eng_vocab *v, const eng_gguf *g)
{
	static const char *const gptoss[] = {
		"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>",
	};
	int32_t id, s_id = -1, end_id = -1;
	int normal_s = 0, ret = 0, call = 0, flush = 0;
	uint32_t u;
	size_t k, j;

	for (k = 0; k < sizeof eot_texts / sizeof eot_texts[0]; k++)
		if (v->eot < 0 && (id = find_text(v, eot_texts[k])) >= 0)
			v->eot = id;
	for (k = 0; k < sizeof fim_texts / sizeof fim_texts[0]; k++) {
		if (eng_gguf_get_u32(g, fim_texts[k].key, &u) == 0)
			continue;
		for (j = 0; j < 9 && fim_texts[k].texts[j]; j++)
			if ((id = find_text(v, fim_texts[k].texts[j])) >= 0)
				v->tok[id].attr |= ENG_TOKATTR_CONTROL;
	}
	for (k = 0; k < sizeof eog_texts / sizeof eog_texts[0]; k++) {
		if ((id = find_text(v, eog_texts[k])) < 0)
			continue;
		v->tok[id].attr |= ENG_TOKATTR_CONTROL;
		if (!strcmp(eog_texts[k], "</s>"))
			s_id = id;
		else if (!strcmp(eog_texts[k], "<|tool_response>"))
			normal_s = 1;
		else if (!strcmp(eog_texts[k], "<|end|>"))
			end_id = id;
		else if (!strcmp(eog_texts[k], "<|return|>"))
			ret = 1;
		else if (!strcmp(eog_texts[k], "<|call|>") ||
		    !strcmp(eog_texts[k], "<|calls|>"))
			call = 1;
		else if (!strcmp(eog_texts[k], "<|flush|>"))
			flush = 1;
	}
	if (find_text(v, "<|plamo:eos|>") >= 0)
		normal_s = 1;
	for (k = 0; k < sizeof gptoss / sizeof gptoss[0]; k++)
		if ((id = find_text(v, gptoss[k])) >= 0)
			v->tok[id].attr = ENG_TOKATTR_USER_DEFINED;
	if (end_id >= 0 && ((ret && call) || (call && flush)))
		v->tok[end_id].attr = ENG_TOKATTR_USER_DEFINED;
	if (s_id >= 0 && normal_s)
		v->tok[s_id].attr = ENG_TOKATTR_NORMAL;
}

static int build_special(eng_vocab *v)
{
	uint32_t i, n = 0;

	for (i = 0; i < v->n; i++)
		if (v->tok[i].attr & (ENG_TOKATTR_CONTROL |
		    ENG_TOKATTR_USER_DEFINED | ENG_TOKATTR_UNKNOWN))
			n++;
	v->special = malloc((n ? n : 1) * sizeof *v->special);
	if (!v->special)
		return ENG_ENOMEM;
	for (i = 0; i < v->n; i++)
		if (v->tok[i].attr & (ENG_TOKATTR_CONTROL |
		    ENG_TOKATTR_USER_DEFINED | ENG_TOKATTR_UNKNOWN))
			v->special[v->n_special++] = (int32_t)i;
	qsort_r(v->special, v->n_special, sizeof *v->special, cmp_special,
	    v);
	return 0;
}

static void build_bytes(eng_vocab *v)
{
	static const char hex[] = "0123456789ABCDEF";
	char buf[8];
	int b;

	for (b = 0; b < 256; b++) {
		if (v->kind == ENG_VOCAB_SPM) {
			buf[0] = '<'; buf[1] = '0'; buf[2] = 'x';
			buf[3] = hex[b >> 4]; buf[4] = hex[b & 15]; buf[5] = '>';
			v->byte_tok[b] = eng_vocab_find(v, buf, 6);
			if (v->byte_tok[b] < 0) {
				buf[0] = (char)b;
				v->byte_tok[b] = eng_vocab_find(v, buf, 1);
			}
		} else {
			size_t n = cp_to_utf8(byte_to_cp((uint8_t)b), buf);
			v->byte_tok[b] = eng_vocab_find(v, buf, n);
		}
	}
}

int eng_vocab_open(const eng_gguf *g, eng_vocab **out, char *err,
    size_t errlen)
{
	eng_vocab *v = NULL;
	const char *s;
	size_t len;
	int rc;

	if (!g || !out)
		return eng__err(err, errlen, ENG_EINVAL, "invalid argument");
	*out = NULL;
	rc = eng_gguf_get_str(g, "tokenizer.ggml.model", &s, &len);
	if (rc)
		return eng__err(err, errlen, rc == ENG_ENOKEY ? rc : ENG_EFORMAT,
		    "key 'tokenizer.ggml.model' %s",
		    rc == ENG_ENOKEY ? "missing" : "is not a string");
	if (!(v = calloc(1, sizeof *v)))
		return ENG_ENOMEM;
	if (str_is(s, len, "llama")) {
		v->kind = ENG_VOCAB_SPM;
	} else if (str_is(s, len, "gpt2")) {
		v->kind = ENG_VOCAB_BPE;
	} else {
		rc = eng__err(err, errlen, ENG_EUNSUP,
		    "unsupported tokenizer '%.*s' (llama, gpt2)",
		    (int)(len > 64 ? 64 : len), s);
		goto fail;
	}
	if ((rc = load_tokens(v, g, err, errlen)))
		goto fail;
	if (v->kind == ENG_VOCAB_BPE && (rc = load_merges(v, g, err, errlen)))
		goto fail;
	if ((rc = load_settings(v, g, err, errlen)))
		goto fail;
	fix_attrs(v, g);
	if ((rc = build_special(v)))
		goto fail;
	build_bytes(v);
	*out = v;
	return 0;
fail:
	if (rc == ENG_ENOMEM)
		eng__err(err, errlen, rc, "out of memory loading tokenizer");
	eng_vocab_close(v);
	return rc;
}

void eng_vocab_close(eng_vocab *v)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; i < v->n_owned; i++)
		free(v->owned[i]);
	free(v->owned);
	free(v->tok);
	free(v->tab);
	free(v->merges);
	free(v->mtab);
	free(v->special);
	free(v);
}

int eng_vocab_kind(const eng_vocab *v) { return v->kind; }
uint32_t eng_vocab_size(const eng_vocab *v) { return v->n; }
int32_t eng_vocab_bos(const eng_vocab *v) { return v->bos; }
int32_t eng_vocab_eos(const eng_vocab *v) { return v->eos; }
int32_t eng_vocab_eot(const eng_vocab *v) { return v->eot; }
int eng_vocab_add_bos(const eng_vocab *v) { return v->add_bos; }
int eng_vocab_add_eos(const eng_vocab *v) { return v->add_eos; }

int eng_vocab_token(const eng_vocab *v, int32_t id, const char **s,
    size_t *len, int *attr)
{
	if (!v || id < 0 || (uint32_t)id >= v->n)
		return ENG_EINVAL;
	if (s)
		*s = v->tok[id].text;
	if (len)
		*len = v->tok[id].len;
	if (attr)
		*attr = v->tok[id].attr;
	return 0;
}

/* ------------------------------------------------------------------------
 * Output vector
 * ------------------------------------------------------------------------ */

struct ids {
	int32_t *v;
	size_t   n, cap;
	int      oom;
};

static void ids_push(struct ids *o, int32_t id)
{
	if (o->n == o->cap) {
		size_t cap = o->cap ? 2 * o->cap : 64;
		int32_t *p = realloc(o->v, cap * sizeof *p);
		if (!p) {
			o->oom = 1;
			return;
		}
		o->v = p;
		o->cap = cap;
	}
	o->v[o->n++] = id;
}

/* ------------------------------------------------------------------------
 * Step 1: special tokens
 * ------------------------------------------------------------------------ */

/* A fragment: a token (id >= 0) or raw text [off, off + len). */
struct frag {
	int32_t id;
	size_t  off, len;
};

struct frags {
	struct frag *v;
	size_t       n, cap;
};

static int frags_push(struct frags *f, int32_t id, size_t off, size_t len)
{
	if (f->n == f->cap) {
		size_t cap = f->cap ? 2 * f->cap : 16;
		struct frag *p = realloc(f->v, cap * sizeof *p);
		if (!p)
			return ENG_ENOMEM;
		f->v = p;
		f->cap = cap;
	}
	f->v[f->n].id = id;
	f->v[f->n].off = off;
	f->v[f->n].len = len;
	f->n++;
	return 0;
}

/* Split every raw fragment of *in around occurrences of special token id,
 * leftmost first, into *out. */
static int split_one(const eng_vocab *v, const char *text, int32_t id,
    const struct frags *in, struct frags *out)
{
	const struct token *t = &v->tok[id];
	size_t i;
	int rc;

	out->n = 0;
	for (i = 0; i < in->n; i++) {
		const struct frag *f = &in->v[i];
		size_t off = f->off, len = f->len;

		if (f->id >= 0 || len < t->len) {
			if ((rc = frags_push(out, f->id, off, len)))
				return rc;
			continue;
		}
		while (len >= t->len) {
			const char *m = memmem(text + off, len, t->text, t->len);
			size_t at;
			if (!m)
				break;
			at = (size_t)(m - text);
			if (at > off && (rc = frags_push(out, -1, off, at - off)))
				return rc;
			if ((rc = frags_push(out, id, at, t->len)))
				return rc;
			len -= at - off + t->len;
			off = at + t->len;
		}
		if (len && (rc = frags_push(out, -1, off, len)))
			return rc;
	}
	return 0;
}

static int partition(const eng_vocab *v, const char *text, size_t len,
    int parse_special, struct frags *res)
{
	struct frags a = { 0 }, b = { 0 }, tmp;
	uint8_t *pairs = NULL;	/* bit set of byte pairs present in text */
	uint32_t k;
	size_t i;
	int rc = 0;

	if (len == 0) {
		*res = a;
		return 0;
	}
	if ((rc = frags_push(&a, -1, 0, len)))
		goto done;
	/* Most special tokens never occur; skip them cheaply by their first
	 * two bytes. */
	if (!(pairs = calloc(65536 / 8, 1))) {
		rc = ENG_ENOMEM;
		goto done;
	}
	for (i = 0; i + 1 < len; i++) {
		unsigned p = (uint8_t)text[i] << 8 | (uint8_t)text[i + 1];
		pairs[p >> 3] |= (uint8_t)(1u << (p & 7));
	}
	for (k = 0; k < v->n_special; k++) {
		int32_t id = v->special[k];
		const struct token *t = &v->tok[id];

		if (!parse_special &&
		    (t->attr & (ENG_TOKATTR_CONTROL | ENG_TOKATTR_UNKNOWN)))
			continue;
		if (t->len > len)
			continue;
		if (t->len >= 2) {
			unsigned p = (uint8_t)t->text[0] << 8 |
			    (uint8_t)t->text[1];
			if (!(pairs[p >> 3] & (1u << (p & 7))))
				continue;
		}
		if ((rc = split_one(v, text, id, &a, &b)))
			goto done;
		tmp = a;
		a = b;
		b = tmp;
	}
done:
	free(pairs);
	free(b.v);
	if (rc) {
		free(a.v);
		return rc;
	}
	*res = a;
	return 0;
}

/* ------------------------------------------------------------------------
 * Step 2a: SentencePiece-style merging
 * ------------------------------------------------------------------------ */

struct sym {
	int    prev, next;
	uint32_t off, n;	/* into the session's text */
};

struct bigram {
	union {
		float score;	/* SPM: higher first */
		int32_t rank;	/* BPE: lower first */
	} u;
	int      left, right;
	uint32_t size;
};

struct heap {
	struct bigram *v;
	size_t         n, cap;
	int            bpe;
};

/* Whether a should come out of the heap before b. */
static int bg_before(const struct heap *h, const struct bigram *a,
    const struct bigram *b)
{
	if (h->bpe)
		return a->u.rank < b->u.rank ||
		    (a->u.rank == b->u.rank && a->left < b->left);
	return a->u.score > b->u.score ||
	    (a->u.score == b->u.score && a->left < b->left);
}

static int heap_push(struct heap *h, const struct bigram *b)
{
	size_t i;

	if (h->n == h->cap) {
		size_t cap = h->cap ? 2 * h->cap : 64;
		struct bigram *p = realloc(h->v, cap * sizeof *p);
		if (!p)
			return ENG_ENOMEM;
		h->v = p;
		h->cap = cap;
	}
	i = h->n++;
	while (i > 0) {
		size_t up = (i - 1) / 2;
		if (!bg_before(h, b, &h->v[up]))
			break;
		h->v[i] = h->v[up];
		i = up;
	}
	h->v[i] = *b;
	return 0;
}

static struct bigram heap_pop(struct heap *h)
{
	struct bigram top = h->v[0], last = h->v[--h->n];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && bg_before(h, &h->v[c + 1], &h->v[c]))
			c++;
		if (!bg_before(h, &h->v[c], &last))
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n)
		h->v[i] = last;
	return top;
}

struct session {
	const eng_vocab *v;
	const char      *text;
	size_t           len;
	struct sym      *sym;
	size_t           n_sym, cap_sym;
	struct heap      heap;
};

/* Split text[from, to) into UTF-8 characters (by lead byte; a sequence cut
 * short by the end keeps what is there), linked as one chain. */
static int sess_chars(struct session *s, size_t from, size_t to)
{
	size_t off = from, first = s->n_sym;

	while (off < to) {
		size_t n = utf8_len((uint8_t)s->text[off]);
		struct sym *y;
		if (n > to - off)
			n = to - off;
		if (s->n_sym == s->cap_sym) {
			size_t cap = s->cap_sym ? 2 * s->cap_sym : 64;
			struct sym *p = realloc(s->sym, cap * sizeof *p);
			if (!p)
				return ENG_ENOMEM;
			s->sym = p;
			s->cap_sym = cap;
		}
		y = &s->sym[s->n_sym];
		y->off = (uint32_t)off;
		y->n = (uint32_t)n;
		y->prev = s->n_sym == first ? -1 : (int)s->n_sym - 1;
		off += n;
		y->next = off == to ? -1 : (int)s->n_sym + 1;
		s->n_sym++;
	}
	return 0;
}

static int spm_try_add(struct session *s, int left, int right)
{
	struct bigram b;
	int32_t id;

	if (left < 0 || right < 0)
		return 0;
	b.size = s->sym[left].n + s->sym[right].n;
	id = eng_vocab_find(s->v, s->text + s->sym[left].off, b.size);
	if (id < 0)
		return 0;
	b.u.score = s->v->tok[id].score;
	b.left = left;
	b.right = right;
	return heap_push(&s->heap, &b);
}

static void merge_syms(struct session *s, const struct bigram *b)
{
	struct sym *l = &s->sym[b->left], *r = &s->sym[b->right];

	l->n += r->n;
	r->n = 0;
	l->next = r->next;
	if (r->next >= 0)
		s->sym[r->next].prev = b->left;
}

/* Emit a piece that is not a token as byte tokens. */
static void emit_bytes(const eng_vocab *v, const char *p, size_t n,
    struct ids *out)
{
	size_t j;

	for (j = 0; j < n; j++) {
		int32_t id = v->byte_tok[(uint8_t)p[j]];
		if (id >= 0)
			ids_push(out, id);
		else if (v->kind == ENG_VOCAB_SPM && v->unk >= 0)
			ids_push(out, v->unk);
	}
}

/* Tokenize s->text[0, len) as one SPM fragment. */
static int spm_tokenize(struct session *s, struct ids *out)
{
	int i, rc;

	s->n_sym = 0;
	s->heap.n = 0;
	s->heap.bpe = 0;
	if (s->len == 0)
		return 0;
	if ((rc = sess_chars(s, 0, s->len)))
		return rc;
	for (i = 1; i < (int)s->n_sym; i++)
		if ((rc = spm_try_add(s, i - 1, i)))
			return rc;
	while (s->heap.n) {
		struct bigram b = heap_pop(&s->heap);
		struct sym *l = &s->sym[b.left], *r = &s->sym[b.right];
		if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
			continue;
		merge_syms(s, &b);
		if ((rc = spm_try_add(s, s->sym[b.left].prev, b.left)) ||
		    (rc = spm_try_add(s, b.left, s->sym[b.left].next)))
			return rc;
	}
	/* Every merged symbol is a token; a single character may not be, and
	 * then falls back to its bytes. */
	for (i = 0; i != -1; i = s->sym[i].next) {
		const struct sym *y = &s->sym[i];
		int32_t id = eng_vocab_find(s->v, s->text + y->off, y->n);
		if (id >= 0)
			ids_push(out, id);
		else
			emit_bytes(s->v, s->text + y->off, y->n, out);
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Step 2b: BPE pre-tokenizers (llama.cpp's hand-written regex splitters)
 * ------------------------------------------------------------------------ */

#define OUT_OF_RANGE 0xFFFFFFFFu

struct cps {
	const uint32_t *cp;
	size_t          ini, end;	/* the piece being split */
};

static uint32_t cp_at(const struct cps *c, size_t pos)
{
	return pos >= c->ini && pos < c->end ? c->cp[pos] : OUT_OF_RANGE;
}

static unsigned fl_at(const struct cps *c, size_t pos)
{
	return pos >= c->ini && pos < c->end ?
	    eng__unicode_flags(c->cp[pos]) : 0;
}

#define IS_L(f) ((f) & ENG__U_LETTER)
#define IS_N(f) ((f) & ENG__U_NUMBER)
#define IS_WS(f) ((f) & ENG__U_WHITESPACE)

/* Piece lengths (in code points) go to lens[]. */
struct lens {
	size_t *v;
	size_t  n, cap;
	int     oom;
};

static void lens_push(struct lens *l, size_t n)
{
	if (n == 0)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		size_t *p = realloc(l->v, cap * sizeof *p);
		if (!p) {
			l->oom = 1;
			return;
		}
		l->v = p;
		l->cap = cap;
	}
	l->v[l->n++] = n;
}

static uint32_t ascii_lower(uint32_t c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* 's 't 're 've 'm 'll 'd at pos: the match length, or 0.  The llama3 and
 * qwen2 splitters match case-insensitively, gpt2 does not. */
static size_t contraction(const struct cps *c, size_t pos, int icase)
{
	uint32_t n1, n2;

	if (cp_at(c, pos) != '\'' || pos + 1 >= c->end)
		return 0;
	n1 = cp_at(c, pos + 1);
	if (icase)
		n1 = ascii_lower(n1);
	if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd')
		return 2;
	if (pos + 2 >= c->end)
		return 0;
	n2 = cp_at(c, pos + 2);
	if (icase)
		n2 = ascii_lower(n2);
	if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') ||
	    (n1 == 'l' && n2 == 'l'))
		return 3;
	return 0;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * with \p{N} instead of \p{N}{1,3} for qwen2. */
static void split_llama3(struct cps *c, int max_digits, struct lens *out)
{
	size_t pos = c->ini, prev = c->ini;

	while (pos < c->end) {
		uint32_t cp = cp_at(c, pos);
		unsigned f = fl_at(c, pos), f2;
		size_t k, nws = 0, last_rn = 0;

		if ((k = contraction(c, pos, 1))) {
			pos += k;
			lens_push(out, pos - prev);
			prev = pos;
			continue;
		}
		if (!(cp == '\r' || cp == '\n' || IS_N(f)) &&
		    (IS_L(f) || IS_L(fl_at(c, pos + 1)))) {
			pos++;
			while (IS_L(fl_at(c, pos)))
				pos++;
			lens_push(out, pos - prev);
			prev = pos;
			continue;
		}
		if (IS_N(f)) {
			size_t ini = pos;
			while (IS_N(fl_at(c, pos))) {
				if (++pos - ini >= (size_t)max_digits) {
					lens_push(out, pos - prev);
					prev = pos;
					ini = pos;
				}
			}
			lens_push(out, pos - prev);
			prev = pos;
			continue;
		}
		f2 = cp == ' ' ? fl_at(c, pos + 1) : f;
		if (!(IS_WS(f2) || IS_L(f2) || IS_N(f2)) && f) {
			pos += cp == ' ';
			while (!(IS_WS(f2) || IS_L(f2) || IS_N(f2)) && f2)
				f2 = fl_at(c, ++pos);
			while (cp_at(c, pos) == '\r' || cp_at(c, pos) == '\n')
				pos++;
			lens_push(out, pos - prev);
			prev = pos;
			continue;
		}
		while (IS_WS(fl_at(c, pos + nws))) {
			uint32_t w = cp_at(c, pos + nws);
			if (w == '\r' || w == '\n')
				last_rn = pos + nws + 1;
			nws++;
		}
		if (last_rn > 0)
			pos = last_rn;
		else if (nws > 1 && cp_at(c, pos + nws) != OUT_OF_RANGE)
			pos += nws - 1;
		else if (nws > 0)
			pos += nws;
		else
			pos++;
		lens_push(out, pos - prev);
		prev = pos;
	}
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
static void split_gpt2(struct cps *c, struct lens *out)
{
	size_t pos = c->ini, prev = c->ini;

	while (pos < c->end) {
		uint32_t cp = cp_at(c, pos);
		unsigned f = fl_at(c, pos), f2;
		size_t k, nws = 0;

		if ((k = contraction(c, pos, 0))) {
			pos += k;
			lens_push(out, pos - prev);
			prev = pos;
			continue;
		}
		f2 = cp == ' ' ? fl_at(c, pos + 1) : f;
		if (IS_L(f2) || IS_N(f2) ||
		    (!(IS_WS(f2) || IS_L(f2) || IS_N(f2)) && f2)) {
			unsigned cls = IS_L(f2) ? 1 : IS_N(f2) ? 2 : 3;
			pos += cp == ' ';
			for (;;) {
				int in = cls == 1 ? IS_L(f2) != 0 :
				    cls == 2 ? IS_N(f2) != 0 :
				    (!(IS_WS(f2) || IS_L(f2) || IS_N(f2)) && f2);
				if (!in)
					break;
				f2 = fl_at(c, ++pos);
			}
			lens_push(out, pos - prev);
			prev = pos;
			continue;
		}
		while (IS_WS(fl_at(c, pos + nws)))
			nws++;
		if (nws > 1 && cp_at(c, pos + nws) != OUT_OF_RANGE)
			pos += nws - 1;
		else if (nws > 0)
			pos += nws;
		else
			pos++;
		lens_push(out, pos - prev);
		prev = pos;
	}
}

/* The regex passes of the "default" pre-tokenizer that llama.cpp runs
 * with std::regex: runs of a class become pieces, and so do the gaps
 * between them. */
static int cls_punct(uint32_t cp)
{
	/* [\p{P}\$\+<=>\^~\|] */
	return (eng__unicode_flags(cp) & ENG__U_PUNCT) || cp == '$' ||
	    cp == '+' || cp == '<' || cp == '=' || cp == '>' || cp == '^' ||
	    cp == '~' || cp == '|';
}

static int cls_number(uint32_t cp)
{
	return (eng__unicode_flags(cp) & ENG__U_NUMBER) != 0;
}

static void split_runs(struct cps *c, int (*cls)(uint32_t), struct lens *out)
{
	size_t pos = c->ini, prev = c->ini;

	while (pos < c->end) {
		if (!cls(c->cp[pos])) {
			pos++;
			continue;
		}
		lens_push(out, pos - prev);
		prev = pos;
		while (pos < c->end && cls(c->cp[pos]))
			pos++;
		lens_push(out, pos - prev);
		prev = pos;
	}
	lens_push(out, c->end - prev);
}

/* [0-9][0-9][0-9], non-overlapping, leftmost first. */
static void split_digits3(struct cps *c, struct lens *out)
{
	size_t pos = c->ini, prev = c->ini;

#define D(p) (c->cp[p] >= '0' && c->cp[p] <= '9')
	while (pos + 3 <= c->end) {
		if (D(pos) && D(pos + 1) && D(pos + 2)) {
			lens_push(out, pos - prev);
			lens_push(out, 3);
			pos += 3;
			prev = pos;
		} else {
			pos++;
		}
	}
#undef D
	lens_push(out, c->end - prev);
}

/* Run one splitting pass over every current piece. */
static int split_pass(const uint32_t *cp, struct lens *pieces, int pass,
    enum pre_type pre)
{
	struct lens out = { 0 };
	size_t i, start = 0;

	for (i = 0; i < pieces->n; i++) {
		struct cps c = { cp, start, start + pieces->v[i] };
		switch (pass) {
		case 0:
			if (pre == PRE_DEFAULT)
				split_runs(&c, cls_punct, &out);
			else
				split_llama3(&c, pre == PRE_LLAMA3 ? 3 : 1, &out);
			break;
		case 1: split_gpt2(&c, &out); break;
		case 2: split_runs(&c, cls_number, &out); break;
		default: split_digits3(&c, &out); break;
		}
		start += pieces->v[i];
	}
	free(pieces->v);
	*pieces = out;
	return out.oom ? ENG_ENOMEM : 0;
}

/* ------------------------------------------------------------------------
 * Step 2c: BPE merging
 * ------------------------------------------------------------------------ */

static int bpe_try_add(struct session *s, int left, int right)
{
	struct bigram b;
	long rank;
	const struct sym *l, *r;

	if (left < 0 || right < 0)
		return 0;
	l = &s->sym[left];
	r = &s->sym[right];
	rank = merge_rank(s->v, s->text + l->off, l->n, s->text + r->off,
	    r->n);
	if (rank < 0)
		return 0;
	b.u.rank = (int32_t)rank;
	b.left = left;
	b.right = right;
	b.size = l->n + r->n;
	return heap_push(&s->heap, &b);
}

/* Merge one byte-encoded word text[from, to). */
static int bpe_word(struct session *s, size_t from, size_t to,
    struct ids *out)
{
	size_t first = s->n_sym;
	int i, rc;

	if (s->v->ignore_merges &&
	    eng_vocab_find(s->v, s->text + from, to - from) >= 0) {
		ids_push(out, eng_vocab_find(s->v, s->text + from, to - from));
		return 0;
	}
	if ((rc = sess_chars(s, from, to)))
		return rc;
	/* sess_chars linked prev/next as absolute indices of this word. */
	s->heap.n = 0;
	for (i = (int)first + 1; i < (int)s->n_sym; i++)
		if ((rc = bpe_try_add(s, i - 1, i)))
			return rc;
	while (s->heap.n) {
		struct bigram b = heap_pop(&s->heap);
		struct sym *l = &s->sym[b.left], *r = &s->sym[b.right];
		if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
			continue;
		merge_syms(s, &b);
		if ((rc = bpe_try_add(s, s->sym[b.left].prev, b.left)) ||
		    (rc = bpe_try_add(s, b.left, s->sym[b.left].next)))
			return rc;
	}
	for (i = (int)first; i != -1; i = s->sym[i].next) {
		const struct sym *y = &s->sym[i];
		int32_t id = eng_vocab_find(s->v, s->text + y->off, y->n);
		if (id >= 0) {
			ids_push(out, id);
			continue;
		}
		/* As llama.cpp: each byte of the encoded text looked up as a
		 * one-byte token; absent ones are dropped. */
		for (size_t j = 0; j < y->n; j++) {
			id = eng_vocab_find(s->v, s->text + y->off + j, 1);
			if (id >= 0)
				ids_push(out, id);
		}
	}
	return 0;
}

/* Tokenize one raw fragment with BPE: split into words on code points,
 * byte-encode each word, merge. */
static int bpe_tokenize(const eng_vocab *v, const char *text, size_t len,
    struct session *s, struct ids *out)
{
	uint32_t *cp = NULL;
	char *enc = NULL;
	struct lens pieces = { 0 };
	size_t n = 0, i, k, start, w, *word_end = NULL;
	int rc = 0, pass, n_pass = v->pre == PRE_DEFAULT ? 4 : 1;

	if (len == 0)
		return 0;
	if (!(cp = malloc(len * sizeof *cp)))
		return ENG_ENOMEM;
	for (i = 0; i < len;)
		cp[n++] = utf8_next((const uint8_t *)text, len, &i);
	lens_push(&pieces, n);
	for (pass = 0; pass < n_pass && !rc; pass++)
		rc = split_pass(cp, &pieces, pass, v->pre);
	if (rc || pieces.oom) {
		rc = ENG_ENOMEM;
		goto done;
	}
	/* Each code point becomes up to 4 UTF-8 bytes, each byte a code point
	 * below U+0144 of at most 2 bytes. */
	enc = malloc(n * 8 + 1);
	word_end = malloc((pieces.n ? pieces.n : 1) * sizeof *word_end);
	if (!enc || !word_end) {
		rc = ENG_ENOMEM;
		goto done;
	}
	w = 0;
	start = 0;
	for (i = 0; i < pieces.n; i++) {
		for (k = start; k < start + pieces.v[i]; k++) {
			char u[4];
			size_t m = cp_to_utf8(cp[k], u), j;
			for (j = 0; j < m; j++)
				w += cp_to_utf8(byte_to_cp((uint8_t)u[j]),
				    enc + w);
		}
		word_end[i] = w;
		start += pieces.v[i];
	}
	s->text = enc;
	s->len = w;
	s->n_sym = 0;
	s->heap.bpe = 1;
	for (i = 0, start = 0; i < pieces.n && !rc; i++) {
		rc = bpe_word(s, start, word_end[i], out);
		start = word_end[i];
	}
done:
	free(cp);
	free(enc);
	free(word_end);
	free(pieces.v);
	return rc;
}

/* ------------------------------------------------------------------------
 * Tokenize
 * ------------------------------------------------------------------------ */

/* SPM: optional leading space, then spaces escaped to U+2581. */
static int spm_fragment(struct session *s, const char *p, size_t n,
    int prefix, struct ids *out)
{
	char *buf;
	size_t i, w = 0;
	int rc;

	if (!(buf = malloc(3 * (n + 1))))
		return ENG_ENOMEM;
	if (prefix) {
		memcpy(buf, "\xe2\x96\x81", 3);
		w = 3;
	}
	for (i = 0; i < n; i++) {
		if (p[i] == ' ') {
			memcpy(buf + w, "\xe2\x96\x81", 3);
			w += 3;
		} else {
			buf[w++] = p[i];
		}
	}
	s->text = buf;
	s->len = w;
	rc = spm_tokenize(s, out);
	free(buf);
	return rc;
}

int eng_tokenize(const eng_vocab *v, const char *text, size_t len,
    int flags, int32_t **ids, size_t *n)
{
	struct frags fr = { 0 };
	struct ids out = { 0 };
	struct session s = { 0 };
	int add = flags & ENG_TOK_ADD_SPECIAL, prev_special = 1, rc;
	size_t i;

	if (!v || (!text && len) || !ids || !n)
		return ENG_EINVAL;
	*ids = NULL;
	*n = 0;
	if (len > MAX_INPUT)
		return ENG_ERANGE;
	if ((rc = partition(v, text, len, !!(flags & ENG_TOK_PARSE_SPECIAL),
	    &fr)))
		return rc;
	s.v = v;
	if (add && v->add_bos)
		ids_push(&out, v->bos);
	for (i = 0; i < fr.n && !rc; i++) {
		const struct frag *f = &fr.v[i];
		if (f->id >= 0) {
			ids_push(&out, f->id);
			prev_special = 1;
			continue;
		}
		if (v->kind == ENG_VOCAB_SPM)
			rc = spm_fragment(&s, text + f->off, f->len,
			    v->add_space_prefix && prev_special, &out);
		else
			rc = bpe_tokenize(v, text + f->off, f->len, &s, &out);
		prev_special = 0;
	}
	if (add && v->add_eos)
		ids_push(&out, v->eos);
	free(fr.v);
	free(s.sym);
	free(s.heap.v);
	if (!rc && out.oom)
		rc = ENG_ENOMEM;
	if (rc) {
		free(out.v);
		return rc;
	}
	*ids = out.v;
	*n = out.n;
	return 0;
}

/* ------------------------------------------------------------------------
 * Detokenize
 * ------------------------------------------------------------------------ */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Append n bytes at *w if they fit; count them anyway. */
static void put(char *buf, size_t cap, size_t *w, const char *p, size_t n)
{
	if (*w < cap)
		memcpy(buf + *w, p, n <= cap - *w ? n : cap - *w);
	*w += n;
}

int eng_token_to_piece(const eng_vocab *v, int32_t id, int special,
    char *buf, size_t cap, size_t *len)
{
	const struct token *t;
	size_t w = 0, i;

	if (!v || id < 0 || (uint32_t)id >= v->n || !len || (!buf && cap))
		return ENG_EINVAL;
	t = &v->tok[id];
	*len = 0;
	if (!special && (t->attr & (ENG_TOKATTR_UNKNOWN | ENG_TOKATTR_CONTROL)))
		return 0;
	if (t->attr & (ENG_TOKATTR_UNKNOWN | ENG_TOKATTR_CONTROL |
	    ENG_TOKATTR_USER_DEFINED)) {
		put(buf, cap, &w, t->text, t->len);
	} else if (t->attr & ENG_TOKATTR_NORMAL) {
		if (v->kind == ENG_VOCAB_SPM) {
			for (i = 0; i < t->len; i++) {
				if (i + 2 < t->len &&
				    !memcmp(t->text + i, "\xe2\x96\x81", 3)) {
					put(buf, cap, &w, " ", 1);
					i += 2;
				} else {
					put(buf, cap, &w, t->text + i, 1);
				}
			}
		} else {
			/* Byte-decode; a code point that is not a byte shows
			 * as llama.cpp's "[UNK_BYTE_0x..." marker. */
			for (i = 0; i < t->len;) {
				uint32_t cp = utf8_next(
				    (const uint8_t *)t->text, t->len, &i);
				int b = cp_to_byte(cp);
				if (b >= 0) {
					char c = (char)b;
					put(buf, cap, &w, &c, 1);
				} else {
					char hx[16], u[4];
					size_t m = cp_to_utf8(cp, u), j;
					put(buf, cap, &w, "[UNK_BYTE_0x", 12);
					for (j = 0; j < m; j++) {
						snprintf(hx, sizeof hx, "%02x",
						    (uint8_t)u[j]);
						put(buf, cap, &w, hx, 2);
					}
					put(buf, cap, &w, t->text, t->len);
					put(buf, cap, &w, "]", 1);
				}
			}
		}
	} else if (t->attr & ENG_TOKATTR_BYTE) {
		/* "<0xNN>": the byte is the two hex digits at 3. */
		int hi = t->len >= 5 ? hexval(t->text[3]) : -1;
		int lo = t->len >= 5 ? hexval(t->text[4]) : -1;
		char c = (char)(hi >= 0 && lo >= 0 ? hi * 16 + lo :
		    hi >= 0 ? hi : 0);
		put(buf, cap, &w, &c, 1);
	}
	*len = w;
	return 0;
}

struct eng_detok {
	const eng_vocab *v;
	int              special;
	char            *buf;	/* held bytes, then the new piece */
	size_t           held, cap;
	char            *out;	/* what the last call handed back */
	size_t           out_cap;
};

int eng_detok_open(const eng_vocab *v, int special, eng_detok **out)
{
	eng_detok *d;

	if (!v || !out)
		return ENG_EINVAL;
	if (!(d = calloc(1, sizeof *d)))
		return ENG_ENOMEM;
	d->v = v;
	d->special = special;
	*out = d;
	return 0;
}

void eng_detok_close(eng_detok *d)
{
	if (!d)
		return;
	free(d->buf);
	free(d->out);
	free(d);
}

static int grow(char **p, size_t *cap, size_t need)
{
	char *q;
	size_t c = *cap ? *cap : 64;

	if (need <= *cap)
		return 0;
	while (c < need)
		c *= 2;
	if (!(q = realloc(*p, c)))
		return ENG_ENOMEM;
	*p = q;
	*cap = c;
	return 0;
}

/* How many bytes at the end of p[0..n) start a UTF-8 character whose
 * remaining bytes have not come yet (0 if none). */
static size_t incomplete_tail(const char *p, size_t n)
{
	size_t k;

	for (k = 1; k <= 3 && k <= n; k++) {
		uint8_t c = (uint8_t)p[n - k];
		size_t need;
		if ((c & 0xC0) == 0x80)
			continue;	/* continuation: look further back */
		need = c >= 0xF0 && c <= 0xF7 ? 4 : c >= 0xE0 && c < 0xF0 ? 3 :
		    c >= 0xC0 && c < 0xE0 ? 2 : 1;
		return need > k ? k : 0;
	}
	return 0;
}

int eng_detok_push(eng_detok *d, int32_t id, const char **text, size_t *len)
{
	size_t n, emit;
	int rc;

	if (!d || !text || !len)
		return ENG_EINVAL;
	*text = NULL;
	*len = 0;
	rc = eng_token_to_piece(d->v, id, d->special, NULL, 0, &n);
	if (rc)
		return rc;
	if ((rc = grow(&d->buf, &d->cap, d->held + n + 1)))
		return rc;
	eng_token_to_piece(d->v, id, d->special, d->buf + d->held, n, &n);
	n += d->held;
	emit = n - incomplete_tail(d->buf, n);
	if ((rc = grow(&d->out, &d->out_cap, emit + 1)))
		return rc;
	memcpy(d->out, d->buf, emit);
	memmove(d->buf, d->buf + emit, n - emit);
	d->held = n - emit;
	*text = d->out;
	*len = emit;
	return 0;
}

int eng_detok_flush(eng_detok *d, const char **text, size_t *len)
{
	int rc;

	if (!d || !text || !len)
		return ENG_EINVAL;
	if ((rc = grow(&d->out, &d->out_cap, d->held + 1)))
		return rc;
	if (d->held)
		memcpy(d->out, d->buf, d->held);
	*text = d->out;
	*len = d->held;
	d->held = 0;
	return 0;
}

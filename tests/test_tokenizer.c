/* test_tokenizer.c - tokenizers and model descriptions on tiny fixture
 * models written by tests/gguf_writer.c: an SPM vocabulary ("llama") and a
 * byte-level BPE one ("gpt2") with each pre-tokenizer, with expected ids
 * worked out by hand from llama.cpp's algorithm (comments show the work).
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "gguf_writer.h"

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------
 * SPM fixture
 *
 *   0 <unk> UNKNOWN   1 <s> CONTROL   2 </s> CONTROL
 *   3 + b   <0xBB> BYTE for every byte b   (3 .. 258)
 *   259 "▁" -1    260 "a" -2    261 "b" -3    262 "c" -4
 *   263 "▁a" -1.5 264 "ab" -0.5 265 "▁ab" -0.2 266 "abc" -0.1
 *   267 "<t>" CONTROL  268 "<u>" USER_DEFINED  269 "" (empty) NORMAL
 *   270 "bc" -0.05
 * ------------------------------------------------------------------------ */

#define SP "\xe2\x96\x81"

static uint8_t *spm_file(size_t *n, int add_space_prefix, int arch)
{
	const char *tok[271];
	float score[271];
	int32_t type[271];
	char bytes[256][8];
	static const char *const extra[] = {
		SP, "a", "b", "c", SP "a", "ab", SP "ab", "abc", "<t>", "<u>",
		"", "bc",
	};
	static const float escore[] = {
		-1, -2, -3, -4, -1.5f, -0.5f, -0.2f, -0.1f, 0, 0, 0, -0.05f,
	};
	static const int32_t etype[] = { 1, 1, 1, 1, 1, 1, 1, 1, 3, 4, 1, 1 };
	uint64_t ne_embd[2] = { 32, 271 }, ne_norm[1] = { 32 };
	gw *w = gw_new(3);
	uint8_t *p;
	int i;

	tok[0] = "<unk>"; type[0] = 2; score[0] = 0;
	tok[1] = "<s>"; type[1] = 3; score[1] = 0;
	tok[2] = "</s>"; type[2] = 3; score[2] = 0;
	for (i = 0; i < 256; i++) {
		snprintf(bytes[i], sizeof bytes[i], "<0x%02X>", i);
		tok[3 + i] = bytes[i];
		type[3 + i] = 6;
		score[3 + i] = 0;
	}
	for (i = 0; i < (int)LEN(extra); i++) {
		tok[259 + i] = extra[i];
		score[259 + i] = escore[i];
		type[259 + i] = etype[i];
	}
	gw_kv_str(w, "general.architecture", arch ? "llama" : "gemma3");
	gw_kv_str(w, "general.name", "tiny spm");
	if (arch) {
		gw_kv_u32(w, "llama.context_length", 4096);
		gw_kv_u32(w, "llama.embedding_length", 32);
		gw_kv_u32(w, "llama.block_count", 2);
		gw_kv_u32(w, "llama.feed_forward_length", 64);
		gw_kv_u32(w, "llama.attention.head_count", 4);
		gw_kv_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
		gw_kv_str(w, "llama.rope.scaling.type", "linear");
		gw_kv_f32(w, "llama.rope.scaling.factor", 4.0f);
	} else {
		gw_kv_u32(w, "gemma3.context_length", 32768);
		gw_kv_u32(w, "gemma3.embedding_length", 32);
		gw_kv_u32(w, "gemma3.block_count", 6);
		gw_kv_u32(w, "gemma3.feed_forward_length", 64);
		gw_kv_u32(w, "gemma3.attention.head_count", 4);
		gw_kv_u32(w, "gemma3.attention.head_count_kv", 1);
		gw_kv_u32(w, "gemma3.attention.key_length", 16);
		gw_kv_u32(w, "gemma3.attention.value_length", 16);
		gw_kv_f32(w, "gemma3.attention.layer_norm_rms_epsilon", 1e-6f);
		gw_kv_f32(w, "gemma3.rope.freq_base", 1e6f);
		gw_kv_u32(w, "gemma3.attention.sliding_window", 512);
	}
	gw_kv_str(w, "tokenizer.ggml.model", "llama");
	gw_kv_arr_str(w, "tokenizer.ggml.tokens", tok, NULL, 271);
	gw_kv_arr(w, "tokenizer.ggml.scores", ENG_GGUF_FLOAT32, 271, score);
	gw_kv_arr(w, "tokenizer.ggml.token_type", ENG_GGUF_INT32, 271, type);
	gw_kv_u32(w, "tokenizer.ggml.bos_token_id", 1);
	gw_kv_u32(w, "tokenizer.ggml.eos_token_id", 2);
	if (add_space_prefix >= 0)
		gw_kv_bool(w, "tokenizer.ggml.add_space_prefix",
		    add_space_prefix);
	gw_tensor(w, "token_embd.weight", ENG_TYPE_Q8_0, 2, ne_embd, NULL);
	gw_tensor(w, "output_norm.weight", ENG_TYPE_F32, 1, ne_norm, NULL);
	p = gw_finish(w, n);
	gw_free(w);
	return p;
}

struct fixture {
	uint8_t   *bytes;
	eng_model *m;
};

/* n is read after bytes is built (argument order is unspecified). */
static const eng_vocab *open_fixture(struct fixture *f, uint8_t *bytes,
    const size_t *np)
{
	size_t n = *np;
	eng_gguf *g;
	char err[256];

	f->bytes = bytes;
	ck_assert_msg(eng_gguf_open_mem(bytes, n, &g, err, sizeof err) == 0,
	    "%s", err);
	ck_assert_msg(eng_model_open_gguf(g, &f->m, err, sizeof err) == 0,
	    "%s", err);
	return eng_model_vocab(f->m);
}

static void close_fixture(struct fixture *f)
{
	eng_model_close(f->m);
	free(f->bytes);
}

static void expect(const eng_vocab *v, const char *text, size_t len,
    int flags, const int32_t *want, size_t n_want)
{
	int32_t *ids;
	size_t n, i;

	ck_assert_int_eq(eng_tokenize(v, text, len, flags, &ids, &n), 0);
	for (i = 0; i < n && i < n_want; i++)
		ck_assert_msg(ids[i] == want[i], "'%.*s': id %zu is %d, want %d",
		    (int)len, text, i, ids[i], want[i]);
	ck_assert_msg(n == n_want, "'%.*s': %zu ids, want %zu", (int)len,
	    text, n, n_want);
	free(ids);
}

#define EXPECT(v, text, flags, ...) do { \
	static const int32_t w_[] = { __VA_ARGS__ }; \
	expect(v, text, strlen(text), flags, w_, LEN(w_)); \
} while (0)

#define ADD ENG_TOK_ADD_SPECIAL
#define PARSE ENG_TOK_PARSE_SPECIAL

START_TEST(spm_merges)
{
	struct fixture f;
	size_t n;
	const eng_vocab *v = open_fixture(&f, spm_file(&n, -1, 0), &n);

	ck_assert_int_eq(eng_vocab_kind(v), ENG_VOCAB_SPM);
	ck_assert_uint_eq(eng_vocab_size(v), 271);
	/* "▁ab": pairs ▁a (-1.5), ab (-0.5): ab first, then ▁ab (-0.2). */
	EXPECT(v, "ab", ADD, 1, 265);
	/* "▁abc": bc (-0.05) beats ab; then a+bc = abc (-0.1) beats ▁a;
	 * ▁abc is no token: ▁ abc. */
	EXPECT(v, "abc", ADD, 1, 259, 266);
	/* Not asked to add BOS. */
	EXPECT(v, "abc", 0, 259, 266);
	/* x is no token: byte fallback <0x78> = 3 + 0x78. */
	EXPECT(v, "x", ADD, 1, 259, 3 + 0x78);
	/* é: two byte tokens. */
	EXPECT(v, "\xc3\xa9", ADD, 1, 259, 3 + 0xc3, 3 + 0xa9);
	/* Spaces become ▁: "▁a▁b" -> ▁a ▁ b. */
	EXPECT(v, "a b", ADD, 1, 263, 259, 261);
	/* Empty text: only BOS. */
	EXPECT(v, "", ADD, 1);
	/* A lone continuation byte and a cut sequence fall back to bytes. */
	EXPECT(v, "\x80", 0, 259, 3 + 0x80);
	EXPECT(v, "a\xe2\x96", 0, 263, 3 + 0xe2, 3 + 0x96);
	/* The empty token got a placeholder text, as in llama.cpp. */
	ck_assert_int_eq(eng_vocab_find(v, "[EMPTY_269]", 11), 269);
	close_fixture(&f);
}
END_TEST

START_TEST(spm_special)
{
	struct fixture f;
	size_t n;
	const eng_vocab *v = open_fixture(&f, spm_file(&n, -1, 0), &n);

	/* CONTROL <t> is plain text unless parse_special:
	 * "▁a<t>b" -> ▁a < t > b. */
	EXPECT(v, "a<t>b", ADD, 1, 263, 3 + '<', 3 + 't', 3 + '>', 261);
	/* With it: "a" <t> "b", and the fragment after a special token gets
	 * the space prefix again: ▁a <t> ▁ b. */
	EXPECT(v, "a<t>b", ADD | PARSE, 1, 263, 267, 259, 261);
	/* USER_DEFINED <u> is matched even without parse_special. */
	EXPECT(v, "a<u>b", ADD, 1, 263, 268, 259, 261);
	/* With parse_special the BOS text is the BOS token. */
	EXPECT(v, "<s>", PARSE, 1);
	close_fixture(&f);
}
END_TEST

START_TEST(spm_no_space_prefix)
{
	struct fixture f;
	size_t n;
	const eng_vocab *v = open_fixture(&f, spm_file(&n, 0, 0), &n);

	/* Gemma-style: no leading ▁; "ab" merges to ab. */
	EXPECT(v, "ab", ADD, 1, 264);
	EXPECT(v, " ab", ADD, 1, 265);
	EXPECT(v, "a<t>b", ADD | PARSE, 1, 260, 267, 261);
	close_fixture(&f);
}
END_TEST

static char *detok_all(const eng_vocab *v, const int32_t *ids, size_t n,
    int special, size_t *len, size_t *max_step_held)
{
	eng_detok *d;
	const char *t;
	size_t tl, w = 0, i;
	char *out = malloc(1024);

	ck_assert_int_eq(eng_detok_open(v, special, &d), 0);
	*max_step_held = 0;
	for (i = 0; i < n; i++) {
		ck_assert_int_eq(eng_detok_push(d, ids[i], &t, &tl), 0);
		if (tl == 0)
			(*max_step_held)++;
		memcpy(out + w, t, tl);
		w += tl;
	}
	ck_assert_int_eq(eng_detok_flush(d, &t, &tl), 0);
	memcpy(out + w, t, tl);
	w += tl;
	eng_detok_close(d);
	*len = w;
	return out;
}

START_TEST(spm_detok)
{
	struct fixture f;
	size_t n, len, held;
	const eng_vocab *v = open_fixture(&f, spm_file(&n, -1, 0), &n);
	char buf[16], *s;
	/* <s> ▁a é(as bytes) ▁ <u> x */
	static const int32_t ids[] = { 1, 263, 3 + 0xc3, 3 + 0xa9, 259, 268,
	    3 + 'x' };
	static const int32_t cut[] = { 263, 3 + 0xe2, 3 + 0x96 };

	ck_assert_int_eq(eng_token_to_piece(v, 263, 0, buf, sizeof buf, &len),
	    0);
	ck_assert(len == 2 && memcmp(buf, " a", 2) == 0);
	ck_assert_int_eq(eng_token_to_piece(v, 1, 0, buf, sizeof buf, &len),
	    0);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(eng_token_to_piece(v, 1, 1, buf, sizeof buf, &len),
	    0);
	ck_assert(len == 3 && memcmp(buf, "<s>", 3) == 0);
	/* Too small a buffer: the full length comes back. */
	ck_assert_int_eq(eng_token_to_piece(v, 265, 0, buf, 1, &len), 0);
	ck_assert_uint_eq(len, 3);
	ck_assert_int_eq(eng_token_to_piece(v, 271, 0, buf, 1, &len),
	    ENG_EINVAL);
	ck_assert_int_eq(eng_token_to_piece(v, -1, 0, buf, 1, &len),
	    ENG_EINVAL);

	/* The stream holds 0xC3 back until 0xA9 completes é; BOS is hidden. */
	s = detok_all(v, ids, LEN(ids), 0, &len, &held);
	ck_assert_uint_eq(len, strlen(" a\xc3\xa9 <u>x"));
	ck_assert(memcmp(s, " a\xc3\xa9 <u>x", len) == 0);
	ck_assert_uint_eq(held, 2);	/* BOS (empty) and the lone 0xC3 */
	free(s);
	s = detok_all(v, ids, LEN(ids), 1, &len, &held);
	ck_assert(len == 12 && memcmp(s, "<s> a\xc3\xa9 <u>x", len) == 0);
	free(s);
	/* A sequence cut short comes out at the flush. */
	s = detok_all(v, cut, LEN(cut), 0, &len, &held);
	ck_assert(len == 4 && memcmp(s, " a\xe2\x96", 4) == 0);
	free(s);
	close_fixture(&f);
}
END_TEST

/* ------------------------------------------------------------------------
 * BPE fixture
 *
 * ids 0..255: the GPT-2 byte characters (id = byte), then
 *   256 he  257 ll  258 llo  259 hello  260 Ġw  261 or  262 Ġwor  263 ld
 *   264 Ġworld  265 <|endoftext|> (made CONTROL by its text)
 *   266 <|begin_of_text|> CONTROL  267 123  268 45  269 12  270 t'
 *   271 <tag> USER_DEFINED
 * merges by rank: h e, l l, ll o, he llo, Ġ w, o r, Ġw or, l d,
 *   Ġwor ld, 1 2, 12 3, 4 5, t '
 * ------------------------------------------------------------------------ */

static size_t byte_char(int b, char *out)
{
	int n = 0, c;
	unsigned cp;

	if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae) {
		cp = (unsigned)b;
	} else {
		for (c = 0; c < b; c++)
			if (!((c >= 0x21 && c <= 0x7e) ||
			    (c >= 0xa1 && c <= 0xac) || c >= 0xae))
				n++;
		cp = 256u + (unsigned)n;
	}
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	out[0] = (char)(0xc0 | (cp >> 6));
	out[1] = (char)(0x80 | (cp & 0x3f));
	return 2;
}

static uint8_t *bpe_file(size_t *n, const char *pre)
{
	static const char *const extra[] = {
		"he", "ll", "llo", "hello", "\xc4\xa0w", "or", "\xc4\xa0wor",
		"ld", "\xc4\xa0world", "<|endoftext|>", "<|begin_of_text|>",
		"123", "45", "12", "t'", "<tag>",
	};
	static const char *const merges[] = {
		"h e", "l l", "ll o", "he llo", "\xc4\xa0 w", "o r",
		"\xc4\xa0w or", "l d", "\xc4\xa0wor ld", "1 2", "12 3", "4 5",
		"t '",
	};
	const char *tok[272];
	size_t lens[272];
	int32_t type[272];
	char bytes[256][4];
	uint64_t ne[2] = { 32, 272 };
	gw *w = gw_new(3);
	uint8_t *p;
	int i;

	for (i = 0; i < 256; i++) {
		lens[i] = byte_char(i, bytes[i]);
		tok[i] = bytes[i];
		type[i] = 1;
	}
	for (i = 0; i < (int)LEN(extra); i++) {
		tok[256 + i] = extra[i];
		lens[256 + i] = strlen(extra[i]);
		type[256 + i] = 1;
	}
	type[266] = 3;
	type[271] = 4;
	gw_kv_str(w, "general.architecture", "qwen2");
	gw_kv_u32(w, "qwen2.context_length", 32768);
	gw_kv_u32(w, "qwen2.embedding_length", 32);
	gw_kv_u32(w, "qwen2.block_count", 2);
	gw_kv_u32(w, "qwen2.feed_forward_length", 64);
	gw_kv_u32(w, "qwen2.attention.head_count", 4);
	gw_kv_u32(w, "qwen2.attention.head_count_kv", 2);
	gw_kv_f32(w, "qwen2.attention.layer_norm_rms_epsilon", 1e-6f);
	gw_kv_f32(w, "qwen2.rope.freq_base", 1e6f);
	gw_kv_str(w, "tokenizer.ggml.model", "gpt2");
	if (pre)
		gw_kv_str(w, "tokenizer.ggml.pre", pre);
	gw_kv_arr_str(w, "tokenizer.ggml.tokens", tok, lens, 272);
	gw_kv_arr(w, "tokenizer.ggml.token_type", ENG_GGUF_INT32, 272, type);
	gw_kv_arr_str(w, "tokenizer.ggml.merges", merges, NULL, LEN(merges));
	gw_kv_u32(w, "tokenizer.ggml.bos_token_id", 266);
	gw_kv_u32(w, "tokenizer.ggml.eos_token_id", 265);
	gw_tensor(w, "token_embd.weight", ENG_TYPE_F16, 2, ne, NULL);
	p = gw_finish(w, n);
	gw_free(w);
	return p;
}

START_TEST(bpe_llama3)
{
	struct fixture f;
	size_t n;
	const eng_vocab *v = open_fixture(&f, bpe_file(&n, "llama-bpe"), &n);

	ck_assert_int_eq(eng_vocab_kind(v), ENG_VOCAB_BPE);
	/* llama3 adds BOS by default; whole words in the vocabulary are taken
	 * as they are (ignore_merges): "hello" " world". */
	EXPECT(v, "hello world", ADD, 266, 259, 264);
	/* \p{N}{1,3}: "123" "45". */
	EXPECT(v, "12345", 0, 267, 268);
	/* Contractions split first: "it" "'s", so t' never merges. */
	EXPECT(v, "it's", 0, 'i', 't', '\'', 's');
	EXPECT(v, "IT'S", 0, 'I', 'T', '\'', 'S');
	/* é: bytes C3 A9 map to themselves. */
	EXPECT(v, "\xc3\xa9", 0, 0xc3, 0xa9);
	/* Invalid UTF-8 becomes U+FFFD (EF BF BD), as in llama.cpp. */
	EXPECT(v, "\xff", 0, 0xef, 0xbf, 0xbd);
	/* \s*[\r\n]+ keeps "\n\n" together; here it only shows in ids as
	 * two newline bytes (Ċ = id 10). */
	EXPECT(v, "a\n\nb", 0, 'a', 10, 10, 'b');
	/* CONTROL text only with parse_special; USER_DEFINED always. */
	EXPECT(v, "<|endoftext|>", PARSE, 265);
	EXPECT(v, "x<tag>", 0, 'x', 271);
	ck_assert_int_eq(eng_vocab_eot(v), 265);
	close_fixture(&f);
}
END_TEST

START_TEST(bpe_qwen2)
{
	struct fixture f;
	size_t n;
	const eng_vocab *v = open_fixture(&f, bpe_file(&n, "qwen2"), &n);
	const eng_hparams *hp = eng_model_hparams(f.m);

	/* No ignore_merges: "hello" by merges h+e, l+l, ll+o, he+llo;
	 * " world" by Ġ+w, o+r, Ġw+or, l+d, Ġwor+ld.  No BOS by default. */
	EXPECT(v, "hello world", ADD, 259, 264);
	/* \p{N}: one digit per word, so no digit merges. */
	EXPECT(v, "12345", 0, '1', '2', '3', '4', '5');
	EXPECT(v, "it's", 0, 'i', 't', '\'', 's');
	/* <|endoftext|> is CONTROL (by its text): bytes without parsing. */
	EXPECT(v, "<|endoftext|>", 0, '<', '|', 'e', 'n', 'd', 'o', 'f', 't',
	    'e', 'x', 't', '|', '>');
	ck_assert_int_eq(hp->arch, ENG_ARCH_QWEN2);
	ck_assert_uint_eq(hp->n_head_kv, 2);
	ck_assert_uint_eq(hp->head_dim_k, 8);
	ck_assert_uint_eq(hp->swa_pattern, 0);
	close_fixture(&f);
}
END_TEST

START_TEST(bpe_default)
{
	struct fixture f;
	size_t n, len, held;
	const eng_vocab *v = open_fixture(&f, bpe_file(&n, NULL), &n);
	static const int32_t ids[] = { 259, 264, 0xc3, 0xa9 };
	char *s;

	/* gpt2 split, then \p{N}+, then [0-9]{3}: "123" "45" merged. */
	EXPECT(v, "12345", 0, 267, 268);
	/* The punctuation pass cuts "it" "'" "s" before anything merges. */
	EXPECT(v, "it's", 0, 'i', 't', '\'', 's');
	EXPECT(v, "hello world", 0, 259, 264);
	/* ... so the merge t + ' (a token) never happens. */
	EXPECT(v, "t'", 0, 't', '\'');
	s = detok_all(v, ids, LEN(ids), 0, &len, &held);
	ck_assert(len == 13 && memcmp(s, "hello world\xc3\xa9", len) == 0);
	free(s);
	close_fixture(&f);
}
END_TEST

/* ------------------------------------------------------------------------
 * BPE against llama.cpp
 *
 * A vocabulary of the 256 byte characters plus every pair of 106 common
 * byte characters, merged in a shuffled (but fixed) rank order, so that
 * any two neighbours in one pre-tokenizer word merge and the ids show
 * where the words end.  The expected ids were produced by llama.cpp's
 * llama-tokenize (commit 0c1e570, as for tests/golden) on the same file
 * written by this function, with --no-parse-special and BOS as the model
 * asks; they cover all three pre-tokenizers.
 * ------------------------------------------------------------------------ */

static uint8_t *pairs_file(size_t *np, const char *pre)
{
	static const int extra[] = {
		0x0a, 0x0d, 0x09, 0xc3, 0xa9, 0xe2, 0x80, 0x99, 0xce, 0xb1,
	};
	char bc[256][4];
	size_t bl[256], k = 256, m = 0, nt, i, j, q;
	int set[106], ns = 0, b, *ord;
	const char **tok, **mer;
	size_t *lens;
	int32_t *ty;
	char *strs;
	unsigned s = 12345;
	gw *w = gw_new(3);
	uint8_t *p;

	for (b = 0; b < 256; b++)
		bl[b] = byte_char(b, bc[b]);
	for (b = 0x20; b < 0x7f; b++)
		set[ns++] = b;
	for (i = 0; i < LEN(extra); i++)
		set[ns++] = extra[i];
	nt = 256 + (size_t)ns * ns + 3;
	tok = calloc(nt, sizeof *tok);
	lens = calloc(nt, sizeof *lens);
	ty = calloc(nt, sizeof *ty);
	mer = calloc((size_t)ns * ns, sizeof *mer);
	ord = malloc((size_t)ns * ns * sizeof *ord);
	strs = malloc((size_t)ns * ns * 16);
	for (b = 0; b < 256; b++) {
		tok[b] = bc[b];
		lens[b] = bl[b];
		ty[b] = 1;
	}
	for (i = 0; i < (size_t)ns * ns; i++)
		ord[i] = (int)i;
	for (i = (size_t)ns * ns - 1; i > 0; i--) {	/* a fixed LCG shuffle */
		int t;
		s = s * 1103515245u + 12345u;
		j = (s >> 8) % (i + 1);
		t = ord[i]; ord[i] = ord[j]; ord[j] = t;
	}
	for (q = 0; q < (size_t)ns * ns; q++) {
		int x = set[ord[q] / ns], y = set[ord[q] % ns];
		char *t = strs + q * 16, *mm = t + 6;
		memcpy(t, bc[x], bl[x]);
		memcpy(t + bl[x], bc[y], bl[y]);
		tok[k] = t;
		lens[k] = bl[x] + bl[y];
		ty[k++] = 1;
		memcpy(mm, bc[x], bl[x]);
		mm[bl[x]] = ' ';
		memcpy(mm + bl[x] + 1, bc[y], bl[y]);
		mm[bl[x] + 1 + bl[y]] = 0;
		mer[m++] = mm;
	}
	tok[k] = "<|endoftext|>"; lens[k] = 13; ty[k++] = 3;
	tok[k] = "<|im_start|>"; lens[k] = 12; ty[k++] = 3;
	tok[k] = "<tag>"; lens[k] = 5; ty[k++] = 4;
	gw_kv_str(w, "tokenizer.ggml.model", "gpt2");
	if (pre[0])
		gw_kv_str(w, "tokenizer.ggml.pre", pre);
	gw_kv_arr_str(w, "tokenizer.ggml.tokens", tok, lens, k);
	gw_kv_arr(w, "tokenizer.ggml.token_type", ENG_GGUF_INT32, k, ty);
	gw_kv_arr_str(w, "tokenizer.ggml.merges", mer, NULL, m);
	gw_kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)k - 3);
	gw_kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)k - 3);
	p = gw_finish(w, np);
	gw_free(w);
	free(tok); free(lens); free(ty); free(mer); free(ord); free(strs);
	return p;
}

static const char *const pair_texts[8] = {
	"it's IT'S we'll 'd  x",
	"12345 1234567 \xc2""\xbd""\xc2""\xb2""\xc2""\xb3"" \xd9""\xa3""\xd9""\xa4""\xd9""\xa5""",
	"a\x0d""\x0a""\x0d""\x0a""  b \x09""\x0a"" c",
	"  hello   world  ",
	"...!!!??? $+<=>^~| `",
	"\xe2""\x80""\x99""s na\xc3""\xaf""ve caf\xc3""\xa9"" \xce""\xb1""\xce""\xb2""",
	"\xc2""\xa0""\xe2""\x80""\x83""x\xe3""\x80""\x80""y\x0a""",
	"<|endoftext|> <tag>x",
};

static const int32_t pair_llama3_0[] = {
	11281, 8287, 9099, 32, 3940, 7019, 10489, 101, 1361, 108, 582, 100,
	32, 6759
};
static const int32_t pair_llama3_1[] = {
	11281, 3807, 51, 8971, 32, 3807, 51, 52, 1464, 55, 32, 194, 189, 194,
	178, 194, 179, 32, 217, 163, 217, 164, 217, 165
};
static const int32_t pair_llama3_2[] = {
	11281, 97, 13, 3076, 10, 32, 3614, 32, 680, 6907
};
static const int32_t pair_llama3_3[] = {
	11281, 32, 3616, 1825, 3104, 2782, 32, 745, 114, 733, 2782
};
static const int32_t pair_llama3_4[] = {
	11281, 1395, 857, 4196, 2432, 63, 32, 4047, 3216, 62, 734, 124, 9992
};
static const int32_t pair_llama3_5[] = {
	11281, 1236, 2816, 32, 328, 195, 175, 10127, 6907, 97, 4136, 169, 32,
	3657, 206, 178
};
static const int32_t pair_llama3_6[] = {
	11281, 194, 160, 1236, 131, 120, 227, 128, 5132, 10
};
static const int32_t pair_llama3_7[] = {
	11281, 1296, 101, 5435, 8875, 9793, 3283, 10393, 32, 11283, 120
};
static const int32_t pair_qwen2_0[] = {
	8287, 9099, 32, 3940, 7019, 10489, 101, 1361, 108, 582, 100, 32, 6759
};
static const int32_t pair_qwen2_1[] = {
	49, 50, 51, 52, 53, 32, 49, 50, 51, 52, 53, 54, 55, 32, 194, 189, 194,
	178, 194, 179, 32, 217, 163, 217, 164, 217, 165
};
static const int32_t pair_qwen2_2[] = {
	97, 13, 3076, 10, 32, 3614, 32, 680, 6907
};
static const int32_t pair_qwen2_3[] = {
	32, 3616, 1825, 3104, 2782, 32, 745, 114, 733, 2782
};
static const int32_t pair_qwen2_4[] = {
	1395, 857, 4196, 2432, 63, 32, 4047, 3216, 62, 734, 124, 9992
};
static const int32_t pair_qwen2_5[] = {
	1236, 2816, 32, 328, 195, 175, 10127, 6907, 97, 4136, 169, 32, 3657,
	206, 178
};
static const int32_t pair_qwen2_6[] = {
	194, 160, 1236, 131, 120, 227, 128, 5132, 10
};
static const int32_t pair_qwen2_7[] = {
	1296, 101, 5435, 8875, 9793, 3283, 10393, 32, 11283, 120
};
static const int32_t pair_default_0[] = {
	8287, 39, 115, 32, 3940, 39, 83, 10489, 101, 39, 7558, 32, 39, 100,
	32, 6759
};
static const int32_t pair_default_1[] = {
	3807, 51, 8971, 32, 3807, 51, 52, 1464, 55, 32, 194, 189, 194, 178,
	194, 179, 32, 217, 163, 217, 164, 217, 165
};
static const int32_t pair_default_2[] = {
	97, 13, 3076, 11010, 3614, 32, 680, 6907
};
static const int32_t pair_default_3[] = {
	32, 3616, 1825, 3104, 2782, 32, 745, 114, 733, 2782
};
static const int32_t pair_default_4[] = {
	1395, 857, 4196, 2432, 63, 32, 4047, 3216, 62, 734, 124, 9992
};
static const int32_t pair_default_5[] = {
	1236, 153, 115, 32, 328, 195, 175, 10127, 6907, 97, 4136, 169, 32,
	3657, 206, 178
};
static const int32_t pair_default_6[] = {
	194, 160, 1236, 131, 120, 227, 9937, 121, 10
};
static const int32_t pair_default_7[] = {
	1296, 101, 5435, 8875, 9793, 3283, 10393, 32, 11283, 120
};

struct pair_want {
	const int32_t *ids;
	size_t         n;
};
#define PW(a) { a, LEN(a) }
static const struct {
	const char      *pre;
	struct pair_want want[8];
} pair_cases[3] = {
	{ "llama-bpe", {
		PW(pair_llama3_0),
		PW(pair_llama3_1),
		PW(pair_llama3_2),
		PW(pair_llama3_3),
		PW(pair_llama3_4),
		PW(pair_llama3_5),
		PW(pair_llama3_6),
		PW(pair_llama3_7),
	} },
	{ "qwen2", {
		PW(pair_qwen2_0),
		PW(pair_qwen2_1),
		PW(pair_qwen2_2),
		PW(pair_qwen2_3),
		PW(pair_qwen2_4),
		PW(pair_qwen2_5),
		PW(pair_qwen2_6),
		PW(pair_qwen2_7),
	} },
	{ "", {
		PW(pair_default_0),
		PW(pair_default_1),
		PW(pair_default_2),
		PW(pair_default_3),
		PW(pair_default_4),
		PW(pair_default_5),
		PW(pair_default_6),
		PW(pair_default_7),
	} },
};

START_TEST(bpe_vs_llamacpp)
{
	size_t n, i;
	uint8_t *p = pairs_file(&n, pair_cases[_i].pre);
	eng_gguf *g;
	eng_vocab *v;
	char err[256];

	ck_assert_int_eq(eng_gguf_open_mem(p, n, &g, NULL, 0), 0);
	ck_assert_msg(eng_vocab_open(g, &v, err, sizeof err) == 0, "%s", err);
	for (i = 0; i < 8; i++)
		expect(v, pair_texts[i], strlen(pair_texts[i]), ADD,
		    pair_cases[_i].want[i].ids, pair_cases[_i].want[i].n);
	eng_vocab_close(v);
	eng_gguf_close(g);
	free(p);
}
END_TEST

/* ------------------------------------------------------------------------
 * Model descriptions
 * ------------------------------------------------------------------------ */

START_TEST(model_gemma3)
{
	struct fixture f;
	size_t n;
	const eng_hparams *hp;
	const eng_model_info *in;

	open_fixture(&f, spm_file(&n, 0, 0), &n);
	hp = eng_model_hparams(f.m);
	in = eng_model_info_get(f.m);
	ck_assert_int_eq(hp->arch, ENG_ARCH_GEMMA3);
	ck_assert_uint_eq(hp->n_layer, 6);
	ck_assert_uint_eq(hp->n_head_kv, 1);
	ck_assert_uint_eq(hp->head_dim_k, 16);
	ck_assert_uint_eq(hp->n_rot, 16);
	ck_assert_uint_eq(hp->sliding_window, 512);
	ck_assert_uint_eq(hp->swa_pattern, 6);
	ck_assert_float_eq(hp->rope_base, 1e6f);
	ck_assert_float_eq(hp->rope_base_local, 1e4f);
	ck_assert_uint_eq(hp->n_vocab, 271);
	ck_assert_str_eq(in->name, "tiny spm");
	ck_assert_str_eq(in->arch, "gemma3");
	ck_assert_uint_eq(in->n_params, 32 * 271 + 32);
	ck_assert_uint_eq(in->n_types, 2);
	ck_assert_int_eq(in->types[0].type, ENG_TYPE_F32);
	ck_assert_uint_eq(in->types[0].n_tensors, 1);
	ck_assert_int_eq(in->types[1].type, ENG_TYPE_Q8_0);
	ck_assert_uint_eq(strlen(in->fingerprint), 32);
	ck_assert_uint_eq(in->file_size, n);
	close_fixture(&f);
}
END_TEST

START_TEST(model_llama_defaults)
{
	struct fixture f;
	size_t n;
	const eng_hparams *hp;

	open_fixture(&f, spm_file(&n, -1, 1), &n);
	hp = eng_model_hparams(f.m);
	ck_assert_int_eq(hp->arch, ENG_ARCH_LLAMA);
	ck_assert_uint_eq(hp->n_head_kv, 4);	/* default: n_head */
	ck_assert_uint_eq(hp->head_dim_k, 8);	/* n_embd / n_head */
	ck_assert_uint_eq(hp->head_dim_v, 8);
	ck_assert_float_eq(hp->rope_base, 10000.0f);
	ck_assert_uint_eq(hp->swa_pattern, 0);
	ck_assert_int_eq(hp->rope_scaling, ENG_ROPE_SCALING_LINEAR);
	ck_assert_float_eq(hp->rope_scale_factor, 4.0f);
	close_fixture(&f);
}
END_TEST

START_TEST(model_fingerprint)
{
	size_t n;
	uint8_t *a = spm_file(&n, 0, 0), *b = malloc(n);
	eng_gguf *g;
	eng_model *m1, *m2;
	char fp[33];
	const eng_gguf_tensor *t;

	memcpy(b, a, n);
	ck_assert_int_eq(eng_gguf_open_mem(a, n, &g, NULL, 0), 0);
	ck_assert_int_eq(eng_model_open_gguf(g, &m1, NULL, 0), 0);
	memcpy(fp, eng_model_info_get(m1)->fingerprint, 33);
	/* One byte of tensor data changed: another fingerprint. */
	t = eng_gguf_tensor_find(eng_model_gguf(m1), "output_norm.weight");
	b[t->offset + 3] ^= 1;
	ck_assert_int_eq(eng_gguf_open_mem(b, n, &g, NULL, 0), 0);
	ck_assert_int_eq(eng_model_open_gguf(g, &m2, NULL, 0), 0);
	ck_assert_str_ne(fp, eng_model_info_get(m2)->fingerprint);
	eng_model_close(m2);
	/* The same bytes: the same fingerprint. */
	b[t->offset + 3] ^= 1;
	ck_assert_int_eq(eng_gguf_open_mem(b, n, &g, NULL, 0), 0);
	ck_assert_int_eq(eng_model_open_gguf(g, &m2, NULL, 0), 0);
	ck_assert_str_eq(fp, eng_model_info_get(m2)->fingerprint);
	eng_model_close(m2);
	eng_model_close(m1);
	free(a);
	free(b);
}
END_TEST

/* A model whose architecture or keys are wrong is refused by name. */
START_TEST(model_refused)
{
	static const struct {
		const char *arch;
		int drop_layers;
		int rc;
		const char *msg;
	} cases[] = {
		{ "mamba", 0, ENG_EUNSUP, "'mamba'" },
		{ "llama", 1, ENG_ENOKEY, "llama.block_count" },
	};
	size_t i;

	for (i = 0; i < LEN(cases); i++) {
		gw *w = gw_new(3);
		eng_gguf *g;
		eng_model *m = NULL;
		char err[256] = "";
		size_t n;
		uint8_t *p;
		int rc;

		gw_kv_str(w, "general.architecture", cases[i].arch);
		gw_kv_u32(w, "llama.context_length", 4096);
		gw_kv_u32(w, "llama.embedding_length", 32);
		if (!cases[i].drop_layers)
			gw_kv_u32(w, "llama.block_count", 2);
		gw_kv_u32(w, "llama.feed_forward_length", 64);
		gw_kv_u32(w, "llama.attention.head_count", 4);
		gw_kv_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
		p = gw_finish(w, &n);
		ck_assert_int_eq(eng_gguf_open_mem(p, n, &g, NULL, 0), 0);
		rc = eng_model_open_gguf(g, &m, err, sizeof err);
		ck_assert_int_eq(rc, cases[i].rc);
		ck_assert_ptr_null(m);
		ck_assert_msg(strstr(err, cases[i].msg) != NULL,
		    "message '%s' lacks '%s'", err, cases[i].msg);
		gw_free(w);
		free(p);
	}
}
END_TEST

/* A tokenizer kind we do not know is refused; tokens without merges too. */
START_TEST(vocab_refused)
{
	static const char *const toks[] = { "a", "b" };
	gw *w = gw_new(3);
	eng_gguf *g;
	eng_vocab *v = NULL;
	char err[256];
	size_t n;
	uint8_t *p;

	gw_kv_str(w, "tokenizer.ggml.model", "gpt2");
	gw_kv_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 2);
	p = gw_finish(w, &n);
	ck_assert_int_eq(eng_gguf_open_mem(p, n, &g, NULL, 0), 0);
	ck_assert_int_eq(eng_vocab_open(g, &v, err, sizeof err), ENG_ENOKEY);
	ck_assert(strstr(err, "tokenizer.ggml.merges") != NULL);
	ck_assert_ptr_null(v);
	eng_gguf_close(g);
	gw_free(w);
	free(p);

	w = gw_new(3);
	gw_kv_str(w, "tokenizer.ggml.model", "t5");
	p = gw_finish(w, &n);
	ck_assert_int_eq(eng_gguf_open_mem(p, n, &g, NULL, 0), 0);
	ck_assert_int_eq(eng_vocab_open(g, &v, err, sizeof err), ENG_EUNSUP);
	ck_assert(strstr(err, "'t5'") != NULL);
	eng_gguf_close(g);
	gw_free(w);
	free(p);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("tokenizer");
	TCase *spm = tcase_create("spm");
	TCase *bpe = tcase_create("bpe");
	TCase *model = tcase_create("model");

	tcase_add_test(spm, spm_merges);
	tcase_add_test(spm, spm_special);
	tcase_add_test(spm, spm_no_space_prefix);
	tcase_add_test(spm, spm_detok);
	suite_add_tcase(s, spm);
	tcase_add_test(bpe, bpe_llama3);
	tcase_add_test(bpe, bpe_qwen2);
	tcase_add_test(bpe, bpe_default);
	tcase_add_loop_test(bpe, bpe_vs_llamacpp, 0, 3);
	suite_add_tcase(s, bpe);
	tcase_add_test(model, model_gemma3);
	tcase_add_test(model, model_llama_defaults);
	tcase_add_test(model, model_fingerprint);
	tcase_add_test(model, model_refused);
	tcase_add_test(model, vocab_refused);
	suite_add_tcase(s, model);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

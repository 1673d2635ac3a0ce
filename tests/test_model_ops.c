/* test_model_ops.c - the model through engramd: `engramctl model`,
 * `tokenize` and `detokenize` on the default model (ENGRAM_TEST_MODEL),
 * checked against the engine in process and against llama.cpp's golden ids,
 * and every bad input we could think of. */
#include "config.h"
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "daemon_harness.h"
#include "engine.h"
#include "text.h"

static th_daemon D;
static const char *model_path;

static void need_model(void)
{
	model_path = getenv("ENGRAM_TEST_MODEL");
	ck_assert_msg(model_path && access(model_path, R_OK) == 0,
		      "ENGRAM_TEST_MODEL must name the default model's GGUF (scripts/test sets it)");
}

static void start_with_model(void)
{
	need_model();
	const char *extra[] = { "--model", model_path, NULL };
	memset(&D, 0, sizeof(D));
	th_start(&D, extra);
}

static void teardown(void)
{
	if (D.pid > 0)
		th_signal_wait(&D, SIGKILL);
	if (D.dir[0])
		th_rmdir(D.dir);
	memset(&D, 0, sizeof(D));
}

static int contains(const char *hay, const char *needle)
{
	return hay && strstr(hay, needle) != NULL;
}

START_TEST(test_model_info)
{
	char *out = NULL;
	start_with_model();
	const char *a[] = { "--socket", D.sock, "model", NULL };
	ck_assert_int_eq(th_ctl(a, NULL, &out, NULL), 0);
	ck_assert_msg(contains(out, "gemma3") && contains(out, "262144") && contains(out, "Q4_K"),
		      "model said: %s", out);
	free(out);
	const char *j[] = { "--socket", D.sock, "--json", "model", NULL };
	ck_assert_int_eq(th_ctl(j, NULL, &out, NULL), 0);
	json_t *ev = json_loads(out, 0, NULL);
	free(out);
	ck_assert_str_eq(json_string_value(json_object_get(ev, "arch")), "gemma3");
	ck_assert_int_eq(json_integer_value(json_object_get(ev, "vocab_size")), 262144);
	ck_assert_int_eq(json_integer_value(json_object_get(ev, "context_length")), 32768);
	json_int_t params = json_integer_value(json_object_get(ev, "parameters"));
	ck_assert_msg(params > 250000000 && params < 300000000, "parameters %lld", (long long)params);
	const char *fp = json_string_value(json_object_get(ev, "fingerprint"));
	ck_assert_uint_eq(strlen(fp), 32);
	ck_assert_uint_eq(strspn(fp, "0123456789abcdef"), 32);
	json_t *hp = json_object_get(ev, "hparams");
	ck_assert_int_eq(json_integer_value(json_object_get(hp, "layers")), 18);
	ck_assert_int_eq(json_integer_value(json_object_get(hp, "kv_heads")), 1);
	json_decref(ev);
	/* status names the model too */
	ev = th_roundtrip(D.sock, "{\"id\":1,\"op\":\"status\"}");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(ev, "model"), "arch")), "gemma3");
	json_decref(ev);
}
END_TEST

/* Parses "1 2 3" into ids; returns the count. */
static size_t parse_ids(const char *s, int32_t *ids, size_t cap)
{
	size_t n = 0;
	char *end;
	while (*s && n < cap) {
		long v = strtol(s, &end, 10);
		if (end == s)
			break;
		ids[n++] = (int32_t)v;
		s = end;
	}
	return n;
}

static unsigned char *unhex(const char *h, size_t *n)
{
	size_t k = strlen(h) / 2;
	unsigned char *b = malloc(k + 1);
	for (size_t i = 0; i < k; i++)
		sscanf(h + 2 * i, "%2hhx", &b[i]);
	*n = k;
	return b;
}

/* Every line of llama.cpp's golden ids, asked of the daemon over one
 * connection, pipelined, as raw bytes (base64 "data"). */
static void check_golden_file(const char *file, int parse_special)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/tests/golden/%s", getenv("ENGRAM_SRCDIR"), file);
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	int fd = th_connect(D.sock);
	char *line = NULL;
	size_t cap = 0;
	int n = 0, bad = 0;
	while (getline(&line, &cap, f) > 0) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		line[strcspn(line, "\n")] = 0;
		/* Fields may be empty (the empty string): split on each tab. */
		char *rest = line;
		char *name = strsep(&rest, "\t"), *hex = strsep(&rest, "\t"), *ids = rest;
		ck_assert_ptr_nonnull(name);
		size_t len = 0;
		unsigned char *raw = unhex(hex ? hex : "", &len);
		char *b64 = malloc(ed_b64_encoded_len(len) + 1);
		ed_b64_encode(raw, len, b64);
		b64[ed_b64_encoded_len(len)] = 0;
		json_t *req = json_pack("{s:i,s:s,s:s,s:b}", "id", n, "op", "tokenize",
					"data", b64, "parse_special", parse_special);
		char *s = json_dumps(req, JSON_COMPACT);
		th_send(fd, s, strlen(s));
		th_send(fd, "\n", 1);
		free(s);
		json_decref(req);
		/* Read this request's events: tokens..., done. */
		int32_t want[65536], got[65536];
		size_t nw = parse_ids(ids ? ids : "", want, 65536), ng = 0;
		for (;;) {
			json_t *ev = th_read_json(fd, 60000);
			ck_assert_msg(ev != NULL, "%s: no reply", name);
			ck_assert_int_eq(json_integer_value(json_object_get(ev, "id")), n);
			const char *e = json_string_value(json_object_get(ev, "event"));
			if (!strcmp(e, "tokens")) {
				json_t *a = json_object_get(ev, "ids");
				for (size_t i = 0; i < json_array_size(a) && ng < 65536; i++)
					got[ng++] = json_integer_value(json_array_get(a, i));
				json_decref(ev);
				continue;
			}
			ck_assert_msg(!strcmp(e, "done"), "%s: %s", name, e);
			json_decref(ev);
			break;
		}
		if (ng != nw || memcmp(got, want, ng * sizeof(int32_t))) {
			if (bad++ < 5)
				fprintf(stderr, "%s %s: daemon gave %zu ids, llama.cpp %zu\n", file, name, ng, nw);
		}
		free(raw);
		free(b64);
		n++;
	}
	free(line);
	fclose(f);
	th_close(fd);
	ck_assert_msg(n >= 10, "%s has only %d cases", file, n);
	ck_assert_msg(bad == 0, "%s: %d of %d strings differ from llama.cpp", file, bad, n);
}

START_TEST(test_tokenize_golden_via_daemon)
{
	start_with_model();
	check_golden_file("tokenizer-gemma3.tsv", 0);
	check_golden_file("tokenizer-gemma3-special.tsv", 1);
}
END_TEST

/* engramctl tokenize on a 3 MB standard input (sent in parts) gives what
 * the engine gives in process; detokenize gives the text back. */
START_TEST(test_tokenize_stdin_large)
{
	start_with_model();
	char tmp[400];
	snprintf(tmp, sizeof(tmp), "%s/big.txt", D.dir);
	FILE *f = fopen(tmp, "w");
	size_t len = 0;
	for (int i = 0; len < (3u << 20); i++)
		len += fprintf(f, "int f%d(void) { return %d * x; } /* caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac */\n", i, i);
	fputs("\xff\xfe tail", f);	/* and bytes that are not UTF-8 */
	len += 7;
	fclose(f);

	char cmd[4096];
	snprintf(cmd, sizeof(cmd), "'%s' --socket '%s' tokenize - < '%s' > '%s.ids'",
		 getenv("ENGRAMCTL"), D.sock, tmp, tmp);
	ck_assert_int_eq(system(cmd), 0);

	eng_model *m;
	char err[256];
	ck_assert_int_eq(eng_model_open(model_path, &m, err, sizeof(err)), 0);
	char *text = malloc(len);
	f = fopen(tmp, "r");
	ck_assert_uint_eq(fread(text, 1, len, f), len);
	fclose(f);
	int32_t *ids;
	size_t n;
	ck_assert_int_eq(eng_tokenize(eng_model_vocab(m), text, len, ENG_TOK_ADD_SPECIAL, &ids, &n), 0);
	ck_assert_uint_gt(n, 100000);

	snprintf(cmd, sizeof(cmd), "%s.ids", tmp);
	f = fopen(cmd, "r");
	size_t k = 0;
	long v;
	while (fscanf(f, "%ld", &v) == 1) {
		ck_assert_uint_lt(k, n);
		ck_assert_msg(v == ids[k], "id %zu: daemon %ld, engine %d", k, v, ids[k]);
		k++;
	}
	fclose(f);
	ck_assert_uint_eq(k, n);
	free(ids);
	free(text);
	eng_model_close(m);
}
END_TEST

START_TEST(test_detokenize_roundtrip)
{
	char *out = NULL;
	start_with_model();
	const char *t[] = { "--socket", D.sock, "tokenize", "--no-bos",
			    "Hello, w\xc3\xb6rld! \xf0\x9f\x91\x8b\xf0\x9f\x8f\xbd  spaces\n\tand tabs", NULL };
	ck_assert_int_eq(th_ctl(t, NULL, &out, NULL), 0);
	const char *args[128] = { "--socket", D.sock, "detokenize" };
	int na = 3;
	char *save, *tok = strtok_r(out, " \n", &save);
	while (tok && na < 126) {
		args[na++] = tok;
		tok = strtok_r(NULL, " \n", &save);
	}
	args[na] = NULL;
	ck_assert_int_gt(na, 5);
	char *text = NULL;
	ck_assert_int_eq(th_ctl(args, NULL, &text, NULL), 0);
	ck_assert_str_eq(text, "Hello, w\xc3\xb6rld! \xf0\x9f\x91\x8b\xf0\x9f\x8f\xbd  spaces\n\tand tabs\n");
	free(text);
	free(out);
	/* --pieces: one id and piece a line, the BOS first. */
	const char *p[] = { "--socket", D.sock, "tokenize", "--pieces", "Hi there", NULL };
	ck_assert_int_eq(th_ctl(p, NULL, &out, NULL), 0);
	ck_assert_msg(!strncmp(out, "2\t\"<bos>\"\n", 10), "pieces: %s", out);
	ck_assert(contains(out, "\" there\""));
	free(out);
}
END_TEST

START_TEST(test_bad_input)
{
	char *err = NULL;
	start_with_model();
	/* engramctl refuses what is not an id before asking (2), and passes on
	 * the daemon's refusal of an id out of range (1). */
	const char *a1[] = { "--socket", D.sock, "detokenize", "12x", NULL };
	ck_assert_int_eq(th_ctl(a1, NULL, NULL, NULL), 2);
	const char *a2[] = { "--socket", D.sock, "detokenize", "-1", NULL };
	ck_assert_int_eq(th_ctl(a2, NULL, NULL, NULL), 2);
	const char *a3[] = { "--socket", D.sock, "detokenize", "262144", NULL };
	ck_assert_int_eq(th_ctl(a3, NULL, NULL, &err), 1);
	ck_assert_msg(contains(err, "invalid_argument"), "stderr: %s", err);
	free(err);
	const char *a4[] = { "--socket", D.sock, "tokenize", NULL };
	ck_assert_int_eq(th_ctl(a4, NULL, NULL, NULL), 2);
	const char *a5[] = { "--socket", D.sock, "tokenize", "a", "b", NULL };
	ck_assert_int_eq(th_ctl(a5, NULL, NULL, NULL), 2);
	const char *a6[] = { "--socket", D.sock, "detokenize", NULL };
	ck_assert_int_eq(th_ctl(a6, NULL, NULL, NULL), 2);

	/* Raw requests. */
	static const struct { const char *line; const char *code; } cases[] = {
		{ "{\"id\":1,\"op\":\"tokenize\"}", "missing_field" },
		{ "{\"id\":2,\"op\":\"tokenize\",\"text\":5}", "invalid_argument" },
		{ "{\"id\":3,\"op\":\"tokenize\",\"text\":\"a\",\"add_special\":\"yes\"}", "invalid_argument" },
		{ "{\"id\":4,\"op\":\"tokenize\",\"data\":\"!!!!\"}", "invalid_argument" },
		{ "{\"id\":5,\"op\":\"tokenize\",\"data\":\"YQ=\"}", "invalid_argument" },
		{ "{\"id\":6,\"op\":\"tokenize\",\"text\":\"a\",\"data\":\"YQ==\"}", "invalid_argument" },
		{ "{\"id\":7,\"op\":\"detokenize\"}", "missing_field" },
		{ "{\"id\":8,\"op\":\"detokenize\",\"ids\":\"1 2\"}", "invalid_argument" },
		{ "{\"id\":9,\"op\":\"detokenize\",\"ids\":[1,2.5]}", "invalid_argument" },
		{ "{\"id\":10,\"op\":\"detokenize\",\"ids\":[1,-3]}", "invalid_argument" },
		{ "{\"id\":11,\"op\":\"tokenize\",\"text\":\"a\",\"more\":1}", "invalid_argument" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *ev = th_roundtrip(D.sock, cases[i].line);
		ck_assert_msg(ev && th_err_code(ev) && !strcmp(th_err_code(ev), cases[i].code),
			      "case %zu: %s", i, ev ? th_err_code(ev) : "no reply");
		json_decref(ev);
	}
	/* Parts: another id in the middle of an upload is refused, and the
	 * connection goes on. */
	int fd = th_connect(D.sock);
	const char parts[] =
		"{\"id\":20,\"op\":\"tokenize\",\"text\":\"Hello\",\"more\":true}\n"
		"{\"id\":21,\"op\":\"tokenize\",\"text\":\"x\"}\n"
		"{\"id\":22,\"op\":\"tokenize\",\"text\":\"Hel\",\"more\":true}\n"
		"{\"id\":22,\"op\":\"tokenize\",\"text\":\"lo\",\"add_special\":false}\n";
	th_send(fd, parts, sizeof(parts) - 1);
	json_t *ev = th_read_json(fd, 10000);
	ck_assert_int_eq(json_integer_value(json_object_get(ev, "id")), 21);
	ck_assert_str_eq(th_err_code(ev), "bad_request");
	json_decref(ev);
	ev = th_read_json(fd, 10000);
	ck_assert_str_eq(json_string_value(json_object_get(ev, "event")), "tokens");
	json_t *ids = json_object_get(ev, "ids");
	ck_assert_int_eq(json_array_size(ids), 1);	/* "Hello" is one token */
	json_decref(ev);
	ev = th_read_json(fd, 10000);
	ck_assert_str_eq(json_string_value(json_object_get(ev, "event")), "done");
	ck_assert_int_eq(json_integer_value(json_object_get(ev, "n_bytes")), 5);
	json_decref(ev);
	/* Parts with no input, or empty ones (an empty first part crashed the
	 * sanitized daemon): the request runs on what there is; a part with
	 * another op is refused. */
	const char empty[] =
		"{\"id\":30,\"op\":\"ping\",\"more\":true}\n"
		"{\"id\":30,\"op\":\"ping\"}\n"
		"{\"id\":31,\"op\":\"tokenize\",\"text\":\"\",\"more\":true}\n"
		"{\"id\":31,\"op\":\"tokenize\",\"data\":\"\",\"add_special\":false}\n"
		"{\"id\":32,\"op\":\"tokenize\",\"text\":\"Hel\",\"more\":true}\n"
		"{\"id\":32,\"op\":\"detokenize\",\"ids\":[1]}\n"
		"{\"id\":33,\"op\":\"ping\"}\n";
	th_send(fd, empty, sizeof(empty) - 1);
	int seen = 0;	/* bit id - 30: its last event came (workers' in any order) */
	while (seen != 0xf) {
		ev = th_read_json(fd, 10000);
		ck_assert_ptr_nonnull(ev);
		long long id = json_integer_value(json_object_get(ev, "id"));
		const char *e = json_string_value(json_object_get(ev, "event"));
		ck_assert_msg(id >= 30 && id <= 33, "id %lld", id);
		if (id == 32) {
			ck_assert_str_eq(th_err_code(ev), "bad_request");
			ck_assert_ptr_nonnull(strstr(json_string_value(
			    json_object_get(json_object_get(ev, "error"),
			    "message")), "same 'op'"));
		} else {
			ck_assert_ptr_null(th_err_code(ev));
		}
		if (id == 31 && !strcmp(e, "done"))	/* tokenize "" */
			ck_assert_int_eq(json_integer_value(json_object_get(ev,
			    "n_bytes")), 0);
		if (id == 32 || !strcmp(e, "done"))
			seen |= 1 << (id - 30);
		json_decref(ev);
	}
	th_close(fd);
}
END_TEST

START_TEST(test_max_input)
{
	need_model();
	const char *extra[] = { "--model", model_path, "--set", "max_input=8K", NULL };
	th_start(&D, extra);
	char *big = malloc(20000);
	memset(big, 'a', 19999);
	big[19999] = 0;
	char tmp[400];
	snprintf(tmp, sizeof(tmp), "%s/in", D.dir);
	FILE *f = fopen(tmp, "w");
	fputs(big, f);
	fclose(f);
	char cmd[4096];
	snprintf(cmd, sizeof(cmd), "'%s' --socket '%s' tokenize - < '%s' 2>'%s.err'",
		 getenv("ENGRAMCTL"), D.sock, tmp, tmp);
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 1);
	snprintf(cmd, sizeof(cmd), "grep -q 'max_input' '%s.err'", tmp);
	ck_assert_int_eq(system(cmd), 0);
	free(big);
	json_t *ev = th_roundtrip(D.sock, "{\"id\":1,\"op\":\"ping\"}");
	ck_assert(json_is_true(json_object_get(ev, "pong")));
	json_decref(ev);
}
END_TEST

START_TEST(test_no_model)
{
	char *err = NULL;
	memset(&D, 0, sizeof(D));
	th_start(&D, NULL);	/* the harness passes --model none */
	const char *a[] = { "--socket", D.sock, "model", NULL };
	ck_assert_int_eq(th_ctl(a, NULL, NULL, &err), 1);
	ck_assert_msg(contains(err, "no_model"), "stderr: %s", err);
	free(err);
	const char *t[] = { "--socket", D.sock, "tokenize", "x", NULL };
	ck_assert_int_eq(th_ctl(t, NULL, NULL, NULL), 1);
}
END_TEST

/* A missing or broken model stops engramd at start, with a message that
 * names the file. */
START_TEST(test_bad_model_at_start)
{
	need_model();
	th_dirs(&D);
	char cmd[4096], bad[400];
	snprintf(cmd, sizeof(cmd), "'%s' -f --config /dev/null -s '%s' -d '%s' 2>'%s/err'",
		 getenv("ENGRAMD"), D.sock, D.data, D.dir);
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 1);	/* no default model in a new data dir */
	snprintf(cmd, sizeof(cmd), "grep -q 'models/gemma-3-270m-q4_k_m.gguf' '%s/err'", D.dir);
	ck_assert_int_eq(system(cmd), 0);

	snprintf(bad, sizeof(bad), "%s/truncated.gguf", D.dir);
	snprintf(cmd, sizeof(cmd), "head -c 1000000 '%s' > '%s'", model_path, bad);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "'%s' -f --config /dev/null -m '%s' -s '%s' -d '%s' 2>'%s/err'",
		 getenv("ENGRAMD"), bad, D.sock, D.data, D.dir);
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 1);
	snprintf(cmd, sizeof(cmd), "grep -q 'truncated.gguf' '%s/err'", D.dir);
	ck_assert_int_eq(system(cmd), 0);

	snprintf(cmd, sizeof(cmd), "printf 'not a model' > '%s'", bad);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "'%s' -f --config /dev/null -m '%s' -s '%s' -d '%s' 2>/dev/null",
		 getenv("ENGRAMD"), bad, D.sock, D.data);
	ck_assert_int_eq(WEXITSTATUS(system(cmd)), 1);
	ck_assert_int_ne(access(D.sock, F_OK), 0);	/* it never listened */
}
END_TEST

int main(void)
{
	Suite *s = suite_create("model_ops");
	TCase *tc = tcase_create("model_ops");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_model_info);
	tcase_add_test(tc, test_tokenize_golden_via_daemon);
	tcase_add_test(tc, test_tokenize_stdin_large);
	tcase_add_test(tc, test_detokenize_roundtrip);
	tcase_add_test(tc, test_bad_input);
	tcase_add_test(tc, test_max_input);
	tcase_add_test(tc, test_no_model);
	tcase_add_test(tc, test_bad_model_at_start);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

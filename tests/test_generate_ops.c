/* test_generate_ops.c - `generate` through engramd: streaming, the queue,
 * cancellation when the client leaves, bad arguments, and greedy output
 * equal to the engine's in process (itself checked against llama.cpp by
 * the engine's golden tests). */
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

static th_daemon D;
static const char *model_path;

static void start_with_model(void)
{
	model_path = getenv("ENGRAM_TEST_MODEL");
	ck_assert_msg(model_path && access(model_path, R_OK) == 0,
		      "ENGRAM_TEST_MODEL must name the default model's GGUF (scripts/test sets it)");
	const char *extra[] = { "--model", model_path, "--threads", "2", NULL };
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

struct collected {
	int32_t ids[512];
	int n;
	char text[8192];
	size_t len;
};

static int collect(void *ud, int32_t id, const char *text, size_t len)
{
	struct collected *c = ud;
	if (id >= 0 && c->n < 512)
		c->ids[c->n++] = id;
	if (c->len + len < sizeof(c->text)) {
		memcpy(c->text + c->len, text, len);
		c->len += len;
	}
	return 0;
}

/* The daemon's greedy tokens equal the engine's, run in process. */
START_TEST(test_greedy_matches_engine)
{
	start_with_model();
	const char *prompt = "The quick brown fox";
	int fd = th_connect(D.sock);
	const char req[] = "{\"id\":1,\"op\":\"generate\",\"text\":\"The quick brown fox\","
			   "\"temperature\":0,\"max_tokens\":24}\n";
	th_send(fd, req, sizeof(req) - 1);
	int32_t got[64];
	int n = 0, saw_prompt = 0;
	json_t *done = NULL;
	for (;;) {
		json_t *ev = th_read_json(fd, 120000);
		ck_assert_ptr_nonnull(ev);
		const char *e = json_string_value(json_object_get(ev, "event"));
		if (!strcmp(e, "prompt")) {
			saw_prompt = 1;
			ck_assert_int_eq(json_integer_value(json_object_get(ev, "n_prompt")), 5);
		} else if (!strcmp(e, "token")) {
			json_t *t = json_object_get(ev, "token");
			if (json_is_integer(t) && n < 64)
				got[n++] = json_integer_value(t);
		} else {
			ck_assert_str_eq(e, "done");
			done = ev;
			break;
		}
		json_decref(ev);
	}
	th_close(fd);
	ck_assert(saw_prompt);
	ck_assert_int_eq(json_integer_value(json_object_get(done, "n_gen")), n);
	json_decref(done);

	eng_model *m;
	char err[256];
	ck_assert_int_eq(eng_model_open(model_path, &m, err, sizeof(err)), 0);
	eng_fwd *f;
	ck_assert_int_eq(eng_fwd_open(m, NULL, &f, err, sizeof(err)), 0);
	eng_kv *kv;
	ck_assert_int_eq(eng_kv_mem_open(m, 64, eng_fwd_n_batch(f), ENG_TYPE_F16, &kv), 0);
	eng_sampler_params sp;
	eng_sampler_params_init(&sp);
	sp.temperature = 0;
	eng_sampler *s;
	ck_assert_int_eq(eng_sampler_open(&sp, eng_fwd_n_vocab(f), &s), 0);
	int32_t *ids;
	size_t np;
	ck_assert_int_eq(eng_tokenize(eng_model_vocab(m), prompt, strlen(prompt), ENG_TOK_ADD_SPECIAL, &ids, &np), 0);
	eng_gen_params gp;
	eng_gen_params_init(&gp);
	gp.max_tokens = 24;
	struct collected c = { .n = 0 };
	ck_assert_int_eq(eng_generate(f, kv, s, eng_model_vocab(m), ids, (uint32_t)np, &gp, collect, &c, NULL, NULL), 0);
	ck_assert_int_eq(c.n, n);
	for (int i = 0; i < n; i++)
		ck_assert_msg(got[i] == c.ids[i], "token %d: daemon %d, engine %d", i, got[i], c.ids[i]);
	free(ids);
	eng_sampler_close(s);
	eng_kv_close(kv);
	eng_fwd_close(f);
	eng_model_close(m);
}
END_TEST

/* engramctl generate streams text to stdout and figures to stderr; the
 * same seed gives the same sampled text. */
START_TEST(test_ctl_generate_seeded)
{
	start_with_model();
	char *out1 = NULL, *out2 = NULL, *err = NULL;
	const char *a[] = { "--socket", D.sock, "generate", "--max-tokens", "16", "--temp", "0.9",
			    "--seed", "42", "Once upon a time", NULL };
	ck_assert_int_eq(th_ctl(a, NULL, &out1, &err), 0);
	ck_assert_msg(strstr(err, "tokens at") != NULL, "stderr: %s", err);
	ck_assert_int_eq(th_ctl(a, NULL, &out2, NULL), 0);
	ck_assert_str_eq(out1, out2);
	ck_assert_uint_gt(strlen(out1), 1);
	free(out1);
	free(out2);
	free(err);
	/* --json: one JSON object a line, ending with done. */
	const char *j[] = { "--socket", D.sock, "--json", "generate", "--max-tokens", "4", "--temp", "0", "Hi", NULL };
	ck_assert_int_eq(th_ctl(j, NULL, &out1, NULL), 0);
	ck_assert_ptr_nonnull(strstr(out1, "\"event\":\"done\""));
	ck_assert_ptr_nonnull(strstr(out1, "\"event\":\"token\""));
	free(out1);
}
END_TEST

static long long inflight(void)
{
	json_t *st = th_roundtrip(D.sock, "{\"id\":1,\"op\":\"status\"}");
	long long n = json_integer_value(json_object_get(st, "inflight"));
	json_decref(st);
	return n;
}

/* A second generation waits its turn and says so; a client that leaves
 * stops its generation. */
START_TEST(test_queue_and_cancel)
{
	start_with_model();
	const char req[] = "{\"id\":7,\"op\":\"generate\",\"text\":\"Count:\",\"temperature\":0,"
			   "\"max_tokens\":2000}\n";
	int a = th_connect(D.sock), b = th_connect(D.sock);
	th_send(a, req, sizeof(req) - 1);
	json_t *ev;
	/* wait until a is generating */
	for (;;) {
		ev = th_read_json(a, 120000);
		ck_assert_ptr_nonnull(ev);
		int tok = !strcmp(json_string_value(json_object_get(ev, "event")), "token");
		json_decref(ev);
		if (tok)
			break;
	}
	th_send(b, req, sizeof(req) - 1);
	ev = th_read_json(b, 60000);
	ck_assert_ptr_nonnull(ev);
	ck_assert_str_eq(json_string_value(json_object_get(ev, "event")), "queued");
	ck_assert_int_eq(json_integer_value(json_object_get(ev, "position")), 1);
	json_decref(ev);
	th_close(b);		/* b leaves while queued */
	th_close(a);		/* a leaves while generating */
	int idle = 0;
	for (int i = 0; i < 3000 && !idle; i++) {
		idle = inflight() == 0;
		usleep(10000);
	}
	ck_assert_msg(idle, "generation kept running after its client left");
}
END_TEST

START_TEST(test_bad_arguments)
{
	start_with_model();
	static const struct { const char *line; const char *code; } cases[] = {
		{ "{\"id\":1,\"op\":\"generate\"}", "missing_field" },
		{ "{\"id\":2,\"op\":\"generate\",\"text\":\"a\",\"max_tokens\":0}", "invalid_argument" },
		{ "{\"id\":3,\"op\":\"generate\",\"text\":\"a\",\"max_tokens\":1.5}", "invalid_argument" },
		{ "{\"id\":4,\"op\":\"generate\",\"text\":\"a\",\"temperature\":-1}", "invalid_argument" },
		{ "{\"id\":5,\"op\":\"generate\",\"text\":\"a\",\"top_p\":2}", "invalid_argument" },
		/* the sampler divides by it: 0 and what rounds to 0 */
		{ "{\"id\":6,\"op\":\"generate\",\"text\":\"a\",\"repeat_penalty\":0}", "invalid_argument" },
		{ "{\"id\":7,\"op\":\"generate\",\"text\":\"a\",\"repeat_penalty\":1e-300}", "invalid_argument" },
		{ "{\"id\":8,\"op\":\"generate\",\"text\":\"a\",\"repeat_penalty\":-0.0}", "invalid_argument" },
		{ "{\"id\":6,\"op\":\"generate\",\"text\":\"a\",\"stop\":\"x\"}", "invalid_argument" },
		{ "{\"id\":7,\"op\":\"generate\",\"text\":\"a\",\"stop\":[\"\"]}", "invalid_argument" },
		{ "{\"id\":8,\"op\":\"generate\",\"text\":\"a\",\"chat\":1}", "invalid_argument" },
		{ "{\"id\":9,\"op\":\"generate\",\"text\":\"a\",\"max_tokens\":32768}", "invalid_argument" },
		{ "{\"id\":10,\"op\":\"generate\",\"text\":\"a\",\"seed\":\"x\"}", "invalid_argument" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *ev = th_roundtrip(D.sock, cases[i].line);
		ck_assert_msg(ev && th_err_code(ev) && !strcmp(th_err_code(ev), cases[i].code),
			      "case %zu: %s", i, ev ? th_err_code(ev) : "no reply");
		json_decref(ev);
	}
	/* an integer's bounds as integers, not 1.04858e+06 */
	json_t *ev = th_roundtrip(D.sock, "{\"id\":1,\"op\":\"generate\","
	    "\"text\":\"a\",\"top_k\":2000000}");
	const char *m = json_string_value(json_object_get(json_object_get(ev,
	    "error"), "message"));
	ck_assert_msg(m && strstr(m, "from 0 to 1048576"), "%s", m ? m : "-");
	json_decref(ev);
	const char *u1[] = { "--socket", D.sock, "generate", "--temp", "hot", "x", NULL };
	ck_assert_int_eq(th_ctl(u1, NULL, NULL, NULL), 2);
	const char *u2[] = { "--socket", D.sock, "generate", NULL };
	ck_assert_int_eq(th_ctl(u2, NULL, NULL, NULL), 2);
	const char *u3[] = { "--socket", D.sock, "generate", "--max-tokens", "0", "x", NULL };
	ck_assert_int_eq(th_ctl(u3, NULL, NULL, NULL), 1);
	/* a stop string ends the text before it */
	char *out = NULL;
	const char *st[] = { "--socket", D.sock, "generate", "--temp", "0", "--max-tokens", "40",
			     "--stop", "France", "--quiet", "The capital of France is", NULL };
	ck_assert_int_eq(th_ctl(st, NULL, &out, NULL), 0);
	ck_assert_ptr_null(strstr(out, "France"));
	free(out);
}
END_TEST

START_TEST(test_no_model)
{
	memset(&D, 0, sizeof(D));
	th_start(&D, NULL);
	json_t *ev = th_roundtrip(D.sock, "{\"id\":1,\"op\":\"generate\",\"text\":\"x\"}");
	ck_assert_str_eq(th_err_code(ev), "no_model");
	json_decref(ev);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("generate_ops");
	TCase *tc = tcase_create("generate_ops");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_greedy_matches_engine);
	tcase_add_test(tc, test_ctl_generate_seeded);
	tcase_add_test(tc, test_queue_and_cancel);
	tcase_add_test(tc, test_bad_arguments);
	tcase_add_test(tc, test_no_model);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

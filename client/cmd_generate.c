/* cmd_generate.c - engramctl commands that make text: generate.  The text
 * streams to standard output as the daemon makes it; the numbers go to
 * standard error, so a script can take stdout as the answer. */
#include "config.h"
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ectl.h"

struct gen_out {
	ectl_ctx *x;
	int quiet;
};

static int gen_event(void *arg, json_t *ev)
{
	struct gen_out *g = arg;
	const char *name = ectl_jstr(ev, "event");
	if (g->x->json)
		return ectl_print_event(g->x, ev);
	if (!strcmp(name, "token")) {
		json_t *t = json_object_get(ev, "text");
		fwrite(json_string_value(t), 1, json_string_length(t), stdout);
		fflush(stdout);
	} else if (!strcmp(name, "queued") && !g->quiet) {
		fprintf(stderr, "engramctl: waiting for the engine (position %lld)\n",
			ectl_jint(ev, "position"));
	} else if (!strcmp(name, "done")) {
		putchar('\n');
		if (!g->quiet)
			fprintf(stderr, "engramctl: prompt %lld tokens in %.0f ms (%.1f tok/s); "
				"%lld tokens at %.1f tok/s; stop: %s\n",
				ectl_jint(ev, "n_prompt"),
				json_number_value(json_object_get(ev, "prompt_ms")),
				json_number_value(json_object_get(ev, "prompt_tps")),
				ectl_jint(ev, "n_gen"),
				json_number_value(json_object_get(ev, "gen_tps")),
				ectl_jstr(ev, "stop"));
	} else {
		ectl_print_event(g->x, ev);
	}
	return 0;
}

/* strtod with the whole string required. */
static int num(const char *opt, const char *s, double *out)
{
	char *end;
	errno = 0;
	*out = strtod(s, &end);
	if (errno || end == s || *end) {
		fprintf(stderr, "engramctl generate: %s takes a number, not '%s'\n", opt, s);
		return -1;
	}
	return 0;
}

static int cmd_generate(ectl_ctx *x, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "max-tokens", required_argument, NULL, 'n' },
		{ "temp", required_argument, NULL, 't' },
		{ "top-k", required_argument, NULL, 'k' },
		{ "top-p", required_argument, NULL, 'p' },
		{ "min-p", required_argument, NULL, 'm' },
		{ "repeat-penalty", required_argument, NULL, 'r' },
		{ "seed", required_argument, NULL, 's' },
		{ "stop", required_argument, NULL, 'S' },
		{ "chat", no_argument, NULL, 'c' },
		{ "quiet", no_argument, NULL, 'q' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct { int opt; const char *key; int integer; } nums[] = {
		{ 'n', "max_tokens", 1 }, { 't', "temperature", 0 }, { 'k', "top_k", 1 },
		{ 'p', "top_p", 0 }, { 'm', "min_p", 0 }, { 'r', "repeat_penalty", 0 },
		{ 's', "seed", 1 },
	};
	json_t *req = json_pack("{s:s}", "op", "generate"), *stop = json_array();
	struct gen_out g = { x, 0 };
	int c, rc;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		double v;
		size_t i;
		if (c == 'c') {
			json_object_set_new(req, "chat", json_true());
			continue;
		}
		if (c == 'q') {
			g.quiet = 1;
			continue;
		}
		if (c == 'S') {
			json_array_append_new(stop, json_string(optarg));
			continue;
		}
		for (i = 0; i < sizeof(nums) / sizeof(nums[0]) && nums[i].opt != c; i++)
			;
		if (i == sizeof(nums) / sizeof(nums[0]) || num(argv[optind - 1], optarg, &v) < 0) {
			json_decref(req);
			json_decref(stop);
			return ECTL_EXIT_USAGE;
		}
		json_object_set_new(req, nums[i].key, nums[i].integer ? json_integer((json_int_t)v) : json_real(v));
	}
	if (argc - optind != 1) {
		fprintf(stderr, "engramctl generate: give one PROMPT, or - for standard input\n");
		json_decref(req);
		json_decref(stop);
		return ECTL_EXIT_USAGE;
	}
	if (json_array_size(stop))
		json_object_set(req, "stop", stop);
	json_decref(stop);
	char *in;
	size_t len;
	if ((rc = ectl_read_input(argv[optind], &in, &len)) != 0) {
		json_decref(req);
		return rc;
	}
	if ((rc = ectl_connect(&x->conn, x->socket)) < 0) {
		free(in);
		json_decref(req);
		return -rc;
	}
	rc = ectl_call_input(&x->conn, req, in, len, gen_event, &g);
	ectl_close(&x->conn);
	free(in);
	return rc;
}

const ectl_command ectl_cmds_generate[] = {
	{ "generate",
	  "[--max-tokens N] [--temp T] [--top-k K] [--top-p P] [--min-p P]\n"
	  "       [--repeat-penalty R] [--seed S] [--stop TEXT]... [--chat] [--quiet] PROMPT|-",
	  "continue a prompt with the model, streaming the text",
	  "Streams the model's continuation of PROMPT (or of standard input with '-')\n"
	  "to standard output as it is made; prompt and speed figures go to standard\n"
	  "error (--quiet drops them).  --temp 0 is greedy and reproduces llama.cpp's\n"
	  "greedy output; --seed makes sampled runs repeatable.  --chat wraps the\n"
	  "prompt in the model's chat template as a user turn.  --stop ends the text\n"
	  "before the first occurrence of TEXT (up to 7 times).  Ctrl-C stops the\n"
	  "generation in the daemon within one forward step.\n"
	  "Defaults: --max-tokens 256 --temp 0.8 --top-k 40 --top-p 0.95 --min-p 0.05.",
	  cmd_generate },
	{ NULL, NULL, NULL, NULL, NULL },
};

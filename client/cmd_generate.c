/* cmd_generate.c - engramctl commands that make text: generate (continue a
 * prompt) and ask (answer a question about a prefilled session).  The text
 * streams to standard output as the daemon makes it; the numbers go to
 * standard error, so a script can take stdout as the answer. */
#include "config.h"
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ectl.h"

/* ------------------------------------------------------------ streaming */

struct gen_out;
/* Prints what follows the text once the "done" event is in. */
typedef void (*gen_done_fn)(struct gen_out *g, json_t *done);

/* One run of generate or ask: what its events have shown so far. */
struct gen_out {
	ectl_ctx *x;
	int quiet;		/* no figures on standard error */
	int wrote;		/* text on stdout not yet ended by a newline */
	gen_done_fn done;
	/* ask */
	const char *session;	/* NULL for generate */
	const char *start;	/* --answer-start, or NULL */
	int show_sources, keep;
	json_t *prompt;		/* the "prompt" event, kept (owned) */
	json_t *sources;	/* the "sources" event, kept (owned) */
};

static void keep_event(json_t **slot, json_t *ev)
{
	json_decref(*slot);
	*slot = json_incref(ev);
}

/* ask: says so when the session's stream has grown past what is
 * prefilled, before the answer comes. */
static void note_unprefilled(struct gen_out *g, json_t *ev)
{
	long long pre = ectl_jint(ev, "prefilled"), all = ectl_jint(ev, "context_tokens");
	if (json_object_get(ev, "context_tokens") && pre < all)
		fprintf(stderr, "engramctl: only %lld of %s's %lld tokens are prefilled; "
			"`engramctl prefill %s` does the rest\n", pre, g->session, all, g->session);
}

static int gen_event(void *arg, json_t *ev)
{
	struct gen_out *g = arg;
	const char *name = ectl_jstr(ev, "event");
	if (!strcmp(name, "prompt"))
		keep_event(&g->prompt, ev);
	else if (!strcmp(name, "sources"))
		keep_event(&g->sources, ev);
	if (g->x->json)
		return ectl_print_event(g->x, ev);
	if (!strcmp(name, "prompt") && g->session && !g->quiet)
		note_unprefilled(g, ev);
	/* The answer's start is the model's too: stdout holds the whole. */
	if (!strcmp(name, "prompt") && g->start && *g->start) {
		fputs(g->start, stdout);
		fflush(stdout);
		g->wrote = 1;
	}
	if (!strcmp(name, "token")) {
		json_t *t = json_object_get(ev, "text");
		size_t n = json_string_length(t);
		if (n) {
			fwrite(json_string_value(t), 1, n, stdout);
			fflush(stdout);
			g->wrote = 1;
		}
	} else if (!strcmp(name, "queued") && !g->quiet) {
		fprintf(stderr, "engramctl: waiting for the engine (position %lld)\n",
			ectl_jint(ev, "position"));
	} else if (!strcmp(name, "done")) {
		putchar('\n');
		g->wrote = 0;
		g->done(g, ev);
	} else {
		if (!strcmp(name, "error") && g->wrote) {
			putchar('\n');	/* end the partial text before the message */
			fflush(stdout);
			g->wrote = 0;
		}
		ectl_print_event(g->x, ev);
	}
	return 0;
}

/* Sends req (stolen) with the input named by arg (text, or "-" for standard
 * input) and streams its events through g.  Returns an exit status. */
static int gen_run(ectl_ctx *x, json_t *req, const char *arg, struct gen_out *g)
{
	char *in;
	size_t len;
	int rc;

	if ((rc = ectl_read_input(arg, &in, &len)) != 0) {
		json_decref(req);
		return rc;
	}
	if ((rc = ectl_connect(&x->conn, x->socket)) < 0) {
		free(in);
		json_decref(req);
		return -rc;
	}
	rc = ectl_call_input(&x->conn, req, in, len, gen_event, g);
	ectl_close(&x->conn);	/* closing cancels the request if it runs */
	free(in);
	if (rc != ECTL_EXIT_OK && g->wrote)
		putchar('\n');
	fflush(stdout);
	json_decref(g->prompt);
	json_decref(g->sources);
	g->prompt = g->sources = NULL;
	return rc;
}

/* ------------------------------------------------------------- options */

/* The sampling options generate and ask share.  Here only their form is
 * checked (a usage error); their ranges are the daemon's to check
 * (daemon/ops_generate.c: an invalid_argument error, exit status 1). */
struct num_opt {
	int opt;
	const char *name, *key;
	int integer;
};

static const struct num_opt num_opts[] = {
	{ 'n', "--max-tokens", "max_tokens", 1 },
	{ 't', "--temp", "temperature", 0 },
	{ 'k', "--top-k", "top_k", 1 },
	{ 'p', "--top-p", "top_p", 0 },
	{ 'm', "--min-p", "min_p", 0 },
	{ 'r', "--repeat-penalty", "repeat_penalty", 0 },
	{ 's', "--seed", "seed", 1 },
};

static const struct num_opt *num_opt_find(int c)
{
	for (size_t i = 0; i < sizeof(num_opts) / sizeof(num_opts[0]); i++)
		if (num_opts[i].opt == c)
			return &num_opts[i];
	return NULL;
}

/* Parses s, the whole string, as option o's value into req: an integer,
 * or a finite number (JSON has no NaN or infinity).  Returns 0 or
 * ECTL_EXIT_USAGE. */
static int num_opt_set(const char *cmd, const struct num_opt *o, const char *s, json_t *req)
{
	char *end;
	long long iv = 0;
	double v = 0;

	errno = 0;
	if (o->integer)
		iv = strtoll(s, &end, 10);
	else
		v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v)) {
		fprintf(stderr, "engramctl %s: %s takes %s, not '%s'\n", cmd, o->name,
			o->integer ? "an integer" : "a number", s);
		return ECTL_EXIT_USAGE;
	}
	json_object_set_new(req, o->key, o->integer ? json_integer(iv) : json_real(v));
	return 0;
}

/* ------------------------------------------------------------- generate */

static void gen_done(struct gen_out *g, json_t *ev)
{
	if (g->quiet)
		return;
	fprintf(stderr, "engramctl: prompt %lld tokens in %.0f ms (%.1f tok/s); "
		"%lld tokens at %.1f tok/s; stop: %s\n",
		ectl_jint(ev, "n_prompt"),
		json_number_value(json_object_get(ev, "prompt_ms")),
		json_number_value(json_object_get(ev, "prompt_tps")),
		ectl_jint(ev, "n_gen"),
		json_number_value(json_object_get(ev, "gen_tps")),
		ectl_jstr(ev, "stop"));
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
	json_t *req = json_pack("{s:s}", "op", "generate"), *stop = json_array();
	struct gen_out g = { .x = x, .done = gen_done };
	const struct num_opt *o;
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (c == 'c')
			json_object_set_new(req, "chat", json_true());
		else if (c == 'q')
			g.quiet = 1;
		else if (c == 'S')
			json_array_append_new(stop, json_string(optarg));
		else if (!(o = num_opt_find(c)) || num_opt_set("generate", o, optarg, req))
			goto usage;
	}
	if (argc - optind != 1) {
		fprintf(stderr, "engramctl generate: give one PROMPT, or - for standard input\n");
		goto usage;
	}
	if (json_array_size(stop))
		json_object_set(req, "stop", stop);
	json_decref(stop);
	return gen_run(x, req, argv[optind], &g);
usage:
	json_decref(req);
	json_decref(stop);
	return ECTL_EXIT_USAGE;
}

/* ------------------------------------------------------------------ ask */

/* One source block: "  path:12-30  (page 2)  23.4%", or "  tokens A-B  1.2%"
 * for text outside any document (framing). */
static void print_source_block(json_t *b)
{
	double pct = 100 * json_number_value(json_object_get(b, "weight"));
	long long ls = ectl_jint(b, "line_start"), le = ectl_jint(b, "line_end");

	if (!json_is_string(json_object_get(b, "path"))) {
		printf("  tokens %lld-%lld  %.1f%%\n", ectl_jint(b, "tok_start"),
		       ectl_jint(b, "tok_end"), pct);
		return;
	}
	printf("  %s", ectl_jpath(b, "path"));
	if (ls && le > ls)
		printf(":%lld-%lld", ls, le);
	else if (ls)
		printf(":%lld", ls);
	if (ectl_jint(b, "page"))
		printf("  (page %lld)", ectl_jint(b, "page"));
	printf("  %.1f%%\n", pct);
}

static void ask_done(struct gen_out *g, json_t *ev)
{
	if (g->show_sources) {
		/* The result repeats the list; the event is the fallback. */
		json_t *blocks = json_object_get(ev, "blocks"), *b;
		size_t i;
		if (!blocks)
			blocks = json_object_get(g->sources, "blocks");
		printf("Sources:\n");
		if (!json_array_size(blocks))
			printf("  (none)\n");
		json_array_foreach(blocks, i, b)
			print_source_block(b);
		fflush(stdout);
	}
	if (g->quiet)
		return;
	fprintf(stderr, "engramctl: context %lld tokens", ectl_jint(ev, "n_context"));
	if (json_object_get(g->prompt, "n_question"))
		fprintf(stderr, ", question %lld", ectl_jint(g->prompt, "n_question"));
	if (json_object_get(ev, "n_attended"))
		fprintf(stderr, ", %lld attended", ectl_jint(ev, "n_attended"));
	fprintf(stderr, "; first token in %.0f ms; %lld tokens at %.1f tok/s; stop: %s\n",
		json_number_value(json_object_get(ev, "ttft_ms")), ectl_jint(ev, "n_gen"),
		json_number_value(json_object_get(ev, "gen_tps")), ectl_jstr(ev, "stop"));
	if (g->keep)
		fprintf(stderr, "engramctl: the question and answer are now part of %s\n",
			g->session);
}

static int cmd_ask(ectl_ctx *x, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "max-tokens", required_argument, NULL, 'n' },
		{ "temp", required_argument, NULL, 't' },
		{ "top-k", required_argument, NULL, 'k' },
		{ "top-p", required_argument, NULL, 'p' },
		{ "min-p", required_argument, NULL, 'm' },
		{ "seed", required_argument, NULL, 's' },
		{ "show-sources", no_argument, NULL, 'S' },
		{ "keep", no_argument, NULL, 'K' },
		{ "answer-start", required_argument, NULL, 'A' },
		{ "json", no_argument, NULL, 'j' },
		{ "quiet", no_argument, NULL, 'q' },
		{ NULL, 0, NULL, 0 },
	};
	json_t *req = json_pack("{s:s}", "op", "ask");
	struct gen_out g = { .x = x, .done = ask_done };
	const struct num_opt *o;
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (c == 'S')
			g.show_sources = 1;
		else if (c == 'K')
			g.keep = 1;
		else if (c == 'A')
			g.start = optarg;
		else if (c == 'j')
			x->json = 1;
		else if (c == 'q')
			g.quiet = 1;
		else if (!(o = num_opt_find(c)) || num_opt_set("ask", o, optarg, req))
			goto usage;
	}
	if (argc - optind != 2) {
		fprintf(stderr, "engramctl ask: give a SESSION and a QUESTION, or - for standard input\n");
		goto usage;
	}
	g.session = argv[optind];
	json_object_set_new(req, "session", json_string(g.session));
	if (g.show_sources)
		json_object_set_new(req, "sources", json_true());
	if (g.keep)
		json_object_set_new(req, "keep", json_true());
	if (g.start && json_object_set_new(req, "answer_start", json_string(g.start))) {
		fprintf(stderr, "engramctl ask: --answer-start is not valid UTF-8\n");
		goto usage;
	}
	return gen_run(x, req, argv[optind + 1], &g);
usage:
	json_decref(req);
	return ECTL_EXIT_USAGE;
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
	{ "ask",
	  "[--max-tokens N] [--temp T] [--top-k K] [--top-p P] [--min-p P]\n"
	  "       [--seed S] [--show-sources] [--keep] [--answer-start TEXT] [--json] [--quiet]\n"
	  "       SESSION QUESTION|-",
	  "answer a question about a prefilled session, streaming the answer",
	  "Asks the model QUESTION (or standard input with '-') with SESSION's\n"
	  "prefilled KV cache as context (engramctl prefill SESSION first) and\n"
	  "streams the answer to standard output; context, time to first token\n"
	  "and speed go to standard error (--quiet drops them).  Ctrl-C stops the\n"
	  "answer in the daemon.\n"
	  "  --show-sources  after the answer, list the parts of the session the\n"
	  "                  answer attended to most: file, lines, page, share;\n"
	  "                  with --max-tokens 0, only these: no answer\n"
	  "  --keep          add the question and answer to the session, so that\n"
	  "                  the next ask continues the conversation\n"
	  "  --answer-start TEXT\n"
	  "                  open the model's answer with TEXT (printed first),\n"
	  "                  for it to continue: \"The value of X is\"\n"
	  "  --json          the daemon's events as JSON lines\n"
	  "Defaults: --max-tokens 256 --temp 0 (greedy); the other sampling options\n"
	  "are generate's.",
	  cmd_ask },
	{ NULL, NULL, NULL, NULL, NULL },
};

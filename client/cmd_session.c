/* cmd_session.c - engramctl commands about sessions, their jobs and the
 * store: ingest, prefill, jobs, job, cancel, sessions, session, source,
 * store, gc.
 * The ops are in docs/PROTOCOL.md; exit statuses as in ectl.h. */
#include "config.h"
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "ectl.h"

/* Plain progress lines, when standard error is not a terminal. */
#define PLAIN_PROGRESS_S 5.0

static double mono_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* "12.3k" style counts. */
static void human(char *buf, size_t cap, double v)
{
	if (v >= 1e9)
		snprintf(buf, cap, "%.2fG", v / 1e9);
	else if (v >= 1e6)
		snprintf(buf, cap, "%.2fM", v / 1e6);
	else if (v >= 1e4)
		snprintf(buf, cap, "%.1fk", v / 1e3);
	else
		snprintf(buf, cap, "%.0f", v);
}

/* Parses a job id or a token position argument. */
static int parse_uint(const char *cmd, const char *what, const char *s, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < 0) {
		fprintf(stderr, "engramctl %s: '%s' is not a %s\n", cmd, s, what);
		return ECTL_EXIT_USAGE;
	}
	*out = v;
	return 0;
}

/* ------------------------------------------------------- following a job */

/* ingest and prefill start a job and, unless detached, follow it: a
 * progress line (redrawn on a terminal, every PLAIN_PROGRESS_S otherwise),
 * then the job's summary.  Ctrl-C stops following; the job goes on. */
struct follow;
/* Writes the progress line for event ev into line. */
typedef void (*follow_line_fn)(struct follow *o, json_t *ev, char *line, size_t cap);
/* Prints the final event of a job followed to its end. */
typedef void (*follow_summary_fn)(json_t *done);

struct follow {
	ectl_ctx *x;
	follow_line_fn line;
	follow_summary_fn summary;
	long long job;		/* from the "job" event; 0 before it */
	int tty;
	double last_plain;
	int drew;		/* a progress line is on screen (TTY) */
};

static void follow_progress(struct follow *o, json_t *ev)
{
	char line[256];
	double now = mono_s();
	if (!o->tty && now - o->last_plain < PLAIN_PROGRESS_S)
		return;
	o->last_plain = now;
	o->line(o, ev, line, sizeof(line));
	if (o->tty) {
		fprintf(stderr, "\r\033[K%s", line);
		o->drew = 1;
	} else {
		fprintf(stderr, "%s\n", line);
	}
	fflush(stderr);
}

static int follow_event(void *arg, json_t *ev)
{
	struct follow *o = arg;
	const char *name = ectl_jstr(ev, "event");
	if (!strcmp(name, "job"))
		o->job = ectl_jint(ev, "job");
	if (o->x->json)
		return ectl_print_event(o->x, ev);
	if (!strcmp(name, "progress")) {
		follow_progress(o, ev);
		return 0;
	}
	if (o->drew && (!strcmp(name, "done") || !strcmp(name, "error"))) {
		fputc('\n', stderr);
		o->drew = 0;
	}
	ectl_print_event(o->x, ev);
	if (!strcmp(name, "done")) {
		/* The summary has a state; a detached start only {job, session}. */
		if (json_object_get(ev, "state"))
			o->summary(ev);
		else
			printf("job %lld started (session %s); `engramctl job %lld` shows it\n",
			       ectl_jint(ev, "job"), ectl_jstr(ev, "session"), ectl_jint(ev, "job"));
	}
	return 0;
}

/* Sends req (stolen) and follows the job it starts.  Returns an exit
 * status. */
static int follow_run(ectl_ctx *x, json_t *req, struct follow *o)
{
	o->x = x;
	o->tty = isatty(2);
	int rc = ectl_connect(&x->conn, x->socket);
	if (rc < 0) {
		json_decref(req);
		return -rc;
	}
	rc = ectl_call(&x->conn, req, follow_event, o);
	ectl_close(&x->conn);
	if (rc == ECTL_EXIT_INTERRUPTED && o->job) {
		if (o->drew)
			fputc('\n', stderr);
		fprintf(stderr, "engramctl: job %lld continues; `engramctl cancel %lld` stops it\n",
			o->job, o->job);
	}
	return rc;
}

/* The options ingest and prefill share: --json and --detach. */
static int follow_opt(ectl_ctx *x, int c, int *detach)
{
	if (c == 'j')
		x->json = 1;
	else if (c == 'd')
		*detach = 1;
	else
		return ECTL_EXIT_USAGE;
	return 0;
}

/* ---------------------------------------------------------------- ingest */

static void ingest_line(struct follow *o, json_t *ev, char *line, size_t cap)
{
	char tok[32], rate[32];
	human(tok, sizeof(tok), (double)ectl_jint(ev, "tokens"));
	human(rate, sizeof(rate), json_number_value(json_object_get(ev, "rate")));
	int n = snprintf(line, cap, "job %lld: %lld/%lld files, %lld kept, %lld skipped, "
			 "%lld failed, %s tokens, %s tok/s, %.0fs",
			 o->job, ectl_jint(ev, "files_done"), ectl_jint(ev, "files_seen"),
			 ectl_jint(ev, "files_kept"), ectl_jint(ev, "files_skipped"),
			 ectl_jint(ev, "files_failed"), tok, rate,
			 json_number_value(json_object_get(ev, "elapsed_s")));
	json_t *eta = json_object_get(ev, "eta_s");
	if (eta && n > 0 && (size_t)n < cap)
		snprintf(line + n, cap - n, ", ETA %.0fs", json_number_value(eta));
}

/* One skipped or failed file: "skipped  path: reason - detail", the
 * detail left out when it says no more than the reason, and the reason
 * not said twice when the detail starts with it. */
static void print_report_entry(json_t *e)
{
	const char *reason = ectl_jstr(e, "reason"), *msg = ectl_jstr(e, "message");
	size_t rl = strlen(reason);
	if (!strncmp(msg, reason, rl) && (msg[rl] == ':' || msg[rl] == ','))
		for (msg += rl + 1; *msg == ' '; msg++)
			;
	int extra = *msg && strcmp(msg, reason) && strcmp(msg, "-");
	printf("  %-8s %s: %s%s%s\n", ectl_jstr(e, "severity"), ectl_jpath(e, "path"),
	       reason, extra ? " - " : "", extra ? msg : "");
}

static void ingest_summary(json_t *d)
{
	json_t *ch = json_object_get(d, "changes"), *e;
	size_t i;
	printf("job %lld done: session %s, %lld documents, %lld new tokens (stream %lld, "
	       "%lld kept), %lld files kept, %lld skipped, %lld failed, in ",
	       ectl_jint(d, "job"), ectl_jstr(d, "session"), ectl_jint(d, "documents"),
	       ectl_jint(d, "tokens"), ectl_jint(d, "stream_tokens"), ectl_jint(d, "kept_tokens"),
	       ectl_jint(d, "files_kept"), ectl_jint(d, "skipped"), ectl_jint(d, "failed"));
	ectl_print_duration(json_number_value(json_object_get(d, "elapsed_s")));
	printf(" (%.0f tokens/s)\n", json_number_value(json_object_get(d, "rate")));
	if (ch)
		printf("changes: %lld added, %lld removed, %lld modified, %lld moved\n",
		       ectl_jint(ch, "added"), ectl_jint(ch, "removed"),
		       ectl_jint(ch, "modified"), ectl_jint(ch, "moved"));
	json_array_foreach(json_object_get(ch, "paths"), i, e)
		printf("  %-8s %s\n", ectl_jstr(e, "change"), ectl_jpath(e, "path"));
	json_array_foreach(json_object_get(d, "report"), i, e)
		print_report_entry(e);
}

/* A default session name from a path: its last component without leading
 * dots (a name may not start with one: ".git" gives "git"), with what a
 * name may not hold replaced by '_'. */
static void default_name(const char *path, char *out, size_t cap)
{
	const char *b = strrchr(path, '/');
	b = b && b[1] ? b + 1 : path;
	while (*b == '.')
		b++;
	size_t n = 0;
	for (; *b && *b != '/' && n + 1 < cap && n < 128; b++, n++) {
		char c = *b;
		int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			 (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		out[n] = ok ? c : '_';
	}
	out[n] = 0;
	if (!n)
		snprintf(out, cap, "%s", "default");
}

static int cmd_ingest(ectl_ctx *x, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "detach", no_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = NULL;
	char defname[130], cwd[PATH_MAX];
	int c, detach = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+n:jd", opts, NULL)) != -1) {
		if (c == 'n')
			name = optarg;
		else if (follow_opt(x, c, &detach))
			return ECTL_EXIT_USAGE;
	}
	if (optind >= argc) {
		fprintf(stderr, "engramctl ingest: give at least one PATH\n");
		return ECTL_EXIT_USAGE;
	}
	if (!getcwd(cwd, sizeof(cwd))) {
		fprintf(stderr, "engramctl ingest: cannot read the current folder: %s\n", strerror(errno));
		return ECTL_EXIT_USAGE;
	}
	json_t *paths = json_array();
	for (int i = optind; i < argc; i++) {
		/* Sent resolved; a path that does not resolve is sent as given
		 * (with cwd) and engramd reports it. */
		char *rp = realpath(argv[i], NULL);
		json_array_append_new(paths, json_string(rp ? rp : argv[i]));
		if (i == optind && !name) {
			default_name(rp ? rp : argv[i], defname, sizeof(defname));
			name = defname;
		}
		free(rp);
	}
	struct follow o = { .line = ingest_line, .summary = ingest_summary };
	json_t *req = json_pack("{s:s,s:s,s:o,s:s,s:b}", "op", "ingest", "session", name,
				"paths", paths, "cwd", cwd, "detach", detach);
	return follow_run(x, req, &o);
}

/* ---------------------------------------------------------------- prefill */

static void prefill_line(struct follow *o, json_t *ev, char *line, size_t cap)
{
	char done[32], total[32], comp[32], rate[32];
	long long d = ectl_jint(ev, "done"), t = ectl_jint(ev, "total");
	human(done, sizeof(done), (double)d);
	human(total, sizeof(total), (double)t);
	human(comp, sizeof(comp), (double)ectl_jint(ev, "computed"));
	human(rate, sizeof(rate), json_number_value(json_object_get(ev, "rate")));
	int n = snprintf(line, cap, "job %lld: prefill %s: %s/%s tokens (%.1f%%), %s computed, "
			 "%s tok/s, %.0fs", o->job, ectl_jstr(ev, "session"), done, total,
			 t > 0 ? 100.0 * d / t : 0.0, comp, rate,
			 json_number_value(json_object_get(ev, "elapsed_s")));
	long long reused = ectl_jint(ev, "reused");
	if (reused > 0 && n > 0 && (size_t)n < cap)
		n += snprintf(line + n, cap - n, ", %lld reused", reused);
	json_t *eta = json_object_get(ev, "eta_s");
	if (eta && n > 0 && (size_t)n < cap)
		snprintf(line + n, cap - n, ", ETA %.0fs", json_number_value(eta));
}

static void prefill_summary(json_t *d)
{
	printf("prefilled %s: %lld of %lld tokens (%lld computed, %lld reused) in ",
	       ectl_jstr(d, "session"), ectl_jint(d, "done"), ectl_jint(d, "total"),
	       ectl_jint(d, "computed"), ectl_jint(d, "reused"));
	ectl_print_duration(json_number_value(json_object_get(d, "elapsed_s")));
	printf(", %.1f tok/s\n", json_number_value(json_object_get(d, "rate")));
}

static int cmd_prefill(ectl_ctx *x, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "detach", no_argument, NULL, 'd' },
		{ "no-reuse", no_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 },
	};
	int c, detach = 0, reuse = 1;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+jd", opts, NULL)) != -1)
		if (c == 'R')
			reuse = 0;
		else if (follow_opt(x, c, &detach))
			return ECTL_EXIT_USAGE;
	if (argc - optind != 1) {
		fprintf(stderr, "engramctl prefill: give one SESSION\n");
		return ECTL_EXIT_USAGE;
	}
	struct follow o = { .line = prefill_line, .summary = prefill_summary };
	return follow_run(x, json_pack("{s:s,s:s,s:b,s:b}", "op", "prefill", "session",
				       argv[optind], "detach", detach, "reuse", reuse), &o);
}

/* ---------------------------------------------------------------- jobs */

static int is_prefill(json_t *job)
{
	return !strcmp(ectl_jstr(job, "kind"), "prefill");
}

static int cmd_jobs(ectl_ctx *x, int argc, char **argv)
{
	json_t *done = NULL, *j;
	size_t i;
	int rc = ectl_no_args(argc, argv, "jobs");
	if (rc)
		return rc;
	rc = ectl_request(x, json_pack("{s:s}", "op", "jobs"), &done);
	if (rc == 0 && !x->json) {
		printf("%-6s %-12s %-10s %8s %10s  %s\n", "JOB", "STATE", "KIND", "FILES", "TOKENS", "ERROR");
		json_array_foreach(json_object_get(done, "jobs"), i, j) {
			/* A prefill job has no files; its tokens are positions done. */
			int pf = is_prefill(j);
			const char *tk = pf ? "done" : "tokens";
			char files[32] = "-", tokens[32] = "-";
			if (!pf)
				snprintf(files, sizeof(files), "%lld", ectl_jint(j, "files_done"));
			if (json_object_get(j, tk))	/* an ingest of an earlier run: not kept */
				snprintf(tokens, sizeof(tokens), "%lld", ectl_jint(j, tk));
			printf("%-6lld %-12s %-10s %8s %10s  %s\n", ectl_jint(j, "job"),
			       ectl_jstr(j, "state"), ectl_jstr(j, "kind"), files,
			       tokens, json_object_get(j, "error") ?
			       ectl_jstr(j, "error") : "");
		}
	}
	json_decref(done);
	return rc;
}

static int job_arg(int argc, char **argv, const char *cmd, long long *id)
{
	if (argc != 2) {
		fprintf(stderr, "engramctl %s: give one JOB id\n", cmd);
		return ECTL_EXIT_USAGE;
	}
	return parse_uint(cmd, "job id", argv[1], id);
}

/* The part of `job` that depends on the kind: files and new tokens for an
 * ingest job, positions prefilled for a prefill job. */
static void print_ingest_job(json_t *d)
{
	json_t *e;
	size_t i;
	printf("files     %lld done of %lld", ectl_jint(d, "files_done"), ectl_jint(d, "files_seen"));
	if (json_object_get(d, "files_kept"))
		printf(", %lld kept, %lld skipped, %lld failed", ectl_jint(d, "files_kept"),
		       ectl_jint(d, "skipped"), ectl_jint(d, "failed"));
	printf("\n");
	if (json_object_get(d, "tokens"))
		printf("tokens    %lld new, %.0f tokens/s over %.1fs\n", ectl_jint(d, "tokens"),
		       json_number_value(json_object_get(d, "rate")),
		       json_number_value(json_object_get(d, "elapsed_s")));
	json_array_foreach(json_object_get(d, "report"), i, e)
		print_report_entry(e);
}

static void print_prefill_job(json_t *d)
{
	if (json_object_get(d, "total"))
		printf("tokens    %lld of %lld prefilled, %lld computed, %.1f tok/s over %.1fs\n",
		       ectl_jint(d, "done"), ectl_jint(d, "total"), ectl_jint(d, "computed"),
		       json_number_value(json_object_get(d, "rate")),
		       json_number_value(json_object_get(d, "elapsed_s")));
}

static int cmd_job(ectl_ctx *x, int argc, char **argv)
{
	long long id;
	json_t *done = NULL;
	int rc = job_arg(argc, argv, "job", &id);
	if (rc)
		return rc;
	rc = ectl_request(x, json_pack("{s:s,s:I}", "op", "job", "job", (json_int_t)id), &done);
	if (rc == 0 && !x->json) {
		printf("job       %lld (%s)\n", id, ectl_jstr(done, "kind"));
		printf("state     %s%s%s\n", ectl_jstr(done, "state"),
		       json_object_get(done, "error") && *ectl_jstr(done, "error") ? ": " : "",
		       json_object_get(done, "error") ? ectl_jstr(done, "error") : "");
		if (json_object_get(done, "session"))
			printf("session   %s\n", ectl_jstr(done, "session"));
		if (is_prefill(done))
			print_prefill_job(done);
		else
			print_ingest_job(done);
	}
	json_decref(done);
	return rc;
}

static int cmd_cancel(ectl_ctx *x, int argc, char **argv)
{
	long long id;
	json_t *done = NULL;
	int rc = job_arg(argc, argv, "cancel", &id);
	if (rc)
		return rc;
	rc = ectl_request(x, json_pack("{s:s,s:I}", "op", "cancel", "job", (json_int_t)id), &done);
	if (rc == 0 && !x->json)
		printf(json_is_true(json_object_get(done, "cancelling")) ?
		       "job %lld: cancelling\n" : "job %lld had already ended\n", id);
	json_decref(done);
	return rc;
}

/* ---------------------------------------------------------------- sessions */

static void print_time(long long t)
{
	char buf[64];
	time_t tt = (time_t)t;
	struct tm tm;
	localtime_r(&tt, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M", &tm);
	printf("%s", buf);
}

static int cmd_sessions(ectl_ctx *x, int argc, char **argv)
{
	json_t *done = NULL, *s;
	size_t i;
	int rc = ectl_no_args(argc, argv, "sessions");
	if (rc)
		return rc;
	rc = ectl_request(x, json_pack("{s:s}", "op", "sessions"), &done);
	if (rc == 0 && !x->json) {
		printf("%-24s %12s %12s %9s  %s\n", "SESSION", "TOKENS", "PREFILLED", "DOCUMENTS", "CREATED");
		json_array_foreach(json_object_get(done, "sessions"), i, s) {
			printf("%-24s %12lld %12lld %9lld  ", ectl_jstr(s, "session"),
			       ectl_jint(s, "stream_tokens"), ectl_jint(s, "prefilled_tokens"),
			       ectl_jint(s, "documents"));
			print_time(ectl_jint(s, "created"));
			printf("\n");
		}
	}
	json_decref(done);
	return rc;
}

static int cmd_session(ectl_ctx *x, int argc, char **argv)
{
	json_t *done = NULL, *d;
	size_t i;
	int rc;
	if (argc < 3) {
		fprintf(stderr, "engramctl session: give show|rm|rename|fork and a NAME\n");
		return ECTL_EXIT_USAGE;
	}
	const char *sub = argv[1], *name = argv[2];
	if (!strcmp(sub, "show") && argc == 3) {
		rc = ectl_request(x, json_pack("{s:s,s:s}", "op", "session_show", "session", name), &done);
		if (rc == 0 && !x->json) {
			json_t *g = json_object_get(done, "geometry");
			printf("session     %s\n", ectl_jstr(done, "session"));
			printf("created     ");
			print_time(ectl_jint(done, "created"));
			printf("\ntokens      %lld in the stream, %lld prefilled (%lld blocks)\n",
			       ectl_jint(done, "stream_tokens"), ectl_jint(done, "prefilled_tokens"),
			       ectl_jint(done, "blocks"));
			printf("documents   %lld (%lld spans)\n", ectl_jint(done, "documents"),
			       ectl_jint(done, "spans"));
			printf("model       %s\n", ectl_jstr(done, "fingerprint"));
			printf("geometry    %lld layers x %lld kv heads x %lld, blocks of %lld\n",
			       ectl_jint(g, "layers"), ectl_jint(g, "kv_heads"), ectl_jint(g, "head_dim"),
			       ectl_jint(g, "block_tokens"));
			json_array_foreach(json_object_get(done, "document_list"), i, d)
				printf("  %10lld %10lld  %s\n", ectl_jint(d, "tok_start"),
				       ectl_jint(d, "tok_end"), ectl_jpath(d, "path"));
		}
	} else if (!strcmp(sub, "rm") && argc == 3) {
		rc = ectl_request(x, json_pack("{s:s,s:s}", "op", "session_rm", "session", name), &done);
		if (rc == 0 && !x->json)
			printf("session %s removed\n", name);
	} else if (!strcmp(sub, "rename") && argc == 4) {
		rc = ectl_request(x, json_pack("{s:s,s:s,s:s}", "op", "session_rename", "session", name,
					       "to", argv[3]), &done);
		if (rc == 0 && !x->json)
			printf("session %s is now %s\n", name, argv[3]);
	} else if (!strcmp(sub, "fork") && argc == 4) {
		rc = ectl_request(x, json_pack("{s:s,s:s,s:s}", "op", "session_fork", "session", name,
					       "to", argv[3]), &done);
		if (rc == 0 && !x->json)
			printf("forked %s -> %s (%lld tokens prefilled)\n", name, argv[3],
			       ectl_jint(done, "prefilled_tokens"));
	} else {
		fprintf(stderr, "engramctl session: use 'show NAME', 'rm NAME', 'rename NAME NEW' "
			"or 'fork NAME NEW'\n");
		return ECTL_EXIT_USAGE;
	}
	json_decref(done);
	return rc;
}

static int cmd_source(ectl_ctx *x, int argc, char **argv)
{
	long long pos;
	json_t *done = NULL;
	int rc, text = 0, i = 1;
	if (i < argc && !strcmp(argv[i], "--text")) {
		text = 1;
		i++;
	}
	if (argc - i != 2) {
		fprintf(stderr, "engramctl source: give SESSION and a token POS\n");
		return ECTL_EXIT_USAGE;
	}
	if ((rc = parse_uint("source", "token position", argv[i + 1], &pos)))
		return rc;
	rc = ectl_request(x, json_pack("{s:s,s:s,s:I,s:b}", "op", "source", "session", argv[i],
				       "pos", (json_int_t)pos, "with_text", text), &done);
	if (rc == 0 && !x->json) {
		if (json_is_true(json_object_get(done, "framing")))
			printf("%s: framing text", ectl_jpath(done, "path"));
		else if (ectl_jint(done, "line_start") == ectl_jint(done, "line_end"))
			printf("%s:%lld", ectl_jpath(done, "path"), ectl_jint(done, "line_start"));
		else
			printf("%s:%lld-%lld", ectl_jpath(done, "path"), ectl_jint(done, "line_start"),
			       ectl_jint(done, "line_end"));
		if (ectl_jint(done, "page"))
			printf(" (page %lld)", ectl_jint(done, "page"));
		printf("  [tokens %lld-%lld]\n", ectl_jint(done, "tok_start"), ectl_jint(done, "tok_end"));
		if (text && json_object_get(done, "text"))
			fputs(ectl_jstr(done, "text"), stdout);
	}
	json_decref(done);
	return rc;
}

/* ---------------------------------------------------------------- store */

/* store check [--deep]: problems found exit 1, as an error would. */
static int cmd_store_check(ectl_ctx *x, int argc, char **argv)
{
	json_t *done = NULL;
	int deep = 0;
	if (argc == 3 && !strcmp(argv[2], "--deep"))
		deep = 1;
	else if (argc != 2) {
		fprintf(stderr, "engramctl store check: the only option is --deep\n");
		return ECTL_EXIT_USAGE;
	}
	int rc = ectl_request(x, json_pack("{s:s,s:b}", "op", "store_check",
					   "deep", deep), &done);
	if (rc == 0) {
		long long n = ectl_jint(done, "problems");
		if (!x->json && n == 0)
			printf("store check%s: no problems (%lld sessions, %lld "
			       "blocks, %.1f s)\n", deep ? " --deep" : "",
			       ectl_jint(done, "sessions"), ectl_jint(done, "blocks"),
			       json_number_value(json_object_get(done, "seconds")));
		if (n) {
			if (!x->json)
				fprintf(stderr, "engramctl: store check%s: %lld "
					"problem%s; the first: %s\n", deep ?
					" --deep" : "", n, n == 1 ? "" : "s",
					ectl_jstr(done, "first"));
			rc = ECTL_EXIT_ERROR;
		}
	}
	json_decref(done);
	return rc;
}

static int cmd_store(ectl_ctx *x, int argc, char **argv)
{
	json_t *done = NULL;
	if (argc >= 2 && !strcmp(argv[1], "check"))
		return cmd_store_check(x, argc, argv);
	int rc = ectl_no_args(argc, argv, "store");
	if (rc)
		return rc;
	rc = ectl_request(x, json_pack("{s:s}", "op", "store"), &done);
	if (rc == 0 && !x->json) {
		printf("sessions        %lld\n", ectl_jint(done, "sessions"));
		printf("stream tokens   %lld\n", ectl_jint(done, "stream_tokens"));
		printf("blocks          %lld (%lld unique, %lld shared)\n", ectl_jint(done, "blocks"),
		       ectl_jint(done, "unique_blocks"), ectl_jint(done, "shared_blocks"));
		printf("tokens stored   %lld, %.1f bytes/token\n", ectl_jint(done, "tokens_stored"),
		       json_number_value(json_object_get(done, "bytes_per_token")));
		printf("checkpoints     %lld (%lld bytes)\n", ectl_jint(done, "checkpoints"),
		       ectl_jint(done, "checkpoint_bytes"));
		printf("on disk         %lld bytes (map %lld, used %lld)\n",
		       ectl_jint(done, "bytes_on_disk"), ectl_jint(done, "map_size"),
		       ectl_jint(done, "map_used"));
	}
	json_decref(done);
	return rc;
}

static int cmd_gc(ectl_ctx *x, int argc, char **argv)
{
	json_t *done = NULL;
	int compact = 0;
	if (argc == 2 && !strcmp(argv[1], "--compact"))
		compact = 1;
	else if (argc != 1) {
		fprintf(stderr, "engramctl gc: the only option is --compact\n");
		return ECTL_EXIT_USAGE;
	}
	int rc = ectl_request(x, json_pack("{s:s,s:b}", "op", "gc", "compact", compact), &done);
	if (rc == 0 && !x->json)
		printf("%lld records freed%s; %lld bytes on disk\n", ectl_jint(done, "freed"),
		       compact ? ", store compacted" : "", ectl_jint(done, "bytes_on_disk"));
	json_decref(done);
	return rc;
}

const ectl_command ectl_cmds_session[] = {
	{ "ingest", "[--name SESSION] [--json] [--detach] PATH...",
	  "read files and folders into a session's token stream",
	  "Walks the PATHs (files or folders; .gitignore and .engramignore are\n"
	  "honoured, build and VCS folders skipped), extracts the text of source,\n"
	  "HTML, PDF, DOCX and e-mail files, and tokenizes it into SESSION's\n"
	  "stream (created if absent; default: the first PATH's last component).\n"
	  "A second run over the same tree only redoes what changed.\n"
	  "Shows progress (a line redrawn on a terminal, a line every few seconds\n"
	  "otherwise), then a summary with skipped and failed files.  Ctrl-C stops\n"
	  "watching; the job goes on (engramctl cancel JOB stops it).\n"
	  "  -n, --name SESSION  the session\n"
	  "  -d, --detach        start the job and print its id\n"
	  "  -j, --json          the daemon's events as JSON lines",
	  cmd_ingest },
	{ "prefill", "[--json] [--detach] [--no-reuse] SESSION",
	  "run a session's stream through the model and store its KV cache",
	  "Starts a prefill job: the model reads SESSION's token stream and its KV\n"
	  "blocks are stored, so that ask can answer from them.  A job resumes where\n"
	  "the last one stopped.  A session not prefilled yet whose context begins\n"
	  "with what another session stored (up to one of its checkpoints) takes\n"
	  "that part over without computing it (\"reused\").\n"
	  "Shows progress (a line redrawn on a terminal, a line every few seconds\n"
	  "otherwise), then what was done.  Ctrl-C stops watching; the job goes on\n"
	  "(engramctl cancel JOB stops it).\n"
	  "  -d, --detach        start the job and print its id\n"
	  "  -j, --json          the daemon's events as JSON lines\n"
	  "      --no-reuse      compute everything, even a stored prefix",
	  cmd_prefill },
	{ "jobs", "", "list recent jobs", "Lists the newest jobs with state, files and tokens.",
	  cmd_jobs },
	{ "job", "JOB", "show a job",
	  "Shows a job's state, progress and its full list of skipped and failed files.",
	  cmd_job },
	{ "cancel", "JOB", "stop a running job",
	  "Asks a running job to stop.  Its session keeps the part of the stream\n"
	  "before the job's first change; the next ingest resumes from there.", cmd_cancel },
	{ "sessions", "", "list sessions",
	  "Lists sessions with their stream tokens, prefilled tokens, documents and\n"
	  "creation time.", cmd_sessions },
	{ "session", "show|rm|rename|fork NAME [NEW]", "show, remove, rename or fork a session",
	  "  show NAME          details and documents\n"
	  "  rm NAME            delete the session, its stream, spans and KV blocks\n"
	  "  rename NAME NEW    rename it\n"
	  "  fork NAME NEW      copy it, KV cache included, as NEW, so that each can\n"
	  "                     go on with its own conversation (ask --keep)", cmd_session },
	{ "source", "[--text] SESSION POS", "map a token position to its file and line",
	  "Prints the file, lines and page that token POS of SESSION's stream came\n"
	  "from, and the span of tokens around it.\n"
	  "  --text   also print the span's text, detokenized", cmd_source },
	{ "store", "[check [--deep]]", "show store statistics, or check the store",
	  "Shows sessions, stream tokens, KV blocks (unique and shared), bytes per\n"
	  "token and bytes on disk.\n"
	  "  check          check that blocks, reference counts, chains, summaries,\n"
	  "                 checkpoints, heads and the catalog agree; exit 1 and the\n"
	  "                 first problem if they do not\n"
	  "  check --deep   also verify every block's checksum (reads the whole\n"
	  "                 store; questions wait meanwhile)", cmd_store },
	{ "gc", "[--compact]", "free unreferenced blocks",
	  "Frees what no session reaches; --compact also rewrites the LMDB file.",
	  cmd_gc },
	{ NULL, NULL, NULL, NULL, NULL },
};

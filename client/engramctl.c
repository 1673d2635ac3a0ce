/* engramctl.c - the command line for engramd.  Each command is an entry in
 * the table below with its own help; output is readable by default and the
 * daemon's own JSON events with --json.  Exit statuses are in ectl.h. */
#include "config.h"
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "ectl.h"
#include "paths.h"

typedef struct ctx {
	const char *socket;
	int json;		/* print events as JSON lines */
	ectl_conn conn;
} ctx;

typedef struct command {
	const char *name;
	const char *args;	/* usage after the name */
	const char *summary;
	const char *help;	/* longer text for COMMAND --help */
	int (*run)(ctx *x, int argc, char **argv);
} command;

static const command commands[];

/* ------------------------------------------------------------- output */

/* Prints each event as a JSON line (--json), or errors readably. */
static int print_event(void *arg, json_t *ev)
{
	ctx *x = arg;
	if (x->json) {
		char *s = json_dumps(ev, JSON_COMPACT);
		if (s) {
			puts(s);
			fflush(stdout);
		}
		free(s);
		return 0;
	}
	json_t *err = json_object_get(ev, "error");
	if (err)
		fprintf(stderr, "engramctl: %s: %s\n",
			json_string_value(json_object_get(err, "code")),
			json_string_value(json_object_get(err, "message")));
	return 0;
}

struct capture {
	ctx *x;
	json_t *done;		/* the final "done" event, kept */
};

static int capture_event(void *arg, json_t *ev)
{
	struct capture *cp = arg;
	const char *name = json_string_value(json_object_get(ev, "event"));
	print_event(cp->x, ev);
	if (name && !strcmp(name, "done")) {
		json_decref(cp->done);
		cp->done = json_incref(ev);
	}
	return 0;
}

/* Sends one request and keeps its "done" event in *done (caller decrefs). */
static int call(ctx *x, json_t *req, json_t **done)
{
	struct capture cp = { x, NULL };
	int rc = ectl_connect(&x->conn, x->socket);
	if (rc < 0) {
		json_decref(req);
		return -rc;
	}
	rc = ectl_call(&x->conn, req, capture_event, &cp);
	ectl_close(&x->conn);
	if (done)
		*done = cp.done;
	else
		json_decref(cp.done);
	return rc;
}

static void print_duration(double s)
{
	long t = (long)s;
	if (t >= 86400)
		printf("%ldd %ldh %ldm", t / 86400, t % 86400 / 3600, t % 3600 / 60);
	else if (t >= 3600)
		printf("%ldh %ldm %lds", t / 3600, t % 3600 / 60, t % 60);
	else if (t >= 60)
		printf("%ldm %lds", t / 60, t % 60);
	else
		printf("%.1fs", s);
}

/* ------------------------------------------------------------- commands */

static int no_args(int argc, char **argv, const char *name)
{
	if (argc > 1) {
		fprintf(stderr, "engramctl %s: unexpected argument '%s'\n", name, argv[1]);
		return ECTL_EXIT_USAGE;
	}
	return 0;
}

static int cmd_ping(ctx *x, int argc, char **argv)
{
	json_t *done = NULL;
	int rc = no_args(argc, argv, "ping");
	if (rc)
		return rc;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	rc = call(x, json_pack("{s:s}", "op", "ping"), &done);
	clock_gettime(CLOCK_MONOTONIC, &b);
	if (rc == 0 && !x->json)
		printf("pong from %s in %.2f ms\n", x->socket,
		       (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
	json_decref(done);
	return rc;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "-";
}

static long long jint(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

static int cmd_status(ctx *x, int argc, char **argv)
{
	json_t *done = NULL;
	int rc = no_args(argc, argv, "status");
	if (rc)
		return rc;
	rc = call(x, json_pack("{s:s}", "op", "status"), &done);
	if (rc == 0 && !x->json) {
		json_t *counts = json_object_get(done, "counts");
		json_t *model = json_object_get(done, "model");
		printf("engramd %s, pid %lld, up ", jstr(done, "version"), jint(done, "pid"));
		print_duration(json_number_value(json_object_get(done, "uptime_s")));
		printf("%s\n", json_is_true(json_object_get(done, "stopping")) ? " (stopping)" : "");
		printf("  data dir     %s\n", jstr(done, "data_dir"));
		printf("  socket       %s\n", jstr(done, "socket"));
		printf("  model        %s\n", json_is_object(model) ? jstr(model, "name") : "none loaded");
		printf("  connections  %lld open, %lld since start\n",
		       jint(counts, "connections"), jint(counts, "connections_total"));
		printf("  requests     %lld served, %lld errors, %lld in flight\n",
		       jint(counts, "requests_total"), jint(counts, "errors_total"),
		       jint(done, "inflight"));
	}
	json_decref(done);
	return rc;
}

static int cmd_shutdown(ctx *x, int argc, char **argv)
{
	int rc = no_args(argc, argv, "shutdown");
	if (rc)
		return rc;
	rc = call(x, json_pack("{s:s}", "op", "shutdown"), NULL);
	if (rc == 0 && !x->json)
		printf("engramd is stopping\n");
	return rc;
}

static int cmd_help(ctx *x, int argc, char **argv);

static const command commands[] = {
	{ "ping", "", "check that engramd answers",
	  "Sends a ping and prints the round-trip time.", cmd_ping },
	{ "status", "", "show the daemon's version, uptime, paths and counters",
	  "Shows engramd's version, pid, uptime, data dir, socket, model and\n"
	  "connection and request counters.", cmd_status },
	{ "shutdown", "", "stop engramd cleanly",
	  "Asks engramd to stop: it stops accepting, cancels or checkpoints what\n"
	  "runs, closes its stores and exits 0.", cmd_shutdown },
	{ "help", "[COMMAND]", "show help for engramctl or a command",
	  "Shows the list of commands, or one command's help.", cmd_help },
	{ NULL, NULL, NULL, NULL, NULL },
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: engramctl [--socket PATH] [--json] COMMAND [ARGS]\n"
"Drive engramd, engram's daemon, from a shell or a script.\n"
"\n"
"Options:\n"
"  -s, --socket PATH  engramd's socket (default $ENGRAM_SOCKET, else\n"
"                     $XDG_RUNTIME_DIR/engram/engramd.sock or\n"
"                     /tmp/engram-$UID/engramd.sock)\n"
"  -j, --json         print the daemon's events as JSON lines\n"
"  -h, --help         show this help (COMMAND --help for a command's)\n"
"  -V, --version      show the version\n"
"\n"
"Commands:\n");
	for (const command *c = commands; c->name; c++)
		fprintf(f, "  %-10s %s\n", c->name, c->summary);
	fprintf(f,
"\n"
"Exit status: 0 ok, 1 engramd answered with an error, 2 usage error,\n"
"3 cannot reach engramd, 130 interrupted.\n");
}

static const command *find_command(const char *name)
{
	for (const command *c = commands; c->name; c++)
		if (!strcmp(c->name, name))
			return c;
	return NULL;
}

static void command_help(const command *c)
{
	printf("usage: engramctl [--socket PATH] [--json] %s%s%s\n%s\n\n%s\n",
	       c->name, *c->args ? " " : "", c->args, c->summary, c->help);
}

static int cmd_help(ctx *x, int argc, char **argv)
{
	if (argc < 2) {
		usage(stdout);
		return 0;
	}
	const command *c = find_command(argv[1]);
	if (!c) {
		fprintf(stderr, "engramctl: unknown command '%s'\n", argv[1]);
		return ECTL_EXIT_USAGE;
	}
	command_help(c);
	return 0;
}

static void on_sigint(int sig)
{
	ectl_interrupted = 1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	ctx x = { 0 };
	char *def = NULL;
	int c;

	/* '+': options end at the command, which takes its own. */
	while ((c = getopt_long(argc, argv, "+s:jhV", opts, NULL)) != -1) {
		switch (c) {
		case 's': x.socket = optarg; break;
		case 'j': x.json = 1; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("engramctl %s\n", PACKAGE_VERSION); return 0;
		default: usage(stderr); return ECTL_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return ECTL_EXIT_USAGE;
	}
	const command *cmd = find_command(argv[optind]);
	if (!cmd) {
		fprintf(stderr, "engramctl: unknown command '%s'; try 'engramctl help'\n", argv[optind]);
		return ECTL_EXIT_USAGE;
	}
	for (int i = optind + 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			command_help(cmd);
			return 0;
		}
	}
	if (!x.socket)
		x.socket = getenv("ENGRAM_SOCKET");
	if (!x.socket || !*x.socket)
		x.socket = def = ed_paths_socket_default();
	struct sigaction sa = { .sa_handler = on_sigint };
	sigaction(SIGINT, &sa, NULL);	/* no SA_RESTART: waits see EINTR */
	signal(SIGPIPE, SIG_IGN);
	int rc = cmd->run(&x, argc - optind, argv + optind);
	free(def);
	if (ectl_interrupted) {
		fprintf(stderr, "engramctl: interrupted\n");
		return ECTL_EXIT_INTERRUPTED;
	}
	return rc;
}

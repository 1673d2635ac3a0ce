/* engramctl.c - the command line for engramd: options, help, dispatch.
 * Each command is an entry in a table (cmd_*.c) with its own help; output
 * is readable by default and the daemon's own JSON events with --json.
 * Exit statuses are in ectl.h. */
#include "config.h"
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "ectl.h"
#include "paths.h"
#include "text.h"

static int cmd_help(ectl_ctx *x, int argc, char **argv);

static const ectl_command help_cmds[] = {
	{ "help", "[COMMAND]", "show help for engramctl or a command",
	  "Shows the list of commands, or one command's help.", cmd_help },
	{ NULL, NULL, NULL, NULL, NULL },
};

/* Every command table, in the order help lists them. */
static const ectl_command *const tables[] = {
	ectl_cmds_daemon, ectl_cmds_model, ectl_cmds_generate, ectl_cmds_session,
	help_cmds,
};
#define N_TABLES (sizeof(tables) / sizeof(tables[0]))

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
	for (size_t t = 0; t < N_TABLES; t++)
		for (const ectl_command *c = tables[t]; c->name; c++)
			fprintf(f, "  %-10s %s\n", c->name, c->summary);
	fprintf(f,
"\n"
"Exit status: 0 ok, 1 engramd answered with an error, 2 usage error,\n"
"3 cannot reach engramd, 130 interrupted.\n");
}

static const ectl_command *find_command(const char *name)
{
	for (size_t t = 0; t < N_TABLES; t++)
		for (const ectl_command *c = tables[t]; c->name; c++)
			if (!strcmp(c->name, name))
				return c;
	return NULL;
}

static void command_help(const ectl_command *c)
{
	printf("usage: engramctl [--socket PATH] [--json] %s%s%s\n%s\n\n%s\n",
	       c->name, *c->args ? " " : "", c->args, c->summary, c->help);
}

static int cmd_help(ectl_ctx *x, int argc, char **argv)
{
	if (argc < 2) {
		usage(stdout);
		return 0;
	}
	const ectl_command *c = find_command(argv[1]);
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
	ectl_ctx x = { 0 };
	char *def = NULL;
	int c;

	/* '+': options end at the command, which takes its own. */
	while ((c = getopt_long(argc, argv, "+s:jhV", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (!*optarg) {	/* not the default: a mistake */
				fprintf(stderr, "engramctl: --socket needs a path\n");
				return ECTL_EXIT_USAGE;
			}
			x.socket = optarg;
			break;
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
	const ectl_command *cmd = find_command(argv[optind]);
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

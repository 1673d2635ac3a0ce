/* main.c - engramd: settings, the data-dir lock, daemonising, signals, and
 * the loop.  Exit status: 0 after a clean stop, 1 when it cannot start
 * (data dir in use, socket taken, model unusable), 2 for a usage or config
 * error.  See engramd(8). */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include "engramd.h"
#include "skv.h"

static const char usage_text[] =
"usage: engramd [OPTION]...\n"
"Serve engram's long-context document analysis over a Unix socket.\n"
"\n"
"  -s, --socket PATH      socket (default $XDG_RUNTIME_DIR/engram/engramd.sock,\n"
"                         or /tmp/engram-$UID/engramd.sock)\n"
"  -d, --data-dir DIR     data directory (default $XDG_DATA_HOME/engram, or\n"
"                         ~/.local/share/engram)\n"
"  -c, --config FILE      config file (default $XDG_CONFIG_HOME/engram/engramd.conf)\n"
"  -m, --model PATH       GGUF model file, or 'none' (default: the default\n"
"                         model in DATA_DIR/models/)\n"
"  -f, --foreground       do not detach; log to stderr unless --log-file\n"
"      --log-file FILE    log to FILE (reopened on SIGHUP)\n"
"      --log-level LEVEL  debug, info, warn or error (default info)\n"
"      --syslog           log to syslog\n"
"  -w, --workers N        worker threads for requests (default 4)\n"
"  -t, --threads N        engine compute threads (default: one per core)\n"
"  -o, --set KEY=VALUE    any engramd.conf(5) setting\n"
"  -h, --help             show this help\n"
"  -V, --version          show the version\n"
"\n"
"Exit status: 0 stopped cleanly, 1 could not start, 2 usage or config error.\n";

static const struct option long_opts[] = {
	{ "socket", required_argument, NULL, 's' },
	{ "data-dir", required_argument, NULL, 'd' },
	{ "config", required_argument, NULL, 'c' },
	{ "model", required_argument, NULL, 'm' },
	{ "foreground", no_argument, NULL, 'f' },
	{ "log-file", required_argument, NULL, 'L' },
	{ "log-level", required_argument, NULL, 'l' },
	{ "syslog", no_argument, NULL, 'S' },
	{ "workers", required_argument, NULL, 'w' },
	{ "threads", required_argument, NULL, 't' },
	{ "set", required_argument, NULL, 'o' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};
static const char short_opts[] = "s:d:c:m:fw:t:o:hV";

static void die_usage(const char *msg)
{
	fprintf(stderr, "engramd: %s\nTry 'engramd --help'.\n", msg);
	exit(2);
}

/* The command-line option as a settings key. */
static const char *opt_key(int c)
{
	switch (c) {
	case 's': return "socket";
	case 'd': return "data_dir";
	case 'm': return "model";
	case 'L': return "log_file";
	case 'l': return "log_level";
	case 'w': return "workers";
	case 't': return "threads";
	}
	return NULL;
}

static void apply(ed_settings *s, const char *key, const char *val)
{
	char err[512];
	if (ed_settings_set(s, key, val, err, sizeof(err)) < 0)
		die_usage(err);
}

/* Defaults < config file < command line: the first pass finds the config
 * file, the second applies the options over it. */
static void parse_args(ed_settings *s, int argc, char **argv)
{
	const char *config = NULL;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, short_opts, long_opts, NULL)) != -1) {
		if (c == 'h') {
			fputs(usage_text, stdout);
			exit(0);
		}
		if (c == 'V') {
			printf("engramd %s\n", PACKAGE_VERSION);
			exit(0);
		}
		if (c == 'c')
			config = optarg;
		if (c == '?') {
			char m[128];
			snprintf(m, sizeof(m), "unknown or incomplete option '%s'", argv[optind - 1]);
			die_usage(m);
		}
	}
	if (optind < argc)
		die_usage("unexpected argument");

	char err[1024];
	char *def = config ? NULL : ed_paths_config_default();
	const char *path = config ? config : def;
	int rc = path ? ed_config_load(s, path, err, sizeof(err)) : -ENOENT;
	if (rc < 0 && (config || rc != -ENOENT)) {
		fprintf(stderr, "engramd: %s\n", err);
		exit(2);
	}
	if (rc == 0)
		s->config_path = strdup(path);
	free(def);

	optind = 0;
	while ((c = getopt_long(argc, argv, short_opts, long_opts, NULL)) != -1) {
		const char *key = opt_key(c);
		if (key) {
			apply(s, key, optarg);
		} else if (c == 'f') {
			s->foreground = 1;
		} else if (c == 'S') {
			s->use_syslog = 1;
		} else if (c == 'o') {
			char *eq = strchr(optarg, '=');
			if (!eq)
				die_usage("--set takes KEY=VALUE");
			*eq = 0;
			apply(s, optarg, eq + 1);
			*eq = '=';
		}
	}
}

/* ------------------------------------------------------------- start-up */

static int lock_fd = -1;

/* One engramd per data dir: flock() is released by the kernel whatever way
 * the process ends, so a crash never leaves a stale lock. */
static int lock_data_dir(const char *dir)
{
	char path[4096], pid[32];
	snprintf(path, sizeof(path), "%s/engramd.lock", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "engramd: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = 0;
		pid[strcspn(pid, "\n")] = 0;
		fprintf(stderr, "engramd: data dir %s is in use by another engramd (pid %s)\n",
			dir, *pid ? pid : "unknown");
		close(fd);
		return -1;
	}
	int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, n, 0) != n)
		fprintf(stderr, "engramd: warning: cannot write pid to %s\n", path);
	lock_fd = fd;
	return 0;
}

/* The socket's folder must be ours and closed to others. */
static int prepare_socket_dir(const char *sock)
{
	char dir[4096];
	struct stat st;

	snprintf(dir, sizeof(dir), "%s", sock);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = 0;
	if (stat(dir, &st) < 0) {
		int rc = ed_mkdirs(dir, 0700);
		if (rc < 0) {
			fprintf(stderr, "engramd: cannot create %s: %s\n", dir, strerror(-rc));
			return -1;
		}
		return 0;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "engramd: %s is not a directory\n", dir);
		return -1;
	}
	return 0;
}

static int prepare_dirs(ed_settings *s)
{
	int rc = ed_mkdirs(s->data_dir, 0700);
	if (rc < 0) {
		fprintf(stderr, "engramd: cannot create data dir %s: %s\n", s->data_dir, strerror(-rc));
		return -1;
	}
	return prepare_socket_dir(s->socket_path);
}

/* Forks; the parent waits until the child says it is serving (or failed)
 * and exits with that status, so `engramd && engramctl status` works. */
static int ready_fd = -1;

static void detach(void)
{
	int p[2];
	if (pipe(p) < 0) {
		perror("engramd: pipe");
		exit(1);
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("engramd: fork");
		exit(1);
	}
	if (pid > 0) {
		unsigned char st = 1;
		close(p[1]);
		if (read(p[0], &st, 1) != 1)
			st = 1;
		exit(st);
	}
	close(p[0]);
	ready_fd = p[1];
	setsid();
}

static void report_ready(int status)
{
	if (ready_fd < 0)
		return;
	unsigned char st = (unsigned char)status;
	if (write(ready_fd, &st, 1) != 1)
		ed_log(ED_LOG_WARN, "cannot tell the parent process we are ready");
	close(ready_fd);
	ready_fd = -1;
	if (status == 0) {
		int fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
	}
}

/* ------------------------------------------------------------- signals */

static uv_signal_t sig_term, sig_int, sig_hup;

static void on_signal(uv_signal_t *h, int signum)
{
	ed_server *srv = h->data;
	if (signum == SIGHUP) {
		int rc = ed_log_reopen();
		ed_log(rc < 0 ? ED_LOG_ERROR : ED_LOG_INFO, "SIGHUP: log reopened%s%s",
		       rc < 0 ? ": " : "", rc < 0 ? strerror(-rc) : "");
		return;
	}
	ed_server_stop(srv, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* Once stopping, the loop must be free to end: a second SIGTERM or SIGINT
 * then has its default effect. */
static void close_signals(void *arg)
{
	uv_close((uv_handle_t *)&sig_term, NULL);
	uv_close((uv_handle_t *)&sig_int, NULL);
	uv_close((uv_handle_t *)&sig_hup, NULL);
}

static void watch_signals(uv_loop_t *loop, ed_server *srv)
{
	uv_signal_t *hs[] = { &sig_term, &sig_int, &sig_hup };
	int sigs[] = { SIGTERM, SIGINT, SIGHUP };
	for (int i = 0; i < 3; i++) {
		uv_signal_init(loop, hs[i]);
		hs[i]->data = srv;
		uv_signal_start(hs[i], on_signal, sigs[i]);
	}
	ed_server_on_stop(srv, close_signals, NULL);
}

int main(int argc, char **argv)
{
	ed_settings s;
	ed_server *srv = NULL;
	uv_loop_t *loop = uv_default_loop();
	char buf[16];

	ed_settings_init(&s);
	parse_args(&s, argc, argv);
	if (ed_paths_default(&s) < 0) {
		fprintf(stderr, "engramd: out of memory\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	snprintf(buf, sizeof(buf), "%d", s.workers);
	setenv("UV_THREADPOOL_SIZE", buf, 1);

	if (!s.foreground)
		detach();
	if (prepare_dirs(&s) < 0 || lock_data_dir(s.data_dir) < 0)
		goto fail;
	if (!s.foreground && !s.use_syslog && !s.log_file) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/engramd.log", s.data_dir);
		s.log_file = strdup(path);
	}
	if (ed_log_open(&s) < 0) {
		fprintf(stderr, "engramd: cannot open log %s: %s\n", s.log_file, strerror(errno));
		goto fail;
	}
	char err[1024];
	if (ed_model_load(&s, err, sizeof(err)) < 0) {
		fprintf(stderr, "engramd: %s\n", err);
		ed_log(ED_LOG_ERROR, "%s", err);
		goto fail;
	}
	if (ed_store_open(&s, err, sizeof(err)) < 0) {
		fprintf(stderr, "engramd: %s\n", err);
		ed_log(ED_LOG_ERROR, "%s", err);
		goto fail;
	}
	if (ed_server_open(&srv, &s, loop) < 0) {
		fprintf(stderr, "engramd: cannot listen on %s (see the log)\n", s.socket_path);
		goto fail;
	}
	ed_ops_init(srv);
	/* Before listening: a client that reaches the socket may signal at
	 * once, and a SIGHUP with no handler yet would kill the daemon. */
	watch_signals(loop, srv);
	if (ed_server_listen(srv) < 0) {
		fprintf(stderr, "engramd: cannot listen on %s (see the log)\n", s.socket_path);
		goto fail;
	}
	ed_log(ED_LOG_INFO, "engramd %s started, pid %ld, data dir %s%s%s",
	       PACKAGE_VERSION, (long)getpid(), s.data_dir,
	       s.config_path ? ", config " : "", s.config_path ? s.config_path : "");
	ed_warm_start(loop, &s);
	ed_idle_start(loop, &s);
	report_ready(0);

	uv_run(loop, UV_RUN_DEFAULT);

	ed_server_close(srv);
	ed_skv_forget();
	ed_store_close();
	ed_model_unload();
	ed_log(ED_LOG_INFO, "stopped");
	uv_loop_close(loop);
	ed_log_close();
	ed_settings_free(&s);
	if (lock_fd >= 0)
		close(lock_fd);
	return 0;
fail:
	report_ready(1);
	ed_store_close();
	ed_model_unload();
	if (srv) {
		ed_server_close(srv);
	}
	ed_settings_free(&s);
	return 1;
}

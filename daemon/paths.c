/* paths.c - where engram keeps things by default (the XDG base directory
 * rules), shared by engramd and engramctl so that both agree. */
#include "config.h"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "paths.h"

static char *join(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 1;
	char *r = malloc(n);
	if (r)
		snprintf(r, n, "%s%s", a, b);
	return r;
}

/* $VAR when set to an absolute path, else $HOME/fallback. */
static char *xdg_dir(const char *var, const char *fallback)
{
	const char *v = getenv(var), *home = getenv("HOME");
	if (v && v[0] == '/')
		return strdup(v);
	if (!home || home[0] != '/')
		home = "/tmp";
	return join(home, fallback);
}

char *ed_paths_config_default(void)
{
	char *base = xdg_dir("XDG_CONFIG_HOME", "/.config");
	char *p = base ? join(base, "/engram/engramd.conf") : NULL;
	free(base);
	return p;
}

char *ed_paths_data_default(void)
{
	char *base = xdg_dir("XDG_DATA_HOME", "/.local/share");
	char *p = base ? join(base, "/engram") : NULL;
	free(base);
	return p;
}

char *ed_paths_socket_default(void)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	char buf[128];

	if (rt && rt[0] == '/')
		return join(rt, "/engram/engramd.sock");
	snprintf(buf, sizeof(buf), "/tmp/engram-%u/engramd.sock", (unsigned)getuid());
	return strdup(buf);
}

int ed_mkdirs(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; ; p++) {
		if (*p == '/' || *p == 0) {
			char c = *p;
			*p = 0;
			if (mkdir(buf, mode) < 0 && errno != EEXIST)
				return -errno;
			*p = c;
			if (!c)
				break;
		}
	}
	return 0;
}

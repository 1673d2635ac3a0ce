/* ops_util.h - what the suites that drive a real engramd share: one
 * request and its reply, reading replies, engramctl runs, a C file of
 * distinct lines.  The including file defines `static th_daemon D;` (the
 * daemon under test) before including this, after daemon_harness.h and
 * test_ing_util.h. */
#ifndef ENGRAM_TEST_OPS_UTIL_H
#define ENGRAM_TEST_OPS_UTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One request (printf-style line), its first reply. */
static UNUSED json_t *rq(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static UNUSED json_t *rq(const char *fmt, ...)
{
	char line[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	json_t *ev = th_roundtrip(D.sock, line);
	ck_assert_msg(ev != NULL, "no reply to %s", line);
	return ev;
}

static UNUSED const char *ev_name(json_t *ev)
{
	const char *s = json_string_value(json_object_get(ev, "event"));
	return s ? s : "";
}

static UNUSED long long jint(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

static UNUSED const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

/* Expects an error event with this code (and frees it). */
static UNUSED void expect_error(json_t *ev, const char *code)
{
	const char *got = th_err_code(ev);
	ck_assert_msg(got && !strcmp(got, code), "expected %s, got %s", code,
		      json_dumps(ev, JSON_COMPACT));
	json_decref(ev);
}

/* Runs engramctl with the test socket and the NULL-terminated arguments;
 * returns the exit status. */
static UNUSED int ctl(char **out, char **err, ...)
{
	const char *a[32];
	int n = 0;
	va_list ap;
	a[n++] = "--socket";
	a[n++] = D.sock;
	va_start(ap, err);
	const char *s;
	while ((s = va_arg(ap, const char *)) && n < 31)
		a[n++] = s;
	va_end(ap);
	a[n] = NULL;
	return th_ctl(a, NULL, out, err);
}

/* A C file of n lines, all different. */
static UNUSED void c_file(const char *dir, const char *rel, int n, int salt)
{
	size_t cap = (size_t)n * 80 + 64, len = 0;
	char *b = malloc(cap);
	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(b + len, cap - len,
					"int f%d_%d(int x) { return x * %d + %d; }\n", salt, i, i, salt);
	tu_write(dir, rel, b, len);
	free(b);
}

#endif

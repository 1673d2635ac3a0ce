/* test_ms_catalog.c - the SQLite catalog: schema version and migration,
 * documents, spans and their position lookup, jobs, audit log, name and
 * length validation, hostile strings stored verbatim. */
#include "config.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ms_internal.h"

static char dir[256];
static const uint8_t FP[16] = "catalog-test-fp";

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/ms_cat_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static ms_store *open_store(void)
{
	ms_store *ms;
	char err[256];
	int rc = ms_open(dir, NULL, &ms, err, sizeof(err));
	ck_assert_msg(rc == 0, "ms_open: %s", err);
	return ms;
}

static int64_t session(ms_store *ms, const char *name)
{
	ms_geom g = { 3, 1, 256, 64, MS_MODE_Q8 };
	int64_t id;
	ck_assert_int_eq(ms_session_create(ms, name, FP, &g, &id), 0);
	return id;
}

static int64_t doc(ms_store *ms, const char *path, const char *hash)
{
	ms_document d = { .size = 100, .mtime = 1700000000 };
	snprintf(d.path, sizeof(d.path), "%s", path);
	snprintf(d.content_hash, sizeof(d.content_hash), "%s", hash);
	snprintf(d.kind, sizeof(d.kind), "pdf");
	ck_assert_int_eq(ms_document_add(ms, &d), 0);
	return d.id;
}

START_TEST(test_schema_version)
{
	ms_store *ms = open_store();
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(ms->db, "PRAGMA user_version", -1,
					    &st, NULL), 0);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_int_eq(sqlite3_column_int(st, 0), MS_SCHEMA_VERSION);
	sqlite3_finalize(st);
	ck_assert_int_eq(sqlite3_prepare_v2(ms->db, "PRAGMA journal_mode", -1,
					    &st, NULL), 0);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	ck_assert_int_eq(sqlite3_prepare_v2(ms->db, "PRAGMA foreign_keys", -1,
					    &st, NULL), 0);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_int_eq(sqlite3_column_int(st, 0), 1);
	sqlite3_finalize(st);
	/* A newer schema is refused, not clobbered. */
	ck_assert_int_eq(sqlite3_exec(ms->db, "PRAGMA user_version = 99", NULL,
				      NULL, NULL), 0);
	ms_close(ms);
	char err[256];
	ck_assert_int_eq(ms_open(dir, NULL, &ms, err, sizeof(err)), MS_EVERSION);
	ck_assert_ptr_nonnull(strstr(err, "99"));
}
END_TEST

START_TEST(test_hostile_strings)
{
	ms_store *ms = open_store();
	int64_t id = session(ms, "s");
	/* Quotes and SQL in a path are data. */
	const char *path = "/docs/it's \"x\"; DROP TABLE sessions; --.pdf";
	int64_t d = doc(ms, path, "00ff");
	ms_document got;
	ck_assert_int_eq(ms_document_get(ms, d, &got), 0);
	ck_assert_str_eq(got.path, path);
	ms_session_info info;
	ck_assert_int_eq(ms_session_get(ms, "s", &info), 0);
	ck_assert_int_eq(info.id, id);
	ck_assert_int_eq(ms_session_get(ms, "s' OR '1'='1", &info), MS_ENAME);
	/* Bad hash, kind, empty path. */
	ms_document bad = { .size = 1 };
	snprintf(bad.path, sizeof(bad.path), "/a");
	snprintf(bad.content_hash, sizeof(bad.content_hash), "XYZ");
	snprintf(bad.kind, sizeof(bad.kind), "pdf");
	ck_assert_int_eq(ms_document_add(ms, &bad), MS_EINVAL);
	snprintf(bad.content_hash, sizeof(bad.content_hash), "ab");
	bad.path[0] = 0;
	ck_assert_int_eq(ms_document_add(ms, &bad), MS_EINVAL);
	ms_close(ms);
}
END_TEST

START_TEST(test_documents)
{
	ms_store *ms = open_store();
	int64_t a = doc(ms, "/a.pdf", "aa");
	int64_t b = doc(ms, "/a.pdf", "bb");	/* new content: new row */
	int64_t a2 = doc(ms, "/a.pdf", "aa");	/* same: same id */
	ck_assert_int_ne(a, b);
	ck_assert_int_eq(a, a2);
	ms_document d;
	ck_assert_int_eq(ms_document_get(ms, b, &d), 0);
	ck_assert_str_eq(d.content_hash, "bb");
	ck_assert_str_eq(d.kind, "pdf");
	ck_assert_int_eq(d.size, 100);
	ck_assert_int_eq(d.mtime, 1700000000);
	ck_assert_int_eq(ms_document_get(ms, 999, &d), MS_ENOTFOUND);
	ms_close(ms);
}
END_TEST

START_TEST(test_spans)
{
	ms_store *ms = open_store();
	int64_t s = session(ms, "s"), t = session(ms, "t");
	int64_t d = doc(ms, "/x.txt", "01");
	/* 1000 adjacent spans of 100 tokens, each 10 lines, page = i / 5. */
	ms_span *sp = calloc(1000, sizeof(*sp));
	for (int i = 0; i < 1000; i++)
		sp[i] = (ms_span){ s, (uint64_t)i * 100, (uint64_t)i * 100 + 100,
				   d, i * 10 + 1, i * 10 + 10, i / 5 };
	ck_assert_int_eq(ms_span_add(ms, sp, 1000), 0);
	ms_span o;
	ck_assert_int_eq(ms_span_lookup(ms, s, 0, &o), 0);
	ck_assert_uint_eq(o.tok_start, 0);
	ck_assert_int_eq(ms_span_lookup(ms, s, 54321, &o), 0);
	ck_assert_uint_eq(o.tok_start, 54300);
	ck_assert_int_eq(o.line_start, 5431);
	ck_assert_int_eq(o.page, 108);
	ck_assert_int_eq(ms_span_lookup(ms, s, 99999, &o), 0);
	ck_assert_int_eq(ms_span_lookup(ms, s, 100000, &o), MS_ENOTFOUND);
	ck_assert_int_eq(ms_span_lookup(ms, t, 5, &o), MS_ENOTFOUND);
	/* Overlaps are refused, and a failing batch adds nothing. */
	ms_span ov[2] = { { t, 0, 10, d, 1, 1, 0 }, { s, 150, 160, d, 1, 1, 0 } };
	ck_assert_int_eq(ms_span_add(ms, ov, 2), MS_EEXIST);
	ck_assert_int_eq(ms_span_lookup(ms, t, 5, &o), MS_ENOTFOUND);
	ms_span ov2 = { s, 100000, 100010, d, 1, 1, 0 };
	ck_assert_int_eq(ms_span_add(ms, &ov2, 1), 0);	/* adjacent: fine */
	ms_span before = { t, 50, 60, d, 1, 1, 0 }, cover = { t, 40, 70, d, 1, 1, 0 };
	ck_assert_int_eq(ms_span_add(ms, &before, 1), 0);
	ck_assert_int_eq(ms_span_add(ms, &cover, 1), MS_EEXIST);
	ms_span empty = { t, 5, 5, d, 1, 1, 0 };
	ck_assert_int_eq(ms_span_add(ms, &empty, 1), MS_EINVAL);
	ms_span nodoc = { t, 100, 110, 424242, 1, 1, 0 };
	ck_assert_int_eq(ms_span_add(ms, &nodoc, 1), MS_ENOTFOUND);
	/* Deleting the session deletes its spans. */
	ck_assert_int_eq(ms_session_delete(ms, "s"), 0);
	ck_assert_int_eq(ms_span_lookup(ms, s, 0, &o), MS_ENOTFOUND);
	ck_assert_int_eq(ms_span_lookup(ms, t, 55, &o), 0);
	free(sp);
	ms_close(ms);
}
END_TEST

START_TEST(test_jobs)
{
	ms_store *ms = open_store();
	int64_t s = session(ms, "s");
	ms_job j = { .session_id = s, .total = 1000 };
	snprintf(j.kind, sizeof(j.kind), "prefill");
	ck_assert_int_eq(ms_job_create(ms, &j), 0);
	ck_assert_int_gt(j.id, 0);
	j.state = MS_JOB_RUNNING;
	j.done = 500;
	ck_assert_int_eq(ms_job_update(ms, &j), 0);
	ms_job g;
	ck_assert_int_eq(ms_job_get(ms, j.id, &g), 0);
	ck_assert_int_eq(g.state, MS_JOB_RUNNING);
	ck_assert_uint_eq(g.done, 500);
	ck_assert_uint_eq(g.total, 1000);
	ck_assert_int_eq(g.session_id, s);
	j.state = MS_JOB_FAILED;
	snprintf(j.error, sizeof(j.error), "disk budget exhausted");
	ck_assert_int_eq(ms_job_update(ms, &j), 0);
	ms_job k = { 0 };
	snprintf(k.kind, sizeof(k.kind), "ingest");
	ck_assert_int_eq(ms_job_create(ms, &k), 0);
	ms_job *list;
	size_t n;
	ck_assert_int_eq(ms_job_list(ms, 10, &list, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(list[0].id, k.id);	/* newest first */
	ck_assert_str_eq(list[1].error, "disk budget exhausted");
	ms_free(list);
	ck_assert_int_eq(ms_job_list(ms, 0, &list, &n), MS_EINVAL);
	j.state = (ms_job_state)9;
	ck_assert_int_eq(ms_job_update(ms, &j), MS_EINVAL);
	k.id = 777;
	ck_assert_int_eq(ms_job_update(ms, &k), MS_ENOTFOUND);
	ms_job bad = { 0 };
	snprintf(bad.kind, sizeof(bad.kind), "bad kind");
	ck_assert_int_eq(ms_job_create(ms, &bad), MS_EINVAL);
	/* A job outlives its session (session_id set to 0). */
	ck_assert_int_eq(ms_session_delete(ms, "s"), 0);
	ck_assert_int_eq(ms_job_get(ms, j.id, &g), 0);
	ck_assert_int_eq(g.session_id, 0);
	ms_close(ms);
}
END_TEST

START_TEST(test_audit)
{
	ms_store *ms = open_store();
	session(ms, "s");
	for (int i = 0; i < 5; i++) {
		ms_audit a = { 0 };
		snprintf(a.who, sizeof(a.who), "uid:1000");
		snprintf(a.action, sizeof(a.action), "query %d", i);
		snprintf(a.session, sizeof(a.session), i % 2 ? "s" : "");
		snprintf(a.model, sizeof(a.model), "gemma-3-270m-q4_k_m");
		snprintf(a.settings, sizeof(a.settings), "{\"temp\":0}");
		ck_assert_int_eq(ms_audit_append(ms, &a), 0);
		ck_assert_int_gt(a.id, 0);
	}
	ms_audit *list;
	size_t n;
	ck_assert_int_eq(ms_audit_list(ms, "s", 100, &list, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(list[0].action, "query 3");
	ck_assert_str_eq(list[0].settings, "{\"temp\":0}");
	ms_free(list);
	ck_assert_int_eq(ms_audit_list(ms, NULL, 3, &list, &n), 0);
	ck_assert_uint_eq(n, 3);
	ms_free(list);
	/* The log survives the session. */
	ck_assert_int_eq(ms_session_delete(ms, "s"), 0);
	ck_assert_int_eq(ms_audit_list(ms, "s", 100, &list, &n), 0);
	ck_assert_uint_eq(n, 2);
	ms_free(list);
	ms_audit bad = { 0 };
	snprintf(bad.who, sizeof(bad.who), "x");
	ck_assert_int_eq(ms_audit_append(ms, &bad), MS_ERANGE);	/* no action */
	snprintf(bad.action, sizeof(bad.action), "x");
	snprintf(bad.session, sizeof(bad.session), "../etc");
	ck_assert_int_eq(ms_audit_append(ms, &bad), MS_ENAME);
	ms_close(ms);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ms_catalog");
	TCase *tc = tcase_create("catalog");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_schema_version);
	tcase_add_test(tc, test_hostile_strings);
	tcase_add_test(tc, test_documents);
	tcase_add_test(tc, test_spans);
	tcase_add_test(tc, test_jobs);
	tcase_add_test(tc, test_audit);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* test_ms_stream.c - a session's token stream and manifest in the catalog
 * (memstore/stream.c): appends across chunk boundaries, reads of any
 * range, truncation, span truncation and bulk append, manifests, cascade
 * on session delete, and the migration from schema 1. */
#include "config.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ms_internal.h"

static char dir[256];
static const uint8_t FP[16] = "stream-test-fp!";

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/ms_stream_XXXXXX");
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

/* Token i of the test stream. */
static int32_t tok(uint64_t i)
{
	return (int32_t)(i * 2654435761u % 262144);
}

static void append_range(ms_store *ms, int64_t id, uint64_t from, size_t n)
{
	int32_t *v = malloc(n * sizeof(*v) + 1);
	for (size_t i = 0; i < n; i++)
		v[i] = tok(from + i);
	ck_assert_int_eq(ms_stream_append(ms, id, v, n), 0);
	free(v);
}

static void check_range(ms_store *ms, int64_t id, uint64_t from, size_t n, size_t expect)
{
	int32_t *v = malloc(n * sizeof(*v) + 1);
	size_t got = 99;
	ck_assert_int_eq(ms_stream_read(ms, id, from, n, v, &got), 0);
	ck_assert_uint_eq(got, expect);
	for (size_t i = 0; i < got; i++)
		ck_assert_int_eq(v[i], tok(from + i));
	free(v);
}

START_TEST(test_append_read)
{
	ms_store *ms = open_store();
	int64_t id = session(ms, "s");
	uint64_t len = 99;
	ck_assert_int_eq(ms_stream_length(ms, id, &len), 0);
	ck_assert_uint_eq(len, 0);
	/* Odd sizes, so appends fill partial chunks and cross boundaries. */
	uint64_t pos = 0;
	size_t sizes[] = { 1, 10, 4085, 1, 4096, 5000, 3, 12289 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		append_range(ms, id, pos, sizes[i]);
		pos += sizes[i];
		ck_assert_int_eq(ms_stream_length(ms, id, &len), 0);
		ck_assert_uint_eq(len, pos);
	}
	check_range(ms, id, 0, (size_t)pos, (size_t)pos);
	check_range(ms, id, 4095, 2, 2);
	check_range(ms, id, 4096, 4096, 4096);
	check_range(ms, id, pos - 10, 100, 10);	/* short at the end */
	check_range(ms, id, pos, 5, 0);		/* past the end */
	check_range(ms, id, pos + 100000, 5, 0);
	/* Zero-length append is a no-op; an unknown session is not found. */
	ck_assert_int_eq(ms_stream_append(ms, id, NULL, 0), 0);
	int32_t one = 7;
	ck_assert_int_eq(ms_stream_append(ms, id + 100, &one, 1), MS_ENOTFOUND);
	ck_assert_int_eq(ms_stream_append(ms, id, NULL, 1), MS_EINVAL);
	ms_close(ms);
	/* Durable across a reopen. */
	ms = open_store();
	ck_assert_int_eq(ms_stream_length(ms, id, &len), 0);
	ck_assert_uint_eq(len, pos);
	check_range(ms, id, 1000, 9000, 9000);
	ms_close(ms);
}
END_TEST

START_TEST(test_truncate)
{
	ms_store *ms = open_store();
	int64_t id = session(ms, "s"), other = session(ms, "o");
	uint64_t len;
	append_range(ms, id, 0, 10000);
	append_range(ms, other, 0, 50);
	ck_assert_int_eq(ms_stream_truncate(ms, id, 20000), 0);	/* longer: no-op */
	ck_assert_int_eq(ms_stream_length(ms, id, &len), 0);
	ck_assert_uint_eq(len, 10000);
	ck_assert_int_eq(ms_stream_truncate(ms, id, 8192), 0);	/* on a boundary */
	ck_assert_int_eq(ms_stream_length(ms, id, &len), 0);
	ck_assert_uint_eq(len, 8192);
	ck_assert_int_eq(ms_stream_truncate(ms, id, 5000), 0);	/* mid-chunk */
	ck_assert_int_eq(ms_stream_length(ms, id, &len), 0);
	ck_assert_uint_eq(len, 5000);
	check_range(ms, id, 0, 6000, 5000);
	/* Appending after a cut continues at the cut. */
	append_range(ms, id, 5000, 100);
	check_range(ms, id, 4990, 200, 110);
	ck_assert_int_eq(ms_stream_truncate(ms, id, 0), 0);
	ck_assert_int_eq(ms_stream_length(ms, id, &len), 0);
	ck_assert_uint_eq(len, 0);
	/* The other session is untouched. */
	ck_assert_int_eq(ms_stream_length(ms, other, &len), 0);
	ck_assert_uint_eq(len, 50);
	ms_close(ms);
}
END_TEST

static int64_t doc(ms_store *ms, const char *path)
{
	ms_document d = { .size = 10, .mtime = 1 };
	snprintf(d.path, sizeof(d.path), "%s", path);
	snprintf(d.content_hash, sizeof(d.content_hash), "%s", "abc123");
	snprintf(d.kind, sizeof(d.kind), "text");
	ck_assert_int_eq(ms_document_add(ms, &d), 0);
	return d.id;
}

START_TEST(test_spans)
{
	ms_store *ms = open_store();
	int64_t id = session(ms, "s");
	int64_t d1 = doc(ms, "a.c"), d2 = doc(ms, "b.c");
	ms_span v[4] = {
		{ id, 0, 10, d1, 0, 0, 0 }, { id, 10, 30, d1, 1, 3, 0 },
		{ id, 30, 40, d2, 0, 0, 0 }, { id, 40, 70, d2, 1, 9, 2 },
	};
	ms_span got;
	uint64_t ns, nd;
	ck_assert_int_eq(ms_span_append(ms, v, 4), 0);
	ck_assert_int_eq(ms_span_lookup(ms, id, 45, &got), 0);
	ck_assert_int_eq(got.document_id, d2);
	ck_assert_int_eq(got.page, 2);
	ck_assert_int_eq(ms_span_count(ms, id, &ns, &nd), 0);
	ck_assert_uint_eq(ns, 4);
	ck_assert_uint_eq(nd, 2);
	uint64_t end = 0;
	ck_assert_int_eq(ms_span_end(ms, id, &end), 0);
	ck_assert_uint_eq(end, 70);
	ck_assert_int_eq(ms_span_end(ms, id + 99, &end), 0);
	ck_assert_uint_eq(end, 0);
	/* Out of order, overlapping the existing end, or an unknown document:
	 * refused, and nothing of the batch is kept. */
	ms_span bad[2] = { { id, 70, 80, d1, 1, 1, 0 }, { id, 75, 90, d1, 1, 1, 0 } };
	ck_assert_int_eq(ms_span_append(ms, bad, 2), MS_EINVAL);
	ms_span early = { id, 60, 80, d1, 1, 1, 0 };
	ck_assert_int_eq(ms_span_append(ms, &early, 1), MS_EINVAL);
	ms_span nodoc = { id, 70, 80, d1 + 1000, 1, 1, 0 };
	ck_assert_int_eq(ms_span_append(ms, &nodoc, 1), MS_ENOTFOUND);
	ck_assert_int_eq(ms_span_count(ms, id, &ns, &nd), 0);
	ck_assert_uint_eq(ns, 4);
	/* Truncate inside a span cuts it short; spans after go. */
	ck_assert_int_eq(ms_span_truncate(ms, id, 20), 0);
	ck_assert_int_eq(ms_span_count(ms, id, &ns, &nd), 0);
	ck_assert_uint_eq(ns, 2);
	ck_assert_uint_eq(nd, 1);
	ck_assert_int_eq(ms_span_lookup(ms, id, 19, &got), 0);
	ck_assert_uint_eq(got.tok_end, 20);
	ck_assert_int_eq(ms_span_lookup(ms, id, 20, &got), MS_ENOTFOUND);
	/* Documents of the session, in stream order. */
	ms_span more = { id, 20, 50, d2, 4, 5, 0 };
	ck_assert_int_eq(ms_span_append(ms, &more, 1), 0);
	ms_session_doc *docs;
	size_t n;
	ck_assert_int_eq(ms_session_docs(ms, id, 10, &docs, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(docs[0].doc.path, "a.c");
	ck_assert_str_eq(docs[1].doc.path, "b.c");
	ck_assert_uint_eq(docs[1].tok_start, 20);
	ck_assert_uint_eq(docs[1].tok_end, 50);
	ms_free(docs);
	ck_assert_int_eq(ms_session_docs(ms, id, 0, &docs, &n), MS_EINVAL);
	ms_close(ms);
}
END_TEST

START_TEST(test_manifest_cascade)
{
	ms_store *ms = open_store();
	int64_t id = session(ms, "s");
	void *p;
	size_t len;
	ck_assert_int_eq(ms_manifest_get(ms, id, &p, &len), MS_ENOTFOUND);
	ck_assert_int_eq(ms_manifest_put(ms, id, "hello", 5), 0);
	ck_assert_int_eq(ms_manifest_put(ms, id, "world!", 6), 0);	/* replaces */
	ck_assert_int_eq(ms_manifest_get(ms, id, &p, &len), 0);
	ck_assert_uint_eq(len, 6);
	ck_assert_int_eq(memcmp(p, "world!", 6), 0);
	ms_free(p);
	ck_assert_int_eq(ms_manifest_put(ms, id + 50, "x", 1), MS_ENOTFOUND);
	ck_assert_int_eq(ms_manifest_put(ms, id, NULL, 0), MS_EINVAL);
	ck_assert_int_eq(ms_manifest_del(ms, id), 0);
	ck_assert_int_eq(ms_manifest_get(ms, id, &p, &len), MS_ENOTFOUND);
	ck_assert_int_eq(ms_manifest_del(ms, id), 0);
	/* Deleting the session takes its stream, spans and manifest along. */
	ck_assert_int_eq(ms_manifest_put(ms, id, "m", 1), 0);
	append_range(ms, id, 0, 5000);
	ms_span sp = { id, 0, 5000, doc(ms, "x"), 1, 2, 0 };
	ck_assert_int_eq(ms_span_append(ms, &sp, 1), 0);
	ck_assert_int_eq(ms_session_delete(ms, "s"), 0);
	sqlite3_stmt *st;
	const char *q[] = { "SELECT count(*) FROM stream", "SELECT count(*) FROM manifests",
			    "SELECT count(*) FROM spans" };
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(sqlite3_prepare_v2(ms->db, q[i], -1, &st, NULL), SQLITE_OK);
		ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
		ck_assert_int_eq(sqlite3_column_int(st, 0), 0);
		sqlite3_finalize(st);
	}
	ms_close(ms);
}
END_TEST

/* A catalog at schema 1 (made by rolling this one back) is migrated. */
START_TEST(test_migration)
{
	ms_store *ms = open_store();
	int64_t id = session(ms, "old");
	ck_assert_int_eq(sqlite3_exec(ms->db, "DROP TABLE stream; DROP TABLE manifests; "
				      "PRAGMA user_version = 1", NULL, NULL, NULL), SQLITE_OK);
	ms_close(ms);
	ms = open_store();
	append_range(ms, id, 0, 10);
	check_range(ms, id, 0, 10, 10);
	sqlite3_stmt *st;
	ck_assert_int_eq(sqlite3_prepare_v2(ms->db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_int_eq(sqlite3_column_int(st, 0), MS_SCHEMA_VERSION);
	sqlite3_finalize(st);
	ms_close(ms);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ms_stream");
	TCase *tc = tcase_create("stream");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_append_read);
	tcase_add_test(tc, test_truncate);
	tcase_add_test(tc, test_spans);
	tcase_add_test(tc, test_manifest_cascade);
	tcase_add_test(tc, test_migration);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

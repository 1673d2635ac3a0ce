/* test_proto.c - request parsing and event building, without a daemon. */
#include "config.h"
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include "proto.h"
#include "text.h"

/* The op table is the daemon's; here one op stands in for it. */
static const ed_op fake_ping = { "ping", NULL, NULL };
const ed_op *ed_op_find(const char *name)
{
	return strcmp(name, "ping") ? NULL : &fake_ping;
}

START_TEST(test_utf8)
{
	static const struct { const char *s; int ok; } t[] = {
		{ "", 1 }, { "plain", 1 }, { "caf\xc3\xa9", 1 }, { "\xe2\x82\xac", 1 },
		{ "\xf0\x9f\x98\x80", 1 }, { "\xf4\x8f\xbf\xbf", 1 },
		{ "\x80", 0 }, { "\xc3", 0 }, { "\xc0\x80", 0 }, { "\xc1\xbf", 0 },
		{ "\xe0\x80\x80", 0 }, { "\xed\xa0\x80", 0 }, { "\xf4\x90\x80\x80", 0 },
		{ "\xf5\x80\x80\x80", 0 }, { "\xff", 0 }, { "\xe2\x82", 0 },
		{ "ok\xe2\x28\xa1", 0 },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		ck_assert_msg(ed_utf8_valid(t[i].s, strlen(t[i].s)) == t[i].ok, "case %zu", i);
}
END_TEST

static int parse(const char *line, ed_err *err, json_t **idout)
{
	json_t *msg, *id;
	const ed_op *op;
	char buf[256];
	int rc = ed_proto_parse(line, strlen(line), &msg, &id, &op, err, buf, sizeof(buf));
	if (rc < 0)
		ck_assert(buf[0] != 0);	/* every error has a message */
	if (rc == 0)
		ck_assert_ptr_eq(op, &fake_ping);
	if (idout)
		*idout = id ? json_incref(id) : NULL;
	json_decref(msg);
	return rc;
}

START_TEST(test_parse)
{
	ed_err e;
	json_t *id;
	ck_assert_int_eq(parse("{\"id\":1,\"op\":\"ping\"}", &e, &id), 0);
	ck_assert_int_eq(json_integer_value(id), 1);
	json_decref(id);
	ck_assert_int_eq(parse("{\"id\":\"x\",\"op\":\"ping\",\"extra\":[1,{}]}\r", &e, NULL), 0);
	ck_assert_int_eq(parse("", &e, NULL), 1);
	ck_assert_int_eq(parse(" \t\r", &e, NULL), 1);

	static const struct { const char *line; ed_err err; int has_id; } bad[] = {
		{ "{", ED_ERR_INVALID_JSON, 0 },
		{ "{\"id\":1,\"op\":\"ping\"} trailing", ED_ERR_INVALID_JSON, 0 },
		{ "null", ED_ERR_BAD_REQUEST, 0 },
		{ "{\"id\":null,\"op\":\"ping\"}", ED_ERR_BAD_REQUEST, 0 },
		{ "{\"id\":[1],\"op\":\"ping\"}", ED_ERR_BAD_REQUEST, 0 },
		{ "{\"op\":\"ping\"}", ED_ERR_MISSING_FIELD, 0 },
		{ "{\"id\":3}", ED_ERR_MISSING_FIELD, 1 },
		{ "{\"id\":3,\"op\":null}", ED_ERR_BAD_REQUEST, 1 },
		{ "{\"id\":3,\"op\":\"pong\"}", ED_ERR_UNKNOWN_OP, 1 },
		{ "{\"id\":3,\"op\":\"ping\",\"op\":\"ping\"}", ED_ERR_INVALID_JSON, 0 },
		{ "{\"id\":\"\xff\",\"op\":\"ping\"}", ED_ERR_INVALID_UTF8, 0 },
		{ "{\"id\":\"\\u0000\",\"op\":\"ping\"}", ED_ERR_INVALID_JSON, 0 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e = ED_ERR__COUNT;
		ck_assert_msg(parse(bad[i].line, &e, &id) == -1, "case %zu parsed", i);
		ck_assert_msg(e == bad[i].err, "case %zu: %s", i, ed_err_code(e));
		ck_assert_msg((id != NULL) == bad[i].has_id, "case %zu id", i);
		json_decref(id);
	}
	/* A raw NUL inside the line. */
	json_t *msg;
	const ed_op *op;
	char buf[128];
	ck_assert_int_eq(ed_proto_parse("{\"id\":1\0}", 9, &msg, &id, &op, &e, buf, sizeof(buf)), -1);
	ck_assert_int_eq(e, ED_ERR_INVALID_JSON);
	json_decref(msg);
	/* An escaped one: said in our words, not the JSON library's flag. */
	const char *nul = "{\"id\":1,\"op\":\"ping\",\"text\":\"a\\u0000b\"}";
	ck_assert_int_eq(ed_proto_parse(nul, strlen(nul), &msg, &id, &op, &e, buf,
	    sizeof(buf)), -1);
	ck_assert_msg(strstr(buf, "'data'") && !strstr(buf, "JSON_"), "%s", buf);
	json_decref(msg);
}
END_TEST

START_TEST(test_events)
{
	json_t *id = json_integer(42);
	size_t len;
	json_t *ev = ed_proto_event(id, "done", json_pack("{s:i}", "n", 3));
	char *s = ed_proto_dump(ev, &len);
	ck_assert_str_eq(s, "{\"id\":42,\"event\":\"done\",\"n\":3}\n");
	ck_assert_uint_eq(len, strlen(s));
	free(s);
	json_decref(ev);
	/* Fields never override id or event. */
	ev = ed_proto_event(id, "done", json_pack("{s:i,s:s}", "id", 7, "event", "x"));
	ck_assert_int_eq(json_integer_value(json_object_get(ev, "id")), 42);
	ck_assert_str_eq(json_string_value(json_object_get(ev, "event")), "done");
	json_decref(ev);
	ev = ed_proto_error_event(NULL, ED_ERR_UNKNOWN_OP, "nope");
	s = ed_proto_dump(ev, &len);
	ck_assert_str_eq(s, "{\"id\":null,\"event\":\"error\",\"error\":{\"code\":\"unknown_op\",\"message\":\"nope\"}}\n");
	free(s);
	json_decref(ev);
	json_decref(id);
	/* Every code has a distinct name. */
	for (int i = 0; i < ED_ERR__COUNT; i++)
		for (int j = i + 1; j < ED_ERR__COUNT; j++)
			ck_assert_str_ne(ed_err_code(i), ed_err_code(j));
}
END_TEST

START_TEST(test_base64)
{
	static const struct { const char *raw, *b64; } t[] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
		{ "\xff\xfe\x00\x01", "//4AAQ==" },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t n = i == 7 ? 4 : strlen(t[i].raw);
		char enc[64] = { 0 };
		unsigned char dec[64];
		ck_assert_uint_eq(ed_b64_encoded_len(n), strlen(t[i].b64));
		ed_b64_encode((const unsigned char *)t[i].raw, n, enc);
		ck_assert_str_eq(enc, t[i].b64);
		ck_assert_int_eq(ed_b64_decode(t[i].b64, strlen(t[i].b64), dec), (long)n);
		ck_assert_int_eq(memcmp(dec, t[i].raw, n), 0);
	}
	static const char *bad[] = { "Z", "Zg=", "Zg", "Z===", "Zh==", "Zm9=", "Zm8!", "=Zm8", "Zg==Zg==", "Z=g=" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned char dec[64];
		ck_assert_msg(ed_b64_decode(bad[i], strlen(bad[i]), dec) == -1, "accepted %s", bad[i]);
	}
	/* Every byte value round-trips at every length mod 3. */
	unsigned char all[256], back[256];
	char enc[400];
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	for (size_t n = 250; n <= 256; n++) {
		ed_b64_encode(all, n, enc);
		ck_assert_int_eq(ed_b64_decode(enc, ed_b64_encoded_len(n), back), (long)n);
		ck_assert_int_eq(memcmp(all, back, n), 0);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("proto");
	TCase *tc = tcase_create("proto");
	tcase_add_test(tc, test_utf8);
	tcase_add_test(tc, test_parse);
	tcase_add_test(tc, test_events);
	tcase_add_test(tc, test_base64);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

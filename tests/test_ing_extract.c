/* test_ing_extract.c - text extraction: encodings (BOMs, UTF-16, legacy
 * 8-bit, invalid bytes), binary detection, HTML, PDF (real fixtures made
 * here, with and without a text layer), DOCX (zips made here), e-mail; and
 * bad input of each kind giving a clear code, never a crash. */
#include "config.h"
#include "test_ing_util.h"

static ing_doc ex(const void *data, size_t len, const char *name, int want_rc)
{
	ing_doc d;
	int rc = ing_extract(data, len, name, NULL, &d);
	ck_assert_msg(rc == want_rc, "%s: rc %d (%s), want %d", name, rc,
		      ing_errname(rc), want_rc);
	if (rc == 0) {
		ck_assert_ptr_nonnull(d.text);
		ck_assert_uint_eq(strlen(d.text), d.len);
		ck_assert(d.len == 0 || d.text[d.len - 1] == '\n');
		ck_assert_ptr_null(memchr(d.text, '\r', d.len));
	}
	return d;
}

START_TEST(test_utf8_and_bom)
{
	ing_doc d = ex("a\r\nb\rc\n", 7, "x.c", 0);
	ck_assert_str_eq(d.text, "a\nb\nc\n");
	ck_assert_uint_eq(d.n_lines, 3);
	ck_assert_str_eq(d.type, "C");
	ing_doc_free(&d);
	d = ex("\xEF\xBB\xBFh\xC3\xA9", 6, "x.txt", 0);	/* BOM, no final newline */
	ck_assert_str_eq(d.text, "h\xC3\xA9\n");
	ck_assert_uint_eq(d.n_replaced, 0);
	ing_doc_free(&d);
	d = ex("", 0, "empty.py", 0);
	ck_assert_uint_eq(d.len, 0);
	ck_assert_uint_eq(d.n_lines, 0);
	ing_doc_free(&d);
}
END_TEST

START_TEST(test_utf16)
{
	const char le[] = "\xFF\xFEh\0i\0\n\0\x3D\xD8\x00\xDE";	/* hi\n U+1F600 */
	ing_doc d = ex(le, sizeof(le) - 1, "u.txt", 0);
	ck_assert_str_eq(d.text, "hi\n\xF0\x9F\x98\x80\n");
	ck_assert_str_eq(d.encoding, "UTF-16LE");
	ing_doc_free(&d);
	const char be[] = "\xFE\xFF\0o\0k\xD8\x00";	/* ok + lone surrogate */
	d = ex(be, sizeof(be) - 1, "u.txt", 0);
	ck_assert_str_eq(d.text, "ok\xEF\xBF\xBD\n");
	ck_assert_uint_eq(d.n_replaced, 1);
	ing_doc_free(&d);
}
END_TEST

START_TEST(test_legacy_and_invalid)
{
	/* windows-1252: e-acute, euro sign, smart quotes; no valid UTF-8. */
	ing_doc d = ex("caf\xE9 \x80 \x93ok\x94\n", 11, "l.txt", 0);
	ck_assert_str_eq(d.text, "caf\xC3\xA9 \xE2\x82\xAC \xE2\x80\x9Cok\xE2\x80\x9D\n");
	ck_assert_str_eq(d.encoding, "windows-1252");
	ing_doc_free(&d);
	/* Mostly UTF-8 with two broken bytes: replaced and counted. */
	d = ex("\xC3\xA9t\xC3\xA9 \xC3\xA0 \xFF x \xC3\n", 14, "m.txt", 0);
	ck_assert_str_eq(d.text, "\xC3\xA9t\xC3\xA9 \xC3\xA0 \xEF\xBF\xBD x \xEF\xBF\xBD\n");
	ck_assert_uint_eq(d.n_replaced, 2);
	ing_doc_free(&d);
}
END_TEST

START_TEST(test_binary)
{
	char bin[100];
	memset(bin, 'a', sizeof(bin));
	bin[50] = '\0';
	ing_doc d = ex(bin, sizeof(bin), "a.txt", ING_EBINARY);
	for (int i = 0; i < 100; i++)
		bin[i] = (char)(i % 2 ? 0x01 : 'x');	/* 50% control bytes */
	d = ex(bin, sizeof(bin), "b.txt", ING_EBINARY);
	/* A NUL after the first 8 KiB is text with a replaced byte. */
	char *big = malloc(9000);
	memset(big, 'z', 9000);
	big[8999] = '\0';
	d = ex(big, 9000, "c.txt", 0);
	ck_assert_uint_eq(d.n_replaced, 1);
	ing_doc_free(&d);
	free(big);
}
END_TEST

START_TEST(test_html)
{
	const char *h = "<html><head><title>T&amp;C</title><style>p{}</style>"
		"<script>var x = 1;</script></head><body><h1>Head</h1>"
		"<p>One   two\nthree</p><p>Four<br>five</p><pre>a  b\n  c</pre>"
		"<ul><li>x</li><li>y</li></ul><!-- hidden --></body></html>";
	ing_doc d = ex(h, strlen(h), "p.html", 0);
	ck_assert_str_eq(d.text, "T&C\n\nHead\n\nOne two three\n\nFour\nfive\n\n"
			 "a  b\n  c\n\nx\ny\n");
	ck_assert_ptr_null(strstr(d.text, "var x"));
	ck_assert_ptr_null(strstr(d.text, "hidden"));
	ing_doc_free(&d);
	/* Spaces between inline elements survive; cells are spaced. */
	const char *sp = "<p><b>a</b> <i>b</i></p><table><tr><td>1</td><td>2</td></tr></table>";
	d = ex(sp, strlen(sp), "s.html", 0);
	ck_assert_str_eq(d.text, "a b\n\n1 2\n");
	ing_doc_free(&d);
	/* Garbage still gives text or a clear code. */
	d = ex("<<<>>><p><b><i>unclosed", 23, "g.htm", 0);
	ck_assert_ptr_nonnull(strstr(d.text, "unclosed"));
	ing_doc_free(&d);
}
END_TEST

START_TEST(test_pdf)
{
	const char *pages[] = { "Hello page one", "", "Third page here" };
	size_t len;
	char *pdf = tu_pdf(pages, 3, &len);
	ing_doc d = ex(pdf, len, "doc.pdf", 0);
	ck_assert_uint_eq(d.n_pages, 3);
	ck_assert_uint_eq(d.n_empty_pages, 1);
	ck_assert_ptr_nonnull(strstr(d.text, "Hello page one"));
	ck_assert_uint_eq(d.page_off[0], 0);
	ck_assert_uint_eq(d.page_off[1], d.page_off[2]);	/* empty page 2 */
	ck_assert_int_eq(strncmp(d.text + d.page_off[2], "Third page here", 15), 0);
	ck_assert_str_eq(d.type, "PDF");
	ing_doc_free(&d);
	/* Every truncation of a valid PDF: a code or text, never a crash. */
	for (size_t cut = 0; cut < len; cut += len / 23 + 1) {
		int rc = ing_extract(pdf, cut, "t.pdf", NULL, &d);
		ck_assert(rc == 0 || rc == ING_EFORMAT || rc == ING_ENOTEXT);
		ing_doc_free(&d);
	}
	free(pdf);
	/* No text layer: reported as such, no text invented. */
	const char *scan[] = { "", "" };
	pdf = tu_pdf(scan, 2, &len);
	d = ex(pdf, len, "scan.pdf", ING_ENOTEXT);
	ck_assert_ptr_null(d.text);
	free(pdf);
	d = ex("%PDF-1.4\ngarbage", 16, "bad.pdf", ING_EFORMAT);
	d = ex("not a pdf", 9, "bad.pdf", ING_EFORMAT);
}
END_TEST

START_TEST(test_docx)
{
	size_t len;
	char *z = tu_docx("<w:p><w:r><w:t>Hello</w:t><w:tab/><w:t xml:space=\"preserve\"> world</w:t></w:r></w:p>"
			  "<w:p/><w:p><w:r><w:t>a&amp;b</w:t><w:br/><w:t>next</w:t>"
			  "<w:delText>deleted</w:delText></w:r></w:p>", &len);
	ing_doc d = ex(z, len, "w.docx", 0);
	ck_assert_str_eq(d.text, "Hello\t world\n\na&b\nnext\n");
	ck_assert_str_eq(d.type, "DOCX");
	ing_doc_free(&d);
	/* Truncated zips and XML: clear codes. */
	for (size_t cut = 0; cut < len; cut += 37) {
		int rc = ing_extract(z, cut, "t.docx", NULL, &d);
		ck_assert_msg(rc == 0 || rc == ING_EFORMAT, "cut %zu: %d", cut, rc);
		ing_doc_free(&d);
	}
	free(z);
	d = ex("PK\x03\x04garbage", 11, "bad.docx", ING_EFORMAT);
	/* A zip without word/document.xml. */
	struct tu_zent e[] = { { "other.txt", "x", 1, 1 } };
	z = tu_zip(e, 1, 4096, &len);
	d = ex(z, len, "nodoc.docx", ING_EFORMAT);
	free(z);
	/* Broken XML inside a good zip. */
	z = tu_docx("<w:p><w:t>oops</w:p>", &len);
	d = ex(z, len, "badxml.docx", ING_EFORMAT);
	free(z);
}
END_TEST

/* A zip bomb: 1 GiB of zeros compresses to about 1 MiB.  Both with the
 * true size declared and with the size left out (streamed, so only the
 * decompressed byte count can catch it). */
START_TEST(test_docx_bomb)
{
	size_t blk = 1 << 20, len;
	char *zeros = calloc(1, blk);
	for (int declared = 0; declared < 2; declared++) {
		char *buf = malloc(8 << 20);
		struct archive *a = archive_write_new();
		archive_write_set_format_zip(a);
		archive_write_open_memory(a, buf, 8 << 20, &len);
		struct archive_entry *en = archive_entry_new();
		archive_entry_set_pathname(en, "word/document.xml");
		archive_entry_set_filetype(en, AE_IFREG);
		if (declared)
			archive_entry_set_size(en, (la_int64_t)blk * 1024);
		ck_assert_int_eq(archive_write_header(a, en), ARCHIVE_OK);
		for (int i = 0; i < (declared ? 1024 : 96); i++)
			ck_assert_int_eq(archive_write_data(a, zeros, blk), (la_ssize_t)blk);
		archive_entry_free(en);
		archive_write_close(a);
		archive_write_free(a);
		ing_settings s;
		ing_settings_init(&s);
		s.max_zip_entry_bytes = 32u << 20;
		ing_doc d;
		ck_assert_int_eq(ing_extract(buf, len, "bomb.docx", &s, &d), ING_EBOMB);
		free(buf);
	}
	free(zeros);
}
END_TEST

START_TEST(test_eml)
{
	const char *m =
		"From: =?UTF-8?B?SsO8cmdlbg==?= <j@example.org>\r\n"
		"To: a@example.org\r\n"
		"Subject: =?iso-8859-1?Q?caf=E9_time?=\r\n"
		"X-Junk: dropped\r\n"
		"Content-Type: multipart/mixed; boundary=\"B1\"\r\n"
		"\r\n"
		"preamble\r\n"
		"--B1\r\n"
		"Content-Type: multipart/alternative; boundary=B2\r\n"
		"\r\n"
		"--B2\r\n"
		"Content-Type: text/html\r\n\r\n<p>html version</p>\r\n"
		"--B2\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
		"plain =C3=A9 long=\r\n line\r\n"
		"--B2--\r\n"
		"--B1\r\n"
		"Content-Type: text/html; charset=utf-8\r\n"
		"Content-Transfer-Encoding: base64\r\n\r\n"
		"PHA+SFRNTCA8Yj5ib2xkPC9iPjwvcD4=\r\n"
		"--B1\r\n"
		"Content-Type: application/pdf; name=\"r.pdf\"\r\n"
		"Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
		"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n"
		"--B1--\r\n";
	ing_doc d = ex(m, strlen(m), "m.eml", 0);
	ck_assert_ptr_nonnull(strstr(d.text, "From: J\xC3\xBCrgen <j@example.org>\n"));
	ck_assert_ptr_nonnull(strstr(d.text, "Subject: caf\xC3\xA9 time\n"));
	ck_assert_ptr_null(strstr(d.text, "X-Junk"));
	ck_assert_ptr_nonnull(strstr(d.text, "plain \xC3\xA9 long line\n"));
	ck_assert_ptr_null(strstr(d.text, "html version"));
	ck_assert_ptr_nonnull(strstr(d.text, "HTML bold"));
	ck_assert_ptr_nonnull(strstr(d.text, "[attachment: report.pdf (application/pdf)]"));
	ing_doc_free(&d);
	/* Not an e-mail, and unterminated multiparts. */
	d = ex("\n\nno headers", 12, "x.eml", ING_EFORMAT);
	const char *u = "Content-Type: multipart/mixed; boundary=Q\n\n--Q\n\ntext only";
	d = ex(u, strlen(u), "u.eml", 0);
	ck_assert_ptr_nonnull(strstr(d.text, "text only"));
	ing_doc_free(&d);
}
END_TEST

START_TEST(test_kinds)
{
	ck_assert_int_eq(ing_kind_guess("a/b.PDF", "x", 1), ING_KIND_PDF);
	ck_assert_int_eq(ing_kind_guess("notes.txt", "%PDF-1.7", 8), ING_KIND_PDF);
	ck_assert_int_eq(ing_kind_guess("r.md", "", 0), ING_KIND_MARKDOWN);
	ck_assert_str_eq(ing_type_name("src/Makefile", ING_KIND_TEXT), "Make");
	ck_assert_str_eq(ing_type_name("x.rs", ING_KIND_TEXT), "Rust");
	ck_assert_str_eq(ing_type_name("x.unknown", ING_KIND_TEXT), "text");
	ck_assert_str_eq(ing_errname(ING_EBOMB), "ING_EBOMB");
	ck_assert_str_eq(ing_strerror(ING_ENOTEXT), "document has no text layer");
}
END_TEST

TU_MAIN("ing_extract", test_utf8_and_bom, test_utf16, test_legacy_and_invalid,
	test_binary, test_html, test_pdf, test_docx, test_docx_bomb, test_eml,
	test_kinds)

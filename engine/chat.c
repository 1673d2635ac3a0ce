/* chat.c - built-in chat templates (Gemma, Llama 3, ChatML), chosen from
 * the model's architecture and vocabulary rather than by running the
 * Jinja template in tokenizer.chat_template.  API: engine.h.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "eng_internal.h"
#include "engine.h"

enum tmpl { TMPL_GEMMA, TMPL_LLAMA3, TMPL_CHATML };

struct sbuf {
	char *p;
	size_t n, cap;
	int oom;
};

static void sb_putn(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->n + n + 1)
			cap *= 2;
		char *np = realloc(b->p, cap);
		if (!np) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_putn(b, s, strlen(s));
}

/* The templates trim surrounding whitespace of each message. */
static void sb_put_trimmed(struct sbuf *b, const char *s)
{
	size_t n = strlen(s);
	while (n && strchr(" \t\n\r", *s)) {
		s++;
		n--;
	}
	while (n && strchr(" \t\n\r", s[n - 1]))
		n--;
	sb_putn(b, s, n);
}

static int has_token(const eng_model *m, const char *t)
{
	return eng_vocab_find(eng_model_vocab(m), t, strlen(t)) >= 0;
}

static int pick(const eng_model *m, enum tmpl *t)
{
	switch (eng_model_hparams(m)->arch) {
	case ENG_ARCH_GEMMA3:
		*t = TMPL_GEMMA;
		return 0;
	case ENG_ARCH_QWEN2:
		*t = TMPL_CHATML;
		return 0;
	case ENG_ARCH_LLAMA:
		if (has_token(m, "<|start_header_id|>")) {
			*t = TMPL_LLAMA3;
			return 0;
		}
		if (has_token(m, "<|im_start|>")) {
			*t = TMPL_CHATML;
			return 0;
		}
		return ENG_EUNSUP;
	}
	return ENG_EUNSUP;
}

/* Qwen 2.5's template adds this system message when none is given. */
static int qwen_default_system(const eng_model *m)
{
	static const char needle[] = "You are Qwen, created by Alibaba Cloud";
	const char *s;
	size_t len, n = sizeof needle - 1;

	if (eng_gguf_get_str(eng_model_gguf(m), "tokenizer.chat_template", &s,
	    &len))
		return 0;
	for (size_t i = 0; i + n <= len; i++)
		if (!memcmp(s + i, needle, n))
			return 1;
	return 0;
}

int eng_chat_apply(const eng_model *m, const eng_chat_msg *msgs, size_t n,
    int add_assistant, char **out, size_t *len)
{
	struct sbuf b = { 0 };
	enum tmpl t;
	size_t i = 0;
	int rc;

	if (!m || (!msgs && n) || !out || !len)
		return ENG_EINVAL;
	*out = NULL;
	*len = 0;
	for (size_t k = 0; k < n; k++)
		if (!msgs[k].role || !msgs[k].content ||
		    (strcmp(msgs[k].role, "system") &&
		    strcmp(msgs[k].role, "user") &&
		    strcmp(msgs[k].role, "assistant")))
			return ENG_EINVAL;
	if ((rc = pick(m, &t)))
		return rc;
	sb_puts(&b, "");
	switch (t) {
	case TMPL_GEMMA: {
		/* No system role: the system text opens the first user turn. */
		const char *sys = NULL;
		if (n && !strcmp(msgs[0].role, "system"))
			sys = msgs[i++].content;
		for (int first = 1; i < n; i++, first = 0) {
			int asst = !strcmp(msgs[i].role, "assistant");
			sb_puts(&b, "<start_of_turn>");
			sb_puts(&b, asst ? "model" : msgs[i].role);
			sb_puts(&b, "\n");
			if (first && sys) {
				sb_put_trimmed(&b, sys);
				sb_puts(&b, "\n\n");
			}
			sb_put_trimmed(&b, msgs[i].content);
			sb_puts(&b, "<end_of_turn>\n");
		}
		if (add_assistant)
			sb_puts(&b, "<start_of_turn>model\n");
		break;
	}
	case TMPL_LLAMA3:
		for (; i < n; i++) {
			sb_puts(&b, "<|start_header_id|>");
			sb_puts(&b, msgs[i].role);
			sb_puts(&b, "<|end_header_id|>\n\n");
			sb_put_trimmed(&b, msgs[i].content);
			sb_puts(&b, "<|eot_id|>");
		}
		if (add_assistant)
			sb_puts(&b, "<|start_header_id|>assistant"
			    "<|end_header_id|>\n\n");
		break;
	case TMPL_CHATML:
		if ((n == 0 || strcmp(msgs[0].role, "system")) &&
		    qwen_default_system(m))
			sb_puts(&b, "<|im_start|>system\nYou are Qwen, created "
			    "by Alibaba Cloud. You are a helpful assistant."
			    "<|im_end|>\n");
		for (; i < n; i++) {
			sb_puts(&b, "<|im_start|>");
			sb_puts(&b, msgs[i].role);
			sb_puts(&b, "\n");
			sb_puts(&b, msgs[i].content);
			sb_puts(&b, "<|im_end|>\n");
		}
		if (add_assistant)
			sb_puts(&b, "<|im_start|>assistant\n");
		break;
	}
	if (b.oom) {
		free(b.p);
		return ENG_ENOMEM;
	}
	*out = b.p;
	*len = b.n;
	return 0;
}

#!/usr/bin/env python3
"""Emit the deterministic tokenizer test-string set used for the golden files.

Usage: gen_tokenizer_strings.py [--special] [OUTFILE]

Output: a JSON list of {"name": str, "hex": str} objects on stdout (or into
OUTFILE).  Without --special: the main set (golden file tokenizer-gemma3.tsv,
tokenized with BOS and WITHOUT special-token parsing).  With --special: the
small set for tokenizer-gemma3-special.tsv (tokenized with BOS and WITH
special-token parsing).  Each "hex" is the raw input bytes, lowercase hex, so
that invalid UTF-8 and NUL bytes survive.  Names are unique, ASCII, and contain
no whitespace, so they can be used as the first column of a TSV file.

Pure standard library; no randomness other than a fixed SHA-256 stream, so the
output is byte-identical on every Python 3 version.
"""

import hashlib
import json
import sys

CASES = []
_names = set()


def add(name, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    assert isinstance(data, (bytes, bytearray)), name
    assert name not in _names, "duplicate name " + name
    assert all(33 <= ord(c) < 127 for c in name), name
    _names.add(name)
    CASES.append({"name": name, "hex": bytes(data).hex()})


def prng_bytes(seed, n):
    out = bytearray()
    ctr = 0
    while len(out) < n:
        out += hashlib.sha256(("%s:%d" % (seed, ctr)).encode()).digest()
        ctr += 1
    return bytes(out[:n])


# --------------------------------------------------------------------------
# trivial
add("empty", b"")
for i, ch in enumerate("aZ09 .,;:!?'\"-_()[]{}<>/\\|@#$%^&*+=~`"):
    add("char_ascii_%02x" % ord(ch), ch)
add("char_tab", "\t")
add("char_lf", "\n")
add("char_cr", "\r")
add("char_crlf", "\r\n")
add("char_nul", b"\x00")
add("char_bel", b"\x07")
add("char_esc", b"\x1b")
add("char_del", b"\x7f")
add("char_nbsp", "\u00a0")
add("char_e_acute", "\u00e9")
add("char_sharp_s", "\u00df")
add("char_euro", "\u20ac")
add("char_lower_block", "\u2581")  # the SentencePiece space marker itself
add("char_bom", "\ufeff")
add("char_zwsp", "\u200b")
add("char_zwj", "\u200d")
add("char_replacement", "\ufffd")
add("char_cjk_zhong", "\u4e2d")
add("char_hiragana_a", "\u3042")
add("char_hangul_han", "\ud55c")
add("char_arabic_alef", "\u0627")
add("char_hebrew_alef", "\u05d0")
add("char_emoji_grin", "\U0001f600")
add("char_gothic_ahsa", "\U00010330")
add("char_private_use", "\ue000")
add("char_max_cp", "\U0010ffff")
add("char_combining_acute_alone", "\u0301")

# --------------------------------------------------------------------------
# plain English / prose
add("en_hello", "Hello world")
add("en_hello_lead_space", " Hello world")
add("en_hello_trail_space", "Hello world ")
add("en_hello_double_space", "Hello  world")
add("en_sentence", "The quick brown fox jumps over the lazy dog.")
add("en_caps", "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG")
add("en_mixed_case", "iPhone eBay McDonald's O'Neill camelCaseIdentifier snake_case_identifier")
add("en_contractions", "I'm sure you'll agree it's what they'd've wanted, isn't it? Y'all can't.")
add("en_punct", "Wait... what?! No -- really; (yes) [maybe] {never} \"quoted\" 'single' `tick`")
add("en_unicode_punct", "\u201cSmart quotes\u201d and \u2018single\u2019 \u2014 em dash \u2013 en dash \u2026 ellipsis \u00b7 middot")
add("en_paragraph",
    "Engram is a small daemon that keeps a model resident in memory and serves "
    "completions over a local socket. It is written in C, built with autotools, "
    "and has no dependencies beyond libc and pthreads.\n\nIt tokenizes input with "
    "a SentencePiece-compatible tokenizer read straight from the GGUF file.")

add("legal_1",
    "1. DEFINITIONS. In this Agreement, unless the context otherwise requires: "
    "(a) \"Affiliate\" means any entity that directly or indirectly Controls, is "
    "Controlled by, or is under common Control with a party; (b) \"Confidential "
    "Information\" means all information disclosed by a party (the \"Discloser\") "
    "to the other party (the \"Recipient\"), whether before or after the Effective Date.")
add("legal_2",
    "NOTWITHSTANDING ANYTHING TO THE CONTRARY HEREIN, IN NO EVENT SHALL EITHER PARTY BE "
    "LIABLE FOR ANY INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES "
    "(INCLUDING, WITHOUT LIMITATION, LOSS OF PROFITS) ARISING OUT OF OR IN CONNECTION "
    "WITH THIS AGREEMENT, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGES.")
add("legal_3",
    "12.3 Governing Law. This Agreement shall be governed by and construed in accordance "
    "with the laws of the State of Delaware, without regard to its conflict-of-laws "
    "principles. Each party irrevocably submits to the exclusive jurisdiction of the "
    "state and federal courts located in Wilmington, Delaware.\n\n12.4 Severability. "
    "If any provision hereof is held invalid, the remainder shall continue in full force.")
add("legal_4",
    "Section 2(b)(iii) shall not apply to Licensee's use of the Software pursuant to "
    "\u00a7 4.1 hereof; provided, however, that the aggregate fees payable hereunder "
    "shall not exceed US$1,250,000.00 (one million two hundred fifty thousand dollars) "
    "per annum, as adjusted under Schedule A-1.")
add("legal_5",
    "WHEREAS, the Company desires to retain the Consultant, and the Consultant desires to "
    "be retained by the Company, on the terms and subject to the conditions set forth "
    "herein;\nNOW, THEREFORE, in consideration of the mutual covenants contained herein, "
    "and for other good and valuable consideration, the receipt and sufficiency of which "
    "are hereby acknowledged, the parties agree as follows:")
add("legal_6_de", "\u00a7 823 Abs. 1 BGB: Wer vors\u00e4tzlich oder fahrl\u00e4ssig das Leben, den K\u00f6rper, "
    "die Gesundheit, die Freiheit, das Eigentum oder ein sonstiges Recht eines anderen "
    "widerrechtlich verletzt, ist dem anderen zum Ersatz des daraus entstehenden Schadens verpflichtet.")
add("legal_7_fr", "Article 1240 du Code civil : Tout fait quelconque de l'homme, qui cause \u00e0 autrui "
    "un dommage, oblige celui par la faute duquel il est arriv\u00e9 \u00e0 le r\u00e9parer.")

# --------------------------------------------------------------------------
# source code
add("code_c_1", """#include <stdio.h>
#include <stdlib.h>

/* Return the number of set bits in x. */
static int popcount(unsigned long x)
{
\tint n = 0;
\twhile (x) {
\t\tx &= x - 1;
\t\tn++;
\t}
\treturn n;
}

int main(int argc, char **argv)
{
\tfor (int i = 1; i < argc; i++)
\t\tprintf("%s: %d\\n", argv[i], popcount(strtoul(argv[i], NULL, 0)));
\treturn EXIT_SUCCESS;
}
""")
add("code_c_2", """struct engram_ctx {
    int                fd;
    size_t             n_ctx;
    float             *logits;   // [n_vocab]
    struct gguf_file  *model;
};

#define ENGRAM_MAX(a, b) ((a) > (b) ? (a) : (b))

int engram_ctx_init(struct engram_ctx *ctx, const char *path) {
    if (!ctx || !path) return -EINVAL;
    memset(ctx, 0, sizeof *ctx);
    ctx->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (ctx->fd < 0) { perror("open"); return -errno; }
    return 0;
}
""")
add("code_c_3", "for(i=0;i<n;++i){a[i]^=0xDEADBEEFu;b[i]=a[i]>>3|a[i]<<29;}\n")
add("code_cpp_1", """template <typename T>
std::vector<T> topk(const std::vector<T> & v, size_t k) {
    std::vector<T> out(v);
    std::partial_sort(out.begin(), out.begin() + k, out.end(), std::greater<T>());
    out.resize(k);
    return out;
}
""")
add("code_python_1", '''import json
import sys
from dataclasses import dataclass, field


@dataclass
class Token:
    id: int
    piece: str
    score: float = 0.0
    tags: list[str] = field(default_factory=list)


def main(argv: list[str]) -> int:
    """Read tokens from a JSON file and print the top ten by score."""
    with open(argv[1], encoding="utf-8") as fh:
        toks = [Token(**t) for t in json.load(fh)]
    for t in sorted(toks, key=lambda t: -t.score)[:10]:
        print(f"{t.id:>6}  {t.piece!r:<20} {t.score:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
''')
add("code_python_2", "def f(x):\n\tif x:\n\t\treturn [i**2 for i in range(x) if i % 3 != 0]\n\telse:\n\t\treturn None\n")
add("code_python_3", "    async def fetch(self, url: str, *, timeout: float = 10.0) -> bytes:\n        async with self._session.get(url, timeout=timeout) as resp:\n            resp.raise_for_status()\n            return await resp.read()\n")
add("code_rust_1", """use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Str(String),
    List(Vec<Value>),
}

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }
}

fn count_words(text: &str) -> HashMap<&str, usize> {
    let mut m = HashMap::new();
    for w in text.split_whitespace() {
        *m.entry(w).or_insert(0) += 1;
    }
    m
}
""")
add("code_rust_2", "fn main() -> Result<(), Box<dyn std::error::Error>> {\n    let v: Vec<u8> = std::fs::read(\"/dev/stdin\")?;\n    println!(\"{:#x?}\", &v[..v.len().min(16)]);\n    Ok(())\n}\n")
add("code_go_1", """package main

import (
\t"bufio"
\t"fmt"
\t"os"
\t"strings"
)

func main() {
\tsc := bufio.NewScanner(os.Stdin)
\tcounts := make(map[string]int)
\tfor sc.Scan() {
\t\tfor _, w := range strings.Fields(sc.Text()) {
\t\t\tcounts[strings.ToLower(w)]++
\t\t}
\t}
\tif err := sc.Err(); err != nil {
\t\tfmt.Fprintln(os.Stderr, "error:", err)
\t\tos.Exit(1)
\t}
\tfmt.Println(len(counts))
}
""")
add("code_go_2", "func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {\n\tctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)\n\tdefer cancel()\n\t_ = ctx\n}\n")
add("code_js_1", """'use strict';

const fs = require('fs/promises');

async function loadConfig(path = './config.json') {
  try {
    const raw = await fs.readFile(path, 'utf8');
    return { ...DEFAULTS, ...JSON.parse(raw) };
  } catch (err) {
    console.error(`failed to load ${path}: ${err.message}`);
    return DEFAULTS;
  }
}

module.exports = { loadConfig };
""")
add("code_js_2", "const sq = xs => xs.map(x => x ** 2).filter(Boolean); let a = [1,,3]; a?.[0] ?? null;\n")
add("code_ts_1", "export interface Options<T extends object = {}> {\n  readonly name: string;\n  retries?: number;\n  extra: Partial<T>;\n}\n\nexport type Handler = (req: Request) => Promise<Response | undefined>;\n")
add("code_java_1", """package org.example.engram;

import java.util.ArrayList;
import java.util.List;

public final class Tokenizer {
    private final List<String> vocab = new ArrayList<>();

    public Tokenizer(List<String> vocab) {
        this.vocab.addAll(vocab);
    }

    @Override
    public String toString() {
        return "Tokenizer{size=" + vocab.size() + "}";
    }

    public static void main(String[] args) throws Exception {
        System.out.println(new Tokenizer(List.of("a", "b", "c")));
    }
}
""")
add("code_haskell_1", """module Main where

import qualified Data.Map.Strict as M
import Data.List (sortOn)
import Data.Ord (Down (..))

-- | Count word frequencies.
freqs :: String -> M.Map String Int
freqs = M.fromListWith (+) . map (\\w -> (w, 1)) . words

main :: IO ()
main = do
  s <- getContents
  mapM_ print . take 10 . sortOn (Down . snd) . M.toList $ freqs s
""")
add("code_haskell_2", "fibs :: [Integer]\nfibs = 0 : 1 : zipWith (+) fibs (tail fibs)\n\ninstance Functor Tree where\n  fmap f (Leaf x)   = Leaf (f x)\n  fmap f (Node l r) = Node (fmap f l) (fmap f r)\n")
add("code_sql_1", """-- top customers by revenue in 2024
SELECT c.id,
       c.name,
       SUM(o.amount) AS revenue,
       COUNT(DISTINCT o.id) AS orders
  FROM customers AS c
  JOIN orders    AS o ON o.customer_id = c.id
 WHERE o.created_at >= DATE '2024-01-01'
   AND o.created_at <  DATE '2025-01-01'
   AND o.status NOT IN ('cancelled', 'refunded')
 GROUP BY c.id, c.name
HAVING SUM(o.amount) > 1000.00
 ORDER BY revenue DESC
 LIMIT 20;
""")
add("code_sql_2", "CREATE TABLE IF NOT EXISTS tokens (\n\tid INTEGER PRIMARY KEY,\n\tpiece TEXT NOT NULL UNIQUE,\n\tscore REAL DEFAULT 0.0\n);\nINSERT INTO tokens (id, piece) VALUES (1, '<eos>'), (2, '<bos>');\n")
add("code_shell_1", """#!/bin/sh
set -eu

: "${PREFIX:=/usr/local}"
for f in "$@"; do
\tif [ ! -f "$f" ]; then
\t\techo "missing: $f" >&2
\t\texit 1
\tfi
\tsha256sum -- "$f" | awk '{print $1}'
done
find . -name '*.o' -print0 | xargs -0 rm -f
echo "done: $(date -u +%Y-%m-%dT%H:%M:%SZ)" 2>&1 | tee -a build.log
""")
add("code_shell_2", "$ ./configure --prefix=$HOME/.local CFLAGS='-O2 -g' && make -j$(nproc) && make check\n")
add("code_lisp_1", """(defun fact (n)
  "Return N factorial."
  (if (<= n 1)
      1
      (* n (fact (- n 1)))))

(defmacro with-timing (&body body)
  `(let ((start (get-internal-real-time)))
     (prog1 (progn ,@body)
       (format t "~&took ~a ms~%"
               (- (get-internal-real-time) start)))))

(mapcar #'fact '(1 2 3 4 5))
""")
add("code_scheme_1", "(define (map f lst)\n  (if (null? lst) '()\n      (cons (f (car lst)) (map f (cdr lst)))))\n(display (map (lambda (x) (* x x)) '(1 2 3)))\n")
add("code_ruby_1", "class Stack\n  def initialize = @items = []\n  def push(x) = @items.push(x) && self\n  def pop = @items.pop\nend\n\nputs Stack.new.push(1).push(2).pop #=> 2\n")
add("code_lua_1", "local function split(s, sep)\n  local t = {}\n  for part in string.gmatch(s, \"([^\" .. sep .. \"]+)\") do\n    t[#t + 1] = part\n  end\n  return t\nend\n")
add("code_makefile_1", "CC ?= cc\nCFLAGS += -Wall -Wextra -O2\n\nall: engram\n\nengram: main.o gguf.o\n\t$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)\n\n%.o: %.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\n.PHONY: clean\nclean:\n\trm -f *.o engram\n")
add("code_autoconf_1", "AC_INIT([engram], [0.1.0], [bugs@example.org])\nAM_INIT_AUTOMAKE([foreign subdir-objects -Wall -Werror])\nAC_PROG_CC\nAC_CHECK_LIB([pthread], [pthread_create])\nAC_CONFIG_FILES([Makefile])\nAC_OUTPUT\n")
add("code_yaml_1", "name: ci\non: [push, pull_request]\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - run: |\n          autoreconf -fi\n          ./configure && make -j2 check\n")
add("code_json_1", '{\n  "model": "gemma-3-270m",\n  "n_ctx": 2048,\n  "temperature": 0.7,\n  "stop": ["<end_of_turn>", "\\n\\n"],\n  "nested": {"a": [1, 2.5e-3, -7, true, false, null]}\n}\n')
add("code_json_min", '{"a":1,"b":[true,false,null],"c":"\\u00e9\\ud83d\\ude00","d":{}}')
add("code_asm_1", "_start:\n\tmov\trax, 60\n\txor\tedi, edi\n\tsyscall\n")
add("code_regex_1", r"^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$")
add("code_diff_1", "diff --git a/src/main.c b/src/main.c\nindex 3b18e51..a9c2f07 100644\n--- a/src/main.c\n+++ b/src/main.c\n@@ -10,7 +10,7 @@ int main(void)\n {\n-\treturn 0;\n+\treturn run() ? EXIT_FAILURE : EXIT_SUCCESS;\n }\n")
add("code_latex_1", "\\begin{equation}\n  \\mathcal{L}(\\theta) = -\\sum_{t=1}^{T} \\log p_\\theta(x_t \\mid x_{<t})\n\\end{equation}\n")

# --------------------------------------------------------------------------
# Markdown / HTML
add("md_1", """# Engram

A tiny **inference daemon** for _small_ models.

## Features

- Loads `GGUF` files directly
- Speaks a line-based protocol over a UNIX socket
  - nested item with [a link](https://example.org/docs?x=1&y=2#frag)
1. numbered
2. list

> Block quote with `inline code`.

```c
int x = 42;
```

| col a | col b |
|:------|------:|
| 1     | 2     |

---
""")
add("md_2", "***bold italic*** ~~strike~~ <kbd>Ctrl</kbd>+<kbd>C</kbd> ![img](a.png \"title\") [^1]\n\n[^1]: footnote text\n")
add("md_3", "    indented code block\n    second line\n\n* [ ] todo\n* [x] done\n")
add("html_1", """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Engram &amp; friends</title>
  <link rel="stylesheet" href="/static/style.css">
</head>
<body>
  <h1>Hello</h1>
  <p class="lead">This is <strong>bold</strong> and <em>italic</em>.</p>
  <table>
    <thead><tr><th>id</th><th>piece</th></tr></thead>
    <tbody>
      <tr><td>2</td><td>&lt;bos&gt;</td></tr>
    </tbody>
  </table>
  <script>document.querySelector('h1').textContent += '!';</script>
</body>
</html>
""")
add("html_user_defined_tags", "<table><caption>x</caption><tr><td>a</td></tr></table><h1>t</h1><h6>u</h6><blockquote>q</blockquote><b>b</b><i>i</i><u>u</u><s>s</s><sub>1</sub><sup>2</sup><code>c</code><a>l</a><div><span>z</span></div><ul><li>y</li></ul><img></img><bbox></bbox><iframe></iframe><footer></footer>")
add("html_tags_with_attrs", "<a href=\"https://example.com\">link</a><div class=\"x\"><td colspan=2>cell</td></div><TABLE><Tr>")
add("html_entities", "&lt;&gt;&amp;&quot;&#39;&#x1F600;&nbsp;&copy;&eacute;")
add("html_tags_adjacent_text", "foo<table>bar</table>baz <b> spaced </b> x<br/>y<hr>")
add("xml_1", "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<config>\n\t<entry key=\"n_ctx\">2048</entry>\n\t<!-- comment -->\n\t<![CDATA[raw <data> & stuff]]>\n</config>\n")

# --------------------------------------------------------------------------
# other scripts
add("zh_1", "\u4eca\u5929\u5929\u6c14\u5f88\u597d\uff0c\u6211\u4eec\u53bb\u516c\u56ed\u6563\u6b65\u5427\u3002\u673a\u5668\u5b66\u4e60\u662f\u4eba\u5de5\u667a\u80fd\u7684\u4e00\u4e2a\u5206\u652f\u3002")
add("zh_2", "\u300a\u4e2d\u534e\u4eba\u6c11\u5171\u548c\u56fd\u6c11\u6cd5\u5178\u300b\u7b2c\u4e00\u6761\uff1a\u4e3a\u4e86\u4fdd\u62a4\u6c11\u4e8b\u4e3b\u4f53\u7684\u5408\u6cd5\u6743\u76ca\uff0c\u8c03\u6574\u6c11\u4e8b\u5173\u7cfb\u3002")
add("zh_trad", "\u7e41\u9ad4\u4e2d\u6587\u6e2c\u8a66\uff1a\u81fa\u7063\u3001\u9999\u6e2f\u8207\u6fb3\u9580\u3002")
add("zh_rare_ext_b", "\U00020000\U00020001\U0002a6d6\U0002b734 \u9f98\u9f49")
add("ja_1", "\u543e\u8f29\u306f\u732b\u3067\u3042\u308b\u3002\u540d\u524d\u306f\u307e\u3060\u7121\u3044\u3002\u3069\u3053\u3067\u751f\u308c\u305f\u304b\u3068\u3093\u3068\u898b\u5f53\u304c\u3064\u304b\u306c\u3002")
add("ja_katakana_mixed", "\u30c8\u30fc\u30af\u30ca\u30a4\u30b6\u30fc\u306eテスト: GGUF\u30d5\u30a1\u30a4\u30eb\u3092\u8aad\u307f\u8fbc\u3080\u3002\uff11\uff12\uff13\uff21\uff22\uff23\uff8a\uff9d\uff76\uff78")
add("ko_1", "\ub300\ud55c\ubbfc\uad6d\uc758 \uc218\ub3c4\ub294 \uc11c\uc6b8\uc774\ub2e4. \ud55c\uad6d\uc5b4 \ud1a0\ud06c\ub098\uc774\uc800 \ud14c\uc2a4\ud2b8\uc785\ub2c8\ub2e4.")
add("ko_jamo_decomposed", "\u1112\u1161\u11ab\u1100\u1173\u11af")
add("cjk_mixed_ascii", "GPU\u663e\u5b58\u4e0d\u8db3 (out of memory) \u30a8\u30e9\u30fc: 0x7f \uc624\ub958 \u2192 retry")
add("ar_1", "\u0627\u0644\u0633\u0644\u0627\u0645 \u0639\u0644\u064a\u0643\u0645 \u0648\u0631\u062d\u0645\u0629 \u0627\u0644\u0644\u0647 \u0648\u0628\u0631\u0643\u0627\u062a\u0647. \u0647\u0630\u0627 \u0627\u062e\u062a\u0628\u0627\u0631 \u0644\u0644\u0645\u062c\u0632\u0626 \u0627\u0644\u0644\u063a\u0648\u064a.")
add("ar_diacritics", "\u0628\u0650\u0633\u0652\u0645\u0650 \u0627\u0644\u0644\u064e\u0651\u0647\u0650 \u0627\u0644\u0631\u064e\u0651\u062d\u0652\u0645\u064e\u0670\u0646\u0650 \u0627\u0644\u0631\u064e\u0651\u062d\u0650\u064a\u0645\u0650")
add("ar_digits_mixed", "\u0627\u0644\u0633\u0639\u0631: \u0661\u0662\u0663\u066b\u0664\u0665 \u0631\u064a\u0627\u0644 (123.45 SAR)")
add("he_1", "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd! \u05d6\u05d4\u05d5 \u05de\u05d1\u05d7\u05df \u05e9\u05dc \u05d4\u05de\u05e4\u05e8\u05e7.")
add("he_niqqud", "\u05d1\u05bc\u05b0\u05e8\u05b5\u05d0\u05e9\u05b4\u05c1\u05d9\u05ea \u05d1\u05bc\u05b8\u05e8\u05b8\u05d0 \u05d0\u05b1\u05dc\u05b9\u05d4\u05b4\u05d9\u05dd")
add("bidi_mixed", "The word \u05e9\u05dc\u05d5\u05dd means peace; \u0633\u0644\u0627\u0645 too. \u202eRLO override\u202c \u200fRLM\u200e LRM")
add("ru_1", "\u0421\u044a\u0435\u0448\u044c \u0436\u0435 \u0435\u0449\u0451 \u044d\u0442\u0438\u0445 \u043c\u044f\u0433\u043a\u0438\u0445 \u0444\u0440\u0430\u043d\u0446\u0443\u0437\u0441\u043a\u0438\u0445 \u0431\u0443\u043b\u043e\u043a, \u0434\u0430 \u0432\u044b\u043f\u0435\u0439 \u0447\u0430\u044e.")
add("el_1", "\u039e\u03b5\u03c3\u03ba\u03b5\u03c0\u03ac\u03b6\u03c9 \u03c4\u1f74\u03bd \u03c8\u03c5\u03c7\u03bf\u03c6\u03b8\u03cc\u03c1\u03b1 \u03b2\u03b4\u03b5\u03bb\u03c5\u03b3\u03bc\u03af\u03b1")
add("th_1", "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22\u0e44\u0e21\u0e48\u0e21\u0e35\u0e01\u0e32\u0e23\u0e40\u0e27\u0e49\u0e19\u0e27\u0e23\u0e23\u0e04\u0e23\u0e30\u0e2b\u0e27\u0e48\u0e32\u0e07\u0e04\u0e33")
add("hi_1", "\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e \u092d\u093e\u0930\u0924 \u0915\u0940 \u0930\u093e\u091c\u092d\u093e\u0937\u093e \u0939\u0948\u0964 \u0915\u094d\u0937\u0924\u094d\u0930\u093f\u092f \u0936\u094d\u0930\u0940 \u0926\u094d\u0935\u093e\u0930")
add("ta_1", "\u0ba4\u0bae\u0bbf\u0bb4\u0bcd \u0b92\u0bb0\u0bc1 \u0ba4\u0bca\u0ba9\u0bcd\u0bae\u0bc8\u0baf\u0bbe\u0ba9 \u0bae\u0bca\u0bb4\u0bbf")
add("am_1", "\u12a0\u121b\u122d\u129b \u12e8\u12a2\u1275\u12ee\u1335\u12eb \u124b\u1295\u124b \u1290\u12cd\u1362")
add("vi_1", "Ti\u1ebfng Vi\u1ec7t c\u00f3 nhi\u1ec1u d\u1ea5u: \u0111\u01b0\u1eddng ph\u1ed1, ng\u01b0\u1eddi, qu\u1ed1c ng\u1eef, h\u1ecdc sinh.")
add("vi_decomposed", "Tie\u0302\u0301ng Vie\u0323\u0302t - ngu\u031b\u01a1\u0300i")

# combining marks
add("comb_e_acute_decomposed", "e\u0301")
add("comb_e_acute_precomposed", "\u00e9")
add("comb_cafe_nfd", "cafe\u0301 na\u0308ive re\u0301sume\u0301")
add("comb_stacked", "a\u0300\u0301\u0302\u0303\u0304\u0305\u0306\u0307\u0308")
add("comb_zalgo", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034da\u036b\u0357\u0364l\u0353g\u0339o")
add("comb_devanagari_virama", "\u0915\u094d\u200d\u0937 \u0915\u094d\u0937 \u0928\u092e\u0938\u094d\u0924\u0947")
add("comb_hangul_nfd_vs_nfc", "\u1100\u1161 \uac00")
add("comb_enclosing_keycap", "1\ufe0f\u20e3 #\u20e3 a\u20dd")
add("comb_variation_selectors", "\u2764\ufe0f \u2764\ufe0e \u263a\ufe0f \u8fbb\U000e0100")

# emoji
add("emoji_basic", "\U0001f600\U0001f601\U0001f602\U0001f923\U0001f60a\U0001f607 \U0001f44d\U0001f44e\U0001f525\U0001f4af")
add("emoji_skin_tones", "\U0001f44b\U0001f3fb \U0001f44b\U0001f3fc \U0001f44b\U0001f3fd \U0001f44b\U0001f3fe \U0001f44b\U0001f3ff")
add("emoji_zwj_family", "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466")
add("emoji_zwj_professions", "\U0001f469\U0001f3fd\u200d\U0001f4bb \U0001f9d1\u200d\U0001f680 \U0001f3f3\ufe0f\u200d\U0001f308 \U0001f3f4\u200d\u2620\ufe0f")
add("emoji_zwj_couple_tones", "\U0001f9d1\U0001f3fb\u200d\u2764\ufe0f\u200d\U0001f48b\u200d\U0001f9d1\U0001f3ff")
add("emoji_flags", "\U0001f1fa\U0001f1f8\U0001f1ef\U0001f1f5\U0001f1e9\U0001f1ea\U0001f1eb\U0001f1f7\U0001f1e8\U0001f1f3\U0001f1ee\U0001f1f1\U0001f1f8\U0001f1e6\U0001f1fa\U0001f1e6")
add("emoji_subdivision_flag", "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f")
add("emoji_in_text", "Great job \U0001f389! Ship it \U0001f680\U0001f680\U0001f680 then relax \u2615.")
add("emoji_repeated", "\U0001f602" * 30)
add("emoji_lone_regional_indicator", "\U0001f1e6 x \U0001f1ff")

# --------------------------------------------------------------------------
# whitespace runs
for n in range(1, 41):
    add("ws_spaces_%02d" % n, " " * n)
for n in range(1, 33):
    add("ws_tabs_%02d" % n, "\t" * n)
for n in range(1, 33):
    add("ws_newlines_%02d" % n, "\n" * n)
for n in (1, 2, 3, 4, 8, 16):
    add("ws_crlf_%02d" % n, "\r\n" * n)
add("ws_cr_run", "\r" * 5)
add("ws_spaces_50", " " * 50)
add("ws_spaces_64", " " * 64)
add("ws_spaces_100", " " * 100)
add("ws_tabs_40", "\t" * 40)
add("ws_newlines_40", "\n" * 40)
add("ws_newlines_100", "\n" * 100)
add("ws_mixed_1", " \t \n \r\n\t\t  \n\n   \t")
add("ws_mixed_2", "\n \n  \n   \n    \n")
add("ws_mixed_3", "\t \t \t \t")
add("ws_mixed_4", "  \t\t  \t\t\n\n\n  ")
add("ws_unicode_spaces", "a\u00a0b\u2002c\u2003d\u2009e\u200af\u3000g\u202fh\u205fi\u1680j")
add("ws_vertical_tab_ff", "a\x0bb\x0cc\x1cd\x1de\x85f\u2028g\u2029h")
for n in (1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 33):
    add("ws_word_spaces_%02d" % n, "word" + " " * n + "word")
for n in (1, 2, 4, 8, 31, 32):
    add("ws_indent_spaces_%02d" % n, "x\n" + " " * n + "y\n")
for n in (1, 2, 3, 5, 8):
    add("ws_indent_tabs_%02d" % n, "{\n" + "\t" * n + "return;\n}")
add("ws_trailing_ws_lines", "line one   \nline two\t\t\nline three \r\n\n\n")
add("ws_leading_newlines_text", "\n\n\nHello")
add("ws_text_many_newlines", "a" + "\n" * 33 + "b")
add("ws_text_many_spaces", "a" + " " * 33 + "b")

# --------------------------------------------------------------------------
# long words / blobs
add("long_a_500", "a" * 500)
add("long_a_1000", "a" * 1000)
add("long_A_257", "A" * 257)
add("long_ab_300", "ab" * 150)
add("long_x_space_x", " ".join(["x"] * 200))
add("long_dots", "." * 300)
add("long_dashes", "-" * 120 + "\n" + "=" * 80)
add("long_hash_comment", "#" * 80 + "\n# banner\n" + "#" * 80)
add("long_url_1", "https://www.example.com/some/very/long/path/with/many/segments/and-hyphenated-words/"
    "index.php?query=tokenization&lang=en-US&utm_source=newsletter&utm_medium=email"
    "&utm_campaign=2024-spring-launch&session_id=a8f5f167f44f4964e6c998dee827110c#section-12.3")
add("long_url_2", "http://user:p%40ss@[2001:db8::1]:8080/a%20b/%E4%B8%AD%E6%96%87?x=%F0%9F%98%80&y=1+2")
add("long_url_3", "git+ssh://git@github.com/ggml-org/llama.cpp.git@0c1e57098bba43ac29e6e3b677cdceebdd22334f")
add("long_path", "/usr/local/lib/python3.11/site-packages/some_package/subpackage/module_name/__init__.py:1234")
add("long_email", "first.last+tag-2024@mail.subdomain.example-company.co.uk")
add("long_base64_1", __import__("base64").b64encode(prng_bytes("b64-1", 600)).decode())
add("long_base64_2", __import__("base64").b64encode(prng_bytes("b64-2", 90)).decode())
add("long_base64_wrapped", "\n".join(
    __import__("textwrap").wrap(__import__("base64").b64encode(prng_bytes("b64-3", 300)).decode(), 76)))
add("long_pem", "-----BEGIN PUBLIC KEY-----\n" + "\n".join(
    __import__("textwrap").wrap(__import__("base64").b64encode(prng_bytes("pem", 270)).decode(), 64))
    + "\n-----END PUBLIC KEY-----\n")
add("long_hex_1", prng_bytes("hex-1", 128).hex())
add("long_hex_upper", prng_bytes("hex-2", 64).hex().upper())
add("long_hexdump", "".join(
    "%08x  %s  |%s|\n" % (
        off,
        " ".join("%02x" % b for b in prng_bytes("hd", 128)[off:off + 16]),
        "".join(chr(b) if 32 <= b < 127 else "." for b in prng_bytes("hd", 128)[off:off + 16]))
    for off in range(0, 128, 16)))
add("long_sha256", hashlib.sha256(b"engram").hexdigest())
add("long_uuid_list", "\n".join(
    "%s-%s-%s-%s-%s" % (h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
    for h in (prng_bytes("uuid%d" % i, 16).hex() for i in range(6))))
add("long_camel_identifier", "AbstractSingletonProxyFactoryBeanInitializationExceptionHandlerImplementationProvider")
add("long_snake_identifier", "this_is_a_really_long_snake_case_identifier_that_goes_on_and_on_forever_v2")
add("long_german_compound", "Donaudampfschifffahrtselektrizit\u00e4tenhauptbetriebswerkbauunterbeamtengesellschaft")
add("long_no_space_cjk", "\u4e00\u4e8c\u4e09\u56db\u4e94\u516d\u4e03\u516b\u4e5d\u5341" * 20)
add("long_minified_js", "!function(e,t){\"object\"==typeof exports&&\"undefined\"!=typeof module?module.exports=t():"
    "\"function\"==typeof define&&define.amd?define(t):(e=e||self).X=t()}(this,function(){\"use strict\";"
    "var e=function(e,t){return e+t};return{add:e,v:\"1.2.3\"}});")

# --------------------------------------------------------------------------
# digits and numbers
add("num_0_9", "0123456789")
add("num_single_digits", "0 1 2 3 4 5 6 7 8 9")
add("num_long_digits", "3141592653589793238462643383279502884197169399375105820974944592")
add("num_int_sizes", "1 12 123 1234 12345 123456 1234567 12345678 123456789 1234567890")
add("num_thousands", "1,000 10,000,000 1.000.000,50 1'000'000 1 000 000")
add("num_decimals", "0.5 .5 5. 3.14159 -2.718 +1.0 1e10 6.022e+23 1.6E-19 0x1F 0o17 0b1011 1_000_000")
add("num_dates_times", "2024-03-15T13:45:30.123Z 15/03/2024 03-15-24 13:45 1:05pm 23:59:59.999999")
add("num_versions", "v1.2.3 1.2.3-rc.1+build.5 3.11.7 0.3.36 gguf-0.19.0")
add("num_ip", "192.168.0.1 10.0.0.255:8080 ::1 fe80::1ff:fe23:4567:890a 255.255.255.0/24")
add("num_money_units", "$1.99 \u20ac2,50 \u00a3300 \u00a51000 100% 50\u00b0C 9.81m/s\u00b2 \u00bd \u00be 12kg 3GB 270M")
add("num_fullwidth", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19")
add("num_superscripts", "x\u00b2 + y\u00b3 = z\u2074, H\u2082O, \u2460\u2461\u2462, \u2160\u2161\u2162, \u00bc")
add("num_arithmetic", "2+2=4; 10-3*4/2=4; (1+2)^3 = 27; 7 % 3 == 1; -0 != +0")
add("num_phone", "+1 (555) 123-4567, +44 20 7946 0958, 0800-123-456")
for n in range(1, 17):
    add("num_digit_run_%02d" % n, "".join(str((i * 7 + 3) % 10) for i in range(n)))

# --------------------------------------------------------------------------
# special-token-looking text (tokenized WITHOUT special parsing here)
add("sp_bos_text", "<bos>")
add("sp_eos_text", "<eos>")
add("sp_pad_unk_mask", "<pad><unk><mask>")
add("sp_start_of_turn_user", "<start_of_turn>user")
add("sp_chat_full",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n2+2 is 4.<end_of_turn>\n")
add("sp_bos_in_sentence", "The token <bos> starts and <eos> ends a sequence.")
add("sp_unused", "<unused0> <unused42> <unused98> <unused99>")
add("sp_image_tags", "<start_of_image> image here <end_of_image>")
add("sp_multimodal", "[multimodal] x")
add("sp_llama_style", "<s>[INST] hi [/INST]</s> <|im_start|>user\nhi<|im_end|> <|endoftext|>")
add("sp_partial", "<start_of_tur <end_of_turn <bo s> < bos> <BOS> </start_of_turn>")
add("sp_byte_token_text", "<0x41><0x0A><0xFF>")
add("sp_sentencepiece_marker", "\u2581hello\u2581\u2581world\u2581")

# --------------------------------------------------------------------------
# invalid / odd UTF-8 (raw bytes)
add("bad_lone_continuation", b"\x80")
add("bad_lone_continuation_bf", b"\xbf")
add("bad_ff", b"\xff")
add("bad_fe", b"\xfe")
add("bad_c0_overlong_slash", b"\xc0\xaf")
add("bad_c1_overlong", b"\xc1\xbf")
add("bad_e0_overlong", b"\xe0\x80\xaf")
add("bad_f0_overlong", b"\xf0\x80\x80\xaf")
add("bad_surrogate_d800", b"\xed\xa0\x80")
add("bad_surrogate_pair", b"\xed\xa0\xbd\xed\xb8\x80")
add("bad_above_10ffff", b"\xf4\x90\x80\x80")
add("bad_f5_lead", b"\xf5\x80\x80\x80")
add("bad_5byte", b"\xf8\x88\x80\x80\x80")
add("bad_6byte", b"\xfc\x84\x80\x80\x80\x80")
add("bad_truncated_2of3_end", b"abc\xe4\xb8")
add("bad_truncated_1of2_end", b"abc\xc3")
add("bad_truncated_3of4_end", b"abc\xf0\x9f\x98")
add("bad_truncated_mid", b"a\xe4\xb8b c")
add("bad_truncated_then_space", b"\xe4 \xb8 \xad")
add("bad_lead_then_ascii", b"\xc3A\xc3B")
add("bad_many_continuations", b"\x80\x81\x82\x83\x84\x85\x86\x87")
add("bad_in_word", b"hel\xfflo wor\x80ld")
add("bad_latin1_text", "caf\u00e9 na\u00efve r\u00e9sum\u00e9".encode("latin-1"))
add("bad_cp1252_quotes", b"\x93quoted\x94 \x96 dash")
add("bad_all_high_bytes", bytes(range(0x80, 0x100)))
add("bad_mixed_valid_invalid", b"\xe4\xb8\xad\xff\xe6\x96\x87\x80!")
add("bad_nul_in_text", b"before\x00after")
add("bad_bom_then_text", b"\xef\xbb\xbfHello")
add("bad_utf16le_bom", b"\xff\xfeH\x00i\x00")
add("ctl_all_c0", bytes(range(0, 32)))
add("ctl_ascii_printable", bytes(range(32, 127)))


# --------------------------------------------------------------------------
# special-token set: tokenized WITH special-token parsing
MAIN_CASES = CASES
CASES = []
_names = set()
add("sps_chat_turn_user", "<start_of_turn>user\nhi<end_of_turn>\n")
add("sps_chat_full",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n2+2 is 4.<end_of_turn>\n")
add("sps_chat_prompt_open", "<start_of_turn>user\nWrite a haiku about C.<end_of_turn>\n<start_of_turn>model\n")
add("sps_chat_system_like",
    "<start_of_turn>user\nYou are terse.\n\nSummarize: the cat sat on the mat.<end_of_turn>\n<start_of_turn>model\n")
add("sps_bos_only", "<bos>")
add("sps_bos_text", "<bos>Hello")
add("sps_eos_mid", "one<eos>two")
add("sps_pad_unk_mask", "<pad><unk><mask>")
add("sps_unused", "<unused0><unused42> <unused98>")
add("sps_adjacent_turns", "<end_of_turn><start_of_turn><end_of_turn>")
add("sps_spaces_around", " <start_of_turn> user <end_of_turn> ")
add("sps_newlines_around", "\n\n<start_of_turn>\n\n")
add("sps_image_tags", "<start_of_image><end_of_image>")
add("sps_multimodal", "[multimodal]")
add("sps_partial", "<start_of_tur <end_of_turn <bo s> <BOS>")
add("sps_html_and_special", "<start_of_turn>user\n<table><tr><td>1</td></tr></table><end_of_turn>")
add("sps_cjk_chat", "<start_of_turn>user\n\u4f60\u597d\uff01<end_of_turn>\n<start_of_turn>model\n")
add("sps_emoji_chat", "<start_of_turn>user\n\U0001f44b\U0001f3fd hi<end_of_turn>")
add("sps_code_chat", "<start_of_turn>user\n```c\nint main(void) {\n\treturn 0;\n}\n```<end_of_turn>\n")
add("sps_tabs_spaces", "<start_of_turn>\t\t  x  \t<end_of_turn>")
add("sps_plain_no_special", "Hello world")
add("sps_empty", "")
SPECIAL_CASES = CASES


def main():
    args = sys.argv[1:]
    cases = MAIN_CASES
    if args and args[0] == "--special":
        cases = SPECIAL_CASES
        args = args[1:]
    data = json.dumps(cases, indent=1, ensure_ascii=True) + "\n"
    if args:
        with open(args[0], "w", encoding="ascii") as fh:
            fh.write(data)
    else:
        sys.stdout.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())

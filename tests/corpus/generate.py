#!/usr/bin/env python3
"""Generate the labelled request corpus `tests/corpus/cases.jsonl`.

Telltale looks for host facts (time zone, proxy settings, kernel, host and user
names, machine ids, addresses, ...) in LLM API requests. This script writes a
corpus of realistic request bodies for seven API shapes, some carrying the facts
of the fixed *example host* (`sensor/src/detect/example_host.json`) in various
encodings (positives) and many that do not (negatives: benign conversations,
near-misses, single weak facts), to measure recall and false-positive rate.

    python3 tests/corpus/generate.py            # writes cases.jsonl, prints counts
    python3 tests/corpus/generate.py --check    # also fails if the file on disk differs

Python 3 standard library only; deterministic (fixed seed, no clock, no host
lookups). Every case is re-checked by an independent reference matcher
(`Scanner` below) before it is written: positives must contain what their
label says, negatives must contain no strong fact in any encoding and at most
one weak fact kind. See README.md for the label semantics.
"""

import base64
import collections
import hashlib
import json
import os
import random
import re
import sys
import urllib.parse

SEED = 20250314
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
HOST_FILE = os.path.join(REPO, "sensor", "src", "detect", "example_host.json")
OUT = os.path.join(HERE, "cases.jsonl")

# ---------------------------------------------------------------------------
# The example host. The templates below spell these values out; the script
# fails if example_host.json no longer agrees.
# ---------------------------------------------------------------------------

TZ = "Europe/Berlin"
PROXY = "http://proxy.corp.example:3128"
PROXY_HOSTPORT = "proxy.corp.example:3128"
NO_PROXY = "internal.corp.example"
ARCH = "x86_64"
KREL = "6.1.0-18-amd64"
KVER = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"
OSREL = "Debian GNU/Linux 12 (bookworm)"
HOSTNAME = "build-host-7"
FQDN = "build-host-7.eu.corp.example"
USER = "alice"
HOME = "/home/alice"
MID = "4c4c4544003457108052b4c04f384d32"
BOOT = "8d3f6a7e-2b1c-4e5f-9a0b-1c2d3e4f5a6b"
DMI_UUID = "ec2a9b1f-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
DMI_SERIAL = "CZ20240117XK"
MAC = "52:54:00:12:34:56"
IP = "10.20.30.40"
CPU = "Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz"
LOCALE = "de_DE.UTF-8"
OFFSET_SPELLINGS = ["+01:00", "+0100", "UTC+1", "UTC+01:00", "GMT+1", "GMT+01:00"]
# Also recognised by the reference matcher (never used by the templates for
# negatives): other spellings of the same offset.
OFFSET_EXTRA = ["UTC+0100", "GMT+0100", "UTC+01", "GMT+01"]


def load_host():
    with open(HOST_FILE, encoding="utf-8") as f:
        facts = json.load(f)
    expect = {
        ("timezone", TZ), ("utc_offset", "60"), ("proxy", PROXY), ("proxy", PROXY_HOSTPORT),
        ("no_proxy", NO_PROXY),
        ("arch", ARCH), ("kernel_release", KREL), ("kernel_version", KVER),
        ("os_release", OSREL), ("hostname", HOSTNAME), ("fqdn", FQDN), ("user", USER),
        ("home", HOME), ("user", "root"), ("machine_id", MID), ("boot_id", BOOT),
        ("dmi_uuid", DMI_UUID), ("dmi_serial", DMI_SERIAL), ("mac", MAC), ("ip", IP),
        ("cpu_model", CPU), ("locale", LOCALE),
    }
    got = {(f["kind"], f["value"]) for f in facts}
    if not expect <= got:
        sys.exit(f"example_host.json lacks values generate.py spells out: {sorted(expect - got)}")
    # Facts added to the file later are not injected on purpose, but the
    # reference matcher below looks for them too (so negatives stay clean).
    return facts


# ---------------------------------------------------------------------------
# Reference matcher: finds fact values in a case, in every encoding.
# ---------------------------------------------------------------------------

B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")
HEX_RUN = re.compile(r"[0-9a-fA-F]{8,}")
JSON_ESC = re.compile(r"\\(u[0-9a-fA-F]{4}|[\"\\/bfnrt])")
SIMPLE_ESC = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def json_unescape(s):
    def rep(m):
        e = m.group(1)
        return chr(int(e[1:], 16)) if e[0] == "u" else SIMPLE_ESC[e]
    return JSON_ESC.sub(rep, s)


def b64_decodings(s):
    out = []
    for m in B64_RUN.finditer(s):
        run = m.group(0).rstrip("=")
        for start in range(4):
            part = run[start:]
            if len(part) % 4 == 1:
                part = part[:-1]
            part += "=" * (-len(part) % 4)
            if len(part) < 8:
                continue
            for alt in (part, part.replace("-", "+").replace("_", "/")):
                try:
                    out.append(base64.b64decode(alt, validate=True).decode("latin-1"))
                except ValueError:
                    pass
    return out


def hex_decodings(s):
    out = []
    for m in HEX_RUN.finditer(s):
        run = m.group(0)
        for start in (0, 1):
            part = run[start:]
            part = part[: len(part) - len(part) % 2]
            if len(part) >= 8:
                out.append(bytes.fromhex(part).decode("latin-1"))
    return out


def variants(s):
    """(encoding, decoded text) pairs of one string."""
    yield "raw", s
    u = s
    for _ in range(3):  # stringified JSON inside stringified JSON: unescape again
        if "\\" not in u:
            break
        v = json_unescape(u)
        if v == u:
            break
        yield "json_escaped", v
        u = v
    if "%" in s:
        for u in {urllib.parse.unquote(s), urllib.parse.unquote_plus(s)}:
            if u != s:
                yield "url_encoded", u
    if len(s) >= 8:
        for d in b64_decodings(s):
            yield "base64", d
        for d in hex_decodings(s):
            yield "hex", d


def is_word(c):
    return c.isascii() and c.isalnum()


def find_bounded(text, value):
    """Case-insensitive match of `value` at word boundaries (letters and digits
    are word characters; the edge of a value that is not one needs no boundary)."""
    lt, lv = text.lower(), value.lower()
    i = lt.find(lv)
    while i >= 0:
        before_ok = i == 0 or not is_word(lv[0]) or not is_word(lt[i - 1])
        j = i + len(lv)
        after_ok = j == len(lt) or not is_word(lv[-1]) or not is_word(lt[j])
        if before_ok and after_ok:
            return text[i:j]
        i = lt.find(lv, i + 1)
    return None


class Scanner:
    def __init__(self, facts):
        self.values = []  # (kind, value, strong)
        for f in facts:
            if f["kind"] == "utc_offset":
                for sp in OFFSET_SPELLINGS + OFFSET_EXTRA:
                    self.values.append(("utc_offset", sp, f["strength"] == "strong"))
            else:
                self.values.append((f["kind"], f["value"], f["strength"] == "strong"))
        self.strong_kinds = {k for k, _, s in self.values if s}

    def parts(self, case):
        for name, value in case["headers"].items():
            yield f"header:{name}", value
        body = case["body"]
        if isinstance(body, str):
            yield "$", body
        else:
            yield from walk(body, "$")

    def scan(self, case):
        """hits: list of (kind, value, strong, encoding, path); loose: set of
        (kind, strong) found as plain case-insensitive substrings anywhere."""
        hits, loose = [], set()
        for path, s in self.parts(case):
            for enc, text in variants(s):
                lt = text.lower()
                for kind, value, strong in self.values:
                    if value.lower() in lt:
                        loose.add((kind, strong))
                    m = find_bounded(text, value)
                    if m is None:
                        continue
                    e = enc
                    if kind == "utc_offset":
                        e = "utc_offset"
                    elif enc == "raw" and m != value:
                        e = "case_folded"
                    hits.append((kind, value, strong, e, path))
        return hits, loose


def push_key(path, key):
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{path}.{key}"
    esc = key.replace("\\", "\\\\").replace("'", "\\'")
    return f"{path}['{esc}']"


def walk(node, path):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, push_key(path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


# ---------------------------------------------------------------------------
# Random but deterministic helpers.
# ---------------------------------------------------------------------------

rng = random.Random(SEED)
# Substrings no random token may contain (fact values and short risky words).
FORBIDDEN = [v.lower() for v in (TZ, PROXY, NO_PROXY, ARCH, KREL, HOSTNAME, USER, MID,
                                 BOOT, DMI_UUID, DMI_SERIAL, MAC, IP, "root", "corp")]
B62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def clean(s):
    ls = s.lower()
    return not any(f in ls for f in FORBIDDEN)


def rtoken(n, alphabet=B62):
    while True:
        s = "".join(rng.choice(alphabet) for _ in range(n))
        if clean(s):
            return s


def rhex(n):
    return rtoken(n, "0123456789abcdef")


def ruuid():
    h = rhex(32)
    h = h[:12] + "4" + h[13:16] + rng.choice("89ab") + h[17:]
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def pick(seq):
    return seq[rng.randrange(len(seq))]


NOUNS = ["order", "invoice", "cache", "parser", "token", "buffer", "session", "widget",
         "metric", "report", "schedule", "payment", "account", "profile", "queue", "worker",
         "batch", "shard", "index", "record", "stream", "layout", "config", "plugin",
         "handler", "router", "client", "server", "bucket", "upload", "thumbnail", "search",
         "filter", "ranking", "summary", "ledger", "inventory", "shipment", "catalog",
         "price", "discount", "coupon", "review", "rating", "comment", "thread", "message",
         "channel", "email", "template", "cursor", "page", "segment", "event", "snapshot",
         "chunk", "region", "tenant", "quota", "limit", "job", "task", "pipeline", "stage",
         "artifact", "manifest", "schema", "column", "row", "table", "migration", "query"]
VERBS = ["load", "parse", "build", "render", "fetch", "update", "validate", "compute",
         "merge", "flush", "resolve", "encode", "decode", "sync", "retry", "emit",
         "collect", "normalize", "format", "split", "group", "sort", "dedupe", "publish"]
ADJS = ["stale", "pending", "partial", "cached", "expired", "active", "archived", "empty",
        "large", "nested", "optional", "ordered", "signed", "unsigned", "draft", "final"]
LANGS = ["python", "typescript", "rust", "go"]
OTHER_USERS = ["bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory"]
OTHER_HOSTS = ["web-01", "db-primary", "ci-runner-3", "dev-box", "api-gw-2", "worker-12",
               "laptop-carol", "staging-app-4", "edge-cache-9", "batch-node-5"]
DATES = ["2025-01-21", "2025-02-07", "2025-03-14", "2025-04-02", "2025-05-19", "2025-06-30",
         "2025-08-11", "2025-09-23", "2025-10-06", "2025-11-17"]


def ident():
    return f"{pick(VERBS)}_{pick(NOUNS)}"


def camel(s):
    a, b = s.split("_", 1)
    return a + b[:1].upper() + b[1:]


def sentence():
    t = pick([
        "The {n1} {n2} is {a} because the {n3} handler calls {v}_{n4}() before the {n5} queue drains.",
        "We {v} every {n1} in a single pass, so a {a} {n2} never reaches the {n3} table.",
        "If the {n1} is {a}, {v}_{n2}() returns early and the {n3} is retried later.",
        "Note that the {n1} {n2} keeps a reference to the {n3}; dropping it too soon makes the {n4} {a}.",
        "The tests cover the {a} {n1} case, but not what happens when the {n2} and the {n3} disagree.",
        "Consider moving {v}_{n1}() into the {n2} module; it only touches {n3} state.",
        "This keeps the {n1} path cheap: one lookup in the {n2} index and one write to the {n3} log.",
        "After the change, a {a} {n1} is reported once instead of once per {n2}.",
    ])
    s = t.format(n1=pick(NOUNS), n2=pick(NOUNS), n3=pick(NOUNS), n4=pick(NOUNS),
                 n5=pick(NOUNS), a=pick(ADJS), v=pick(VERBS))
    return re.sub(r"\b([Aa]) ([aeiou])", r"\1n \2", s)


def prose(n):
    paras, left = [], n
    while left > 0:
        k = min(left, rng.randint(2, 5))
        paras.append(" ".join(sentence() for _ in range(k)))
        left -= k
    return "\n\n".join(paras)


def py_module(nfuncs):
    lines = ["from __future__ import annotations", "", "import dataclasses", "import logging",
             "from typing import Iterable, Optional", "", "log = logging.getLogger(__name__)", ""]
    cls = pick(NOUNS).capitalize() + pick(NOUNS).capitalize()
    lines += ["", "@dataclasses.dataclass", f"class {cls}:",
              f'    """A {pick(ADJS)} {pick(NOUNS)} and its {pick(NOUNS)}."""',
              f"    {pick(NOUNS)}_id: int", f"    {pick(NOUNS)}: str", f"    {pick(NOUNS)}s: list[str] = dataclasses.field(default_factory=list)", ""]
    for _ in range(nfuncs):
        f, a, b = ident(), pick(NOUNS), pick(NOUNS)
        lines += ["",
                  f"def {f}({a}s: Iterable[{cls}], limit: Optional[int] = None) -> list[{cls}]:",
                  f'    """{sentence()}"""',
                  "    out = []",
                  f"    for i, {a} in enumerate({a}s):",
                  "        if limit is not None and i >= limit:",
                  "            break",
                  f"        if not {a}.{b}s:",
                  f'            log.debug("skipping {pick(ADJS)} {a} %s", {a})',
                  "            continue",
                  f"        out.append({a})",
                  f"    return sorted(out, key=lambda x: x.{pick(NOUNS)}_id)", ""]
    return "\n".join(lines)


def ts_module(nfuncs):
    lines = [f"import {{ {camel(ident())} }} from './{pick(NOUNS)}';", ""]
    iface = pick(NOUNS).capitalize()
    lines += [f"export interface {iface} {{", f"  id: string;", f"  {pick(NOUNS)}: number;",
              f"  {pick(NOUNS)}?: string[];", "}", ""]
    for _ in range(nfuncs):
        f, a = camel(ident()), pick(NOUNS)
        lines += [f"/** {sentence()} */",
                  f"export async function {f}({a}s: {iface}[], opts: {{ limit?: number }} = {{}}): Promise<{iface}[]> {{",
                  f"  const out: {iface}[] = [];",
                  f"  for (const {a} of {a}s) {{",
                  f"    if (opts.limit !== undefined && out.length >= opts.limit) break;",
                  f"    if (!{a}.id) continue;",
                  f"    out.push({{ ...{a}, {pick(NOUNS)}: {rng.randint(1, 500)} }});",
                  "  }", "  return out;", "}", ""]
    return "\n".join(lines)


def rust_module(nfuncs):
    st = pick(NOUNS).capitalize()
    lines = ["use std::collections::HashMap;", "", f"/// {sentence()}", "#[derive(Debug, Clone, Default)]",
             f"pub struct {st} {{", f"    pub {pick(NOUNS)}_id: u64,", f"    pub {pick(NOUNS)}: String,",
             f"    {pick(NOUNS)}s: HashMap<String, usize>,", "}", "", f"impl {st} {{"]
    for _ in range(nfuncs):
        f, a = ident(), pick(NOUNS)
        lines += [f"    /// {sentence()}", f"    pub fn {f}(&mut self, {a}: &str) -> Option<usize> {{",
                  f"        let n = self.{pick(NOUNS)}s.entry({a}.to_owned()).or_insert(0);",
                  "        *n += 1;", f"        (*n > {rng.randint(2, 64)}).then_some(*n)", "    }", ""]
    lines.append("}")
    return "\n".join(lines)


def go_module(nfuncs):
    st = pick(NOUNS).capitalize()
    lines = [f"package {pick(NOUNS)}", "", 'import (\n\t"context"\n\t"fmt"\n)', "",
             f"// {st} {sentence()}", f"type {st} struct {{", f"\tID int64", f"\tName string", "}", ""]
    for _ in range(nfuncs):
        f = camel(ident())
        f = f[0].upper() + f[1:]
        lines += [f"// {f} {sentence()}", f"func {f}(ctx context.Context, items []{st}) ([]{st}, error) {{",
                  f"\tout := make([]{st}, 0, len(items))", "\tfor _, it := range items {",
                  "\t\tif err := ctx.Err(); err != nil {", f'\t\t\treturn nil, fmt.Errorf("{pick(VERBS)}: %w", err)',
                  "\t\t}", "\t\tout = append(out, it)", "\t}", "\treturn out, nil", "}", ""]
    return "\n".join(lines)


def code(lang=None, nfuncs=None):
    lang = lang or pick(LANGS)
    n = nfuncs or rng.randint(2, 6)
    return lang, {"python": py_module, "typescript": ts_module, "rust": rust_module,
                  "go": go_module}[lang](n)


EXT = {"python": "py", "typescript": "ts", "rust": "rs", "go": "go"}


def log_lines(n, date=None):
    date = date or pick(DATES)
    out = []
    for i in range(n):
        lvl = pick(["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"])
        out.append(f"{date}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}."
                   f"{rng.randint(0, 999):03d}Z {lvl:5} {pick(NOUNS)}::{pick(VERBS)} "
                   f"{pick(NOUNS)}_id={rng.randint(1000, 99999)} {pick(ADJS)}={pick(['true', 'false'])} "
                   f"took={rng.randint(1, 900)}ms")
    return "\n".join(out)


def pytest_output(mod):
    n = rng.randint(8, 60)
    fails = rng.randint(0, 2)
    lines = ["============================= test session starts ==============================",
             "platform linux -- Python 3.12.3, pytest-8.2.1, pluggy-1.5.0",
             f"collected {n} items", ""]
    lines.append(f"tests/test_{mod}.py " + "." * (n - fails) + "F" * fails + " [100%]")
    if fails:
        f = ident()
        lines += ["", "=================================== FAILURES ===================================",
                  f"____________________________ test_{f} ____________________________", "",
                  f"    def test_{f}():", f">       assert {f}([]) == [{rng.randint(1, 9)}]",
                  f"E       assert [] == [{rng.randint(1, 9)}]", ""]
    lines.append(f"========================= {n - fails} passed, {fails} failed in {rng.randint(1, 40) / 10:.2f}s =========================")
    return "\n".join(lines)


def git_diff(lang, text):
    path = f"src/{pick(NOUNS)}.{EXT[lang]}"
    body = text.splitlines()[:rng.randint(8, 20)]
    return "\n".join([f"diff --git a/{path} b/{path}", f"index {rhex(7)}..{rhex(7)} 100644",
                      f"--- a/{path}", f"+++ b/{path}", f"@@ -1,{len(body)} +1,{len(body)} @@"] +
                     [pick([" ", " ", "+", "-"]) + l for l in body])


# ---------------------------------------------------------------------------
# An API-neutral conversation, rendered into each API's request shape.
# ---------------------------------------------------------------------------

class Conv:
    def __init__(self, api):
        self.api = api
        self.system = []           # list of text blocks
        self.turns = []            # dicts: user/assistant/tool
        self.tools = []            # (name, description, json schema)
        self.meta = {}             # metadata-like fields (api-specific keys)
        self.headers = {}
        self.model = None
        self.extra = {}            # extra top-level body members

    def user(self, text):
        self.turns.append({"role": "user", "text": text})

    def assistant(self, text, calls=()):
        self.turns.append({"role": "assistant", "text": text, "calls": list(calls)})

    def results(self, results):
        self.turns.append({"role": "tool", "results": list(results)})

    def call(self, command, output, text=None, tool="shell"):
        """An assistant tool call running `command` (or reading a file) and its result."""
        cid = call_id(self.api)
        name, args = tool_call_args(self.api, tool, command)
        self.assistant(text if text is not None else pick(LEADINS).format(c=command), [(cid, name, args)])
        self.results([(cid, name, output)])

    def size(self):
        n = sum(len(s) for s in self.system)
        for t in self.turns:
            n += len(t.get("text") or "")
            for r in t.get("results", []):
                n += len(r[2])
        return n


LEADINS = ["Let me check that.", "I'll run `{c}` to see.", "Running `{c}`.", "Let me look.",
           "First, let me inspect the current state.", "Checking with `{c}`."]


def call_id(api):
    if api == "anthropic_messages":
        return "toolu_01" + rtoken(22)
    if api == "bedrock_converse":
        return "tooluse_" + rtoken(22)
    if api in ("openai_chat", "dashscope_generation"):
        return "call_" + rtoken(24)
    if api == "openai_responses":
        return "call_" + rtoken(24)
    return ""


SHELL_TOOL = {
    "anthropic_messages": ("Bash", lambda c: {"command": c, "description": "Run " + c.split()[0]}),
    "bedrock_converse": ("Bash", lambda c: {"command": c, "description": "Run " + c.split()[0]}),
    "openai_chat": ("execute_command", lambda c: {"command": c, "requires_approval": False}),
    "openai_responses": ("shell", lambda c: {"command": ["bash", "-lc", c], "timeout_ms": 120000}),
    "gemini_generate": ("run_shell_command", lambda c: {"command": c}),
    "dashscope_generation": ("run_shell_command", lambda c: {"command": c, "is_background": False}),
    "ollama_chat": ("bash", lambda c: {"command": c}),
}
READ_TOOL = {
    "anthropic_messages": ("Read", lambda p: {"file_path": p}),
    "bedrock_converse": ("Read", lambda p: {"file_path": p}),
    "openai_chat": ("read_file", lambda p: {"path": p}),
    "openai_responses": ("shell", lambda p: {"command": ["bash", "-lc", f"sed -n '1,200p' {p}"]}),
    "gemini_generate": ("read_file", lambda p: {"absolute_path": p}),
    "dashscope_generation": ("read_file", lambda p: {"absolute_path": p}),
    "ollama_chat": ("read_file", lambda p: {"path": p}),
}


def tool_call_args(api, tool, arg):
    name, mk = (SHELL_TOOL if tool == "shell" else READ_TOOL)[api]
    return name, mk(arg)


SCHEMA_SHELL = {"type": "object", "properties": {
    "command": {"type": "string", "description": "The command to execute"},
    "description": {"type": "string", "description": "Clear, concise description of what this command does in 5-10 words."},
    "timeout": {"type": "number", "description": "Optional timeout in milliseconds (max 600000)"}},
    "required": ["command"], "additionalProperties": False}
SCHEMA_READ = {"type": "object", "properties": {
    "file_path": {"type": "string", "description": "The absolute path to the file to read"},
    "offset": {"type": "number", "description": "The line number to start reading from"},
    "limit": {"type": "number", "description": "The number of lines to read"}},
    "required": ["file_path"], "additionalProperties": False}
SCHEMA_EDIT = {"type": "object", "properties": {
    "file_path": {"type": "string"}, "old_string": {"type": "string"},
    "new_string": {"type": "string"}, "replace_all": {"type": "boolean", "default": False}},
    "required": ["file_path", "old_string", "new_string"]}
SCHEMA_GREP = {"type": "object", "properties": {
    "pattern": {"type": "string", "description": "The regular expression pattern to search for"},
    "path": {"type": "string", "description": "File or directory to search in"},
    "glob": {"type": "string", "description": "Glob pattern to filter files (e.g. \"*.js\")"}},
    "required": ["pattern"]}

TOOL_SETS = {
    "anthropic_messages": [
        ("Bash", "Executes a given bash command in a persistent shell session with optional timeout, ensuring proper handling and security measures.\n\nBefore executing the command, please follow these steps:\n\n1. Directory Verification:\n   - If the command will create new directories or files, first use the LS tool to verify the parent directory exists and is the correct location\n\n2. Command Execution:\n   - Always quote file paths that contain spaces with double quotes\n   - After ensuring proper quoting, execute the command.\n   - Capture the output of the command.", SCHEMA_SHELL),
        ("Read", "Reads a file from the local filesystem. You can access any file directly by using this tool.\n\nUsage:\n- The file_path parameter must be an absolute path, not a relative path\n- By default, it reads up to 2000 lines starting from the beginning of the file\n- Results are returned using cat -n format, with line numbers starting at 1", SCHEMA_READ),
        ("Edit", "Performs exact string replacements in files.\n\nUsage:\n- You must use your `Read` tool at least once in the conversation before editing.\n- The edit will FAIL if `old_string` is not unique in the file.", SCHEMA_EDIT),
        ("Grep", "A powerful search tool built on ripgrep. Supports full regex syntax. Filter files with glob parameter.", SCHEMA_GREP),
    ],
}
TOOL_SETS["bedrock_converse"] = TOOL_SETS["anthropic_messages"]
TOOL_SETS["openai_chat"] = [
    ("execute_command", "Request to execute a CLI command on the system. Use this when you need to perform system operations or run specific commands to accomplish any step in the user's task.", {"type": "object", "properties": {"command": {"type": "string"}, "requires_approval": {"type": "boolean"}}, "required": ["command", "requires_approval"]}),
    ("read_file", "Request to read the contents of a file at the specified path.", {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
    ("replace_in_file", "Request to replace sections of content in an existing file using SEARCH/REPLACE blocks.", {"type": "object", "properties": {"path": {"type": "string"}, "diff": {"type": "string"}}, "required": ["path", "diff"]}),
]
TOOL_SETS["openai_responses"] = [
    ("shell", "Runs a shell command and returns its output.", {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}, "workdir": {"type": "string"}, "timeout_ms": {"type": "number"}}, "required": ["command"], "additionalProperties": False}),
    ("update_plan", "Updates the task plan. Provide an optional explanation and a list of plan items, each with a step and status.", {"type": "object", "properties": {"explanation": {"type": "string"}, "plan": {"type": "array", "items": {"type": "object", "properties": {"step": {"type": "string"}, "status": {"type": "string"}}, "required": ["step", "status"]}}}, "required": ["plan"]}),
]
TOOL_SETS["gemini_generate"] = [
    ("run_shell_command", "This tool executes a given shell command as `bash -c <command>`. Command can start background processes using `&`.", {"type": "OBJECT", "properties": {"command": {"type": "STRING", "description": "Exact bash command to execute"}, "description": {"type": "STRING"}, "directory": {"type": "STRING"}}, "required": ["command"]}),
    ("read_file", "Reads and returns the content of a specified file from the local filesystem.", {"type": "OBJECT", "properties": {"absolute_path": {"type": "STRING"}, "offset": {"type": "NUMBER"}, "limit": {"type": "NUMBER"}}, "required": ["absolute_path"]}),
    ("search_file_content", "Searches for a regular expression pattern within the content of files in a specified directory.", {"type": "OBJECT", "properties": {"pattern": {"type": "STRING"}, "path": {"type": "STRING"}, "include": {"type": "STRING"}}, "required": ["pattern"]}),
]
TOOL_SETS["dashscope_generation"] = [
    ("run_shell_command", "Executes a given shell command as `bash -c <command>` and returns stdout, stderr and the exit code.", {"type": "object", "properties": {"command": {"type": "string"}, "is_background": {"type": "boolean"}}, "required": ["command", "is_background"]}),
    ("read_file", "Reads and returns the content of a specified file.", {"type": "object", "properties": {"absolute_path": {"type": "string"}}, "required": ["absolute_path"]}),
]
TOOL_SETS["ollama_chat"] = [
    ("bash", "Run a shell command and return its output.", {"type": "object", "properties": {"command": {"type": "string", "description": "the command"}}, "required": ["command"]}),
    ("read_file", "Read a text file.", {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
]

MODELS = {
    "anthropic_messages": ["claude-sonnet-4-20250514", "claude-opus-4-1-20250805", "claude-3-5-haiku-20241022"],
    "openai_chat": ["gpt-4o-2024-08-06", "gpt-4.1", "gpt-4o-mini", "o4-mini"],
    "openai_responses": ["gpt-5-codex", "gpt-5", "o4-mini", "gpt-4.1"],
    "gemini_generate": [None],
    "dashscope_generation": ["qwen-plus", "qwen-max", "qwen3-coder-plus", "qwen-turbo"],
    "bedrock_converse": [None],
    "ollama_chat": ["qwen2.5-coder:7b", "llama3.1:8b", "mistral-nemo:12b", "gemma3:4b"],
}

APIS = {
    "anthropic_messages": ("anthropic", "api.anthropic.com", "/v1/messages"),
    "openai_chat": ("openai", "api.openai.com", "/v1/chat/completions"),
    "openai_responses": ("openai", "api.openai.com", "/v1/responses"),
    "gemini_generate": ("gemini", "generativelanguage.googleapis.com", "/v1beta/models/gemini-2.5-pro:generateContent"),
    "dashscope_generation": ("dashscope", "dashscope.aliyuncs.com", "/api/v1/services/aigc/text-generation/generation"),
    "bedrock_converse": ("aws-bedrock", "bedrock-runtime.us-east-1.amazonaws.com", "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"),
    "ollama_chat": ("ollama", "localhost:11434", "/api/chat"),
}
API_SHORT = {"anthropic_messages": "anthropic", "openai_chat": "openai-chat", "openai_responses": "openai-resp",
             "gemini_generate": "gemini", "dashscope_generation": "dashscope", "bedrock_converse": "bedrock",
             "ollama_chat": "ollama"}


def default_headers(api):
    """Realistic client headers of a host that is NOT the example host's (no facts)."""
    h = {"content-type": "application/json", "accept": "application/json"}
    if api == "anthropic_messages":
        h.update(pick([
            {"user-agent": "claude-cli/1.0.98 (external, cli)", "x-app": "cli",
             "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"},
            {"user-agent": "Anthropic/Python 0.40.0"},
            {"user-agent": "Anthropic/JS 0.54.0"},
        ]))
        h["anthropic-version"] = "2023-06-01"
        h.update({"x-stainless-lang": pick(["js", "python"]), "x-stainless-os": pick(["Linux", "MacOS"]),
                  "x-stainless-arch": pick(["x64", "arm64"]), "x-stainless-retry-count": "0",
                  "x-stainless-package-version": pick(["0.54.0", "0.40.0"])})
    elif api in ("openai_chat", "openai_responses"):
        h.update(pick([
            {"user-agent": "OpenAI/Python 1.54.3", "x-stainless-lang": "python", "x-stainless-runtime": "CPython",
             "x-stainless-runtime-version": "3.12.3", "x-stainless-os": "Linux", "x-stainless-arch": "x64",
             "x-stainless-package-version": "1.54.3"},
            {"user-agent": "OpenAI/JS 4.77.0", "x-stainless-lang": "js", "x-stainless-runtime": "node",
             "x-stainless-runtime-version": "v20.11.1", "x-stainless-os": "MacOS", "x-stainless-arch": "arm64",
             "x-stainless-package-version": "4.77.0"},
            {"user-agent": "codex_cli_rs/0.20.0 (Mac OS 14.5.0; arm64) vscode/1.98.2", "originator": "codex_cli_rs",
             "version": "0.20.0", "session_id": ruuid()},
        ]))
    elif api == "gemini_generate":
        h.update({"user-agent": pick(["GeminiCLI/0.1.18 (darwin; arm64)", "GeminiCLI/0.1.18 (linux; x64)",
                                      "google-genai-sdk/1.20.0 gl-node/v20.11.1"]),
                  "x-goog-api-client": "google-genai-sdk/1.20.0 gl-node/v20.11.1"})
    elif api == "dashscope_generation":
        h.update({"user-agent": pick(["dashscope/1.20.14; python/3.11.9; platform/macOS-14.5-arm64-arm-64bit; processor/arm",
                                      "dashscope/1.23.1; python/3.12.3; platform/Windows-10-10.0.19045-SP0; processor/AMD64"]),
                  "x-dashscope-sse": "disable"})
    elif api == "bedrock_converse":
        h.update({"user-agent": pick(["aws-sdk-js/3.840.0 ua/2.1 os/darwin#23.5.0 lang/js md/nodejs#20.11.1 api/bedrock-runtime#3.840.0 m/E",
                                      "Boto3/1.35.36 md/Botocore#1.35.36 ua/2.0 os/macos#23.5.0 md/arch#arm64 lang/python#3.12.3 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.35.36"]),
                  "amz-sdk-invocation-id": ruuid(), "amz-sdk-request": "attempt=1; max=3",
                  "x-amz-date": pick(DATES).replace("-", "") + "T101500Z"})
    elif api == "ollama_chat":
        h.update({"user-agent": pick(["ollama-python/0.4.7 (arm64 darwin) Python/3.12.3",
                                      "ollama-js/0.5.14 (arm64 darwin Node.js/v20.11.1)"])})
    return h


def render(conv):
    api = conv.api
    model = conv.model or pick(MODELS[api])
    tools = conv.tools if conv.tools is not None else []
    sys_text = "\n\n".join(conv.system)
    if api == "anthropic_messages":
        body = {"model": model, "max_tokens": pick([8192, 16000, 32000, 4096])}
        if conv.system:
            body["system"] = [{"type": "text", "text": t} for t in conv.system]
            body["system"][0]["cache_control"] = {"type": "ephemeral"}
        msgs = []
        for t in conv.turns:
            if t["role"] == "user":
                msgs.append({"role": "user", "content": [{"type": "text", "text": t["text"]}]})
            elif t["role"] == "assistant":
                c = [{"type": "text", "text": t["text"]}] if t["text"] else []
                c += [{"type": "tool_use", "id": i, "name": n, "input": a} for i, n, a in t["calls"]]
                msgs.append({"role": "assistant", "content": c})
            else:
                msgs.append({"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": i, "content": o} for i, n, o in t["results"]]})
        body["messages"] = msgs
        if tools:
            body["tools"] = [{"name": n, "description": d, "input_schema": s} for n, d, s in tools]
        if conv.meta:
            body["metadata"] = conv.meta
        body["stream"] = True
    elif api in ("openai_chat", "dashscope_generation", "ollama_chat"):
        msgs = []
        if conv.system:
            msgs.append({"role": "system", "content": sys_text})
        for t in conv.turns:
            if t["role"] == "user":
                msgs.append({"role": "user", "content": t["text"]})
            elif t["role"] == "assistant":
                m = {"role": "assistant", "content": t["text"] or ("" if api != "openai_chat" else None)}
                if t["calls"]:
                    if api == "ollama_chat":
                        m["tool_calls"] = [{"function": {"name": n, "arguments": a}} for i, n, a in t["calls"]]
                    else:
                        m["tool_calls"] = [{"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
                                           for i, n, a in t["calls"]]
                msgs.append(m)
            else:
                for i, n, o in t["results"]:
                    if api == "ollama_chat":
                        msgs.append({"role": "tool", "content": o, "tool_name": n})
                    elif api == "dashscope_generation":
                        msgs.append({"role": "tool", "content": o, "tool_call_id": i, "name": n})
                    else:
                        msgs.append({"role": "tool", "tool_call_id": i, "content": o})
        otools = [{"type": "function", "function": {"name": n, "description": d, "parameters": s}} for n, d, s in tools]
        if api == "openai_chat":
            body = {"model": model, "messages": msgs}
            if otools:
                body["tools"] = otools
                body["tool_choice"] = "auto"
            body.update({"temperature": pick([0, 0.2, 0.7]), "stream": True, "stream_options": {"include_usage": True}})
            body.update(conv.meta)
        elif api == "dashscope_generation":
            params = {"result_format": "message", "temperature": pick([0.3, 0.7, 0.85]), "top_p": 0.8,
                      "incremental_output": False}
            if otools:
                params["tools"] = otools
            body = {"model": model, "input": {"messages": msgs}, "parameters": params}
        else:
            body = {"model": model, "messages": msgs}
            if otools:
                body["tools"] = otools
            body.update({"stream": False, "options": {"temperature": pick([0.1, 0.2, 0.8]), "num_ctx": pick([8192, 16384, 32768])}})
            if conv.meta:
                body.update(conv.meta)
    elif api == "openai_responses":
        items = []
        for t in conv.turns:
            if t["role"] == "user":
                items.append({"type": "message", "role": "user", "content": [{"type": "input_text", "text": t["text"]}]})
            elif t["role"] == "assistant":
                if t["text"]:
                    items.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": t["text"]}]})
                for i, n, a in t["calls"]:
                    items.append({"type": "function_call", "name": n, "arguments": json.dumps(a), "call_id": i})
            else:
                for i, n, o in t["results"]:
                    items.append({"type": "function_call_output", "call_id": i, "output": o})
        body = {"model": model}
        if conv.system:
            body["instructions"] = sys_text
        body["input"] = items
        if tools:
            body["tools"] = [{"type": "function", "name": n, "description": d, "strict": False, "parameters": s} for n, d, s in tools]
            body["tool_choice"] = "auto"
            body["parallel_tool_calls"] = False
        body.update({"store": False, "stream": True, "reasoning": {"effort": pick(["low", "medium", "high"]), "summary": "auto"},
                     "include": ["reasoning.encrypted_content"]})
        body.update(conv.meta)
    elif api == "gemini_generate":
        contents = []
        for t in conv.turns:
            if t["role"] == "user":
                contents.append({"role": "user", "parts": [{"text": t["text"]}]})
            elif t["role"] == "assistant":
                parts = [{"text": t["text"]}] if t["text"] else []
                parts += [{"functionCall": {"name": n, "args": a}} for i, n, a in t["calls"]]
                contents.append({"role": "model", "parts": parts})
            else:
                contents.append({"role": "user", "parts": [{"functionResponse": {"name": n, "response": {"output": o}}}
                                                          for i, n, o in t["results"]]})
        body = {"contents": contents}
        if conv.system:
            body["systemInstruction"] = {"role": "user", "parts": [{"text": t} for t in conv.system]}
        if tools:
            body["tools"] = [{"functionDeclarations": [{"name": n, "description": d, "parameters": s} for n, d, s in tools]}]
        body["generationConfig"] = {"temperature": 0, "topP": 1, "thinkingConfig": {"includeThoughts": True, "thinkingBudget": -1}}
        body.update(conv.meta)
    elif api == "bedrock_converse":
        msgs = []
        for t in conv.turns:
            if t["role"] == "user":
                msgs.append({"role": "user", "content": [{"text": t["text"]}]})
            elif t["role"] == "assistant":
                c = [{"text": t["text"]}] if t["text"] else []
                c += [{"toolUse": {"toolUseId": i, "name": n, "input": a}} for i, n, a in t["calls"]]
                msgs.append({"role": "assistant", "content": c})
            else:
                msgs.append({"role": "user", "content": [{"toolResult": {"toolUseId": i, "content": [{"text": o}], "status": "success"}}
                                                         for i, n, o in t["results"]]})
        body = {"messages": msgs}
        if conv.system:
            body["system"] = [{"text": t} for t in conv.system]
        body["inferenceConfig"] = {"maxTokens": pick([4096, 8192]), "temperature": pick([0, 0.5, 1])}
        if tools:
            body["toolConfig"] = {"tools": [{"toolSpec": {"name": n, "description": d, "inputSchema": {"json": s}}} for n, d, s in tools]}
        body.update(conv.meta)
    else:
        raise ValueError(api)
    body.update(conv.extra)
    headers = default_headers(api)
    headers.update(conv.headers)
    return headers, body


# ---------------------------------------------------------------------------
# Building blocks: system prompts, sessions, tool outputs.
# ---------------------------------------------------------------------------

SYS_PROMPTS = [
    "You are an interactive CLI tool that helps users with software engineering tasks. Use the instructions below and the tools available to you to assist the user.\n\nIMPORTANT: Assist with defensive security tasks only. Refuse to create, modify, or improve code that may be used maliciously.\n\n# Tone and style\nYou should be concise, direct, and to the point. When you run a non-trivial bash command, you should explain what the command does and why you are running it.\n\n# Following conventions\nWhen making changes to files, first understand the file's code conventions. Mimic code style, use existing libraries and utilities, and follow existing patterns.\n- NEVER assume that a given library is available, even if it is well known.\n- Always follow security best practices. Never introduce code that exposes or logs secrets and keys.\n\n# Doing tasks\nThe user will primarily request you perform software engineering tasks. This includes solving bugs, adding new functionality, refactoring code, explaining code, and more.",
    "You are a coding agent running in a terminal-based coding assistant. You are expected to be precise, safe, and helpful.\n\nYour capabilities:\n- Receive user prompts and other context provided by the harness, such as files in the workspace.\n- Communicate with the user by streaming thinking & responses, and by making & updating plans.\n- Emit function calls to run terminal commands and apply patches.\n\n## Planning\nYou have access to an `update_plan` tool which tracks steps and progress. A good plan breaks the task into meaningful, logically ordered steps that are easy to verify as you go.\n\n## Presenting your work\nYour final message should read naturally, like an update from a concise teammate.",
    "You are an interactive CLI agent specializing in software engineering tasks. Your primary goal is to help users safely and efficiently, adhering strictly to the following instructions and utilizing your available tools.\n\n# Core Mandates\n- **Conventions:** Rigorously adhere to existing project conventions when reading or modifying code.\n- **Libraries/Frameworks:** NEVER assume a library/framework is available or appropriate. Verify its established usage within the project.\n- **Comments:** Add code comments sparingly. Focus on *why* something is done.\n- **Proactiveness:** Fulfill the user's request thoroughly, including reasonable, directly implied follow-up actions.",
    "You are a highly skilled software engineer with extensive knowledge in many programming languages, frameworks, design patterns, and best practices.\n\n====\n\nTOOL USE\n\nYou have access to a set of tools that are executed upon the user's approval. You can use one tool per message, and will receive the result of that tool use in the user's response. You use tools step-by-step to accomplish a given task, with each tool use informed by the result of the previous tool use.\n\n====\n\nRULES\n\n- Do not use the ~ character or $HOME to refer to the home directory.\n- When making changes to code, always consider the context in which the code is being used.",
    "You are a helpful assistant. Answer clearly and concisely. When you are unsure, say so. Format code with fenced code blocks and name the language.",
    "Act as an expert software developer. Always use best practices when coding. Respect and use existing conventions, libraries, etc that are already present in the code base.\nTake requests for changes to the supplied code. If the request is ambiguous, ask questions.\n\nOnce you understand the request you MUST:\n1. Decide if you need to propose *SEARCH/REPLACE* edits to any files that haven't been added to the chat.\n2. Think step-by-step and explain the needed changes in a few short sentences.\n3. Describe each change with a *SEARCH/REPLACE block*.",
]


def sys_prompt_for(api):
    return {
        "anthropic_messages": SYS_PROMPTS[0], "bedrock_converse": SYS_PROMPTS[0],
        "openai_responses": SYS_PROMPTS[1], "gemini_generate": SYS_PROMPTS[2],
        "dashscope_generation": SYS_PROMPTS[2], "openai_chat": SYS_PROMPTS[3],
        "ollama_chat": SYS_PROMPTS[5],
    }[api]


def new_conv(api, tools=True, system=True):
    c = Conv(api)
    if system:
        c.system.append(sys_prompt_for(api))
    c.tools = list(TOOL_SETS[api]) if tools else []
    return c


def task_prompt():
    lang = pick(LANGS)
    return pick([
        f"The {pick(NOUNS)} tests are failing after my last change to the {pick(NOUNS)} module. Can you find out why and fix it?",
        f"Please refactor {ident()}() so it no longer loads every {pick(NOUNS)} into memory.",
        f"Add a --{pick(NOUNS)}-limit flag to the CLI and plumb it through to the {pick(NOUNS)} {pick(['worker', 'handler', 'pipeline'])}.",
        f"Why does the {pick(NOUNS)} endpoint return 500 when the {pick(NOUNS)} list is empty?",
        f"Write unit tests for the {pick(NOUNS)} {pick(NOUNS)} code in {lang}.",
        f"Can you review this diff and tell me if the {pick(NOUNS)} handling is correct?",
        f"Rename `{pick(NOUNS)}_id` to `{pick(NOUNS)}_key` across the codebase and update the migration.",
    ])


def grow(conv, target, cwd="/workspace/app"):
    """Adds ordinary coding-session turns (no facts) until the conversation is
    about `target` characters of text."""
    if not any(t["role"] == "user" for t in conv.turns):
        conv.user(task_prompt())
    guard = 0
    while conv.size() < target and guard < 400:
        guard += 1
        r = rng.random()
        lang, src = code()
        if r < 0.35:
            path = f"{cwd}/src/{pick(NOUNS)}_{pick(NOUNS)}.{EXT[lang]}"
            conv.call(path, "\n".join(f"{i + 1:>6}\t{l}" for i, l in enumerate(src.splitlines())),
                      text=f"Let me read {path.rsplit('/', 1)[1]}.", tool="read")
        elif r < 0.55:
            mod = pick(NOUNS)
            conv.call(f"python -m pytest tests/test_{mod}.py -q", pytest_output(mod))
        elif r < 0.65:
            conv.call(f"git diff src/", git_diff(lang, src))
        elif r < 0.72:
            conv.call(f"grep -rn \"{pick(VERBS)}_{pick(NOUNS)}\" src/ | head -20",
                      "\n".join(f"src/{pick(NOUNS)}.{EXT[lang]}:{rng.randint(1, 400)}:    {ident()}({pick(NOUNS)})"
                                for _ in range(rng.randint(3, 12))))
        elif r < 0.8:
            conv.call(f"tail -n 40 logs/{pick(NOUNS)}.log", log_lines(rng.randint(10, 40)))
        elif r < 0.9:
            conv.assistant(prose(rng.randint(3, 8)) + f"\n\n```{lang}\n{src}\n```")
            conv.user(pick(["Looks good, continue.", "ok", "Can you also handle the empty case?",
                            "Please keep the public API unchanged.", "Go ahead.",
                            "What about the " + pick(NOUNS) + " path?"]))
        else:
            conv.user(prose(rng.randint(1, 3)))
    return conv


def size_target():
    r = rng.random()
    if r < 0.15:
        return rng.randint(600, 1500)
    if r < 0.75:
        return rng.randint(1500, 8000)
    return rng.randint(8000, 18000)


def finish(conv, final_user=None):
    """Ends the conversation on a user turn (or a tool result), as requests do."""
    if conv.turns and conv.turns[-1]["role"] == "assistant":
        conv.user(final_user or pick(["Thanks. Now run the tests again.", "Continue.",
                                      "Please summarise what you changed."]))
    return conv


# Fact-carrying texts --------------------------------------------------------

def env_block(style, cwd, date, host=True, kernel=KREL, user_home=HOME, os_name=None):
    if style == "claude":
        return (f"Here is useful information about the environment you are running in:\n<env>\n"
                f"Working directory: {cwd}\nIs directory a git repo: Yes\nPlatform: linux\n"
                f"OS Version: Linux {kernel}\nToday's date: {date}\n</env>\n"
                f"You are powered by the model named Sonnet 4. The exact model ID is claude-sonnet-4-20250514.")
    if style == "cline":
        return (f"====\n\nSYSTEM INFORMATION\n\nOperating System: {os_name or 'Linux ' + kernel}\n"
                f"Default Shell: /bin/bash\nHome Directory: {user_home}\nCurrent Working Directory: {cwd}\n\n====")
    if style == "codex":
        return (f"<environment_context>\n  <cwd>{cwd}</cwd>\n  <approval_policy>on-request</approval_policy>\n"
                f"  <sandbox_mode>workspace-write</sandbox_mode>\n  <network_access>restricted</network_access>\n"
                f"  <shell>bash</shell>\n</environment_context>")
    if style == "gemini":
        return (f"This is the Gemini CLI. We are setting up the context for our chat.\n  Today's date is {date}.\n"
                f"  My operating system is: linux\n  I'm currently working in the directory: {cwd}\n"
                f"  Showing up to 200 items (files + folders).\n\n{cwd}/\n├───.gitignore\n├───package.json\n"
                f"├───README.md\n├───src/\n└───tests/")
    if style == "aider":
        return (f"- Platform: {os_name or 'Linux-' + kernel + '-x86_64-with-glibc2.36'}\n- Shell: SHELL=/bin/bash\n"
                f"- Language: English\n- Current date: {date}\n- The user is operating inside a git repository")
    raise ValueError(style)


UNAME_A = f"Linux {HOSTNAME} {KREL} {KVER} {ARCH} GNU/Linux"
ENV_PROXY = (f"https_proxy={PROXY}\nHTTPS_PROXY={PROXY}\nhttp_proxy={PROXY}\n"
             f"no_proxy=localhost,127.0.0.1,{NO_PROXY}\nNO_PROXY=localhost,127.0.0.1,{NO_PROXY}")
OS_RELEASE = (f'PRETTY_NAME="{OSREL}"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION="12 (bookworm)"\n'
              'VERSION_CODENAME=bookworm\nID=debian\nHOME_URL="https://www.debian.org/"\n'
              'SUPPORT_URL="https://www.debian.org/support"\nBUG_REPORT_URL="https://bugs.debian.org/"')
IP_ADDR = ("1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000\n"
           "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n    inet 127.0.0.1/8 scope host lo\n"
           "       valid_lft forever preferred_lft forever\n"
           "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP group default qlen 1000\n"
           f"    link/ether {MAC} brd ff:ff:ff:ff:ff:ff\n    altname enp0s3\n"
           f"    inet {IP}/24 brd 10.20.30.255 scope global dynamic noprefixroute eth0\n"
           "       valid_lft 85382sec preferred_lft 85382sec\n"
           "    inet6 fe80::5054:ff:fe12:3456/64 scope link noprefixroute\n       valid_lft forever preferred_lft forever")
TIMEDATECTL = (f"               Local time: Fri 2025-03-14 10:22:31 CET\n"
               f"           Universal time: Fri 2025-03-14 09:22:31 UTC\n"
               f"                 RTC time: Fri 2025-03-14 09:22:31\n"
               f"                Time zone: {TZ} (CET, +0100)\n"
               f"System clock synchronized: yes\n              NTP service: active\n          RTC in local TZ: no")


def other_uname():
    return pick([
        f"Linux {pick(OTHER_HOSTS)} 5.15.0-105-generic #115-Ubuntu SMP Mon Apr 15 09:52:04 UTC 2024 aarch64 aarch64 aarch64 GNU/Linux",
        f"Darwin {pick(['carols-mbp', 'daves-air', 'studio'])}.local 24.3.0 Darwin Kernel Version 24.3.0: Thu Jan  2 20:24:16 PST 2025; root:xnu-11215.81.4~3/RELEASE_ARM64_T6000 arm64",
    ])


# ---------------------------------------------------------------------------
# Case assembly and checking.
# ---------------------------------------------------------------------------

CASES = []
COUNTERS = collections.Counter()
SCANNER = None


def case_id(api, slug):
    key = (API_SHORT[api], slug)
    COUNTERS[key] += 1
    return f"{API_SHORT[api]}-{slug}-{COUNTERS[key]:03d}"


def add(api, conv, slug, alert, note, kinds=(), encodings=(), primary=None, body_override=None):
    """Renders, scans and labels a case. `kinds`/`encodings` are what the case
    was built to contain; the reference matcher must find them (it may find
    more, e.g. the user name inside a home directory, and the label lists all)."""
    headers, body = render(conv)
    if body_override is not None:
        body = body_override(body)
    provider, authority, path = APIS[api]
    case = {"id": case_id(api, slug), "api": api, "provider": provider, "authority": authority,
            "path": path, "headers": headers, "body": body}
    hits, loose = SCANNER.scan(case)
    found = collections.OrderedDict()
    for kind, value, strong, enc, p in hits:
        found.setdefault(kind, {"strong": strong, "enc": set(), "paths": []})
        found[kind]["enc"].add(enc)
        found[kind]["strong"] = found[kind]["strong"] or strong
        if p not in found[kind]["paths"]:
            found[kind]["paths"].append(p)
    strong_found = [k for k, v in found.items() if v["strong"]]
    weak_found = [k for k, v in found.items() if not v["strong"]]
    computed = bool(strong_found) or len(weak_found) >= 3
    problems = []
    if computed != alert:
        problems.append(f"alert {alert} but matcher says {computed} (strong {strong_found}, weak {weak_found})")
    if not strong_found and len(weak_found) == 2:
        problems.append(f"exactly two weak kinds {weak_found}: ambiguous")
    for k in kinds:
        if k not in found:
            problems.append(f"declared kind {k} not found")
    all_enc = set().union(*(v["enc"] for v in found.values())) if found else set()
    for e in encodings:
        if e not in all_enc:
            problems.append(f"declared encoding {e} not found (found {sorted(all_enc)})")
    if not alert:
        strong_loose = sorted(k for k, s in loose if s)
        weak_loose = sorted({k for k, s in loose if not s})
        if strong_loose:
            problems.append(f"negative contains strong fact substrings {strong_loose}")
        if len(weak_loose) > 1:
            problems.append(f"negative contains several weak kinds {weak_loose}")
    if problems:
        raise SystemExit(f"{case['id']}: " + "; ".join(problems))
    if alert:
        order = list(kinds) + [k for k in found if k not in kinds]
        lk = [k for k in order if k in found]
        lenc = sorted(set().union(*(found[k]["enc"] for k in lk)))
        prim = primary or (list(kinds)[0] if kinds else lk[0])
        where = found[prim]["paths"][0]
    else:
        lk, lenc, where = [], [], None
    case["label"] = {"alert": alert, "kinds": lk, "encodings": lenc, "where": where,
                     "present": {k: sorted(v["enc"]) for k, v in found.items()}}
    case["note"] = note
    CASES.append(case)
    return case


def fresh(api, tools=True, system=True, cwd="/workspace/app"):
    c = new_conv(api, tools, system)
    c.cwd = cwd
    return c


def placed_user_or_tool(conv, text, command):
    """Puts `text` into a tool result of `command`."""
    conv.call(command, text)


# --- encodings --------------------------------------------------------------

def b64_aligned(head, fact, tail, align):
    """base64 of head+fact+tail with the fact at byte offset ≡ align (mod 3);
    pads `head` with spaces at its end as needed."""
    pad = (align - len(head.encode())) % 3
    text = head + " " * pad + fact + tail
    off = text.encode().index(fact.encode())
    assert off % 3 == align, (off, align)
    return base64.b64encode(text.encode()).decode(), text


def url_enc(s, plus=False):
    return urllib.parse.quote_plus(s, safe="") if plus else urllib.parse.quote(s, safe="")


def json_slash(s):
    return s.replace("/", "\\/")


# ---------------------------------------------------------------------------
# Positive scenarios.
# ---------------------------------------------------------------------------

ENV_STYLE = {"anthropic_messages": "claude", "bedrock_converse": "claude", "openai_chat": "cline",
             "openai_responses": "codex", "gemini_generate": "gemini", "dashscope_generation": "gemini",
             "ollama_chat": "aider"}


def put_env(conv, api, text):
    """Places an environment section where the client of that style does:
    Codex and Gemini CLI in the first user turn, the others in the system prompt."""
    if ENV_STYLE[api] in ("codex", "gemini"):
        conv.turns.insert(0, {"role": "user", "text": text})
        if ENV_STYLE[api] == "gemini":
            conv.turns.insert(1, {"role": "assistant", "text": "Got it. Thanks for the context!", "calls": []})
    else:
        conv.system.append(text)


def pos_env(api, variant):
    cwd = pick([f"{HOME}/project", f"{HOME}/src/{pick(NOUNS)}-service", f"{HOME}/work/{pick(NOUNS)}"])
    c = fresh(api, cwd=cwd)
    style = ENV_STYLE[api]
    date = pick(DATES)
    if variant == 0:
        text = env_block(style, cwd, date)
        kinds = ["home"] + (["kernel_release"] if style in ("claude", "cline", "aider") else [])
        note = f"{style}-style environment section: working directory under the user's home" + \
               (", kernel release" if "kernel_release" in kinds else "")
    else:
        # Second variant: the section also names the host and the time zone.
        text = env_block(style, cwd, date) + f"\nHostname: {HOSTNAME}\nTimezone: {TZ}"
        kinds = ["home", "hostname", "timezone"]
        note = f"{style}-style environment section extended with host name and time zone"
    put_env(c, api, text)
    c.user(task_prompt())
    grow(c, size_target(), cwd)
    finish(c)
    add(api, c, "env", True, note, kinds, ["raw"])


def device_meta(api, device_id):
    acct, sess = ruuid(), ruuid()
    if api == "anthropic_messages":
        return {"user_id": json.dumps({"device_id": device_id, "account_uuid": acct, "session_id": sess})}
    if api == "openai_chat":
        return {"metadata": {"client": "ide-plugin", "device_id": device_id, "session": sess}, "user": acct}
    if api == "openai_responses":
        return {"metadata": {"device_id": device_id}, "prompt_cache_key": sess}
    if api == "bedrock_converse":
        return {"requestMetadata": {"device_id": device_id, "session_id": sess}}
    return None  # Gemini API, DashScope, Ollama: no metadata member


def pos_metadata(api, hashed=False):
    c = fresh(api)
    device = hashlib.sha256(MID.encode()).hexdigest() if hashed else MID
    meta = device_meta(api, device)
    where_note = ""
    if meta is None:
        # Gemini API, DashScope and Ollama have no metadata member: clients send ids as headers.
        c.headers["x-client-device-id"] = device
        where_note = " (as an x-client-device-id header: this API has no metadata member)"
    else:
        c.meta.update(meta)
    kinds, encs = ["machine_id"], ["raw"]
    if hashed:
        cwd = f"{HOME}/project"
        put_env(c, api, env_block(ENV_STYLE[api], cwd, pick(DATES)))
        c.user(task_prompt())
        kinds = ["kernel_release"] if ENV_STYLE[api] == "aider" else ["home"]
        note = ("device id = sha256(machine-id) in metadata (not the raw value: no machine_id label)"
                f"{where_note}; the environment section still carries the {kinds[0].replace('_', ' ')}")
        grow(c, size_target(), cwd)
    else:
        note = f"device id = raw /etc/machine-id value in request metadata{where_note}"
        grow(c, size_target())
    finish(c)
    add(api, c, "meta-hashed" if hashed else "meta-device", True, note, kinds, encs)


TOOL_SCENARIOS = [
    ("uname", "uname -a", UNAME_A, ["hostname", "kernel_release", "kernel_version", "arch"]),
    ("proxyenv", "env | grep -i proxy", ENV_PROXY, ["proxy", "no_proxy"]),
    ("osrelease", "cat /etc/os-release && uname -r", OS_RELEASE + "\n" + KREL, ["os_release", "kernel_release"]),
    ("hostname", "hostname -f", FQDN, ["fqdn", "hostname"]),
    ("ipaddr", "ip addr", IP_ADDR, ["mac", "ip"]),
    ("timedatectl", "timedatectl", TIMEDATECTL, ["timezone", "utc_offset"]),
    ("machineid", "cat /etc/machine-id /proc/sys/kernel/random/boot_id", MID + "\n" + BOOT, ["machine_id", "boot_id"]),
    ("whoami", "whoami && echo $HOME", USER + "\n" + HOME, ["user", "home"]),
    ("dmi", "sudo cat /sys/class/dmi/id/product_uuid /sys/class/dmi/id/product_serial", DMI_UUID + "\n" + DMI_SERIAL, ["dmi_uuid", "dmi_serial"]),
    ("lscpu", "lscpu | head -20 && locale", None, ["cpu_model", "arch", "locale"]),
]


def lscpu_locale():
    return (f"Architecture:             {ARCH}\n  CPU op-mode(s):         32-bit, 64-bit\n  Address sizes:          46 bits physical, 48 bits virtual\n"
            f"  Byte Order:             Little Endian\nCPU(s):                   8\n  On-line CPU(s) list:    0-7\n"
            f"Vendor ID:                GenuineIntel\n  Model name:             {CPU}\n    CPU family:           6\n"
            f"    Model:                85\n    Thread(s) per core:   1\n"
            f"LANG={LOCALE}\nLANGUAGE=\nLC_CTYPE=\"{LOCALE}\"\nLC_NUMERIC=\"{LOCALE}\"\nLC_TIME=\"{LOCALE}\"\nLC_ALL=")


def pos_tool(api, scen):
    slug, cmd, out, kinds = scen
    if out is None:
        out = lscpu_locale()
    c = fresh(api)
    c.user(task_prompt())
    grow(c, size_target() // 2)
    if api == "gemini_generate":
        out = f"Command: {cmd}\nDirectory: (root)\nStdout: {out}\nStderr: (empty)\nError: (none)\nExit Code: 0\nSignal: (none)\nBackground PIDs: (none)\nProcess Group PGID: {rng.randint(2000, 90000)}"
    c.call(cmd, out, text=pick(["Let me check the environment first.", f"I'll run `{cmd}` to see how this machine is set up.",
                                "Let me gather some system information before debugging."]))
    if rng.random() < 0.5:
        grow(c, c.size() + rng.randint(500, 4000))
    finish(c)
    alert = True
    add(api, c, f"tool-{slug}", alert, f"tool result of `{cmd}` sent back to the model", kinds, ["raw"])


def pos_header(api, variant):
    c = fresh(api)
    grow(c, size_target())
    finish(c)
    if variant == 0:
        c.headers["x-timezone"] = TZ
        kinds, note = ["timezone"], "x-timezone request header carrying the IANA zone"
        where = "timezone"
    else:
        if api == "bedrock_converse":
            c.headers["user-agent"] = f"aws-sdk-js/3.840.0 ua/2.1 os/linux#{KREL} lang/js md/nodejs#20.11.1 api/bedrock-runtime#3.840.0 m/E,b"
            kinds, note = ["kernel_release"], "AWS SDK user-agent with os/linux#<kernel release>"
        elif api == "dashscope_generation":
            c.headers["user-agent"] = f"dashscope/1.20.14; python/3.11.9; platform/Linux-{KREL}-{ARCH}-with-glibc2.36; processor/"
            kinds, note = ["kernel_release", "arch"], "DashScope SDK user-agent with Python platform.platform() (kernel release, arch)"
        elif api == "ollama_chat":
            c.headers["user-agent"] = f"ollama-python/0.4.7 ({ARCH} linux) Python/3.11.2"
            c.headers["x-client-host"] = HOSTNAME
            kinds, note = ["hostname", "arch"], "ollama-python user-agent (arch) plus a custom x-client-host header"
        elif api == "gemini_generate":
            c.headers["user-agent"] = f"GeminiCLI/0.1.18 (linux; x64) host/{HOSTNAME}"
            kinds, note = ["hostname"], "client user-agent carrying the host name"
        else:
            c.headers["user-agent"] = f"my-agent/2.3.1 (Linux-{KREL}-{ARCH}-with-glibc2.36) python-httpx/0.27.0"
            kinds, note = ["kernel_release", "arch"], "user-agent with Python platform string (kernel release, arch)"
        where = kinds[0]
    add(api, c, "header", True, note, kinds, ["raw"], primary=where)


CASE_FOLD = [
    ("hostname", "COMPUTERNAME=BUILD-HOST-7", ["hostname"], "set | findstr /i name", "host name in upper case"),
    ("user", "USERNAME=ALICE\nUSERDOMAIN=CORP", ["user"], "set | findstr USER", "user name in upper case"),
    ("fqdn", "Build-Host-7.EU.Corp.Example", ["fqdn"], "hostname --fqdn | sed 's/.*/\\u&/'", "FQDN in mixed case"),
    ("no_proxy", "NO_PROXY=LOCALHOST,127.0.0.1,INTERNAL.CORP.EXAMPLE", ["no_proxy"], "printenv NO_PROXY", "no_proxy domain in upper case"),
    ("dmi_uuid", "UUID\r\n" + DMI_UUID.upper() + "\r\n", ["dmi_uuid"], "wmic csproduct get uuid", "DMI product UUID in upper case (wmic style)"),
    ("machine_id", MID.upper(), ["machine_id"], "cat /etc/machine-id | tr a-f A-F", "machine id in upper case"),
    ("user2", "Author: Alice <dev@example.com>\nDate:   Fri Mar 14 10:22:31 2025 +0000\n\n    Fix flaky test", ["user"], "git log -1", "user name capitalised in a git author line"),
]


def pos_case_folded(api, i):
    slug, text, kinds, cmd, note = CASE_FOLD[i % len(CASE_FOLD)]
    c = fresh(api)
    c.user(task_prompt())
    grow(c, size_target() // 2)
    c.call(cmd, text)
    finish(c)
    add(api, c, f"case-{slug}", True, note, kinds, ["case_folded"])


def pos_json_escaped(api, i):
    c = fresh(api)
    c.user(task_prompt())
    grow(c, size_target() // 2)
    kind = ["home", "timezone", "proxy", "timezone_u", "os_home"][i % 5]
    if kind == "home":
        doc = '{"version":3,"cwd":"' + json_slash(HOME + "/project") + '","recent":["' + json_slash(HOME + "/project/src") + '"]}'
        c.call("php -r 'echo json_encode(getcwd_state());'", doc)
        kinds, note = ["home"], "home directory JSON-escaped (\\/) inside a JSON document in a tool result"
    elif kind == "timezone":
        payload = json.dumps({"event": "session_start", "context": '{"tz":"' + json_slash(TZ) + '","lang":"en"}'})
        c.call("cat ~/.cache/app/last_event.json", payload)
        kinds, note = ["timezone"], "time zone as Europe\\/Berlin inside a stringified JSON document"
    elif kind == "proxy":
        doc = '{"proxies":{"default":{"httpsProxy":"' + json_slash(PROXY) + '"}}}'
        c.call("cat ~/.docker/config.json", doc)
        kinds, note = ["proxy"], "proxy URL JSON-escaped (http:\\/\\/...) inside a JSON config in a tool result"
    elif kind == "timezone_u":
        doc = '{"locale":"en","timeZone":"Europe\\u002FBerlin","hour12":false}'
        c.call("node -e 'console.log(JSON.stringify(Intl.DateTimeFormat().resolvedOptions()))' | iconv", doc)
        kinds, note = ["timezone"], "time zone with the slash escaped as \\u002F inside a JSON string"
    else:
        doc = json.dumps({"kind": "snapshot", "state": '{"paths":{"home":"' + json_slash(HOME) + '","tmp":"\\/tmp"},"os":"linux"}'})
        c.system.append("Client state (JSON): " + doc)
        kinds, note = ["home"], "client state JSON (escaped slashes) embedded in the system prompt"
    finish(c)
    add(api, c, "json-escaped", True, note, kinds, ["json_escaped"])


def pos_url(api, i):
    c = fresh(api)
    c.user(task_prompt())
    grow(c, size_target() // 2)
    which = ["proxy", "timezone", "home", "kernel_version", "mac"][i % 5]
    if which == "proxy":
        line = f"GET /api/v1/config?client=cli&proxy={url_enc(PROXY)}&retry=3 HTTP/1.1"
        c.call("grep 'GET /api/v1/config' access.log | tail -1", line)
        kinds = ["proxy"]
    elif which == "timezone":
        q = f"https://calendar.example.com/embed?src=team%40example.com&ctz={url_enc(TZ)}&mode=WEEK"
        c.user(f"The embedded calendar shows the wrong week. This is the URL the app generates for me: {q}")
        kinds = ["timezone"]
    elif which == "home":
        u = f"vscode://file{url_enc(HOME + '/project/src/main.py')}:42"
        c.system.append(f"Active editor link: {u}")
        kinds = ["home"]
    elif which == "kernel_version":
        form = f"os=linux&kver={url_enc(KVER, plus=True)}&arch=amd64"
        c.call("cat /var/lib/agent/last_report.form", form)
        kinds = ["kernel_version"]
    else:
        q = f"mac={url_enc(MAC)}&fw=1.4.2"
        c.call("curl -s 'http://127.0.0.1:8080/debug/lastquery'", q)
        kinds = ["mac"]
    finish(c)
    add(api, c, "url-encoded", True, f"{which} URL-encoded", kinds, ["url_encoded"])


B64_FACTS = [
    ("hostname", "host: ", HOSTNAME, "\nuptime: 12 days\n"),
    ("proxy", "export HTTPS_PROXY=", PROXY, "\nexport PIP_INDEX_URL=https://pypi.org/simple\n"),
    ("home", '{"workspace":"', HOME + "/project", '","mode":"agent"}'),
    ("machine_id", "device=", MID, ";build=2025.3.1"),
    ("timezone", "TZ=", TZ, "\nLC_TIME=C\n"),
    ("ip", "listen_addr=", IP, ":8443\nworkers=4\n"),
    ("mac", "iface eth0 hwaddr ", MAC, " mtu 1500\n"),
    ("dmi_serial", "Serial Number: ", DMI_SERIAL, "\nSKU Number: Not Specified\n"),
    ("fqdn", "Host ", FQDN, "\n  IdentityFile ~/.ssh/id_ed25519\n"),
    ("boot_id", '{"boot":"', BOOT, '","n":7}'),
    ("user", "login ", USER, " password placeholder\n"),
    ("no_proxy", "NO_PROXY=", NO_PROXY, "\n"),
    ("kernel_release", "Linux version ", KREL, " (gcc-12 12.2.0)\n"),
    ("dmi_uuid", "system-uuid: ", DMI_UUID, "\n"),
]


def pos_base64(api, i, align):
    kind, head, fact, tail = B64_FACTS[(i * 3 + align) % len(B64_FACTS)]
    pre = pick(["# generated by agent\n", "", "v=2\n", "---\n"])
    enc, plain = b64_aligned(pre + head, fact, tail, align)
    c = fresh(api)
    c.user(task_prompt())
    grow(c, size_target() // 2)
    place = (i + align) % 4
    if place == 0:
        c.call("kubectl get secret app-env -o jsonpath='{.data.env}'", enc)
        where = "a tool result"
    elif place == 1:
        c.system.append("Client context (base64): " + enc)
        where = "the system prompt"
    elif place == 2:
        c.headers["x-client-context"] = enc
        where = "an x-client-context header"
    else:
        c.user(f"Our CI prints this blob on failure, can you tell me what it is?\n\n{enc}")
        where = "a user message"
    finish(c)
    add(api, c, "base64", True, f"{kind} inside base64 text at byte offset ≡ {align} (mod 3), in {where}",
        [kind], ["base64"])


HEX_FACTS = [("hostname", HOSTNAME), ("ip", IP), ("fqdn", FQDN), ("user", USER), ("timezone", TZ),
             ("proxy", PROXY), ("dmi_serial", DMI_SERIAL), ("no_proxy", NO_PROXY), ("home", HOME)]


def pos_hex(api, i, upper):
    kind, fact = HEX_FACTS[(i * 2 + upper) % len(HEX_FACTS)]
    c = fresh(api)
    c.user(task_prompt())
    grow(c, size_target() // 2)
    if upper:
        text = ("{" + f'"k":"{kind}","v":"{fact}","t":{rng.randint(10**9, 2 * 10**9)}' + "}").encode().hex().upper()
        if api in ("anthropic_messages", "dashscope_generation", "ollama_chat"):
            c.headers["x-client-data"] = text
            where = "x-client-data header"
        else:
            c.system.append(f"telemetry-blob: {text}")
            where = "system prompt"
    else:
        text = fact.encode().hex()
        c.call(f"printf %s \"${{{kind.upper()}}}\" | xxd -p", text)
        where = "a tool result (xxd -p)"
    finish(c)
    add(api, c, "hex-upper" if upper else "hex", True, f"{kind} hex-encoded ({'upper' if upper else 'lower'} case) in {where}",
        [kind], ["hex"])


def pos_utc_offset(api, i, strong):
    sp = OFFSET_SPELLINGS[(i * 2 + strong) % len(OFFSET_SPELLINGS)]
    c = fresh(api)
    if strong:
        c.user(task_prompt())
        grow(c, size_target() // 2)
        ts = "2025-03-14 10:22:31"
        lines = [f"{ts} {sp} {HOSTNAME} systemd[1]: Started {pick(NOUNS)}.service - {pick(NOUNS).capitalize()} worker.",
                 f"{ts} {sp} {HOSTNAME} app[{rng.randint(1000, 9999)}]: listening on :8080"]
        c.call("journalctl -u app --no-pager | tail -2", "\n".join(lines))
        kinds, note = ["utc_offset", "hostname"], f"journal lines with offset spelled {sp!r} and the host name"
    else:
        text = (f"Environment:\n- OS: {OSREL} on {ARCH}\n- Locale: {LOCALE}\n- Local time zone offset: {sp}\n")
        c.system.append(text)
        grow(c, size_target())
        kinds, note = ["utc_offset", "os_release", "arch", "locale"], f"weak facts only, offset spelled {sp!r}: four weak kinds together"
    finish(c)
    add(api, c, "utc-offset", True, note, kinds, ["utc_offset"])


def pos_combo(api, i):
    c = fresh(api)
    c.user(task_prompt())
    grow(c, size_target() // 2)
    if i == 0:
        doc = json.dumps({"host": HOSTNAME, "ip": IP, "mac": MAC, "tz": TZ, "user": USER,
                          "kernel": KREL}, indent=2)
        c.call("cat ~/.config/agent/host.json", doc)
        kinds, encs, note = ["hostname", "ip", "mac", "timezone", "user", "kernel_release"], ["raw"], "host inventory JSON in a tool result: six kinds raw"
    else:
        b64, _ = b64_aligned("hostname=", HOSTNAME, "\n", 0)
        c.headers["x-timezone"] = TZ
        c.system.append(f"Session fingerprint: {b64}\nNetwork: proxy={url_enc(PROXY)}")
        kinds, encs, note = ["hostname", "proxy", "timezone"], ["base64", "url_encoded", "raw"], "host name base64, proxy URL-encoded, time zone header"
    finish(c)
    add(api, c, "combo", True, note, kinds, encs)


def pos_weak_combo(api):
    c = fresh(api)
    c.system.append(f"System details for reproducible answers:\nArchitecture: {ARCH}\nDistribution: {OSREL}\n"
                    f"Locale: {LOCALE}\nCPU: {CPU}")
    grow(c, size_target())
    finish(c)
    add(api, c, "weak-combo", True, "only weak facts, but four kinds together (arch, os_release, locale, cpu_model)",
        ["arch", "os_release", "locale", "cpu_model"], ["raw"])


def pos_long(api):
    """A long history (~100 KB) with one fact buried in an early tool result."""
    c = fresh(api)
    c.user(task_prompt())
    grow(c, 3000)
    c.call("hostname", HOSTNAME)
    grow(c, rng.randint(90000, 110000))
    finish(c)
    add(api, c, "long-hostname", True, "~100 KB history; host name in an early `hostname` tool result", ["hostname"], ["raw"])


# ---------------------------------------------------------------------------
# Negative scenarios (alert false).
# ---------------------------------------------------------------------------

def chat(api, user_text, answer=None, system=True, tools=False, more=0):
    c = fresh(api, tools=tools, system=system)
    if not system:
        c.system = []
    else:
        c.system = [SYS_PROMPTS[4]]
    c.user(user_text)
    if answer:
        c.assistant(answer)
        c.user(pick(["Thanks! One more question: " + prose(1), "Can you show a full example?",
                     "And how would I test that?", "Great, that works."]))
    if more:
        grow(c, more)
    finish(c)
    return c


def neg_tz(api):
    src, dst = pick([("Europe/London", "America/New_York"), ("Asia/Tokyo", "America/Los_Angeles"),
                     ("Australia/Sydney", "Europe/Madrid"), ("America/Chicago", "Asia/Kolkata")])
    q = pick([f"Convert 3pm {src} to {dst} on March 30. Is there a DST change that day?",
              f"In Python, how do I convert a naive datetime in {src} to {dst} with zoneinfo?"])
    a = (f"Use `zoneinfo`:\n\n```python\nfrom datetime import datetime\nfrom zoneinfo import ZoneInfo\n\n"
         f"t = datetime(2025, 3, 30, 15, 0, tzinfo=ZoneInfo(\"{src}\"))\nprint(t.astimezone(ZoneInfo(\"{dst}\")))\n```\n\n"
         "Always store timestamps in UTC and convert at the edges; the tz database handles the daylight-saving transitions.")
    add(api, chat(api, q, a, more=rng.choice([0, 0, 3000])), "benign-timezone", False,
        "conversation about converting between other time zones")


def neg_arch(api):
    q = pick(["Should I build my Docker images for aarch64 or amd64? We deploy to Graviton and develop on M-series Macs.",
              "What's the difference between arm64 and aarch64 in Go's GOARCH and in Debian package names?"])
    a = ("Build multi-platform images with `docker buildx build --platform linux/amd64,linux/arm64 .`. "
         "Graviton instances run arm64; Apple silicon also runs arm64 natively, so a single manifest list covers both. "
         "In Go, GOARCH=arm64; Debian calls the same architecture arm64, while the kernel reports aarch64.")
    add(api, chat(api, q, a), "benign-arch", False, "architecture question without the host's arch value")


def neg_proxy(api):
    host = pick(["proxy.example.org", "gateway.example.net", "edge.example.com"])
    q = f"How do I configure an nginx reverse proxy at {host} that forwards /api to a backend on port 9000?"
    a = (f"```nginx\nserver {{\n    listen 443 ssl;\n    server_name {host};\n\n    location /api/ {{\n"
         "        proxy_pass http://127.0.0.1:9000/;\n        proxy_set_header Host $host;\n"
         "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }\n}\n```\n\n"
         "Reload with `nginx -s reload` after `nginx -t` passes.")
    add(api, chat(api, q, a), "benign-proxy", False, "reverse-proxy configuration question with another host name")


def neg_proxy_env(api):
    q = ("Our docs say to set HTTPS_PROXY before running the installer. What's the difference between "
         "HTTPS_PROXY and https_proxy, and does curl honour NO_PROXY with leading dots?")
    a = ("Most tools check both spellings; curl prefers the lower-case `https_proxy` form. Example:\n\n"
         "```sh\nexport https_proxy=http://proxy.example.net:8080\nexport no_proxy=localhost,.svc.cluster.local\n```\n\n"
         "curl matches `no_proxy` entries as domain suffixes, with or without the leading dot.")
    add(api, chat(api, q, a), "benign-proxy-env", False, "proxy environment variables explained with example values")


def neg_kernel(api):
    q = pick(["What changed in Linux 6.8? Anything relevant for io_uring users?",
              "Is it worth upgrading from kernel 5.15 to 6.6 LTS for a database server?"])
    a = ("Highlights: the bcachefs fixes, the new `listmount()`/`statmount()` syscalls, and more io_uring "
         "work. For a database, the EEVDF scheduler (6.6) and improved NUMA balancing matter most. "
         "Check the LWN merge-window summaries for the details.")
    add(api, chat(api, q, a), "benign-kernel", False, "general kernel discussion, no host kernel strings")


def neg_other_host(api):
    u, h = pick(OTHER_USERS), pick(OTHER_HOSTS)
    c = fresh(api, cwd=f"/home/{u}/{pick(NOUNS)}")
    cwd = c.cwd
    style = ENV_STYLE[api]
    text = env_block(style, cwd, pick(DATES), kernel="5.15.0-105-generic", user_home=f"/home/{u}",
                     os_name="Linux-5.15.0-105-generic-aarch64-with-glibc2.35" if style == "aider" else None)
    put_env(c, api, text)
    c.user(task_prompt())
    c.call("hostname && whoami", f"{h}\n{u}")
    c.call("cat /etc/machine-id", rhex(32))
    grow(c, size_target(), cwd)
    finish(c)
    add(api, c, "benign-other-host", False,
        f"environment section and tool results of ANOTHER host ({h}, user {u}, other kernel and machine id)")


def neg_uuids(api):
    rows = "\n".join(f"| {ruuid()} | {pick(OTHER_USERS)} | {pick(OTHER_HOSTS)} | {pick(DATES)} |" for _ in range(rng.randint(8, 30)))
    q = f"Here's a sample of our sessions table. Why would the same user appear with several session ids?\n\n| session_id | user | host | date |\n|---|---|---|---|\n{rows}"
    add(api, chat(api, q, prose(4)), "benign-uuids", False, "table of random UUIDs, other users and hosts")


def neg_b64(api):
    blobs = []
    for _ in range(rng.randint(1, 4)):
        raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(24, 600)))
        blobs.append(base64.b64encode(raw).decode())
    cfg = base64.b64encode(f"{pick(NOUNS)}_timeout=30\n{pick(NOUNS)}_retries=5\nlog_level=info\n".encode()).decode()
    c = fresh(api)
    c.user(f"This Kubernetes secret won't mount. What's wrong?\n\n```yaml\napiVersion: v1\nkind: Secret\nmetadata:\n  name: app-secrets\n"
           f"type: Opaque\ndata:\n  settings.ini: {cfg}\n" + "".join(f"  key{i}: {b}\n" for i, b in enumerate(blobs)) + "```")
    grow(c, size_target())
    finish(c)
    add(api, c, "benign-base64", False, "base64 blobs (random bytes and a harmless config) without facts")


def neg_hex(api):
    digests = "\n".join(f"{hashlib.sha256(rtoken(20).encode()).hexdigest()}  dist/{pick(NOUNS)}-{rng.randint(1, 9)}.{rng.randint(0, 20)}.tar.gz" for _ in range(rng.randint(3, 12)))
    c = fresh(api)
    c.user(task_prompt())
    grow(c, size_target() // 2)
    c.call("sha256sum dist/*", digests)
    c.call("git log --oneline -5", "\n".join(f"{rhex(7)} {sentence()[:60]}" for _ in range(5)))
    finish(c)
    add(api, c, "benign-hex", False, "sha256 digests and commit hashes (hex) without facts")


def neg_image(api):
    png = b"\x89PNG\r\n\x1a\n" + bytes(rng.getrandbits(8) for _ in range(rng.randint(2000, 9000)))
    data = base64.b64encode(png).decode()
    c = fresh(api, tools=False)
    q = "What does this chart show? Please summarise the trend."
    if api == "anthropic_messages":
        c.turns.append({"role": "user", "text": q})
        def ov(b):
            b["messages"][0]["content"].insert(0, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}})
            return b
    elif api == "openai_chat":
        c.user(q)
        def ov(b):
            m = [x for x in b["messages"] if x["role"] == "user"][0]
            m["content"] = [{"type": "text", "text": q}, {"type": "image_url", "image_url": {"url": "data:image/png;base64," + data}}]
            return b
    elif api == "openai_responses":
        c.user(q)
        def ov(b):
            b["input"][0]["content"].append({"type": "input_image", "image_url": "data:image/png;base64," + data})
            return b
    elif api == "gemini_generate":
        c.user(q)
        def ov(b):
            b["contents"][0]["parts"].append({"inlineData": {"mimeType": "image/png", "data": data}})
            return b
    elif api == "dashscope_generation":
        c.model = "qwen-vl-max"
        c.user(q)
        def ov(b):
            m = [x for x in b["input"]["messages"] if x["role"] == "user"][0]
            m["content"] = [{"image": "data:image/png;base64," + data}, {"text": q}]
            return b
    elif api == "bedrock_converse":
        c.user(q)
        def ov(b):
            b["messages"][0]["content"].insert(0, {"image": {"format": "png", "source": {"bytes": data}}})
            return b
    else:
        c.user(q)
        def ov(b):
            m = [x for x in b["messages"] if x["role"] == "user"][0]
            m["images"] = [data]
            return b
    add(api, c, "benign-image", False, "image attachment (random PNG-like bytes, base64)", body_override=ov)


def neg_long(api):
    c = fresh(api)
    grow(c, rng.randint(85000, 110000))
    finish(c)
    add(api, c, "benign-long", False, "~100 KB ordinary coding session")


def neg_doc(api):
    doc = "\n\n".join(f"## {pick(NOUNS).capitalize()} {pick(NOUNS)}\n\n{prose(rng.randint(4, 10))}" for _ in range(rng.randint(6, 25)))
    c = chat(api, f"Please proofread this design document and list unclear parts.\n\n# Design: {pick(NOUNS)} {pick(NOUNS)} service\n\n{doc}")
    add(api, c, "benign-document", False, "long design document to proofread")


def neg_session(api):
    c = fresh(api)
    grow(c, size_target())
    finish(c)
    add(api, c, "benign-session", False, "ordinary coding-agent session (tool calls, code, tests)")


NEAR = [
    ("hostname", lambda: f"Linux build-host-8 5.10.0-28-amd64 #1 SMP Debian 5.10.209-2 (2024-01-31) aarch64 GNU/Linux\n", "uname -a",
     "other build host (build-host-8), other kernel"),
    ("hostname17", lambda: "build-host-17\nbuild-host-1\nbuildhost-7\n", "cat inventory/hosts.txt",
     "host names close to the example host's (build-host-17, build-host-1, buildhost-7) but not equal"),
    ("kernel", lambda: "6.1.0-19-amd64\n6.1.0-17-cloud-amd64\n6.1.0-18-arm64\n", "ls /lib/modules",
     "kernel releases one digit or flavour away (6.1.0-19-amd64, 6.1.0-18-arm64)"),
    ("timezone", lambda: "Europe/Brussels\nEurope/Belgrade\nEurope/Bratislava\n", "timedatectl list-timezones | grep '^Europe/B' | head -3",
     "neighbouring time zones, not the host's"),
    ("ip", lambda: "10.20.30.41\n10.20.31.40\n110.20.30.4\n", "dig +short app.internal.example.net",
     "IP addresses near 10.20.30.40 but not equal"),
    ("user", lambda: "drwxr-xr-x 12 alicia staff 4096 Mar 14 10:22 /home/alicia\ndrwxr-xr-x  9 malik  staff 4096 Feb  2 09:01 /home/malik\n",
     "ls -ld /home/*", "user names alicia and malik, not alice"),
    ("mac", lambda: "52:54:00:12:34:57\n52:54:00:ab:cd:ef\n", "cat /sys/class/net/*/address",
     "MAC addresses differing in one octet"),
    ("machine", lambda: "4c4c4544003457108052b4c04f384d33\n4c4c4544004d5a10804bb2c04f4e3332\n", "cat /etc/machine-id",
     "machine ids one hex digit away"),
    ("proxy", lambda: "https_proxy=http://proxy.example.net:3128\nno_proxy=internal.example.org\n", "env | grep -i proxy",
     "another proxy and no_proxy domain"),
    ("serial", lambda: "CZ20240117XL\nCZ20240118XK\n", "sudo cat /sys/class/dmi/id/product_serial",
     "serial numbers one character away"),
]


def neg_near(api, i):
    slug, mk, cmd, note = NEAR[i % len(NEAR)]
    c = fresh(api)
    c.user(task_prompt())
    grow(c, size_target() // 2)
    c.call(cmd, mk())
    finish(c)
    add(api, c, f"nearmiss-{slug}", False, "near-miss: " + note)


def neg_mac_env(api):
    u = pick(OTHER_USERS)
    c = fresh(api, cwd=f"/Users/{u}/code/{pick(NOUNS)}")
    text = env_block(ENV_STYLE[api], c.cwd, pick(DATES), kernel="Darwin 24.3.0", user_home=f"/Users/{u}",
                     os_name="macOS-15.3-arm64-arm-64bit" if ENV_STYLE[api] == "aider" else "macOS 15.3")
    text = text.replace("Platform: linux", "Platform: darwin").replace("Linux Darwin", "Darwin") \
               .replace("operating system is: linux", "operating system is: darwin")
    put_env(c, api, text)
    c.user(task_prompt())
    grow(c, size_target(), c.cwd)
    finish(c)
    add(api, c, "benign-macos-env", False, f"environment section of a macOS machine of user {u}")


def neg_sql(api):
    rows = "\n".join(f"({rng.randint(1, 9999)}, '{pick(NOUNS)}-{rtoken(6)}', {rng.randint(1, 500)}.{rng.randint(0, 99):02d}, "
                     f"'{pick(DATES)} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00+00')," for _ in range(rng.randint(10, 80)))
    q = (f"This query is slow on Postgres 16. Any index suggestions?\n\n```sql\nSELECT {pick(NOUNS)}_id, sum(amount)\n"
         f"FROM {pick(NOUNS)}s WHERE created_at >= now() - interval '30 days'\nGROUP BY 1 ORDER BY 2 DESC LIMIT 50;\n```\n\n"
         f"Sample data:\n```sql\nINSERT INTO {pick(NOUNS)}s VALUES\n{rows}\n```")
    add(api, chat(api, q, prose(5)), "benign-sql", False, "SQL tuning question with sample rows (UTC timestamps)")


def neg_ci(api):
    q = ("Our GitHub Actions matrix takes forever. Can we cache better?\n\n```yaml\nname: ci\non: [push, pull_request]\n"
         "jobs:\n  test:\n    runs-on: ${{ matrix.os }}\n    strategy:\n      matrix:\n        os: [ubuntu-24.04, macos-14, windows-2022]\n"
         "        python: ['3.11', '3.12', '3.13']\n    steps:\n      - uses: actions/checkout@v4\n"
         "      - uses: actions/setup-python@v5\n        with:\n          python-version: ${{ matrix.python }}\n"
         "      - run: pip install -e .[test]\n      - run: pytest -q\n```")
    add(api, chat(api, q, prose(4), more=rng.choice([0, 4000])), "benign-ci", False, "CI configuration question")


def neg_hashed(api):
    c = fresh(api)
    device = hashlib.sha256(MID.encode()).hexdigest()
    meta = device_meta(api, device)
    if meta is None:
        c.headers["x-client-device-id"] = device
    else:
        c.meta.update(meta)
    grow(c, size_target())
    finish(c)
    add(api, c, "benign-hashed-device", False,
        "device id = sha256(machine-id): a persistent identifier but not a fact value; fact rules must not alert")


def weak_single(api, which):
    c = fresh(api)
    if which == "makefile":
        c.user("Why does this Makefile rebuild everything on every run?\n\n```make\nTARGET ?= x86_64-unknown-linux-gnu\n"
               "CFLAGS += -O2 -march=x86-64-v2\nBUILD := target/$(TARGET)/release\n\nall: $(BUILD)/app\n\n"
               "$(BUILD)/app: $(wildcard src/*.rs)\n\tcargo build --release --target $(TARGET)\n\n.PHONY: all\n```")
        note, slug = "x86_64 in a pasted Makefile (single weak fact: arch)", "weak-arch-makefile"
    elif which == "cmake":
        c.user("CMake picks the wrong compiler flags:\n\n```cmake\nif(CMAKE_SYSTEM_PROCESSOR STREQUAL \"x86_64\")\n"
               "  add_compile_options(-mavx2)\nelseif(CMAKE_SYSTEM_PROCESSOR MATCHES \"aarch64|arm64\")\n"
               "  add_compile_options(-mcpu=neoverse-n1)\nendif()\n```\nWhat's wrong?")
        note, slug = "x86_64 in a CMake snippet (single weak fact: arch)", "weak-arch-cmake"
    elif which == "logging":
        c.user("Is this logging config right if I want UTC timestamps everywhere?\n\n```yaml\nversion: 1\nformatters:\n"
               "  utc:\n    format: '%(asctime)s %(levelname)s %(name)s: %(message)s'\n    datefmt: '%Y-%m-%dT%H:%M:%SZ'\n"
               "handlers:\n  console:\n    class: logging.StreamHandler\n    formatter: utc\n```\nTZ=UTC is set in the container.")
        note, slug = "UTC in a logging config (not the host's zone; no fact)", "weak-utc-logging"
    elif which == "docker":
        c.user("Can you harden this Dockerfile?\n\n```dockerfile\nFROM python:3.12-slim\nUSER root\nRUN apt-get update && "
               "apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*\n"
               "COPY . /app\nWORKDIR /app\nRUN pip install -r requirements.txt\nCMD [\"python\", \"-m\", \"app\"]\n```")
        note, slug = "`USER root` in a Dockerfile (single weak fact: user root)", "weak-root-dockerfile"
    elif which == "locale":
        c.user("My Python script prints dates in German on the server. LANG is de_DE.UTF-8 there but en_US.UTF-8 on "
               "my laptop. How do I force English month names regardless of locale?")
        note, slug = "de_DE.UTF-8 in a locale discussion (single weak fact: locale)", "weak-locale"
    elif which == "osrelease":
        c.user(task_prompt())
        grow(c, size_target() // 2)
        c.call("cat /etc/os-release", OS_RELEASE)
        note, slug = "only /etc/os-release in a tool result (single weak fact: os_release)", "weak-osrelease"
    elif which == "gmt":
        sp = pick(["GMT+1", "UTC+1", "+01:00"])
        c.user(f"Draft a short email moving our sync to Thursday 10:00 {sp}; the US team should see their local time too.")
        note, slug = f"meeting time with offset {sp} (single weak fact: utc_offset)", "weak-offset"
    else:
        c.user(f"Benchmark results from our CI runner ({CPU}): the {pick(NOUNS)} parser went from 412 MB/s to 389 MB/s. Noise or regression?")
        note, slug = "a CPU model in a benchmark question (single weak fact: cpu_model)", "weak-cpu"
    if which != "osrelease":
        c.assistant(prose(rng.randint(2, 6)))
        c.user(pick(["Thanks, makes sense.", "Could you show the full corrected file?", "Anything else to watch out for?"]))
        if rng.random() < 0.5:
            grow(c, size_target())
    finish(c)
    add(api, c, slug, False, note)


# ---------------------------------------------------------------------------

def main():
    global SCANNER
    facts = load_host()
    SCANNER = Scanner(facts)
    apis = list(APIS)
    for ai, api in enumerate(apis):
        # positives
        pos_env(api, 0)
        pos_env(api, 1)
        pos_metadata(api)
        pos_metadata(api, hashed=True)
        for s in TOOL_SCENARIOS[:6]:
            pos_tool(api, s)
        pos_tool(api, TOOL_SCENARIOS[6 + ai % 4])
        pos_tool(api, TOOL_SCENARIOS[6 + (ai + 2) % 4])
        pos_header(api, 0)
        pos_header(api, 1)
        pos_case_folded(api, ai * 2)
        pos_case_folded(api, ai * 2 + 1)
        pos_json_escaped(api, ai * 2)
        pos_json_escaped(api, ai * 2 + 1)
        pos_url(api, ai * 2)
        pos_url(api, ai * 2 + 1)
        for align in range(3):
            pos_base64(api, ai, align)
        pos_hex(api, ai, 0)
        pos_hex(api, ai, 1)
        pos_utc_offset(api, ai, 0)
        pos_utc_offset(api, ai, 1)
        pos_combo(api, 0)
        pos_combo(api, 1)
        pos_weak_combo(api)
        if ai % 2 == 0:
            pos_long(api)
        # negatives
        neg_tz(api)
        neg_arch(api)
        neg_proxy(api)
        neg_proxy_env(api)
        neg_kernel(api)
        neg_other_host(api)
        neg_uuids(api)
        neg_b64(api)
        neg_hex(api)
        neg_image(api)
        neg_long(api)
        neg_doc(api)
        for _ in range(3):
            neg_session(api)
        for k in range(4):
            neg_near(api, ai * 4 + k)
        neg_hashed(api)
        neg_mac_env(api)
        neg_sql(api)
        neg_ci(api)
        for w in ["makefile", "cmake", "logging", "docker", "locale", "osrelease", "gmt", "cpu"]:
            weak_single(api, w)

    lines = [json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in CASES]
    data = "\n".join(lines) + "\n"
    if "--check" in sys.argv:
        with open(OUT, encoding="utf-8") as f:
            if f.read() != data:
                sys.exit("cases.jsonl is out of date: run python3 tests/corpus/generate.py")
    else:
        with open(OUT, "w", encoding="utf-8") as f:
            f.write(data)
    report(CASES, len(data.encode()))


def report(cases, total):
    by_api = collections.Counter()
    by_enc = collections.Counter()
    by_kind = collections.Counter()
    sizes = []
    for c in cases:
        by_api[(c["api"], c["label"]["alert"])] += 1
        for e in c["label"]["encodings"]:
            by_enc[e] += 1
        for k in c["label"]["kinds"]:
            by_kind[k] += 1
        sizes.append(len(json.dumps(c["body"])))
    pos = sum(1 for c in cases if c["label"]["alert"])
    weak_neg = sum(1 for c in cases if not c["label"]["alert"] and c["label"]["present"])
    print(f"{len(cases)} cases, {pos} positive, {len(cases) - pos} negative "
          f"({weak_neg} of them with a single weak fact); {total / 1e6:.2f} MB")
    print("\nby api:               positive  negative")
    for api in APIS:
        print(f"  {api:22} {by_api[(api, True)]:5}  {by_api[(api, False)]:8}")
    print("\npositives by encoding (a case may use several):")
    for e in ["raw", "case_folded", "json_escaped", "url_encoded", "base64", "hex", "utc_offset"]:
        print(f"  {e:14} {by_enc[e]:4}")
    print("\npositives by kind:")
    for k, n in sorted(by_kind.items(), key=lambda x: -x[1]):
        print(f"  {k:16} {n:4}")
    sizes.sort()
    print(f"\nbody sizes: min {sizes[0]}, median {sizes[len(sizes) // 2]}, "
          f"p90 {sizes[len(sizes) * 9 // 10]}, max {sizes[-1]} bytes; "
          f"{sum(1 for s in sizes if 1000 <= s <= 20000)} of {len(sizes)} within 1-20 KB")


if __name__ == "__main__":
    main()

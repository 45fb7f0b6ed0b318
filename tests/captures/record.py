#!/usr/bin/env python3
"""Record real TLS plaintext captures of real HTTP clients as decoder fixtures.

What it does, in order:

1. Makes (once) a throwaway virtualenv at ``.tools/capture-venv`` in the
   repository (``.tools`` is git-ignored) and pip-installs ``anthropic``,
   ``openai`` and ``httpx[http2]`` into it.
2. Generates a self-signed certificate for ``localhost`` / ``127.0.0.1`` in a
   temporary directory (``openssl`` CLI).
3. Starts nginx (its own prefix and configuration in that temporary directory,
   ``listen 127.0.0.1:<free port> ssl http2``) as a mock of the Anthropic and
   OpenAI HTTP APIs:

   * ``POST /v1/messages``             Anthropic Messages JSON response
   * ``POST /stream/v1/messages``      Anthropic SSE stream (``text/event-stream``)
   * ``POST /v1/chat/completions``     OpenAI ``chat.completion`` JSON (a tool call)

   Every JSON response is gzip-compressed when the client accepts gzip
   (``gzip on; gzip_types application/json; gzip_min_length 0``); request
   bodies of any encoding (gzip, chunked) are accepted and discarded.
4. Starts the sensor (``telltale run --emit data --status-interval 0``) and waits
   until it logs ``telltale running``.
5. Runs each client scenario (see ``SCENARIOS``), remembering the pid of every
   client process it starts.
6. Waits 1.5 s, stops the sensor with SIGINT (it flushes and exits), stops nginx.
7. Keeps only the ``tls.data`` events of each scenario's client processes (by
   ``process.pid``, or a parent/ancestor pid for children), drops everything
   else (nginx's side, other processes on the host) and writes one fixture
   ``tests/captures/<scenario>.jsonl`` per scenario.

Fixture format (JSON lines):

* line 1, a header: ``{"scenario", "client", "protocol": "h1"|"h2",
  "recorded": "YYYY-MM-DD", "note"}``
* then one line per captured TLS message, in the order the sensor emitted them:
  ``{"conn": 1.., "dir": "write"|"read", "fn": "SSL_write_ex"…, "complete": bool,
  "data_b64": "<base64 of the plaintext>"}``. ``conn`` numbers the distinct TLS
  connections of the scenario in order of first appearance.

No pids, host names, user names or paths end up in a fixture (only the bytes
the clients wrote and read over TLS to 127.0.0.1). API keys are obvious fakes.

Usage (root is needed for the eBPF sensor)::

    sudo python3 tests/captures/record.py [--sensor target/release/telltale]
                                          [--only SCENARIO ...] [--keep-raw FILE]

Re-running it is safe: the venv is reused when its packages import, the
fixtures are overwritten, temporary files are removed, and only the processes
this script started (nginx, the sensor, the clients) are stopped, by pid.
The script itself uses the Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENV = REPO / ".tools" / "capture-venv"
VENV_PY = VENV / "bin" / "python"
PIP_PACKAGES = ["anthropic", "openai", "httpx[http2]"]

ANTHROPIC_KEY = "sk-ant-test-0000"
OPENAI_KEY = "sk-test-0000"
MAX_FIXTURE_BYTES = 64 * 1024

# --------------------------------------------------------------------------
# What an AI coding assistant sends: a system prompt with an environment
# section. Every value here is made up.
# --------------------------------------------------------------------------

SYSTEM_PROMPT = """You are an interactive CLI tool that helps users with software engineering tasks. Use the instructions below and the tools available to you to assist the user.

# Tone and style
Be concise, direct, and to the point. Answer the user's question without preamble.

# Tool usage policy
When doing file search, prefer the Grep and Glob tools. Run independent tool calls in parallel.

Here is useful information about the environment you are running in:
<env>
Working directory: /home/dev/project
Is directory a git repo: Yes
Platform: linux
OS Version: Linux 6.1.0-18-amd64
Today's date: 2025-03-14
</env>
You are powered by the model named Sonnet 4."""

USER_PROMPT = "The unit tests in src/parser.rs fail after my last change. Can you find out why and fix it?"

TOOLS_OPENAI = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file from the working directory.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string", "description": "Path relative to the working directory"}},
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "run_command",
            "description": "Run a shell command and return its output.",
            "parameters": {
                "type": "object",
                "properties": {"command": {"type": "string"}, "timeout_ms": {"type": "integer"}},
                "required": ["command"],
            },
        },
    },
]

ANTHROPIC_REQUEST = {
    "model": "claude-sonnet-4-20250514",
    "max_tokens": 1024,
    "system": SYSTEM_PROMPT,
    "messages": [{"role": "user", "content": USER_PROMPT}],
}

OPENAI_REQUEST = {
    "model": "gpt-4o-2024-08-06",
    "messages": [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": USER_PROMPT},
    ],
    "tools": TOOLS_OPENAI,
}

# --------------------------------------------------------------------------
# Mock responses (served by nginx `return`: no `$` allowed in them).
# --------------------------------------------------------------------------

ANTHROPIC_RESPONSE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-20250514",
    "content": [
        {
            "type": "text",
            "text": "I will start by running the parser tests to see the failure.",
        }
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 412,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 15,
    },
}

OPENAI_RESPONSE = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_12345xyz",
                        "type": "function",
                        "function": {
                            "name": "run_command",
                            "arguments": json.dumps({"command": "cargo test -p parser"}),
                        },
                    }
                ],
                "refusal": None,
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 389, "completion_tokens": 18, "total_tokens": 407},
    "system_fingerprint": "fp_6ec83003ad",
}


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


STREAM_DELTAS = ["I will run", " the parser tests", " first."]
ANTHROPIC_SSE = "".join(
    [
        _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_01Vv1xGYhbR8nG4tqxVfQ2Dk",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-20250514",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 412, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 0, "output_tokens": 1},
                },
            },
        ),
        _sse("content_block_start",
             {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        _sse("ping", {"type": "ping"}),
        *[
            _sse("content_block_delta",
                 {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})
            for t in STREAM_DELTAS
        ],
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _sse("message_delta",
             {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
              "usage": {"output_tokens": 9}}),
        _sse("message_stop", {"type": "message_stop"}),
    ]
)

# --------------------------------------------------------------------------
# Client programs. Python ones run in the venv as `python -c CODE PORT CERT`,
# the node one as `node -e CODE PORT`.
# --------------------------------------------------------------------------

PY_PRELUDE = f"""
import json, ssl, sys
PORT = int(sys.argv[1]); CERT = sys.argv[2]
BASE = "https://127.0.0.1:%d" % PORT
SYSTEM_PROMPT = {SYSTEM_PROMPT!r}
USER_PROMPT = {USER_PROMPT!r}
ANTHROPIC_REQUEST = json.loads({json.dumps(ANTHROPIC_REQUEST)!r})
OPENAI_REQUEST = json.loads({json.dumps(OPENAI_REQUEST)!r})
def ctx():
    return ssl.create_default_context(cafile=CERT)
"""

HTTPX_H2 = PY_PRELUDE + f"""
import httpx
with httpx.Client(http2=True, verify=ctx(), base_url=BASE) as c:
    r1 = c.post("/v1/messages", json=ANTHROPIC_REQUEST,
                headers={{"x-api-key": "{ANTHROPIC_KEY}", "anthropic-version": "2023-06-01"}})
    r2 = c.post("/v1/chat/completions", json=OPENAI_REQUEST,
                headers={{"authorization": "Bearer {OPENAI_KEY}"}})
    for r in (r1, r2):
        assert r.status_code == 200 and r.http_version == "HTTP/2", (r.status_code, r.http_version)
        r.json()
    print("httpx", r1.http_version, r1.headers.get("content-encoding"), r1.json()["type"], r2.json()["object"])
"""

ANTHROPIC_SDK = PY_PRELUDE + f"""
import anthropic
# The SDK's own client class: recent SDKs are built on `httpx2`, not `httpx`.
c = anthropic.Anthropic(api_key="{ANTHROPIC_KEY}", base_url=BASE, max_retries=0,
                        http_client=anthropic.DefaultHttpxClient(verify=ctx()))
m = c.messages.create(model=ANTHROPIC_REQUEST["model"], max_tokens=1024, system=SYSTEM_PROMPT,
                      messages=[{{"role": "user", "content": USER_PROMPT}}])
assert m.type == "message" and m.content[0].type == "text", m
s = anthropic.Anthropic(api_key="{ANTHROPIC_KEY}", base_url=BASE + "/stream", max_retries=0,
                        http_client=anthropic.DefaultHttpxClient(verify=ctx()))
with s.messages.stream(model=ANTHROPIC_REQUEST["model"], max_tokens=1024, system=SYSTEM_PROMPT,
                       messages=[{{"role": "user", "content": USER_PROMPT}}]) as st:
    text = "".join(st.text_stream)
    final = st.get_final_message()
assert text == {"".join(STREAM_DELTAS)!r}, text
assert final.stop_reason == "end_turn", final
print("anthropic", repr(m.content[0].text), "| stream:", repr(text), final.usage.output_tokens)
"""

OPENAI_SDK = PY_PRELUDE + f"""
import openai
c = openai.OpenAI(api_key="{OPENAI_KEY}", base_url=BASE + "/v1", max_retries=0,
                  http_client=openai.DefaultHttpxClient(verify=ctx()))
r = c.chat.completions.create(model=OPENAI_REQUEST["model"], messages=OPENAI_REQUEST["messages"],
                              tools=OPENAI_REQUEST["tools"])
call = r.choices[0].message.tool_calls[0]
assert r.object == "chat.completion" and call.function.name == "run_command", r
print("openai", r.choices[0].finish_reason, call.function.name, call.function.arguments)
"""

NODE_FETCH = f"""
const port = process.argv[1];
const body = {json.dumps(OPENAI_REQUEST)};
(async () => {{
  const r = await fetch(`https://127.0.0.1:${{port}}/v1/chat/completions`, {{
    method: 'POST',
    headers: {{ 'content-type': 'application/json', authorization: 'Bearer {OPENAI_KEY}' }},
    body: JSON.stringify(body),
  }});
  const j = await r.json();
  if (r.status !== 200 || j.object !== 'chat.completion') throw new Error('bad response ' + r.status);
  console.log('node fetch', r.status, r.headers.get('content-encoding'), j.choices[0].finish_reason);
}})().catch((e) => {{ console.error(e); process.exit(1); }});
"""

# --------------------------------------------------------------------------
# Scenarios: name -> (expected protocol, note, list of commands).
# A command is built by a function of the run context, see `commands()`.
# --------------------------------------------------------------------------

SCENARIOS = {
    "curl_h2_gzip_json": (
        "h2",
        "curl --http2: (1) one POST /v1/messages with a gzip-compressed JSON body "
        "(Content-Encoding: gzip); (2) a second curl process POSTing plain JSON to "
        "/v1/messages twice on one connection (two URLs), so the second request's "
        "HPACK header block reuses dynamic-table entries.",
    ),
    "curl_h1_chunked": (
        "h1",
        "curl --http1.1 --compressed: one POST /v1/messages with a chunked request body "
        "(Transfer-Encoding: chunked); the response is gzip-compressed JSON.",
    ),
    "httpx_h2": (
        "h2",
        "python httpx Client(http2=True): POST /v1/messages then POST /v1/chat/completions "
        "on one connection; JSON request bodies, gzip-compressed JSON responses.",
    ),
    "anthropic_sdk": (
        "h1",
        "anthropic Python SDK (its default HTTP client, HTTP/1.1): messages.create with a system prompt "
        "(conn 1, gzip JSON response), then messages.stream on a second client whose "
        "base_url ends in /stream (conn 2, text/event-stream response with message_start, "
        "content_block_start, ping, 3 content_block_delta, content_block_stop, "
        "message_delta, message_stop; served whole with Content-Length by nginx).",
    ),
    "openai_sdk": (
        "h1",
        "openai Python SDK (its default HTTP client, HTTP/1.1): chat.completions.create with system + user "
        "messages and two function tools; gzip-compressed chat.completion response with a "
        "tool call.",
    ),
    "node_fetch": (
        "h1",
        "Node.js global fetch (undici, HTTP/1.1): POST /v1/chat/completions with JSON; "
        "gzip-compressed response.",
    ),
}


def commands(name: str, ctx: dict) -> list[tuple[list[str], dict]]:
    """The commands (argv, extra env) a scenario runs, one process each, in order."""
    port, cert, tmp = ctx["port"], ctx["cert"], ctx["tmp"]
    base = f"https://127.0.0.1:{port}"
    anth_headers = ["-H", f"x-api-key: {ANTHROPIC_KEY}", "-H", "anthropic-version: 2023-06-01",
                    "-H", "Content-Type: application/json"]
    py = str(VENV_PY)
    if name == "curl_h2_gzip_json":
        return [
            (["curl", "--http2", "-sk", "-o", "/dev/null", "-w", "%{http_version} %{http_code}\\n",
              *anth_headers, "-H", "Content-Encoding: gzip",
              "--data-binary", f"@{tmp}/body.json.gz", f"{base}/v1/messages"], {}),
            (["curl", "--http2", "-sk", "-o", "/dev/null", "-w", "%{http_version} %{http_code}\\n",
              "-o", "/dev/null", *anth_headers, "--data-binary", f"@{tmp}/body.json",
              f"{base}/v1/messages", f"{base}/v1/messages"], {}),
        ]
    if name == "curl_h1_chunked":
        return [
            (["curl", "--http1.1", "-sk", "--compressed", "-o", "/dev/null",
              "-w", "%{http_version} %{http_code}\\n", *anth_headers,
              "-H", "Transfer-Encoding: chunked",
              "--data-binary", f"@{tmp}/body.json", f"{base}/v1/messages"], {}),
        ]
    if name == "httpx_h2":
        return [([py, "-c", HTTPX_H2, str(port), cert], {})]
    if name == "anthropic_sdk":
        return [([py, "-c", ANTHROPIC_SDK, str(port), cert], {})]
    if name == "openai_sdk":
        return [([py, "-c", OPENAI_SDK, str(port), cert], {})]
    if name == "node_fetch":
        return [(["node", "-e", NODE_FETCH, str(port)], {"NODE_EXTRA_CA_CERTS": cert})]
    raise KeyError(name)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[record] {msg}", flush=True)


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, **kw)


def ensure_venv(reinstall: bool) -> None:
    check = [str(VENV_PY), "-c", "import anthropic, openai, httpx, h2"]
    if not reinstall and VENV_PY.exists():
        if subprocess.run(check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            log(f"venv ready: {VENV}")
            return
    log(f"creating venv {VENV} and installing {' '.join(PIP_PACKAGES)}")
    VENV.parent.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "venv", "--clear", str(VENV)])
    run([str(VENV_PY), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PIP_PACKAGES])
    run(check)


def client_versions() -> dict[str, str]:
    out = subprocess.run(
        [str(VENV_PY), "-c",
         "import json, ssl, sys, platform, importlib, anthropic, openai, httpx, h2, httpcore\n"
         "def http_lib(sdk):\n"
         "    base = importlib.import_module(sdk + '._base_client')\n"
         "    mod = getattr(base, 'httpx2', None) or getattr(base, 'httpx')\n"
         "    return '%s %s' % (mod.__name__, mod.__version__)\n"
         "print(json.dumps({'anthropic': anthropic.__version__, 'openai': openai.__version__,"
         " 'anthropic_http': http_lib('anthropic'), 'openai_http': http_lib('openai'),"
         " 'httpx': httpx.__version__, 'httpcore': httpcore.__version__, 'h2': h2.__version__,"
         " 'python': platform.python_version(), 'openssl': ssl.OPENSSL_VERSION.split()[1]}))"],
        check=True, capture_output=True, text=True).stdout
    v = json.loads(out)
    node = json.loads(subprocess.run(
        ["node", "-p", "JSON.stringify({node: process.version, undici: process.versions.undici,"
         " openssl: process.versions.openssl})"],
        check=True, capture_output=True, text=True).stdout)
    curl_line = subprocess.run(["curl", "--version"], check=True, capture_output=True,
                               text=True).stdout.splitlines()[0].split()
    libs = {p.split("/")[0]: p.split("/")[1] for p in curl_line if "/" in p}
    py = f"CPython {v['python']}, OpenSSL {v['openssl']}"
    return {
        "curl": f"curl {curl_line[1]} (libcurl OpenSSL/{libs.get('OpenSSL', '?')}, "
                f"nghttp2/{libs.get('nghttp2', '?')})",
        "httpx": f"httpx {v['httpx']} (httpcore {v['httpcore']}, h2 {v['h2']}, {py})",
        "anthropic": f"anthropic-python {v['anthropic']} ({v['anthropic_http']}, {py})",
        "openai": f"openai-python {v['openai']} ({v['openai_http']}, {py})",
        "node": f"node {node['node']} fetch (undici {node['undici']}, OpenSSL {node['openssl']})",
    }


CLIENT_OF = {
    "curl_h2_gzip_json": "curl", "curl_h1_chunked": "curl", "httpx_h2": "httpx",
    "anthropic_sdk": "anthropic", "openai_sdk": "openai", "node_fetch": "node",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cert(d: Path) -> Path:
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-subj", "/CN=localhost", "-days", "2",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return d / "cert.pem"


def nginx_str(s: str) -> str:
    """A single-quoted nginx string whose value is exactly `s` (no variables)."""
    assert "$" not in s, "nginx would expand variables in a return text"
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def nginx_conf(d: Path, port: int) -> str:
    j = lambda o: json.dumps(o, separators=(",", ":"))  # noqa: E731
    return f"""
user root;
worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  server_tokens on;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  client_max_body_size 4m;
  gzip on;
  gzip_types application/json;
  gzip_min_length 0;
  gzip_proxied any;
  gzip_vary on;
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {d}/cert.pem;
    ssl_certificate_key {d}/key.pem;
    location = /v1/messages {{
      default_type application/json;
      add_header request-id req_011CQ3xYz7LmNoPqRsTuVwXy;
      add_header anthropic-organization-id 00000000-0000-0000-0000-000000000000;
      return 200 {nginx_str(j(ANTHROPIC_RESPONSE))};
    }}
    location = /stream/v1/messages {{
      default_type text/event-stream;
      add_header Cache-Control no-cache;
      add_header request-id req_011CQ3xZa8MnOpQrStUvWxYz;
      return 200 {nginx_str(ANTHROPIC_SSE)};
    }}
    location = /v1/chat/completions {{
      default_type application/json;
      add_header x-request-id req_3b6c1e0f2a9d4c8e9f7a6b5c4d3e2f1a;
      add_header openai-processing-ms 312;
      return 200 {nginx_str(j(OPENAI_RESPONSE))};
    }}
    location / {{ return 404; }}
  }}
}}
"""


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on {port}")
            time.sleep(0.05)


def stop(proc: subprocess.Popen | None, sig: int, what: str, timeout: float) -> None:
    """Stops a process this script started, by its pid only."""
    if proc is None or proc.poll() is not None:
        return
    log(f"stopping {what} (pid {proc.pid})")
    try:
        proc.send_signal(sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"{what} did not exit in {timeout}s; killing pid {proc.pid}")
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------
# Splitting the sensor's events into fixtures
# --------------------------------------------------------------------------


def event_pids(ev: dict) -> set[int]:
    p = ev.get("process") or {}
    pids = {p.get("pid")}
    if p.get("ppid") is not None:
        pids.add(p["ppid"])
    pids.update(a.get("pid") for a in p.get("ancestry") or [])
    return {x for x in pids if isinstance(x, int)}


def message_bytes(msg: dict) -> bytes:
    if msg.get("encoding") == "base64":
        return base64.b64decode(msg["data"])
    return msg["data"].encode("utf-8")


def build_fixture(events: list[dict], pids: set[int]) -> list[dict]:
    rows: list[dict] = []
    conns: dict[str, int] = {}
    for ev in events:
        if ev.get("event_type") != "tls.data" or not (event_pids(ev) & pids):
            continue
        tls, msg = ev["tls"], ev["message"]
        # `pid:0xSSL*:generation`: the generation tells apart connections that
        # reuse a freed SSL* address in the same process.
        key = tls["connection"]
        if key not in conns:
            conns[key] = len(conns) + 1
        rows.append({
            "conn": conns[key],
            "dir": {"egress": "write", "ingress": "read"}[tls["direction"]],
            "fn": tls["function"],
            "complete": bool(msg["complete"]),
            "data_b64": base64.b64encode(message_bytes(msg)).decode("ascii"),
        })
    return rows


def detect_protocol(rows: list[dict]) -> str:
    for r in rows:
        if r["dir"] == "write" and base64.b64decode(r["data_b64"]).startswith(b"PRI * HTTP/2.0"):
            return "h2"
    return "h1"


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sensor", default=os.environ.get("TELLTALE_BIN", str(REPO / "target/release/telltale")),
                    help="telltale binary (default: $TELLTALE_BIN or target/release/telltale)")
    ap.add_argument("--only", nargs="+", choices=list(SCENARIOS), help="record only these scenarios")
    ap.add_argument("--out", default=str(HERE), help="directory for the fixtures (default: this one)")
    ap.add_argument("--keep-raw", metavar="FILE", help="also keep the sensor's raw JSON output here "
                    "(contains pids, host identity and paths: do not commit it)")
    ap.add_argument("--reinstall", action="store_true", help="recreate the venv")
    args = ap.parse_args()

    if os.geteuid() != 0:
        print("record.py must run as root (the sensor loads eBPF programs): "
              "sudo python3 tests/captures/record.py", file=sys.stderr)
        return 2
    sensor_bin = Path(args.sensor)
    if not os.access(sensor_bin, os.X_OK):
        print(f"sensor binary not found: {sensor_bin} (build it, or pass --sensor)", file=sys.stderr)
        return 2
    for tool in ("nginx", "openssl", "curl", "node"):
        if shutil.which(tool) is None:
            print(f"{tool} is needed", file=sys.stderr)
            return 2

    names = args.only or list(SCENARIOS)
    out_dir = Path(args.out)
    ensure_venv(args.reinstall)
    versions = client_versions()
    for k, v in versions.items():
        log(f"client {k}: {v}")

    # SIGTERM/SIGHUP should still run the `finally` below.
    def _term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGHUP, _term)

    tmp = Path(tempfile.mkdtemp(prefix="telltale-captures-"))
    nginx = sensor = None
    failures: list[str] = []
    scenario_pids: dict[str, set[int]] = {n: set() for n in names}
    try:
        cert = make_cert(tmp)
        body = json.dumps(ANTHROPIC_REQUEST, indent=1).encode()
        (tmp / "body.json").write_bytes(body)
        (tmp / "body.json.gz").write_bytes(gzip.compress(body, mtime=0))

        port = free_port()
        (tmp / "nginx.conf").write_text(nginx_conf(tmp, port))
        nginx = subprocess.Popen(
            ["nginx", "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(tmp / "nginx.conf")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        try:
            wait_port(port, nginx, "nginx")
        except RuntimeError:
            print((tmp / "error.log").read_text(errors="replace"), file=sys.stderr)
            raise
        log(f"nginx (pid {nginx.pid}) serving the mock API on https://127.0.0.1:{port}")

        raw_path = tmp / "sensor.jsonl"
        err_path = tmp / "sensor.log"
        with open(raw_path, "wb") as raw_out, open(err_path, "wb") as err_out:
            sensor = subprocess.Popen(
                [str(sensor_bin), "run", "--emit", "data", "--status-interval", "0"],
                stdin=subprocess.DEVNULL, stdout=raw_out, stderr=err_out,
                env={**os.environ, "NO_COLOR": "1"}, start_new_session=True)
        deadline = time.monotonic() + 60
        while b"telltale running" not in err_path.read_bytes():
            if sensor.poll() is not None:
                raise RuntimeError(f"sensor exited with {sensor.returncode}:\n"
                                   + err_path.read_text(errors="replace"))
            if time.monotonic() > deadline:
                raise RuntimeError("sensor did not start in 60 s")
            time.sleep(0.1)
        log(f"sensor (pid {sensor.pid}) running")

        ctx = {"port": port, "cert": str(cert), "tmp": str(tmp)}
        for name in names:
            for argv, extra_env in commands(name, ctx):
                proc = subprocess.Popen(argv, env={**os.environ, **extra_env},
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                scenario_pids[name].add(proc.pid)
                try:
                    out, err = proc.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    out, err = proc.communicate()
                if proc.returncode != 0:
                    failures.append(name)
                    log(f"{name}: {argv[0]} failed ({proc.returncode}): {err.strip()[-2000:]}")
                else:
                    log(f"{name}: {os.path.basename(argv[0])} -> {out.strip()}")

        time.sleep(1.5)
        stop(sensor, signal.SIGINT, "sensor", 30)
        if sensor.returncode != 0:
            log(f"sensor exited with {sensor.returncode}")
        log("sensor: " + next((ln for ln in reversed(err_path.read_text(errors="replace").splitlines())
                               if "telltale stopped" in ln), "(no summary line)").split("telltale ")[-1])
        stop(nginx, signal.SIGQUIT, "nginx", 10)

        if args.keep_raw:
            shutil.copyfile(raw_path, args.keep_raw)
        events = []
        with open(raw_path, "rb") as f:
            for line in f:
                line = line.strip()
                if line:
                    events.append(json.loads(line))

        today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
        print()
        print(f"{'scenario':<20} {'proto':<6} {'conns':>5} {'msgs':>5} {'writes':>6} {'reads':>5} "
              f"{'incomplete':>10} {'bytes':>7}  fixture")
        for name in names:
            if name in failures:
                print(f"{name:<20} FAILED (client error; fixture left as it was)")
                continue
            expected, note = SCENARIOS[name]
            rows = build_fixture(events, scenario_pids[name])
            proto = detect_protocol(rows)
            if not rows:
                failures.append(name)
                print(f"{name:<20} FAILED (no tls.data events of the client)")
                continue
            if proto != expected:
                log(f"{name}: expected {expected} but saw {proto}")
                failures.append(name)
            header = {"scenario": name, "client": versions[CLIENT_OF[name]], "protocol": proto,
                      "recorded": today, "note": note}
            text = "".join(json.dumps(o, separators=(",", ":")) + "\n" for o in [header, *rows])
            path = out_dir / f"{name}.jsonl"
            path.write_text(text)
            size = len(text.encode())
            if size > MAX_FIXTURE_BYTES:
                log(f"{name}: fixture is {size} bytes (> {MAX_FIXTURE_BYTES})")
            n_w = sum(r["dir"] == "write" for r in rows)
            n_inc = sum(not r["complete"] for r in rows)
            n_conn = len({r["conn"] for r in rows})
            try:
                shown = path.relative_to(REPO)
            except ValueError:
                shown = path
            print(f"{name:<20} {proto:<6} {n_conn:>5} {len(rows):>5} {n_w:>6} {len(rows) - n_w:>5} "
                  f"{n_inc:>10} {size:>7}  {shown}")
        print()
    finally:
        stop(sensor, signal.SIGINT, "sensor", 30)
        stop(nginx, signal.SIGQUIT, "nginx", 10)
        shutil.rmtree(tmp, ignore_errors=True)

    if failures:
        log(f"failed scenarios: {', '.join(sorted(set(failures)))}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

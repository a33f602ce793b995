#!/usr/bin/env python3
"""`make bench`: tollgate against nginx on this machine, in one run.

Cases (BENCHMARKING.md's method: the proxy alone on cpu1 with one worker, wrk and the
upstream on cpu0, cases interleaved over several rounds, proxy CPU per request from
/proc/PID/stat as the headline figure):

  1 upstream directly (nginx serving a small static JSON body)
  2 nginx, 1 worker, plain proxy_pass with upstream keepalive
  3 nginx, 1 worker, X-API-Key checked against a map of all keys, plus limit_req
  3b pingora with nothing but forwarding (examples/bare_pingora.rs): the floor under
    tollgate's own cost on this machine
  4 tollgate, threads: 1, anonymous route
  5 tollgate, threads: 1, API keys (1M in the store, drawn from 10k), IP allowlist on every
    key, rate limits and metrics on
  5O the same process, other keys of the same store (drawn from BENCH_OWNED): each belongs to
    an owner with a shared rate limit, and key and owner both hold credits, so a request
    checks the owner's windows beside the key's and spends two balances
  5R, 5RO cases 5 and 5O on a tollgate with `backend: redis://` (a Redis of its own on
    cpu0, beside wrk): tollgate's CPU per request, and Redis's beside it
  6 tollgate, cached JWT access tokens
  7 tollgate, 100% invalid keys (a credential-stuffing flood)
  2L nginx proxy_pass with a JSON access log to a file, and
  5L tollgate API keys with the default access log (stdout, redirected to a file): the
     cost of logging, each against its own case without a log
  8 tollgate forward auth: the case-5 keys asked of `/verify/v1/accounts` on the same
    process's forward-auth listener (the decision alone, no upstream), beside case 5
  9 nginx with auth_request to tollgate's forward-auth listener, the shipped
    deploy/forward-auth/nginx.conf: what a user who keeps nginx pays, nginx's CPU and
    tollgate's together
  10 HAProxy, 1 thread, X-API-Key checked against a map of all keys, plus a stick table
    counting requests per key
  11 pingap 0.13.1 with its key_auth and limit plugins, when it is installed (make bench
    builds it once into ~/.cache/tollgate-bench; skipped with the reason otherwise)

Writes benches/results/<date>.md and prints it. Environment: BENCH_ROUNDS (3),
BENCH_SECONDS (10), BENCH_KEYS (1000000), BENCH_KNOWN (10000), BENCH_OWNED (10000); BENCH_OUT (another file to write),
PINGAP (the pingap binary).
"""

import datetime
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "target", "release", "tollgate")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
KEYS = int(os.environ.get("BENCH_KEYS", "1000000"))
KNOWN = int(os.environ.get("BENCH_KNOWN", "10000"))
OWNED = int(os.environ.get("BENCH_OWNED", "10000"))
TOKEN = "bench-operator-token-0123456789"
CLK = os.sysconf("SC_CLK_TCK")
WORK = tempfile.mkdtemp(prefix="tollgate-bench-")
PROCESSES = []

P_UPSTREAM, P_NGINX, P_NGINX_KEYS = 18001, 18002, 18003
P_TG, P_TG_ADMIN, P_TG_METRICS = 18004, 18104, 18204
P_TG_SMALL, P_TG_SMALL_ADMIN, P_TG_SMALL_METRICS = 18005, 18105, 18205
P_STATUS = 18090
P_BARE = 18006
P_TG_FORWARD = 18304
P_NGINX_LOG = 18008
P_TG_LOG, P_TG_LOG_ADMIN, P_TG_LOG_METRICS = 18007, 18107, 18207
POOL_PORTS = list(range(18011, 18019))
P_NGINX_POOL, P_TG_POOL, P_TG_POOL_ADMIN, P_TG_POOL_METRICS = 18020, 18021, 18121, 18221
P_NGINX_FORWARD, P_HAPROXY, P_PINGAP = 18009, 18010, 18030
P_TG_REDIS, P_TG_REDIS_ADMIN, P_TG_REDIS_METRICS, P_REDIS = 18031, 18131, 18231, 18040
PINGAP = os.environ.get("PINGAP", os.path.expanduser("~/.cache/tollgate-bench/pingap/bin/pingap"))


def log(message):
    print(message, file=sys.stderr, flush=True)


def run(command, **kwargs):
    return subprocess.run(command, check=True, **kwargs)


def start(command, cpus, name, env=None):
    out = open(os.path.join(WORK, name + ".log"), "ab")
    process = subprocess.Popen(["taskset", "-c", cpus] + command, stdout=out, stderr=out, env=env, start_new_session=True)
    PROCESSES.append(process)
    return process


def stop_all():
    for process in PROCESSES:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def wait_port(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def http_get(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def pids_of(process):
    """The process and its children (nginx workers)."""
    pids = [process.pid]
    try:
        children = open(f"/proc/{process.pid}/task/{process.pid}/children").read().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    return pids


def cpu_seconds(process):
    total = 0
    for pid in pids_of(process):
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / CLK


def rss_mib(process):
    total = 0
    for pid in pids_of(process):
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


UNITS = {"us": 1, "ms": 1000, "s": 1_000_000, "m": 60_000_000}


def latency_us(text):
    match = re.match(r"([\d.]+)(us|ms|s|m)", text or "")
    return float(match.group(1)) * UNITS[match.group(2)] if match else float("nan")


def percentile(out, q):
    found = re.search(rf"^\s*{q}%\s+(\S+)", out, re.M)
    return latency_us(found.group(1) if found else None)


def wrk(port, connections, seconds, cpus="0", script=None, env=None, path="/", scheme="http", headers=()):
    command = ["taskset", "-c", cpus, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        command += ["-s", script]
    for header in headers:
        command += ["-H", header]
    command.append(f"{scheme}://127.0.0.1:{port}{path}")
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=True).stdout
    found = re.search(r"(\d+) requests in", out)
    if not found or not re.search(r"50%\s+\d", out):
        log(f"wrk gave no result for {command}:\n{out}")
        return {"requests": int(found.group(1)) if found else 0, "rps": 0.0, "p50": 0.0, "p99": 0.0, "bad": -1}
    requests = int(found.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": percentile(out, 50),
        "p99": percentile(out, 99),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "bad": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, errors.groups())) if errors else 0),
    }


def measure(process, port, script=None, env=None, path="/", refused=False, also=(), beside=()):
    """CPU per request of `process`, plus that of the processes in `also` that serve the
    same requests (tollgate behind nginx's auth_request). The CPU of the processes in
    `beside` (Redis) is reported on its own, as `beside_us`."""
    processes = [process, *also]
    before = sum(cpu_seconds(p) for p in processes)
    before_beside = sum(cpu_seconds(p) for p in beside)
    result = wrk(port, 32, SECONDS, script=script, env=env, path=path)
    if refused:
        # Every answer is meant to be a refusal (401): only socket errors are bad.
        result["bad"] -= result["non2xx"]
    requests = max(result["requests"], 1)
    result["cpu_us"] = (sum(cpu_seconds(p) for p in processes) - before) * 1e6 / requests
    result["beside_us"] = (sum(cpu_seconds(p) for p in beside) - before_beside) * 1e6 / requests
    result["rss"] = sum(rss_mib(p) for p in processes)
    return result


NGINX_MAIN = """
worker_processes {workers};
daemon off;
master_process on;
pid {dir}/{name}.pid;
error_log {dir}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  map_hash_max_size 4194304;
  map_hash_bucket_size 128;
  {body}
}}
"""


def nginx(name, body, cpus, workers=1):
    conf = os.path.join(WORK, name + ".conf")
    open(conf, "w").write(NGINX_MAIN.format(workers=workers, dir=WORK, name=name, body=body))
    return start(["nginx", "-c", conf, "-p", WORK], cpus, name)


def tollgate_config(name, port, admin, metrics, store, upstream_targets, threads=1, extra="",
                    access_log="off", db=None, limits_backend="local"):
    targets = ", ".join(f'"127.0.0.1:{p}"' for p in upstream_targets)
    path = os.path.join(WORK, name + ".yaml")
    db = db or f"{WORK}/{name}.db"
    open(path, "w").write(f"""
listen: 127.0.0.1:{port}
threads: {threads}
access_log: {access_log}
grace_period: 5s
upgrade_sock: {WORK}/{name}.sock
admin: {{ listen: 127.0.0.1:{admin} }}
metrics: {{ listen: 127.0.0.1:{metrics} }}
store: {{ url: "sqlite://{db}" }}
oauth: {{ issuer: "http://127.0.0.1:{port}", signing_key_path: {WORK}/{name}.pem }}
rate_limits:
  backend: "{limits_backend}"
  tiers:
    anonymous: {{ per_minute: 1000000000, per_day: 1000000000000 }}
    api_key: {{ per_minute: 1000000000, per_day: 1000000000000 }}
    oauth: {{ per_minute: 1000000000, per_day: 1000000000000 }}
  burst: {{ requests: 1000000000, per: 10s }}
permissions: [accounts:read]
upstreams:
  api: {{ targets: [{targets}] }}
routes:
  - {{ path_prefix: /v1/accounts, upstream: api, require: [accounts:read] }}
  - {{ path_prefix: /anon, upstream: api, anonymous: true }}
{extra}""")
    return path


def seed(config, keys, known, out, owned=0):
    os.makedirs(out, exist_ok=True)
    run([os.path.join(ROOT, "target", "release", "examples", "seed_keys"), "--config", config,
         "--keys", str(keys), "--known", str(known), "--owned", str(owned), "--out", out], stdout=subprocess.DEVNULL)


def start_tollgate(config, port, admin, name, cpus="1"):
    env = {**os.environ, "TOLLGATE_ADMIN_TOKEN": TOKEN, "RUST_LOG": "warn"}
    began = time.time()
    process = start([BIN, "serve", "--config", config], cpus, name, env=env)
    wait_port(admin)
    while http_get(f"http://127.0.0.1:{admin}/readyz")[0] != 200:
        time.sleep(0.01)
    wait_port(port)
    return process, began


def first_200(port, key, began):
    while True:
        status, _ = http_get(f"http://127.0.0.1:{port}/v1/accounts", {"X-API-Key": key})
        if status == 200:
            return time.time() - began
        time.sleep(0.005)


PINGAP_KEYS = 100


def start_pingap(known_keys):
    """pingap 0.13.1 with key_auth and a header-keyed rate limit (counting, never refusing).
    Its key_auth takes keys inline and scans them one by one, so it gets the first
    PINGAP_KEYS keys, and wrk draws from those for it: with a million it would measure the
    scan. The limit plugin comes first, since key_auth removes the header it reads."""
    keys = known_keys[:PINGAP_KEYS]
    conf = os.path.join(WORK, "pingap.toml")
    listed = ",\n".join(f'  "{key}"' for key in keys)
    open(conf, "w").write(f"""
[basic]
threads = 1
pid_file = "{WORK}/pingap.pid"
upstream_keepalive_pool_size = 1024
log_level = "warn"

[upstreams.backend]
addrs = ["127.0.0.1:{P_UPSTREAM}"]
idle_timeout = "120s"

[locations.root]
path = "/"
upstream = "backend"
plugins = ["keyLimit", "keyAuth"]

[servers.bench]
addr = "127.0.0.1:{P_PINGAP}"
locations = ["root"]
threads = 1

[plugins.keyLimit]
category = "limit"
type = "rate"
tag = "header"
key = "X-API-Key"
max = 1000000000
interval = "1s"

[plugins.keyAuth]
category = "key_auth"
header = "X-API-Key"
hide_credentials = true
keys = [
{listed}
]
""")
    open(os.path.join(WORK, "pingap-keys.txt"), "w").write("\n".join(keys) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PINGAP_")}
    process = start([PINGAP, "-c", conf], "1", "pingap", env=env)
    wait_port(P_PINGAP, timeout=120)
    # A plugin that fails to load is dropped silently: make sure the keys are checked.
    status_without, _ = http_get(f"http://127.0.0.1:{P_PINGAP}/v1/accounts")
    status_with, _ = http_get(f"http://127.0.0.1:{P_PINGAP}/v1/accounts", {"X-API-Key": keys[0]})
    if (status_without, status_with) != (401, 200):
        raise SystemExit(f"pingap does not check keys as configured: {status_without} without a key, {status_with} with one")
    return process


def median_row(results):
    out = {}
    for field in ["cpu_us", "beside_us", "rps", "p50", "p99", "rss", "bad"]:
        values = [r[field] for r in results]
        out[field] = statistics.median(values)
        out[field + "_min"], out[field + "_max"] = min(values), max(values)
    out["bad"] = sum(r["bad"] for r in results)
    return out


def main():
    for tool in ["nginx", "wrk", "taskset"]:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (make bench installs it)")
    cpu_line = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
    log(f"work dir {WORK}; {ROUNDS} rounds of {SECONDS}s; {KEYS} keys")

    # The upstream: nginx with a small static JSON body, on cpu0 (pool ports for the reuse run).
    pool_servers = "\n".join(f"server {{ listen 127.0.0.1:{p}; location / {{ default_type application/json; return 200 '{{\"ok\":true}}'; }} }}" for p in POOL_PORTS)
    upstream = nginx("upstream", f"""
  server {{ listen 127.0.0.1:{P_UPSTREAM}; location / {{ default_type application/json; return 200 '{{"ok":true}}'; }} }}
  server {{ listen 127.0.0.1:{P_STATUS}; location / {{ stub_status; }} }}
  {pool_servers}""", "0")
    wait_port(P_UPSTREAM)

    # Tollgate with 1M keys, seeded directly into its SQLite store.
    big = tollgate_config("tollgate", P_TG, P_TG_ADMIN, P_TG_METRICS, "big", [P_UPSTREAM],
                          extra=f"forward_auth: {{ listen: 127.0.0.1:{P_TG_FORWARD} }}\n")
    data = os.path.join(WORK, "big")
    log(f"seeding {KEYS} keys")
    began = time.time()
    seed(big, KEYS, KNOWN, data, owned=OWNED)
    log(f"seeded in {time.time() - began:.1f}s")
    keys_file, tokens_file, invalid_file, owned_file = (os.path.join(data, f) for f in ["keys.txt", "tokens.txt", "invalid.txt", "owned.txt"])
    known_keys = open(keys_file).read().split()

    # nginx with the same keys in a map, plus limit_req.
    with open(os.path.join(WORK, "keys.map"), "w") as out:
        for key in known_keys:
            out.write(f"{key} 1;\n")
        for index in range(KEYS - len(known_keys)):
            out.write(f"tg_live_filler{index:030d} 1;\n")
    proxy_common = f"proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_pass http://up;"
    upstream_block = f"upstream up {{ server 127.0.0.1:{P_UPSTREAM}; keepalive 64; }}"
    nginx_plain = nginx("nginx-plain", f"{upstream_block} server {{ listen 127.0.0.1:{P_NGINX}; location / {{ {proxy_common} }} }}", "1")
    json_log = ("log_format json escape=json '{\"ts\":\"$time_iso8601\",\"request_id\":\"$request_id\",\"method\":\"$request_method\","
                "\"path\":\"$uri\",\"status\":$status,\"client\":\"$remote_addr\",\"upstream\":\"$upstream_addr\","
                "\"upstream_status\":\"$upstream_status\",\"duration\":$request_time,\"upstream_ms\":\"$upstream_response_time\"}';")
    nginx_logged = nginx("nginx-logged", f"""{upstream_block} {json_log}
  server {{ listen 127.0.0.1:{P_NGINX_LOG}; access_log {WORK}/nginx-access.log json; location / {{ {proxy_common} }} }}""", "1")
    began = time.time()
    nginx_keys = nginx("nginx-keycheck", f"""
  {upstream_block}
  map $http_x_api_key $key_ok {{ default 0; include {WORK}/keys.map; }}
  limit_req_zone $http_x_api_key zone=perkey:64m rate=100000r/s;
  server {{ listen 127.0.0.1:{P_NGINX_KEYS};
    location / {{ if ($key_ok = 0) {{ return 401; }} limit_req zone=perkey burst=100000 nodelay; {proxy_common} }} }}""", "1")
    wait_port(P_NGINX_KEYS, timeout=120)
    nginx_start = time.time() - began
    wait_port(P_NGINX)

    # pingora doing nothing but forwarding: the floor under tollgate's own cost.
    bare = start([os.path.join(ROOT, "target", "release", "examples", "bare_pingora"), f"127.0.0.1:{P_BARE}", f"127.0.0.1:{P_UPSTREAM}"], "1", "bare")
    wait_port(P_BARE)

    tollgate, began = start_tollgate(big, P_TG, P_TG_ADMIN, "tollgate")
    cold_start = first_200(P_TG, known_keys[0], began)
    log(f"tollgate ready with {KEYS} keys; first 200 after {cold_start:.2f}s")
    # Restarted: built from the snapshot file the first start wrote, then caught up.
    tollgate.send_signal(signal.SIGTERM)
    tollgate.wait()
    tollgate, began = start_tollgate(big, P_TG, P_TG_ADMIN, "tollgate")
    restart = first_200(P_TG, known_keys[0], began)
    log(f"tollgate restarted from its snapshot file; first 200 after {restart:.2f}s")
    # The same keys and settings with the default access log: stdout, here into a file.
    logged = tollgate_config("tollgate-logged", P_TG_LOG, P_TG_LOG_ADMIN, P_TG_LOG_METRICS, "big", [P_UPSTREAM],
                             access_log="stdout", db=f"{WORK}/tollgate.db")
    tollgate_logged, _ = start_tollgate(logged, P_TG_LOG, P_TG_LOG_ADMIN, "tollgate-logged")
    # The same keys and settings with the limits in a Redis of its own, beside wrk on cpu0.
    redis = start(["redis-server", "--port", str(P_REDIS), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], "0", "redis")
    wait_port(P_REDIS)
    on_redis = tollgate_config("tollgate-redis", P_TG_REDIS, P_TG_REDIS_ADMIN, P_TG_REDIS_METRICS, "big", [P_UPSTREAM],
                               db=f"{WORK}/tollgate.db", limits_backend=f"redis://127.0.0.1:{P_REDIS}")
    tollgate_redis, _ = start_tollgate(on_redis, P_TG_REDIS, P_TG_REDIS_ADMIN, "tollgate-redis")
    for port in (P_TG, P_TG_REDIS):
        status, body = http_get(f"http://127.0.0.1:{port}/v1/accounts", {"X-API-Key": open(owned_file).readline().strip()})
        if status != 200:
            raise SystemExit(f"an owned key got {status} on port {port}: {body[:200]!r}")
    wait_port(P_NGINX_LOG)

    # nginx in front, tollgate deciding: the shipped forward-auth file, its example
    # addresses replaced (nginx on cpu1 with the tollgate it asks).
    shipped = open(os.path.join(ROOT, "deploy", "forward-auth", "nginx.conf")).read()
    for example, ours in [("127.0.0.1:8081", f"127.0.0.1:{P_TG_FORWARD}"), ("127.0.0.1:3000", f"127.0.0.1:{P_UPSTREAM}"),
                          ("listen 8080;", f"listen 127.0.0.1:{P_NGINX_FORWARD};")]:
        if example not in shipped:
            raise SystemExit(f"deploy/forward-auth/nginx.conf no longer says {example}")
        shipped = shipped.replace(example, ours)
    forward_conf = os.path.join(WORK, "nginx-forward.conf")
    open(forward_conf, "w").write(f"daemon off;\npid {WORK}/nginx-forward.pid;\nerror_log {WORK}/nginx-forward.error.log warn;\n"
                                  + shipped.replace("events { worker_connections 1024; }", "events { worker_connections 4096; }"))
    nginx_forward = start(["nginx", "-c", forward_conf, "-p", WORK], "1", "nginx-forward")

    # HAProxy: the same keys in a map, and a stick table counting each key's requests.
    with open(os.path.join(WORK, "haproxy-keys.map"), "w") as out:
        for key in known_keys:
            out.write(f"{key} 1\n")
        for index in range(KEYS - len(known_keys)):
            out.write(f"tg_live_filler{index:030d} 1\n")
    haproxy_conf = os.path.join(WORK, "haproxy.cfg")
    open(haproxy_conf, "w").write(f"""
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend keys
  bind 127.0.0.1:{P_HAPROXY}
  stick-table type string len 64 size 2m expire 60s store http_req_rate(60s)
  http-request deny deny_status 401 unless {{ req.hdr(x-api-key),map({WORK}/haproxy-keys.map) -m found }}
  http-request track-sc0 req.hdr(x-api-key)
  http-request deny deny_status 429 if {{ sc_http_req_rate(0) gt 1000000000 }}
  http-request del-header x-api-key
  default_backend api
backend api
  http-reuse always
  server up 127.0.0.1:{P_UPSTREAM}
""")
    haproxy = None
    if shutil.which("haproxy"):
        haproxy = start(["haproxy", "-db", "-f", haproxy_conf], "1", "haproxy")
        wait_port(P_HAPROXY, timeout=120)
    else:
        log("HAProxy is not installed (make bench installs it): case 10 skipped")

    # pingap, when built (make bench builds it once; it needs protobuf-compiler).
    pingap, pingap_skipped = None, None
    if os.path.exists(PINGAP):
        pingap = start_pingap(known_keys)
    else:
        pingap_skipped = f"pingap is not at {PINGAP}: " + (open(PINGAP + ".why").read().strip() if os.path.exists(PINGAP + ".why") else "not built")
        log(pingap_skipped + "; case 11 skipped")
    wait_port(P_NGINX_FORWARD)

    script = os.path.join(ROOT, "benches", "load", "keys.lua")
    cases = [
        ("1 upstream directly", upstream, P_UPSTREAM, None, None, "/"),
        ("2 nginx proxy_pass", nginx_plain, P_NGINX, None, None, "/"),
        ("2L nginx proxy_pass, JSON access log to a file", nginx_logged, P_NGINX_LOG, None, None, "/"),
        ("3 nginx key map + limit_req", nginx_keys, P_NGINX_KEYS, script, {"CREDENTIALS": keys_file}, "/"),
        ("3b pingora, bare proxy (no tollgate logic)", bare, P_BARE, None, None, "/"),
        ("4 tollgate anonymous", tollgate, P_TG, None, None, "/anon"),
        ("5 tollgate API keys", tollgate, P_TG, script, {"CREDENTIALS": keys_file}, "/"),
        ("5L tollgate API keys, default access log (stdout to a file)", tollgate_logged, P_TG_LOG, script,
         {"CREDENTIALS": keys_file}, "/"),
        ("5O tollgate API keys with owners and credits", tollgate, P_TG, script, {"CREDENTIALS": owned_file}, "/"),
        ("5R tollgate API keys, limits in Redis", tollgate_redis, P_TG_REDIS, script, {"CREDENTIALS": keys_file}, "/"),
        ("5RO tollgate API keys with owners and credits, limits in Redis", tollgate_redis, P_TG_REDIS, script,
         {"CREDENTIALS": owned_file}, "/"),
        ("6 tollgate cached JWT", tollgate, P_TG, script, {"CREDENTIALS": tokens_file, "HEADER": "Authorization"}, "/"),
        ("7 tollgate invalid keys", tollgate, P_TG, script, {"CREDENTIALS": invalid_file}, "/"),
        ("8 tollgate forward auth, API keys", tollgate, P_TG_FORWARD, script,
         {"CREDENTIALS": keys_file, "REQUEST_PATH": "/verify/v1/accounts"}, "/"),
        ("9 nginx auth_request to tollgate forward auth (nginx + tollgate CPU)", nginx_forward, P_NGINX_FORWARD, script,
         {"CREDENTIALS": keys_file, "REQUEST_PATH": "/v1/accounts"}, "/"),
    ]
    if haproxy:
        cases.append(("10 HAProxy key map + stick table", haproxy, P_HAPROXY, script, {"CREDENTIALS": keys_file}, "/"))
    if pingap:
        cases.append((f"11 pingap key_auth ({PINGAP_KEYS} keys) + limit", pingap, P_PINGAP, script,
                      {"CREDENTIALS": os.path.join(WORK, "pingap-keys.txt")}, "/"))
    # Everything under test shares cpu1: the tollgates not under test are paused (SIGSTOP),
    # so their timers and their 400 MiB of keys each do not disturb the figures of others.
    def only(process):
        for tg in (tollgate, tollgate_logged, tollgate_redis):
            os.killpg(tg.pid, signal.SIGCONT if tg is process else signal.SIGSTOP)
        time.sleep(0.2)

    results = {name: [] for name, *_ in cases}
    for round_ in range(ROUNDS):
        for name, process, port, lua, env, path in cases:
            only(tollgate if process is nginx_forward else process)
            result = measure(process, port, script=lua, env=env, path=path, refused=name.startswith("7"),
                             also=[tollgate] if process is nginx_forward else (),
                             beside=[redis] if process is tollgate_redis else ())
            results[name].append(result)
            log(f"round {round_ + 1} {name}: {result['cpu_us']:.2f} us/req, {result['rps']:.0f} req/s, bad {result['bad']}")
    rows = {name: median_row(values) for name, values in results.items()}
    only(tollgate_redis)
    # A Redis answer later than the limiter's timeout falls back to local counting (SPEC 8):
    # the Redis figures hold only if none did.
    fallbacks = sum(float(line.split()[-1]) for line in
                    http_get(f"http://127.0.0.1:{P_TG_REDIS_METRICS}/metrics")[1].decode().splitlines()
                    if line.startswith("tollgate_rate_limit_fallback_total"))
    only(tollgate)
    os.killpg(tollgate_logged.pid, signal.SIGKILL)
    os.killpg(tollgate_redis.pid, signal.SIGKILL)

    # Added latency at c=1, everything on one core.
    def pin(process, cpus):
        for pid in pids_of(process):
            subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], stdout=subprocess.DEVNULL, check=False)

    for process in [nginx_plain, tollgate]:
        pin(process, "0")
    single = {}
    for name, port, lua, env in [("direct", P_UPSTREAM, None, None), ("nginx", P_NGINX, None, None),
                                 ("tollgate keys", P_TG, script, {"CREDENTIALS": keys_file})]:
        single[name] = wrk(port, 1, max(3, SECONDS // 2), cpus="0", script=lua, env=env)
    for process in [nginx_plain, tollgate]:
        pin(process, "1")
    log("single-core c=1 done")

    # 1M keys vs 1k keys, same process shape.
    small = tollgate_config("small", P_TG_SMALL, P_TG_SMALL_ADMIN, P_TG_SMALL_METRICS, "small", [P_UPSTREAM])
    small_data = os.path.join(WORK, "small")
    seed(small, 1000, 1000, small_data)
    small_tg, _ = start_tollgate(small, P_TG_SMALL, P_TG_SMALL_ADMIN, "small")
    small_results = [measure(small_tg, P_TG_SMALL, script=script, env={"CREDENTIALS": os.path.join(small_data, "keys.txt")}) for _ in range(ROUNDS)]
    small_row = median_row(small_results)

    # An incremental sync under load: revoke one (filler) key while wrk runs.
    load = subprocess.Popen(["taskset", "-c", "0", "wrk", "-t1", "-c32", f"-d{SECONDS}s", "-s", script, f"http://127.0.0.1:{P_TG}/"],
                            env={**os.environ, "CREDENTIALS": keys_file}, stdout=subprocess.PIPE, text=True)
    time.sleep(SECONDS / 3)
    request = urllib.request.Request(f"http://127.0.0.1:{P_TG_ADMIN}/admin/v1/keys/key_{KEYS - 1:020d}/revoke", data=b"{}", method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    began = time.time()
    urllib.request.urlopen(request, timeout=10).read()
    incremental = time.time() - began
    out = load.communicate()[0]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    incremental_bad = int(non2xx.group(1)) if non2xx else 0

    # A full reload under load: a graceful upgrade (the new process loads all keys).
    load = subprocess.Popen(["taskset", "-c", "0", "wrk", "-t1", "-c32", f"-d{SECONDS + 10}s", "-s", script, f"http://127.0.0.1:{P_TG}/"],
                            env={**os.environ, "CREDENTIALS": keys_file}, stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    sock = os.path.join(WORK, "tollgate.sock")
    if os.path.exists(sock):
        os.remove(sock)
    began = time.time()
    successor = start([BIN, "serve", "--config", big, "--upgrade"], "1", "tollgate-upgrade",
                      env={**os.environ, "TOLLGATE_ADMIN_TOKEN": TOKEN, "RUST_LOG": "warn"})
    while not os.path.exists(sock):
        time.sleep(0.01)
    # The successor listens on the upgrade socket once it has loaded every key.
    loaded_seconds = time.time() - began
    tollgate.send_signal(signal.SIGQUIT)
    peak_new = 0
    while tollgate.poll() is None:
        peak_new = max(peak_new, rss_mib(successor))
        time.sleep(0.05)
    reload_seconds = time.time() - began
    out = load.communicate()[0]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    reload_bad = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, errors.groups())) if errors else 0)
    log("reload done")

    # Upstream connection reuse: 8 targets, 2 workers/threads, counting new upstream connections.
    def accepts():
        return int(re.search(rb"\s(\d+)\s+\d+\s+\d+", http_get(f"http://127.0.0.1:{P_STATUS}/")[1]).group(1))
    pool_block = "upstream pool { " + " ".join(f"server 127.0.0.1:{p};" for p in POOL_PORTS) + " keepalive 64; }"
    nginx_pool = nginx("nginx-pool", f"{pool_block} server {{ listen 127.0.0.1:{P_NGINX_POOL}; location / {{ proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_pass http://pool; }} }}", "1", workers=2)
    pool_cfg = tollgate_config("pool", P_TG_POOL, P_TG_POOL_ADMIN, P_TG_POOL_METRICS, "pool", POOL_PORTS, threads=2)
    pool_tg, _ = start_tollgate(pool_cfg, P_TG_POOL, P_TG_POOL_ADMIN, "pool")
    wait_port(P_NGINX_POOL)
    # tollgate's TCP health checks connect to every target once a second, load or not, and
    # the pool's tollgate runs throughout: its probes are counted over an idle period as long
    # as a run and taken off both proxies' counts. Two loaded runs each: the first includes
    # filling the pools, the second is the steady state.
    before = accepts()
    time.sleep(SECONDS)
    idle = accepts() - before - 1
    reuse = {}
    for name, port in [("nginx, 2 workers", P_NGINX_POOL), ("tollgate, 2 threads", P_TG_POOL)]:
        runs = []
        for _ in range(2):
            before = accepts()
            result = wrk(port, 64, SECONDS, path="/anon" if port == P_TG_POOL else "/")
            runs.append((accepts() - before - 1, result["requests"]))
        reuse[name] = runs

    # The report.
    date = datetime.date.today().isoformat()
    plain, keyed = rows["2 nginx proxy_pass"], rows["3 nginx key map + limit_req"]
    lines = [f"# tollgate vs nginx, {date}", "", f"CPU: {cpu_line}, {os.cpu_count()} cores. `make bench`: {ROUNDS} rounds of {SECONDS} s, "
             f"wrk -t1 -c32 on cpu0 with the upstream, the proxy alone on cpu1 with one worker; medians (min–max).", "",
             "| case | proxy CPU µs/req | req/s | p50 µs | p99 µs | RSS MiB | vs 2 | vs 3 | non-2xx/errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        direct = name.split()[0] == "1"
        ratio2 = f"{row['cpu_us'] / plain['cpu_us']:.2f}×" if not direct else "–"
        ratio3 = f"{row['cpu_us'] / keyed['cpu_us']:.2f}×" if not direct else "–"
        beside = f" + Redis {row['beside_us']:.2f}" if row["beside_us"] else ""
        lines.append(f"| {name} | {row['cpu_us']:.2f} ({row['cpu_us_min']:.2f}–{row['cpu_us_max']:.2f}){beside} | {row['rps']:.0f} "
                     f"| {row['p50']:.0f} | {row['p99']:.0f} | {row['rss']:.0f} | {ratio2} | {ratio3} | {row['bad']} |")
    base = single["direct"]
    lines += ["", "Added latency, c=1, everything on cpu0 (wrk -t1 -c1), over the upstream directly "
              f"({base['p50']:.0f} / {base['p99']:.0f} µs):", "",
              "| proxy | p50 added µs | p99 added µs |", "|---|---|---|"]
    for name in ["nginx", "tollgate keys"]:
        lines.append(f"| {name} | +{single[name]['p50'] - base['p50']:.0f} | +{single[name]['p99'] - base['p99']:.0f} |")
    case5 = rows["5 tollgate API keys"]
    owned, on_redis_row = rows["5O tollgate API keys with owners and credits"], rows["5R tollgate API keys, limits in Redis"]
    owned_redis = rows["5RO tollgate API keys with owners and credits, limits in Redis"]
    lines += ["", "| figure | measured |", "|---|---|",
              f"| auth overhead, case 5 − case 4 | {case5['cpu_us'] - rows['4 tollgate anonymous']['cpu_us']:.2f} µs |",
              f"| access log on minus off, CPU per request: tollgate (case 5L − 5), nginx (case 2L − 2) | "
              f"{rows['5L tollgate API keys, default access log (stdout to a file)']['cpu_us'] - case5['cpu_us']:+.2f} µs, "
              f"{rows['2L nginx proxy_pass, JSON access log to a file']['cpu_us'] - plain['cpu_us']:+.2f} µs |",
              f"| logs on: case 5L / case 2L | {rows['5L tollgate API keys, default access log (stdout to a file)']['cpu_us'] / rows['2L nginx proxy_pass, JSON access log to a file']['cpu_us']:.2f}× |",
              f"| case 6 / case 5 | {rows['6 tollgate cached JWT']['cpu_us'] / case5['cpu_us']:.2f}× |",
              f"| owner and credit checks, local (case 5O − 5) | {owned['cpu_us'] - case5['cpu_us']:+.2f} µs |",
              f"| limits in Redis (case 5R − 5): tollgate, and Redis's own CPU | {on_redis_row['cpu_us'] - case5['cpu_us']:+.2f} µs, "
              f"Redis {on_redis_row['beside_us']:.2f} µs |",
              f"| owner and credit checks, in Redis (case 5RO − 5R): tollgate, Redis | "
              f"{owned_redis['cpu_us'] - on_redis_row['cpu_us']:+.2f} µs, {owned_redis['beside_us'] - on_redis_row['beside_us']:+.2f} µs "
              f"({fallbacks:.0f} requests fell back to local counting) |",
              f"| case 5 / case 3b (our own path over bare pingora) | {case5['cpu_us'] / rows['3b pingora, bare proxy (no tollgate logic)']['cpu_us']:.2f}× |",
              f"| nginx + tollgate forward auth (case 9) / tollgate inline (case 5) | "
              f"{rows['9 nginx auth_request to tollgate forward auth (nginx + tollgate CPU)']['cpu_us'] / case5['cpu_us']:.2f}× |",
              f"| case 7 / case 5 | {rows['7 tollgate invalid keys']['cpu_us'] / case5['cpu_us']:.2f}× |",
              f"| forward-auth decision (case 8) vs inline request (case 5), CPU per request | "
              f"{rows['8 tollgate forward auth, API keys']['cpu_us']:.2f} µs vs {case5['cpu_us']:.2f} µs |",
              f"| {KEYS} keys vs 1k keys (case 5) | {case5['cpu_us'] - small_row['cpu_us']:+.2f} µs/req |",
              f"| RSS growth per million keys | {(case5['rss'] - small_row['rss']) * 1_000_000 / max(KEYS - 1000, 1):.0f} MiB |",
              f"| first start to first 200 with {KEYS} keys (full load from the store, writes the snapshot file) | {cold_start:.2f} s (nginx map load: {nginx_start:.2f} s) |",
              f"| restart to first 200 with {KEYS} keys (from the snapshot file, then caught up) | {restart:.2f} s |",
              f"| incremental sync (one revocation) under load | {incremental * 1000:.1f} ms admin round trip, {incremental_bad} failed requests |",
              f"| full reload under load (graceful upgrade): the new process loads {KEYS} keys | {loaded_seconds:.2f} s to loaded; "
              f"handover and the old process's drain done after {reload_seconds:.2f} s; {reload_bad} failed requests; "
              f"new process peak RSS {peak_new:.0f} MiB (old: {case5['rss']:.0f} MiB) |"]
    if "10 HAProxy key map + stick table" in rows:
        lines.append(f"| case 5 / HAProxy (case 10) | {case5['cpu_us'] / rows['10 HAProxy key map + stick table']['cpu_us']:.2f}× |")
    pingap_case = f"11 pingap key_auth ({PINGAP_KEYS} keys) + limit"
    if pingap_case in rows:
        lines.append(f"| case 5 / pingap (case 11) | {case5['cpu_us'] / rows[pingap_case]['cpu_us']:.2f}× |")
    else:
        lines.append(f"| pingap (case 11) | skipped: {pingap_skipped} |")
    for name, runs in reuse.items():
        (first, first_requests), (second, second_requests) = runs
        lines.append(f"| new upstream connections, 8 targets, c=64, {name}, less {idle} health-check probes per {SECONDS} s | "
                     f"first {SECONDS} s: {first - idle} for {first_requests} requests; next {SECONDS} s: {second - idle} for {second_requests} requests |")
    report = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(ROOT, "benches", "results"), exist_ok=True)
    path = os.environ.get("BENCH_OUT") or os.path.join(ROOT, "benches", "results", f"{date}.md")
    open(path, "w").write(report)
    print(report)
    log(f"written to {path}")


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
        shutil.rmtree(WORK, ignore_errors=True)

"""HTTPS against nginx with the same certificate, in one run: CPU per request over keep-alive
with HTTP/1.1 (wrk) and HTTP/2 (h2load), and full handshakes per second per core (wrk with
`Connection: close`, so every request is a new TLS connection and a full handshake). The
proxy under test runs alone on cpu1 with one worker, the clients and the upstream on cpu0,
as in load.py; 3 rounds, medians. Appends a Markdown table to the results file.

    python3 benches/load/tls.py [RESULTS_FILE]
"""
import os
import re
import signal
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load as L  # noqa: E402

P_NGINX_TLS, P_TG_TLS = 18401, 18402
P_TG_PLAIN, P_TG_ADMIN, P_TG_METRICS = 18403, 18404, 18405
KEYS = 1000


def h2load(port, path, seconds, headers=()):
    """h2load on cpu0 for `seconds`, 32 connections of one stream each (as wrk's 32)."""
    command = ["taskset", "-c", "0", "h2load", "-t1", "-c32", "-m1", f"-D{seconds}"]
    for header in headers:
        command += ["-H", header]
    command.append(f"https://127.0.0.1:{port}{path}")
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    status = re.search(r"status codes: (\d+) 2xx", out)
    if not (done and rps and status):
        raise SystemExit(f"h2load gave no result:\n{out}")
    requests = int(done.group(1))
    return {"requests": requests, "rps": float(rps.group(1)), "bad": requests - int(status.group(1))}


def measure(process, run):
    before = L.cpu_seconds(process)
    result = run()
    result["cpu_us"] = (L.cpu_seconds(process) - before) * 1e6 / max(result["requests"], 1)
    return result


def main():
    cert = os.path.join(L.WORK, "server-cert.pem")
    key = os.path.join(L.WORK, "server-cert.key")
    L.run([L.BIN, "keygen", "--tls-names", "localhost,127.0.0.1", "--out", cert], stdout=subprocess.DEVNULL)
    L.nginx("upstream", f"""server {{ listen 127.0.0.1:{L.P_UPSTREAM}; location / {{ default_type application/json; return 200 '{{"ok":true}}'; }} }}""", "0")
    L.wait_port(L.P_UPSTREAM)
    nginx = L.nginx("nginx-tls", f"""
  upstream api {{ server 127.0.0.1:{L.P_UPSTREAM}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{P_NGINX_TLS} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{ proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}""", "1")
    L.wait_port(P_NGINX_TLS)
    tls = f"tls: {{ listen: 127.0.0.1:{P_TG_TLS}, certificates: [{{ cert_path: {cert}, key_path: {key} }}] }}"
    config = L.tollgate_config("tls", P_TG_PLAIN, P_TG_ADMIN, P_TG_METRICS, "tls", [L.P_UPSTREAM], extra=tls)
    data = os.path.join(L.WORK, "tls-keys")
    L.seed(config, KEYS, KEYS, data)
    keys_file = os.path.join(data, "keys.txt")
    tollgate, _ = L.start_tollgate(config, P_TG_TLS, P_TG_ADMIN, "tollgate-tls")
    with open(keys_file) as lines:
        one_key = lines.readline().strip()
    script = os.path.join(L.ROOT, "benches", "load", "keys.lua")
    seconds = L.SECONDS

    cases = [
        ("nginx, HTTP/1.1 keep-alive", nginx, lambda: L.wrk(P_NGINX_TLS, 32, seconds, scheme="https", path="/anon")),
        ("tollgate anonymous, HTTP/1.1 keep-alive", tollgate, lambda: L.wrk(P_TG_TLS, 32, seconds, scheme="https", path="/anon")),
        ("tollgate API keys, HTTP/1.1 keep-alive", tollgate, lambda: L.wrk(P_TG_TLS, 32, seconds, scheme="https", script=script, env={"CREDENTIALS": keys_file}, path="/v1/accounts")),
        ("nginx, h2", nginx, lambda: h2load(P_NGINX_TLS, "/anon", seconds)),
        ("tollgate anonymous, h2", tollgate, lambda: h2load(P_TG_TLS, "/anon", seconds)),
        ("tollgate API key, h2", tollgate, lambda: h2load(P_TG_TLS, "/v1/accounts", seconds, headers=[f"X-API-Key: {one_key}"])),
        ("nginx, full handshakes (a new connection per request)", nginx, lambda: L.wrk(P_NGINX_TLS, 32, seconds, scheme="https", path="/anon", headers=["Connection: close"])),
        ("tollgate, full handshakes (a new connection per request)", tollgate, lambda: L.wrk(P_TG_TLS, 32, seconds, scheme="https", path="/anon", headers=["Connection: close"])),
    ]
    results = {name: [] for name, _, _ in cases}
    for round_ in range(L.ROUNDS):
        for name, process, run in cases:
            result = measure(process, run)
            L.log(f"round {round_ + 1} {name}: {result['cpu_us']:.2f} us/req, {result['rps']:.0f} req/s, bad {result['bad']}")
            results[name].append(result)
    os.killpg(tollgate.pid, signal.SIGTERM)
    tollgate.wait()

    def median(name, field):
        return statistics.median(r[field] for r in results[name])

    lines = ["", "## HTTPS (benches/load/tls.py)", "",
             f"The same self-signed certificate (ECDSA P-256, made by `tollgate keygen --tls-names`) for both; the proxy alone on cpu1 with one worker, wrk or h2load (32 connections, one stream each) on cpu0; {L.ROUNDS} rounds of {seconds} s, medians. CPU is the proxy's own per request; for the handshake rows, per request is per full handshake.", "",
             "| case | proxy CPU µs/req | req/s | vs nginx | non-2xx/errors |", "|---|---|---|---|---|"]
    pairs = {
        "tollgate anonymous, HTTP/1.1 keep-alive": "nginx, HTTP/1.1 keep-alive",
        "tollgate API keys, HTTP/1.1 keep-alive": "nginx, HTTP/1.1 keep-alive",
        "tollgate anonymous, h2": "nginx, h2",
        "tollgate API key, h2": "nginx, h2",
        "tollgate, full handshakes (a new connection per request)": "nginx, full handshakes (a new connection per request)",
    }
    for name, _, _ in cases:
        cpu = median(name, "cpu_us")
        versus = pairs.get(name)
        ratio = f"{cpu / median(versus, 'cpu_us'):.2f}×" if versus else "1.00×"
        bad = sum(r["bad"] for r in results[name])
        lines.append(f"| {name} | {cpu:.2f} | {median(name, 'rps'):.0f} | {ratio} | {bad} |")
    per_core = 1e6 / median("tollgate, full handshakes (a new connection per request)", "cpu_us")
    nginx_core = 1e6 / median("nginx, full handshakes (a new connection per request)", "cpu_us")
    lines += ["", f"Full handshakes per second per core (1 s of proxy CPU / CPU per handshake): tollgate {per_core:.0f}, nginx {nginx_core:.0f}.", ""]
    text = "\n".join(lines)
    print(text)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "a") as out:
            out.write(text)


try:
    main()
finally:
    L.stop_all()
    import shutil
    shutil.rmtree(L.WORK, ignore_errors=True)

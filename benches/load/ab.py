"""Two tollgate binaries against each other, alternating, in the same minutes: whether a
change moved the CPU per request or the machine did. Three rounds of an anonymous run and
an API-key run each (AB_KEYS keys in the store, 1000 unless set, drawn from up to 10k),
with make bench's pinning and measure().

    AB_KEYS=1000000 python3 benches/load/ab.py BEFORE_BINARY AFTER_BINARY
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load as L  # noqa: E402

if len(sys.argv) != 3:
    raise SystemExit(__doc__)
up = L.nginx("upstream", f"""server {{ listen 127.0.0.1:{L.P_UPSTREAM}; location / {{ default_type application/json; return 200 '{{"ok":true}}'; }} }}""", "0")
L.wait_port(L.P_UPSTREAM)
cfg = L.tollgate_config("ab", L.P_TG, L.P_TG_ADMIN, L.P_TG_METRICS, "ab", [L.P_UPSTREAM])
keys_in_store = int(os.environ.get("AB_KEYS", "1000"))
data = os.path.join(L.WORK, "ab"); L.seed(cfg, keys_in_store, min(keys_in_store, 10_000), data)
keys = os.path.join(data, "keys.txt")
script = os.path.join(L.ROOT, "benches", "load", "keys.lua")
bins = {"before": sys.argv[1], "after": sys.argv[2]}
res = {k: {"anon": [], "keys": []} for k in bins}
try:
    for r in range(3):
        for name, binary in bins.items():
            L.BIN = binary
            p, _ = L.start_tollgate(cfg, L.P_TG, L.P_TG_ADMIN, f"ab-{name}")
            L.wait_port(L.P_TG)
            L.wrk(L.P_TG, 32, 2, path="/anon")
            a = L.measure(p, L.P_TG, path="/anon")
            k = L.measure(p, L.P_TG, script=script, env={"CREDENTIALS": keys})
            res[name]["anon"].append(round(a["cpu_us"], 2)); res[name]["keys"].append(round(k["cpu_us"], 2))
            L.log(f"{name} round {r + 1}: anonymous {a['cpu_us']:.2f} µs/req, API key {k['cpu_us']:.2f} µs/req, bad {a['bad'] + k['bad']}")
            os.killpg(p.pid, signal.SIGTERM); p.wait()
finally:
    L.stop_all()
    import shutil
    shutil.rmtree(L.WORK, ignore_errors=True)
for name, runs in res.items():
    print(f"{name}: anonymous {runs['anon']} µs/req, API key {runs['keys']} µs/req")

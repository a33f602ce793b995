"""Resident memory against the number of keys: tollgate started on a store of 1k, 100k and
1M keys (make bench's seeding, one worker), each once ready and after 20,000 API-key
requests drawn from 10k keys, so every usage cell the load creates is counted. Prints a
Markdown table with the growth per key between sizes; `make bench` appends it to the run's
results file.

    python3 benches/load/rss.py [RESULTS_FILE]
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load as L  # noqa: E402

SIZES = [int(n) for n in os.environ.get("RSS_SIZES", "1000,100000,1000000").split(",")]
KNOWN = 10_000

up = L.nginx("upstream", f"""server {{ listen 127.0.0.1:{L.P_UPSTREAM}; location / {{ default_type application/json; return 200 '{{"ok":true}}'; }} }}""", "0")
L.wait_port(L.P_UPSTREAM)
script = os.path.join(L.ROOT, "benches", "load", "keys.lua")
rows = []


def loaded_rss(config, name, keys_file):
    """RSS once ready, and after 3 s of API-key load."""
    process, _ = L.start_tollgate(config, L.P_TG, L.P_TG_ADMIN, name)
    ready = L.rss_mib(process)
    out = L.wrk(L.P_TG, 32, 3, script=script, env={"CREDENTIALS": keys_file}, path="/v1/accounts")
    if out["bad"] != 0 or out["requests"] < 10_000:
        raise SystemExit(f"{name}: {out['requests']} requests, {out['bad']} not 2xx")
    loaded = L.rss_mib(process)
    os.killpg(process.pid, signal.SIGTERM)
    process.wait()
    return ready, loaded


try:
    for size in SIZES:
        name = f"rss{size}"
        config = L.tollgate_config(name, L.P_TG, L.P_TG_ADMIN, L.P_TG_METRICS, name, [L.P_UPSTREAM])
        data = os.path.join(L.WORK, name)
        L.seed(config, size, min(size, KNOWN), data)
        keys_file = os.path.join(data, "keys.txt")
        # The first start loads from the store and writes the snapshot file; the restart
        # builds from that file, as every later start and upgrade does.
        first = loaded_rss(config, name, keys_file)
        restart = loaded_rss(config, name, keys_file)
        L.log(f"{size} keys: first start {first[0]:.1f} / {first[1]:.1f} MiB, restart {restart[0]:.1f} / {restart[1]:.1f} MiB")
        rows.append((size, first, restart))
        for leftover in [f"{name}.db", f"{name}.db.snapshot"]:
            if os.path.exists(os.path.join(L.WORK, leftover)):
                os.remove(os.path.join(L.WORK, leftover))
finally:
    L.stop_all()
    import shutil
    shutil.rmtree(L.WORK, ignore_errors=True)

lines = ["", "## Resident memory by number of keys (benches/load/rss.py)", "",
         "RSS once ready / after 3 s of API-key load. The first start loads from the store; the restart",
         "builds from the snapshot file, as every later start and upgrade does. Bytes per key: the",
         "growth after load since the row above.", "",
         "| keys | first start | restart | bytes per key, first start | bytes per key, restart |",
         "|---|---|---|---|---|"]
previous = None
for size, first, restart in rows:
    growth = ["", ""]
    if previous is not None:
        growth = [f"{(now[1] - before[1]) * 1048576 / (size - previous[0]):.0f}"
                  for now, before in [(first, previous[1]), (restart, previous[2])]]
    lines.append(f"| {size:,} | {first[0]:.0f} / {first[1]:.0f} MiB | {restart[0]:.0f} / {restart[1]:.0f} MiB | {growth[0]} | {growth[1]} |")
    previous = (size, first, restart)
table = "\n".join(lines) + "\n"
print(table)
if len(sys.argv) > 1:
    with open(sys.argv[1], "a") as out:
        out.write(table)

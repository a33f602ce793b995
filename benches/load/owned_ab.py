#!/usr/bin/env python3
"""What the owner and credit checks cost under load, paired: one tollgate (1M keys, of which
10k plain and 10k owned, as `make bench` seeds them), API-key load from the plain keys and
from the owned ones (each of an owner with a shared limit, key and owner both holding
credits) in alternating order, PAIRS pairs of BENCH_SECONDS each (default 10 of 10 s). Prints
each pair and the mean difference with its standard error: the spread between rounds of
`make bench` (several µs) hides differences this measures to about half a µs.

  cargo build --release --bin tollgate --example seed_keys && python3 benches/load/owned_ab.py
"""

import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))
import load as L  # noqa: E402

PAIRS = int(os.environ.get("PAIRS", "10"))


def main():
    L.nginx("upstream", f"server {{ listen 127.0.0.1:{L.P_UPSTREAM}; location / {{ default_type application/json; "
            f"return 200 '{{\"ok\":true}}'; }} }}", "0")
    L.wait_port(L.P_UPSTREAM)
    config = L.tollgate_config("ab", L.P_TG, L.P_TG_ADMIN, L.P_TG_METRICS, "ab", [L.P_UPSTREAM])
    data = os.path.join(L.WORK, "ab")
    L.seed(config, L.KEYS, L.KNOWN, data, owned=L.OWNED)
    tollgate, _ = L.start_tollgate(config, L.P_TG, L.P_TG_ADMIN, "ab")
    script = os.path.join(L.ROOT, "benches", "load", "keys.lua")
    files = {name: os.path.join(data, name + ".txt") for name in ("keys", "owned")}
    differences = []
    print("pair  plain µs/req  owned µs/req  owned − plain")
    for pair in range(PAIRS):
        order = ["keys", "owned"] if pair % 2 == 0 else ["owned", "keys"]
        cpu = {name: L.measure(tollgate, L.P_TG, script=script, env={"CREDENTIALS": files[name]})["cpu_us"]
               for name in order}
        differences.append(cpu["owned"] - cpu["keys"])
        print(f"{pair + 1:4}  {cpu['keys']:12.2f}  {cpu['owned']:12.2f}  {differences[-1]:+13.2f}", flush=True)
    mean = statistics.mean(differences)
    error = statistics.stdev(differences) / len(differences) ** 0.5 if len(differences) > 1 else float("nan")
    print(f"owned − plain: mean {mean:+.2f} µs a request, standard error {error:.2f}, "
          f"median {statistics.median(differences):+.2f} ({PAIRS} pairs of {L.SECONDS} s)")


if __name__ == "__main__":
    try:
        main()
    finally:
        L.stop_all()
        import shutil
        shutil.rmtree(L.WORK, ignore_errors=True)

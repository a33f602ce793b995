#!/usr/bin/env python3
"""`make soak`: a gateway with 100k keys under bounded load for SOAK_MINUTES (default 10),
while a second client creates, rotates and revokes keys without pause. Every 10 s it
samples RSS, open file descriptors and p99 latency; it fails on any error, on steady growth
(RSS beyond what the keys it added explain, or descriptors, rising in every quarter of the
run), or on p99 latency doubling from the first quarter to the last. Revoked keys stay in
the snapshot (they must answer key_revoked), so the churn adds one key per cycle by design.
Not part of `make test`.
"""

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "load"))
import load  # noqa: E402  (reuses the benchmark's helpers)

MINUTES = float(os.environ.get("SOAK_MINUTES", "10"))
KEYS = int(os.environ.get("SOAK_KEYS", "100000"))


def admin(method, path, body=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{load.P_TG_ADMIN}/admin/v1{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {load.TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read() or b"{}")


def churn(stop, errors, counts):
    """Create, rotate, revoke, as fast as the admin API answers."""
    while not stop.is_set():
        try:
            status, key = admin("POST", "/keys", {"name": "churn", "permissions": ["accounts:read"]})
            assert status == 201, status
            status, _ = admin("POST", f"/keys/{key['id']}/rotate", {})
            assert status == 200, status
            status, _ = admin("POST", f"/keys/{key['id']}/revoke", {})
            assert status == 200, status
            counts["changes"] += 3
        except Exception as error:  # noqa: BLE001
            errors.append(f"admin: {error!r}")
            time.sleep(0.5)


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def main():
    upstream = load.nginx("upstream", f"server {{ listen 127.0.0.1:{load.P_UPSTREAM}; location / {{ default_type application/json; return 200 '{{\"ok\":true}}'; }} }}", "0")
    load.wait_port(load.P_UPSTREAM)
    config = load.tollgate_config("tollgate", load.P_TG, load.P_TG_ADMIN, load.P_TG_METRICS, "big", [load.P_UPSTREAM])
    data = os.path.join(load.WORK, "big")
    load.seed(config, KEYS, 10_000, data)
    gateway, _ = load.start_tollgate(config, load.P_TG, load.P_TG_ADMIN, "tollgate")
    # What one key costs, to tell the churn's added keys from a leak.
    time.sleep(2)
    mib_per_key = load.rss_mib(gateway) / KEYS
    script = os.path.join(load.ROOT, "benches", "load", "keys.lua")
    stop, errors, counts = threading.Event(), [], {"changes": 0}
    churner = threading.Thread(target=churn, args=(stop, errors, counts), daemon=True)
    churner.start()
    samples = []
    deadline = time.time() + MINUTES * 60
    while time.time() < deadline:
        result = load.wrk(load.P_TG, 16, 10, script=script, env={"CREDENTIALS": os.path.join(data, "keys.txt")})
        rss = load.rss_mib(gateway)
        sample = {"t": round(time.time() - (deadline - MINUTES * 60)), "rss": rss, "fds": fds(gateway.pid),
                  "rss_beyond_keys": rss - counts["changes"] / 3 * mib_per_key,
                  "p99": result["p99"], "rps": result["rps"], "bad": result["bad"], "changes": counts["changes"]}
        samples.append(sample)
        load.log(json.dumps(sample))
        if result["bad"]:
            errors.append(f"{result['bad']} failed requests at {sample['t']} s")
    stop.set()
    churner.join(timeout=15)
    quarters = [samples[i * len(samples) // 4:(i + 1) * len(samples) // 4] for i in range(4)]
    def steady_growth(field):
        means = [statistics.mean(s[field] for s in q) for q in quarters if q]
        return len(means) == 4 and all(b > a * 1.02 for a, b in zip(means, means[1:]))
    growth = [field for field in ["rss_beyond_keys", "fds"] if steady_growth(field)]
    p99_first = statistics.mean(s["p99"] for s in quarters[0]) if quarters[0] else 0
    p99_last = statistics.mean(s["p99"] for s in quarters[-1]) if quarters[-1] else 0
    if p99_first and p99_last > 2 * p99_first:
        growth.append(f"p99 {p99_first:.0f} -> {p99_last:.0f} us")
    first, last = samples[0], samples[-1]
    print(f"soak {MINUTES:g} min, {KEYS} keys: {len(samples)} samples; RSS {first['rss']:.0f} -> {last['rss']:.0f} MiB "
          f"(max {max(s['rss'] for s in samples):.0f}); fds {first['fds']} -> {last['fds']}; "
          f"p99 {min(s['p99'] for s in samples):.0f}-{max(s['p99'] for s in samples):.0f} us; "
          f"{statistics.mean(s['rps'] for s in samples):.0f} req/s; {counts['changes']} key changes "
          f"({counts['changes'] // 3} keys added, {counts['changes'] / 3 * mib_per_key:.1f} MiB of them at {mib_per_key * 1e6:.0f} MiB per million); "
          f"errors: {len(errors)}")
    if errors or growth:
        raise SystemExit(f"soak failed: errors {errors[:5]}, steady growth in {growth}")


if __name__ == "__main__":
    try:
        main()
    finally:
        load.stop_all()

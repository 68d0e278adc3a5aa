"""The report of bench/run.sh: reads the JSON reports `courier bench` wrote to OUT and prints markdown tables,
the figures, their ratios to the transport ceiling measured in the same run, and each target (docs/benchmarks.md)
met or not. Absolute numbers move with the machine; the ratios are the claim.

Usage: python report.py OUT
"""

import json
import os
import sys

out = sys.argv[1]


def load(name):
    path = os.path.join(out, f"{name}.json")
    return json.load(open(path)) if os.path.exists(path) else None


def errors(run):
    return sum(n for _, n in run["errors"])


def ms(us):
    return f"{us / 1000:.2f}"


def cpu(run):
    return run.get("server_cpu_per_call_us")


def times(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


ceiling = {"Authorize": load("ceiling-authorize"), "GetUser": load("ceiling-get-user")}
rows = [
    ("transport ceiling (bare tonic, from memory)", "Authorize", ceiling["Authorize"]),
    ("transport ceiling (bare tonic, from memory)", "GetUser", ceiling["GetUser"]),
    ("courier up (SQLite, auth, risk, tracing, metrics)", "Authorize", load("courier-authorize")),
    ("courier up (SQLite, auth, risk, tracing, metrics)", "GetUser", load("courier-get-user")),
    ("courier up, REST/JSON on the same port", "Authorize", load("courier-authorize-rest")),
    ("courier up, REST/JSON on the same port", "GetUser", load("courier-get-user-rest")),
    ("courier up on PostgreSQL 15 (local)", "Authorize", load("courier-postgres")),
    ("courier up, store of 1M accounts and 10M authorizations", "Authorize", load("courier-big")),
    ("Python grpcio + sqlite3 + Python risk", "Authorize", load("python-authorize")),
]
print("| server | call | transport | calls/s (closed loop) | p50 ms | p99 ms | server CPU per call | "
      "CPU vs ceiling | calls/s vs ceiling | errors |")
print("|---|---|---|---|---|---|---|---|---|---|")
for server, call, run in rows:
    if run is None:
        continue
    base = ceiling[call]
    print(f"| {server} | {call} | {run['transport']} | {run['throughput']:.0f} | {ms(run['p50_us'])} | "
          f"{ms(run['p99_us'])} | {cpu(run):.1f} µs | {times(cpu(run), cpu(base))} | "
          f"{run['throughput'] / base['throughput']:.1%} | {errors(run)} |")

courier = load("courier-authorize")
half, stream, held = load("courier-half"), load("courier-stream"), load("courier-idle")
rss_before, rss_idle, idle = (int(x) for x in open(os.path.join(out, "courier-rss.txt")).read().split())
rest = {call: load(f"courier-{name}-rest") for call, name in [("Authorize", "authorize"), ("GetUser", "get-user")]}
grpc = {"Authorize": courier, "GetUser": load("courier-get-user")}
print()
print("| courier | figure |")
print("|---|---|")
print(f"| p99 at half its maximum throughput ({half['mode']}, open loop) | {ms(half['p99_us'])} ms "
      f"(p50 {ms(half['p50_us'])} ms, {half['throughput']:.0f} calls/s answered, {errors(half)} errors) |")
print(f"| AuthorizeStream, one stream, {stream['scenario']} | {stream['throughput']:.0f} authorizations/s, "
      f"{cpu(stream):.1f} µs server CPU per message (p50 {ms(stream['p50_us'])} ms, p99 {ms(stream['p99_us'])} ms, "
      f"{errors(stream)} errors) |")
print(f"| resident memory (VmRSS) with {idle} idle client connections | {rss_idle / 1024:.1f} MiB "
      f"(before: {rss_before / 1024:.1f} MiB; {held['ok']} connections answered) |")
for call in ("GetUser", "Authorize"):
    r, g = rest[call], grpc[call]
    print(f"| REST/JSON against gRPC, {call} | REST costs {times(cpu(r), cpu(g))} gRPC's server CPU per call; "
          f"gRPC answers {times(g['throughput'], r['throughput'])} REST's calls/s |")

big = load("courier-big")
if big is not None:
    started, listening = (float(x) for x in open(os.path.join(out, "courier-big-startup.txt")).read().split())
    print(f"| start-up on the store of 1M accounts and 10M authorizations (to listening) | "
          f"{listening - started:.1f} s |")

python = load("python-authorize")
postgres = load("courier-postgres")
targets = [
    ("Authorize: server CPU per call <= 3x the ceiling's", cpu(courier) / cpu(ceiling["Authorize"]), "x", 3, "<="),
    ("Authorize: closed-loop throughput >= 33 % of the ceiling's",
     100 * courier["throughput"] / ceiling["Authorize"]["throughput"], " %", 33, ">="),
    ("GetUser: server CPU per call <= 2x the ceiling's", cpu(grpc["GetUser"]) / cpu(ceiling["GetUser"]), "x", 2, "<="),
    ("p99 <= 5 ms at half of the measured maximum (open loop)", half["p99_us"] / 1000, " ms", 5, "<="),
    ("AuthorizeStream, one stream: >= 100,000 authorizations/s", stream["throughput"], "/s", 100_000, ">="),
    ("AuthorizeStream, one stream: server CPU per message <= 8 µs", cpu(stream), " µs", 8, "<="),
    ("Python baseline: >= 30x the server CPU per Authorize", cpu(python) / cpu(courier), "x", 30, ">="),
    (f"VmRSS with {idle} idle connections <= 100 MiB", rss_idle / 1024, " MiB", 100, "<="),
]
if postgres is not None:
    targets.append(("PostgreSQL, one process: >= 5,000 Authorize/s at the same load", postgres["throughput"], "/s",
                    5_000, ">="))
if big is not None:
    targets.append(("1M accounts and 10M authorizations stored: server CPU per Authorize <= 1.5x the empty store's",
                    cpu(big) / cpu(courier), "x", 1.5, "<="))
print()
print("| target | measured | met |")
print("|---|---|---|")
for name, value, unit, limit, sense in targets:
    met = value <= limit if sense == "<=" else value >= limit
    shown = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
    print(f"| {name} | {shown}{unit} | {'yes' if met else 'no'} |")

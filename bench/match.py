"""Matcher throughput, compile time and memory vs an exact dict and a substring automaton.

``python -m bench match [--quick] [--rules N] [--queries N] [--sample N] [--seed N]``

Rules (mixed exact names, ``*.`` wildcards, IPv4 and IPv6 prefixes) and queries (about
half of them matching, the rest near misses and unrelated names) are generated from a
seed. Baselines, measured in the same run:

- the floor: an exact ``dict`` lookup of the whole name (no wildcards, no normalisation),
  timed in the same two loop shapes as the matcher over the same query list: per item (a
  Python call per query: ``match_host`` vs a function doing ``dict.get``) and batch (one
  call over the list: ``match_hosts`` vs a comprehension of ``dict.get``). The goals are
  judged per item, the shape of the issue's figures and of pyahocorasick's loop;
- pyahocorasick: every host rule as a substring, the 2021 ``*t.co*`` semantics, one
  Python call per query. Its wrong matches are the collateral hits that rule style would
  have caused.

Our wrong matches are counted against ``ReferenceMatcher`` (a linear scan) on a sample.
Times are CPU seconds of this process (best of ``--repeat``), robust on a shared machine.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from takedown.match import Matcher, ReferenceMatcher

TLDS = ["com", "net", "org", "ru", "io", "info", "de", "co.uk", "com.br", "jp"]
SYLLABLES = ["ka", "to", "mi", "ra", "ne", "so", "lu", "vi", "de", "po", "zen", "tor", "bel"]
SUBS = ["www", "pbs", "video", "api", "cdn", "m", "img", "static", "upload", "mail"]


def _rss() -> int:
    """Resident set size of this process in bytes (Linux), 0 if unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _peak_rss() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _word(rng: random.Random, i: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) + str(i)


def generate(
    n_rules: int, n_queries: int, seed: int
) -> tuple[list[tuple[str, int]], list[tuple[str, int]], list[str], list[str]]:
    """(host rules, IP rules, host queries, IP queries); keys are rule numbers."""
    rng = random.Random(seed)
    n_exact = n_rules * 35 // 100
    n_wild = n_rules * 35 // 100
    n_v4 = n_rules * 20 // 100
    n_v6 = n_rules - n_exact - n_wild - n_v4
    host_rules: list[tuple[str, int]] = []
    for i in range(n_exact + n_wild):
        domain = f"{_word(rng, i)}.{rng.choice(TLDS)}"
        if i < n_exact:
            pattern = domain if rng.random() < 0.5 else f"{rng.choice(SUBS)}.{domain}"
        else:
            pattern = "*." + (domain if rng.random() < 0.7 else f"{rng.choice(SUBS)}.{domain}")
        host_rules.append((pattern, i))
    ip_rules: list[tuple[str, int]] = []
    key = len(host_rules)
    for _ in range(n_v4):
        plen = rng.choices([32, 24, 16, 20, 12], [50, 30, 10, 8, 2])[0]
        value = rng.getrandbits(32) >> (32 - plen) << (32 - plen)
        text = str(ipaddress.IPv4Address(value))
        ip_rules.append((text if plen == 32 else f"{text}/{plen}", key))
        key += 1
    for _ in range(n_v6):
        plen = rng.choice([128, 64, 56, 48, 32])
        value = (0x2001 << 112 | rng.getrandbits(112)) >> (128 - plen) << (128 - plen)
        text = str(ipaddress.IPv6Address(value))
        ip_rules.append((text if plen == 128 else f"{text}/{plen}", key))
        key += 1

    n_ip_queries = n_queries * len(ip_rules) // max(1, n_rules)
    host_queries: list[str] = []
    for _ in range(n_queries - n_ip_queries):
        pattern, _k = rng.choice(host_rules)
        base = pattern.removeprefix("*.")
        if rng.random() < 0.5:  # matching
            if pattern.startswith("*."):
                name = f"{rng.choice(SUBS)}.{base}"
                if rng.random() < 0.2:
                    name = f"{rng.choice(SUBS)}.{name}"
            else:
                name = base
            if rng.random() < 0.02:  # a few in upper case or with the root dot
                name = name.upper() if rng.random() < 0.5 else name + "."
        else:  # near misses: suffix attacks, substrings, the wildcard's own base, unrelated
            name = rng.choice(
                [
                    f"{base}.evil.example",
                    f"not{base}",
                    f"{base.split('.')[0]}x.{base.split('.', 1)[1]}",
                    base if pattern.startswith("*.") else f"x{base}",
                    f"{_word(rng, rng.randint(0, 10**9))}.{rng.choice(TLDS)}",
                ]
            )
        host_queries.append(name)
    ip_queries: list[str] = []
    for _ in range(n_ip_queries):
        text, _k = rng.choice(ip_rules)
        net = ipaddress.ip_network(text)
        if rng.random() < 0.5:
            addr = net.network_address + rng.randrange(net.num_addresses)
        elif net.version == 4:
            addr = ipaddress.IPv4Address(rng.getrandbits(32))
        else:
            addr = ipaddress.IPv6Address(0x2001 << 112 | rng.getrandbits(112))
        ip_queries.append(str(addr))
    return host_rules, ip_rules, host_queries, ip_queries


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds / 1e6:.3f} M/s" if seconds > 0 else "inf"


def _timed(label: str, fn: Callable[[], Any], n: int, repeat: int = 1) -> tuple[float, Any]:
    """Best of ``repeat`` runs, and the last run's result.

    Timed in CPU seconds of this process: on a shared machine wall time counts the
    moments other processes hold the CPU.
    """
    best = float("inf")
    out = None
    for _ in range(repeat):
        out = None
        gc.collect()
        start = time.process_time()
        out = fn()
        best = min(best, time.process_time() - start)
    print(f"  {label:<44} {best:8.3f} s  {_rate(n, best)}")
    return best, out


def _ac_keys(automaton: Any, name: str) -> list[int]:
    return [key for _end, keys in automaton.iter(name) for key in keys]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench match", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="50k rules, 50k queries")
    parser.add_argument("--rules", type=int, default=None)
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument("--sample", type=int, default=None, help="queries checked vs reference")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--repeat", type=int, default=3, help="query timings: best of N")
    args = parser.parse_args(argv)
    n_rules = args.rules or (50_000 if args.quick else 1_000_000)
    n_queries = args.queries or (50_000 if args.quick else 1_000_000)
    sample = args.sample or (500 if args.quick else 100)
    rep = args.repeat

    print(f"generating {n_rules:,} rules and {n_queries:,} queries (seed {args.seed})")
    host_rules, ip_rules, host_q, ip_q = generate(n_rules, n_queries, args.seed)
    print(
        f"  {len(host_rules):,} host rules ({sum(p.startswith('*.') for p, _ in host_rules):,}"
        f" wildcards), {len(ip_rules):,} IP rules; {len(host_q):,} host and {len(ip_q):,}"
        " IP queries"
    )

    print("compile")
    gc.collect()
    rss0 = _rss()
    compile_s, matcher = _timed(
        "Matcher.compile", lambda: Matcher.compile(host_rules, ip_rules), n_rules
    )
    gc.collect()
    matcher_bytes = _rss() - rss0
    floor: dict[str, int] = {}
    for pattern, key in host_rules:
        floor.setdefault(pattern.removeprefix("*."), key)

    # Two loop shapes, each the same for the floor and the matcher over the same list:
    # per item (a Python call per query in a list comprehension, as a caller with one name
    # at a time has) and batch (one call over the whole list, the loop inside it).
    print("host queries, per item (one call per query)")
    floor_get = floor.get

    def exact_lookup(name: str) -> int | None:
        return floor_get(name)

    def exact_batch(queries: list[str]) -> list[int | None]:
        get = floor.get
        return [get(q) for q in queries]

    match_host = matcher.match_host
    floor_s, _ = _timed(
        "floor: dict lookup of the whole name",
        lambda: [exact_lookup(q) for q in host_q],
        len(host_q),
        rep,
    )
    ours_s, ours = _timed(
        "Matcher.match_host", lambda: [match_host(q) for q in host_q], len(host_q), rep
    )
    print("host queries, batch (one call for all)")
    floor_b_s, _ = _timed(
        "floor: dict lookups in one loop", lambda: exact_batch(host_q), len(host_q), rep
    )
    ours_b_s, ours_b = _timed(
        "Matcher.match_hosts", lambda: matcher.match_hosts(host_q), len(host_q), rep
    )
    batch_disagree = sum(a != b for a, b in zip(ours, ours_b, strict=True))
    matched_share = sum(1 for r in ours if r) / max(1, len(ours))

    print("IP queries, per item")
    ip_floor = {text: key for text, key in ip_rules}
    ip_get = ip_floor.get

    def exact_ip(addr: str) -> int | None:
        return ip_get(addr)

    def exact_ip_batch(queries: list[str]) -> list[int | None]:
        get = ip_floor.get
        return [get(q) for q in queries]

    match_ip = matcher.match_ip
    ipfloor_s, _ = _timed(
        "floor: dict lookup of the address text",
        lambda: [exact_ip(q) for q in ip_q],
        len(ip_q),
        rep,
    )
    ipours_s, ours_ip = _timed(
        "Matcher.match_ip", lambda: [match_ip(q) for q in ip_q], len(ip_q), rep
    )
    print("IP queries, batch")
    ipfloor_b_s, _ = _timed(
        "floor: dict lookups in one loop", lambda: exact_ip_batch(ip_q), len(ip_q), rep
    )
    ipours_b_s, ours_ip_b = _timed(
        "Matcher.match_ips", lambda: matcher.match_ips(ip_q), len(ip_q), rep
    )
    batch_disagree += sum(a != b for a, b in zip(ours_ip, ours_ip_b, strict=True))
    ip_matched_share = sum(1 for r in ours_ip if r) / max(1, len(ours_ip))

    print("pyahocorasick (substring semantics)")
    import ahocorasick

    gc.collect()
    rss1 = _rss()

    def build() -> Any:
        automaton = ahocorasick.Automaton()
        for pattern, key in host_rules:
            word = pattern.removeprefix("*.")
            existing = automaton.get(word, None)
            automaton.add_word(word, [*existing, key] if existing else [key])
        automaton.make_automaton()
        return automaton

    ac_build_s, automaton = _timed("build automaton", build, len(host_rules))
    gc.collect()
    ac_bytes = _rss() - rss1
    lowered = [q.lower().rstrip(".") for q in host_q]  # give it normalised names
    ac_s, ac_out = _timed(
        "automaton.iter per query",
        lambda: [_ac_keys(automaton, q) for q in lowered],
        len(host_q),
        rep,
    )

    # Wrong matches of the automaton, judged by our matcher (itself judged below).
    ac_wrong_queries = 0
    ac_extra_hits = 0
    ac_missed = 0
    for got, want in zip(ac_out, ours, strict=True):
        if sorted(got) != sorted(want):
            ac_wrong_queries += 1
            extra = set(got) - set(want)
            ac_extra_hits += len(extra)
            ac_missed += len(set(want) - set(got))

    print(f"reference check on a sample of {sample:,} host and {sample:,} IP queries")
    rng = random.Random(args.seed + 1)
    host_sample = rng.sample(range(len(host_q)), min(sample, len(host_q)))
    ip_sample = rng.sample(range(len(ip_q)), min(sample, len(ip_q)))
    start = time.perf_counter()
    reference: ReferenceMatcher[int] = ReferenceMatcher.compile(host_rules, ip_rules)
    ours_wrong = sum(reference.match_host(host_q[i]) != list(ours[i]) for i in host_sample)
    ours_wrong += sum(reference.match_ip(ip_q[i]) != list(ours_ip[i]) for i in ip_sample)
    ac_wrong_sample = sum(
        sorted(reference.match_host(host_q[i])) != sorted(ac_out[i]) for i in host_sample
    )
    print(f"  checked in {time.perf_counter() - start:.1f} s")

    peak = _peak_rss()
    host_vs_floor = floor_s / ours_s if ours_s else float("inf")
    ip_vs_floor = ipfloor_s / ipours_s if ipours_s else float("inf")
    vs_ac = ac_s / ours_s if ours_s else float("inf")
    host_vs_floor_b = floor_b_s / ours_b_s if ours_b_s else float("inf")
    ip_vs_floor_b = ipfloor_b_s / ipours_b_s if ipours_b_s else float("inf")
    _report(
        [
            ("rules compiled", f"{len(matcher):,}", ""),
            ("compile time", f"{compile_s:.2f} s", _goal(compile_s < 5, "< 5 s")),
            (
                "matcher memory (RSS delta)",
                f"{matcher_bytes / 2**20:.0f} MiB",
                _goal(matcher_bytes < 2**30, "< 1 GiB"),
            ),
            ("peak RSS of the whole run", f"{peak / 2**20:.0f} MiB", ""),
            ("host queries matching", f"{matched_share:.1%}", ""),
            ("IP queries matching", f"{ip_matched_share:.1%}", ""),
            ("host throughput, per item", _rate(len(host_q), ours_s), ""),
            (
                "  vs exact-dict floor, per item",
                f"{host_vs_floor:.2f}x",
                _goal(host_vs_floor >= 1 / 3, ">= 0.33x"),
            ),
            ("  vs pyahocorasick, per item", f"{vs_ac:.2f}x", _goal(vs_ac >= 3, ">= 3x")),
            ("host throughput, batch", _rate(len(host_q), ours_b_s), ""),
            ("  vs exact-dict floor, batch", f"{host_vs_floor_b:.2f}x", ""),
            ("IP throughput, per item", _rate(len(ip_q), ipours_s), ""),
            ("  vs exact-dict floor, per item", f"{ip_vs_floor:.2f}x", ""),
            ("IP throughput, batch", _rate(len(ip_q), ipours_b_s), ""),
            ("  vs exact-dict floor, batch", f"{ip_vs_floor_b:.2f}x", ""),
            (
                "our wrong matches (sample vs reference)",
                f"{ours_wrong}",
                _goal(ours_wrong == 0, "0"),
            ),
            (
                "batch and per-item answers differing",
                f"{batch_disagree}",
                _goal(batch_disagree == 0, "0"),
            ),
            ("pyahocorasick build", f"{ac_build_s:.2f} s, {ac_bytes / 2**20:.0f} MiB", ""),
            ("pyahocorasick wrong queries (all)", f"{ac_wrong_queries:,} of {len(host_q):,}", ""),
            ("  collateral hits it would cause", f"{ac_extra_hits:,}", ""),
            ("  matches it misses (wildcards)", f"{ac_missed:,}", ""),
            ("  wrong on the reference sample", f"{ac_wrong_sample} of {len(host_sample)}", ""),
        ]
    )
    ok = compile_s < 5 and matcher_bytes < 2**30 and ours_wrong == 0 and batch_disagree == 0
    ok = ok and host_vs_floor >= 1 / 3
    return 0 if ok and vs_ac >= 3 else 1


def _goal(met: bool, goal: str) -> str:
    return f"goal {goal}: {'met' if met else 'MISSED'}"


def _report(rows: Sequence[tuple[str, str, str]]) -> None:
    print("\nresults")
    for label, value, note in rows:
        print(f"  {label:<42} {value:>24}  {note}")

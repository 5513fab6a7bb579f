#!/usr/bin/env python3
"""Strict check of an Autobahn|Testsuite report (index.json): every case OK, every close OK.

usage: autobahn_check.py REPORT_DIR_OR_INDEX_JSON [--min-cases N] [--label NAME]

summarize.py --strict already fails on FAILED and UNIMPLEMENTED; this also fails on NON-STRICT,
INFORMATIONAL and on any behaviorClose other than OK (except 7.1.6, 7.13.1 and 7.13.2, which
wstest always rates INFORMATIONAL), and lists the offending case ids with their verdicts. Prints the counts by verdict per agent. Exit 0 when all is OK, 1 otherwise,
2 when the report is missing or empty. Python 3 standard library only.
"""

import argparse
import json
import os
import sys
from collections import Counter


# Cases whose verdict wstest sets to INFORMATIONAL (behavior and behaviorClose) whatever the
# peer does: 7.1.6 (close right behind a 256 KiB message: processing order is implementation
# defined) and 7.13.1/7.13.2 (CLOSE with code 5000 / 65536-range: "undefined by the spec").
# See autobahntestsuite/case/case7_1_6.py, case7_13_1.py, case7_13_2.py.
ALWAYS_INFORMATIONAL = {"7.1.6", "7.13.1", "7.13.2"}


def verdict_ok(case_id, case):
    if case_id in ALWAYS_INFORMATIONAL:
        return (case.get("behavior") == "INFORMATIONAL"
                and case.get("behaviorClose") == "INFORMATIONAL")
    return case.get("behavior") == "OK" and case.get("behaviorClose") == "OK"


def case_result(index_path, agent, case_id):
    """The `result` text of a case's own report (what happened in an INFORMATIONAL case)."""
    name = os.path.join(os.path.dirname(index_path), "%s_case_%s.json" % (
        agent.lower().replace(" ", "_"), case_id.replace(".", "_")))
    try:
        with open(name, encoding="utf-8") as f:
            return json.load(f).get("result", "")
    except (OSError, ValueError):
        return ""


def case_key(case_id):
    return [int(p) if p.isdigit() else 0 for p in case_id.split(".")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report")
    ap.add_argument("--min-cases", type=int, default=0)
    ap.add_argument("--label", default="")
    args = ap.parse_args(argv)
    path = args.report
    if os.path.isdir(path):
        path = os.path.join(path, "index.json")
    label = args.label + ": " if args.label else ""
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        print("%scheck: cannot read %s: %s" % (label, path, e))
        return 2
    if not isinstance(index, dict) or not index:
        print("%scheck: %s holds no agents" % (label, path))
        return 2
    bad_total = 0
    for agent in sorted(index):
        cases = index[agent] or {}
        ids = sorted(cases, key=case_key)
        beh = Counter(cases[c].get("behavior", "?") for c in ids)
        close = Counter(cases[c].get("behaviorClose", "?") for c in ids)
        bad = [c for c in ids if not verdict_ok(c, cases[c])]
        print("%scheck agent %s: %d cases" % (label, agent, len(ids)))
        print("  behavior:      " + ", ".join("%s=%d" % kv for kv in sorted(beh.items())))
        print("  behaviorClose: " + ", ".join("%s=%d" % kv for kv in sorted(close.items())))
        for c in ids:
            if c in ALWAYS_INFORMATIONAL:
                print("  (informational by design) %-7s %s" % (c, case_result(path, agent, c)))
        for c in bad:
            print("  NOT OK %-10s behavior=%s behaviorClose=%s" % (
                c, cases[c].get("behavior"), cases[c].get("behaviorClose")))
        if len(ids) < args.min_cases:
            print("  TOO FEW CASES: %d < %d" % (len(ids), args.min_cases))
            bad_total += args.min_cases - len(ids)
        bad_total += len(bad)
    print("%scheck: %s" % (label, "all OK" if bad_total == 0 else "%d not OK" % bad_total))
    return 1 if bad_total else 0


if __name__ == "__main__":
    sys.exit(main())

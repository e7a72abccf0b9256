#!/usr/bin/env python3
"""Differential test: `jiuzhu simulate` against the Python reference.

    python3 differential.py [--bin PATH] [--count N] [--seed S] [--keep]

For each of N scenarios (seeds S, S+1, ..., S+N-1; see scenarios.py) it
writes the inputs to a temporary directory, computes results.csv with
reference.py and with `PATH simulate --policy P --spells S --invoices I
--out R`, and compares the two byte for byte.  On a difference it prints the
scenario seed, the first differing line of each and where the inputs are
(that directory is kept).  The last line is `N passed, M failed`; the exit
status is 0 only if all agree.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import reference  # noqa: E402
import scenarios  # noqa: E402


def first_difference(got, want):
    a, b = got.split(b"\n"), want.split(b"\n")
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else b"<missing>"
        y = b[i] if i < len(b) else b"<missing>"
        if x != y:
            return i + 1, x, y
    return None


def run_one(binary, seed, keep, scale=1):
    """(ok, message lines) for one scenario."""
    directory = tempfile.mkdtemp(prefix=f"jiuzhu-diff-{seed}-")
    paths = scenarios.write_scenario(seed, directory, scale)
    policy, spells, invoices = paths["policy.toml"], paths["spells.csv"], paths["invoices.csv"]
    ref_out = os.path.join(directory, "expected.csv")
    bin_out = os.path.join(directory, "results.csv")
    messages = []
    try:
        want = reference.run(policy, spells, invoices)
    except Exception as e:  # the generator made an input the reference refuses
        messages.append(f"seed {seed}: the reference refused the scenario: {e!r}")
        messages.append(f"  inputs kept in {directory}")
        return False, messages
    with open(ref_out, "wb") as f:
        f.write(want)
    proc = subprocess.run(
        [binary, "simulate", "--policy", policy, "--spells", spells,
         "--invoices", invoices, "--out", bin_out],
        capture_output=True,
    )
    if proc.returncode != 0:
        messages.append(f"seed {seed}: {os.path.basename(binary)} exited with status {proc.returncode}")
        for line in proc.stderr.decode("utf-8", "replace").splitlines()[:10]:
            messages.append(f"  stderr: {line}")
        messages.append(f"  inputs kept in {directory}")
        return False, messages
    try:
        with open(bin_out, "rb") as f:
            got = f.read()
    except OSError as e:
        messages.append(f"seed {seed}: no results file: {e}")
        messages.append(f"  inputs kept in {directory}")
        return False, messages
    if got != want:
        line, x, y = first_difference(got, want)
        messages.append(f"seed {seed}: results differ, first at line {line}")
        messages.append(f"  binary:    {x.decode('utf-8', 'replace')}")
        messages.append(f"  reference: {y.decode('utf-8', 'replace')}")
        messages.append(f"  inputs kept in {directory} (reference output: expected.csv)")
        return False, messages
    if not keep:
        shutil.rmtree(directory, ignore_errors=True)
    return True, messages


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=os.path.join(REPO, "target", "release", "jiuzhu"))
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scale", type=int, default=1, help="multiply people and invoices per scenario")
    parser.add_argument("--keep", action="store_true", help="keep the directories of passing scenarios too")
    args = parser.parse_args()

    binary = os.path.abspath(args.bin)
    if not os.path.exists(binary):
        print(f"no binary at {binary} (build with: cargo build --release -p jiuzhu-cli)")
        print(f"0 passed, {args.count} failed")
        return 1
    passed = failed = 0
    for seed in range(args.seed, args.seed + args.count):
        ok, messages = run_one(binary, seed, args.keep, args.scale)
        for m in messages:
            print(m)
        if ok:
            passed += 1
        else:
            failed += 1
        sys.stdout.flush()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

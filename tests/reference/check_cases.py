#!/usr/bin/env python3
"""Run a simulate binary (or the reference) on every hand-written case.

    python3 check_cases.py [--bin PATH] [--reference]

Each directory under cases/ holds policy.toml, spells.csv, invoices.csv and
expected.csv, the results worked out by hand from the specification.  The
binary is run as `PATH simulate --policy P --spells S --invoices I --out R`
and R is compared byte for byte with expected.csv.  With --reference,
reference.py is checked instead of a binary.  The last line is
`N passed, M failed`; the exit status is 0 only if nothing failed.
"""

import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def first_difference(got, want):
    a, b = got.split(b"\n"), want.split(b"\n")
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else b"<missing>"
        y = b[i] if i < len(b) else b"<missing>"
        if x != y:
            return i + 1, x, y
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=os.path.join(REPO, "target", "release", "jiuzhu"))
    parser.add_argument("--reference", action="store_true", help="check reference.py instead")
    parser.add_argument("--cases", default=os.path.join(HERE, "cases"))
    args = parser.parse_args()

    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="jiuzhu-cases-") as tmp:
        for name in sorted(os.listdir(args.cases)):
            case = os.path.join(args.cases, name)
            if not os.path.isdir(case):
                continue
            out = os.path.join(tmp, name + ".csv")
            inputs = [
                "--policy", os.path.join(case, "policy.toml"),
                "--spells", os.path.join(case, "spells.csv"),
                "--invoices", os.path.join(case, "invoices.csv"),
                "--out", out,
            ]
            if args.reference:
                cmd = [sys.executable, os.path.join(HERE, "reference.py")] + inputs
            else:
                cmd = [args.bin, "simulate"] + inputs
            proc = subprocess.run(cmd, capture_output=True)
            with open(os.path.join(case, "expected.csv"), "rb") as f:
                want = f.read()
            if proc.returncode != 0:
                failed += 1
                print(f"FAIL {name}: exit status {proc.returncode}")
                sys.stdout.write(proc.stderr.decode("utf-8", "replace"))
                continue
            with open(out, "rb") as f:
                got = f.read()
            if got == want:
                passed += 1
                print(f"ok   {name}")
            else:
                failed += 1
                line, x, y = first_difference(got, want)
                print(f"FAIL {name}: first difference at line {line}")
                print(f"  got:      {x!r}")
                print(f"  expected: {y!r}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

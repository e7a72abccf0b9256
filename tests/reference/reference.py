#!/usr/bin/env python3
"""Reference implementation of the assistance calculation.

Written from the specification only (calculation.md and formats.md), with the
Python 3.11 standard library, to cross-check `jiuzhu simulate`.

    python3 reference.py --policy P --spells S --invoices I --out R

It implements the calculation for *valid* inputs.  It checks the inputs only
as far as it needs to read them; a malformed input makes it stop with a
message and exit status 2, but it does not try to reproduce the CLI's error
reporting.

Money is handled as integer fen and ratios as integer basis points, parsed by
hand from their text; timestamps are compared as instants with their
fractions of a second compared exactly (no floats, no Decimal).
"""

import argparse
import csv
import datetime
import io
import re
import sys
import tomllib

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"

RESULT_COLUMNS = (
    "invoice_no",
    "person_id",
    "year",
    "category",
    "pool",
    "base",
    "deductible_applied",
    "eligible",
    "amount",
    "outcome",
    "policy_version",
)


class InputError(Exception):
    pass


# --------------------------------------------------------------------------
# Scalars


_ID_RE = re.compile(r"[0-9]{17}[0-9Xx]")


def canonical_id(text):
    """An 18-character resident ID in canonical form (upper-case X)."""
    if not _ID_RE.fullmatch(text):
        raise InputError(f"not a resident ID: {text!r}")
    total = sum(int(c) * w for c, w in zip(text[:17], ID_WEIGHTS))
    expected = ID_CHECK[total % 11]
    check = text[17].upper()
    if check != expected:
        raise InputError(f"bad check character in {text!r} (expected {expected})")
    return text[:17] + check


_MONEY_RE = re.compile(r"([0-9]{1,12})(?:\.([0-9]{1,2}))?")


def parse_money(text):
    """Yuan text -> integer fen."""
    m = _MONEY_RE.fullmatch(text)
    if not m:
        raise InputError(f"not an amount: {text!r}")
    whole, frac = m.group(1), m.group(2) or ""
    return int(whole) * 100 + int((frac + "00")[:2])


_RATIO_RE = re.compile(r"([0-9]+)(?:\.([0-9]{1,4}))?")


def parse_ratio(text):
    """Ratio text (0..1, at most 4 decimals) -> integer basis points."""
    m = _RATIO_RE.fullmatch(text)
    if not m:
        raise InputError(f"not a ratio: {text!r}")
    whole, frac = m.group(1), m.group(2) or ""
    bp = int(whole) * 10000 + int((frac + "0000")[:4])
    if bp > 10000:
        raise InputError(f"ratio above 1: {text!r}")
    return bp


def format_money(fen):
    return f"{fen // 100}.{fen % 100:02d}"


_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


def parse_date(text):
    """'YYYY-MM-DD' -> datetime.date (validated)."""
    m = _DATE_RE.fullmatch(text)
    if not m:
        raise InputError(f"not a date: {text!r}")
    try:
        return datetime.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise InputError(f"not a date: {text!r}") from None


_TS_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def parse_instant(text):
    """RFC 3339 timestamp -> (UTC seconds, fraction digits without trailing zeros).

    The seconds are counted from an arbitrary fixed epoch; the fraction is kept
    as a digit string so that it is compared exactly whatever its length.
    """
    m = _TS_RE.fullmatch(text)
    if not m:
        raise InputError(f"not a timestamp: {text!r}")
    y, mo, d, h, mi, s, frac, off = m.groups()
    try:
        day = datetime.date(int(y), int(mo), int(d)).toordinal()
    except ValueError:
        raise InputError(f"not a timestamp: {text!r}") from None
    h, mi, s = int(h), int(mi), int(s)
    if h > 23 or mi > 59 or s > 59:
        raise InputError(f"not a timestamp: {text!r}")
    if off in ("Z", "z"):
        offset = 0
    else:
        oh, om = int(off[1:3]), int(off[4:6])
        if oh > 23 or om > 59:
            raise InputError(f"bad offset in {text!r}")
        offset = (oh * 3600 + om * 60) * (1 if off[0] == "+" else -1)
    seconds = day * 86400 + h * 3600 + mi * 60 + s - offset
    return seconds, (frac or "").rstrip("0")


# --------------------------------------------------------------------------
# Policy


class PoolEntry:
    def __init__(self, deductible, ratio, out_of_scope_ratio, cap):
        self.deductible = deductible
        self.ratio = ratio
        self.out_of_scope_ratio = out_of_scope_ratio
        self.cap = cap


class Rule:
    def __init__(self, annual_cap, pools):
        self.annual_cap = annual_cap
        self.pools = pools


class Policy:
    def __init__(self, ranks, pools, versions):
        self.ranks = ranks  # category code -> rank
        self.pools = pools  # visit type -> pool name
        self.versions = versions  # [(date, 'YYYY-MM-DD', {code: Rule})] sorted by date

    def version_on(self, day):
        found = None
        for version in self.versions:
            if version[0] <= day:
                found = version
        return found


def _date_value(value):
    if isinstance(value, datetime.datetime) or isinstance(value, datetime.time):
        raise InputError(f"effective_from must be a date: {value!r}")
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        return parse_date(value)
    raise InputError(f"effective_from must be a date: {value!r}")


def _string(value, what):
    if not isinstance(value, str):
        raise InputError(f"{what} must be a string: {value!r}")
    return value


def load_policy(path):
    with open(path, "rb") as f:
        data = tomllib.load(f)

    ranks = {}
    seen_ranks = set()
    for cat in data.get("category", []):
        code, rank = cat["code"], cat["rank"]
        if not isinstance(rank, int) or isinstance(rank, bool):
            raise InputError(f"rank must be an integer: {rank!r}")
        if code in ranks or rank in seen_ranks:
            raise InputError(f"duplicate category code or rank: {code!r} {rank!r}")
        ranks[code] = rank
        seen_ranks.add(rank)

    pools = {}
    for visit_type, pool in data.get("pools", {}).items():
        pools[visit_type] = _string(pool, f"pools.{visit_type}")
    pool_names = set(pools.values())

    versions = []
    seen_dates = set()
    for version in data.get("version", []):
        day = _date_value(version["effective_from"])
        if day in seen_dates:
            raise InputError(f"two versions on {day}")
        seen_dates.add(day)
        rules = {}
        for rule in version.get("rule", []):
            code = rule["category"]
            if code not in ranks:
                raise InputError(f"rule for undefined category {code!r}")
            if code in rules:
                raise InputError(f"two rules for {code!r} in version {day}")
            annual_cap = rule.get("annual_cap")
            if annual_cap is not None:
                annual_cap = parse_money(_string(annual_cap, "annual_cap"))
            entries = {}
            for pool_name, entry in rule.get("pools", {}).items():
                if pool_name not in pool_names:
                    raise InputError(f"pool {pool_name!r} not used in [pools]")
                cap = entry.get("cap")
                entries[pool_name] = PoolEntry(
                    deductible=parse_money(_string(entry["deductible"], "deductible")),
                    ratio=parse_ratio(_string(entry["ratio"], "ratio")),
                    out_of_scope_ratio=parse_ratio(
                        _string(entry.get("out_of_scope_ratio", "0"), "out_of_scope_ratio")
                    ),
                    cap=None if cap is None else parse_money(_string(cap, "cap")),
                )
            rules[code] = Rule(annual_cap, entries)
        versions.append((day, day.isoformat(), rules))
    versions.sort(key=lambda v: v[0])
    return Policy(ranks, pools, versions)


# --------------------------------------------------------------------------
# CSV


def read_csv(path, required, optional=()):
    """Rows of a CSV file as dicts of the known columns (by header name)."""
    with open(path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    rows = [row for row in csv.reader(io.StringIO(text, newline=""), strict=True) if row]
    if not rows:
        raise InputError(f"{path}: no header")
    header = rows[0]
    known = set(required) | set(optional)
    index = {}
    for i, name in enumerate(header):
        if name in known:
            if name in index:
                raise InputError(f"{path}: column {name} twice")
            index[name] = i
    for name in required:
        if name not in index:
            raise InputError(f"{path}: missing column {name}")
    out = []
    for row in rows[1:]:
        if len(row) != len(header):
            raise InputError(f"{path}: record with {len(row)} fields, header has {len(header)}")
        out.append({name: row[i] for name, i in index.items()})
    return out


def load_spells(path, policy):
    spells = {}
    for row in read_csv(path, ("person_id", "category", "valid_from"), ("valid_to", "source")):
        person = canonical_id(row["person_id"])
        code = row["category"]
        if code not in policy.ranks:
            raise InputError(f"spell with unknown category {code!r}")
        start = parse_date(row["valid_from"])
        end_text = row.get("valid_to", "")
        end = parse_date(end_text) if end_text != "" else None
        if end is not None and end < start:
            raise InputError(f"spell ends before it starts: {row!r}")
        spells.setdefault(person, []).append((start, end, code))
    return spells


_INVOICE_NO_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Invoice:
    pass


def load_invoices(path, policy):
    columns = (
        "invoice_no",
        "person_id",
        "hospital",
        "visit_type",
        "service_date",
        "settled_at",
        "total",
        "fund_paid",
        "in_scope_self_pay",
        "out_of_scope_self_pay",
    )
    invoices = []
    for position, row in enumerate(read_csv(path, columns)):
        inv = Invoice()
        inv.position = position
        inv.invoice_no = row["invoice_no"]
        if not _INVOICE_NO_RE.fullmatch(inv.invoice_no):
            raise InputError(f"bad invoice_no {inv.invoice_no!r}")
        inv.person = canonical_id(row["person_id"])
        if not 1 <= len(row["hospital"]) <= 32:
            raise InputError(f"bad hospital {row['hospital']!r}")
        inv.visit_type = row["visit_type"]
        if inv.visit_type not in policy.pools:
            raise InputError(f"visit type {inv.visit_type!r} not in [pools]")
        inv.service_date = parse_date(row["service_date"])
        inv.settled_at = parse_instant(row["settled_at"])
        total = parse_money(row["total"])
        fund = parse_money(row["fund_paid"])
        inv.base = parse_money(row["in_scope_self_pay"])
        inv.out_of_scope = parse_money(row["out_of_scope_self_pay"])
        if fund + inv.base + inv.out_of_scope != total:
            raise InputError(f"{inv.invoice_no}: parts do not add up to total")
        invoices.append(inv)
    return invoices


# --------------------------------------------------------------------------
# The calculation


def round_bp(fen, bp):
    return (fen * bp + 5000) // 10000


def canonical_order(invoices):
    width = max((len(inv.settled_at[1]) for inv in invoices), default=0)

    def key(inv):
        seconds, frac = inv.settled_at
        return (seconds, frac.ljust(width, "0"), inv.invoice_no.encode("utf-8"), inv.position)

    return sorted(invoices, key=key)


def calculate(policy, spells, invoices):
    """Result rows (lists of strings) in canonical order."""
    seen_numbers = set()
    # (person, year) -> [deductible_used{pool}, granted{pool}, [granted_total]]
    counters = {}
    rows = []
    for inv in canonical_order(invoices):
        year = inv.service_date.year
        row = {
            "invoice_no": inv.invoice_no,
            "person_id": inv.person,
            "year": str(year),
            "category": "",
            "pool": "",
            "base": 0,
            "deductible_applied": 0,
            "eligible": 0,
            "amount": 0,
            "outcome": "",
            "policy_version": "",
        }
        rows.append(row)

        # 1. Duplicate
        if inv.invoice_no in seen_numbers:
            row["outcome"] = "duplicate"
            continue
        seen_numbers.add(inv.invoice_no)

        # 2. Category
        day = inv.service_date
        covering = [
            code
            for start, end, code in spells.get(inv.person, ())
            if start <= day and (end is None or day <= end)
        ]
        if not covering:
            row["outcome"] = "not_eligible"
            continue
        category = min(covering, key=lambda code: policy.ranks[code])
        pool = policy.pools[inv.visit_type]
        row["category"] = category
        row["pool"] = pool

        # 3. Rule
        version = policy.version_on(day)
        if version is None:
            row["outcome"] = "no_rule"
            continue
        row["policy_version"] = version[1]
        rule = version[2].get(category)
        if rule is None or pool not in rule.pools:
            row["outcome"] = "no_rule"
            continue
        entry = rule.pools[pool]

        ded_used, granted, total = counters.setdefault(
            (inv.person, year), ({}, {}, [0])
        )

        # 4. Deductible
        room = max(0, entry.deductible - ded_used.get(pool, 0))
        deductible_applied = min(inv.base, room)
        eligible = inv.base - deductible_applied

        # 5. Raw amount
        raw = round_bp(eligible, entry.ratio) + round_bp(inv.out_of_scope, entry.out_of_scope_ratio)

        # 6. Caps
        amount = raw
        if entry.cap is not None:
            amount = min(amount, max(0, entry.cap - granted.get(pool, 0)))
        if rule.annual_cap is not None:
            amount = min(amount, max(0, rule.annual_cap - total[0]))

        # 7. Outcome
        row["outcome"] = "capped" if amount < raw else "assisted"

        # 8. Count
        ded_used[pool] = ded_used.get(pool, 0) + deductible_applied
        granted[pool] = granted.get(pool, 0) + amount
        total[0] += amount

        row["base"] = inv.base
        row["deductible_applied"] = deductible_applied
        row["eligible"] = eligible
        row["amount"] = amount

    out = []
    for row in rows:
        for money in ("base", "deductible_applied", "eligible", "amount"):
            row[money] = format_money(row[money])
        out.append([row[c] for c in RESULT_COLUMNS])
    return out


def _field(text):
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def render_results(rows):
    lines = [",".join(RESULT_COLUMNS)]
    lines += [",".join(_field(f) for f in row) for row in rows]
    return ("\n".join(lines) + "\n").encode("utf-8")


def run(policy_path, spells_path, invoices_path):
    """results.csv content (bytes) for the given input files."""
    policy = load_policy(policy_path)
    spells = load_spells(spells_path, policy)
    invoices = load_invoices(invoices_path, policy)
    return render_results(calculate(policy, spells, invoices))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True)
    parser.add_argument("--spells", required=True)
    parser.add_argument("--invoices", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        content = run(args.policy, args.spells, args.invoices)
    except (InputError, KeyError, tomllib.TOMLDecodeError, csv.Error, UnicodeDecodeError) as e:
        print(f"reference: invalid input: {e!r}", file=sys.stderr)
        return 2
    with open(args.out, "wb") as f:
        f.write(content)
    return 0


if __name__ == "__main__":
    sys.exit(main())

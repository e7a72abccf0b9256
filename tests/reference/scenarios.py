#!/usr/bin/env python3
"""Seeded random scenarios for differential testing of `jiuzhu simulate`.

    python3 scenarios.py --seed N --dir D

writes D/policy.toml, D/spells.csv and D/invoices.csv: a small but dense
valid input (5-60 people, 10-300 invoices) aimed at the corners of
calculation.md and formats.md:

- categories whose ranks are not in code order, overlapping spells, spells
  that change category mid-year, spells ending exactly on a service date,
  people without spells;
- 1-4 policy versions (listed in any order, some as TOML dates), the first
  sometimes starting mid-year so that earlier service dates have none; rules
  missing for some categories, pool entries missing in some rules, a pool
  that no rule has; several visit types mapping to one pool;
- deductibles that split over several invoices, ratios with 4 decimals and
  0 and 1, out_of_scope_ratio present or absent, small pool and annual caps
  that bind mid-invoice;
- service dates in one year settled in the next; settled_at ties written
  with different offsets, `.5` against `.500`, long fractions, lower-case
  `t`/`z`; duplicate invoice numbers (some settled before their "original"
  in file order), numbers differing only in case;
- amounts with odd fen for half-up rounding, money written as `12`, `12.5`,
  `12.50`;
- CSV columns in shuffled order, extra columns (with quoted commas, quotes
  and line breaks), optional columns left out, a BOM, CRLF, blank lines,
  quote-all, resident IDs with a lower-case `x`.

All generated inputs are meant to be valid per formats.md.
"""

import argparse
import csv
import datetime
import io
import json
import os
import random

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"

EPOCH = datetime.datetime(1970, 1, 1)

CATEGORY_CODES = ["TK", "DB", "ZC", "DSR", "ZCX", "LS", "QT", "A1", "B2", "Z9"]
CATEGORY_NAMES = ["特困人员", "低保对象", "重残无业人员", "低收入家庭成员", "因病支出型贫困家庭成员", None]
POOL_NAMES = ["outpatient", "inpatient", "chronic_care", "mz-2"]
VISIT_TYPES = ["outpatient", "emergency", "inpatient", "chronic", "rehab", "day_surgery"]
REGIONS = ["110101", "310115", "440304", "320102", "510107", "330106", "420102"]
HOSPITALS = [
    "H1",
    "瑞金医院",
    "Ruijin, East",
    'The "Best" Hospital',
    "上海交通大学医学院附属瑞金医院北部院区门急诊部",  # 25 characters, 75 bytes
    "X" * 32,
    "医" * 32,
    "a",
    "Hospital #7 (Pudong)",
]
FRACTIONS = ["", "", "", "5", "50", "123", "000001", "999999", "123456789",
             "5000000000000000001", "4999999999999999999", "999999999999999999999"]
OFFSETS = ["Z", "z", "+00:00", "-00:00", "+08:00", "-05:00", "+05:30", "+05:45",
           "-09:30", "+14:00", "-12:00", "+01:00"]
RATIOS = ["0", "1", "0.5", "0.3333", "0.0001", "0.9999", "0.75", "0.9", "0.05",
          "0.7", "1.0", "0.50", "0.5000", "0.0", "1.0000", "0.125"]


def id_check(digits17):
    return ID_CHECK[sum(int(c) * w for c, w in zip(digits17, ID_WEIGHTS)) % 11]


class Scenario:
    def __init__(self, seed, scale=1):
        self.rng = random.Random(seed)
        self.seed = seed
        self.scale = scale

    # ---------------------------------------------------------------- helpers

    def chance(self, p):
        return self.rng.random() < p

    def money_text(self, fen):
        whole, frac = divmod(fen, 100)
        if frac == 0:
            return self.rng.choice([f"{whole}", f"{whole}", f"{whole}.00", f"{whole}.0"])
        if frac % 10 == 0:
            return self.rng.choice([f"{whole}.{frac // 10}", f"{whole}.{frac:02d}"])
        return f"{whole}.{frac:02d}"

    def ratio_text(self):
        if self.chance(0.25):
            bp = self.rng.randint(0, 10000)
            whole, frac = divmod(bp, 10000)
            text = f"{whole}.{frac:04d}"
            if self.chance(0.5):
                text = text.rstrip("0").rstrip(".")
            return text
        return self.rng.choice(RATIOS)

    def small_money(self, low, high):
        """Fen between low and high yuan, with some odd fen."""
        fen = self.rng.randint(low * 100, high * 100)
        if self.chance(0.4):
            fen = fen // 100 * 100
        return fen

    def random_date(self):
        if self.date_pool and self.chance(0.7):
            return self.rng.choice(self.date_pool)
        return self.first_day + datetime.timedelta(days=self.rng.randint(0, self.span_days))

    # ------------------------------------------------------------- the parts

    def make_dates(self):
        rng = self.rng
        y = self.year = rng.choice([2023, 2024, 2025, 2027, 2028])
        self.first_day = datetime.date(y, 1, 1)
        last = datetime.date(y + 1, 12, 31)
        self.span_days = (last - self.first_day).days
        fixed = [
            datetime.date(y, 1, 1), datetime.date(y, 12, 31), datetime.date(y, 6, 30),
            datetime.date(y, 7, 1), datetime.date(y + 1, 1, 1), datetime.date(y + 1, 12, 31),
            datetime.date(y, 2, 28), datetime.date(y + 1, 2, 28), datetime.date(y, 12, 30),
        ]
        for yy in (y, y + 1):
            if yy % 4 == 0:
                fixed.append(datetime.date(yy, 2, 29))
        self.date_pool = []
        self.date_pool = rng.sample(fixed, rng.randint(2, len(fixed)))
        self.date_pool += [self.random_date() for _ in range(rng.randint(3, 30))]

    def make_policy(self):
        rng = self.rng
        n_cat = rng.randint(2, 5)
        codes = rng.sample(CATEGORY_CODES, n_cat)
        ranks = rng.sample(range(0, 40), n_cat)
        self.categories = list(zip(codes, ranks))
        self.rank = dict(self.categories)

        n_pools = rng.randint(1, 3)
        pool_names = rng.sample(POOL_NAMES, n_pools)
        visit_types = rng.sample(VISIT_TYPES, rng.randint(max(2, n_pools), 5))
        self.pools = {}
        for i, vt in enumerate(visit_types):
            # every pool gets a visit type; the rest map several-to-one
            self.pools[vt] = pool_names[i] if i < n_pools else rng.choice(pool_names)
        self.rule_pools = list(pool_names)
        if self.chance(0.3):
            self.pools["dental"] = "dental"  # a pool no rule has

        y = self.year
        candidates = {
            datetime.date(y, 1, 1),
            datetime.date(y + 1, 1, 1),
            datetime.date(y, rng.randint(2, 11), rng.randint(1, 28)),
            datetime.date(y + 1, rng.randint(2, 11), rng.randint(1, 28)),
            datetime.date(y - 1, rng.randint(1, 12), rng.randint(1, 28)),
            rng.choice(self.date_pool),
            rng.choice(self.date_pool),
        }
        candidates = sorted(candidates)
        n_ver = rng.randint(1, min(4, len(candidates)))
        dates = sorted(rng.sample(candidates, n_ver))

        # small caps in some scenarios, larger in others
        scale = rng.choice([1, 1, 5, 50])
        self.versions = []
        for day in dates:
            rules = []
            empty_version = self.chance(0.04)
            for code, _ in self.categories:
                if empty_version or self.chance(0.12):
                    continue
                annual_cap = self.small_money(0, 400 * scale) if self.chance(0.5) else None
                entries = []
                for pool in pool_names:
                    if self.chance(0.12):
                        continue
                    deductible = 0 if self.chance(0.4) else self.small_money(0, 60 * scale)
                    entry = {
                        "deductible": deductible,
                        "ratio": self.ratio_text(),
                        "out_of_scope_ratio": self.ratio_text() if self.chance(0.5) else None,
                        "cap": self.small_money(0, 150 * scale) if self.chance(0.5) else None,
                    }
                    entries.append((pool, entry))
                rules.append((code, annual_cap, entries))
            rng.shuffle(rules)
            self.versions.append((day, rules))

    def make_people(self):
        rng = self.rng
        n = rng.randint(5, 60) * self.scale
        self.people = []
        seen = set()
        while len(self.people) < n:
            want_x = self.chance(0.3)
            for _ in range(200):
                birth = datetime.date(1940, 1, 1) + datetime.timedelta(days=rng.randint(0, 27000))
                digits = rng.choice(REGIONS) + birth.strftime("%Y%m%d") + f"{rng.randint(0, 999):03d}"
                check = id_check(digits)
                if not want_x or check == "X":
                    break
            pid = digits + check
            if pid not in seen:
                seen.add(pid)
                self.people.append(pid)

    def write_id(self, pid):
        if pid.endswith("X") and self.chance(0.4):
            return pid[:-1] + "x"
        return pid

    def make_spells(self):
        rng = self.rng
        codes = [c for c, _ in self.categories]
        self.spells = []  # (person, code, from, to or None)
        self.all_open = self.chance(0.05)
        for pid in self.people:
            k = rng.choices([0, 1, 2, 3, 4], weights=[15, 35, 25, 15, 10])[0]
            if k >= 2 and self.chance(0.35):
                # a change of category mid-year (or at a year's end)
                a, b = rng.sample(codes, 2) if len(codes) > 1 else (codes[0], codes[0])
                start = self.random_date()
                switch = self.random_date()
                if switch < start:
                    start, switch = switch, start
                end_a = switch - datetime.timedelta(days=1)
                if end_a >= start:
                    self.spells.append((pid, a, start, end_a))
                self.spells.append((pid, b, switch, None))
                k -= 2
            for _ in range(k):
                code = rng.choice(codes)
                start = self.random_date()
                if self.chance(0.35):
                    end = None
                else:
                    end = self.random_date()
                    if end < start:
                        start, end = end, start
                self.spells.append((pid, code, start, end))
        if self.all_open:
            self.spells = [(p, c, s, None) for p, c, s, _ in self.spells]
        rng.shuffle(self.spells)
        self.spells_of = {}
        for p, c, s, e in self.spells:
            self.spells_of.setdefault(p, []).append((c, s, e))

    def instant_after(self, day, max_days):
        """A UTC instant (seconds since 1970, fraction digits) on or after `day`."""
        start = datetime.datetime(day.year, day.month, day.day) - EPOCH
        seconds = int(start.total_seconds()) + self.rng.randint(0, max_days * 86400)
        # settle on the local day or later whatever the offset: shift by 14 h
        seconds += 14 * 3600 if self.chance(0.5) else 0
        return seconds, self.rng.choice(FRACTIONS)

    def render_instant(self, instant):
        seconds, frac = instant
        offset = self.rng.choice(OFFSETS)
        if offset in ("Z", "z"):
            minutes = 0
        else:
            minutes = (int(offset[1:3]) * 60 + int(offset[4:6])) * (1 if offset[0] == "+" else -1)
        local = EPOCH + datetime.timedelta(seconds=seconds + minutes * 60)
        t = "t" if self.chance(0.1) else "T"
        text = local.strftime(f"%Y-%m-%d{t}%H:%M:%S")
        if frac or self.chance(0.1):
            digits = frac + "0" * self.rng.choice([0, 0, 0, 1, 2, 6])
            if digits:
                text += "." + digits
        return text + offset

    def invoice_number(self):
        rng = self.rng
        style = rng.random()
        if style < 0.7:
            return f"INV{rng.randint(0, 99999):05d}"
        if style < 0.75:
            return rng.choice(["a", "B", "7", "_", "-"]) + rng.choice(["", "x", "X", "1"])
        alphabet = "ABCDEFabcdef0123456789-_"
        length = 64 if self.chance(0.2) else rng.randint(1, 20)
        return "".join(rng.choice(alphabet) for _ in range(length))

    def amount_fen(self, zero_weight):
        rng = self.rng
        kind = rng.choices(
            ["zero", "odd", "small", "medium", "large", "huge"],
            weights=[zero_weight, 20, 35, 20, 8, 2],
        )[0]
        if kind == "zero":
            return 0
        if kind == "odd":
            return rng.randrange(1, 200, 2)
        if kind == "small":
            return rng.randint(100, 50000)
        if kind == "medium":
            return rng.randint(50000, 1000000)
        if kind == "large":
            return rng.randint(1000000, 100000000)
        return rng.randint(10**10, 10**12)

    def make_invoices(self):
        rng = self.rng
        n = rng.randint(10, 300) * self.scale
        cum_weights = []
        acc = 0.0
        for i in range(len(self.people)):
            acc += 1.0 / (i + 1)
            cum_weights.append(acc)
        first_instant = {}
        visit_types = list(self.pools)
        self.invoices = []
        numbers = []
        instants = []
        for _ in range(n):
            pid = rng.choices(self.people, cum_weights=cum_weights)[0]
            r = rng.random()
            own = self.spells_of.get(pid)
            if own and r < 0.15:
                code, start, end = rng.choice(own)
                day = end if (end is not None and self.chance(0.7)) else start
            elif own and r < 0.45:
                code, start, end = rng.choice(own)
                last = end if end is not None else start + datetime.timedelta(days=400)
                day = start + datetime.timedelta(days=rng.randint(0, (last - start).days))
            elif r < 0.55:
                yy = rng.choice([self.year, self.year + 1])
                day = datetime.date(yy, 12, rng.randint(20, 31))
            else:
                day = self.random_date()

            if instants and self.chance(0.25):
                instant = rng.choice(instants)  # a tie, maybe written differently
            elif day.month == 12 and day.day >= 20 and self.chance(0.6):
                instant = self.instant_after(datetime.date(day.year + 1, 1, 1), 20)
            else:
                instant = self.instant_after(day, rng.choice([0, 1, 3, 30, 60]))
            instants.append(instant)

            r = rng.random()
            if numbers and r < 0.08:
                number = rng.choice(numbers)
                if self.chance(0.5):
                    # settle the repeat before its first appearance in the file
                    secs, frac = first_instant[number]
                    instant = (secs - rng.choice([0, 1, 3600, 86400 * 3]), rng.choice(FRACTIONS))
            elif numbers and r < 0.13:
                number = rng.choice(numbers).swapcase()
            else:
                number = self.invoice_number()
            numbers.append(number)
            first_instant.setdefault(number, instant)

            base = self.amount_fen(10)
            out_of_scope = self.amount_fen(50)
            fund = self.amount_fen(30)
            self.invoices.append({
                "invoice_no": number,
                "person": pid,
                "hospital": rng.choice(HOSPITALS),
                "visit_type": rng.choice(visit_types),
                "service_date": day,
                "instant": instant,
                "base": base,
                "out_of_scope": out_of_scope,
                "fund": fund,
            })

    # ------------------------------------------------------------ rendering

    def render_policy(self):
        rng = self.rng
        q = lambda s: json.dumps(s, ensure_ascii=False)  # noqa: E731 - a TOML basic string
        out = [f"# scenario {self.seed}", f"name = {q('scenario %d' % self.seed)}", ""]
        cats = list(self.categories)
        rng.shuffle(cats)
        for code, rank in cats:
            out.append("[[category]]")
            out.append(f"code = {q(code)}")
            name = rng.choice(CATEGORY_NAMES)
            if name is not None:
                out.append(f"name = {q(name)}")
            out.append(f"rank = {rank}")
            out.append("")
        out.append("[pools]")
        for vt, pool in self.pools.items():
            out.append(f"{vt} = {q(pool)}")
        out.append("")
        versions = list(self.versions)
        if self.chance(0.5):
            rng.shuffle(versions)
        inline = self.chance(0.15)
        for day, rules in versions:
            out.append("[[version]]")
            if self.chance(0.3):
                out.append(f"effective_from = {day.isoformat()}")
            else:
                out.append(f"effective_from = {q(day.isoformat())}")
            out.append("")
            for code, annual_cap, entries in rules:
                out.append("  [[version.rule]]")
                out.append(f"  category = {q(code)}")
                if annual_cap is not None:
                    out.append(f"  annual_cap = {q(self.money_text(annual_cap))}")
                if inline and entries:
                    parts = []
                    for pool, e in entries:
                        parts.append(f"{pool} = {{ {', '.join(self.entry_pairs(e))} }}")
                    out.append(f"  pools = {{ {', '.join(parts)} }}")
                else:
                    for pool, e in entries:
                        out.append(f"    [version.rule.pools.{pool}]")
                        for pair in self.entry_pairs(e):
                            out.append(f"    {pair}")
                out.append("")
        return "\n".join(out).encode("utf-8")

    def entry_pairs(self, e):
        q = lambda s: json.dumps(s, ensure_ascii=False)  # noqa: E731
        pairs = [
            f"deductible = {q(self.money_text(e['deductible']))}",
            f"ratio = {q(e['ratio'])}",
        ]
        if e["out_of_scope_ratio"] is not None:
            pairs.append(f"out_of_scope_ratio = {q(e['out_of_scope_ratio'])}")
        if e["cap"] is not None:
            pairs.append(f"cap = {q(self.money_text(e['cap']))}")
        self.rng.shuffle(pairs)
        return pairs

    def render_csv(self, columns, records, extras):
        """CSV bytes: shuffled columns, extra columns, assorted valid styling."""
        rng = self.rng
        header = list(columns) + list(extras)
        rng.shuffle(header)
        terminator = "\r\n" if self.chance(0.4) else "\n"
        quoting = csv.QUOTE_ALL if self.chance(0.2) else csv.QUOTE_MINIMAL
        buf = io.StringIO(newline="")
        writer = csv.writer(buf, lineterminator=terminator, quoting=quoting)
        blank = self.chance(0.25)
        if blank and self.chance(0.1):
            buf.write(terminator)  # a blank line before the header
        writer.writerow(header)
        for record in records:
            if blank and self.chance(0.1):
                buf.write(terminator)
            row = []
            for name in header:
                if name in record:
                    row.append(record[name])
                else:
                    row.append(self.extra_value())
            writer.writerow(row)
        if blank:
            buf.write(terminator)
        text = buf.getvalue()
        if self.chance(0.3):
            text = "\ufeff" + text
        return text.encode("utf-8")

    def extra_value(self):
        return self.rng.choice(["", "x", "备注", "a, b", 'say "hi"', "two\nlines", "3.14"])

    def extras(self, choices):
        if self.chance(0.5):
            return []
        return self.rng.sample(choices, self.rng.randint(1, 2))

    def render_spells(self):
        columns = ["person_id", "category", "valid_from"]
        include_to = not (self.all_open and self.chance(0.5))
        include_source = self.chance(0.8)
        if include_to:
            columns.append("valid_to")
        if include_source:
            columns.append("source")
        records = []
        for pid, code, start, end in self.spells:
            record = {
                "person_id": self.write_id(pid),
                "category": code,
                "valid_from": start.isoformat(),
            }
            if include_to:
                record["valid_to"] = "" if end is None else end.isoformat()
            if include_source:
                record["source"] = self.rng.choice(["民政", "残联", "医保, 区级", ""])
            records.append(record)
        return self.render_csv(columns, records, self.extras(["note", "备注", "rank"]))

    def render_invoices(self):
        columns = [
            "invoice_no", "person_id", "hospital", "visit_type", "service_date",
            "settled_at", "total", "fund_paid", "in_scope_self_pay", "out_of_scope_self_pay",
        ]
        records = []
        for inv in self.invoices:
            total = inv["fund"] + inv["base"] + inv["out_of_scope"]
            records.append({
                "invoice_no": inv["invoice_no"],
                "person_id": self.write_id(inv["person"]),
                "hospital": inv["hospital"],
                "visit_type": inv["visit_type"],
                "service_date": inv["service_date"].isoformat(),
                "settled_at": self.render_instant(inv["instant"]),
                "total": self.money_text(total),
                "fund_paid": self.money_text(inv["fund"]),
                "in_scope_self_pay": self.money_text(inv["base"]),
                "out_of_scope_self_pay": self.money_text(inv["out_of_scope"]),
            })
        return self.render_csv(columns, records, self.extras(["remark", "备注", "amount", "year"]))

    def files(self):
        self.make_dates()
        self.make_policy()
        self.make_people()
        self.make_spells()
        self.make_invoices()
        return {
            "policy.toml": self.render_policy(),
            "spells.csv": self.render_spells(),
            "invoices.csv": self.render_invoices(),
        }


def write_scenario(seed, directory, scale=1):
    """Write the scenario for `seed` into `directory`; return the file paths.

    `scale` multiplies the numbers of people and invoices (1: the small
    scenarios described above; larger ones exercise chunked reading).
    """
    os.makedirs(directory, exist_ok=True)
    paths = {}
    for name, content in Scenario(seed, scale).files().items():
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(content)
        paths[name] = path
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--scale", type=int, default=1, help="multiply people and invoices")
    args = parser.parse_args()
    write_scenario(args.seed, args.dir, args.scale)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""`jiuzhu simulate` in SQL (DuckDB), for policies with a closed form.

    python3 bench/duckdb_simulate.py --policy P --spells S --invoices I --out R

Writes the same results.csv as `jiuzhu simulate` (shared/spec/formats.md),
following shared/spec/calculation.md, for a policy of this shape only (it is
refused otherwise): one version, no annual cap, and the same pool entries
(deductible, ratio, out_of_scope_ratio, cap) for every category that has a
rule. Then, for each person, year and pool, in canonical order, over the
invoices that change the counters (assisted or capped):

    deductible_used before = min(D, base before)           so
    deductible_applied     = min(base, max(0, D - base before))
    granted before         = min(cap, raw before)          so
    amount                 = min(raw, max(0, cap - raw before))

where "before" is the cumulative sum over the earlier such invoices: both
are window sums. The second holds only because there is one cap and no
annual cap.

Canonical order is taken once: the invoices are copied into a table in that
order, whose rowid is then the rank. settled_at is compared as whole seconds
since the epoch, then the digits of its fraction without trailing zeros
(as text, which compares them exactly), then invoice_no, then the position
in the file (the rowid of the table read in file order).

Money is integer fen (BIGINT) and ratios integer basis points from end to
end: amounts are parsed from their text and printed from integers; no DOUBLE
or DECIMAL is involved. The inputs are taken to be valid (`jiuzhu simulate`
checks them); what this script cannot compute is refused loudly.
"""

import argparse
import re
import sys
import tomllib

import duckdb

AMOUNT = re.compile(r"^([0-9]{1,12})(?:\.([0-9]{1,2}))?$")
RATIO = re.compile(r"^(0|1)(?:\.([0-9]{1,4}))?$")
POOL_KEYS = {"deductible", "ratio", "out_of_scope_ratio", "cap"}


class NotClosedForm(Exception):
    pass


def fen(text, where):
    match = AMOUNT.match(str(text))
    if not match:
        raise NotClosedForm(f"{where}: {text!r} is not an amount in yuan")
    yuan, fraction = match.group(1), match.group(2) or ""
    return int(yuan) * 100 + int(fraction.ljust(2, "0"))


def basis_points(text, where):
    match = RATIO.match(str(text))
    if not match:
        raise NotClosedForm(f"{where}: {text!r} is not a ratio with at most 4 decimals")
    value = int(match.group(1)) * 10000 + int((match.group(2) or "").ljust(4, "0"))
    if value > 10000:
        raise NotClosedForm(f"{where}: {text!r} is above 1")
    return value


def load_policy(path):
    with open(path, "rb") as file:
        policy = tomllib.load(file)
    categories = [(category["code"], int(category["rank"])) for category in policy.get("category", [])]
    visit_pools = sorted(policy.get("pools", {}).items())
    versions = policy.get("version", [])
    if len(versions) != 1:
        raise NotClosedForm(f"{path}: has {len(versions)} versions; the closed form needs exactly one")
    version = versions[0]
    effective_from = str(version["effective_from"])
    rules = version.get("rule", [])
    if not rules:
        raise NotClosedForm(f"{path}: the version has no rule")
    pool_rules = None
    for rule in rules:
        where = f"{path}: rule for {rule['category']}"
        if "annual_cap" in rule:
            raise NotClosedForm(f"{where}: has an annual_cap; the closed form needs none")
        entries = []
        for pool, entry in sorted(rule.get("pools", {}).items()):
            unknown = set(entry) - POOL_KEYS
            if unknown:
                raise NotClosedForm(f"{where}: pool {pool} has unknown keys {sorted(unknown)}")
            entries.append(
                (
                    pool,
                    fen(entry["deductible"], f"{where}, {pool}.deductible"),
                    basis_points(entry["ratio"], f"{where}, {pool}.ratio"),
                    basis_points(entry.get("out_of_scope_ratio", "0"), f"{where}, {pool}.out_of_scope_ratio"),
                    fen(entry["cap"], f"{where}, {pool}.cap") if "cap" in entry else None,
                )
            )
        if pool_rules is None:
            pool_rules = entries
        elif entries != pool_rules:
            raise NotClosedForm(f"{where}: its pools differ from the first rule's; the closed form needs them equal")
    return {
        "categories": categories,
        "visit_pools": visit_pools,
        "effective_from": effective_from,
        "rule_categories": [(rule["category"],) for rule in rules],
        "pool_rules": pool_rules,
    }


SETUP = r"""
-- Amounts: digits, optionally a point and one or two decimals, to fen.
CREATE MACRO fen(text) AS
    CAST(split_part(text, '.', 1) AS BIGINT) * 100
    + CASE length(split_part(text, '.', 2))
        WHEN 0 THEN 0
        WHEN 1 THEN CAST(split_part(text, '.', 2) AS BIGINT) * 10
        ELSE CAST(split_part(text, '.', 2) AS BIGINT)
      END;
-- Fen to yuan with exactly two decimals.
CREATE MACRO yuan(amount) AS
    CAST(amount // 100 AS VARCHAR) || '.' || lpad(CAST(amount % 100 AS VARCHAR), 2, '0');
-- RFC 3339 as an instant: whole seconds since the epoch, and the fraction's
-- digits without trailing zeros (which compare exactly as text).
CREATE MACRO zone_length(t) AS CASE WHEN upper(right(t, 1)) = 'Z' THEN 1 ELSE 6 END;
CREATE MACRO unix_seconds(t) AS
    epoch_us(CAST(upper(substr(t, 1, 19)) AS TIMESTAMP)) // 1000000
    - CASE WHEN zone_length(t) = 1 THEN 0
           ELSE (CASE substr(t, -6, 1) WHEN '-' THEN -1 ELSE 1 END)
                * (CAST(substr(t, -5, 2) AS BIGINT) * 3600 + CAST(substr(t, -2, 2) AS BIGINT) * 60)
      END;
CREATE MACRO fraction(t) AS
    CASE WHEN substr(t, 20, 1) = '.'
         THEN rtrim(substr(t, 21, length(t) - 20 - zone_length(t)), '0')
         ELSE '' END;
"""

READ_INPUTS = r"""
-- rowid is the position in the file: the table is filled in file order.
CREATE TABLE invoices AS
    SELECT invoice_no,
           upper(person_id) AS person_id,
           visit_type,
           CAST(service_date AS DATE) AS service_date,
           unix_seconds(settled_at) AS settled_seconds,
           fraction(settled_at) AS settled_fraction,
           fen(in_scope_self_pay) AS base,
           fen(out_of_scope_self_pay) AS out_of_scope
    FROM read_csv($invoices, header = true, all_varchar = true, delim = ',', quote = '"', escape = '"');
CREATE TABLE spells AS
    SELECT upper(person_id) AS person_id,
           category,
           CAST(valid_from AS DATE) AS valid_from,
           CAST(NULLIF(valid_to, '') AS DATE) AS valid_to
    FROM read_csv($spells, header = true, all_varchar = true, delim = ',', quote = '"', escape = '"');
"""

# Canonical order once: the table is filled sorted, so its rowid is the rank.
CANONICAL = r"""
CREATE TABLE canonical AS
    SELECT * FROM invoices ORDER BY settled_seconds, settled_fraction, invoice_no, rowid;
"""

# One query, from the tables above to the rows of results.csv in canonical order.
RESULTS = r"""
WITH
ranked AS (
    SELECT rowid AS canon, * FROM canonical
),
-- Step 1: of the rows sharing an invoice number, all but the first in canonical order are duplicates.
repeated AS (
    SELECT invoice_no, min(canon) AS first_canon FROM ranked GROUP BY invoice_no HAVING count(*) > 1
),
ordered AS (
    SELECT r.*, coalesce(r.canon > p.first_canon, false) AS is_duplicate
    FROM ranked r LEFT JOIN repeated p ON p.invoice_no = r.invoice_no
),
-- Step 2: the category of lowest rank among the spells covering the service date.
held AS (
    SELECT o.canon, arg_min(s.category, c.rank) AS category
    FROM ordered o
    JOIN spells s ON s.person_id = o.person_id
                 AND s.valid_from <= o.service_date
                 AND (s.valid_to IS NULL OR o.service_date <= s.valid_to)
    JOIN categories c ON c.code = s.category
    WHERE NOT o.is_duplicate
    GROUP BY o.canon
),
-- Step 3: the version, the rule and the pool entry.
decided AS (
    SELECT o.*,
           year(o.service_date) AS year,
           h.category,
           vp.pool,
           CASE WHEN o.service_date >= CAST($effective_from AS DATE) THEN $effective_from END
               AS policy_version,
           pr.deductible, pr.ratio, pr.out_of_scope_ratio, pr.cap,
           CASE
               WHEN o.is_duplicate THEN 'duplicate'
               WHEN h.category IS NULL THEN 'not_eligible'
               WHEN o.service_date < CAST($effective_from AS DATE)
                    OR rc.category IS NULL
                    OR pr.pool IS NULL THEN 'no_rule'
               ELSE 'counted'
           END AS status
    FROM ordered o
    LEFT JOIN held h ON h.canon = o.canon
    LEFT JOIN visit_pools vp ON vp.visit_type = o.visit_type
    LEFT JOIN rule_categories rc ON rc.category = h.category
    LEFT JOIN pool_rules pr ON pr.pool = vp.pool
),
-- Step 4: the deductible from the bases before, over the invoices that count.
deducted AS (
    SELECT *,
           least(base, greatest(0, deductible - CAST(coalesce(sum(base) OVER earlier, 0) AS BIGINT)))
               AS deductible_applied
    FROM decided
    WHERE status = 'counted'
    WINDOW earlier AS (PARTITION BY person_id, year, pool
                       ORDER BY canon ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
),
-- Step 5: the raw amount, each product rounded half up on its own.
priced AS (
    SELECT *,
           base - deductible_applied AS eligible,
           ((base - deductible_applied) * ratio + 5000) // 10000
               + (out_of_scope * out_of_scope_ratio + 5000) // 10000 AS raw
    FROM deducted
),
-- Step 6: the pool cap from the raw amounts before.
granted AS (
    SELECT canon, deductible_applied, eligible, raw,
           CASE WHEN cap IS NULL THEN raw
                ELSE least(raw, greatest(0, cap - CAST(coalesce(sum(raw) OVER earlier, 0) AS BIGINT)))
           END AS amount
    FROM priced
    WINDOW earlier AS (PARTITION BY person_id, year, pool
                       ORDER BY canon ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
)
SELECT d.invoice_no,
       d.person_id,
       d.year,
       CASE WHEN d.status IN ('counted', 'no_rule') THEN d.category END AS category,
       CASE WHEN d.status IN ('counted', 'no_rule') THEN d.pool END AS pool,
       yuan(CASE WHEN d.status = 'counted' THEN d.base ELSE 0 END) AS base,
       yuan(coalesce(g.deductible_applied, 0)) AS deductible_applied,
       yuan(coalesce(g.eligible, 0)) AS eligible,
       yuan(coalesce(g.amount, 0)) AS amount,
       CASE WHEN d.status <> 'counted' THEN d.status
            WHEN g.amount < g.raw THEN 'capped'
            ELSE 'assisted' END AS outcome,
       CASE WHEN d.status IN ('counted', 'no_rule') THEN d.policy_version END AS policy_version
FROM decided d
LEFT JOIN granted g ON g.canon = d.canon
ORDER BY d.canon
"""


def run_statements(connection, script, parameters):
    """Runs each `;`-terminated statement, with the parameters it names."""
    for statement in script.split(";\n"):
        if statement.strip():
            used = {name: value for name, value in parameters.items() if f"${name}" in statement}
            connection.execute(statement, used)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True)
    parser.add_argument("--spells", required=True)
    parser.add_argument("--invoices", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    args = parser.parse_args()

    try:
        policy = load_policy(args.policy)
    except (NotClosedForm, KeyError, tomllib.TOMLDecodeError) as error:
        print(f"duckdb_simulate: {error}", file=sys.stderr)
        return 2

    connection = duckdb.connect()
    connection.execute("SET preserve_insertion_order = true")
    if args.threads:
        connection.execute(f"SET threads = {int(args.threads)}")
    run_statements(connection, SETUP, {})
    connection.execute("CREATE TABLE categories (code VARCHAR, rank BIGINT)")
    connection.execute("CREATE TABLE visit_pools (visit_type VARCHAR, pool VARCHAR)")
    connection.execute("CREATE TABLE rule_categories (category VARCHAR)")
    connection.execute(
        "CREATE TABLE pool_rules (pool VARCHAR, deductible BIGINT, ratio BIGINT,"
        " out_of_scope_ratio BIGINT, cap BIGINT)"
    )
    for table, rows in [
        ("categories", policy["categories"]),
        ("visit_pools", policy["visit_pools"]),
        ("rule_categories", policy["rule_categories"]),
        ("pool_rules", policy["pool_rules"]),
    ]:
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            connection.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)

    run_statements(connection, READ_INPUTS, {"invoices": args.invoices, "spells": args.spells})
    unknown = connection.execute(
        "SELECT DISTINCT visit_type FROM invoices"
        " WHERE visit_type NOT IN (SELECT visit_type FROM visit_pools) ORDER BY 1"
    ).fetchall()
    if unknown:
        print(f"duckdb_simulate: visit types without a pool: {[row[0] for row in unknown]}", file=sys.stderr)
        return 2
    unknown = connection.execute(
        "SELECT DISTINCT category FROM spells"
        " WHERE category NOT IN (SELECT code FROM categories) ORDER BY 1"
    ).fetchall()
    if unknown:
        print(f"duckdb_simulate: categories not in the policy: {[row[0] for row in unknown]}", file=sys.stderr)
        return 2

    # COPY takes no parameters: the one value spliced in is the effective date,
    # checked as YYYY-MM-DD, and the path, quoted as a string literal.
    effective_from = policy["effective_from"]
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", effective_from):
        print(f"duckdb_simulate: effective_from {effective_from!r} is not YYYY-MM-DD", file=sys.stderr)
        return 2
    run_statements(connection, CANONICAL, {})
    query = RESULTS.replace("$effective_from", f"'{effective_from}'")
    out = args.out.replace("'", "''")
    connection.execute(f"COPY ({query}) TO '{out}' (FORMAT csv, HEADER true, DELIMITER ',', QUOTE '\"', NULLSTR '')")
    return 0


if __name__ == "__main__":
    sys.exit(main())

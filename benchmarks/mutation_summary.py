"""Summarize mutmut's results (mutants/**/*.meta) per module: the score and the survivors.

Usage: python benchmarks/mutation_summary.py MODULE... [--out FILE]. The score is killed / checked,
where checked excludes mutants not run yet and counts a timeout as killed (the mutant made the
tests hang, which a user notices); mutants listed in benchmarks/results/mutation_equivalent.md
are left out of the score and shown apart.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped"}
STATUS |= {36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout"}
STATUS |= {37: "caught by type check", -11: "segfault", -9: "segfault"}
EQUIVALENT = Path(__file__).resolve().parent / "results" / "mutation_equivalent.md"


def results(module: str) -> dict[str, str]:
    """Mutant name -> status for one dotted module ('not checked' for the ones not run)."""
    meta = Path("mutants", *module.split(".")).with_suffix(".py.meta")
    codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
    return {k: "not checked" if v is None else STATUS.get(v, "suspicious") for k, v in codes.items()}


def equivalent() -> set[str]:
    """Names listed (in backticks) in the equivalent-mutant list."""
    text = EQUIVALENT.read_text() if EQUIVALENT.exists() else ""
    return set(re.findall(r"`([\w.]+__mutmut_\d+)`", text))


def summarize(modules: list[str]) -> str:
    same = equivalent()
    rows, survivors = [], []
    totals: Counter[str] = Counter()
    for module in modules:
        res = results(module)
        count = Counter(s if not (s == "survived" and k in same) else "equivalent" for k, s in res.items())
        killed = count["killed"] + count["timeout"] + count["segfault"]
        checked = killed + count["survived"] + count["no tests"] + count["suspicious"]
        score = f"{100 * killed / checked:.0f}%" if checked else "—"
        rows.append(
            f"| {module} | {len(res)} | {checked} | {killed} | {count['survived']} | {count['no tests']} "
            f"| {count['equivalent']} | {score} |"
        )
        totals.update(count)
        totals["all"] += len(res)
        survivors += [k for k, s in sorted(res.items()) if s in ("survived", "no tests") and k not in same]
    killed = totals["killed"] + totals["timeout"] + totals["segfault"]
    checked = killed + totals["survived"] + totals["no tests"] + totals["suspicious"]
    head = "| module | mutants | checked | killed | survived | no tests | equivalent | score |"
    lines = [head, "|" + "---|" * 8, *rows]
    if checked:
        lines.append(
            f"| all | {totals['all']} | {checked} | {killed} | {totals['survived']} | {totals['no tests']} "
            f"| {totals['equivalent']} | {100 * killed / checked:.0f}% |"
        )
    lines += ["", f"Survivors not yet triaged ({len(survivors)}):", ""]
    lines += [f"- `{name}`" for name in survivors] or ["- none"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("modules", nargs="+")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = summarize(args.modules)
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

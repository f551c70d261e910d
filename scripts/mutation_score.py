"""The mutation score per module, from what mutmut left in mutants/ (`make mutate` prints it at
the end): killed / tested, and the names of the mutants that survived.

    python scripts/mutation_score.py [--no-survivors] [MODULE ...]

A mutant is "killed" when a test failed with it (or it ran into mutmut's timeout, a loop that
never ends), "survived" when every test it met passed. Mutants no test reaches and those not
tried yet are counted apart, not in the score. `mutmut show NAME` prints a mutant's diff.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parent.parent
KILLED = {"killed", "timeout", "caught by type check"}


def results(mutants: Path) -> dict[str, dict[str, str]]:
    """Module ("chat/history.py") -> mutant name -> status, read from mutmut's .meta files."""
    found: dict[str, dict[str, str]] = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        module = str(meta.relative_to(mutants))[: -len(".meta")]
        if module.startswith(("tests/", "scripts/", "node_modules/")):
            continue
        exit_codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        if exit_codes:
            found[module] = {name: status_by_exit_code[code] for name, code in exit_codes.items()}
    return found


def table(found: dict[str, dict[str, str]]) -> list[str]:
    rows = [f"{'module':<22} {'killed/tested':>14} {'score':>6} {'survived':>9} {'no tests':>9} {'not run':>8}"]
    totals: Counter[str] = Counter()
    for module, statuses in found.items():
        counts = Counter("killed" if s in KILLED else s for s in statuses.values())
        totals.update(counts)
        rows.append(_row(module, counts))
    if len(found) > 1:
        rows.append(_row("all", totals))
    return rows


def _row(name: str, counts: Counter[str]) -> str:
    killed, survived = counts["killed"], counts["survived"]
    tested = sum(n for status, n in counts.items() if status not in ("no tests", "not checked", "skipped"))
    score = f"{100 * killed / tested:.0f}%" if tested else "-"
    return (f"{name:<22} {f'{killed}/{tested}':>14} {score:>6} {survived:>9} {counts['no tests']:>9} "
            f"{counts['not checked'] + counts['skipped']:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="only these (chat/history.py, or just history)")
    parser.add_argument("--no-survivors", action="store_true", help="the table only")
    parser.add_argument("--mutants", type=Path, default=ROOT / "mutants")
    args = parser.parse_args()
    found = results(args.mutants)
    if args.modules:
        wanted = {m if m.endswith(".py") else f"chat/{m}.py" for m in args.modules}
        found = {module: statuses for module, statuses in found.items() if module in wanted}
    if not found:
        raise SystemExit(f"no mutmut results in {args.mutants}: run `make mutate` first")
    if not args.no_survivors:
        for module, statuses in found.items():
            survivors = sorted((name for name, status in statuses.items() if status == "survived"), key=_natural)
            if survivors:
                print(f"Survived in {module} ({len(survivors)}): " + " ".join(s.split(".", 2 if module != "handler.py" else 1)[-1] for s in survivors))
        print()
    print("\n".join(table(found)))


def _natural(name: str) -> tuple[str, int]:
    function, _, number = name.rpartition("__mutmut_")
    return function, int(number) if number.isdigit() else 0


if __name__ == "__main__":
    main()

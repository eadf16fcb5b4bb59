"""The command line: check, fmt, plan and run. Spec errors exit 2 with messages, never tracebacks.

The runtime (and so torch) is imported only inside `run`. Built on click: typer (0.2x) builds a
pydantic adapter per parameter at every invocation, which alone cost more than the whole
`sslspec check specs/*.ssl` is allowed to take.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from sslspec.errors import Diagnostic, SpecError


@click.group(help="sslspec: declarative experiments for self-supervised learning theory.")
def app() -> None:
    """The `sslspec` command group."""


SET_OPTION = click.option(
    "--set", "-s", "set_", multiple=True, metavar="PATH=VALUE", help="Override a field (repeatable)."
)
PATH = click.Path(path_type=Path)

T = TypeVar("T")


def _err(text: str) -> None:
    sys.stderr.write(text.rstrip("\n") + "\n")


def guarded(fn: Callable[[], T]) -> T:
    """Run a command body: SpecError -> messages on stderr and exit 2."""
    try:
        return fn()
    except SpecError as exc:
        _err(exc.render())
        n = len(exc.diagnostics)
        _err(f"{n} error{'s' if n != 1 else ''}")
        raise SystemExit(2) from None


@app.command()
@click.argument("files", nargs=-1, required=True, type=PATH)
@SET_OPTION
def check(files: tuple[Path, ...], set_: tuple[str, ...]) -> None:
    """Check spec files: syntax, fields, types, ranges, includes and sweeps."""
    from sslspec.lower import lower

    def body() -> None:
        problems: list[Diagnostic] = []
        for f in files:
            try:
                plan = lower(f, set_ or ())
                print(f"ok  {f}  ({len(plan.runs)} run{'s' if len(plan.runs) != 1 else ''})")
            except SpecError as exc:
                problems.extend(d for d in exc.diagnostics if d not in problems)  # a bad --set: once
        if problems:
            raise SpecError(problems)

    guarded(body)


@app.command("fmt")
@click.argument("files", nargs=-1, required=True, type=PATH)
@click.option("--check", "check_", is_flag=True, help="Exit 1 if a file is not formatted.")
@click.option("--diff", is_flag=True, help="Show what would change.")
@click.option("--write", "-w", is_flag=True, help="Rewrite the files in place.")
def fmt_cmd(files: tuple[Path, ...], check_: bool, diff: bool, write: bool) -> None:
    """Print the canonical text of spec files (comments kept); --check, --diff or --write."""
    from sslspec.fmt import fmt

    def body() -> int:
        changed = 0
        errors: list[Diagnostic] = []
        for f in files:
            try:
                text = _read(f)
                new = fmt(text, str(f))
            except SpecError as exc:
                errors.extend(exc.diagnostics)
                continue
            if new != text:
                changed += 1
            if diff and new != text:
                sys.stdout.writelines(
                    difflib.unified_diff(
                        text.splitlines(True), new.splitlines(True), f"{f}", f"{f} (formatted)"
                    )
                )
            if write and new != text:
                f.write_text(new)
            if check_ and new != text:
                _err(f"would reformat {f}")
            if not (check_ or diff or write):
                sys.stdout.write(new)
        if errors:
            raise SpecError(errors)
        return 1 if check_ and changed else 0

    code = guarded(body)
    if code:
        raise SystemExit(code)


@app.command()
@click.argument("file", type=PATH)
@SET_OPTION
@click.option("--json", "json_", is_flag=True, help="Print the whole plan as canonical JSON.")
def plan(file: Path, set_: tuple[str, ...], json_: bool) -> None:
    """Show the expanded run table: run ids and the values that differ between runs."""
    from sslspec.lower import lower

    p = guarded(lambda: lower(file, set_ or ()))
    if json_:
        print(p.to_json())
        return
    from rich.console import Console
    from rich.table import Table

    paths = _varying(p)
    table = Table(title=f"{p.spec}: {len(p.runs)} run{'s' if len(p.runs) != 1 else ''}", box=None)
    for col in ["#", "run id", "experiment", *paths]:
        table.add_column(col, justify="right" if col == "#" else "left")
    for r in p.runs:
        swept = dict(r.swept)
        table.add_row(str(r.index), r.id, r.experiment, *(_show(swept.get(k, "")) for k in paths))
    Console(width=200).print(table)


def _varying(p: Any) -> list[str]:
    seen: dict[str, None] = {}
    for r in p.runs:
        for k, _ in r.swept:
            seen.setdefault(k)
    return list(seen)


def _show(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _read(f: Path) -> str:
    from sslspec.resolve import read_source

    try:
        return read_source(f, str(f))
    except OSError as exc:
        raise SpecError([Diagnostic(f"cannot read '{f}': {exc.strerror or exc}")]) from None


@app.command()
@click.argument("file", type=PATH)
@SET_OPTION
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N (overrides the spec).")
@click.option("--out", type=PATH, default=Path("results"), show_default=True, help="Results root.")
def run(file: Path, set_: tuple[str, ...], device: str | None, out: Path) -> None:
    """Run every run of a spec and write one zarr store per run under OUT."""
    from sslspec.lower import lower

    p = guarded(lambda: lower(file, set_ or ()))
    from runtime.run import execute  # torch is imported here and only here

    code = guarded(lambda: execute(p, out=out, device=device))
    raise SystemExit(code)


def main() -> None:
    """Console entry point."""
    app(prog_name="sslspec")


if __name__ == "__main__":
    main()

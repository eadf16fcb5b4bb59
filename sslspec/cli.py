"""The command line: check, fmt, plan and run. Spec errors exit 2 with messages, never tracebacks.

The runtime (and so torch) is imported only inside `run`. Built on click: typer (0.2x) builds a
pydantic adapter per parameter at every invocation, which alone cost more than the whole
`sslspec check specs/*.ssl` is allowed to take.
"""

from __future__ import annotations

import difflib
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from sslspec import __version__
from sslspec.errors import Diagnostic, SpecError, Terminated, raise_terminated
from sslspec.store.location import Place, of


@click.group(
    help="sslspec: declarative experiments for self-supervised learning theory.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, "--version", prog_name="sslspec", message="%(prog)s %(version)s")
def app() -> None:
    """The `sslspec` command group."""


@app.command()
@click.option(
    "--verbose", "-v", is_flag=True, help="Also the git commit, Python, torch/CUDA, numpy, xarray, zarr."
)
@click.option("--json", "json_", is_flag=True, help="Print the same as one JSON object.")
def version(verbose: bool, json_: bool) -> None:
    """Print the sslspec version (with --verbose, what a bug report needs)."""
    import json

    from sslspec import about

    info = about.report(verbose)
    sys.stdout.write(json.dumps(info) + "\n" if json_ else about.lines(info))


SET_OPTION = click.option(
    "--set", "-s", "set_", multiple=True, metavar="PATH=VALUE", help="Override a field (repeatable)."
)
PATH = click.Path(path_type=Path)
DEFAULT_ROOT = "results"

T = TypeVar("T")


def _err(text: str) -> None:
    sys.stderr.write(text.rstrip("\n") + "\n")


def guarded(fn: Callable[[], T]) -> T:
    """Run a command body: SpecError -> messages on stderr and its exit code (2; 1 for damaged data)."""
    try:
        return fn()
    except SpecError as exc:
        _err(exc.render())
        n = len(exc.diagnostics)
        _err(f"{n} error{'s' if n != 1 else ''}")
        raise SystemExit(exc.exit_code) from None


@app.command()
@click.argument("files", nargs=-1, required=True, type=PATH)
@SET_OPTION
def check(files: tuple[Path, ...], set_: tuple[str, ...]) -> None:
    """Check spec files: syntax, fields, types, ranges, includes and sweeps."""
    from sslspec.spec.lower import lower

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
    from sslspec.lang.fmt import fmt

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
    from sslspec.spec.lower import lower

    p = guarded(lambda: lower(file, set_ or ()))
    if json_:
        print(p.to_json())
        return
    from rich.table import Table

    from sslspec.terminal import console

    paths = _varying(p)
    table = Table(title=f"{p.spec}: {len(p.runs)} run{'s' if len(p.runs) != 1 else ''}", box=None)
    for col in ["#", "run id", "experiment", *paths]:
        table.add_column(col, justify="right" if col == "#" else "left")
    for r in p.runs:
        swept = dict(r.swept)
        table.add_row(str(r.index), r.id, r.experiment, *(_show(swept.get(k, "")) for k in paths))
    console(width=200).print(table)


def _varying(p: Any) -> list[str]:
    seen: dict[str, None] = {}
    for r in p.runs:
        for k, _ in r.swept:
            seen.setdefault(k)
    return list(seen)


def _show(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _read(f: Path) -> str:
    from sslspec.lang.resolve import read_source

    try:
        return read_source(f, str(f))
    except OSError as exc:
        raise SpecError([Diagnostic(f"cannot read '{f}': {exc.strerror or exc}")]) from None


@app.command()
@click.argument("files", nargs=-1, required=True, type=PATH, metavar="FILE...")
@SET_OPTION
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N (overrides the spec).")
@click.option(
    "--out",
    default=None,
    help="Results root, a directory or an fsspec URL (default: the spec's `results`, else ./results).",
)
@click.option("--force", is_flag=True, help="Run again into a new version even when up to date.")
@click.option("--dry-run", is_flag=True, help="Print what each run would do; write nothing.")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=None,
    help="Local worker processes (default: one per core, or one per GPU for CUDA runs).",
)
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    default=None,
    help="Largest group of runs that share every shape trained as one batched model "
    "(1: off; default: chosen from the device and its memory).",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Where runs execute: this machine, or Ray tasks (needs the `ray` extra).",
)
@click.option("--address", default=None, help="With --executor ray: auto or ray://HOST:PORT of a cluster.")
@click.option(
    "--gpus-per-run",
    "gpus",
    type=click.FloatRange(min=0),
    default=None,
    help="With --executor ray: GPUs each run asks for (e.g. 0.25 to share a card; default 1 on GPU).",
)
def run(
    files: tuple[Path, ...],
    set_: tuple[str, ...],
    device: str | None,
    out: str | None,
    force: bool,
    dry_run: bool,
    jobs: int | None,
    replicas: int | None,
    executor: str,
    address: str | None,
    gpus: float | None,
) -> None:
    """Run every run of the specs that has no complete version under OUT (resuming killed ones)
    and write one zarr store per run.

    Several specs make one queue of runs, shared by -j N worker processes on this machine (and
    with any other `sslspec run` on the same root through per-run locks), or by the tasks of a
    Ray cluster with --executor ray. Locally, runs that differ only in seeds, polarities and
    scalars such as lr or temperature train together as one batched model (--replicas).
    `--set` applies to every spec."""
    from sslspec.api import execute

    if executor == "ray" and jobs is not None:
        guarded(lambda: _usage("-j applies to the local executor; Ray places the runs itself"))
    if executor == "local" and (address is not None or gpus is not None):
        guarded(lambda: _usage("--address and --gpus-per-run apply to --executor ray"))
    if executor == "ray" and replicas is not None:
        guarded(lambda: _usage("--replicas applies to the local executor; Ray runs one run per task"))
    where: dict[str, Any] = {"jobs": jobs, "executor": executor, "address": address, "gpus": gpus}
    where["replicas"] = replicas
    previous = signal.signal(signal.SIGTERM, raise_terminated)  # `kill PID` stops runs as Ctrl-C does
    try:
        outcome = guarded(
            lambda: execute(files, set_ or (), out=out, device=device, force=force, dry_run=dry_run, **where)
        )
    except KeyboardInterrupt as stop:
        _err(
            f"{'terminated' if isinstance(stop, Terminated) else 'interrupted'}: the runs in progress "
            "stay `running` with their last checkpoints; run the same command again to resume them"
        )
        raise SystemExit(143 if isinstance(stop, Terminated) else 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise SystemExit(outcome.code)


def _usage(message: str) -> None:
    raise SpecError([Diagnostic(message)])


@app.command("ls")
@click.argument("root_arg", metavar="[ROOT]", required=False)
@click.option("--rebuild", is_flag=True, help="Rewrite the index from the stores first.")
@click.option("--json", "json_", is_flag=True, help="Print one JSON object (schema in docs/cli.md).")
def ls_cmd(root_arg: str | None, rebuild: bool, json_: bool) -> None:
    """List runs from ROOT/index.jsonl (default ROOT: ./results; a URL root has none: its stores
    are scanned): status of the newest version, swept values, final metrics. Exits 1 when a store
    read has damaged data."""
    from sslspec.store import index

    root = of(root_arg or DEFAULT_ROOT)
    if root_arg is None and not json_:
        _err(f"listing {root} (the default results root; pass ROOT for another)")

    def body() -> int:
        if not root.is_dir():
            raise SpecError([Diagnostic(f"{root}: no such results directory")])
        found = index.listing(root, rebuild)
        for note in found.notes:
            _err(f"note: {note}")
        runs = index.runs(found.entries)
        if json_:
            from sslspec.store.listing import ls_document

            _print_json(ls_document(str(root), runs))
        else:
            sys.stdout.write(_ls_table([_ls_row(e, n) for e, n in runs]))
        for line in found.damaged:
            _err(f"error: damaged data: {line}")
        return 1 if found.damaged else 0

    code = guarded(body)
    if code:
        raise SystemExit(code)


def _ls_table(rows: list[tuple[str, ...]]) -> str:
    head = ("experiment", "run id", "status", "versions", "root_corr", "loss", "swept")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in [head, *rows]
    ]
    return "\n".join(lines) + "\n"


def _ls_row(e: dict[str, Any], n_versions: int) -> tuple[str, ...]:
    m = e.get("metrics") or {}

    def num(k: str) -> str:
        return f"{m[k]:.4f}" if isinstance(m.get(k), int | float) else "-"

    swept = " ".join(f"{k}={_show(v)}" for k, v in dict(e.get("swept") or {}).items())
    return (
        str(e["experiment"]),
        str(e["run_id"]),
        "damaged" if e.get("damaged") else str(e.get("status", "?")),
        str(n_versions),
        num("root_corr"),
        num("loss"),
        swept,
    )


@app.command()
@click.argument("root_arg", metavar="ROOT", default="results")
def verify(root_arg: str) -> None:
    """Read every chunk of every complete version under ROOT and list what is damaged (exit 1 if
    anything is)."""
    from sslspec.store.integrity import verify as check_all

    root = of(root_arg)

    def body() -> int:
        if not root.is_dir():
            raise SpecError([Diagnostic(f"{root}: no such results directory")])
        found = check_all(root)
        for line in found.problems:
            _err(f"damaged: {line}")
        print(
            f"{found.stores} complete version{'s' if found.stores != 1 else ''}, {found.arrays} arrays, "
            f"{found.chunks} chunks read: {len(found.problems) or 'nothing'} damaged"
        )
        if found.unchecked:
            print(
                f"note: {found.unchecked} arrays have no checksum (written before sslspec stored one); "
                "only a broken compression frame shows there"
            )
        return 1 if found.problems else 0

    code = guarded(body)
    if code:
        raise SystemExit(code)


@app.command()
@click.argument("run_prefix", metavar="RUN")
@click.option("--root", "root_arg", default=DEFAULT_ROOT, show_default=True, help="Results root.")
@click.option("--version", "version", type=int, default=None, help="Version number (default: newest).")
@click.option("--json", "json_", is_flag=True, help="Print one JSON object (schema in docs/cli.md).")
def show(run_prefix: str, root_arg: str, version: int | None, json_: bool) -> None:
    """Show the provenance of a run (id prefix): its newest version's root attributes."""
    from sslspec.store.layout import status, version_attrs, versions
    from sslspec.store.read import pick

    def body() -> None:
        run_dir = _find_run(of(root_arg), run_prefix)
        store, _ = pick(run_dir, "latest" if version is None else version)
        assert store is not None  # a run directory always has a version
        attrs = version_attrs(store)
        if json_:
            from sslspec.store.listing import show_document

            every = [(n, str(status(p)), str(p)) for n, p in versions(run_dir)]
            number = next(n for n, _, p in every if p == str(store))
            _print_json(show_document(str(store), number, every, attrs))
            return
        listing = ", ".join(f"{p.name} ({status(p)})" for _, p in versions(run_dir))
        sys.stdout.write(_provenance_text(store, attrs, listing))

    guarded(body)


def _print_json(document: dict[str, Any]) -> None:
    import json

    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def _find_run(root: Place, prefix: str) -> Place:
    from sslspec.errors import did_you_mean
    from sslspec.store.layout import run_dirs

    if not root.is_dir():
        raise SpecError([Diagnostic(f"{root}: no such results directory")])
    every = [d for _, d in run_dirs(root)]
    found = [d for d in every if d.name.startswith(prefix)]
    if not found:
        hint = did_you_mean(prefix, [d.name for d in every])
        raise SpecError([Diagnostic(f"no run '{prefix}' under {root}{hint}")])
    if len(found) > 1:
        names = ", ".join(f"{d.parent.name}/{d.name}" for d in found[:10])
        raise SpecError([Diagnostic(f"run prefix '{prefix}' is ambiguous: {names}")])
    return found[0]


def _provenance_text(store: Place, attrs: dict[str, Any], listing: str) -> str:
    """Root attributes as `key: value` lines; the plan summarized, spec texts shown whole."""
    import json

    out = [f"store: {store}", f"store versions: {listing}"]
    long = {"plan", "spec_text", "spec_includes"}
    for k, v in attrs.items():
        if k not in long:
            out.append(f"{k}: {json.dumps(v) if isinstance(v, dict | list) else v}")
    if "plan" in attrs:
        try:
            plan = json.loads(attrs["plan"])
            out.append("plan:")
            for block, value in sorted(dict(plan.get("config", {})).items()):
                out.append(f"  {block}: {json.dumps(value, separators=(', ', ': '))}")
        except (ValueError, TypeError, AttributeError):
            out.append(f"plan: {str(attrs['plan'])[:200]}")
    if attrs.get("spec_text"):
        out.append(f"spec_text ({attrs.get('spec_path', '?')}):")
        out.extend(f"  | {line}" for line in str(attrs["spec_text"]).splitlines())
    for name, text in dict(attrs.get("spec_includes") or {}).items():
        out.append(f"included {name}:")
        out.extend(f"  | {line}" for line in str(text).splitlines())
    return "\n".join(out) + "\n"


@app.command()
@click.argument("sources", nargs=-1, required=True, type=PATH, metavar="RESULTS_OR_SPEC...")
@click.option(
    "--out", type=PATH, default=Path("report"), show_default=True, help="Folder for report.md and PNGs."
)
@click.option("--root", type=PATH, default=None, help="Results root of the specs (default: each spec's).")
@SET_OPTION
def report(sources: tuple[Path, ...], out: Path, root: Path | None, set_: tuple[str, ...]) -> None:
    """Write OUT/report.md and PNG figures for sweeps: tables over seeds, provenance, missing runs."""
    from sslspec.report import build

    path = guarded(lambda: build(sources, out, root, set_ or ()))
    print(f"wrote {path}")


def main() -> None:
    """Console entry point."""
    app(prog_name="sslspec")


if __name__ == "__main__":
    main()

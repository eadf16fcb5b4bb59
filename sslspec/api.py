"""The Python API: `check`, `plan` and `run` a spec from a notebook or a script.

Each takes a spec file's path, or its text (`text=...`, whose includes are read relative to
`base`, the working directory by default). A spec error raises one `SpecError` whose message is
what the CLI prints (its diagnostics attached as `.diagnostics`); `check` returns them instead.
`run` and `sslspec run` share one function, `execute`, so both run exactly the same way; the
runtime (and with it torch) is imported there only, when something is to run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from attrs import frozen

from sslspec.errors import Diagnostic, SpecError
from sslspec.spec.plan import Plan
from sslspec.store.location import Place, of
from sslspec.store.preflight import ready_root, writable_root

if TYPE_CHECKING:
    import xarray

# The name a spec given as text goes by in messages and provenance; its directory is `base`.
TEXT_NAME = "<text>"

Executor = Literal["local", "ray"]


@frozen
class Source:
    """A spec to lower: a file's path, or (with `text`) text named `path` whose includes are read
    relative to the directory of `path`."""

    path: str
    text: str | None = None

    @classmethod
    def of(cls, spec: str | Path | None, text: str | None, base: str | Path | None) -> Source:
        """The Source for the API's (spec, text=, base=) arguments; exactly one of spec and text."""
        if (spec is None) == (text is None):
            raise TypeError("give a spec path or text=..., not both and not neither")
        if text is None:
            if base is not None:
                raise TypeError("base= applies to text=...; a spec file's includes are read beside it")
            return cls(str(spec))
        return cls(str(Path(base) / TEXT_NAME) if base is not None else TEXT_NAME, text)

    def lower(self, sets: Sequence[str]) -> Plan:
        """Read, check and lower the spec into its Plan; SpecError with every problem found."""
        from sslspec.spec.lower import lower

        return lower(self.path, sets, self.text)


@frozen
class Outcome:
    """What `execute` did: each plan with its results root, and the exit code (0 all complete,
    1 some run failed)."""

    targets: tuple[tuple[Plan, Place], ...]
    code: int


def check(
    spec: str | Path | None = None,
    *,
    text: str | None = None,
    base: str | Path | None = None,
    sets: Sequence[str] = (),
) -> list[Diagnostic]:
    """A spec (path, or `text` with includes relative to `base`) and `--set` overrides -> every
    problem found (syntax, includes, fields, values, sweeps), each with `.message` and `.span`
    (`file`, `line`, `col`); empty when the spec is fine. Raises nothing for a spec error."""
    source = Source.of(spec, text, base)
    try:
        source.lower(sets)
    except SpecError as exc:
        return list(exc.diagnostics)
    return []


def plan(
    spec: str | Path | None = None,
    *,
    text: str | None = None,
    base: str | Path | None = None,
    sets: Sequence[str] = (),
) -> Plan:
    """A spec (path, or `text` with includes relative to `base`) -> its Plan: `.runs`, each with
    `.id`, `.experiment`, `.swept` ((path, value) per sweep axis) and the full `.config`.
    Raises SpecError (the CLI's message; `.diagnostics`) when the spec has errors."""
    return Source.of(spec, text, base).lower(sets)


def run(
    spec: str | Path | None = None,
    *,
    text: str | None = None,
    base: str | Path | None = None,
    sets: Sequence[str] = (),
    out: str | Path | None = None,
    device: str | None = None,
    force: bool = False,
    experiment: str | None = None,
    jobs: int | None = None,
    executor: Executor = "local",
    address: str | None = None,
    gpus: float | None = None,
    replicas: int | None = None,
) -> xarray.Dataset:
    """Run a spec as `sslspec run` does and return its sweep as one xarray.Dataset (what
    `sslspec.load_sweep` gives: a dimension per swept field, a `status` variable; failed runs are
    NaN with status `failed`, never dropped).

    `spec` is a path, or give `text` (includes read relative to `base`). `out` is the results
    root (default: the spec's `results`, else ./results), `device` overrides the spec's (auto,
    cpu, cuda, cuda:N), `force` runs again into new versions; runs already complete are not
    redone. `experiment` picks the one experiment to run (needed when the spec has several). A
    progress display shows in a terminal (a live bar) and in Jupyter (one line updated in
    place); plain lines elsewhere. `jobs`, `executor`, `address`, `gpus` and `replicas` are
    `execute`'s. Raises SpecError for spec errors, before anything runs.
    """
    import xarray

    the_plan = _one_experiment(Source.of(spec, text, base).lower(sets), experiment)
    outcome = execute(
        [the_plan],
        out=out,
        device=device,
        force=force,
        jobs=jobs,
        executor=executor,
        address=address,
        gpus=gpus,
        replicas=replicas,
    )
    [(done, root)] = outcome.targets
    from sslspec.store.read import load_sweep

    return cast(xarray.Dataset, load_sweep(done, root, experiment=experiment))


def _one_experiment(plan: Plan, experiment: str | None) -> Plan:
    """The plan cut to the runs of `experiment`; SpecError when it is not there, or when it is
    None and the plan holds several experiments."""
    import attrs

    from sslspec.errors import did_you_mean

    names = sorted({r.experiment for r in plan.runs})
    if experiment is None:
        if len(names) > 1:
            message = f"{plan.spec} holds experiments {', '.join(names)}; pick one with experiment="
            raise SpecError([Diagnostic(message)])
        return plan
    if experiment not in names:
        raise SpecError(
            [Diagnostic(f"{plan.spec} has no experiment '{experiment}'{did_you_mean(experiment, names)}")]
        )
    return attrs.evolve(plan, runs=tuple(r for r in plan.runs if r.experiment == experiment))


def execute(
    sources: Sequence[Source | str | Path | Plan],
    sets: Sequence[str] = (),
    *,
    out: str | Path | None = None,
    device: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    jobs: int | None = None,
    executor: Executor = "local",
    address: str | None = None,
    gpus: float | None = None,
    replicas: int | None = None,
) -> Outcome:
    """What `sslspec run` does (the CLI and `run` both call this): lower every spec with `sets`
    (all are checked before anything runs; SpecError otherwise), then run every run that has no
    complete version under its results root (`out`, else the spec's `results`), resuming killed
    ones; with `dry_run` only say what each would do. A Plan is taken as it is.

    Where runs execute: `executor="local"` runs them on this machine in `jobs` worker processes
    (default: one per core, or one per GPU for CUDA runs; 1 runs them in this process);
    `executor="ray"` makes each a Ray task, on a local Ray instance, or on the cluster at
    `address` ("auto", "ray://host:port"), each asking for `gpus` GPUs (default: 1 for a GPU
    run). Locally, runs that share every shape train as replica-batched groups of at most
    `replicas` runs (None: a size chosen from the device and its memory; 1: off; Ray tasks are
    never batched). Wrong combinations raise ValueError before anything runs."""
    _check_workers(jobs, executor, address, gpus)
    if replicas is not None and (isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1):
        raise ValueError(f"replicas={replicas!r}: must be a whole number >= 1 (or None: from the device)")
    if executor == "ray" and replicas is not None:
        raise ValueError("replicas= applies to executor='local'; Ray runs one run per task")
    lowered = [s if isinstance(s, Plan) else _source(s).lower(sets) for s in sources]
    _refuse_empty(lowered)
    targets = tuple((p, of(str(out)) if out is not None else results_root(p)) for p in lowered)
    for root in dict.fromkeys(root for _, root in targets):  # a root that cannot be written: exit 2
        (ready_root if dry_run else writable_root)(root)
    if executor == "ray" and any(str(root).startswith("memory://") for _, root in targets):
        message = "a memory:// results root lives in this process; Ray workers cannot write to it"
        raise SpecError([Diagnostic(f"{message} (use a shared directory or an object store URL)")])
    where = Where(jobs, executor, address, gpus, replicas)
    return Outcome(targets, _run_plans(targets, device, force, dry_run, where))


def _refuse_empty(plans: Sequence[Plan]) -> None:
    """A spec with nothing to run (an include-only file) is a mistake for `run`, not a success;
    `check` accepts it ("0 runs")."""
    from sslspec.lang.ir import Span
    from sslspec.lang.resolve import read_source

    empty = []
    for p in plans:
        if not p.runs:
            try:
                text: str | None = read_source(Path(p.spec), p.spec)
            except (OSError, SpecError):
                text = None
            message = "declares no experiment, so there is nothing to run (`sslspec check` accepts it)"
            empty.append(Diagnostic(message, Span(p.spec, 1, 1, 1, 1), text))
    if empty:
        raise SpecError(empty)


def _source(s: Source | str | Path) -> Source:
    return s if isinstance(s, Source) else Source(str(s))


@frozen
class Where:
    """Where the runs execute: `execute`'s jobs, executor, address, gpus and replicas."""

    jobs: int | None = None
    executor: Executor = "local"
    address: str | None = None
    gpus: float | None = None
    replicas: int | None = None


def _run_plans(
    targets: Sequence[tuple[Plan, Place]], device: str | None, force: bool, dry_run: bool, where: Where
) -> int:
    """The one call into the runtime (torch is imported here and only here)."""
    from runtime.run import execute_all, executor_for

    if where.executor == "ray":
        from runtime.ray_executor import import_ray

        import_ray()  # without the extra: a clear error, before anything runs
    shared = not any(str(root).startswith("memory://") for _, root in targets)
    jobs = where.jobs if shared else 1
    executor = executor_for(where.executor, jobs, where.address, where.gpus, where.replicas)
    return execute_all(targets, device=device, force=force, dry_run=dry_run, executor=executor)


def _check_workers(jobs: int | None, executor: str, address: str | None, gpus: float | None) -> None:
    if executor not in ("local", "ray"):
        raise ValueError(f"executor={executor!r}: use 'local' or 'ray'")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs={jobs!r}: must be a whole number >= 1 (or None: one per core)")
    if executor == "local" and (address is not None or gpus is not None):
        raise ValueError("address= and gpus= apply to executor='ray'")
    if executor == "ray" and jobs is not None:
        raise ValueError("jobs= applies to executor='local'; Ray runs as many tasks as the cluster holds")
    if gpus is not None and gpus < 0:
        raise ValueError(f"gpus={gpus}: must be >= 0")


def results_root(plan: Plan) -> Place:
    """The results root the spec names (`results = "..."`); all its runs must agree."""
    roots = sorted({r.config.results for r in plan.runs})
    if len(roots) > 1:
        raise SpecError(
            [Diagnostic(f"the runs name different results roots ({', '.join(roots)}); pass --out")]
        )
    return of(roots[0]) if roots else Path("results")

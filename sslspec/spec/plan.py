"""The Plan: every run of a spec, fully explicit, with seeds, a canonical JSON form and hashes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import attrs
from attrs import frozen

from sslspec.spec import schema
from sslspec.spec.schedule import SCHEDULES, ConstantLR
from sslspec.spec.schema import Config

PLAN_FORMAT = 1
STREAMS = ("tree", "init", "data", "measure")
# Execution settings that do not change what a run computes; left out of the content hash.
UNHASHED = ("device", "results")


@frozen
class Seeds:
    """One integer seed per random stream, derived from the run's seed."""

    tree: int
    init: int
    data: int
    measure: int

    @classmethod
    def derive(cls, seed: int) -> Seeds:
        """Derive every stream's seed from the run seed (sha256 of a fixed label; 63 bits)."""
        return cls(**{s: _seed(seed, s) for s in STREAMS})


def _seed(seed: int, stream: str) -> int:
    digest = hashlib.sha256(f"sslspec/{stream}/{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@frozen
class Run:
    """One run: its experiment, position in the sweep, config, seeds and identity."""

    experiment: str
    index: int
    config: Config
    seeds: Seeds
    swept: tuple[tuple[str, Any], ...]  # (path, value) of each sweep axis at this run
    hash: str

    @property
    def id(self) -> str:
        """A short run id: the first 12 hex digits of the content hash."""
        return self.hash[:12]

    def to_data(self) -> dict[str, Any]:
        """The run as JSON-native data."""
        return {
            "experiment": self.experiment,
            "index": self.index,
            "id": self.id,
            "hash": self.hash,
            "seeds": attrs.asdict(self.seeds),
            "swept": [[p, v] for p, v in self.swept],
            "config": config_to_data(self.config),
        }


@frozen
class Plan:
    """All runs of one spec file, in order; `axes` names the swept paths per experiment.

    `sources` holds the text of the spec and of every file it includes (path -> text, as read
    when the plan was made; a spec given as text, sslspec.run(text=...), too), for the provenance
    of each run wherever it executes, so no worker rereads the files. It is not part
    of the plan's data, JSON or hashes (what a run computes is its config), nor of equality."""

    spec: str
    runs: tuple[Run, ...]
    axes: tuple[tuple[str, tuple[str, ...]], ...]
    sources: tuple[tuple[str, str], ...] = attrs.field(default=(), eq=False, repr=False)

    def source_texts(self) -> tuple[str, dict[str, str]]:
        """The spec's text and the text of every file it includes (path -> text)."""
        texts = dict(self.sources)
        return texts.get(self.spec, ""), {p: t for p, t in texts.items() if p != self.spec}

    def to_data(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "spec": self.spec,
            "axes": {e: list(a) for e, a in self.axes},
            "runs": [r.to_data() for r in self.runs],
        }

    def to_json(self) -> str:
        """The canonical JSON text of the whole plan."""
        return canonical_json(self.to_data())


# ---- canonical data -----------------------------------------------------------------------


_SCALARS = (int, float, str, bool, type(None))


def _plain(value: Any) -> Any:
    if type(value) in _SCALARS:
        return value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if attrs.has(type(value)):
        out = {
            a.name: _plain(getattr(value, a.name))
            for a in attrs.fields(type(value))
            if not (a.metadata.get("added") and getattr(value, a.name) == a.default)  # see schema.fld
        }
        kind = schema.kind_of(value) or CALL_KINDS.get(type(value))
        if kind is not None:
            out = {"kind": kind, **out}
        return out
    return value


CALL_KINDS: dict[type, str] = {
    schema.Uniform: "uniform",
    schema.Constant: "constant",
    **{cls: name for name, cls in SCHEDULES.items()},
}


def config_to_data(cfg: Config) -> dict[str, Any]:
    """A Config as JSON-native nested dicts; blocks with kinds carry a "kind" key."""
    return _plain(cfg)  # type: ignore[no-any-return]


def config_from_data(data: dict[str, Any]) -> Config:
    """Inverse of config_to_data (for reading a plan back from a results store)."""
    blocks = {}
    for name, (kinds, _) in schema.BLOCKS.items():
        d = dict(data[name])
        cls = kinds[d.pop("kind", None)]
        blocks[name] = _structure(cls, d)
    return Config(seed=data["seed"], device=data["device"], results=data.get("results", "results"), **blocks)


def _structure(cls: type, d: dict[str, Any]) -> Any:
    kwargs = {}
    for a in attrs.fields(cls):
        v = d.get(a.name, a.default)
        sub = schema.SUBBLOCKS.get(cls, {}).get(a.name)
        if sub is not None:
            kwargs[a.name] = None if v is None else _structure(sub, v)
        elif isinstance(a.default, schema.Uniform | schema.Constant) or a.name == "polarity":
            v = dict(v)
            kwargs[a.name] = schema.Uniform(**v) if v.pop("kind") == "uniform" else schema.Constant(**v)
        elif isinstance(a.default, ConstantLR) and isinstance(v, dict):  # a schedule the plan holds
            v = dict(v)
            kwargs[a.name] = SCHEDULES[v.pop("kind")](**v)
        elif isinstance(a.default, schema.Activation):
            kwargs[a.name] = schema.Activation(**v)
        elif a.name == "tree":
            kwargs[a.name] = _tuples(v)
        elif isinstance(v, list):
            kwargs[a.name] = tuple(v)
        else:
            kwargs[a.name] = v
    return cls(**kwargs)


def _tuples(v: Any) -> Any:
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def canonical_json(data: Any) -> str:
    """Sorted keys, no whitespace, floats as repr: the form hashes are taken over."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def run_hash(experiment: str, cfg: Config) -> str:
    """The content hash of a run: sha256 over the canonical config, without execution settings."""
    data = config_to_data(cfg)
    for key in UNHASHED:
        data.pop(key)
    payload = canonical_json({"format": PLAN_FORMAT, "experiment": experiment, "config": data})
    return hashlib.sha256(payload.encode()).hexdigest()

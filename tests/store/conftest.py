"""Synthetic run stores with the runtime's layout, attributes and variables (no torch needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from sslspec.store.write import COMPRESSORS

EPOCHS, DEPTH, NODES = 2, 3, 7


def write_store(
    root: Path,
    experiment: str,
    run_id: str,
    version: int = 1,
    status: str = "complete",
    swept: dict[str, Any] | None = None,
    value: float = 0.5,
    measured: int = EPOCHS + 1,
    nodes: int | None = None,
    **attrs: Any,
) -> Path:
    """Write ROOT/<experiment>/<run_id>/vNNNN.zarr whose root best_corr, level-0 level_corr and loss
    end at `value`; they differ from epoch to epoch, node to node and step to step (so a reader that
    takes the first value, or another node's, reads a different number). Epochs from `measured` on
    are NaN, as in a run killed before measuring them. With `nodes`: that many breadth-first nodes
    of a binary tree, each with its `node_level` (an auxiliary coordinate, as the runtime writes it)."""
    with_levels, nodes = nodes is not None, nodes or NODES
    path = Path(root) / experiment / run_id / f"v{version:04d}.zarr"
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    g.attrs.update(
        {
            "schema_version": 1,
            "status": status,
            "experiment": experiment,
            "run_id": run_id,
            "run_hash": run_id * 2,
            "swept": swept or {},
            "epochs_done": EPOCHS if status == "complete" else 0,
            "plan": json.dumps({"config": {"seed": 1, "train": {"epochs": EPOCHS}}}),
            "spec_text": "experiment e {\n  seed = 1\n}\n",
            "spec_path": "e.ssl",
            "device": "cpu",
            **attrs,
        }
    )
    for name, values in (
        ("epoch", np.arange(EPOCHS + 1)),
        ("level", np.arange(DEPTH)),
        ("node", np.arange(nodes)),
    ):
        g.create_array(
            name, shape=values.shape, dtype=values.dtype, dimension_names=[name], compressors=COMPRESSORS
        )[...] = values
    g.create_array("step", shape=(EPOCHS,), dtype="int64", dimension_names=["step"], compressors=COMPRESSORS)[
        ...
    ] = np.arange(1, EPOCHS + 1)
    for name, dims, shape in (
        ("best_corr", ("epoch", "node"), (EPOCHS + 1, nodes)),
        ("level_corr", ("epoch", "level"), (EPOCHS + 1, DEPTH)),
        ("loss", ("step",), (EPOCHS,)),
    ):
        arr = g.create_array(
            name,
            shape=shape,
            dtype="float32",
            fill_value=np.nan,
            dimension_names=list(dims),
            compressors=COMPRESSORS,
        )
        arr[...] = _varying(shape, value, measured if name != "loss" else shape[0])
    if with_levels:
        arr = g.create_array(
            "node_level", shape=(nodes,), dtype="int64", dimension_names=["node"], compressors=COMPRESSORS
        )
        arr[...] = np.log2(np.arange(nodes) + 1).astype(np.int64)
        g.attrs["coordinates"] = "node_level"
    return path


def _varying(shape: tuple[int, ...], value: float, rows: int) -> np.ndarray:
    """(lead, rest): value - 1/8 per row before the last, + 1/16 per index of the second dim; rows
    from `rows` on NaN (eighths and sixteenths are exact in float32)."""
    lead = np.arange(shape[0], dtype=np.float64) - (shape[0] - 1)
    out = value + lead.reshape(-1, *([1] * (len(shape) - 1))) / 8
    if len(shape) > 1:
        out = out + np.arange(shape[1]) / 16
    out = np.broadcast_to(out, shape).astype(np.float32)
    out[rows:] = np.nan
    return out

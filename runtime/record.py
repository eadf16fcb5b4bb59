"""What a run records: the store's variables, declared from the config through the variable
table of sslspec.store.variables, and the writing of each epoch's measurements
(runtime.measurements runs them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import attrs
import numpy as np
import torch

from runtime.context import RunContext
from runtime.images.layer_ops import exact_route, selected
from runtime.images.network import ImageNet
from runtime.measurements import Measured, NetNodes, require_finite, theorem_due
from runtime.network import BN_VIEWS
from runtime.optim import lr_schedule
from runtime.sampler import Edges
from runtime.theorem import TheoremResult
from sslspec import faults
from sslspec.spec.images import IMAGE_NETWORKS
from sslspec.spec.schedule import describe as describe_schedule
from sslspec.spec.schema import Config
from sslspec.store import variables as V
from sslspec.store.files import Files
from sslspec.store.layout import Status
from sslspec.store.location import Place
from sslspec.store.variables import (
    COORDS,
    LOSS,
    READOUT,
    ROOT_CORR,
    VARIABLES,
    resolve_dims,
    root_values,
    wanted,
)
from sslspec.store.write import RunStore, dumps, jsonable

Row = tuple[str, int, Any]  # (variable, row, value): one row of a variable to write


def _batch_norm(cfg: Config) -> bool:
    """Whether the network normalizes batches (an image network's trunk always does)."""
    return isinstance(cfg.network, IMAGE_NETWORKS) or bool(getattr(cfg.network, "batch_norm", False))


def measure_epochs(cfg: Config) -> list[int]:
    """Epochs measured: 0 (initialization), every k-th, and always the last."""
    return sorted({*range(0, cfg.train.epochs + 1, cfg.measure.every), cfg.train.epochs})


class Recorder:
    """Declares one run's variables and writes them as the run proceeds."""

    def __init__(
        self, path: Place, spec: str, ctx: RunContext, provenance: dict[str, Any], files: Files | None = None
    ) -> None:
        run = ctx.run
        self._setup(ctx)
        cfg = run.config
        self.store = RunStore(
            path,
            {
                **provenance,
                "status": Status.RUNNING,
                "epochs_done": 0,
                "measured_epochs": [],
                "experiment": run.experiment,
                "run_id": run.id,
                "run_hash": run.hash,
                "run_index": run.index,
                "swept": dict(run.swept),
                "seed": cfg.seed,
                "seeds": {k: int(v) for k, v in attrs.asdict(run.seeds).items()},
                "plan": dumps(run.to_data()),
                "plan_spec": spec,
                **({"batch_norm_views": BN_VIEWS} if _batch_norm(cfg) else {}),
            },
            files,
        )
        faults.moment("first write")
        self._declare(ctx.source.edges)
        # Non-index coordinates, so xarray shows them as coordinates and not data variables.
        if self.layout is not None:  # (the auxiliary coordinates are the tree's)
            self.store.update_attrs(coordinates=" ".join(e.name for e in COORDS if e.aux))

    def _setup(self, ctx: RunContext) -> None:
        cfg, layout = ctx.cfg, ctx.source.layout
        self.cfg, self.run, self.layout = cfg, ctx.run, layout
        self.nodes = NetNodes.of(cfg, layout, ctx.source.input_dim)
        op, net = cfg.measure.covariance_operator, ctx.net
        self.op_layers = (
            selected(net.encoder, op.layers) if op is not None and isinstance(net, ImageNet) else []
        )
        self.loss_attrs = ctx.objective.attrs
        self.schedule = lr_schedule(cfg)
        self.epochs = measure_epochs(cfg)
        self.first_best: float | None = None
        self.last_best: float | None = None

    @classmethod
    def reopen(cls, path: Place, ctx: RunContext, files: Files | None = None) -> Recorder:
        """A Recorder over an existing store of `run` (a resumed run): nothing is declared again;
        the root correlations measured so far are read back for the summary line."""
        rec = cls.__new__(cls)
        rec._setup(ctx)
        rec.store = RunStore.reopen(path, files)
        best = rec.store.arrays.get(ROOT_CORR)
        if best is not None:
            roots = root_values(np.asarray(best[...]), best.metadata.dimension_names)
            done = roots[~np.isnan(roots)]
            if done.size:
                rec.first_best, rec.last_best = float(done[0]), float(done[-1])
        return rec

    # ---- declaration --------------------------------------------------------------------
    def _declare(self, edges: Edges | None) -> None:
        """Every coordinate and variable of the table that this config's measurements produce."""
        st, measure, dim = self.store, self.cfg.measure, self.nodes.dim
        values = self._coord_values(edges)
        names = {"net": dim, "every": measure.loss.every if measure.loss is not None else 1}
        extra = {LOSS: self.loss_attrs, V.LR: self._schedule_attrs()}
        for entry in COORDS:
            if entry.name in values and wanted(entry, measure):
                st.coord(entry, values[entry.name], names)
        for entry in VARIABLES:
            dims = resolve_dims(entry.dims, dim)
            if wanted(entry, measure, self.schedule is not None) and all(d in values for d in dims):
                shape = tuple(len(values[d]) for d in dims)  # (no tree: no polarity)
                chunk = {"row": 1, "epoch": self._losses_per_epoch(), "whole": shape[0]}[entry.chunk]
                st.variable(entry, dims, shape, chunk, names, extra.get(entry.name, {}))
        if V.POLARITY in values:
            st.write(V.POLARITY, slice(None), values[V.POLARITY])
        if self.op_layers:
            st.arrays[V.LAYER_OP_EIGVAL].attrs.update(layers=[lay.name for lay in self.op_layers])
            st.update_attrs(coordinates=f"{V.OP_LAYER_SIZE} {V.OP_LAYER_EXACT}")

    def _schedule_attrs(self) -> dict[str, Any]:
        s = self.schedule
        return {} if s is None else {"schedule": describe_schedule(s.schedule, s.base, s.total, s.per_epoch)}

    def _losses_per_epoch(self) -> int:
        lt = self.cfg.measure.loss
        return -(-(self.cfg.train.samples // self.cfg.train.batch) // lt.every) if lt is not None else 1

    def _coord_values(self, edges: Edges | None) -> dict[str, np.ndarray]:
        """The values of every coordinate this run can have (and the edges' polarity); the tree's
        only for a data source with one."""
        cfg, lay, nodes = self.cfg, self.layout, self.nodes
        values = {
            "epoch": np.asarray(self.epochs),
            "unit": np.arange(max(nodes.widths)),
            "input": np.arange(max(nodes.fan_in)),
            "output": np.arange(nodes.widths[0]),  # the output layer's (root's) units
        }
        if lay is not None and edges is not None:
            flat = edges.flat().numpy()
            values |= {
                "level": np.arange(lay.depth),
                "height": lay.depth - np.arange(lay.depth),
                "node": np.arange(lay.n_latent),
                "node_level": lay.node_level().numpy(),
                "node_parent": lay.node_parent().numpy(),
                "edge": np.arange(flat.size),
                V.POLARITY: flat,
                "state": np.arange(lay.states),
            }
        if nodes.dim == "layer":
            values["layer"] = np.arange(nodes.count)
            values["layer_width"] = np.asarray(nodes.widths)
        if cfg.measure.loss is not None:
            steps, k = cfg.train.samples // cfg.train.batch, cfg.measure.loss.every
            ends = [
                ep * steps + min((j + 1) * k, steps)
                for ep in range(cfg.train.epochs)
                for j in range(-(-steps // k))
            ]
            values["step"] = np.asarray(ends, dtype=np.int64)
        op = cfg.measure.covariance_operator
        if op is not None and self.op_layers:  # an image network: per layer (runtime.images.layer_ops)
            values["op_layer"] = np.arange(len(self.op_layers))
            values[V.OP_LAYER_SIZE] = np.asarray([lay.size for lay in self.op_layers])
            values[V.OP_LAYER_EXACT] = np.asarray([int(exact_route(lay)) for lay in self.op_layers])
            values["op_eig"] = np.arange(op.top)
            values["op_weight"] = np.arange(max(lay.size for lay in self.op_layers))
        elif op is not None:
            p_max = max(f * w for f, w in zip(nodes.fan_in, nodes.widths, strict=True))
            values["eig"] = np.arange(min(op.top, p_max))
            values["op_index"] = values["op_index2"] = np.arange(p_max)
        tc = cfg.measure.theorem_check
        if tc is not None:
            values["tc_node"], values["tc_batches"] = np.asarray(tc.nodes), np.asarray(tc.batches)
        return values

    def theorem_due(self, epoch: int) -> bool:
        return theorem_due(self.cfg, epoch)

    # ---- writing ------------------------------------------------------------------------
    def losses(self, epoch: int, losses: torch.Tensor) -> None:
        """Write one epoch's per-step losses, averaged over the configured window."""
        lt = self.cfg.measure.loss
        if lt is None:
            return
        per_epoch = -(-losses.numel() // lt.every)
        idx = torch.arange(losses.numel(), device=losses.device) // lt.every
        sums = torch.zeros(per_epoch, dtype=losses.dtype, device=losses.device).index_add_(0, idx, losses)
        means = sums / torch.bincount(idx, minlength=per_epoch).to(losses.dtype)
        rows = slice(epoch * per_epoch, (epoch + 1) * per_epoch)
        self.store.write(V.LOSS, rows, means.cpu().numpy())
        if self.schedule is not None and V.LR in self.store.arrays:
            first, n = epoch * losses.numel(), losses.numel()
            lrs = np.asarray([self.schedule.lr(first + i) for i in range(n)], dtype=np.float64)
            starts = np.arange(0, n, lt.every)
            self.store.write(V.LR, rows, np.add.reduceat(lrs, starts) / np.diff(np.append(starts, n)))

    def write_epoch(self, row: int, found: Measured, net: Any) -> None:
        """Write row `row` of every measured variable from one measurement pass (the rows in one
        batch of store writes: RunStore.write_many)."""
        rows = self._measure_rows(row, found.corr, found.op, net)
        if found.theorem is not None:
            rows += self._theorem_rows(row, found.theorem)
        for measure, result in found.results.items():
            rows += self._result_rows(row, measure, result)
        self.store.write_many(rows)
        if found.theorem is not None:
            self.store.arrays[V.TC_REL_ERROR].attrs.update(jsonable(found.theorem.attrs))
        for name, value in (found.readout or {}).items():
            self.store.write(name, row, np.float64(value))
        if found.readout and (probe := self.cfg.measure.linear_probe) is not None:
            rule = {"last": "the final model", "validation": "weight decay chosen on 20% of the train split"}
            self.store.arrays[READOUT["probe"]].attrs.update(
                selection=probe.selection,
                selection_rule=f"{rule[probe.selection]}; never selected on the test split",
                features=net.features_doc,
            )
        self.store.update_attrs(measured_epochs=self.epochs[: row + 1])

    def _theorem_rows(self, row: int, res: TheoremResult) -> list[Row]:
        rows = []
        for e in V.results_of("theorem_check"):
            assert e.result is not None
            rows.append((e.name, row, getattr(res, e.result).detach().cpu().numpy()))
        return rows

    def _result_rows(self, row: int, measure: str, result: dict[str, torch.Tensor]) -> list[Row]:
        """Each table entry of `measure` that this store declares, from its result key, cropped to
        the declared shape (the operator's eigenpairs are computed beyond `top`)."""
        st, rows = self.store, []
        for e in V.results_of(measure):
            if e.name not in st.arrays or e.result not in result:
                continue
            shape = st.arrays[e.name].shape[1:]
            value = result[e.result].detach().cpu()[tuple(slice(0, n) for n in shape)].numpy()
            rows.append((e.name, row, value.astype(st.arrays[e.name].dtype, copy=False)))  # cast once here
        return rows

    def _measure_rows(
        self, row: int, corr: dict[str, torch.Tensor] | None, op: dict[str, torch.Tensor] | None, net: Any
    ) -> list[Row]:
        """(variable, row, value) of the correlations, the operator and the weights; the finiteness
        checks run before any of them is written."""
        st, rows = self.store, []
        if corr is not None:
            r = {k: v.cpu() for k, v in corr.items()}
            require_finite({"best": r["best"].reshape(-1, 1)}, ("best",), "latent correlation")
            rows += self._result_rows(row, "latent_correlation", r)
            root = float(r["best"].reshape(-1)[0])  # the root (for an mlp: against the output layer)
            self.first_best = root if self.first_best is None else self.first_best
            self.last_best = root
        if op is not None:
            require_finite(op, ("trace", "fro"), "covariance operator")
            rows += self._result_rows(row, "covariance_operator", op)
        if V.WEIGHT in st.arrays:
            wts = net.node_weights().detach().cpu()  # (n, W, F_max)
            f = st.arrays[V.WEIGHT].shape[-1]
            padded = torch.full((wts.shape[0], wts.shape[1], f), torch.nan, dtype=wts.dtype)
            padded[:, :, : wts.shape[2]] = wts
            rows.append((V.WEIGHT, row, padded.numpy()))
            rows.append((V.WEIGHT_NORM, row, torch.nan_to_num(padded).flatten(1).norm(dim=1).numpy()))
        return rows

    def epoch_done(self, epochs_done: int) -> None:
        self.store.update_attrs(epochs_done=epochs_done)

    def finish(self, status: Status, wall: float, error: str | None = None) -> None:
        """Write the closing attributes; `status` goes last of all."""
        self.store.update_attrs(
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
            wall_time_s=wall,
            **({"error": error} if error else {}),
        )
        faults.moment("final status")
        self.store.update_attrs(status=status)

    def summary(self, wall: float) -> str:
        cfg = self.cfg
        n = cfg.train.samples * cfg.train.epochs
        corr = (
            f", root corr {self.first_best:.3f} -> {self.last_best:.3f}"
            if self.first_best is not None and self.last_best is not None
            else ""
        )
        return (
            f"run {self.run.index + 1} {self.run.id} complete: {cfg.train.epochs} epochs, {n:,} samples in "
            f"{wall:.1f} s ({n / max(wall, 1e-9):,.0f} samples/s){corr} -> {self.store.path}"
        )

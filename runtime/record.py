"""What a run records: the store's variables, declared from the config, and the measurement pass
that fills one epoch of them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from runtime.layout import Layout
from runtime.measure import CovarianceOperator, LatentCorrelation, n_classes
from runtime.probe import LayerCorrelation, NetNodes, measure_pass, require_finite
from runtime.sampler import Edges, draw_views
from runtime.theorem import theorem_check
from sslspec import faults
from sslspec.lang.check import Config
from sslspec.spec.plan import Plan, Run
from sslspec.store.files import Files
from sslspec.store.layout import Status
from sslspec.store.location import Place
from sslspec.store.variables import COORDS, LOSS, ROOT_CORR, VARIABLES, resolve_dims, root_values, wanted
from sslspec.store.write import RunStore, dumps, jsonable


def measure_epochs(cfg: Config) -> list[int]:
    """Epochs measured: 0 (initialization), every k-th, and always the last."""
    return sorted({*range(0, cfg.train.epochs + 1, cfg.measure.every), cfg.train.epochs})


class Recorder:
    """Declares one run's variables and writes them as the run proceeds."""

    def __init__(
        self,
        path: Place,
        plan: Plan,
        run: Run,
        layout: Layout,
        edges: Edges,
        provenance: dict[str, Any],
        files: Files | None = None,
    ) -> None:
        self._setup(run, layout)
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
                "seeds": {k: int(v) for k, v in vars_(run.seeds).items()},
                "plan": dumps(run.to_data()),
                "plan_spec": plan.spec,
            },
            files,
        )
        faults.moment("first write")
        self._declare(edges)
        # Non-index coordinates, so xarray shows them as coordinates and not data variables.
        self.store.update_attrs(coordinates=" ".join(e.name for e in COORDS if e.aux))

    def _setup(self, run: Run, layout: Layout) -> None:
        cfg = run.config
        self.cfg, self.run, self.layout = cfg, run, layout
        self.nodes = NetNodes.of(cfg, layout)
        self.epochs = measure_epochs(cfg)
        self.first_best: float | None = None
        self.last_best: float | None = None

    @classmethod
    def reopen(cls, path: Place, run: Run, layout: Layout, files: Files | None = None) -> Recorder:
        """A Recorder over an existing store of `run` (a resumed run): nothing is declared again;
        the root correlations measured so far are read back for the summary line."""
        rec = cls.__new__(cls)
        rec._setup(run, layout)
        rec.store = RunStore.reopen(path, files)
        best = rec.store.arrays.get(ROOT_CORR)
        if best is not None:
            roots = root_values(np.asarray(best[...]), best.metadata.dimension_names)
            done = roots[~np.isnan(roots)]
            if done.size:
                rec.first_best, rec.last_best = float(done[0]), float(done[-1])
        return rec

    # ---- declaration --------------------------------------------------------------------
    def _declare(self, edges: Edges) -> None:
        """Every coordinate and variable of the table that this config's measurements produce."""
        st, measure, dim = self.store, self.cfg.measure, self.nodes.dim
        values = self._coord_values(edges)
        names = {"net": dim, "every": measure.loss.every if measure.loss is not None else 1}
        for entry in COORDS:
            if entry.name in values and wanted(entry, measure):
                st.coord(entry, values[entry.name], names)
        for entry in VARIABLES:
            if wanted(entry, measure):
                dims = resolve_dims(entry.dims, dim)
                shape = tuple(len(values[d]) for d in dims)
                chunk = {"row": 1, "epoch": self._losses_per_epoch(), "whole": shape[0]}[entry.chunk]
                extra = {"reduction": getattr(self.cfg.loss, "reduction", "")} if entry.name == LOSS else {}
                st.variable(entry, dims, shape, chunk, names, extra)
        st.write("polarity", slice(None), values["polarity"])

    def _losses_per_epoch(self) -> int:
        lt = self.cfg.measure.loss
        return -(-(self.cfg.train.samples // self.cfg.train.batch) // lt.every) if lt is not None else 1

    def _coord_values(self, edges: Edges) -> dict[str, np.ndarray]:
        """The values of every coordinate this run can have (and the edges' polarity)."""
        cfg, lay, nodes = self.cfg, self.layout, self.nodes
        flat = edges.flat().numpy()
        values = {
            "epoch": np.asarray(self.epochs),
            "level": np.arange(lay.depth),
            "height": lay.depth - np.arange(lay.depth),
            "node": np.arange(lay.n_latent),
            "node_level": lay.node_level().numpy(),
            "node_parent": lay.node_parent().numpy(),
            "edge": np.arange(flat.size),
            "polarity": flat,
            "unit": np.arange(max(nodes.widths)),
            "state": np.arange(lay.states),
            "input": np.arange(max(nodes.fan_in)),
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
        if op is not None:
            p_max = max(f * w for f, w in zip(nodes.fan_in, nodes.widths, strict=True))
            values["eig"] = np.arange(min(op.top, p_max))
            values["op_index"] = values["op_index2"] = np.arange(p_max)
        tc = cfg.measure.theorem_check
        if tc is not None:
            values["tc_node"], values["tc_batches"] = np.asarray(tc.nodes), np.asarray(tc.batches)
        return values

    def theorem_due(self, epoch: int) -> bool:
        tc = self.cfg.measure.theorem_check
        return tc is not None and (tc.epochs is None or epoch in tc.epochs)

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
        self.store.write("loss", slice(epoch * per_epoch, (epoch + 1) * per_epoch), means.cpu().numpy())

    @torch.no_grad()
    def measure(
        self,
        row: int,
        epoch: int,
        net: Any,
        layout: Layout,
        edges: Edges,
        gen: torch.Generator,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        """One measurement pass on fresh samples; writes row `row` (epoch `epoch`) of each variable."""
        cfg, m = self.cfg, self.cfg.measure
        net.eval()
        corr: LatentCorrelation | LayerCorrelation | None = None
        if m.latent_correlation is not None:
            nodes = self.nodes
            corr = (
                LayerCorrelation(layout, nodes.widths)
                if nodes.dim == "layer"
                else LatentCorrelation(layout, nodes.widths[0])
            )
        op = self._operator(layout, epoch)
        measure_pass(cfg, net, layout, edges, gen, device, dtype, corr, op)
        self._write_measures(row, corr, op if m.covariance_operator is not None else None, net)
        if self.theorem_due(epoch) and op is not None:
            self._theorem(row, net, op, layout, edges, gen, device, dtype)
        self.store.update_attrs(measured_epochs=self.epochs[: row + 1])

    def _operator(self, layout: Layout, epoch: int) -> CovarianceOperator | None:
        """The operator accumulator when recorded or needed by a theorem check at this epoch."""
        cfg, c, tc = self.cfg, self.cfg.measure.covariance_operator, self.cfg.measure.theorem_check
        due = self.theorem_due(epoch)
        if c is None and not due:
            return None
        beta = getattr(cfg.loss, "beta", 0.0)
        within = tuple(tc.nodes) if due and tc is not None and beta != 0 else ()
        return CovarianceOperator(
            self.nodes.level_fan_in(),
            n_classes(layout, cfg.augment.share, layout.states),
            top=c.top if c else 1,
            full=bool(c and c.full),
            official=bool(c and c.official),
            within=within,
        )

    def _theorem(
        self,
        row: int,
        net: Any,
        op: CovarianceOperator,
        layout: Layout,
        edges: Edges,
        gen: torch.Generator,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        cfg, tc = self.cfg, self.cfg.measure.theorem_check
        assert tc is not None
        h = int(getattr(cfg.loss, "negatives", 1))
        draw = lambda: draw_views(
            layout, edges, cfg.data, cfg.augment, cfg.train.batch, h, gen, device
        ).inputs(dtype)
        with torch.enable_grad():
            res = theorem_check(net, cfg.loss, draw, op, tc.nodes, tc.batches)
        for name, value in (
            ("tc_rel_error", res.rel_error),
            ("tc_cosine", res.cosine),
            ("tc_rel_error_own", res.rel_error_own),
            ("tc_cosine_own", res.cosine_own),
            ("tc_grad_norm", res.grad_norm),
        ):
            self.store.write(name, row, value.detach().cpu().numpy())
        self.store.arrays["tc_rel_error"].attrs.update(jsonable(res.attrs))

    def _write_measures(
        self,
        row: int,
        corr: LatentCorrelation | LayerCorrelation | None,
        op: CovarianceOperator | None,
        net: Any,
    ) -> None:
        st = self.store
        if corr is not None:
            r = {k: v.cpu() for k, v in corr.result().items()}
            require_finite({"best": r["best"].reshape(-1, 1)}, ("best",), "latent correlation")
            st.write("corr", row, r["corr"].numpy())
            st.write("best_corr", row, r["best"].numpy())
            st.write("level_corr", row, r["level_mean"].numpy())
            root = float(r["best"].reshape(-1)[0])  # the root (for an mlp: against the output layer)
            self.first_best = root if self.first_best is None else self.first_best
            self.last_best = root
        if op is not None:
            r = op.result()
            require_finite(r, ("trace", "fro"), "covariance operator")
            top = st.arrays["op_eigval"].shape[-1]
            st.write("op_eigval", row, r["eigvals"][:, :top].cpu().numpy())
            if "op_eigvec" in st.arrays:
                st.write("op_eigvec", row, r["eigvecs"][:, :, :top].cpu().numpy())
            st.write("op_trace", row, r["trace"].cpu().numpy())
            st.write("op_fro", row, r["fro"].cpu().numpy())
            if "full" in r:
                st.write("op_full", row, r["full"].cpu().numpy())
            if "conn" in r:
                st.write("conn_official_fro", row, r["conn"].cpu().numpy())
        if "weight" in st.arrays:
            wts = net.node_weights().detach().cpu()  # (n, W, F_max)
            f = st.arrays["weight"].shape[-1]
            padded = torch.full((wts.shape[0], wts.shape[1], f), torch.nan, dtype=wts.dtype)
            padded[:, :, : wts.shape[2]] = wts
            st.write("weight", row, padded.numpy())
            st.write("weight_norm", row, torch.nan_to_num(padded).flatten(1).norm(dim=1).numpy())

    def epoch_done(self, epochs_done: int) -> None:
        self.store.update_attrs(epochs_done=epochs_done)

    def finish(self, status: Status, wall: float, error: str | None = None) -> None:
        """Write the closing attributes; `status` goes last of all."""
        from datetime import UTC, datetime

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


def vars_(obj: Any) -> dict[str, Any]:
    import attrs

    return attrs.asdict(obj)

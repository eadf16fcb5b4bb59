"""What a run records: the store's variables, declared from the config, and the measurement pass
that fills one epoch of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.layout import Layout
from runtime.measure import CovarianceOperator, LatentCorrelation, n_classes
from runtime.probe import LayerCorrelation, NetNodes, measure_pass, require_finite
from runtime.sampler import Edges, draw_views
from runtime.store import RunStore, dumps, jsonable
from runtime.theorem import theorem_check
from sslspec import faults
from sslspec.lang.check import Config
from sslspec.spec.plan import Plan, Run


def measure_epochs(cfg: Config) -> list[int]:
    """Epochs measured: 0 (initialization), every k-th, and always the last."""
    return sorted({*range(0, cfg.train.epochs + 1, cfg.measure.every), cfg.train.epochs})


class Recorder:
    """Declares one run's variables and writes them as the run proceeds."""

    def __init__(
        self, path: Path, plan: Plan, run: Run, layout: Layout, edges: Edges, provenance: dict[str, Any]
    ) -> None:
        self._setup(run, layout)
        cfg = run.config
        self.store = RunStore(
            path,
            {
                **provenance,
                "status": "running",
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
        )
        faults.moment("first write")
        self._declare(edges)
        # Non-index coordinates, so xarray shows them as coordinates and not data variables.
        self.store.update_attrs(coordinates="height node_level node_parent")

    def _setup(self, run: Run, layout: Layout) -> None:
        cfg = run.config
        self.cfg, self.run, self.layout = cfg, run, layout
        self.nodes = NetNodes.of(cfg, layout)
        self.epochs = measure_epochs(cfg)
        self.first_best: float | None = None
        self.last_best: float | None = None

    @classmethod
    def reopen(cls, path: Path, run: Run, layout: Layout) -> Recorder:
        """A Recorder over an existing store of `run` (a resumed run): nothing is declared again;
        the root correlations measured so far are read back for the summary line."""
        rec = cls.__new__(cls)
        rec._setup(run, layout)
        rec.store = RunStore.reopen(path)
        if "best_corr" in rec.store.arrays:
            roots = np.asarray(rec.store.arrays["best_corr"][...]).reshape(len(rec.epochs), -1)[:, 0]
            done = roots[~np.isnan(roots)]
            if done.size:
                rec.first_best, rec.last_best = float(done[0]), float(done[-1])
        return rec

    # ---- declaration --------------------------------------------------------------------
    def _declare(self, edges: Edges) -> None:
        cfg, lay, st = self.cfg, self.layout, self.store
        s, e = lay.states, len(self.epochs)
        n = lay.n_latent
        st.coord(
            "epoch", self.epochs, "epochs", "training epochs completed when measured (0 = initialization)"
        )
        st.coord("level", np.arange(lay.depth), "1", "latent level (0 = root)")
        st.coord(
            "height",
            lay.depth - np.arange(lay.depth),
            "1",
            "height above the leaves (official numbering)",
            dim="level",
        )
        st.coord("node", np.arange(n), "1", "latent node, breadth first (0 = root)")
        st.coord("node_level", lay.node_level().numpy(), "1", "level of each latent node", dim="node")
        st.coord(
            "node_parent", lay.node_parent().numpy(), "1", "parent of each latent node (-1: none)", dim="node"
        )
        flat = edges.flat().numpy()
        st.coord("edge", np.arange(flat.size), "1", "edge into each non-root latent node, then each leaf")
        st.variable(
            "polarity",
            ("edge",),
            (flat.size,),
            "1",
            "polarity delta of each edge (sign * |rho|)",
            dtype="float64",
            lead_chunk=flat.size,
        )
        st.write("polarity", slice(None), flat)
        steps = cfg.train.samples // cfg.train.batch
        if cfg.measure.loss is not None:
            k = cfg.measure.loss.every
            per_epoch = -(-steps // k)
            ends = [
                ep * steps + min((j + 1) * k, steps)
                for ep in range(cfg.train.epochs)
                for j in range(per_epoch)
            ]
            st.coord(
                "step", np.asarray(ends, dtype=np.int64), "steps", "SGD steps done at the end of the window"
            )
            st.variable(
                "loss",
                ("step",),
                (len(ends),),
                "1",
                f"training loss, mean over {k} SGD step(s)",
                dtype="float64",
                lead_chunk=max(per_epoch, 1),
                reduction=getattr(cfg.loss, "reduction", ""),
            )
        nodes = self.nodes
        dim, m, w_max = nodes.dim, nodes.count, max(nodes.widths)
        st.coord("unit", np.arange(w_max), "1", "hidden unit of a node (or layer)")
        if dim == "layer":
            st.coord("layer", np.arange(m), "1", "layer of the network (0 = output layer)")
            st.coord("layer_width", np.asarray(nodes.widths), "1", "units of each layer", dim="layer")
        if cfg.measure.latent_correlation is not None:
            st.coord("state", np.arange(s), "1", "latent state (one-vs-rest indicator)")
            lead = ("layer",) if dim == "layer" else ()
            size = (m,) if dim == "layer" else ()
            st.variable(
                "corr",
                ("epoch", *lead, "node", "state", "unit"),
                (e, *size, n, s, w_max),
                "1",
                "Pearson correlation of [latent == state] with the unit's pre-activation",
                comment="one-vs-rest per state; for 2 states, state 1 is the latent value itself",
            )
            st.variable(
                "best_corr",
                ("epoch", *lead, "node"),
                (e, *size, n),
                "1",
                "max over states and units of |corr|",
            )
            st.variable(
                "level_corr",
                ("epoch", *lead, "level"),
                (e, *size, lay.depth),
                "1",
                "mean best_corr of each level",
            )
        self._declare_operator(e, m)
        self._declare_theorem(e)
        if cfg.measure.weights is not None:
            f_max = max(nodes.fan_in)
            st.coord("input", np.arange(f_max), "1", "input of a node (children in order, then their units)")
            st.variable(
                "weight",
                ("epoch", dim, "unit", "input"),
                (e, m, w_max, f_max),
                "1",
                "weight matrix of each node, NaN beyond its fan-in",
            )
            st.variable("weight_norm", ("epoch", dim), (e, m), "1", "Frobenius norm of each node's weights")

    def _declare_operator(self, e: int, n: int) -> None:
        op = self.cfg.measure.covariance_operator
        if op is None:
            return
        st, dim = self.store, self.nodes.dim
        p_max = max(f * w for f, w in zip(self.nodes.fan_in, self.nodes.widths, strict=True))
        top = min(op.top, p_max)
        st.coord("eig", np.arange(top), "1", "eigenvalue rank (0 = largest)")
        st.coord("op_index", np.arange(p_max), "1", "operator row: input i major, unit o minor (= vec(W))")
        st.variable(
            "op_eigval",
            ("epoch", dim, "eig"),
            (e, n, top),
            "1",
            "top eigenvalues of the covariance operator V_x[K_bar(x)]",
        )
        if op.vectors:
            st.variable(
                "op_eigvec",
                ("epoch", dim, "op_index", "eig"),
                (e, n, p_max, top),
                "1",
                "eigenvectors of the covariance operator (columns), NaN beyond the node's size",
            )
        st.variable("op_trace", ("epoch", dim), (e, n), "1", "trace of the covariance operator")
        st.variable("op_fro", ("epoch", dim), (e, n), "1", "Frobenius norm of the covariance operator")
        if op.full:
            st.coord("op_index2", np.arange(p_max), "1", "operator column (same order as op_index)")
            st.variable(
                "op_full",
                ("epoch", dim, "op_index", "op_index2"),
                (e, n, p_max, p_max),
                "1",
                "the whole covariance operator, NaN-padded",
            )
        if op.official:
            st.variable(
                "conn_official_fro",
                ("epoch", dim),
                (e, n),
                "1",
                "Frobenius norm of the official code's 'conn' matrix (another index order; not the "
                "paper's operator)",
            )

    def _declare_theorem(self, e: int) -> None:
        tc = self.cfg.measure.theorem_check
        if tc is None:
            return
        st, shape = self.store, (e, len(tc.nodes), len(tc.batches))
        st.coord(
            "tc_node", np.asarray(tc.nodes), "1", f"network {self.nodes.dim} checked by the theorem check"
        )
        st.coord(
            "tc_batches",
            np.asarray(tc.batches),
            "batches",
            "M: training batches the gradient is averaged over",
        )
        dims = ("epoch", "tc_node", "tc_batches")
        what = "mean gradient over M batches vs -2 c sum_m OP[node, m] vec(W_m) over the node's level"
        st.variable("tc_rel_error", dims, shape, "1", f"relative error ||g - p|| / ||g||: {what}")
        st.variable("tc_cosine", dims, shape, "1", f"cosine(g, p): {what}")
        st.variable(
            "tc_rel_error_own", dims, shape, "1", "relative error with the node's own operator block only"
        )
        st.variable("tc_cosine_own", dims, shape, "1", "cosine with the node's own operator block only")
        st.variable("tc_grad_norm", dims, shape, "1", "norm of the mean gradient g")

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

    def finish(self, status: str, wall: float, error: str | None = None) -> None:
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

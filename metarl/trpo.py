"""Trust-region math for MAML-TRPO (Schulman et al., 2015; Finn et al., 2017, Section 5.3).

Pure functions on flat parameter vectors ``[P]``: conjugate gradient, Hessian-vector products
of a scalar taken through any computation of the params (the MAML adaptation included), the
same curvature in Gauss-Newton form, the step scaled to the KL bound, and a backtracking line
search that keeps the old parameters unless a finite, improving step within the bound is found.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.func import grad, jvp, vjp
from torch.utils._pytree import tree_map

from metarl.params import Params, flatten, unflatten


def conjugate_gradient(Avp: Callable[[Tensor], Tensor], b: Tensor, iterations: int = 10,
                       residual_tol: float = 1e-10) -> tuple[Tensor, Tensor]:
    """Approximately solve ``A x = b`` for symmetric positive definite ``A`` given only
    products ``Avp(v) = A v``: ``b [P] -> (x [P], A x [P])``.

    ``A x`` is accumulated from the products CG takes anyway, which saves TRPO the extra
    product it needs to scale the step (one of eleven through the MAML adaptation).
    """
    x, Ax = torch.zeros_like(b), torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(iterations):
        if rr <= residual_tol:
            break
        Ap = Avp(p)
        alpha = rr / (p @ Ap)
        x = x + alpha * p
        Ax = Ax + alpha * Ap
        r = r - alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, Ax


def hessian_vector_product(scalar: Tensor, params: Sequence[Tensor], damping: float = 0.0
                           ) -> Callable[[Tensor], Tensor]:
    """``v [P] -> (H + damping I) v`` with ``H`` the Hessian of ``scalar`` w.r.t. ``params``.

    The gradient graph is built once; each product is one more backward through it, so
    ``scalar`` may depend on ``params`` through second-order adaptation (MAML's inner step).
    """
    grads = torch.autograd.grad(scalar, list(params), create_graph=True)
    flat_grad = torch.cat([g.reshape(-1) for g in grads])

    def product(v: Tensor) -> Tensor:
        hv = torch.autograd.grad(flat_grad @ v.detach(), list(params), retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv]) + damping * v

    return product


def gauss_newton_product(outputs: Callable[[Params], Any], params: Params,
                         divergence: Callable[[Any], Tensor], damping: float = 0.0,
                         compiled: bool = False) -> Callable[[Tensor], Tensor]:
    """``v [P] -> (J^T F J + damping I) v``: ``J`` the Jacobian of ``outputs(params)`` (a pytree
    of tensors), ``F`` the Hessian of ``divergence`` at those outputs.

    This is the Hessian of ``divergence(outputs(params))`` wherever the divergence has zero
    gradient, as ``KL(old || new)`` at ``new = old`` (Martens, 2010; Schulman et al., 2015,
    Appendix C), so TRPO's curvature needs no second derivative of ``outputs``: each product
    is a forward-mode pass (``J v``) and a reverse pass (``J^T u``) through ``outputs``, which
    may hold MAML's inner step, instead of a backward pass through its double-backward graph.

    ``compiled=True`` takes each product as one ``torch.compile``d function of ``params`` and
    ``v``, whose kernels fuse the elementwise work of the primal, tangent and reverse passes;
    if compiling fails (no C++ compiler, say) it warns once and runs the same function eagerly.
    """
    params = {k: v.detach() for k, v in params.items()}
    fisher = grad(divergence)
    # compiled code is cached on the function's code object, not on this wrapper
    gn_product = _compiled(_gauss_newton_product) if compiled else _gauss_newton_product
    return lambda v: flatten(gn_product(outputs, fisher, params,
                                        unflatten(v, params))) + damping * v


def _gauss_newton_product(outputs: Callable[[Params], Any], fisher: Callable[[Any], Any],
                          params: Params, v: Params) -> Params:
    """``J^T F J v`` from scratch in one primal pass: ``J^T`` is the reverse pass of the
    forward-mode pass ``v -> J v`` (linear in ``v``), so the primal is not differentiated again."""

    def tangent(v: Params) -> tuple[Any, Any]:
        at, jv = jvp(outputs, (params,), (v,))
        return jv, at

    jv, pullback, at = vjp(tangent, v, has_aux=True)
    _, fjv = jvp(fisher, (tree_map(lambda t: t.detach(), at),), (jv,))
    return pullback(fjv)[0]


_compile_failed: list[str] = []


def _compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compile(fn)``, or ``fn`` itself once a compilation has failed (warned once)."""
    compiled_fn = torch.compile(fn, dynamic=False)

    def call(*args: Any) -> Any:
        if not _compile_failed:
            try:
                return compiled_fn(*args)
            except Exception as error:  # a fault of the function itself recurs eagerly below
                _compile_failed.append(f"{type(error).__name__}: {str(error).strip()[:200]}")
                warnings.warn(f"torch.compile of the curvature product failed "
                              f"({_compile_failed[0].splitlines()[0]}); running it "
                              "uncompiled (--no-compile-curvature skips the attempt)",
                              stacklevel=2)
        return fn(*args)

    return call


def scale_to_trust_region(direction: Tensor, direction_product: Tensor, max_kl: float) -> Tensor:
    """The step ``beta * direction`` whose quadratic KL model ``0.5 s^T A s`` equals ``max_kl``,
    given ``direction_product = A direction``; zero if that model is not positive."""
    shs = 0.5 * (direction @ direction_product)
    if not torch.isfinite(shs) or shs <= 0:
        return torch.zeros_like(direction)
    return direction * math.sqrt(max_kl / shs.item())


@dataclass(frozen=True)
class LineSearchResult:
    accepted: bool
    steps: int
    """Backtracking steps taken (``fraction = ratio ** steps``); ``max_steps`` if rejected."""
    loss: float
    kl: float


def line_search(evaluate: Callable[[float], tuple[float, float]], old_loss: float,
                max_kl: float, ratio: float = 0.8, max_steps: int = 15) -> LineSearchResult:
    """Backtrack ``fraction = 1, ratio, ratio^2, ...`` until ``evaluate(fraction) -> (loss,
    kl)`` is finite, lowers the loss and keeps ``kl <= max_kl``.

    ``evaluate`` applies the step scaled by ``fraction`` and measures it; the caller restores
    the old parameters when the result is not ``accepted``.
    """
    loss, kl = math.nan, math.nan
    for step in range(max_steps):
        loss, kl = evaluate(ratio**step)
        if math.isfinite(loss) and math.isfinite(kl) and loss < old_loss and kl <= max_kl:
            return LineSearchResult(True, step, loss, kl)
    return LineSearchResult(False, max_steps, loss, kl)

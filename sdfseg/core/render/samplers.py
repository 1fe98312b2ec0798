"""Ray samplers that concentrate samples near the SDF surface.

All samplers return sorted distances ``t [R, S]`` along the rays and run under
``torch.no_grad`` (the renderer re-evaluates the field with gradients at them).
``sdf_fn`` maps points ``[P, 3]`` to the scene SDF ``[P]``. After each call
``sampler.last_evaluations_per_ray`` holds how many SDF evaluations a ray cost.

* :class:`HierarchicalSDFSampler` (cheap, the CPU default): uniform coarse
  samples, then a few NeuS-style up-sampling rounds with a fixed, doubling
  logistic sharpness.
* :class:`ErrorBoundedSampler`: VolSDF's error-bounded sampler (uniform samples,
  up to a few rounds that add samples until the opacity error bound for the
  model's ``beta`` is below ``eps``, then inverse-CDF samples + extra ones).
* :func:`depth_guided_samples`: for rays with sensor depth.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch
from torch import Tensor

from ..fields.density import laplace_density
from .volume import points_along_rays

SdfFn = Callable[[Tensor], Tensor]


def near_far_sphere(origins: Tensor, dirs: Tensor, radius: float, min_near: float = 0.05) -> tuple[Tensor, Tensor]:
    """Entry/exit distances of rays ``[R, 3], [R, 3]`` with the origin-centred sphere -> ``[R], [R]``.

    ``near`` is at least ``min_near`` (cameras inside the sphere start there);
    rays that miss the sphere get ``far == near``.
    """
    a = (dirs * dirs).sum(-1)
    b = 2.0 * (origins * dirs).sum(-1)
    c = (origins * origins).sum(-1) - radius * radius
    root = torch.sqrt((b * b - 4.0 * a * c).clamp_min(0.0))
    near = ((-b - root) / (2.0 * a)).clamp_min(min_near)
    far = torch.maximum((-b + root) / (2.0 * a), near)
    return near, far


def stratified_samples(near: Tensor, far: Tensor, n: int, perturb: bool) -> Tensor:
    """``n`` stratified distances in ``[near, far]`` per ray: ``[R], [R] -> [R, n]`` sorted.

    Bin centres when ``perturb`` is False, one uniform random point per bin otherwise.
    """
    r = near.shape[0]
    offs = torch.rand(r, n, device=near.device) if perturb else torch.full((r, n), 0.5, device=near.device)
    u = (torch.arange(n, device=near.device, dtype=near.dtype)[None] + offs) / n
    return near[:, None] + (far - near)[:, None] * u


def sample_pdf(bins: Tensor, weights: Tensor, n: int, perturb: bool) -> Tensor:
    """Inverse-CDF samples of the piecewise-constant pdf ``weights [R, B]`` on ``bins [R, B+1]``.

    Returns ``[R, n]`` sorted. A small floor on the weights keeps rays with zero
    weight sampled uniformly.
    """
    r, n_bins = weights.shape
    w = weights.clamp_min(0.0) + 1e-5
    cdf = torch.cumsum(w / w.sum(-1, keepdim=True), dim=-1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf.clamp(max=1.0)], dim=-1)  # [R, B+1]
    offs = torch.rand(r, n, device=bins.device) if perturb else torch.full((r, n), 0.5, device=bins.device)
    u = ((torch.arange(n, device=bins.device, dtype=bins.dtype)[None] + offs) / n).contiguous()
    idx = torch.searchsorted(cdf.contiguous(), u, right=True).clamp(1, n_bins)
    c0, c1 = cdf.gather(1, idx - 1), cdf.gather(1, idx)
    b0, b1 = bins.gather(1, idx - 1), bins.gather(1, idx)
    denom = torch.where(c1 - c0 < 1e-8, torch.ones_like(c0), c1 - c0)
    return b0 + ((u - c0) / denom).clamp(0.0, 1.0) * (b1 - b0)


def _eval_sdf(sdf_fn: SdfFn, origins: Tensor, dirs: Tensor, t: Tensor) -> Tensor:
    """Scene SDF at ``o + t d``: ``[R, S] -> [R, S]``."""
    pts = points_along_rays(origins, dirs, t)
    return sdf_fn(pts.reshape(-1, 3)).reshape(t.shape)


def _merge(t: Tensor, sdf: Tensor, t_new: Tensor, sdf_new: Tensor) -> tuple[Tensor, Tensor]:
    """Merge two sample sets per ray and sort by ``t``: ``[R, A] + [R, B] -> [R, A+B]``."""
    t_all, order = torch.sort(torch.cat([t, t_new], dim=-1), dim=-1)
    return t_all, torch.cat([sdf, sdf_new], dim=-1).gather(1, order)


def logistic_interval_weights(t: Tensor, sdf: Tensor, sharpness: float) -> Tensor:
    """NeuS-style discrete weights per interval ``[R, S] -> [R, S-1]`` for up-sampling.

    With ``Phi = sigmoid(sharpness * sdf)``, interval ``i`` gets
    ``alpha_i = (Phi(hi) - Phi(lo)) / Phi(hi)`` where ``hi`` is the larger end value
    and ``lo`` the smallest SDF the interval can contain: the smaller end value, or,
    when both ends are outside, the 1-Lipschitz bound ``(s_i + s_{i+1} - delta_i) / 2``
    (catches thin parts and grazing hits between two positive samples). Entries and
    exits both count; ``w_i = alpha_i prod_{j<i} (1 - alpha_j)``.
    """
    s0, s1 = sdf[:, :-1], sdf[:, 1:]
    hi, lo = torch.maximum(s0, s1), torch.minimum(s0, s1)
    lipschitz = 0.5 * (s0 + s1 - (t[:, 1:] - t[:, :-1]))
    lo = torch.where(lo > 0, torch.minimum(lo, lipschitz), lo)
    cdf_hi, cdf_lo = torch.sigmoid(hi * sharpness), torch.sigmoid(lo * sharpness)
    a = ((cdf_hi - cdf_lo) / (cdf_hi + 1e-6)).clamp(0.0, 1.0)
    trans = torch.cumprod(torch.cat([torch.ones_like(a[:, :1]), 1.0 - a[:, :-1] + 1e-7], dim=-1), dim=-1)
    return a * trans


class HierarchicalSDFSampler:
    """Uniform coarse samples + NeuS-style up-sampling with a fixed sharpness schedule.

    Cost per ray: ``n_coarse + n_importance * (n_rounds - 1) / n_rounds`` SDF
    evaluations (the last round's samples are not evaluated); returns
    ``n_coarse + n_importance`` samples. Round ``i`` uses logistic sharpness
    ``base_sharpness * 2**i``, capped at ``beta_sharpness / beta`` when the model's
    Laplace ``beta`` is passed (a soft density's weights are spread over ~beta, so
    sharper up-sampling would miss part of them).
    """

    def __init__(
        self,
        n_coarse: int = 64,
        n_importance: int = 64,
        n_rounds: int = 4,
        base_sharpness: float = 64.0,
        perturb: bool = True,
        beta_sharpness: float = 1.0,
    ) -> None:
        if n_rounds < 1 or n_importance % n_rounds:
            raise ValueError("n_importance must be a positive multiple of n_rounds")
        self.n_coarse, self.n_importance, self.n_rounds = n_coarse, n_importance, n_rounds
        self.base_sharpness, self.perturb = float(base_sharpness), perturb
        self.beta_sharpness = float(beta_sharpness)
        self.last_evaluations_per_ray = 0

    @torch.no_grad()
    def sample(
        self, origins: Tensor, dirs: Tensor, near: Tensor, far: Tensor, sdf_fn: SdfFn, beta: Optional[float] = None
    ) -> Tensor:
        """Sorted ``t [R, n_coarse + n_importance]``; ``beta`` (optional) caps the sharpness."""
        t = stratified_samples(near, far, self.n_coarse, self.perturb)
        sdf = _eval_sdf(sdf_fn, origins, dirs, t)
        evals = self.n_coarse
        per_round = self.n_importance // self.n_rounds
        cap = float("inf") if beta is None else self.beta_sharpness / float(beta)
        for i in range(self.n_rounds):
            w = logistic_interval_weights(t, sdf, min(self.base_sharpness * 2**i, cap))
            t_new = sample_pdf(t, w, per_round, self.perturb)
            if i == self.n_rounds - 1:
                t = torch.sort(torch.cat([t, t_new], dim=-1), dim=-1).values
                break
            t, sdf = _merge(t, sdf, t_new, _eval_sdf(sdf_fn, origins, dirs, t_new))
            evals += per_round
        self.last_evaluations_per_ray = evals
        return t


class ErrorBoundedSampler:
    """VolSDF error-bounded sampler for the Laplace density.

    ``n_uniform`` stratified samples; while the opacity error bound ``B(T, beta)``
    of a ray exceeds ``eps`` (up to ``max_rounds`` rounds) find by bisection the
    smallest ``beta* >= beta`` whose bound is below ``eps`` and add ``n_add``
    samples where that bound's error is; finally draw ``n_importance`` inverse-CDF
    samples from the weights at ``beta`` (converged) or ``beta*`` and add
    ``n_extra`` of the evaluated samples at random. Output ``[R, n_importance + n_extra]``.
    Converged rays stop early (they cost no more SDF evaluations).
    The model's ``beta`` comes from ``sample(..., beta=)`` or the ``density`` module.
    """

    def __init__(
        self,
        n_uniform: int = 128,
        n_importance: int = 64,
        n_extra: int = 32,
        n_add: int = 64,
        eps: float = 0.1,
        max_rounds: int = 5,
        n_bisection: int = 10,
        density: Optional[torch.nn.Module] = None,
        perturb: bool = True,
    ) -> None:
        self.n_uniform, self.n_add, self.n_importance = n_uniform, n_add, n_importance
        self.n_extra = min(n_extra, n_uniform)
        self.eps, self.max_rounds, self.n_bisection = eps, max_rounds, n_bisection
        self.density, self.perturb = density, perturb
        self.last_evaluations_per_ray = 0.0

    def _model_beta(self, beta: Optional[Union[float, Tensor]]) -> float:
        if beta is not None:
            return float(beta)
        if self.density is None:
            raise ValueError("ErrorBoundedSampler needs beta= or a density module with .beta")
        return float(self.density.beta)

    @torch.no_grad()
    def sample(
        self, origins: Tensor, dirs: Tensor, near: Tensor, far: Tensor, sdf_fn: SdfFn, beta: Optional[float] = None
    ) -> Tensor:
        """Sorted ``t [R, n_importance + n_extra]``."""
        beta0 = self._model_beta(beta)
        n_rays = origins.shape[0]
        out = torch.empty(n_rays, self.n_importance + self.n_extra, device=origins.device, dtype=origins.dtype)
        t = stratified_samples(near, far, self.n_uniform, self.perturb)
        sdf = _eval_sdf(sdf_fn, origins, dirs, t)
        total_evals = float(n_rays * self.n_uniform)
        span = (far - near).clamp_min(1e-6)
        beta_plus = torch.sqrt(span**2 / (4.0 * (self.n_uniform - 1) * math.log1p(self.eps)))
        active = torch.arange(n_rays, device=origins.device)
        for rnd in range(self.max_rounds + 1):
            dstar = interval_distance_bound(t, sdf)
            ok = opacity_error_bound(t, sdf, dstar, torch.full_like(beta_plus, beta0)) <= self.eps
            last = rnd == self.max_rounds
            betas = torch.where(ok, torch.full_like(beta_plus, beta0), beta_plus)
            done = ok | last
            out[active[done]] = self._finish(t[done], sdf[done], betas[done])
            if last or bool(done.all()):
                break
            keep = ~done
            active, t, sdf, beta_plus = active[keep], t[keep], sdf[keep], beta_plus[keep]
            beta_star = self._bisect(t, sdf, dstar[keep], beta0, beta_plus)
            pdf = _error_pdf(t, sdf, dstar[keep], beta_star)
            t_new = sample_pdf(t, pdf, self.n_add, self.perturb)
            t, sdf = _merge(t, sdf, t_new, _eval_sdf(sdf_fn, origins[active], dirs[active], t_new))
            total_evals += active.numel() * self.n_add
            beta_plus = beta_star
        self.last_evaluations_per_ray = total_evals / max(n_rays, 1)
        return out

    def _bisect(self, t: Tensor, sdf: Tensor, dstar: Tensor, beta0: float, beta_plus: Tensor) -> Tensor:
        """Per-ray smallest ``beta`` in ``[beta0, beta_plus]`` with bound ``<= eps`` ``-> [R]``."""
        lo, hi = torch.full_like(beta_plus, beta0), beta_plus.clone()
        for _ in range(self.n_bisection):
            mid = 0.5 * (lo + hi)
            good = opacity_error_bound(t, sdf, dstar, mid) <= self.eps
            hi, lo = torch.where(good, mid, hi), torch.where(good, lo, mid)
        return hi

    def _finish(self, t: Tensor, sdf: Tensor, betas: Tensor) -> Tensor:
        """Final samples for finished rays: inverse CDF of the weights + random extra samples."""
        if t.shape[0] == 0:
            return t.new_zeros(0, self.n_importance + self.n_extra)
        sigma = laplace_density(sdf, betas[:, None])
        delta = t[:, 1:] - t[:, :-1]
        tau = sigma[:, :-1] * delta
        trans = torch.exp(-torch.cumsum(torch.cat([torch.zeros_like(tau[:, :1]), tau[:, :-1]], -1), -1))
        weights = trans * -torch.expm1(-tau)
        t_final = sample_pdf(t, weights, self.n_importance, self.perturb)
        if self.perturb:
            pick = torch.rand(t.shape, device=t.device).argsort(dim=-1)[:, : self.n_extra]
        else:
            pick = torch.linspace(0, t.shape[1] - 1, self.n_extra, device=t.device).round().long()
            pick = pick[None].expand(t.shape[0], -1)
        return torch.sort(torch.cat([t_final, t.gather(1, pick)], dim=-1), dim=-1).values


def interval_distance_bound(t: Tensor, sdf: Tensor) -> Tensor:
    """VolSDF ``d*_i``: a lower bound on the distance to the surface along interval ``i``.

    From ``|s_i|, |s_{i+1}|`` (surface-free balls around both ends) and the interval
    length: 0 if the balls do not cover the segment or the sign changes, the
    nearer end's value if the triangle is obtuse, else the triangle's height.
    ``[R, S], [R, S] -> [R, S-1]``.
    """
    a, b = sdf[:, :-1].abs(), sdf[:, 1:].abs()
    c = (t[:, 1:] - t[:, :-1]).clamp_min(1e-10)
    s = 0.5 * (a + b + c)
    area = torch.sqrt((s * (s - a) * (s - b) * (s - c)).clamp_min(0.0))
    height = 2.0 * area / c
    obtuse = (a * a >= b * b + c * c) | (b * b >= a * a + c * c)
    dstar = torch.where(obtuse, torch.minimum(a, b), height)
    crossing = (a + b <= c) | (sdf[:, :-1] * sdf[:, 1:] <= 0)
    return torch.where(crossing, torch.zeros_like(dstar), dstar)


def _interval_errors(t: Tensor, dstar: Tensor, beta: Tensor) -> Tensor:
    """Left-Riemann error bound of the optical depth per interval ``[R, S-1]``:
    ``delta^2 / (4 beta^2) * exp(-d* / beta)`` (Laplace density with alpha = 1/beta)."""
    delta = t[:, 1:] - t[:, :-1]
    b = beta[:, None]
    return delta**2 / (4.0 * b * b) * torch.exp(-dstar / b)


def opacity_error_bound(t: Tensor, sdf: Tensor, dstar: Tensor, beta: Tensor) -> Tensor:
    """VolSDF bound ``max_k exp(-R_k) (exp(E_k) - 1)`` on the opacity error per ray ``[R]``.

    ``R_k``: left-Riemann optical depth up to interval ``k``, ``E_k``: accumulated
    interval error bounds; ``beta [R]``.
    """
    delta = t[:, 1:] - t[:, :-1]
    sigma = laplace_density(sdf[:, :-1], beta[:, None])
    depth = torch.cumsum(sigma * delta, dim=-1)
    err = torch.cumsum(_interval_errors(t, dstar, beta), dim=-1)
    return (torch.exp(-depth) * torch.expm1(err.clamp(max=60.0))).amax(dim=-1)


def _error_pdf(t: Tensor, sdf: Tensor, dstar: Tensor, beta: Tensor) -> Tensor:
    """Where the opacity error of ``beta [R]`` comes from, per interval ``[R, S-1]``:
    visible transmittance times ``exp(E_i) - 1`` of the interval's own error."""
    delta = t[:, 1:] - t[:, :-1]
    sigma = laplace_density(sdf[:, :-1], beta[:, None])
    tau = sigma * delta
    trans = torch.exp(-(torch.cumsum(tau, dim=-1) - tau))
    return trans * torch.expm1(_interval_errors(t, dstar, beta).clamp(max=60.0))


def depth_guided_samples(
    near: Tensor,
    far: Tensor,
    depth: Tensor,
    valid: Tensor,
    n_uniform: int,
    n_near: int,
    std: Union[float, Tensor],
    perturb: bool = True,
) -> Tensor:
    """Samples for rays with known depth ``[R] -> t [R, n_uniform + n_near]`` sorted.

    ``depth`` is the distance along the ray (same units as ``near``/``far``);
    valid rays get ``n_near`` samples at stratified quantiles of
    ``N(depth, std^2)`` (clamped to ``[near, far]``) plus ``n_uniform`` stratified
    uniform ones; invalid rays get ``n_uniform + n_near`` uniform samples.
    """
    uniform = stratified_samples(near, far, n_uniform + n_near, perturb)
    if n_near == 0:
        return uniform
    r = near.shape[0]
    offs = torch.rand(r, n_near, device=near.device) if perturb else torch.full((r, n_near), 0.5, device=near.device)
    q = ((torch.arange(n_near, device=near.device, dtype=near.dtype)[None] + offs) / n_near).clamp(1e-4, 1 - 1e-4)
    std_t = torch.as_tensor(std, dtype=near.dtype, device=near.device).expand(r)
    around = depth[:, None] + std_t[:, None] * math.sqrt(2.0) * torch.erfinv(2.0 * q - 1.0)
    around = torch.minimum(torch.maximum(around, near[:, None]), far[:, None])
    base = stratified_samples(near, far, n_uniform, perturb)
    guided = torch.cat([base, around], dim=-1)
    t = torch.where(valid[:, None], guided, uniform)
    return torch.sort(t, dim=-1).values


def carve_samples(near: Tensor, depth: Tensor, first: Tensor, n: int, spread: float, margin: float,
                  perturb: bool = True) -> Tensor:
    """``n`` extra samples per ray ``[R, n]`` in front of the sensor depth, where a surface the model
    should not have may be: around ``first`` (ray distance of the model's first surface, -1 = none)
    when it lies more than ``margin`` in front of ``depth`` (a floater, a fattened silhouette), spread
    evenly over ``first +- spread``; stratified over ``[near, depth - margin]`` on the other rays with
    depth. Rays without depth (``depth <= 0``) get them stratified over ``[near, near + 2 spread]``
    (a few wasted samples instead of a ragged batch). Every sample lies in ``[near, depth - margin]``
    where that interval is not empty.
    """
    valid = depth > 0
    end = torch.where(valid, torch.maximum(depth - margin, near), near + 2.0 * spread)
    floater = valid & (first >= 0) & (first < depth - margin)
    lo = torch.where(floater, torch.maximum(first - spread, near), near)
    hi = torch.where(floater, torch.minimum(first + spread, end), end)
    return stratified_samples(lo, torch.maximum(hi, lo), n, perturb)

"""Arithmetic whose every rounding is fixed, so its results are the same bytes on any x86 machine.

BLAS (OpenBLAS in numpy and scikit-learn, MKL in torch) picks its kernel by CPU: AVX-512, AVX2 and SSE kernels,
and 1 or 2 threads, add the terms of a dot product in other orders and round them differently. So does a SIMD
reduction (numpy's and torch's sum, exp, log by vector width). What is here uses only IEEE operations that round
one way everywhere (+, -, *, /, sqrt, max, frexp, ldexp, rint), element by element, in numpy float64: sums
are a fixed pairwise tree (`tree_sum`), exp and log are polynomials; no BLAS, no vectorised reduction. It is
the logistic regression's solver (`fit_softmax_regression`); the sizes it sees (hundreds of videos x 512 x
a few categories) keep it well under a second per hundred iterations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k * LN2_HI is exact (fdlibm's constants)
LN2_LO = 1.90821492927058770002e-10
EXP_TERMS = [1 / math.factorial(n) for n in range(14)]  # Taylor on |r| <= ln2/2: the 14th term is < 1e-17
LOG_TERMS = [1 / (2 * j + 1) for j in range(13)]  # 2 atanh(s) on |s| <= 0.172: the 13th term is < 1e-19


def tree_sum(values: np.ndarray, axis: int) -> np.ndarray:
    """Sum over `axis` in one fixed order: zero-padded to a power of two, then halves added until one is left."""
    a = np.moveaxis(np.asarray(values, dtype=np.float64), axis, 0)
    size = 1 << max(len(a) - 1, 0).bit_length()
    if size != len(a):
        a = np.concatenate([a, np.zeros((size - len(a), *a.shape[1:]))])
    while len(a) > 1:
        half = len(a) // 2
        a = a[:half] + a[half:]
    return a[0]


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (n, d) @ b (d, k): each product rounded once, the d terms tree-summed."""
    return tree_sum(a[:, :, None] * b[None, :, :], axis=1)


def dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(tree_sum((a * b).ravel(), axis=0))


def horner(x: np.ndarray, coefficients: list[float]) -> np.ndarray:
    """sum c_i x^i, a multiply then an add per term (never a fused multiply-add)."""
    out = np.full_like(x, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        out = out * x + c
    return out


def exp(x: np.ndarray) -> np.ndarray:
    """e^x to about 1 ulp: x = k ln2 + r with |r| <= ln2/2, e^x = 2^k e^r (0 below -745, inf above 709.8)."""
    x = np.clip(np.asarray(x, dtype=np.float64), -746.0, 710.0)
    k = np.rint(x / (LN2_HI + LN2_LO))
    r = (x - k * LN2_HI) - k * LN2_LO
    return np.ldexp(horner(r, EXP_TERMS), k.astype(np.int32))


def log(x: np.ndarray) -> np.ndarray:
    """ln x for x > 0 to a few ulp: x = m 2^e with m in [sqrt(1/2), sqrt 2), ln m = 2 atanh((m - 1) / (m + 1))."""
    m, e = np.frexp(np.asarray(x, dtype=np.float64))
    low = m < math.sqrt(0.5)
    m = np.where(low, m * 2, m)
    e = (e - low).astype(np.float64)
    s = (m - 1) / (m + 1)
    return e * LN2_HI + (e * LN2_LO + 2 * s * horner(s * s, LOG_TERMS))


def softmax_loss(logits: np.ndarray, onehot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row cross-entropy and softmax probabilities of (n, k) logits; the k columns summed left to right."""
    shifted = logits - logits.max(1, keepdims=True)
    e = exp(shifted)
    total = e[:, 0]
    for column in range(1, e.shape[1]):
        total = total + e[:, column]
    loss = log(total) - tree_sum(shifted * onehot, axis=1)
    return loss, e / total[:, None]


@dataclass
class SoftmaxFit:
    coef: np.ndarray  # (k, d); with 2 classes the first row is 0 (scikit-learn's one-row binary model)
    intercept: np.ndarray  # (k,)
    iterations: int
    converged: bool


def fit_softmax_regression(
    x: np.ndarray, y: np.ndarray, n_classes: int, c: float, max_iter: int, gtol: float = 1e-7
) -> SoftmaxFit:
    """Multinomial logistic regression as scikit-learn's LogisticRegression(C=c) fits it, solved with L-BFGS in
    exact arithmetic: minimises mean log-loss + ||W||^2 / (2 c n) (the same minimiser as c * sum of log-losses +
    ||W||^2 / 2), intercepts not penalised. Two classes: the binary model (class 0's row fixed at 0), as scikit-learn.

    Stops when the largest gradient entry is at most `gtol`, the objective stops falling (relative change under
    64 eps, as scikit-learn's lbfgs) or after `max_iter` iterations.
    """
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    onehot = (np.asarray(y)[:, None] == np.arange(n_classes)[None, :]).astype(np.float64)
    free = np.ones((n_classes, 1))
    if n_classes == 2:
        free[0] = 0.0  # logits [0, z]: softmax = sigmoid
    penalty = 1.0 / (c * n)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        coef, intercept = theta[:, :d], theta[:, d]
        loss, probabilities = softmax_loss(matmul(x, coef.T) + intercept, onehot)
        residual = (probabilities - onehot) / n  # (n, k)
        grad = np.concatenate([matmul(residual.T, x) + penalty * coef, tree_sum(residual, axis=0)[:, None]], axis=1)
        value = float(tree_sum(loss, axis=0)) / n + 0.5 * penalty * dot(coef, coef)
        return value, grad * free

    theta = np.zeros((n_classes, d + 1))
    value, grad = objective(theta)
    memory: list[tuple[np.ndarray, np.ndarray, float]] = []  # (s, y, 1 / y.s), oldest first, at most 10
    iterations, converged = 0, float(np.abs(grad).max()) <= gtol
    while not converged and iterations < max_iter:
        direction = -lbfgs_direction(grad, memory)
        slope = dot(grad, direction)
        if slope >= 0:  # not a descent direction (rounding): restart from the gradient
            memory.clear()
            direction, slope = -grad, -dot(grad, grad)
        step = 1.0 if memory else min(1.0, 1.0 / math.sqrt(dot(grad, grad)))
        for _ in range(50):  # backtracking to a sufficient decrease (Armijo)
            candidate = theta + step * direction
            new_value, new_grad = objective(candidate)
            if new_value <= value + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break  # no step decreases the objective: as good as this arithmetic gets
        s, change = candidate - theta, new_grad - grad
        curvature = dot(change, s)
        if curvature > 1e-12 * dot(change, change):
            memory = [*memory[-9:], (s, change, 1.0 / curvature)]
        iterations += 1
        falling = value - new_value > 64 * np.finfo(np.float64).eps * max(abs(value), abs(new_value), 1.0)
        theta, value, grad = candidate, new_value, new_grad
        converged = float(np.abs(grad).max()) <= gtol or not falling
    return SoftmaxFit(theta[:, :d].copy(), theta[:, d].copy(), iterations, converged)


def lbfgs_direction(grad: np.ndarray, memory: list[tuple[np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """The L-BFGS two-loop recursion: the inverse-Hessian estimate times `grad`."""
    q = grad
    alphas = []
    for s, y, rho in reversed(memory):
        alpha = rho * dot(s, q)
        alphas.append(alpha)
        q = q - alpha * y
    if memory:
        s, y, _ = memory[-1]
        q = q * (dot(s, y) / dot(y, y))
    for (s, y, rho), alpha in zip(memory, reversed(alphas), strict=True):
        q = q + s * (alpha - rho * dot(y, q))
    return q

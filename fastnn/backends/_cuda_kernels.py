"""numba.cuda kernels of CudaBackend (fastnn.backends.cuda imports this module on first use).

Every elementwise kernel is a grid-stride loop over a flat, C-contiguous view (consecutive
threads touch consecutive elements); reductions (loss sums, squared norms, penalties) sum in
float64 per thread, then per block in shared memory (the simulator has no warp shuffles), and
add one float64 atomic per block into a device accumulator, so nothing returns to the host.
Per-column passes (bias gradients, BatchNorm) give a thread one column: a warp then reads
consecutive addresses of the same row. The matrix product is a shared-memory tiled kernel
with the dense layer's bias and activation fused into its store.

Arithmetic is in float64 inside each thread (like the NumPy reference) and rounded once on the
store, except the matrix product, which accumulates in the arrays' dtype. Optional arrays are
never None inside a kernel: the launch wrappers pass a dummy array and a flag.

Under the simulator (NUMBA_ENABLE_CUDASIM=1) every thread is a Python thread, so blocks and
grids are kept tiny there (TPB, TILE, MAX_BLOCKS); on a GPU they take their usual sizes.
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda, float32, float64, uint64

from .base import ACTIVATION_CODES, RESIDUAL_CODES

SIMULATED = bool(config.ENABLE_CUDASIM)
#: threads per block of the 1-D kernels (a power of two: the block reductions halve it)
TPB = 16 if SIMULATED else 256
#: edge of the matmul tiles (TILE x TILE threads per block)
TILE = 4 if SIMULATED else 16
#: most blocks of a grid-stride launch
MAX_BLOCKS = 2 if SIMULATED else 8192
_TILE_PAD = TILE + 1  # a padded row: the transposed tile loads hit distinct shared-memory banks

_jit = cuda.jit(cache=not SIMULATED)
_device = cuda.jit(device=True, inline=True)

_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
# bfloat16 rounding on the bits (round_bf16), as uint64 constants (numba types uint64 mixed
# with int64 literals as float64)
_BF16_ABS, _BF16_INF, _BF16_QUIET = np.uint64(0x7FFFFFFF), np.uint64(0x7F800000), np.uint64(0x00400000)
_BF16_KEEP, _BF16_HALF, _S16, _ONE = np.uint64(0xFFFF0000), np.uint64(0x7FFF), np.uint64(16), np.uint64(1)
_INV_2_32 = 2.0 ** -32
_TWO_PI_2_32 = 2.0 * math.pi * 2.0 ** -32
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
#: activation codes, from the one table in base.ACTIVATIONS (numba folds these globals as constants)
_A = ACTIVATION_CODES
_IDENTITY, _SIGMOID, _TANH, _RELU, _LEAKY_RELU = _A["identity"], _A["sigmoid"], _A["tanh"], _A["relu"], _A["leaky_relu"]
_ELU, _GELU, _SOFTPLUS, _SILU, _SOFTMAX = _A["elu"], _A["gelu"], _A["softplus"], _A["silu"], _A["softmax"]
_MSE, _MAE, _HUBER = RESIDUAL_CODES["mse"], RESIDUAL_CODES["mae"], RESIDUAL_CODES["huber"]


# ------------------------------------------------------------------------ device functions
@_device
def _sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@_device
def act_value(code, x, alpha):
    """f(x) of the activation ``code`` (base.ACTIVATIONS order; softmax is a row kernel)."""
    if code == _SIGMOID:
        return _sigmoid(x)
    if code == _TANH:
        return math.tanh(x)
    if code == _RELU:
        return 0.0 if x < 0 else x
    if code == _LEAKY_RELU:
        return x if x > 0 else alpha * x
    if code == _ELU:
        return x if x > 0 else alpha * math.expm1(min(x, 0.0))
    if code == _GELU:
        return 0.5 * x * (1.0 + math.erf(x * _INV_SQRT2))
    if code == _SOFTPLUS:
        return max(x, 0.0) + math.log1p(math.exp(-abs(x)))
    if code == _SILU:
        return x * _sigmoid(x)
    return x


@_device
def act_grad(code, dy, x, y, alpha):
    """dy * f'(.) from the output y, or the input x for gelu and silu."""
    if code == _SIGMOID:
        return dy * y * (1.0 - y)
    if code == _TANH:
        return dy * (1.0 - y * y)
    if code == _RELU:
        return dy if y > 0 else dy * 0.0
    if code == _LEAKY_RELU:
        return dy if y > 0 else dy * alpha
    if code == _ELU:
        return dy if y > 0 else dy * (y + alpha)
    if code == _GELU:
        return dy * (0.5 * (1.0 + math.erf(x * _INV_SQRT2)) + x * math.exp(-0.5 * x * x) * _INV_SQRT_2PI)
    if code == _SOFTPLUS:
        return dy * -math.expm1(-y)
    if code == _SILU:
        s = _sigmoid(x)
        return dy * s * (1.0 + x * (1.0 - s))
    return dy


@_device
def _block_reduce(sh, v, take_max):
    """Sum (or max) of ``v`` over the block's threads; every thread must call it, all get the result."""
    t = cuda.threadIdx.x
    sh[t] = v
    cuda.syncthreads()
    s = TPB // 2
    while s > 0:
        if t < s:
            if take_max:
                sh[t] = max(sh[t], sh[t + s])
            else:
                sh[t] += sh[t + s]
        cuda.syncthreads()
        s //= 2
    r = sh[0]
    cuda.syncthreads()
    return r


@_device
def _block_sum(sh, v):
    return _block_reduce(sh, v, False)


@_device
def _block_max(sh, v):
    return _block_reduce(sh, v, True)


@_device
def _add_block_total(sh, v, acc):
    """acc[0] += sum of ``v`` over the block: one float64 atomic per block."""
    total = _block_sum(sh, v)
    if cuda.threadIdx.x == 0:
        cuda.atomic.add(acc, 0, total)


@_device
def philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint64 words holding 32 bits (as base.philox_words and csrc/_philox.pxd)."""
    for r in range(10):
        if r > 0:
            k0 = (k0 + _W0) & _MASK
            k1 = (k1 + _W1) & _MASK
        p0 = c0 * _M0
        p1 = c2 * _M1
        c0, c1, c2, c3 = (p1 >> _S32) ^ c1 ^ k0, p1 & _MASK, (p0 >> _S32) ^ c3 ^ k1, p0 & _MASK
    return c0, c1, c2, c3


@_device
def _block_words(b, s0, s1, k0, k1):
    bb = uint64(b)
    return philox(bb & _MASK, bb >> _S32, s0, s1, k0, k1)


# ------------------------------------------------------------------------- memory, activations
@_jit
def fill(x, value):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        x[i] = value


@_jit
def copy(src, dst):
    for i in range(cuda.grid(1), src.size, cuda.gridsize(1)):
        dst[i] = src[i]


@_jit
def round_bf16(src, dst):
    """dst = src rounded to bfloat16 (ties to even; NaN stays NaN), both float32 arrays seen as
    uint32 (backends.base.round_bf16's rule on the bits)."""
    for i in range(cuda.grid(1), src.size, cuda.gridsize(1)):
        u = uint64(src[i])
        if (u & _BF16_ABS) > _BF16_INF:
            dst[i] = (u | _BF16_QUIET) & _BF16_KEEP
        else:
            dst[i] = (u + _BF16_HALF + ((u >> _S16) & _ONE)) & _BF16_KEEP


@_jit
def take_rows(x, idx, out):
    """out[i, j] = x[idx[i], j] (negative indices wrap); x, out 2-D."""
    n, m = out.shape
    rows = x.shape[0]
    for e in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        i = e // m
        r = idx[i]
        if r < 0:
            r += rows
        if 0 <= r < rows:
            out[i, e - i * m] = x[r, e - i * m]


@_jit
def activation(code, x, alpha, out):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        out[i] = act_value(code, float64(x[i]), alpha)


@_jit
def activation_backward(code, dy, x, y, alpha, out):
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        out[i] = act_grad(code, float64(dy[i]), float64(x[i]), float64(y[i]), alpha)


@_jit
def softmax_rows(x, out):
    """Row-wise softmax, a block per row."""
    sh = cuda.shared.array(TPB, float64)
    n, m = x.shape
    t = cuda.threadIdx.x
    for i in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        v = -math.inf
        for j in range(t, m, TPB):
            v = max(v, float64(x[i, j]))
        mx = _block_max(sh, v)
        s = 0.0
        for j in range(t, m, TPB):
            s += math.exp(float64(x[i, j]) - mx)
        s = _block_sum(sh, s)
        for j in range(t, m, TPB):
            out[i, j] = math.exp(float64(x[i, j]) - mx) / s


@_jit
def softmax_backward_rows(dy, y, out):
    """out = y (dy - sum_j dy y), a block per row; out may alias dy."""
    sh = cuda.shared.array(TPB, float64)
    n, m = dy.shape
    t = cuda.threadIdx.x
    for i in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        s = 0.0
        for j in range(t, m, TPB):
            s += float64(dy[i, j]) * float64(y[i, j])
        s = _block_sum(sh, s)
        for j in range(t, m, TPB):
            out[i, j] = float64(y[i, j]) * (float64(dy[i, j]) - s)


# --------------------------------------------------------------------------------- dense
def _make_gemm(dt):
    """c = op(a) @ op(b) (op: transpose when ta/tb) with the dense epilogue: + bias (has_bias),
    z = pre-activation (has_z), out = f(.) (code; softmax stores the pre-activation for its
    row kernel). Tiles of TILE x TILE in shared memory, loaded with consecutive threads on
    consecutive addresses whether or not an operand is transposed."""

    @_jit
    def gemm(a, b, ta, tb, bias, has_bias, code, alpha, z, has_z, out):
        sa = cuda.shared.array((TILE, _TILE_PAD), dt)
        sb = cuda.shared.array((TILE, _TILE_PAD), dt)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        n_rows, n_cols = out.shape
        k_dim = a.shape[0] if ta else a.shape[1]
        r0 = cuda.blockIdx.y * TILE
        c0 = cuda.blockIdx.x * TILE
        row = r0 + ty
        col = c0 + tx
        acc = dt(0)
        for k0 in range(0, k_dim, TILE):
            if ta:  # op(a)[r0 + tx, k0 + ty] = a[k0 + ty, r0 + tx]
                if r0 + tx < n_rows and k0 + ty < k_dim:
                    sa[tx, ty] = a[k0 + ty, r0 + tx]
                else:
                    sa[tx, ty] = 0
            else:  # op(a)[row, k0 + tx]
                if row < n_rows and k0 + tx < k_dim:
                    sa[ty, tx] = a[row, k0 + tx]
                else:
                    sa[ty, tx] = 0
            if tb:  # op(b)[k0 + tx, c0 + ty] = b[c0 + ty, k0 + tx]
                if c0 + ty < n_cols and k0 + tx < k_dim:
                    sb[tx, ty] = b[c0 + ty, k0 + tx]
                else:
                    sb[tx, ty] = 0
            else:  # op(b)[k0 + ty, col]
                if k0 + ty < k_dim and col < n_cols:
                    sb[ty, tx] = b[k0 + ty, col]
                else:
                    sb[ty, tx] = 0
            cuda.syncthreads()
            for kk in range(TILE):
                acc += sa[ty, kk] * sb[kk, tx]
            cuda.syncthreads()
        if row < n_rows and col < n_cols:
            v = float64(acc)
            if has_bias:
                v += float64(bias[col])
            if has_z:
                z[row, col] = v
            out[row, col] = v if code == _SOFTMAX else act_value(code, v, alpha)

    return gemm


GEMM = {np.dtype(np.float32): _make_gemm(float32), np.dtype(np.float64): _make_gemm(float64)}


@_jit
def bias_activation(c, bias, has_bias, code, alpha, z, has_z, out):
    """The dense epilogue after an external product (cuBLAS): c (n, m) -> z, out."""
    n, m = out.shape
    for e in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        i = e // m
        j = e - i * m
        v = float64(c[i, j])
        if has_bias:
            v += float64(bias[j])
        if has_z:
            z[i, j] = v
        out[i, j] = v if code == _SOFTMAX else act_value(code, v, alpha)


@_jit
def grad_columns(code, dy, x, y, alpha, dz, has_dz, db, has_db):
    """A thread per column: dz = dy * f'(.) (when has_dz; may alias dy) and db = column sums."""
    n, m = dy.shape
    for j in range(cuda.grid(1), m, cuda.gridsize(1)):
        s = 0.0
        for i in range(n):
            d = act_grad(code, float64(dy[i, j]), float64(x[i, j]), float64(y[i, j]), alpha)
            if has_dz:
                dz[i, j] = d
            s += d
        if has_db:
            db[j] = s


# -------------------------------------------------------------------------------- losses
@_device
def _log_sum_exp(logits, i, k):
    """log sum_j exp(logits[i, j]), shifted by the row's maximum."""
    mx = -math.inf
    for j in range(k):
        mx = max(mx, float64(logits[i, j]))
    s = 0.0
    for j in range(k):
        s += math.exp(float64(logits[i, j]) - mx)
    return mx + math.log(s)


@_device
def _smoothed(soft, labels, target, i, j, lab, eps, k):
    """Target t'_ij = (1 - eps) t_ij + eps / k, t from the soft targets or the one-hot label."""
    if soft:
        return (1.0 - eps) * float64(target[i, j]) + eps / k
    return (1.0 - eps) + eps / k if j == lab else eps / k


@_jit
def cross_entropy(logits, labels, target, soft, eps, weight, has_w, scale, loss_out, grad, has_grad):
    """A thread per row; ``soft`` reads target (n, k), else labels (n,). A row whose label is
    outside [0, k) adds nothing and gets a zero gradient."""
    sh = cuda.shared.array(TPB, float64)
    n, k = logits.shape
    part = 0.0
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        lab = 0 if soft else labels[i]
        valid = soft or 0 <= lab < k
        w = float64(weight[i]) if has_w else 1.0
        lse = _log_sum_exp(logits, i, k)
        tsum = 0.0
        for j in range(k):
            tsum += _smoothed(soft, labels, target, i, j, lab, eps, k)
        loss = 0.0
        for j in range(k):
            logp = float64(logits[i, j]) - lse
            t = _smoothed(soft, labels, target, i, j, lab, eps, k)
            loss -= t * logp
            if has_grad:
                grad[i, j] = scale * w * (math.exp(logp) * tsum - t) if valid else 0.0
        if valid:
            part += w * loss
    _add_block_total(sh, part, loss_out)


@_jit
def binary_cross_entropy(logits, target, weight, has_w, scale, loss_out, grad, has_grad):
    sh = cuda.shared.array(TPB, float64)
    n, k = logits.shape
    part = 0.0
    for e in range(cuda.grid(1), n * k, cuda.gridsize(1)):
        i = e // k
        j = e - i * k
        z = float64(logits[i, j])
        t = float64(target[i, j])
        w = float64(weight[i]) if has_w else 1.0
        part += w * (max(z, 0.0) - z * t + math.log1p(math.exp(-abs(z))))
        if has_grad:
            grad[i, j] = scale * w * (_sigmoid(z) - t)
    _add_block_total(sh, part, loss_out)


@_jit
def residual(code, pred, target, delta, weight, has_w, scale, loss_out, grad, has_grad):
    """mse, mae, huber per element, by their code in RESIDUAL_CODES."""
    sh = cuda.shared.array(TPB, float64)
    n, k = pred.shape
    part = 0.0
    for e in range(cuda.grid(1), n * k, cuda.gridsize(1)):
        i = e // k
        j = e - i * k
        d = float64(pred[i, j]) - float64(target[i, j])
        w = float64(weight[i]) if has_w else 1.0
        if code == _MSE:
            loss = d * d
            g = 2.0 * d
        elif code == _MAE:
            loss = abs(d)
            g = 1.0 if d > 0 else (-1.0 if d < 0 else d * 0.0)
        else:
            a = abs(d)
            loss = 0.5 * d * d if a <= delta else delta * (a - 0.5 * delta)
            g = min(max(d, -delta), delta) if d == d else d
        part += w * loss
        if has_grad:
            grad[i, j] = scale * w * g
    _add_block_total(sh, part, loss_out)


# ------------------------------------------------------------------ normalization, dropout
@_jit
def batchnorm_forward(x, gamma, beta, running_mean, running_var, eps, momentum, training, mean, inv_std,
                      has_stats, out):
    """A thread per column: statistics (two passes, float64), running update, normalisation."""
    n, m = x.shape
    for j in range(cuda.grid(1), m, cuda.gridsize(1)):
        if training:
            s = 0.0
            for i in range(n):
                s += float64(x[i, j])
            mu = s / n
            s = 0.0
            for i in range(n):
                d = float64(x[i, j]) - mu
                s += d * d
            var = s / n
            running_mean[j] = (1.0 - momentum) * float64(running_mean[j]) + momentum * mu
            running_var[j] = (1.0 - momentum) * float64(running_var[j]) + momentum * var * n / (n - 1)
        else:
            mu = float64(running_mean[j])
            var = float64(running_var[j])
        istd = 1.0 / math.sqrt(var + eps)
        if has_stats:
            mean[j] = mu
            inv_std[j] = istd
        a = float64(gamma[j]) * istd
        b = float64(beta[j])
        for i in range(n):
            out[i, j] = (float64(x[i, j]) - mu) * a + b


@_jit
def batchnorm_backward(dy, x, gamma, mean, inv_std, training, dgamma, dbeta, has_dgamma, dx, has_dx):
    n, m = dy.shape
    for j in range(cuda.grid(1), m, cuda.gridsize(1)):
        mu = float64(mean[j])
        istd = float64(inv_std[j])
        s_dy = 0.0
        s_dyx = 0.0
        for i in range(n):
            d = float64(dy[i, j])
            s_dy += d
            s_dyx += d * (float64(x[i, j]) - mu) * istd
        if has_dgamma:
            dgamma[j] = s_dyx
            dbeta[j] = s_dy
        if has_dx:
            a = float64(gamma[j]) * istd
            nn = max(n, 1)
            for i in range(n):
                d = float64(dy[i, j])
                if training:
                    dx[i, j] = a * (d - s_dy / nn - (float64(x[i, j]) - mu) * istd * (s_dyx / nn))
                else:
                    dx[i, j] = a * d


@_device
def _word(j, w0, w1, w2, w3):
    if j == 0:
        return w0
    if j == 1:
        return w1
    if j == 2:
        return w2
    return w3


@_jit
def dropout_forward(x, k0, k1, s0, s1, threshold, scale, mask, has_mask, out):
    """A thread per Philox block of 4 elements; x * scale is exact in x's dtype (a float32
    product is exact in float64, rounded once), so every backend gives the same bits."""
    n = x.size
    for b in range(cuda.grid(1), (n + 3) // 4, cuda.gridsize(1)):
        w0, w1, w2, w3 = _block_words(b, s0, s1, k0, k1)
        for j in range(4):
            e = 4 * b + j
            if e < n:
                keep = _word(j, w0, w1, w2, w3) >= threshold
                v = x[e] * scale
                out[e] = v if keep else v * 0.0
                if has_mask:
                    mask[e] = 1 if keep else 0


@_jit
def dropout_backward(dy, mask, scale, out):
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        v = dy[i] * scale
        out[i] = v if mask[i] != 0 else v * 0.0


@_device
def _noisy(x, e, std, z, out):
    out[e] = float64(x[e]) + std * z


@_jit
def gaussian_noise(x, std, k0, k1, s0, s1, out):
    """Box-Muller on word pairs of each Philox block (base._normals), in double."""
    n = x.size
    for b in range(cuda.grid(1), (n + 3) // 4, cuda.gridsize(1)):
        w0, w1, w2, w3 = _block_words(b, s0, s1, k0, k1)
        e = 4 * b
        r = math.sqrt(-2.0 * math.log((float64(w0) + 1.0) * _INV_2_32))
        t = _TWO_PI_2_32 * float64(w1)
        _noisy(x, e, std, r * math.cos(t), out)
        if e + 1 < n:
            _noisy(x, e + 1, std, r * math.sin(t), out)
        if e + 2 < n:
            r = math.sqrt(-2.0 * math.log((float64(w2) + 1.0) * _INV_2_32))
            t = _TWO_PI_2_32 * float64(w3)
            _noisy(x, e + 2, std, r * math.cos(t), out)
            if e + 3 < n:
                _noisy(x, e + 3, std, r * math.sin(t), out)


@_jit
def mixup(x, idx, lam, out):
    """out = lam x + (1 - lam) x[idx]; x, out 2-D; out does not alias x."""
    n, m = x.shape
    for e in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        i = e // m
        j = e - i * m
        out[i, j] = lam * float64(x[i, j]) + (1.0 - lam) * float64(x[idx[i], j])


@_jit
def mixup_labels(labels, idx, lam, out):
    n, k = out.shape
    for e in range(cuda.grid(1), n * k, cuda.gridsize(1)):
        i = e // k
        j = e - i * k
        a = 1.0 if labels[i] == j else 0.0
        b = 1.0 if labels[idx[i]] == j else 0.0
        out[i, j] = lam * a + (1.0 - lam) * b


# ---------------------------------------------------------------------- flat buffers, updates
@_jit
def sum_squares(x, acc):
    sh = cuda.shared.array(TPB, float64)
    part = 0.0
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = float64(x[i])
        part += v * v
    _add_block_total(sh, part, acc)


@_jit
def clip_by_norm(x, sum_sq, max_norm, clip, norm_out):
    """After sum_squares: norm_out[0] = sqrt(sum_sq[0]); with ``clip``, x *= max_norm / (norm + 1e-6)
    where the norm exceeds max_norm (clip_grad_norm_ on the device)."""
    norm = math.sqrt(sum_sq[0])
    if cuda.grid(1) == 0:
        norm_out[0] = norm
    if clip and norm > max_norm:
        factor = max_norm / (norm + 1e-6)
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            x[i] = float64(x[i]) * factor


@_jit
def scale_(x, factor):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        x[i] = float64(x[i]) * factor


@_jit
def clip_(x, value):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = float64(x[i])
        if v > value:
            x[i] = value
        elif v < -value:
            x[i] = -value


@_jit
def penalty(w, g, has_g, l1, l2, scale, acc):
    """acc[0] += scale * (l1 sum|w| + l2 sum w^2); with has_g, g += its gradient."""
    sh = cuda.shared.array(TPB, float64)
    part = 0.0
    for i in range(cuda.grid(1), w.size, cuda.gridsize(1)):
        v = float64(w[i])
        if has_g:
            sign = 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)
            g[i] = g[i] + (l1 * sign + 2.0 * l2 * v)
        part += scale * (l1 * abs(v) + l2 * v * v)
    _add_block_total(sh, part, acc)


@_jit
def sgd_update(p, g, buf, lr, momentum, dampening, nesterov, weight_decay, first_step):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        pv = float64(p[i])
        d = float64(g[i]) + weight_decay * pv
        if momentum != 0.0:
            b = d if first_step else momentum * float64(buf[i]) + (1.0 - dampening) * d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        p[i] = pv - lr * d


@_jit
def adagrad_update(p, g, state_sum, lr, eps, weight_decay):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        pv = float64(p[i])
        d = float64(g[i]) + weight_decay * pv
        s = float64(state_sum[i]) + d * d
        state_sum[i] = s
        p[i] = pv - lr * d / (math.sqrt(s) + eps)


@_jit
def adadelta_update(p, g, square_avg, acc_delta, lr, rho, eps, weight_decay):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        pv = float64(p[i])
        d = float64(g[i]) + weight_decay * pv
        v = rho * float64(square_avg[i]) + (1.0 - rho) * d * d
        u = float64(acc_delta[i])
        delta = math.sqrt(u + eps) / math.sqrt(v + eps) * d
        square_avg[i] = v
        acc_delta[i] = rho * u + (1.0 - rho) * delta * delta
        p[i] = pv - lr * delta


@_jit
def rmsprop_update(p, g, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay, momentum, centered):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        pv = float64(p[i])
        d = float64(g[i]) + weight_decay * pv
        v = alpha * float64(square_avg[i]) + (1.0 - alpha) * d * d
        square_avg[i] = v
        if centered:
            a = alpha * float64(grad_avg[i]) + (1.0 - alpha) * d
            grad_avg[i] = a
            v = v - a * a
        step = d / (math.sqrt(v) + eps)
        if momentum != 0.0:
            step = momentum * float64(momentum_buffer[i]) + step
            momentum_buffer[i] = step
        p[i] = pv - lr * step


@_device
def _adam_moments(p, g, exp_avg, exp_avg_sq, i, lr, beta1, beta2, weight_decay, decoupled):
    """Adam's moments at element i, stored: (p after decoupled decay, m, v), in float64."""
    pv = float64(p[i])
    d = float64(g[i])
    if decoupled:
        pv = pv * (1.0 - lr * weight_decay)
    else:
        d = d + weight_decay * pv
    m = beta1 * float64(exp_avg[i]) + (1.0 - beta1) * d
    v = beta2 * float64(exp_avg_sq[i]) + (1.0 - beta2) * d * d
    exp_avg[i] = m
    exp_avg_sq[i] = v
    return pv, m, v


@_jit
def adam_update(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay, amsgrad,
                decoupled, bc1, sqrt_bc2):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        pv, m, v = _adam_moments(p, g, exp_avg, exp_avg_sq, i, lr, beta1, beta2, weight_decay, decoupled)
        if amsgrad:
            v = max(float64(max_exp_avg_sq[i]), v)
            max_exp_avg_sq[i] = v
        p[i] = pv - lr / bc1 * m / (math.sqrt(v) / sqrt_bc2 + eps)


@_jit
def adamax_update(p, g, exp_avg, exp_inf, lr, beta1, beta2, eps, weight_decay, bc1):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        pv = float64(p[i])
        d = float64(g[i]) + weight_decay * pv
        m = beta1 * float64(exp_avg[i]) + (1.0 - beta1) * d
        u = max(beta2 * float64(exp_inf[i]), abs(d) + eps)
        exp_avg[i] = m
        exp_inf[i] = u
        p[i] = pv - lr / bc1 * m / u


@_jit
def nadam_update(p, g, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, c_grad, c_avg, bc2):
    """c_grad = lr (1 - mu) / (1 - mu_product), c_avg = lr mu_next / (1 - mu_product mu_next)."""
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        pv = float64(p[i])
        d = float64(g[i]) + weight_decay * pv
        m = beta1 * float64(exp_avg[i]) + (1.0 - beta1) * d
        v = beta2 * float64(exp_avg_sq[i]) + (1.0 - beta2) * d * d
        exp_avg[i] = m
        exp_avg_sq[i] = v
        denom = math.sqrt(v / bc2) + eps
        p[i] = pv - c_grad * d / denom - c_avg * m / denom


@_jit
def radam_update(p, g, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay,
                 bias_correction1, bias_correction2, rect):
    """RAdam (fastnn.optim.radam_update is its reference): rect > 0 takes the rectified adaptive
    step, rect = 0 the momentum step of the first updates."""
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        pv, m, v = _adam_moments(p, g, exp_avg, exp_avg_sq, i, lr, beta1, beta2, weight_decay,
                                 decoupled_weight_decay)
        if rect > 0.0:
            p[i] = pv - lr * rect * math.sqrt(bias_correction2) / bias_correction1 * m / (math.sqrt(v) + eps)
        else:
            p[i] = pv - lr / bias_correction1 * m

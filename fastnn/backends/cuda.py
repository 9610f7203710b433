"""CudaBackend: the Backend interface on an NVIDIA GPU through numba.cuda (NVIDIA's numba-cuda).

This module imports numba; fastnn imports it only when device='cuda' is first asked for
(``get_backend``). Arrays are numba device arrays (under the simulator, its stand-ins): the
memory methods move data (``asarray`` uploads, ``to_numpy`` downloads) and every other method
launches kernels from ``_cuda_kernels`` on the default stream without waiting for them. Only
the methods whose interface returns a Python float (``sum_squares``, ``penalty``) read back;
losses add into a float64 device accumulator that the Trainer reads once per epoch.

Matrix products run in the tiled shared-memory kernel of ``_cuda_kernels``, or in cuBLAS
through CuPy when CuPy is installed and the product is large (``CUBLAS_MIN_WORK``); device
arrays cross to CuPy through ``__cuda_array_interface__``, without copies. ``launches`` counts
kernel launches (cuBLAS calls included), for the benchmarks.

Inputs given as NumPy arrays are uploaded (a copy per call: keep data on the device);
outputs must be device arrays (``empty``/``zeros``) or None.
"""

from __future__ import annotations

import inspect

import numpy as np
from numba import config, cuda

from . import _cuda_kernels as K
from . import _adapter
from ._adapter import host_round_trip, implement
from ._ops import SPECS
from ._ops import expect_shape as _expect
from .base import ACTIVATION_CODES, NEEDS_INPUT, RESIDUAL_CODES, Backend, check_batch_rows, dropout_threshold

__all__ = ["CUBLAS_MIN_WORK", "CudaBackend", "device_arrays"]

config.CUDA_LOW_OCCUPANCY_WARNINGS = 0  # small grids are normal for small layers

#: Products with at least this many multiply-adds (m n k) go to cuBLAS when CuPy is present.
#: Not yet measured on a GPU (none was available): 128**3, where cuBLAS is generally ahead of
#: a one-output-per-thread tiled kernel.
CUBLAS_MIN_WORK = 128 ** 3
_SOFTMAX, _IDENTITY = ACTIVATION_CODES["softmax"], ACTIVATION_CODES["identity"]
_I64 = np.dtype(np.int64)
_MASK32 = 0xFFFFFFFF

if K.SIMULATED:
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as _DeviceArray
else:
    from numba.cuda.cudadrv.devicearray import DeviceNDArray as _DeviceArray


def device_arrays():
    """The class of this process's device arrays (numba's, or the simulator's stand-in)."""
    return _DeviceArray


def _is_device(a):
    return isinstance(a, _DeviceArray)


def _flat(a):
    return a.reshape(a.size)


def _as_2d(a):
    return a.reshape(a.shape[0], 1) if a.ndim == 1 else a


def _words(value):
    """A 64-bit key or step as two uint64 words of 32 bits (low, high)."""
    value = int(value)
    return np.uint64(value & _MASK32), np.uint64(value >> 32)


def _upload(arg, a):
    """An input as a device array: None and device arrays as they are; host arrays uploaded (a
    copy per call: keep data on the device), as int64 for the integer families."""
    if a is None or isinstance(a, _DeviceArray):
        return a
    return cuda.to_device(np.ascontiguousarray(a, np.int64 if arg.family_of(np.ndim(a)) == "int64" else None))


def _cupy():
    """The cupy module, or None when it is not installed (or under the simulator)."""
    if K.SIMULATED:
        return None
    try:
        import cupy
    except ImportError:
        return None
    return cupy


_GEMM_CHOICES = ("auto", "tiled", "cublas")


class CudaBackend(Backend):
    """Kernels on an NVIDIA GPU through numba.cuda; see the module docstring.

    Parameters
    ----------
    gemm : {'auto', 'tiled', 'cublas'}, default 'auto'
        How matrix products run: the tiled shared-memory kernel, cuBLAS through CuPy (an error
        without CuPy), or 'auto': cuBLAS for products of at least CUBLAS_MIN_WORK multiply-adds
        when CuPy is installed, else the tiled kernel.
    """

    name = "cuda"
    device_resident = True

    def __init__(self, gemm="auto"):
        if gemm not in _GEMM_CHOICES:
            listed = ", ".join(repr(c) for c in _GEMM_CHOICES)
            raise ValueError(f"CudaBackend: unknown gemm {gemm!r}; choose one of {listed}.")
        self._cp = _cupy() if gemm != "tiled" else None
        if gemm == "cublas" and self._cp is None:
            raise RuntimeError("CudaBackend: gemm='cublas' needs CuPy on a real GPU; pip install cupy-cuda12x "
                               "(or cupy-cuda13x), or use gemm='tiled'.")
        self._cublas_min = 0 if gemm == "cublas" else CUBLAS_MIN_WORK
        self.launches = 0
        self._dummy = {}
        self._acc = None

    def __repr__(self):
        route = "cublas" if self._cp is not None else "tiled"
        return f"CudaBackend(gemm={route!r}, simulated={K.SIMULATED})"

    # ---------------------------------------------------------------- helpers
    def _run(self, kernel, n, *args):
        """Launch a grid-stride kernel over ``n`` items (nothing when n == 0)."""
        if n > 0:
            kernel[min((n + K.TPB - 1) // K.TPB, K.MAX_BLOCKS), K.TPB](*args)
            self.launches += 1

    def _rows(self, kernel, n, *args):
        """Launch a block-per-row kernel over ``n`` rows."""
        if n > 0:
            kernel[min(n, K.MAX_BLOCKS), K.TPB](*args)
            self.launches += 1

    def _in(self, a, dtype=None):
        """A device array for an input (None stays None; host arrays are uploaded)."""
        if a is None or _is_device(a):
            return a
        return cuda.to_device(np.ascontiguousarray(a, dtype))

    def _out(self, owner, name, a, shape, dtype):
        """A device array for an output: ``a`` checked, or a new one when None."""
        if a is None:
            return self.empty(shape, dtype)
        if not _is_device(a):
            raise TypeError(f"{owner}: {name} must be a device array on the cuda backend; got "
                            f"{type(a).__name__}; allocate it with backend.empty(shape, dtype).")
        _expect(owner, name, a, shape)
        return a

    def _dummy_like(self, dtype, ndim):
        """A one-element device array standing in for an absent optional array in a kernel."""
        key = (np.dtype(dtype), ndim)
        if key not in self._dummy:
            self._dummy[key] = cuda.device_array((1,) * ndim, dtype=key[0])
        return self._dummy[key]

    def _or_dummy(self, a, dtype, ndim):
        return (self._dummy_like(dtype, ndim), False) if a is None else (a, True)

    def _scalar_acc(self):
        """A zeroed float64 device scalar for the reductions that return a Python float."""
        if self._acc is None:
            self._acc = cuda.device_array(1, dtype=np.float64)
        self.fill(self._acc, 0.0)
        return self._acc

    def _read(self, acc):
        return float(acc.copy_to_host()[0])

    def _code(self, owner, name):  # the name was checked by the spec
        return ACTIVATION_CODES[name]

    def _gemm(self, a, b, ta, tb, out, bias=None, code=0, alpha=0.0, z=None):
        """out = f(op(a) @ op(b) + bias), z = the pre-activation; softmax stores the pre-activation
        (the caller runs the row kernel)."""
        n_rows, n_cols = out.shape
        k = a.shape[0] if ta else a.shape[1]
        if n_rows == 0 or n_cols == 0:
            return
        dt = out.dtype
        bias, has_bias = self._or_dummy(bias, dt, 1)
        z, has_z = self._or_dummy(z, dt, 2)
        if self._cp is not None and n_rows * n_cols * k >= self._cublas_min:
            cp = self._cp
            ca, cb = cp.asarray(a), cp.asarray(b)
            cp.matmul(ca.T if ta else ca, cb.T if tb else cb, out=cp.asarray(out))
            self.launches += 1
            if has_bias or has_z or code != 0:
                self._run(K.bias_activation, n_rows * n_cols, out, bias, has_bias, code, alpha, z, has_z, out)
            return
        grid = ((n_cols + K.TILE - 1) // K.TILE, (n_rows + K.TILE - 1) // K.TILE)
        K.GEMM[dt][grid, (K.TILE, K.TILE)](a, b, ta, tb, bias, has_bias, code, alpha, z, has_z, out)
        self.launches += 1

    # ------------------------------------------------------------------ memory
    def asarray(self, x, dtype=None):
        if _is_device(x):
            if dtype is None or x.dtype == np.dtype(dtype):
                return x
            x = x.copy_to_host()
        return cuda.to_device(np.ascontiguousarray(x, dtype=dtype))

    def to_numpy(self, x):
        return x.copy_to_host() if _is_device(x) else np.asarray(x)

    def empty(self, shape, dtype):
        return cuda.device_array(shape, dtype=np.dtype(dtype))

    def zeros(self, shape, dtype):
        return self.fill(self.empty(shape, dtype), 0.0)

    def copy(self, src, out):
        _expect("copy", "out", out, tuple(np.shape(src)) if not _is_device(src) else src.shape)
        if _is_device(src):
            self._run(K.copy, src.size, _flat(src), _flat(out))
        else:
            out.copy_to_device(np.ascontiguousarray(src, dtype=out.dtype))
        return out

    def fill(self, x, value):
        self._run(K.fill, x.size, _flat(x), value)
        return x

    def take_rows(self, x, idx, *, out):
        if not _is_device(idx):  # host indices are checked before they go up
            idx = np.asarray(idx)
            if idx.size and (idx.min() < -x.shape[0] or idx.max() >= x.shape[0]):
                bad = idx[(idx < -x.shape[0]) | (idx >= x.shape[0])][0]
                raise IndexError(f"take_rows: index {bad} is out of bounds for {x.shape[0]} rows.")
            idx = self._in(idx, np.int64)
        x = self._in(x)
        _expect("take_rows", "out", out, (idx.shape[0],) + tuple(x.shape[1:]))
        self._run(K.take_rows, out.size, _as_2d(x), idx, _as_2d(out))
        return out

    # ------------------------------------------------------------- activations
    def _op_activation(self, name, x, alpha, out):
        owner = "activation"
        code = self._code(owner, name)
        out = self._out(owner, "out", out, x.shape, x.dtype)
        if code == _SOFTMAX:
            self._rows(K.softmax_rows, x.shape[0], x, out)
        else:
            self._run(K.activation, x.size, code, _flat(x), alpha, _flat(out))
        return out

    def _op_activation_backward(self, name, dy, x, y, alpha, out):
        owner = "activation_backward"
        code = self._code(owner, name)
        out = self._out(owner, "out", out, dy.shape, dy.dtype)
        if code == _SOFTMAX:
            self._rows(K.softmax_backward_rows, dy.shape[0], dy, y, out)
        else:
            self._run(K.activation_backward, dy.size, code, _flat(dy), _flat(dy if x is None else x),
                      _flat(dy if y is None else y), alpha, _flat(out))
        return out

    # ------------------------------------------------------------------ dense
    def _bf16_operand(self, a, precision):
        """A product's operand, under precision='bf16' rounded to bfloat16 into a device copy."""
        if precision != "bf16":
            return a
        out = self.empty(a.shape, a.dtype)
        self._run(K.round_bf16, a.size, _flat(a).view(np.uint32), _flat(out).view(np.uint32))
        return out

    def _op_dense_forward(self, x, w, b, activation, alpha, z, out, precision):
        owner = "dense_forward"
        code = self._code(owner, activation)
        x, w = self._bf16_operand(x, precision), self._bf16_operand(w, precision)
        n, n_out = x.shape[0], w.shape[1]
        if z is not None:
            z = self._out(owner, "z", z, (n, n_out), w.dtype)
        out = self._out(owner, "out", out, (n, n_out), w.dtype)
        self._gemm(x, w, False, False, out, bias=b, code=code, alpha=alpha, z=z)
        if code == _SOFTMAX:
            self._rows(K.softmax_rows, n, out, out)
        return out

    def _op_dense_backward(self, dy, x, w, y, z, activation, alpha, dw, db, dx, dz, precision):
        owner = "dense_backward"
        code = self._code(owner, activation)
        n, n_out = dy.shape
        dt = dy.dtype
        if code == _SOFTMAX:
            d = dz if dz is not None else self.empty(dy.shape, dt)
            self._rows(K.softmax_backward_rows, n, dy, y, d)
            code, src = 0, d
        else:
            d = dz if dz is not None else (dy if code == _IDENTITY else self.empty(dy.shape, dt))
            src = dy
        xin = z if z is not None and activation in NEEDS_INPUT else src
        yin = y if y is not None else src
        if db is not None:
            dzz, has_dz = (d, True) if (code != 0 or d is not src) else (self._dummy_like(dt, 2), False)
            self._run(K.grad_columns, n_out, code, src, xin, yin, alpha, dzz, has_dz, db, True)
        elif code != 0 or d is not src:
            self._run(K.activation_backward, d.size, code, _flat(src), _flat(xin), _flat(yin), alpha, _flat(d))
        if precision == "bf16" and (dw is not None or dx is not None):
            d = self._bf16_operand(d, precision)
        if dw is not None:
            self._gemm(self._bf16_operand(x, precision), d, True, False, dw)
        if dx is not None:
            self._gemm(d, self._bf16_operand(w, precision), False, True, dx)
        return dx

    # ----------------------------------------------------------------- losses

    def dense_chain(self, steps, first, precision="fp32"):
        """The Backend's loop over this backend's dense kernels: on a GPU every layer is already
        one launch forward (bias and activation fused) and at most three backward, and the host
        only enqueues them, so a chained call would launch no fewer kernels."""
        return super().dense_chain(steps, first, precision)

    def _loss_args(self, owner, pred_name, pred, target, weight, loss_out, grad, labels=False):
        """Checked device arrays (pred, target, weight, grad) of a loss call."""
        n, k = pred.shape
        if grad is not None:
            grad = self._out(owner, "grad", grad, (n, k), pred.dtype)
        if not _is_device(loss_out) or loss_out.dtype != np.float64 or loss_out.shape != (1,):
            raise TypeError(f"{owner}: loss_out must be a float64 device array of shape (1,); "
                            f"allocate it with backend.zeros((1,), np.float64).")
        dt = pred.dtype
        weight, has_w = self._or_dummy(weight, dt, 1)
        grad, has_grad = self._or_dummy(grad, dt, 2)
        return pred, target, weight, has_w, grad, has_grad

    def _op_cross_entropy(self, logits, target, label_smoothing, weight, scale, loss_out, grad):
        labels = getattr(target, "ndim", 2) == 1
        pred, target, w, has_w, g, has_g = self._loss_args("cross_entropy", "logits", logits, target, weight,
                                                           loss_out, grad, labels=labels)
        lab = target if labels else self._dummy_like(_I64, 1)
        soft = self._dummy_like(pred.dtype, 2) if labels else target
        self._run(K.cross_entropy, pred.shape[0], pred, lab, soft, not labels, float(label_smoothing), w, has_w,
                  float(scale), loss_out, g, has_g)
        return loss_out

    def _op_binary_cross_entropy(self, logits, target, weight, scale, loss_out, grad):
        pred, target, w, has_w, g, has_g = self._loss_args("binary_cross_entropy", "logits", logits, target,
                                                           weight, loss_out, grad)
        self._run(K.binary_cross_entropy, pred.size, pred, target, w, has_w, float(scale), loss_out, g, has_g)
        return loss_out

    def _residual(self, name, code, pred, target, delta, weight, scale, loss_out, grad):
        pred, target, w, has_w, g, has_g = self._loss_args(name, "pred", pred, target, weight, loss_out, grad)
        self._run(K.residual, pred.size, code, pred, target, float(delta), w, has_w, float(scale), loss_out,
                  g, has_g)
        return loss_out

    def _op_mse(self, pred, target, weight, scale, loss_out, grad):
        return self._residual("mse", RESIDUAL_CODES["mse"], pred, target, 0.0, weight, scale, loss_out, grad)

    def _op_mae(self, pred, target, weight, scale, loss_out, grad):
        return self._residual("mae", RESIDUAL_CODES["mae"], pred, target, 0.0, weight, scale, loss_out, grad)

    def _op_huber(self, pred, target, delta, weight, scale, loss_out, grad):
        return self._residual("huber", RESIDUAL_CODES["huber"], pred, target, delta, weight, scale, loss_out, grad)

    # ---- normalization and dropout
    def _op_batchnorm_forward(self, x, gamma, beta, running_mean, running_var, eps, momentum, training, mean,
                              inv_std, out):
        owner = "batchnorm_forward"
        if training:
            check_batch_rows(owner, x.shape[0])
        n, m = x.shape
        out = self._out(owner, "out", out, (n, m), x.dtype)
        has_stats = mean is not None and inv_std is not None
        if not has_stats:
            mean = inv_std = self._dummy_like(x.dtype, 1)
        self._run(K.batchnorm_forward, m, x, gamma, beta, running_mean, running_var, float(eps), float(momentum),
                  bool(training), mean, inv_std, has_stats, out)
        return out

    def _op_batchnorm_backward(self, dy, x, gamma, mean, inv_std, training, dgamma, dbeta, dx):
        m = dy.shape[1]
        dt = dy.dtype
        has_dgamma = dgamma is not None and dbeta is not None
        if not has_dgamma:
            dgamma = dbeta = self._dummy_like(dt, 1)
        dxx, has_dx = self._or_dummy(dx, dt, 2)
        self._run(K.batchnorm_backward, m, dy, x, gamma, mean, inv_std, bool(training), dgamma, dbeta, has_dgamma,
                  dxx, has_dx)
        return dx

    def _op_dropout_forward(self, x, rate, key, step, mask, out):
        owner = "dropout_forward"
        out = self._out(owner, "out", out, x.shape, x.dtype)
        mask_arr, has_mask = self._or_dummy(mask, np.uint8, 1)
        k0, k1 = _words(key)
        s0, s1 = _words(step)
        scale = float(np.asarray(1.0 / (1.0 - rate), x.dtype))
        self._run(K.dropout_forward, (x.size + 3) // 4, _flat(x), k0, k1, s0, s1,
                  np.uint64(dropout_threshold(rate)), scale, _flat(mask_arr) if has_mask else mask_arr, has_mask,
                  _flat(out))
        return out

    def _op_dropout_backward(self, dy, mask, rate, out):
        owner = "dropout_backward"
        out = self._out(owner, "out", out, dy.shape, dy.dtype)
        scale = float(np.asarray(1.0 / (1.0 - rate), dy.dtype))
        self._run(K.dropout_backward, dy.size, _flat(dy), _flat(mask), scale, _flat(out))
        return out

    def _op_gaussian_noise(self, x, std, key, step, out):
        owner = "gaussian_noise"
        out = self._out(owner, "out", out, x.shape, x.dtype)
        k0, k1 = _words(key)
        s0, s1 = _words(step)
        self._run(K.gaussian_noise, (x.size + 3) // 4, _flat(x), float(std), k0, k1, s0, s1, _flat(out))
        return out

    def _op_mixup(self, x, idx, lam, out):
        owner = "mixup"
        out = self._out(owner, "out", out, x.shape, x.dtype)
        self._run(K.mixup, x.size, _as_2d(x), idx, float(lam), _as_2d(out))
        return out

    def _op_mixup_labels(self, labels, idx, lam, out):
        owner = "mixup_labels"
        out = self._out(owner, "out", out, (labels.shape[0], None), None)
        self._run(K.mixup_labels, out.size, labels, idx, float(lam), out)
        return out

    # ------------------------------------------------------ flat buffers, update
    def _op_sum_squares(self, x):
        acc = self._scalar_acc()
        self._run(K.sum_squares, x.size, _flat(x), acc)
        return self._read(acc)

    def _op_clip_grad_norm_(self, x, max_norm, norm_out):
        if not _is_device(norm_out) or norm_out.dtype != np.float64 or norm_out.shape != (1,):
            raise TypeError("clip_grad_norm_: norm_out must be a float64 device array of shape (1,); allocate it "
                            "with backend.zeros((1,), np.float64).")
        acc = self._scalar_acc()
        self._run(K.sum_squares, x.size, _flat(x), acc)
        limit = 0.0 if max_norm is None else float(max_norm)
        self._run(K.clip_by_norm, max(x.size, 1), _flat(x), acc, limit, max_norm is not None, norm_out)
        return norm_out

    def _op_scale_(self, x, factor):  # the scalar rounded to x's dtype first, as NumPy does: the same bits
        self._run(K.scale_, x.size, _flat(x), float(np.asarray(factor, x.dtype)))
        return x

    def _op_clip_(self, x, value):
        self._run(K.clip_, x.size, _flat(x), float(np.asarray(value, x.dtype)))
        return x

    def _op_penalty(self, w, g, l1, l2):
        return self._read(self.penalty_into(w, g, l1=l1, l2=l2, loss_out=self._scalar_acc()))

    def _op_penalty_into(self, w, g, l1, l2, scale, loss_out):
        gg, has_g = self._or_dummy(g, w.dtype, 1)
        self._run(K.penalty, w.size, _flat(w), _flat(gg) if has_g else gg, has_g, float(l1), float(l2), float(scale),
                  loss_out)
        return loss_out

    def _update(self, kernel, p, g, buffers, *scalars):
        """Launch an optimizer kernel over the flat buffers (checked by the spec); a buffer this
        call does not use (None) is passed as p, which the kernel then never reads."""
        self._run(kernel, p.size, p, g, *(p if b is None else b for b in buffers), *scalars)

    def _op_sgd_update(self, p, g, buf, lr, momentum, dampening, nesterov, weight_decay, first_step):
        self._update(K.sgd_update, p, g, [buf if momentum else None], float(lr), float(momentum), float(dampening),
                     bool(nesterov), float(weight_decay), bool(first_step))

    def _op_adagrad_update(self, p, g, state_sum, lr, eps, weight_decay):
        self._update(K.adagrad_update, p, g, [state_sum], float(lr), float(eps), float(weight_decay))

    def _op_adadelta_update(self, p, g, square_avg, acc_delta, lr, rho, eps, weight_decay):
        self._update(K.adadelta_update, p, g, [square_avg, acc_delta], float(lr), float(rho), float(eps),
                     float(weight_decay))

    def _op_rmsprop_update(self, p, g, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
                           momentum, centered):
        self._update(K.rmsprop_update, p, g,
                     [square_avg, grad_avg if centered else None, momentum_buffer if momentum else None],
                     float(lr), float(alpha), float(eps), float(weight_decay), float(momentum), bool(centered))

    def _op_adam_update(self, p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                        amsgrad, decoupled_weight_decay, bias_correction1, bias_correction2):
        self._update(K.adam_update, p, g, [exp_avg, exp_avg_sq, max_exp_avg_sq if amsgrad else None],
                     float(lr), float(beta1), float(beta2), float(eps), float(weight_decay), bool(amsgrad),
                     bool(decoupled_weight_decay), float(bias_correction1), float(np.sqrt(bias_correction2)))

    def _op_adamax_update(self, p, g, exp_avg, exp_inf, lr, beta1, beta2, eps, weight_decay, bias_correction1):
        self._update(K.adamax_update, p, g, [exp_avg, exp_inf], float(lr), float(beta1), float(beta2), float(eps),
                     float(weight_decay), float(bias_correction1))

    def _op_nadam_update(self, p, g, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, mu, mu_next,
                         mu_product, bias_correction2):
        c_grad = lr * (1.0 - mu) / (1.0 - mu_product)
        c_avg = lr * mu_next / (1.0 - mu_product * mu_next)
        self._update(K.nadam_update, p, g, [exp_avg, exp_avg_sq], float(lr), float(beta1), float(beta2), float(eps),
                     float(weight_decay), float(c_grad), float(c_avg), float(bias_correction2))


#: the operations with a CUDA kernel (the ``_op_<name>`` methods above): the spec's checks first,
#: then the launch
KERNELS = {name: getattr(CudaBackend, "_op_" + name) for name in SPECS if hasattr(CudaBackend, "_op_" + name)}
implement(CudaBackend, KERNELS, "check", _upload)


def _launch_by_name(spec, kernels=K):
    """Convention: an operation with no ``_op_`` method and a grid-stride kernel of the same name
    in _cuda_kernels, taking the spec's parameters in order (one thread per element of the first
    array; an unused array is passed as the first one), is launched as that kernel, after the
    spec's checks. A new optimizer's update needs no code here."""
    if spec.name in KERNELS or not hasattr(kernels, spec.name):
        return
    kernel, arrays = getattr(kernels, spec.name), {a.name for a in spec.arrays}
    used = {a.name: a.used for a in spec.arrays if a.used is not None}

    def launch(self, *args):
        values = dict(zip(spec.params, args))
        first = args[0]  # the inputs arrive uploaded (the adapter); outputs are the caller's
        out = []
        for name, v in values.items():
            if name in arrays:
                out.append(first if v is None or (name in used and not used[name](values)) else v)
            else:
                out.append(v if isinstance(v, (bool, np.bool_)) else float(v))
        self._run(kernel, first.size, *out)

    # the operation's parameters, as the interface and its tests read them (not *args)
    launch.__signature__ = inspect.Signature(
        [inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in ("self", *spec.params)])
    KERNELS[spec.name] = launch
    implement(CudaBackend, {spec.name: launch}, "check", _upload)


_adapter.add_convention(_launch_by_name)


def _round_trip(spec):
    """An operation with no CUDA kernel at all runs the reference on host copies of its arrays
    (one transfer per array each way; correct, and slow: for rare operations only)."""
    if spec.name not in KERNELS:
        setattr(CudaBackend, spec.name, host_round_trip(spec, lambda a: a.copy_to_host(),
                                                        lambda h, dev: _to_device(h, dev), _is_device))


_adapter.add_convention(_round_trip)


def _to_device(host, dev):
    """Copy ``host`` into the device array ``dev``, or into a new one when dev is None."""
    if dev is None:
        return cuda.to_device(np.ascontiguousarray(host))
    dev.copy_to_device(np.ascontiguousarray(host, dtype=dev.dtype))
    return dev

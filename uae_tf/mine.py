"""Per-sample mutual information neural estimation (MINE), batched over samples.

Each sample x gets its own statistics network T_theta, freshly initialized from
the sample's seed, trained on the K paired views of (x, x + delta) that a view
(:mod:`uae_tf.views`) makes. All per-sample networks of a batch are held as one set
of tensors with a leading batch axis and trained together, so a batch of B samples
costs one batched matmul per layer, not B small ones, and gives what B separate
runs give.

The statistics network is the published one (``MiNetwork`` of the original code):
each branch is ``Conv2D(16, 2x2, valid) -> flatten -> Dense(512) -> Dense(10)`` for
feature-map views of shape ``(h, w, 1)`` and ``Dense(512) -> Dense(10)`` for vector
views, without activations, and
``T(x, y) = Dense(1, no bias)(relu(branch_x(x) + branch_y(y)))``.
The mutual information is its Donsker-Varadhan bound (Algorithm 2, line 7)::

    I = mean_k T(x_k, y_k) - log mean_k exp T(x_k, y_pi(k))

with pi a random permutation of the K views. The first dense layers keep their
kernels output-major, ``[512, inputs]`` (see :func:`matmul_output_major`): a
storage layout for speed, with the same initial values and the same products.
Theta is trained by Adam with the TF1 ``AdamOptimizer`` update the published code
used (epsilon 1e-8 added to sqrt(v), bias correction folded into the step size).
"""

import math

import numpy as np
import tensorflow as tf

from uae_tf import _seeds
from uae_tf._validation import check_positive_int

ADAM_BETA_1 = 0.9
ADAM_BETA_2 = 0.999
ADAM_EPSILON = 1e-8


def donsker_varadhan(t_joint, t_marginal):
    """The Donsker-Varadhan lower bound on mutual information, per sample.

    Args:
        t_joint: ``[B, K]`` statistics T(x_k, y_k) on the joint samples.
        t_marginal: ``[B, K]`` statistics T(x_k, y_pi(k)) on shuffled pairs.

    Returns:
        ``[B]`` estimates ``mean_k t_joint - log mean_k exp t_marginal``; the
        log-mean-exp is computed stably with ``reduce_logsumexp``.
    """
    k = tf.cast(tf.shape(t_marginal)[-1], t_marginal.dtype)
    log_mean_exp = tf.reduce_logsumexp(t_marginal, axis=-1) - tf.math.log(k)
    return tf.reduce_mean(t_joint, axis=-1) - log_mean_exp


@tf.custom_gradient
def matmul_output_major(x, kernel):
    """``x @ kernel^T`` for ``[B, K, D]`` rows and ``[B, H, D]`` output-major kernels.

    The statistics network's first dense layers store their kernels output-major,
    ``[H, D]`` per sample (the layout of ``torch.nn.Linear.weight``), not Keras'
    ``[D, H]``. On XLA's CPU backend and on TF's kernels, ``x @ kernel`` on a
    ``[D, H]`` kernel contracts the K rows against the kernel's long, strided axis,
    a slow kind of dot; on an ``[H, D]`` kernel the contraction runs along rows.
    For the conv view's layer (D = 11,664, H = 512, K = 16) the forward product is
    3-4x faster, and a whole layer update (forward, both gradients, an update of
    the kernel) 1.2x at batch 1 and 1.1-1.8x at batches 4-8
    (``bench/bench_first_layer.py``); the input gradient alone costs about what it
    did on a ``[D, H]`` kernel.

    The forward product is computed as ``(kernel @ x^T)^T``; XLA's simplifier folds
    a bare transpose of a dot back into the slow form, so the product passes
    through a multiplication by a one it cannot evaluate at compile time
    (``1 + 0 * x[b, 0, 0]`` per sample: exact for finite inputs, and a non-finite
    first element makes only its own sample's outputs NaN). The gradients are
    ``dy @ kernel`` and ``dy^T @ x``, what autodiff of ``tf.matmul(x, kernel,
    transpose_b=True)`` gives.

    Args:
        x: ``[B, K, D]`` float32.
        kernel: ``[B, H, D]`` float32.

    Returns:
        ``[B, K, H]``.
    """
    opaque_one = 1.0 + 0.0 * x[:, :1, :1]
    y = tf.transpose(tf.matmul(kernel, x, transpose_b=True) * opaque_one, [0, 2, 1])

    def grad(dy):
        return tf.matmul(dy, kernel), tf.matmul(dy, x, transpose_a=True)

    return y, grad


class StatisticsNetwork:
    """The per-sample statistics network T_theta, with weights batched over samples.

    The network is a pure function of a parameter dict whose tensors all have a
    leading batch axis (one independent network per sample), so it can be trained
    inside a ``tf.function`` loop without Keras variables.

    Args:
        view_shape: Shape of one view: ``(h, w, 1)`` for feature-map views (conv
            branch) or ``(d,)`` for vector views (dense branch).
        hidden_units: Width of the first dense layer (paper: 512).
        features: Width of each branch's output (paper: 10).
        conv_filters: Filters of the 2x2 conv of feature-map branches (paper: 16).

    Example:

    >>> net = StatisticsNetwork((28, 28, 1))
    >>> params = net.initialize(_seeds.sample_seeds(0, tf.range(4)))
    >>> t_joint, t_marginal = net(params, x_views, y_views, permutation)

    Attributes:
        first_layer_matmul: ``(rows, kernel) -> rows @ kernel^T`` for the first dense
            layers' output-major kernels; :func:`matmul_output_major`. Tests and the
            benchmarks swap in other spellings of the same product.
    """

    first_layer_matmul = staticmethod(matmul_output_major)
    #: The kernels stored output-major, ``(hidden_units, inputs)`` per sample.
    OUTPUT_MAJOR_KERNELS = ("x_dense1_kernel", "y_dense1_kernel")

    def __init__(self, view_shape, hidden_units=512, features=10, conv_filters=16):
        view_shape = tuple(int(d) for d in view_shape)
        if len(view_shape) == 3 and view_shape[-1] == 1 and min(view_shape[:2]) >= 2:
            self.kind = "conv"
            h, w, _ = view_shape
            self._flat_dim = (h - 1) * (w - 1) * conv_filters
        elif len(view_shape) == 1 and view_shape[0] >= 1:
            self.kind = "dense"
            self._flat_dim = view_shape[0]
        else:
            raise ValueError(
                "view_shape must be (h, w, 1) for feature-map views or (d,) for vector "
                f"views. Received: view_shape={view_shape}"
            )
        self.view_shape = view_shape
        self.hidden_units = int(hidden_units)
        self.features = int(features)
        self.conv_filters = int(conv_filters)

    def shapes(self):
        """Returns ``{name: (shape of one sample's tensor, fan_in, fan_out)}``.

        The kernels in ``OUTPUT_MAJOR_KERNELS`` (the first dense layers') are stored
        output-major, ``(hidden_units, inputs)`` (see :func:`matmul_output_major`);
        the other kernels in Keras' ``(inputs, outputs)`` order.
        """
        f, h = self.features, self.hidden_units
        shapes = {}
        for branch in ("x", "y"):
            if self.kind == "conv":
                # 2x2x1 kernels flattened to 4 rows; Keras' fan for a conv kernel.
                shapes[f"{branch}_conv_kernel"] = ((4, self.conv_filters), 4, 4 * self.conv_filters)
                shapes[f"{branch}_conv_bias"] = ((self.conv_filters,), None, None)
            shapes[f"{branch}_dense1_kernel"] = ((h, self._flat_dim), self._flat_dim, h)
            shapes[f"{branch}_dense1_bias"] = ((h,), None, None)
            shapes[f"{branch}_dense2_kernel"] = ((h, f), h, f)
            shapes[f"{branch}_dense2_bias"] = ((f,), None, None)
        shapes["output_kernel"] = ((f,), f, 1)
        return shapes

    def num_parameters(self):
        """Returns the number of parameters of one sample's network."""
        return int(sum(np.prod(shape) for shape, _, _ in self.shapes().values()))

    def initialize(self, seeds):
        """Draws fresh per-sample parameters: Glorot-uniform kernels, zero biases.

        Args:
            seeds: ``[B, 2]`` int32 per-sample seeds (see ``_seeds.sample_seeds``);
                a sample's parameters depend on its seed only.

        Returns:
            A dict of ``[B, ...]`` float32 tensors.
        """
        params = {}
        for i, (name, (shape, fan_in, fan_out)) in enumerate(sorted(self.shapes().items())):
            if fan_in is None:
                params[name] = tf.zeros([tf.shape(seeds)[0], *shape])
                continue
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            tensor_seeds = _seeds.fold_in(seeds, i)
            # Output-major kernels are drawn in (inputs, outputs) order and
            # transposed, so that they hold the values a Keras Dense kernel would.
            output_major = name in self.OUTPUT_MAJOR_KERNELS
            draw_shape = shape[::-1] if output_major else shape
            params[name] = tf.map_fn(
                lambda s, shape=draw_shape, limit=limit: tf.random.stateless_uniform(
                    shape, seed=s, minval=-limit, maxval=limit
                ),
                tensor_seeds,
                fn_output_signature=tf.float32,
            )
            if output_major:
                params[name] = tf.transpose(params[name], [0, 2, 1])
        return params

    def branch(self, params, views, prefix):
        """One branch applied to ``[B, K, ...view_shape]`` views; returns ``[B, K, features]``."""
        batch, k = tf.shape(views)[0], tf.shape(views)[1]
        if self.kind == "conv":
            v = views[..., 0]
            patches = tf.stack(
                [v[:, :, :-1, :-1], v[:, :, :-1, 1:], v[:, :, 1:, :-1], v[:, :, 1:, 1:]], axis=-1
            )
            patches = tf.reshape(patches, [batch, -1, 4])
            conv = tf.matmul(patches, params[f"{prefix}_conv_kernel"])
            conv += params[f"{prefix}_conv_bias"][:, None, :]
            flat = tf.reshape(conv, [batch, k, self._flat_dim])
        else:
            flat = tf.reshape(views, [batch, k, self._flat_dim])
        hidden = self.first_layer_matmul(flat, params[f"{prefix}_dense1_kernel"])
        hidden += params[f"{prefix}_dense1_bias"][:, None, :]
        out = tf.matmul(hidden, params[f"{prefix}_dense2_kernel"])
        return out + params[f"{prefix}_dense2_bias"][:, None, :]

    def __call__(self, params, x_views, y_views, permutation):
        """Evaluates T on joint pairs and on shuffled (product-of-marginals) pairs.

        Args:
            params: Per-sample parameters from :meth:`initialize`.
            x_views: ``[B, K, ...]`` views of x.
            y_views: ``[B, K, ...]`` views of x + delta.
            permutation: ``[B, K]`` int32, a permutation of the K views per sample.

        Returns:
            ``(t_joint, t_marginal)``, each ``[B, K]``.
        """
        bx = self.branch(params, x_views, "x")
        by = self.branch(params, y_views, "y")
        # The branches are separate, so branch_y of the shuffled views is the
        # shuffled branch_y of the views: one forward pass serves both terms.
        by_shuffled = tf.gather(by, permutation, batch_dims=1)
        w = params["output_kernel"][:, None, :]
        t_joint = tf.reduce_sum(tf.nn.relu(bx + by) * w, axis=-1)
        t_marginal = tf.reduce_sum(tf.nn.relu(bx + by_shuffled) * w, axis=-1)
        return t_joint, t_marginal

    def mutual_information(self, params, x_views, y_views, permutation):
        """Returns the ``[B]`` Donsker-Varadhan estimates I(x, x + delta)."""
        return donsker_varadhan(*self(params, x_views, y_views, permutation))


def adam_init(params):
    """Returns zero first and second moments for per-sample Adam on ``params``."""
    zeros = {name: tf.zeros_like(value) for name, value in params.items()}
    return {"m": zeros, "v": dict(zeros), "step": tf.constant(0.0)}


def adam_update(params, grads, state, learning_rate):
    """One step of the TF1 ``AdamOptimizer`` update (the published code's), per tensor.

    Args:
        params: Dict of tensors.
        grads: Dict of their gradients (of the loss to minimize).
        state: ``{"m", "v", "step"}`` from :func:`adam_init` or a previous update.
        learning_rate: Step size.

    Returns:
        ``(params, state)`` after the step.
    """
    step = state["step"] + 1.0
    lr_t = learning_rate * tf.sqrt(1.0 - ADAM_BETA_2**step) / (1.0 - ADAM_BETA_1**step)
    new_params, new_m, new_v = {}, {}, {}
    for name, value in params.items():
        g = grads[name]
        m = ADAM_BETA_1 * state["m"][name] + (1.0 - ADAM_BETA_1) * g
        v = ADAM_BETA_2 * state["v"][name] + (1.0 - ADAM_BETA_2) * tf.square(g)
        new_params[name] = value - lr_t * m / (tf.sqrt(v) + ADAM_EPSILON)
        new_m[name], new_v[name] = m, v
    return new_params, {"m": new_m, "v": new_v, "step": step}


def train_step(network, params, adam_state, x_views, y_views, permutation, learning_rate):
    """One Adam ascent step on the DV bound; returns ``(params, adam_state, mi)``.

    ``mi`` is the ``[B]`` estimate computed in this step's forward pass, before the
    update (as the published code reports it).
    """
    with tf.GradientTape() as tape:
        tape.watch(params)
        mi = network.mutual_information(params, x_views, y_views, permutation)
        loss = -tf.reduce_sum(mi)
    grads = tape.gradient(loss, params)
    params, adam_state = adam_update(params, grads, adam_state, learning_rate)
    return params, adam_state, mi


def estimate_mutual_information(
    x_views, y_views, steps=500, learning_rate=1e-3, seed=0, indices=None, **network_kwargs
):
    """Trains a fresh per-sample statistics network and returns its MI estimates.

    A standalone use of per-sample MINE: ``x_views`` and ``y_views`` are the K paired
    views of each of B samples.

    Args:
        x_views: ``[B, K, ...view_shape]`` float tensor.
        y_views: Same shape, paired with ``x_views`` along K.
        steps: Adam steps.
        learning_rate: Adam step size (the attack uses 1.5e-5 with few steps
            per iteration; a standalone estimate needs a larger rate).
        seed: Run seed; sample b's network and permutations depend on
            ``(seed, indices[b])`` only.
        indices: ``[B]`` sample identities, default ``range(B)``.
        **network_kwargs: Passed to :class:`StatisticsNetwork`.

    Returns:
        ``(mi, history)``: ``[B]`` estimates at the last step and ``[steps, B]``
        estimates along training, as numpy arrays.

    Raises:
        ValueError: if the views do not have one shape ``[B, K, ...]`` or hold NaN
            or infinite values, for a bad ``steps`` or ``seed``, or if training
            diverges to a NaN or infinite estimate (lower ``learning_rate``).
    """
    x_views = tf.convert_to_tensor(x_views, tf.float32)
    y_views = tf.convert_to_tensor(y_views, tf.float32)
    if x_views.shape != y_views.shape or x_views.shape.rank < 3:
        raise ValueError(
            "x_views and y_views must have the same shape [B, K, ...]. Received: "
            f"{x_views.shape} and {y_views.shape}"
        )
    for name, views in (("x_views", x_views), ("y_views", y_views)):
        bad = int(tf.math.count_nonzero(~tf.math.is_finite(views)))
        if bad:
            raise ValueError(f"{name} contains {bad} NaN or infinite values.")
    steps = check_positive_int(steps, "steps")
    batch = x_views.shape[0]
    indices = tf.range(batch) if indices is None else tf.convert_to_tensor(indices, tf.int32)
    seeds = _seeds.sample_seeds(seed, indices)
    network = StatisticsNetwork(x_views.shape[2:], **network_kwargs)
    history = _train(network, seeds, x_views, y_views, tf.constant(steps), learning_rate)
    history = history.numpy()
    if not np.all(np.isfinite(history[-1])):
        raise ValueError(
            f"The MI estimate diverged to NaN or infinity for "
            f"{int(np.sum(~np.isfinite(history[-1])))} of {batch} samples. Received: "
            f"learning_rate={learning_rate!r}; try a smaller one."
        )
    return history[-1], history


@tf.function(reduce_retracing=True)
def _train(network, seeds, x_views, y_views, steps, learning_rate):
    params = network.initialize(seeds)
    adam_state = adam_init(params)
    k = tf.shape(x_views)[1]
    history = tf.TensorArray(tf.float32, size=steps)
    for s in tf.range(steps):
        permutation = _seeds.permutations(seeds, s, k)
        params, adam_state, mi = train_step(
            network, params, adam_state, x_views, y_views, permutation, learning_rate
        )
        history = history.write(s, mi)
    return history.stack()

"""SimCLR's contrastive loss (NT-Xent) and its augmentations, seeded and differentiable.

:func:`nt_xent` is the loss of SimCLR's training and of the contrastive attack
criterion (:class:`uae_tf.criteria.ContrastiveCriterion`).

SimCLR makes two views of every image by a random augmentation. Here an
augmentation is two steps: :func:`draw_parameters` draws the parameters of V
views from one stateless seed (crop boxes, flips, colour-jitter factors,
grayscale flags, noise), and :func:`apply_parameters` applies them to V images
with differentiable ops only (the crop and resize is a bilinear interpolation
written as two matrix products, so it is differentiable in the image and compiles
with XLA). Training draws fresh parameters every step
(:class:`SimCLRAugmentation`); the contrastive attack criterion draws them once
per sample from ``(seed, index)`` and keeps them through the attack, so its loss
is a deterministic, differentiable function of the perturbed image.

Colour images (SimCLR's CIFAR-10 recipe): random resized crop (area 8-100%,
aspect ratio 3/4-4/3), horizontal flip (p = 0.5), colour jitter of strength s
(p = 0.8: brightness and contrast and saturation factors in [1 - 0.8s, 1 + 0.8s],
hue rotation by up to 0.2s of a turn, the four steps in a random order per view,
clipped to [0, 1] after each, as SimCLR's ``color_jitter_rand``), random grayscale
(p = 0.2). Grayscale digits: random resized crop (area 25-100%; no flip, a
flipped digit is another symbol) and Gaussian noise (sigma 0.1). Results are
clipped to [0, 1]. :func:`draw_crop_and_flip` draws SimCLR's fine-tuning
augmentation (crop and flip, no colour), which the published linear probe trains
with (:func:`uae_tf.models.linear_probe`).

Where these differ from SimCLR's ``data_util.py`` (the copy in IBM/UAE
``Unsupversied/simCLR/``, lines 61-181 and 304-325):

* hue: a rotation of the (I, Q) chroma plane of YIQ, where SimCLR shifts H in HSV
  (``tf.image.random_hue``). HSV's hue is undefined on gray pixels and its
  derivative jumps wherever the largest channel changes (TensorFlow registers no
  gradient for ``AdjustHue``), while the rotation is smooth: the contrastive
  criterion stays differentiable in the image;
* saturation: a blend with the luma (Y) image, where SimCLR scales S in HSV
  (``tf.image.random_saturation``), for the same reason;
* crop: a continuous box resampled bilinearly (two matrix products,
  differentiable and XLA-compiled), where SimCLR cuts an integer-pixel box
  (``sample_distorted_bounding_box``, at least 10% of the image covered, the whole
  image after 100 failed draws) and resizes it bicubically. Kept bilinear because
  every measured SimCLR result here (mnist5k digits) was made with it; the
  difference is in how the crop is resampled, not which part is cut.

Example:

>>> params = draw_parameters(tf.constant([0, 1]), 8, (28, 28, 1))
>>> views = apply_parameters(tf.tile(x[:1], [8, 1, 1, 1]), params)  # 8 views of x[0]
"""

import math

import keras
import numpy as np
import tensorflow as tf

COLOR_CROP_AREA = (0.08, 1.0)
GRAYSCALE_CROP_AREA = (0.25, 1.0)
ASPECT_RATIO = (3 / 4, 4 / 3)
NOISE_STDDEV = 0.1
TEMPERATURE = 0.5
# The augmentation parameters of one view, as :func:`draw_parameters` returns them.
PARAMETERS = ("box", "flip", "jitter", "brightness", "contrast", "saturation", "hue", "order",
              "gray", "noise")
# The colour-jitter steps, in the order ``order`` indexes them (SimCLR's ``apply_transform``).
JITTER_STEPS = ("brightness", "contrast", "saturation", "hue")
_LARGE = 1e9
# RGB <-> YIQ: a hue shift is a rotation of the (I, Q) plane.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                        [0.211, -0.523, 0.312]], np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)


def nt_xent(z1, z2, temperature=TEMPERATURE):
    """The NT-Xent loss of paired views, as the published SimCLR code computes it.

    Rows ``z1[i]`` and ``z2[i]`` are the two views of sample i; every other row of
    both is a negative. With cosine similarities over the temperature,
    ``loss_a = mean_i CE(i, [sim(z1_i, z2), sim(z1_i, z1) without i])``, ``loss_b``
    the same from ``z2``, and the loss is ``loss_a + loss_b`` (SimCLR's
    ``add_contrastive_loss``; the paper's formula averages the two, half this).

    Args:
        z1: ``[..., N, D]`` projections of the first views.
        z2: ``[..., N, D]`` projections of the second views.
        temperature: tau > 0 (SimCLR on CIFAR-10: 0.5).

    Returns:
        ``[...]`` losses (a scalar for ``[N, D]`` inputs).

    Example:

    >>> nt_xent(tf.random.normal([8, 128]), tf.random.normal([8, 128])).shape
    TensorShape([])
    """
    z1 = tf.math.l2_normalize(z1, axis=-1)
    z2 = tf.math.l2_normalize(z2, axis=-1)
    n = tf.shape(z1)[-2]
    self_mask = _LARGE * tf.eye(n, dtype=z1.dtype)
    ab = tf.linalg.matmul(z1, z2, transpose_b=True) / temperature
    aa = tf.linalg.matmul(z1, z1, transpose_b=True) / temperature - self_mask
    bb = tf.linalg.matmul(z2, z2, transpose_b=True) / temperature - self_mask
    ba = tf.linalg.matrix_transpose(ab)
    positive = tf.linalg.diag_part(ab)
    loss_a = tf.reduce_logsumexp(tf.concat([ab, aa], -1), axis=-1) - positive
    loss_b = tf.reduce_logsumexp(tf.concat([ba, bb], -1), axis=-1) - positive
    return tf.reduce_mean(loss_a, axis=-1) + tf.reduce_mean(loss_b, axis=-1)


def _uniform(seed, stream, shape, low=0.0, high=1.0):
    seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int32), stream)
    return tf.random.stateless_uniform(shape, seed, low, high)


def draw_parameters(seed, num_views, image_shape, color_jitter_strength=0.5):
    """Draws the augmentation parameters of ``num_views`` views from one seed.

    Args:
        seed: ``[2]`` int32 stateless seed.
        num_views: V, the number of views.
        image_shape: ``(H, W, C)``; C = 1 takes the grayscale recipe, C = 3 the colour one.
        color_jitter_strength: s, SimCLR's colour-jitter strength (0.5 for CIFAR-10).

    Returns:
        A dict of ``[V, ...]`` float32 tensors: ``box`` ``[V, 4]`` (y1, x1, y2, x2 as
        fractions of the image), ``flip``, ``jitter``, ``brightness``, ``contrast``,
        ``saturation``, ``hue``, ``gray`` ``[V]``, ``order`` ``[V, 4]`` (a permutation
        of the indices of :data:`JITTER_STEPS`: the order the jitter applies them
        in) and ``noise`` ``[V, H, W, C]``.
    """
    height, width, channels = (int(d) for d in image_shape)
    color = channels == 3
    area_low, area_high = COLOR_CROP_AREA if color else GRAYSCALE_CROP_AREA
    area = _uniform(seed, 1, [num_views], area_low, area_high)
    log_ratio = _uniform(seed, 2, [num_views], math.log(ASPECT_RATIO[0]), math.log(ASPECT_RATIO[1]))
    ratio = tf.exp(log_ratio)
    box_h = tf.minimum(tf.sqrt(area / ratio), 1.0)
    box_w = tf.minimum(tf.sqrt(area * ratio), 1.0)
    y1 = _uniform(seed, 3, [num_views]) * (1.0 - box_h)
    x1 = _uniform(seed, 4, [num_views]) * (1.0 - box_w)
    strength = 0.8 * color_jitter_strength

    def coin(stream, p):
        return tf.cast(_uniform(seed, stream, [num_views]) < p, tf.float32) * float(color)

    zeros = tf.zeros([num_views])
    return {
        "box": tf.stack([y1, x1, y1 + box_h, x1 + box_w], axis=1),
        "flip": coin(5, 0.5),
        "jitter": coin(6, 0.8),
        "brightness": _uniform(seed, 7, [num_views], max(0.0, 1 - strength), 1 + strength),
        "contrast": _uniform(seed, 8, [num_views], max(0.0, 1 - strength), 1 + strength),
        "saturation": _uniform(seed, 9, [num_views], max(0.0, 1 - strength), 1 + strength),
        "hue": _uniform(seed, 10, [num_views], -0.2 * color_jitter_strength,
                        0.2 * color_jitter_strength) if color else zeros,
        "order": tf.cast(tf.argsort(_uniform(seed, 13, [num_views, len(JITTER_STEPS)]), axis=-1),
                         tf.float32),
        "gray": coin(11, 0.2),
        "noise": tf.zeros([num_views, height, width, channels]) if color else NOISE_STDDEV
        * tf.random.stateless_normal([num_views, height, width, channels],
                                     tf.random.experimental.stateless_fold_in(seed, 12)),
    }


def draw_crop_and_flip(seed, num_views, image_shape):
    """Draws SimCLR's fine-tuning augmentation: a random resized crop and flip, no colour.

    SimCLR fine-tunes and trains its linear evaluation on ``preprocess_for_train``
    with ``color_distort=False`` (IBM/UAE ``Unsupversied/simCLR/data.py``, lines
    125-139, and ``data_util.py``, lines 447-477): the crop and flip of
    :func:`draw_parameters` (for grayscale digits its digit recipe: area 25-100%,
    no flip), with the colour jitter, grayscale and noise off.

    Args:
        seed: ``[2]`` int32 stateless seed.
        num_views: V, the number of views.
        image_shape: ``(H, W, C)``.

    Returns:
        The dict of :func:`draw_parameters`, for :func:`apply_parameters`.
    """
    params = draw_parameters(seed, num_views, image_shape)
    return {**params, "jitter": tf.zeros_like(params["jitter"]),
            "gray": tf.zeros_like(params["gray"]), "noise": tf.zeros_like(params["noise"])}


def _interpolation(low, high, size):
    """``[V, size, size]`` bilinear weights resampling [low, high] of an axis to ``size``."""
    centers = (tf.range(size, dtype=tf.float32) + 0.5) / size
    source = (low[:, None] + (high - low)[:, None] * centers) * size - 0.5
    source = tf.clip_by_value(source, 0.0, size - 1.0)
    pixels = tf.range(size, dtype=tf.float32)
    return tf.nn.relu(1.0 - tf.abs(source[:, :, None] - pixels[None, None, :]))


def _per_view(value):
    return value[:, None, None, None]


def apply_parameters(images, params):
    """Applies drawn augmentation parameters to images, differentiably.

    Args:
        images: ``[V, H, W, C]`` images in [0, 1], one per view.
        params: The dict of :func:`draw_parameters` for V views.

    Returns:
        ``[V, H, W, C]`` augmented views in [0, 1].
    """
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    box, flip = params["box"], params["flip"]
    rows = _interpolation(box[:, 0], box[:, 2], height)
    # A horizontal flip reads the crop's columns right to left.
    left = flip * box[:, 3] + (1 - flip) * box[:, 1]
    right = flip * box[:, 1] + (1 - flip) * box[:, 3]
    cols = _interpolation(left, right, width)
    x = tf.einsum("vih,vhwc,vjw->vijc", rows, images, cols)
    if channels == 3:
        x = _color_jitter(x, params)
        gray = _per_view(params["gray"])
        x = gray * _grayscale(x) + (1 - gray) * x
    return tf.clip_by_value(x + params["noise"], 0.0, 1.0)


def _grayscale(x):
    return tf.tile(tf.reduce_sum(x * _RGB_TO_YIQ[0], axis=-1, keepdims=True), [1, 1, 1, 3])


def _color_jitter(x, params):
    """SimCLR's colour jitter in each view's own order of the four steps, clipped after each.

    Every position of the order applies all four steps and keeps, per view, the
    one its ``order`` names (a one-hot mix), so the result stays differentiable and
    the batch one tensor program.
    """
    angle = 2.0 * math.pi * params["hue"]
    cos, sin = tf.cos(angle), tf.sin(angle)
    one, zero = tf.ones_like(cos), tf.zeros_like(cos)
    rotation = tf.stack([tf.stack([one, zero, zero], -1), tf.stack([zero, cos, -sin], -1),
                         tf.stack([zero, sin, cos], -1)], axis=1)  # [V, 3, 3] on (Y, I, Q)

    def brightness(v):
        return v * _per_view(params["brightness"])

    def contrast(v):
        mean = tf.reduce_mean(v, axis=[1, 2], keepdims=True)
        return (v - mean) * _per_view(params["contrast"]) + mean

    def saturation(v):
        gray = _grayscale(v)
        return gray + (v - gray) * _per_view(params["saturation"])

    def hue(v):
        yiq = tf.einsum("vhwc,vdc->vhwd", tf.einsum("vhwc,dc->vhwd", v, _RGB_TO_YIQ), rotation)
        return tf.einsum("vhwc,dc->vhwd", yiq, _YIQ_TO_RGB)

    steps = (brightness, contrast, saturation, hue)  # JITTER_STEPS
    order = tf.cast(params["order"], tf.int32)
    jittered = x
    for position in range(len(steps)):
        pick = tf.one_hot(order[:, position], len(steps), dtype=x.dtype)  # [V, 4]
        candidates = tf.stack([step(jittered) for step in steps], axis=1)  # [V, 4, H, W, C]
        jittered = tf.clip_by_value(tf.einsum("vk,vkhwc->vhwc", pick, candidates), 0.0, 1.0)
    apply = _per_view(params["jitter"])
    return apply * jittered + (1 - apply) * x


@keras.saving.register_keras_serializable(package="uae_tf")
class SimCLRAugmentation(keras.layers.Layer):
    """SimCLR's random augmentation as a Keras preprocessing layer (no weights).

    Every call draws fresh parameters for each image from its own seed stream
    (a ``keras.random.SeedGenerator``), or from ``seed`` when given, and applies
    them with :func:`apply_parameters`.

    Args:
        color_jitter_strength: s of SimCLR's colour jitter (colour images only).
        seed: Integer seed of the draws.

    Example:

    >>> augment = SimCLRAugmentation(seed=0)
    >>> view_1, view_2 = augment(x_batch), augment(x_batch)
    """

    def __init__(self, color_jitter_strength=0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= color_jitter_strength <= 1:
            raise ValueError("color_jitter_strength must be in [0, 1]. Received: "
                             f"color_jitter_strength={color_jitter_strength!r}")
        self.color_jitter_strength = float(color_jitter_strength)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, seed=None):
        if seed is None:
            seed = keras.random.randint([2], 0, 2**31 - 1, seed=self.seed_generator, dtype="int32")
        params = draw_parameters(seed, tf.shape(images)[0], images.shape[1:],
                                 self.color_jitter_strength)
        return apply_parameters(images, params)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "color_jitter_strength": self.color_jitter_strength,
                "seed": self.seed}

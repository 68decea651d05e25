"""Per-sample views: how one sample becomes K paired samples for MINE.

MINE needs a batch of paired samples, and a single sample has none. Section 3.1
of the paper turns each sample x (and its perturbation x + delta) into K views:

* :class:`ConvView` -- the K feature maps of the model's first ``Conv2D`` layer
  (Appendix A.2, Algorithm 2); each filter's h x w map is one view.
* :class:`RandomView` -- K Gaussian projections of the flattened sample to d'
  dimensions, each standardized (Appendix A.1).

A view maps a batch ``[B, ...]`` to ``[B, K, ...view_shape]`` and is
differentiable, so the attack can take gradients through it.
"""

import keras
import numpy as np
import tensorflow as tf

from uae_tf._validation import check_seed

VIEWS = ("auto", "conv", "random")


def find_first_conv2d(model, layer_name=None):
    """Returns the first ``Conv2D`` layer of a Keras model (searching nested models).

    Args:
        model: A Keras model.
        layer_name: If given, the name of the ``Conv2D`` layer to use instead.

    Returns:
        The ``keras.layers.Conv2D`` layer, or ``None`` if the model has none (and
        ``layer_name`` is ``None``).

    Raises:
        ValueError: if ``layer_name`` names no layer or a layer that is not a
            ``Conv2D``.
    """
    for layer in _walk_layers(model):
        if layer_name is None and isinstance(layer, keras.layers.Conv2D):
            return layer
        if layer_name is not None and layer.name == layer_name:
            if not isinstance(layer, keras.layers.Conv2D):
                raise ValueError(
                    f"layer_name must name a Conv2D layer. Received: layer_name="
                    f"{layer_name!r}, a {type(layer).__name__}"
                )
            return layer
    if layer_name is not None:
        names = [layer.name for layer in _walk_layers(model)]
        raise ValueError(
            f"The model has no layer named {layer_name!r}. Its layers are: {names}"
        )
    return None


def _walk_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from _walk_layers(layer)


class ConvView:
    """The first convolution layer's feature maps as K views (Algorithm 2).

    ``view(x)`` for ``x`` of shape ``[B, H, W, C]`` returns ``[B, K, h, w, 1]``: the
    model's first ``Conv2D`` output (after its activation), one view per filter.

    Args:
        model: A functional or Sequential Keras model with a ``Conv2D`` layer.
        layer_name: Name of the ``Conv2D`` layer to use; default the first one.

    Raises:
        ValueError: if the model has no ``Conv2D`` layer (use ``RandomView``).

    Example:

    >>> view = ConvView(autoencoder)
    >>> view(x_batch).shape  # (B, 16, 28, 28, 1) for the paper's conv AE on MNIST
    """

    name = "conv"

    def __init__(self, model, layer_name=None):
        layer = find_first_conv2d(model, layer_name)
        if layer is None:
            raise ValueError(
                f"view='conv' needs a model with a Conv2D layer, and model "
                f"{model.name!r} has none. Use view='random' (or 'auto') instead."
            )
        self.layer = layer
        self._features = _feature_extractor(model, layer)

    def __call__(self, x):
        maps = self._features(x)
        maps = tf.transpose(maps, [0, 3, 1, 2])
        return maps[..., None]

    def __repr__(self):
        return f"ConvView(layer={self.layer.name!r}, filters={self.layer.filters})"


def _feature_extractor(model, layer):
    """Returns a callable mapping the model's input to ``layer``'s output.

    ``layer`` may sit inside nested models: the extractor then runs the outer model
    up to the nested model's input and the nested model up to ``layer``.
    """
    path = _container_path(model, layer)
    stages = []
    for outer, inner in zip(path, path[1:]):
        stages.append(_to_input_of(outer, inner))
    stages.append(_to_output_of(path[-1], layer))

    if len(stages) == 1:
        return stages[0]

    def extract(x):
        for stage in stages:
            x = stage(x)
        return x

    return extract


def _container_path(model, layer):
    """The models from ``model`` down to the one whose own layer is ``layer``."""
    for child in getattr(model, "layers", []):
        if child is layer:
            return [model]
        if hasattr(child, "layers"):
            below = _container_path(child, layer)
            if below:
                return [model] + below
    return []


def _to_output_of(model, layer):
    if getattr(model, "inputs", None):
        return keras.Model(model.inputs, layer.output)
    if model.layers and model.layers[0] is layer:
        return layer
    raise ValueError(
        f"Cannot reach layer {layer.name!r} from the input of model {model.name!r}: "
        "a subclassed model must have its Conv2D as its first layer, or pass a "
        "functional model."
    )


def _to_input_of(model, inner):
    """A callable mapping ``model``'s input to what ``model`` feeds ``inner``."""
    if model.layers and model.layers[0] is inner:
        return lambda x: x
    if getattr(model, "inputs", None):
        # The call of ``inner`` inside ``model``'s graph is one of its inbound nodes.
        for node in getattr(inner, "_inbound_nodes", []):
            tensors = node.input_tensors
            try:
                return keras.Model(model.inputs, tensors[0] if len(tensors) == 1 else tensors)
            except ValueError:
                continue
    raise ValueError(
        f"Cannot reach the nested model {inner.name!r} from the input of model "
        f"{model.name!r}: pass a functional or Sequential model built on keras.Input, "
        "or the nested model itself."
    )


class RandomView:
    """K standardized Gaussian projections of the flattened sample (Appendix A.1).

    ``M_k`` in R^{d' x d} has i.i.d. N(0, 1/d') entries (the published code's
    standard deviation 1/sqrt(d')); view k of x is ``standardize(M_k x)``: zero
    mean and unit variance over its d' entries. The projections are drawn once
    from ``seed`` and kept for the run, so they cost one matmul per evaluation
    (the published code redrew them at every step).

    Args:
        input_shape: Shape of one sample, e.g. ``(28, 28, 1)`` or ``(784,)``.
        num_projections: K, the number of views (paper: 500).
        projection_dim: d', the dimension of each view (paper: 128).
        seed: Integer seed of the projections.

    Example:

    >>> view = RandomView((28, 28, 1), seed=0)
    >>> view(x_batch).shape  # (B, 500, 128)
    """

    name = "random"

    def __init__(self, input_shape, num_projections=500, projection_dim=128, seed=0):
        for arg, value in (("num_projections", num_projections), ("projection_dim", projection_dim)):
            if not isinstance(value, (int, np.integer)) or value < 2:
                raise ValueError(f"{arg} must be an integer >= 2. Received: {arg}={value!r}")
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_projections = int(num_projections)
        self.projection_dim = int(projection_dim)
        self.seed = check_seed(seed)
        dim = int(np.prod(self.input_shape))
        self.projections = tf.random.stateless_normal(
            [dim, self.num_projections * self.projection_dim],
            seed=[self.seed, 0x5EED],
            stddev=1.0 / np.sqrt(self.projection_dim),
        )

    def __call__(self, x):
        flat = tf.reshape(x, [tf.shape(x)[0], -1])
        proj = tf.reshape(
            tf.matmul(flat, self.projections), [-1, self.num_projections, self.projection_dim]
        )
        mean, variance = tf.nn.moments(proj, axes=[-1], keepdims=True)
        return (proj - mean) * tf.math.rsqrt(variance + 1e-12)

    def __repr__(self):
        return (
            f"RandomView(num_projections={self.num_projections}, "
            f"projection_dim={self.projection_dim}, seed={self.seed})"
        )


def make_view(view, model=None, input_shape=None, seed=0, layer_name=None, **random_kwargs):
    """Builds a view from its name, as the attacks' ``view`` argument accepts.

    Args:
        view: ``"auto"`` (conv when the model has a ``Conv2D``, else random, as the
            paper does), ``"conv"``, ``"random"``, or an existing view object.
        model: The attacked model (needed for ``"conv"`` and ``"auto"``).
        input_shape: Shape of one sample (needed for ``"random"``).
        seed: Seed of the random projections.
        layer_name: Conv layer to use for the conv view.
        **random_kwargs: ``num_projections`` and ``projection_dim`` for ``"random"``.

    Returns:
        A callable view.
    """
    if not isinstance(view, str):
        return view
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}. Received: view={view!r}")
    if view == "auto":
        has_conv = model is not None and find_first_conv2d(model, layer_name) is not None
        view = "conv" if has_conv else "random"
    if view == "conv":
        if model is None:
            raise ValueError("view='conv' needs a model whose first Conv2D gives the views.")
        return ConvView(model, layer_name)
    if input_shape is None:
        raise ValueError("view='random' needs input_shape, the shape of one sample.")
    return RandomView(input_shape, seed=seed, **random_kwargs)

"""Similarities: what the attacks optimize, separate from what success means.

A similarity has per-sample state that the attack carries through its loop
(for MINE: the per-sample statistics networks and their Adam moments) and three
methods, all batched and usable inside ``tf.function``:

* ``initial_state(x, seeds)`` -- fresh state for clean inputs ``x``;
* ``score(state, x_adv, counter)`` -- ``[B]`` differentiable value at ``x_adv``;
* ``update(state, x_adv, counter)`` -- ``(state, [B] value)`` after fitting the
  state at ``x_adv`` (MINE's ``mine_steps`` Adam steps).

An attack iteration uses ``draws_per_iteration`` random draws (permutations)
numbered from ``counter``: draw ``counter`` for ``score`` and the following ones for
``update``, so they depend on the sample's seed and the iteration only.
"""

import tensorflow as tf

from uae_tf import _seeds, mine
from uae_tf.views import make_view


class MINESimilarity:
    """Per-sample MINE I(x, x + delta) on K views of each sample (Section 3.1).

    Args:
        view: A view object (see :mod:`uae_tf.views`).
        mine_steps: Adam steps on the statistics network per attack iteration.
        learning_rate: Adam step size (published code: 1.5e-5).
        **network_kwargs: Passed to :class:`uae_tf.mine.StatisticsNetwork`.
    """

    name = "mine"

    def __init__(self, view, mine_steps=20, learning_rate=1.5e-5, **network_kwargs):
        self.view = view
        self.mine_steps = int(mine_steps)
        self.learning_rate = float(learning_rate)
        self.network_kwargs = network_kwargs
        self.network = None

    @property
    def draws_per_iteration(self):
        """Random draws one attack iteration consumes: one score plus the updates."""
        return self.mine_steps + 1

    def initial_state(self, x, seeds, num_draws):
        """Views of the clean inputs, fresh per-sample networks and all permutations.

        The ``num_draws`` permutations of every sample are drawn here, before the
        attack loop, so that the loop holds no random op and compiles with XLA.
        """
        x_views = self.view(x)
        if self.network is None:
            self.network = mine.StatisticsNetwork(x_views.shape[2:], **self.network_kwargs)
        params = self.network.initialize(seeds)
        k = tf.shape(x_views)[1]
        permutations = tf.map_fn(
            lambda counter: _seeds.permutations(seeds, counter, k),
            tf.range(num_draws),
            fn_output_signature=tf.int32,
        )
        return {
            "x_views": x_views,
            "permutations": permutations,
            "params": params,
            "adam": mine.adam_init(params),
        }

    def _permutation(self, state, counter):
        return state["permutations"][counter]

    def score(self, state, x_adv, counter):
        """The DV estimate at ``x_adv`` with the current networks (differentiable)."""
        return self.network.mutual_information(
            state["params"], state["x_views"], self.view(x_adv), self._permutation(state, counter)
        )

    def update(self, state, x_adv, counter):
        """Trains the networks ``mine_steps`` Adam steps at ``x_adv``.

        Returns:
            ``(state, mi)`` where ``mi`` is the estimate of the last step's forward
            pass (before its update), as the published code reports it.
        """
        y_views = self.view(x_adv)
        params, adam = state["params"], state["adam"]
        mi = tf.zeros([tf.shape(x_adv)[0]])
        for step in tf.range(self.mine_steps):
            params, adam, mi = mine.train_step(
                self.network,
                params,
                adam,
                state["x_views"],
                y_views,
                self._permutation(state, counter + 1 + step),
                self.learning_rate,
            )
        return {**state, "params": params, "adam": adam}, mi

    def get_config(self):
        """Returns the settings as a JSON-serializable dict."""
        return {
            "name": self.name,
            "view": repr(self.view),
            "mine_steps": self.mine_steps,
            "learning_rate": self.learning_rate,
            **self.network_kwargs,
        }


class L2Similarity:
    """The L2-UAE baseline's similarity: ``-||x - Phi(x + delta)||^2`` (Section 5.4).

    Used by the MinMax attack in place of MINE (``similarity="l2"``): with the
    unsupervised sign (``F = c f+ + S``) minimizing ``S`` maximizes the
    reconstruction loss, so among successful iterates the attack keeps the one
    Phi reconstructs worst. It has no state to train and draws nothing.

    Args:
        model: The autoencoder Phi.
    """

    name = "l2"
    draws_per_iteration = 0

    def __init__(self, model):
        self.model = model

    def initial_state(self, x, seeds, num_draws):
        """The clean inputs (the reference of the loss)."""
        del seeds, num_draws
        return {"x": x}

    def score(self, state, x_adv, counter):
        """``[B]`` ``-||x - Phi(x_adv)||^2`` summed over each sample (differentiable)."""
        del counter
        x = state["x"]
        error = tf.square(x - self.model(x_adv, training=False))
        return -tf.reduce_sum(tf.reshape(error, [tf.shape(x)[0], -1]), axis=1)

    def update(self, state, x_adv, counter):
        """Nothing to fit: returns ``(state, score at x_adv)``."""
        return state, self.score(state, x_adv, counter)

    def get_config(self):
        """Returns the settings as a JSON-serializable dict."""
        return {"name": self.name}


SIMILARITIES = ("mine", "l2")


def make_similarity(name, model, input_shape, view="auto", seed=0, mine_steps=20,
                    learning_rate=1.5e-5, layer_name=None, **view_kwargs):
    """Builds a similarity by name: ``"mine"`` (with its view) or ``"l2"``."""
    if name == "l2":
        return L2Similarity(model)
    if name != "mine":
        raise ValueError(f"similarity must be one of {SIMILARITIES}. Received: similarity={name!r}")
    return MINESimilarity(
        make_view(view, model, input_shape, seed=seed, layer_name=layer_name, **view_kwargs),
        mine_steps=mine_steps,
        learning_rate=learning_rate,
    )

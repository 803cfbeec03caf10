"""A small multilayer perceptron in NumPy: the network the NAS component searches over.

Why NumPy rather than a deep-learning framework: tabular inputs are a few dozen
columns, the networks are at most three hidden layers, training takes seconds on two
cores, and the served forward pass is three small matrix products with no framework to
load. The weights are saved as JSON (never pickle).

Training: standardised inputs, He or Glorot initialisation, inverted dropout on the
hidden layers, Adam, mini-batches, and early stopping on the validation score (the
weights of the best epoch are kept). Binary tasks minimise log loss on the logit;
regression minimises squared error on a standardised target.

The model family caps one fit at `tuning.mlp_max_steps` mini-batch steps (20,000): its
epochs are cut to fit. An epoch's cost grows with the rows, and so, on more rows, can the
epochs early stopping waits for, so an uncapped fit grows faster than the data; a cap in
steps bounds one fit whatever the rows (Adam's progress is counted in steps, and on more
rows each step still sees a fresh batch). At 7,043 Telco rows the cap is never reached
(4,507 train rows, 36 batches an epoch, 200 epochs: 7,200 steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

ACTIVATIONS = ("relu", "tanh", "elu")
BATCH_SIZE = 128
PATIENCE = 15  # epochs without a better validation score before stopping
ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8


def _activate(name: str, z: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))  # elu, alpha 1


def _activation_gradient(name: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "tanh":
        return 1.0 - a * a
    return np.where(z > 0, 1.0, a + 1.0)


@dataclass
class MLPNetwork:
    """A fitted network: input standardisation, layers (weights, bias) and the output's scale."""

    mean: np.ndarray
    scale: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]
    activation: str
    output_shift: float = 0.0
    output_scale: float = 1.0

    def margin(self, x: np.ndarray) -> np.ndarray:
        """The output before the link: the logit (binary) or the prediction (regression)."""
        a = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        for weights, bias in self.layers[:-1]:
            a = _activate(self.activation, a @ weights + bias)
        weights, bias = self.layers[-1]
        return (a @ weights + bias)[:, 0] * self.output_scale + self.output_shift

    def to_dict(self) -> dict:
        return {
            "activation": self.activation,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "layers": [{"weights": w.tolist(), "bias": b.tolist()} for w, b in self.layers],
            "output_shift": self.output_shift,
            "output_scale": self.output_scale,
        }

    @classmethod
    def from_dict(cls, document: dict) -> MLPNetwork:
        return cls(
            mean=np.asarray(document["mean"]), scale=np.asarray(document["scale"]),
            layers=[(np.asarray(layer["weights"]), np.asarray(layer["bias"])) for layer in document["layers"]],
            activation=document["activation"], output_shift=document["output_shift"],
            output_scale=document["output_scale"],
        )


def hidden_layers(params: dict) -> tuple[int, ...]:
    """The widths of the hidden layers an architecture's parameters describe (depth, width_1, ...)."""
    return tuple(int(params[f"width_{i}"]) for i in range(1, int(params["depth"]) + 1))


def train_mlp(
    x: np.ndarray,
    y: np.ndarray,
    hidden: Sequence[int],
    activation: str,
    dropout: float,
    learning_rate: float,
    binary: bool,
    max_epochs: int,
    seed: int,
    x_valid: Optional[np.ndarray] = None,
    score: Optional[Callable[[np.ndarray], float]] = None,
    report: Optional[Callable[[int, float], None]] = None,
    max_steps: Optional[int] = None,
) -> tuple[MLPNetwork, int, float]:
    """Train and return (the network at its best epoch, that epoch, its validation score).

    `score(margins)` scores the margins on `x_valid`, higher is better; training stops
    after PATIENCE epochs without a better one. `report(epoch, score)` is called after
    every epoch (for pruning, or Katib's early stopping) and may raise to stop the
    trial. Without `x_valid`, it trains all its epochs and returns the last network, the
    epochs trained and NaN: how the chosen architecture is refitted on all rows.
    With `max_steps`, the epochs (`max_epochs`) are cut so that they take at most that
    many mini-batch steps, one epoch at least.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r}: expected one of {ACTIVATIONS}")
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    shift, spread = (0.0, 1.0) if binary else (float(np.mean(y)), float(np.std(y)) or 1.0)
    target = ((np.asarray(y, dtype=np.float64) - shift) / spread)[:, None]

    sizes = [x.shape[1], *hidden, 1]
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        limit = np.sqrt(2.0 / fan_in) if activation in ("relu", "elu") else np.sqrt(1.0 / fan_in)
        layers.append([rng.normal(0.0, limit, (fan_in, fan_out)), np.zeros(fan_out)])
    moments = [[np.zeros_like(p) for p in layer] for layer in layers]
    velocities = [[np.zeros_like(p) for p in layer] for layer in layers]
    beta1, beta2 = ADAM_BETAS

    def network() -> MLPNetwork:
        return MLPNetwork(mean, scale, [(w.copy(), b.copy()) for w, b in layers], activation, shift, spread)

    epochs = max_epochs if max_steps is None else max(1, min(max_epochs, max_steps // -(-len(z) // BATCH_SIZE)))
    best, best_epoch, best_score, stale, step = network(), 0, -np.inf, 0, 0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(z))
        for start in range(0, len(z), BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            activations, pre_activations, outputs, masks = [z[batch]], [], [], []
            for weights, bias in layers[:-1]:
                pre = activations[-1] @ weights + bias
                post = _activate(activation, pre)
                keep = (rng.random(post.shape) >= dropout) / (1.0 - dropout) if dropout > 0 else None
                pre_activations.append(pre)
                outputs.append(post)
                masks.append(keep)
                activations.append(post * keep if keep is not None else post)
            output = activations[-1] @ layers[-1][0] + layers[-1][1]
            # d(loss)/d(output): log loss on the logit, or squared error, both averaged over the batch.
            delta = ((1.0 / (1.0 + np.exp(-output)) if binary else output) - target[batch]) / len(batch)
            step += 1
            for index in range(len(layers) - 1, -1, -1):
                gradients = [activations[index].T @ delta, delta.sum(axis=0)]
                if index > 0:
                    back = delta @ layers[index][0].T
                    if masks[index - 1] is not None:
                        back = back * masks[index - 1]
                    delta = back * _activation_gradient(activation, pre_activations[index - 1], outputs[index - 1])
                for p, gradient in enumerate(gradients):
                    moments[index][p] = beta1 * moments[index][p] + (1 - beta1) * gradient
                    velocities[index][p] = beta2 * velocities[index][p] + (1 - beta2) * gradient * gradient
                    corrected = moments[index][p] / (1 - beta1 ** step)
                    layers[index][p] -= learning_rate * corrected / (
                        np.sqrt(velocities[index][p] / (1 - beta2 ** step)) + ADAM_EPSILON)
        if x_valid is None:
            continue
        current = network()
        margins = current.margin(x_valid)
        value = float(score(margins)) if np.all(np.isfinite(margins)) else -np.inf  # diverged: never the best
        if value > best_score:
            best, best_epoch, best_score, stale = current, epoch, value, 0
        else:
            stale += 1
        if report is not None:
            report(epoch, value)
        if stale >= PATIENCE:
            break
    if x_valid is None:
        return network(), epochs, float("nan")
    return best, best_epoch, best_score

"""FLOPs of a built model, counted from the layers that actually run: no shape is typed in by hand.

`record(function, model, *specs)` traces `function` once with `tf.function` (a trace does no arithmetic)
while every layer of `model` that has a kernel notes the shapes it is called with. Each call becomes a
`LayerCall`: the products it costs forward, for the gradient of its kernel, and for the gradient of its input.
Calling through the model's own methods is what makes the count follow the model: the K samples of an IWAE
objective reach the decoder as K·B rows, the VampPrior's pseudo-inputs go through the encoder inside the
prior, and an IAF's context layer runs once per image while its autoregressive layers run once per sample.

The rules, 2 FLOPs per multiply-add (RULES, keyed by the layer's exact class):

    Dense, MaskedDense  x (..., in) @ W (in, out): rows · in · out, rows = every axis but the last
                        (a masked kernel is multiplied in full: that is the work done)
    Conv2D              B · H_out · W_out · k_h · k_w · C_in · C_out
    Conv2DTranspose     the adjoint of a Conv2D from its output to its input: B · H_in · W_in · k_h · k_w · C_in · C_out

Training costs, per call: the forward product; the kernel's gradient, as many FLOPs (if the layer is
trainable); the input's gradient, as many again, only if the input depends on a trainable variable (not for
the first layer, which sees data; yes for the VampPrior's pseudo-inputs, which are learned).

Not counted: element-wise work (biases, activations, the likelihood over every pixel, the KL and the mixture
log densities), the optimizer's update, reshapes and data movement. A layer with a kernel and no rule raises
`UncountedLayerError`: a new kind of layer is counted on purpose, never skipped.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import tensorflow as tf
import tf_keras as tfk

from tfvae.errors import TfvaeError
from tfvae.models.posteriors import MaskedDense

__all__ = [
    "Product",
    "LayerCall",
    "RULES",
    "UncountedLayerError",
    "record",
    "count",
    "training_calls",
    "training_flops",
    "evaluation_calls",
]

# The kernels a product runs on; each has a throughput measurement in tfvae.bench.
MATMUL = "matmul"  # (m, k) @ (k, n)
CONV2D = "conv2d"  # x (B, H, W, C_in) * W (k_h, k_w, C_in, C_out) -> y (B, H_out, W_out, C_out)
CONV2D_BACKPROP_INPUT = "conv2d_backprop_input"  # dy, W -> dx: also a transposed convolution's forward pass
CONV2D_BACKPROP_FILTER = "conv2d_backprop_filter"  # x, dy -> dW


class UncountedLayerError(TfvaeError):
    """A layer with a kernel that has no rule in `RULES`."""


@dataclasses.dataclass(frozen=True)
class Product:
    """One kernel call: a matrix product, or a convolution (or one of its two gradients).

    op: MATMUL, shape (m, k, n); or a CONV2D* op, shape (x (B, H, W, C_in), kernel (k_h, k_w, C_in, C_out),
    y (B, H_out, W_out, C_out), strides (s_h, s_w), padding "SAME" or "VALID") of the convolution x -> y
    whose forward pass or gradient this is. All three convolution ops cost the forward pass's FLOPs.
    """

    op: str
    shape: tuple

    @property
    def flops(self) -> int:
        if self.op == MATMUL:
            m, k, n = self.shape
            return 2 * m * k * n
        _, kernel, outputs, _, _ = self.shape
        return 2 * math.prod(outputs[:-1]) * math.prod(kernel)

    @property
    def key(self) -> str:
        """A readable, unique name, used as a JSON key: "matmul 128x784x500"."""
        if self.op == MATMUL:
            return f"{MATMUL} {'x'.join(map(str, self.shape))}"
        inputs, kernel, outputs, strides, padding = self.shape
        dims = lambda shape: "x".join(map(str, shape))  # noqa: E731
        return (f"{self.op} {dims(inputs)} k{dims(kernel)} -> {dims(outputs)} "
                f"s{dims(strides)} {padding.lower()}")

    def to_dict(self) -> dict:
        return {"op": self.op, "shape": _lists(self.shape), "flops": self.flops}

    @classmethod
    def from_dict(cls, values: dict) -> "Product":
        return cls(values["op"], _tuples(values["shape"]))


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """One call of a layer with a kernel, and what it costs."""

    network: str  # the model's part that owns the layer: encoder, decoder, flow, ...
    layer: str  # the layer's name
    forward: Product
    weight_gradient: Optional[Product]  # None: the kernel is not trainable
    input_gradient: Optional[Product]  # None: the input depends on no trainable variable (data)

    def training_products(self) -> list:
        return [p for p in (self.forward, self.weight_gradient, self.input_gradient) if p is not None]


def _dense(layer, inputs: tuple, outputs: tuple) -> tuple:
    """x (..., in) @ W (in, out): forward (rows, in, out), dW = xᵀ·dy (in, rows, out), dx = dy·Wᵀ (rows, out, in)."""
    rows = math.prod(inputs[:-1])
    fan_in, fan_out = layer.kernel.shape
    return (Product(MATMUL, (rows, fan_in, fan_out)), Product(MATMUL, (fan_in, rows, fan_out)),
            Product(MATMUL, (rows, fan_out, fan_in)))


def _convolution(layer) -> tuple:
    if layer.groups != 1 or tuple(layer.dilation_rate) != (1, 1) or layer.data_format != "channels_last":
        raise UncountedLayerError(f"{layer.name}: only ungrouped, undilated channels-last convolutions are counted")
    return tuple(layer.kernel.shape), tuple(layer.strides), layer.padding.upper()


def _conv2d(layer, inputs: tuple, outputs: tuple) -> tuple:
    """x (B, H, W, C_in) -> y (B, H_out, W_out, C_out): the forward convolution and its two gradients."""
    kernel, strides, padding = _convolution(layer)
    shape = (inputs, kernel, outputs, strides, padding)
    return Product(CONV2D, shape), Product(CONV2D_BACKPROP_FILTER, shape), Product(CONV2D_BACKPROP_INPUT, shape)


def _conv2d_transpose(layer, inputs: tuple, outputs: tuple) -> tuple:
    """x (B, h, w, C_in) -> y (B, H, W, C_out) is the input gradient of the convolution y -> x with the same
    kernel (k_h, k_w, C_out, C_in): its forward pass is that convolution's backprop-input, its input gradient
    that convolution's forward pass."""
    kernel, strides, padding = _convolution(layer)
    shape = (outputs, kernel, inputs, strides, padding)
    return (Product(CONV2D_BACKPROP_INPUT, shape), Product(CONV2D_BACKPROP_FILTER, shape),
            Product(CONV2D, shape))


# layer class -> rule(layer, input shape, output shape) -> (forward, weight gradient, input gradient) products.
# Exact classes: a subclass may compute something else, so it needs its own entry.
RULES: dict = {
    tfk.layers.Dense: _dense,
    MaskedDense: _dense,
    tfk.layers.Conv2D: _conv2d,
    tfk.layers.Conv2DTranspose: _conv2d_transpose,
}


def kernel_layers(model) -> list:
    """Every layer of `model` (itself included) that has a kernel; UncountedLayerError for one without a rule."""
    layers, seen = [], set()
    for layer in [model, *model.submodules]:
        if id(layer) in seen or not isinstance(layer, tfk.layers.Layer) or getattr(layer, "kernel", None) is None:
            continue
        seen.add(id(layer))
        if type(layer) not in RULES:
            raise UncountedLayerError(
                f"no FLOP rule for layer {layer.name!r} of type {type(layer).__name__}: add one to tfvae.flops.RULES"
            )
        layers.append(layer)
    return layers


def record(function: Callable, model, *specs: tf.TensorSpec) -> list:
    """The LayerCalls of one call of `function(*specs)`, in the order they run.

    Args:
      function: calls `model` (or its parts) on tensors shaped like `specs`; traced, not run.
      model: the Keras model or layer whose kernel layers are counted; its trainable
        variables decide which inputs need a gradient.
      specs: fully defined shapes: every count depends on them.
    """
    layers = kernel_layers(model)
    owners = _owners(model)
    seen = []  # (layer, inputs, outputs), symbolic tensors of the trace

    def instrumented(layer, call):
        def call_and_note(inputs, *args, **kwargs):
            outputs = call(inputs, *args, **kwargs)
            seen.append((layer, inputs, outputs))
            return outputs

        return call_and_note

    for layer in layers:  # an instance attribute shadows the class's call; object.* keeps Keras's tracking out
        object.__setattr__(layer, "call", instrumented(layer, layer.call))
    try:
        graph = tf.function(function, autograph=False).get_concrete_function(*specs).graph
    finally:
        for layer in layers:
            object.__delattr__(layer, "call")

    trainable = {id(v.handle) for v in model.trainable_variables}
    learned = {internal.op.name for external, internal in graph.captures if id(external) in trainable}
    calls = []
    for layer, inputs, outputs in seen:
        shapes = [tuple(t.shape) for t in (inputs, outputs)]
        if not all(s.is_fully_defined() for s in (inputs.shape, outputs.shape)):
            raise ValueError(f"{layer.name}: shapes {shapes} are not fully defined; give specs with every size")
        forward, weight_gradient, input_gradient = RULES[type(layer)](layer, *shapes)
        calls.append(LayerCall(
            network=owners.get(id(layer), model.name),
            layer=layer.name,
            forward=forward,
            weight_gradient=weight_gradient if layer.trainable else None,
            input_gradient=input_gradient if _depends_on(inputs, learned) else None,
        ))
    return calls


def count(network, input_shape) -> int:
    """Forward FLOPs of a tensors-in, tensors-out network on one batch of `input_shape` (batch axis first)."""
    return sum(call.forward.flops for call in record(network, network, tf.TensorSpec(input_shape)))


def training_calls(vae, batch_size: int) -> list:
    """The LayerCalls of one training step's forward pass on a batch: the model's own call, as `fit` runs it."""
    return record(lambda x: vae(x, training=True).mean(), vae, tf.TensorSpec([batch_size, *vae.image_shape]))


def training_flops(calls: list) -> int:
    """Forward + weight gradients + input gradients of `calls`."""
    return sum(p.flops for call in calls for p in call.training_products())


def evaluation_calls(vae, batch_size: int, chunk_size: int) -> dict:
    """The LayerCalls of an importance-sampling evaluation, by how often they run (see tfvae.evaluate):

        per_batch: the encoder on B images (loc and scale of q(z|x));
        per_chunk: the decoder on B · C samples, and, with a flow posterior, the posterior's sample for them
                   (the encoder on the B images again, the flow on the B · C samples); with a learned prior,
                   its log density at them ([z·z, z, 1] (B·C, 2D + 1) times the mixture's quadratic form
                   (2D + 1, K), `tfvae.mixture.Mixture.quadratic_form`);
        once:      the prior's mixture, computed once per evaluation (the VampPrior: the encoder on its
                   pseudo-inputs; a Gaussian or MoG prior: nothing).
    """
    images = tf.TensorSpec([batch_size, *vae.image_shape])
    latent = vae.latent_dim
    per_chunk = record(vae.decode_logits, vae, tf.TensorSpec([batch_size * chunk_size, latent]))
    if vae.sampled_posterior:  # a flow, or two latent layers
        per_chunk += record(vae.encode_sample, vae, images, tf.TensorSpec([chunk_size, batch_size, latent]))
    if vae.prior.learned:
        density = Product(MATMUL, (batch_size * chunk_size, 2 * latent + 1, vae.prior.components))
        per_chunk.append(LayerCall("prior", "mixture_density", density, None, None))
    return {
        "per_batch": record(vae.encode_params, vae, images),
        "per_chunk": per_chunk,
        "once": record(lambda: vae.prior_mixture()[1], vae) if vae.prior.learned else [],
    }


def _owners(model) -> dict:
    """id(layer) -> the name of the model's direct part that holds it (encoder, decoder, flow, prior, ...)."""
    owners = {}
    for part in model._flatten_layers(include_self=False, recursive=False):
        for layer in [part, *part.submodules]:
            owners.setdefault(id(layer), part.name)
    return owners


def _depends_on(tensor, placeholders: set) -> bool:
    """Whether any of `placeholders` (by op name) is an ancestor of `tensor` in its graph."""
    stack, visited = [tensor.op], set()
    while stack:
        op = stack.pop()
        if op.name in placeholders:
            return True
        if op.name in visited:
            continue
        visited.add(op.name)
        stack.extend(t.op for t in op.inputs)
    return False


def _lists(value):
    return [_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value

"""The layer catalogue: every layer type as data.

A layer type declares its arguments (PyTorch's constructor: names, positional order, defaults), and for each
framework the parameters it owns: name, shape in that framework's layout, default initialisation (what the
framework itself does, quirks included) and the layer's real fans. Real fans count the inputs summed into one
output and the outputs one input feeds, per group and per gate or projection; the framework defaults read fans
off the weight's shape instead, which is wrong for grouped, depthwise and transposed convolutions and for fused
gate/projection matrices. docs/models.md lists every difference.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from service.engine.bundle import INTEGER_DTYPE, RowFill
from service.engine.errors import InitError
from service.engine.recipes.layer_args import Arg

Framework = Literal["torch", "keras"]
FRAMEWORKS: tuple[Framework, ...] = ("torch", "keras")
Role = Literal["weight", "bias", "buffer"]
Args = Mapping[str, Any]


@dataclass(frozen=True)
class Init:
    """A default initialisation: a scheme and its parameters; `fan_in` only where the framework's own fan is not
    the one read off the shape (PyTorch's biases use their weight's)."""

    scheme: str
    params: Mapping[str, Any] = field(default_factory=dict)
    fan_in: int | None = None
    fill_rows: tuple[RowFill, ...] = ()
    # Keras 3.15 on: the (input_axes, output_axes) an EinsumDense kernel's variance-scaling initializer reads its
    # fans from (keras-team/keras#22789); earlier Keras reads them off the shape.
    keras_axes: tuple[tuple[int, ...], tuple[int, ...]] | None = None


@dataclass(frozen=True)
class Weight:
    """One parameter or buffer of a layer in one framework."""

    key: str  # framework-neutral: weight, bias, weight_ih, running_mean, query.weight, ...
    name: str  # inside the layer, in the framework's naming: weight_ih_l1, lstm_cell/kernel, out_proj.weight
    role: Role
    shape: tuple[int, ...]
    default: Init
    fans: tuple[int, int] | None = None  # real (fan_in, fan_out); None for scales, shifts and statistics
    dtype: str | None = None  # None: the model's dtype
    unit: int = 0  # Keras: which of the separate Keras layers it belongs to (a stacked RNN is one per layer)


Builder = Callable[[Args], list[Weight]]
Child = tuple[str, str, dict[str, Any]]  # (name, layer type, arguments)
Step = tuple[str, Init]  # one initialisation PyTorch's constructor applies: (parameter name, what it draws)


@dataclass(frozen=True)
class StackPart:
    """A module of a stack (torch's TransformerEncoder/Decoder/Transformer): a layer built at `name`, or with
    `copies`, built once and deep-copied that many times as `name.0`, `name.1`, ... `arg` names it in errors."""

    name: str
    layer: Any
    copies: int | None
    arg: str


@dataclass(frozen=True)
class LayerType:
    name: str
    args: tuple[Arg, ...] = ()
    groups: tuple[str, ...] = ()  # rule targets besides the name: conv, norm, recurrent, ...
    torch: Builder | None = None
    keras: Builder | None = None
    keras_stem: str = ""  # Keras 3 auto-name: the snake_case class name
    check: Callable[[Args], None] | None = None
    children: Callable[[Args], list[Child]] | None = None  # composite layers: named sub-layers
    parameterless: bool = False  # any arguments accepted: they change no parameter
    # The initialisations PyTorch's constructor applies, in its order, where they are not simply each parameter's
    # default in the builder's (state-dict) order: a parameter drawn twice keeps its last draw.
    torch_steps: Callable[[Args], list[Step]] | None = None
    stack: Callable[[Args], list[StackPart]] | None = None  # torch's stacks of deep-copied layers
    # Keras: the wrapper each Keras layer of it is built in (Bidirectional), by its auto-name stem, if any
    keras_wrapper: Callable[[Args], str | None] | None = None
    redraw_matrices: bool = False  # nn.Transformer: xavier_uniform_ on every parameter of >= 2 dims when built


TORCH_DEFAULT = Init("torch_default")
ZEROS = Init("zeros")
ONES = Init("ones")
GLOROT_UNIFORM = Init("glorot_uniform")
ORTHOGONAL = Init("orthogonal")
KERAS_EMBEDDING = Init("random_uniform", {"minval": -0.05, "maxval": 0.05})


def _weight(shape: tuple[int, ...], default: Init, fans: tuple[int, int] | None, key: str = "weight") -> Weight:
    return Weight(key, key, "weight", shape, default, fans)


def _bias(shape: tuple[int, ...], default: Init, fans: tuple[int, int] | None, key: str = "bias") -> Weight:
    return Weight(key, key, "bias", shape, default, fans)


def _refuse(field_name: str, message: str) -> Builder:
    def build(args: Args) -> list[Weight]:
        raise InitError(field_name, message)

    return build


def _no_keras(what: str) -> Builder:
    return _refuse("type", f"Keras has no {what}: this layer type is PyTorch's")


# ---- linear and convolutions -------------------------------------------------------------------------------


def _linear_torch(a: Args) -> list[Weight]:
    fans = (a["in_features"], a["out_features"])
    if not all(fans):
        return _empty_linear_torch(a)
    weights = [_weight((a["out_features"], a["in_features"]), TORCH_DEFAULT, fans)]
    if a["bias"]:
        weights.append(_bias((a["out_features"],), Init("torch_default", fan_in=a["in_features"]), fans))
    return weights


def _empty_linear_torch(a: Args) -> list[Weight]:
    """nn.Linear with a size 0, as torch 2.13's reset_parameters does it: kaiming_uniform_(weight, a=sqrt(5)) on the
    empty weight (a no-op, with its warning), then uniform_(bias, -bound, bound), bound = 1/sqrt(fan_in) if
    fan_in > 0 else 0 (the integer 0: +0.0 bounds). The bias is drawn even when every value is 0 (torch-2.13's
    stream moves on). Spelled with the torch.* schemes, which take empty tensors as torch does."""
    fan_in, out = a["in_features"], a["out_features"]
    fans = (fan_in, out)
    weights = [_weight((out, fan_in), Init("torch.kaiming_uniform", {"a": math.sqrt(5)}), fans)]
    if a["bias"]:
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        weights.append(_bias((out,), Init("torch.uniform", {"a": -bound if bound else 0.0, "b": bound}), fans))
    return weights


def _linear_keras(a: Args) -> list[Weight]:
    fans = (a["in_features"], a["out_features"])
    if not fans[1]:
        raise InitError("out_features", "out_features must be >= 1 for Keras's Dense (its units), got 0")
    # An input of 0 features builds an empty kernel (Keras 3.15.1's Dense.build); keras.glorot_uniform takes it.
    kernel = GLOROT_UNIFORM if fans[0] else Init("keras.glorot_uniform")
    weights = [Weight("weight", "kernel", "weight", (a["in_features"], a["out_features"]), kernel, fans)]
    if a["bias"]:
        weights.append(_bias((a["out_features"],), ZEROS, fans))
    return weights


def _kernel(a: Args, rank: int) -> tuple[int, ...]:
    kernel = a["kernel_size"]
    if len(kernel) == 1:
        return kernel * rank
    if len(kernel) != rank:
        # torch 2.13 takes any number and builds a weight of that many kernel dims, which its forward refuses
        raise InitError(
            "kernel_size",
            f"kernel_size must be one integer or {rank} of them, got {list(kernel)} (PyTorch would build a "
            f"{2 + len(kernel)}-D weight that its {rank}-D convolution cannot run)",
        )
    return tuple(kernel)


def _conv_fans(a: Args, kernel: tuple[int, ...]) -> tuple[int, int]:
    # Per group: one output sums in/groups channels over the kernel; one input feeds out/groups channels.
    area = math.prod(kernel)
    return a["in_channels"] // a["groups"] * area, a["out_channels"] // a["groups"] * area


def _torch_rule(field_name: str, rule: str) -> InitError:
    """A layer argument PyTorch's constructor refuses: its own words, marked as its rule."""
    return InitError(field_name, f"{rule} (PyTorch's rule)")


_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_PADDING_STRINGS = ("same", "valid")


def _conv_check(transposed: bool) -> Callable[[Args], None]:
    def check(a: Args) -> None:
        for side in ("in_channels", "out_channels"):
            if a[side] % a["groups"]:
                raise InitError("groups", f"{side} must be divisible by groups ({a[side]} % {a['groups']} != 0)")
        mode, padding = a["padding_mode"], a["padding"]
        if transposed and mode != "zeros":
            raise _torch_rule("padding_mode", f"only 'zeros' padding mode is supported for ConvTranspose, got {mode!r}")
        if mode not in _PADDING_MODES:
            raise _torch_rule("padding_mode", f"padding_mode must be one of {list(_PADDING_MODES)}, got {mode!r}")
        if isinstance(padding, str):
            if transposed:  # torch keeps the string as a tuple of its letters: a module that cannot run
                raise InitError("padding", f"a transposed convolution's padding is integers, got {padding!r}")
            if padding not in _PADDING_STRINGS:
                raise _torch_rule(
                    "padding", f"invalid padding string {padding!r}, should be one of {list(_PADDING_STRINGS)}"
                )
            stride = a["stride"] if isinstance(a["stride"], list | tuple) else [a["stride"]]
            if padding == "same" and any(s != 1 for s in stride):
                raise _torch_rule("padding", "padding='same' is not supported for strided convolutions")

    return check


def _conv_torch(rank: int, transposed: bool) -> Builder:
    def build(a: Args) -> list[Weight]:
        kernel = _kernel(a, rank)
        c_in, c_out, groups = a["in_channels"], a["out_channels"], a["groups"]
        shape = (c_in, c_out // groups, *kernel) if transposed else (c_out, c_in // groups, *kernel)
        fans = _conv_fans(a, kernel)
        weights = [_weight(shape, TORCH_DEFAULT, fans)]
        if a["bias"]:
            # torch: bound 1/sqrt(fan_in) with fan_in read off the weight (shape[1] * kernel area), transposed too
            weights.append(_bias((c_out,), Init("torch_default", fan_in=shape[1] * math.prod(kernel)), fans))
        return weights

    return build


def _conv_keras(rank: int, transposed: bool) -> Builder:
    def build(a: Args) -> list[Weight]:
        kernel = _kernel(a, rank)
        c_in, c_out, groups = a["in_channels"], a["out_channels"], a["groups"]
        if transposed and groups != 1:
            raise InitError("groups", f"Keras's Conv{rank}DTranspose has no groups; got groups={groups}")
        shape = (*kernel, c_out, c_in) if transposed else (*kernel, c_in // groups, c_out)
        fans = _conv_fans(a, kernel)
        weights = [Weight("weight", "kernel", "weight", shape, GLOROT_UNIFORM, fans)]
        if a["bias"]:
            weights.append(_bias((c_out,), ZEROS, fans))
        return weights

    return build


_IGNORED_CONV = (Arg("stride", "ignored", 1), Arg("padding", "ignored", 0))


def _conv_args(transposed: bool) -> tuple[Arg, ...]:
    head = (Arg("in_channels", "count"), Arg("out_channels", "count"), Arg("kernel_size", "size"), *_IGNORED_CONV)
    if transposed:
        tail = (
            Arg("output_padding", "ignored", 0),
            Arg("groups", "count", 1),
            Arg("bias", "flag", True),
            Arg("dilation", "ignored", 1),
        )
    else:
        tail = (Arg("dilation", "ignored", 1), Arg("groups", "count", 1), Arg("bias", "flag", True))
    return (*head, *tail, Arg("padding_mode", "ignored", "zeros"))


# ---- Keras's depthwise and separable convolutions ----------------------------------------------------------


def _depthwise_keras(rank: int, separable: bool) -> Builder:
    """DepthwiseConv{rank}D: `kernel [*k, in, m]`; SeparableConv{rank}D: `depthwise_kernel` so, then
    `pointwise_kernel [1.., in·m, out]`; both glorot_uniform, bias zeros."""

    def build(a: Args) -> list[Weight]:
        kernel = _kernel(a, rank)
        c_in, multiplier = a["in_channels"], a["depth_multiplier"]
        area = math.prod(kernel)
        depthwise_fans = (area, multiplier * area)  # each input channel feeds its m outputs only
        key = "depthwise_kernel" if separable else "kernel"
        weights = [Weight("weight", key, "weight", (*kernel, c_in, multiplier), GLOROT_UNIFORM, depthwise_fans)]
        c_out = a["out_channels"] if separable else c_in * multiplier
        if separable:
            shape = (*(1,) * rank, c_in * multiplier, c_out)
            fans = (c_in * multiplier, c_out)
            weights.append(Weight("pointwise_weight", "pointwise_kernel", "weight", shape, GLOROT_UNIFORM, fans))
        if a["bias"]:
            weights.append(_bias((c_out,), ZEROS, weights[-1].fans))
        return weights

    return build


def _depthwise_args(separable: bool) -> tuple[Arg, ...]:
    """Keras's order with PyTorch's names, and the input channels Keras reads off its input."""
    head = (Arg("in_channels", "count"), *((Arg("out_channels", "count"),) if separable else ()))
    head = (*head, Arg("kernel_size", "size"), *_IGNORED_CONV)
    multiplier = Arg("depth_multiplier", "count", 1)
    middle = (Arg("dilation", "ignored", 1), multiplier) if separable else (multiplier, Arg("dilation", "ignored", 1))
    return (*head, *middle, Arg("bias", "flag", True))


# ---- Keras's EinsumDense -----------------------------------------------------------------------------------

_EINSUM = (
    (re.compile(r"([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)"), False),
    (re.compile(r"0([a-zA-Z]+),([a-zA-Z]+)->0([a-zA-Z]+)"), True),
    (re.compile(r"([a-zA-Z]{2,})0,([a-zA-Z]+)->([a-zA-Z]+)0"), False),
)


def _einsum_shapes(
    a: Args,
) -> tuple[tuple[int, ...], tuple[int, ...] | None, tuple[int, int], tuple[tuple[int, ...], tuple[int, ...]]]:
    """Keras 3's `_analyze_einsum_string`: the kernel's and the bias's shapes from the equation, the input shape
    (here without the batch axis) and the output shape; the kernel's real fans, and its input and output axes (a
    weight dimension in the output spec is an output axis, any other an input axis)."""
    equation = re.sub(r"\.\.\.", "0", a["equation"])
    found = next(((m, left) for pattern, left in _EINSUM if (m := pattern.fullmatch(equation))), None)
    if found is None:
        raise InitError(
            "equation",
            f"invalid einsum equation {a['equation']!r}: Keras takes [X],[Y]->[Z], ...[X],[Y]->...[Z] "
            "or [X]...,[Y]->[Z]...",
        )
    match, left_elided = found
    input_spec, weight_spec, output_spec = match.groups()
    input_shape = [None, *a["input_shape"]]
    output_shape = [None, *a["output_shape"]]
    elided = len(input_shape) - len(input_spec)
    if elided < 0 or (elided and "0" not in equation):
        raise InitError("input_shape", f"input_shape (with the batch axis) must have {len(input_spec)} dims")
    if elided > 0 and left_elided:
        output_shape[1:1] = reversed(input_shape[1:elided])
    elif elided > 0:
        output_shape += input_shape[len(input_shape) - elided :]
    offset = elided if left_elided else 0
    input_at = {dim: i + offset - (len(input_shape) if left_elided else 0) for i, dim in enumerate(input_spec)}
    output_at = {dim: i + offset for i, dim in enumerate(output_spec)}
    if len(output_shape) < len(output_spec) + offset or len(output_shape) > len(output_spec) + max(elided, 0):
        dims = len(output_spec) + max(elided, 0) - 1
        raise InitError("output_shape", f"output_shape (without the batch axis) must have {dims} dims for {equation!r}")
    for dim in output_spec:
        if dim not in input_spec and dim not in weight_spec:
            raise InitError("equation", f"output dimension {dim!r} is in neither the input nor the weight spec")
    kernel, fans = [], [1, 1]
    axes: tuple[list[int], list[int]] = ([], [])
    for index, dim in enumerate(weight_spec):
        side = 1 if dim in output_at else 0
        axes[side].append(index)
        if dim not in output_at and dim not in input_at:
            raise InitError("equation", f"weight dimension {dim!r} is in neither the input nor the output spec")
        size = output_shape[output_at[dim]] if side else input_shape[input_at[dim]]
        if size is None:
            where = "output_shape" if side else "input_shape"
            raise InitError(where, f"the kernel's dimension {dim!r} needs a size in {where}")
        kernel.append(size)
        fans[side] *= size
    bias = None
    if a["bias_axes"] is not None:
        missing = [char for char in a["bias_axes"] if char not in output_spec]
        if missing or not a["bias_axes"]:
            raise InitError(
                "bias_axes", f"bias axes must be in the output spec {output_spec!r}, got {a['bias_axes']!r}"
            )
        sizes = {char: output_shape[i + offset] for i, char in enumerate(output_spec)}
        first = min(output_spec.find(char) for char in a["bias_axes"])
        bias = [sizes[char] if char in a["bias_axes"] else 1 for char in output_spec[first:]]
        bias += [] if left_elided else [1] * max(elided, 0)
        if None in bias:
            raise InitError("output_shape", "the bias's axes need sizes in output_shape")
    kernel_axes = (tuple(axes[0]), tuple(axes[1]))
    return tuple(kernel), None if bias is None else tuple(bias), (fans[0], fans[1]), kernel_axes


def _einsum_keras(a: Args) -> list[Weight]:
    kernel, bias, fans, axes = _einsum_shapes(a)
    # Keras 3.15's EinsumDense.build hands its variance-scaling kernel initializer these axes (3.14: none).
    weights = [Weight("weight", "kernel", "weight", kernel, Init("glorot_uniform", keras_axes=axes), fans)]
    if bias is not None:
        weights.append(_bias(bias, ZEROS, fans))
    return weights


# ---- embedding ---------------------------------------------------------------------------------------------


def _padding_row(a: Args) -> tuple[RowFill, ...]:
    index = a["padding_idx"]
    if index is None:
        return ()
    if not -a["num_embeddings"] <= index < a["num_embeddings"]:
        raise InitError("padding_idx", "Padding_idx must be within num_embeddings")
    row = index % a["num_embeddings"]
    return (RowFill(row, row + 1, 0.0),)


def _embedding_check(a: Args) -> None:
    _padding_row(a)  # the range check, up front for both frameworks


def _embedding_torch(a: Args) -> list[Weight]:
    # Real fans: the linear map of a one-hot vector, num_embeddings -> embedding_dim.
    fans = (a["num_embeddings"], a["embedding_dim"])
    init = Init("normal", {"mean": 0.0, "std": 1.0}, fill_rows=_padding_row(a))
    return [_weight((a["num_embeddings"], a["embedding_dim"]), init, fans)]


def _embedding_keras(a: Args) -> list[Weight]:
    if a["padding_idx"] is not None:
        raise InitError(
            "padding_idx",
            "padding_idx is PyTorch's (a zero row): Keras's Embedding has none (mask_zero masks the index 0 in the "
            "input, it zeroes no row); drop padding_idx for Keras",
        )
    fans = (a["num_embeddings"], a["embedding_dim"])
    shape = (a["num_embeddings"], a["embedding_dim"])
    return [Weight("weight", "embeddings", "weight", shape, KERAS_EMBEDDING, fans)]


# ---- normalisation -----------------------------------------------------------------------------------------


def _affine(shape: tuple[int, ...], framework: str, scale: bool, shift: bool) -> list[Weight]:
    names = ("weight", "bias") if framework == "torch" else ("gamma", "beta")
    weights = []
    if scale:
        weights.append(Weight("weight", names[0], "weight", shape, ONES))
    if shift:
        weights.append(Weight("bias", names[1], "bias", shape, ZEROS))
    return weights


def _layernorm(framework: str) -> Builder:
    def build(a: Args) -> list[Weight]:
        affine = a["elementwise_affine"]
        return _affine(a["normalized_shape"], framework, affine, affine and a["bias"])

    return build


def _batchnorm_torch(a: Args) -> list[Weight]:
    shape = (a["num_features"],)
    weights = _affine(shape, "torch", a["affine"], a["affine"] and a["bias"])
    if a["track_running_stats"]:
        weights += [
            Weight("running_mean", "running_mean", "buffer", shape, ZEROS),
            Weight("running_var", "running_var", "buffer", shape, ONES),
            Weight("num_batches_tracked", "num_batches_tracked", "buffer", (), ZEROS, dtype=INTEGER_DTYPE),
        ]
    return weights


def _batchnorm_keras(a: Args) -> list[Weight]:
    # Keras always keeps the moving statistics (track_running_stats has no Keras counterpart).
    shape = (a["num_features"],)
    return [
        *_affine(shape, "keras", a["affine"], a["affine"] and a["bias"]),
        Weight("running_mean", "moving_mean", "buffer", shape, ZEROS),
        Weight("running_var", "moving_variance", "buffer", shape, ONES),
    ]


def _groupnorm(framework: str) -> Builder:
    def build(a: Args) -> list[Weight]:
        return _affine((a["num_channels"],), framework, a["affine"], a["affine"] and a["bias"])

    return build


def _groupnorm_check(a: Args) -> None:
    if a["num_channels"] % a["num_groups"]:
        raise InitError("num_groups", "num_channels must be divisible by num_groups")


def _rmsnorm(framework: str) -> Builder:
    def build(a: Args) -> list[Weight]:
        if not a["elementwise_affine"]:
            return []
        return [Weight("weight", "weight" if framework == "torch" else "scale", "weight", a["normalized_shape"], ONES)]

    return build


_INSTANCENORM_ARGS = (
    Arg("num_features", "count"),
    Arg("eps", "ignored", 1e-5),
    Arg("momentum", "ignored", 0.1),
    Arg("affine", "flag", False),
    Arg("track_running_stats", "flag", False),
    Arg("bias", "flag", True),
)


# ---- recurrent ---------------------------------------------------------------------------------------------

_GATES = {"rnn": 1, "gru": 3, "lstm": 4}
_KERAS_RNN = {"rnn": ("simple_rnn", "simple_rnn_cell"), "gru": ("gru", "gru_cell"), "lstm": ("lstm", "lstm_cell")}


def _recurrent_init(hidden: int) -> Init:
    bound = 1.0 / math.sqrt(hidden)  # torch: every parameter U(-stdv, stdv), stdv = 1 / sqrt(hidden_size)
    return Init("uniform", {"a": -bound, "b": bound})


def _rnn_torch(kind: str) -> Builder:
    gates = _GATES[kind]

    def build(a: Args) -> list[Weight]:
        if not a.get("reset_after", True):
            raise InitError(
                "reset_after", "PyTorch's GRU applies the reset gate after the matmul (reset_after=True) only"
            )
        hidden, projection = a["hidden_size"], a.get("proj_size", 0)
        output = projection or hidden  # LSTM proj_size: the hidden state is projected to proj_size
        init = _recurrent_init(hidden)
        directions = ("", "_reverse") if a["bidirectional"] else ("",)
        weights = []
        for layer in range(a["num_layers"]):
            fan_ih = a["input_size"] if layer == 0 else output * len(directions)
            for suffix in directions:
                tag = f"_l{layer}{suffix}"
                # Real fans per gate: each gate is its own [hidden, fan] matrix, stacked.
                weights += [
                    Weight("weight_ih", f"weight_ih{tag}", "weight", (gates * hidden, fan_ih), init, (fan_ih, hidden)),
                    Weight("weight_hh", f"weight_hh{tag}", "weight", (gates * hidden, output), init, (output, hidden)),
                ]
                if a["bias"]:
                    weights += [
                        Weight("bias_ih", f"bias_ih{tag}", "bias", (gates * hidden,), init, (fan_ih, hidden)),
                        Weight("bias_hh", f"bias_hh{tag}", "bias", (gates * hidden,), init, (output, hidden)),
                    ]
                if projection:
                    shape = (projection, hidden)
                    weights.append(Weight("weight_hr", f"weight_hr{tag}", "weight", shape, init, (hidden, projection)))
        return weights

    return build


def _cell_torch(kind: str) -> Builder:
    """RNNCell, LSTMCell, GRUCell: one layer, one direction, its parameters without the _l0 suffix."""
    layer = _rnn_torch(kind)

    def build(a: Args) -> list[Weight]:
        weights = layer({**a, "num_layers": 1, "bidirectional": False})
        return [replace(weight, name=weight.key) for weight in weights]

    return build


def _cell_args(kind: str) -> tuple[Arg, ...]:
    head = (Arg("input_size", "count"), Arg("hidden_size", "count"), Arg("bias", "flag", True))
    return (*head, Arg("nonlinearity", "ignored", "tanh")) if kind == "rnn" else head


def _rnn_keras(kind: str) -> Builder:
    gates = _GATES[kind]
    cell = _KERAS_RNN[kind][1]

    def build(a: Args) -> list[Weight]:
        if a.get("proj_size", 0):
            raise InitError("proj_size", "Keras's LSTM has no projection (proj_size is PyTorch's)")
        hidden = a["hidden_size"]
        # Bidirectional(layer) builds a forward and a backward copy of the wrapped layer, named after it: the
        # expander puts the wrapped layer's Keras name where the {} is.
        directions = ("forward_{}/", "backward_{}/") if a["bidirectional"] else ("",)
        weights = []
        for unit in range(a["num_layers"]):  # Keras stacks separate layers: lstm, lstm_1, ...
            fan_in = a["input_size"] if unit == 0 else hidden * len(directions)
            width = gates * hidden
            for direction in directions:
                weights += [
                    Weight(
                        "weight_ih",
                        f"{direction}{cell}/kernel",
                        "weight",
                        (fan_in, width),
                        GLOROT_UNIFORM,
                        (fan_in, hidden),
                        unit=unit,
                    ),
                    Weight(
                        "weight_hh",
                        f"{direction}{cell}/recurrent_kernel",
                        "weight",
                        (hidden, width),
                        ORTHOGONAL,
                        (hidden, hidden),
                        unit=unit,
                    ),
                ]
                if a["bias"]:
                    # GRU: reset_after=True (Keras 3's default) keeps separate input and recurrent biases, shape
                    # (2, 3h); reset_after=False one, (3h,). LSTM: unit_forget_bias=True (Keras's default) sets the
                    # forget gate's slice [h, 2h) to 1.
                    shape = (2, width) if kind == "gru" and a["reset_after"] else (width,)
                    fills = (RowFill(hidden, 2 * hidden, 1.0),) if kind == "lstm" and a["unit_forget_bias"] else ()
                    default = Init("zeros", fill_rows=fills)
                    name = f"{direction}{cell}/bias"
                    weights.append(Weight("bias", name, "bias", shape, default, (fan_in, hidden), unit=unit))
        return weights

    return build


def _keras_rnn_wrapper(a: Args) -> str | None:
    return "bidirectional" if a["bidirectional"] else None


def _rnn_args(kind: str) -> tuple[Arg, ...]:
    head = (Arg("input_size", "count"), Arg("hidden_size", "count"), Arg("num_layers", "count", 1))
    middle = (Arg("nonlinearity", "ignored", "tanh"),) if kind == "rnn" else ()
    tail = (
        Arg("bias", "flag", True),
        Arg("batch_first", "ignored", False),
        Arg("dropout", "ignored", 0.0),
        Arg("bidirectional", "flag", False),
    )
    extra = (Arg("proj_size", "index", 0), Arg("unit_forget_bias", "flag", True)) if kind == "lstm" else ()
    if kind == "gru":
        extra = (Arg("reset_after", "flag", True),)  # Keras's; torch's GRU is reset_after=True
    return (*head, *middle, *tail, *extra)


_NONLINEARITIES = ("tanh", "relu")


def _dropout_check(a: Args) -> None:
    dropout = a["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout <= 1:
        raise _torch_rule(
            "dropout",
            "dropout should be a number in range [0, 1] representing the probability of an element being zeroed, "
            f"got {dropout!r}",
        )


def _nonlinearity_check(a: Args) -> None:
    if a.get("nonlinearity", "tanh") not in _NONLINEARITIES:
        raise _torch_rule("nonlinearity", f"unknown nonlinearity {a['nonlinearity']!r}; select from 'tanh' or 'relu'")


def _rnn_check(a: Args) -> None:
    _nonlinearity_check(a)
    _dropout_check(a)
    projection = a.get("proj_size", 0)
    if projection is None or projection < 0:
        raise _torch_rule("proj_size", f"proj_size should be a positive integer or zero, got {projection!r}")
    if projection >= a["hidden_size"]:
        raise _torch_rule(
            "proj_size", f"proj_size has to be smaller than hidden_size ({projection} >= {a['hidden_size']})"
        )
    if a["num_layers"] > 64:
        raise InitError("num_layers", f"at most 64 layers per recurrent layer, got {a['num_layers']}")


# ---- bilinear and embedding bags ---------------------------------------------------------------------------


def _bilinear_torch(a: Args) -> list[Weight]:
    in1, in2, out = a["in1_features"], a["in2_features"], a["out_features"]
    bound = 1 / math.sqrt(in1)  # torch: weight and bias U(-bound, bound), bound = 1 / sqrt(weight.size(1))
    init = Init("uniform", {"a": -bound, "b": bound})
    fans = (in1 * in2, out)  # one output sums in1 * in2 products
    weights = [_weight((out, in1, in2), init, fans)]
    if a["bias"]:
        weights.append(_bias((out,), init, fans))
    return weights


def _embedding_bag_check(a: Args) -> None:
    _padding_row(a)
    if a["_weight"] is not None:
        raise InitError("_weight", "_weight (a given initial tensor) is not supported: the service draws the weight")


_EMBEDDING_BAG_ARGS = (
    Arg("num_embeddings", "count"),
    Arg("embedding_dim", "count"),
    Arg("max_norm", "ignored", None),
    Arg("norm_type", "ignored", 2.0),
    Arg("scale_grad_by_freq", "ignored", False),
    Arg("mode", "ignored", "mean"),
    Arg("sparse", "ignored", False),
    Arg("_weight", "ignored", None),
    Arg("include_last_offset", "ignored", False),
    Arg("padding_idx", "index", None),
)


# ---- PReLU -------------------------------------------------------------------------------------------------


def _prelu_torch(a: Args) -> list[Weight]:
    for keras_only in ("input_shape", "shared_axes"):
        if a[keras_only] is not None:
            raise InitError(keras_only, f"{keras_only} is Keras's (PyTorch's PReLU has num_parameters)")
    init = 0.25 if a["init"] is None else a["init"]  # torch's default
    return [_weight((a["num_parameters"],), Init("constant", {"val": init}), None)]


def _prelu_keras(a: Args) -> list[Weight]:
    """Keras's alpha has the input's shape (without the batch axis), 1 along each of shared_axes (counted from
    1, the first axis after the batch); it starts at 0 (alpha_initializer="zeros"), or at `init` if given."""
    if a["num_parameters"] != 1:
        raise InitError("num_parameters", "Keras's PReLU has no num_parameters: its alpha's shape is input_shape's")
    if a["input_shape"] is None:
        raise InitError("input_shape", "Keras's PReLU takes its alpha's shape from the input: give input_shape")
    shape = list(a["input_shape"])
    for axis in a["shared_axes"] or ():
        if axis > len(shape):
            raise InitError("shared_axes", f"shared axis {axis} is beyond input_shape {list(a['input_shape'])}")
        shape[axis - 1] = 1
    init = ZEROS if a["init"] is None else Init("constant", {"val": a["init"]})
    return [Weight("weight", "alpha", "weight", tuple(shape), init)]


# ---- attention ---------------------------------------------------------------------------------------------


def _attention_check(a: Args) -> None:
    dim, heads = a["embed_dim"], a["num_heads"]
    if dim % heads:
        raise InitError("num_heads", "embed_dim must be divisible by num_heads")
    for side in ("kdim", "vdim"):
        if a[side] is not None and a[side] < 1:
            raise InitError(side, f"{side} must be an integer >= 1 or null (= embed_dim), got {a[side]}")


def _attention_dims(a: Args) -> tuple[int, int, int]:
    dim = a["embed_dim"]
    return dim, a["kdim"] or dim, a["vdim"] or dim


def _attention_torch(a: Args) -> list[Weight]:
    dim, kdim, vdim = _attention_dims(a)
    xavier = Init("xavier_uniform")
    if kdim == vdim == dim:
        # q, k and v are three [dim, dim] maps fused in in_proj_weight: real fans per projection
        weights = [Weight("in_proj_weight", "in_proj_weight", "weight", (3 * dim, dim), xavier, (dim, dim))]
    else:  # torch keeps them apart when a key or value width differs from embed_dim
        weights = [
            Weight(f"{part}_proj_weight", f"{part}_proj_weight", "weight", (dim, width), xavier, (width, dim))
            for part, width in (("q", dim), ("k", kdim), ("v", vdim))
        ]
    fans = (dim, dim)
    if a["bias"]:
        weights.append(Weight("in_proj_bias", "in_proj_bias", "bias", (3 * dim,), ZEROS, fans))
    if a["add_bias_kv"]:
        # one learned key and value appended to the sequence: xavier_normal_ reads fans (dim, dim) off [1, 1, dim]
        weights += [Weight(key, key, "bias", (1, 1, dim), Init("xavier_normal"), None) for key in ("bias_k", "bias_v")]
    # out_proj is an nn.Linear (kaiming_uniform(a=sqrt(5))); MultiheadAttention then zeroes its bias.
    weights.append(Weight("out_proj.weight", "out_proj.weight", "weight", (dim, dim), TORCH_DEFAULT, fans))
    if a["bias"]:
        weights.append(Weight("out_proj.bias", "out_proj.bias", "bias", (dim,), ZEROS, fans))
    return weights


def _attention_torch_steps(a: Args) -> list[Step]:
    # MultiheadAttention.__init__ first builds out_proj, an nn.Linear, which draws its weight and bias; then
    # _reset_parameters draws the projections (xavier_uniform), zeroes both biases, so out_proj.bias's draw is
    # overwritten, and draws bias_k and bias_v (xavier_normal).
    dim = a["embed_dim"]
    out_proj = _linear_torch({"in_features": dim, "out_features": dim, "bias": a["bias"]})
    weights = _attention_torch(a)
    defaults = {weight.name: weight.default for weight in weights}
    projections = [w.name for w in weights if w.key.endswith("proj_weight") and not w.name.startswith("out_proj")]
    biases = ("in_proj_bias", "out_proj.bias") if a["bias"] else ()
    kv = ("bias_k", "bias_v") if a["add_bias_kv"] else ()
    resets = (*projections, *biases, *kv)
    return [*((f"out_proj.{weight.name}", weight.default) for weight in out_proj), *((n, defaults[n]) for n in resets)]


def _attention_keras_refusals(a: Args) -> list[Weight]:
    dim, kdim, vdim = _attention_dims(a)
    for side, width in (("kdim", kdim), ("vdim", vdim)):
        if width != dim:
            raise InitError(side, f"{side} other than embed_dim is not supported for Keras, got {width}")
    if a["add_bias_kv"]:
        raise InitError("add_bias_kv", "Keras's MultiHeadAttention has no add_bias_kv (it is PyTorch's)")
    return _attention_keras(a)


def _attention_keras(a: Args) -> list[Weight]:
    dim, heads = a["embed_dim"], a["num_heads"]
    head_dim = dim // heads
    fans = (dim, dim)
    weights = []
    projection = Init("glorot_uniform", keras_axes=((0,), (1, 2)))  # "abc,cde->abde": c in, d and e out
    for part in ("query", "key", "value"):
        weights.append(Weight(f"{part}.weight", f"{part}/kernel", "weight", (dim, heads, head_dim), projection, fans))
        if a["bias"]:
            weights.append(Weight(f"{part}.bias", f"{part}/bias", "bias", (heads, head_dim), ZEROS, fans))
    shape = (heads, head_dim, dim)
    output = Init("glorot_uniform", keras_axes=((0, 1), (2,)))  # "abcd,cde->abe": c and d in, e out
    weights.append(Weight("attention_output.weight", "attention_output/kernel", "weight", shape, output, fans))
    if a["bias"]:
        weights.append(Weight("attention_output.bias", "attention_output/bias", "bias", (dim,), ZEROS, fans))
    return weights


_ATTENTION_ARGS = (
    Arg("embed_dim", "count"),
    Arg("num_heads", "count"),
    Arg("dropout", "ignored", 0.0),
    Arg("bias", "flag", True),
    Arg("add_bias_kv", "flag", False),
    Arg("add_zero_attn", "ignored", False),
    Arg("kdim", "index", None),
    Arg("vdim", "index", None),
    Arg("batch_first", "ignored", False),
)

# ---- composite layers --------------------------------------------------------------------------------------

_TRANSFORMER_ARGS = (
    Arg("d_model", "count"),
    Arg("nhead", "count"),
    Arg("dim_feedforward", "count", 2048),
    Arg("dropout", "ignored", 0.1),
    Arg("activation", "ignored", "relu"),
    Arg("layer_norm_eps", "ignored", 1e-5),
    Arg("batch_first", "ignored", False),
    Arg("norm_first", "ignored", False),
    Arg("bias", "flag", True),
)


def _transformer_children(cross_attention: bool) -> Callable[[Args], list[Child]]:
    def children(a: Args) -> list[Child]:
        dim, width, bias = a["d_model"], a["dim_feedforward"], a["bias"]
        attention = {"embed_dim": dim, "num_heads": a["nhead"], "bias": bias}
        norms = ("norm1", "norm2", "norm3") if cross_attention else ("norm1", "norm2")
        return [
            ("self_attn", "multihead_attention", attention),
            *([("multihead_attn", "multihead_attention", attention)] if cross_attention else []),
            ("linear1", "linear", {"in_features": dim, "out_features": width, "bias": bias}),
            ("linear2", "linear", {"in_features": width, "out_features": dim, "bias": bias}),
            *((norm, "layernorm", {"normalized_shape": dim, "bias": bias}) for norm in norms),
        ]

    return children


_ACTIVATIONS = ("relu", "gelu")


def _transformer_check(a: Args) -> None:
    if a["d_model"] % a["nhead"]:
        raise InitError("nhead", "embed_dim must be divisible by num_heads")
    # torch also takes a callable, which JSON cannot name; as a string only these two.
    if a["activation"] not in _ACTIVATIONS:
        raise _torch_rule("activation", f"activation should be relu/gelu, not {a['activation']!r}")


def _encoder_stack(kind: str) -> Callable[[Args], list[StackPart]]:
    def stack(a: Args) -> list[StackPart]:
        parts = [StackPart("layers", a[f"{kind}_layer"], a["num_layers"], f"{kind}_layer")]
        return parts + ([StackPart("norm", a["norm"], None, "norm")] if a["norm"] is not None else [])

    return stack


def _stack_args(kind: str) -> tuple[Arg, ...]:
    head = (Arg(f"{kind}_layer", "layer"), Arg("num_layers", "count"), Arg("norm", "layer", None))
    return (
        (*head, Arg("enable_nested_tensor", "ignored", True), Arg("mask_check", "ignored", True))
        if (kind == "encoder")
        else head
    )


def _stack_check(a: Args) -> None:
    if a["num_layers"] > 1024:
        raise InitError("num_layers", f"at most 1024 layers per stack, got {a['num_layers']}")


_TRANSFORMER_STACK_ARGS = (
    Arg("d_model", "count", 512),
    Arg("nhead", "count", 8),
    Arg("num_encoder_layers", "count", 6),
    Arg("num_decoder_layers", "count", 6),
    Arg("dim_feedforward", "count", 2048),
    Arg("dropout", "ignored", 0.1),
    Arg("activation", "ignored", "relu"),
    Arg("custom_encoder", "layer", None),
    Arg("custom_decoder", "layer", None),
    Arg("layer_norm_eps", "ignored", 1e-5),
    Arg("batch_first", "ignored", False),
    Arg("norm_first", "ignored", False),
    Arg("bias", "flag", True),
)


def _transformer_stack(a: Args) -> list[StackPart]:
    """nn.Transformer.__init__: an encoder layer, the encoder's norm, the encoder (its copies); the same for the
    decoder; custom_encoder / custom_decoder replace either."""
    layer = {key: a[key] for key in ("d_model", "nhead", "dim_feedforward", "dropout", "activation", "bias")}
    layer |= {"layer_norm_eps": a["layer_norm_eps"], "batch_first": a["batch_first"], "norm_first": a["norm_first"]}
    norm = {"type": "layernorm", "args": [a["d_model"], a["layer_norm_eps"]], "bias": a["bias"]}
    parts = []
    for kind in ("encoder", "decoder"):
        custom = a[f"custom_{kind}"]
        stack = {
            "type": f"transformer_{kind}",
            "args": [{"type": f"transformer_{kind}_layer", **layer}, a[f"num_{kind}_layers"], norm],
        }
        parts.append(StackPart(kind, stack if custom is None else custom, None, f"custom_{kind}"))
    return parts


def _transformer_stack_check(a: Args) -> None:
    _transformer_check(a)
    for kind in ("encoder", "decoder"):
        _stack_check({"num_layers": a[f"num_{kind}_layers"]})


# ---- the catalogue -----------------------------------------------------------------------------------------

PARAMETERLESS = (
    "identity",
    "relu",
    "relu6",
    "leaky_relu",
    "elu",
    "selu",
    "celu",
    "gelu",
    "silu",
    "mish",
    "tanh",
    "sigmoid",
    "hardtanh",
    "hardswish",
    "hardsigmoid",
    "softplus",
    "softmax",
    "log_softmax",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "alpha_dropout",
    "flatten",
    "unflatten",
    "maxpool1d",
    "maxpool2d",
    "maxpool3d",
    "avgpool1d",
    "avgpool2d",
    "avgpool3d",
    "adaptive_avgpool1d",
    "adaptive_avgpool2d",
    "adaptive_avgpool3d",
    "adaptive_maxpool1d",
    "adaptive_maxpool2d",
    "adaptive_maxpool3d",
    "upsample",
    "pixel_shuffle",
    "zero_pad2d",
)

_NORM_IGNORED = (Arg("eps", "ignored", 1e-5),)
_BN_ARGS = (
    Arg("num_features", "count"),
    *_NORM_IGNORED,
    Arg("momentum", "ignored", 0.1),
    Arg("affine", "flag", True),
    Arg("track_running_stats", "flag", True),
    Arg("bias", "flag", True),
)
_NO_KERAS_TRANSFORMER = "Keras has no transformer layer; compose multihead_attention, linear and layernorm"

LAYER_TYPES: tuple[LayerType, ...] = (
    LayerType(
        "linear",
        (Arg("in_features", "extent"), Arg("out_features", "extent"), Arg("bias", "flag", True)),
        ("linear",),
        _linear_torch,
        _linear_keras,
        "dense",
    ),
    *(
        LayerType(
            f"conv{rank}d",
            _conv_args(False),
            ("conv",),
            _conv_torch(rank, False),
            _conv_keras(rank, False),
            f"conv{rank}d",
            _conv_check(transposed=False),
        )
        for rank in (1, 2, 3)
    ),
    *(
        LayerType(
            f"conv_transpose{rank}d",
            _conv_args(True),
            ("conv", "conv_transpose"),
            _conv_torch(rank, True),
            _conv_keras(rank, True),
            f"conv{rank}d_transpose",
            _conv_check(transposed=True),
        )
        for rank in (1, 2, 3)
    ),
    LayerType(
        "embedding",
        (
            Arg("num_embeddings", "count"),
            Arg("embedding_dim", "count"),
            Arg("padding_idx", "index", None),
            Arg("max_norm", "ignored", None),
            Arg("norm_type", "ignored", 2.0),
            Arg("scale_grad_by_freq", "ignored", False),
            Arg("sparse", "ignored", False),
        ),
        ("embedding",),
        _embedding_torch,
        _embedding_keras,
        "embedding",
        _embedding_check,
    ),
    LayerType(
        "layernorm",
        (
            Arg("normalized_shape", "size"),
            *_NORM_IGNORED,
            Arg("elementwise_affine", "flag", True),
            Arg("bias", "flag", True),
        ),
        ("norm",),
        _layernorm("torch"),
        _layernorm("keras"),
        "layer_normalization",
    ),
    *(
        LayerType(
            f"batchnorm{rank}d",
            _BN_ARGS,
            ("norm", "batchnorm"),
            _batchnorm_torch,
            _batchnorm_keras,
            "batch_normalization",
        )
        for rank in (1, 2, 3)
    ),
    LayerType(
        "groupnorm",
        (
            Arg("num_groups", "count"),
            Arg("num_channels", "count"),
            *_NORM_IGNORED,
            Arg("affine", "flag", True),
            Arg("bias", "flag", True),
        ),
        ("norm",),
        _groupnorm("torch"),
        _groupnorm("keras"),
        "group_normalization",
        _groupnorm_check,
    ),
    *(
        LayerType(
            kind,
            _rnn_args(kind),
            ("recurrent",),
            _rnn_torch(kind),
            _rnn_keras(kind),
            _KERAS_RNN[kind][0],
            _rnn_check,
            keras_wrapper=_keras_rnn_wrapper,
        )
        for kind in ("rnn", "gru", "lstm")
    ),
    *(
        LayerType(
            f"{kind}_cell",
            _cell_args(kind),
            ("recurrent",),
            _cell_torch(kind),
            _no_keras(f"{kind}_cell"),
            check=_nonlinearity_check,
        )
        for kind in ("rnn", "gru", "lstm")
    ),
    LayerType(
        "multihead_attention",
        _ATTENTION_ARGS,
        ("attention",),
        _attention_torch,
        _attention_keras_refusals,
        "multi_head_attention",
        _attention_check,
        torch_steps=_attention_torch_steps,
    ),
    LayerType(
        "prelu",
        (
            Arg("num_parameters", "count", 1),
            Arg("init", "number", None),
            Arg("input_shape", "size", None),
            Arg("shared_axes", "size", None),
        ),
        ("activation",),
        _prelu_torch,
        _prelu_keras,
        "p_re_lu",
    ),
    *(
        LayerType(
            f"depthwise_conv{rank}d",
            _depthwise_args(False),
            ("conv",),
            keras=_depthwise_keras(rank, False),
            keras_stem=f"depthwise_conv{rank}d",
        )
        for rank in (1, 2)
    ),
    *(
        LayerType(
            f"separable_conv{rank}d",
            _depthwise_args(True),
            ("conv",),
            keras=_depthwise_keras(rank, True),
            keras_stem=f"separable_conv{rank}d",
        )
        for rank in (1, 2)
    ),
    LayerType(
        "einsum_dense",
        (
            Arg("equation", "text"),
            Arg("output_shape", "dims"),
            Arg("input_shape", "dims"),
            Arg("bias_axes", "text", None),
        ),
        ("linear",),
        keras=_einsum_keras,
        keras_stem="einsum_dense",
    ),
    LayerType(
        "rmsnorm",
        (Arg("normalized_shape", "size"), Arg("eps", "ignored", None), Arg("elementwise_affine", "flag", True)),
        ("norm",),
        _rmsnorm("torch"),
        _rmsnorm("keras"),
        "rms_normalization",
    ),
    *(
        LayerType(
            f"instancenorm{rank}d",
            _INSTANCENORM_ARGS,
            ("norm", "instancenorm"),
            _batchnorm_torch,  # the same parameters and buffers as batch norm, off by default
            _no_keras("instance normalization (use groupnorm with num_groups = num_channels)"),
        )
        for rank in (1, 2, 3)
    ),
    LayerType(
        "bilinear",
        (
            Arg("in1_features", "count"),
            Arg("in2_features", "count"),
            Arg("out_features", "count"),
            Arg("bias", "flag", True),
        ),
        (),
        _bilinear_torch,
        _no_keras("bilinear layer"),
    ),
    LayerType(
        "embedding_bag",
        _EMBEDDING_BAG_ARGS,
        ("embedding",),
        _embedding_torch,  # torch: normal_ and the padding row zeroed, as Embedding
        _no_keras("EmbeddingBag"),
        check=_embedding_bag_check,
    ),
    LayerType(
        "transformer_encoder_layer",
        _TRANSFORMER_ARGS,
        ("transformer",),
        keras=_refuse("type", _NO_KERAS_TRANSFORMER),
        check=_transformer_check,
        children=_transformer_children(False),
    ),
    LayerType(
        "transformer_decoder_layer",
        _TRANSFORMER_ARGS,
        ("transformer",),
        keras=_refuse("type", _NO_KERAS_TRANSFORMER),
        check=_transformer_check,
        children=_transformer_children(True),
    ),
    *(
        LayerType(
            f"transformer_{kind}",
            _stack_args(kind),
            ("transformer",),
            keras=_refuse("type", _NO_KERAS_TRANSFORMER),
            check=_stack_check,
            stack=_encoder_stack(kind),
        )
        for kind in ("encoder", "decoder")
    ),
    LayerType(
        "transformer",
        _TRANSFORMER_STACK_ARGS,
        ("transformer",),
        keras=_refuse("type", _NO_KERAS_TRANSFORMER),
        check=_transformer_stack_check,
        stack=_transformer_stack,
        redraw_matrices=True,
    ),
    *(LayerType(name, parameterless=True, keras_stem=name) for name in PARAMETERLESS),
)

LAYERS: dict[str, LayerType] = {layer.name: layer for layer in LAYER_TYPES}
CONTAINER = "sequential"


def get_layer(name: str) -> LayerType:
    try:
        return LAYERS[name]
    except KeyError:
        known = ", ".join([*LAYERS, CONTAINER])
        raise InitError("type", f"unknown layer type {name!r}; known: {known}") from None

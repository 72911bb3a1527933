"""Model recipes: a list of layers expanded to the full state dict, name -> TensorSpec, in either framework.

    expand(layers, framework, rules, dtype) -> {"0.weight": TensorSpec(...), "0.bias": ..., ...}

A layer is the compact text `conv2d(3, 64, 3, bias=false)` (recipes.syntax), optionally named (`conv1: ...`), or
an object `{"type": "conv2d", "name": "conv1", "args": [3, 64, 3], "bias": false}`; `{"type": "sequential",
"name": "downsample", "layers": [...]}` nests. Names follow the framework: PyTorch joins module names with "."
and numbers unnamed layers by their index in their list (as nn.Sequential does, parameterless layers included);
Keras joins with "/" and names unnamed layers as Keras 3 does (dense, dense_1, ..., per class).

Every parameter gets its framework's default initialisation unless a rule says otherwise. A rule is
`{"layer": "conv", "param": "weight", "scheme": "kaiming_normal", "mode": "fan_out", "nonlinearity": "relu"}`;
the last matching rule wins. Rules get the layer's real fans (explicit fan_in / fan_out in the spec) unless
they say `"fans": "framework"`, which reads fans off the shape as the framework's own init functions do.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from service.engine.bundle import MAX_TENSORS, Copy, DrawStep, Overwritten, TensorSpec
from service.engine.dtypes import DTYPES
from service.engine.errors import InitError, TooLargeError
from service.engine.recipes.layer_args import bind
from service.engine.recipes.layers import CONTAINER, FRAMEWORKS, Framework, Init, LayerType, Step, Weight, get_layer
from service.engine.recipes.syntax import LayerCall, parse_layer
from service.engine.schemes.registry import DEFAULT_KERAS_VERSION, KERAS_VARIANCE_SCALING, KERAS_VERSIONS, get_scheme

MAX_LAYERS = 4096
MAX_DEPTH = 32  # nesting of sequentials and composites
MAX_RULES = 256
MAX_NAME = 256  # characters of a module path or tensor name (as for the names of a `tensors` request)
FanSource = Literal["layer", "framework"]
FAN_SOURCES: tuple[FanSource, ...] = ("layer", "framework")
RULE_FIELDS = ("layer", "param", "scheme", "fans", "dtype")
_SEPARATOR = {"torch": ".", "keras": "/"}
_NAME = re.compile(r"[A-Za-z0-9_]*")


@dataclass(frozen=True)
class Rule:
    index: int
    scheme: str
    params: Mapping[str, Any] = field(default_factory=dict)
    layer: str = "*"
    param: str = "*"
    fans: FanSource = "layer"
    dtype: str | None = None


def _relocated(where: str, error: InitError, what: str = "") -> InitError:
    path = where if error.field in ("args", "layers") else f"{where}.{error.field}"
    return InitError(path, f"{where}{what}: {error.message}", error.where)


def parse_rules(rules: Sequence[Mapping[str, Any]], where: str = "model.rules") -> list[Rule]:
    """Rules checked up front: the scheme exists and its parameters are its own, typed and in range."""
    if len(rules) > MAX_RULES:
        raise TooLargeError(where, f"at most {MAX_RULES} rules, got {len(rules)}")
    parsed = []
    for index, raw in enumerate(rules):
        at = f"{where}[{index}]"
        if not isinstance(raw, Mapping):
            raise InitError(at, f"{at}: a rule is an object with layer, param, scheme and its parameters")
        if "scheme" not in raw:
            raise InitError(f"{at}.scheme", f"{at}: a rule needs a scheme")
        for name in ("layer", "param", "scheme"):
            if name in raw and not isinstance(raw[name], str):
                raise InitError(f"{at}.{name}", f"{at}: {name} must be a string, got {raw[name]!r}")
        if raw.get("fans", "layer") not in FAN_SOURCES:
            raise InitError(f"{at}.fans", f"{at}: fans must be one of {list(FAN_SOURCES)}, got {raw['fans']!r}")
        dtype = raw.get("dtype")
        if dtype is not None and dtype not in DTYPES:
            raise InitError(f"{at}.dtype", f"{at}: unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
        params = {k: v for k, v in raw.items() if k not in RULE_FIELDS}
        try:
            get_scheme(raw["scheme"]).full_params(params)
        except InitError as error:
            raise _relocated(at, error) from None
        parsed.append(
            Rule(
                index,
                raw["scheme"],
                params,
                raw.get("layer", "*"),
                raw.get("param", "*"),
                raw.get("fans", "layer"),
                dtype,
            )
        )
    return parsed


RuleIndex = dict[str, dict[str, Rule]]  # param pattern -> layer pattern -> the last rule with both


def index_rules(rules: Sequence[Rule]) -> RuleIndex:
    """A parameter's rule is then found by looking up its few names, not by testing every rule against every
    parameter (rules x parameters x depth)."""
    index: RuleIndex = {}
    for rule in rules:
        index.setdefault(rule.param, {})[rule.layer] = rule
    return index


def find_rule(index: RuleIndex, params: set[str], layers: set[str]) -> Rule | None:
    """The last rule whose param pattern is one of `params` (a parameter's names) and whose layer pattern is one
    of `layers` (its layer's names)."""
    found: list[Rule] = []
    for param in params:
        by_layer = index.get(param)
        if by_layer:
            found.extend(by_layer[name] for name in layers & by_layer.keys())
    return max(found, key=lambda rule: rule.index, default=None)


@dataclass
class _Layer:
    """One layer being expanded: its type and where it sits."""

    type: LayerType
    path: tuple[str, ...]  # module names from the root, this layer's included
    prefixes: tuple[str, ...]  # the path's leading parts joined, path[:1] to path[:]: what a rule's layer may name
    ancestors: tuple[str, ...]  # types of the enclosing containers and composites
    where: str  # the request location, for errors


class _Expander:
    def __init__(self, framework: Framework, rules: Sequence[Rule], dtype: str, keras_version: str) -> None:
        self.framework = framework
        self.keras_version = keras_version
        self.rules = rules
        self.dtype = dtype
        self.separator = _SEPARATOR[framework]
        self.specs: dict[str, TensorSpec] = {}
        self.owners: dict[str, str] = {}
        # PyTorch: every draw of construction, and every deep copy, in its order
        self.constructed: list[tuple[str, TensorSpec] | Copy] = []
        self.copying = False  # building a deep copy: nothing is drawn
        self.ruled: set[str] = set()
        self.keras_names: Counter[str] = Counter()
        self.layers = 0
        self.rule_index = index_rules(rules)

    # ---- reading the request ----

    def _call(self, item: Any, where: str) -> tuple[LayerCall, list[Any] | None]:
        if isinstance(item, str):
            try:
                return parse_layer(item), None
            except InitError as error:
                raise InitError(where, f"{where}: {error.message}") from None
        if not isinstance(item, Mapping):
            raise InitError(where, f"{where}: a layer is a text such as 'linear(784, 256)' or an object with 'type'")
        if not isinstance(item.get("type"), str):
            raise InitError(f"{where}.type", f"{where}: 'type' (a string) is required")
        name = item.get("name")
        if name is not None and not isinstance(name, str):
            raise InitError(f"{where}.name", f"{where}: name must be a string, got {name!r}")
        positional = item.get("args", [])
        if not isinstance(positional, list):
            raise InitError(f"{where}.args", f"{where}: args must be a list of positional arguments")
        children = item.get("layers") if item["type"] == CONTAINER else None
        if item["type"] == CONTAINER and not isinstance(children, list):
            raise InitError(f"{where}.layers", f"{where}: a sequential needs 'layers', a list")
        keyword = {k: v for k, v in item.items() if k not in ("type", "name", "args", "layers")}
        if "layers" in item and item["type"] != CONTAINER:
            keyword["layers"] = item["layers"]  # refused by bind, with the layer's signature
        return LayerCall(item["type"], name, positional, keyword), children

    def _module_name(self, call: LayerCall, index: int, stem: str, where: str) -> str:
        if call.name is not None:
            if not _NAME.fullmatch(call.name):
                raise InitError(f"{where}.name", f"{where}: a layer name has only letters, digits and _: {call.name!r}")
            return call.name
        if self.framework == "torch":
            return str(index)
        return self._keras_name(stem)

    def _keras_name(self, stem: str) -> str:
        """Keras 3's auto-name of the next layer of this class: dense, dense_1, ..."""
        count = self.keras_names[stem]
        self.keras_names[stem] += 1
        return stem if count == 0 else f"{stem}_{count}"

    # ---- the walk ----

    def _prefixes(self, prefixes: tuple[str, ...], name: str, where: str) -> tuple[str, ...]:
        """`prefixes` and the path one module deeper, joined once per module rather than once per rule test."""
        joined = f"{prefixes[-1]}{self.separator}{name}" if prefixes else name
        if len(joined) > MAX_NAME:
            raise InitError(f"{where}.name", f"{where}: module path {joined[:64]!r}... exceeds {MAX_NAME} characters")
        return (*prefixes, joined)

    def walk(
        self,
        items: Sequence[Any],
        path: tuple[str, ...],
        prefixes: tuple[str, ...],
        ancestors: tuple[str, ...],
        where: str,
    ) -> None:
        if len(path) > MAX_DEPTH:
            raise InitError(where, f"{where}: layers nest at most {MAX_DEPTH} deep")
        for index, item in enumerate(items):
            self._item(item, index, None, path, prefixes, ancestors, f"{where}[{index}]")

    def _item(
        self,
        item: Any,
        index: int,
        name: str | None,
        path: tuple[str, ...],
        prefixes: tuple[str, ...],
        ancestors: tuple[str, ...],
        at: str,
    ) -> None:
        """One layer of a list (at `index`), or a module a stack names itself (`name`: its copies, its norm)."""
        self.layers += 1
        if self.layers > MAX_LAYERS:
            raise TooLargeError(at, f"a recipe has at most {MAX_LAYERS} layers")
        call, children = self._call(item, at)
        if name is not None:
            call.name = name
        if call.type == CONTAINER:
            if call.positional or call.keyword:
                raise InitError(at, f"{at}: a sequential takes only name and layers")
            module = self._module_name(call, index, CONTAINER, at)
            inner = self._prefixes(prefixes, module, at)
            self.walk(children or [], (*path, module), inner, (*ancestors, CONTAINER), f"{at}.layers")
            return
        try:
            layer_type = get_layer(call.type)
        except InitError as error:
            raise _relocated(at, error) from None
        if layer_type.parameterless:
            self._module_name(call, index, layer_type.keras_stem, at)  # takes its index or Keras name
            return
        try:
            args = bind(layer_type.name, layer_type.args, call.positional, call.keyword)
            if layer_type.check:
                layer_type.check(args)
        except InitError as error:
            raise _relocated(at, error, f" ({layer_type.name})") from None
        if layer_type.stack and self._builder(layer_type) is None:
            self._stack(call, index, layer_type, args, path, prefixes, ancestors, at)
        else:
            self._layer(call, index, layer_type, args, path, prefixes, ancestors, at)

    def _stack(
        self,
        call: LayerCall,
        index: int,
        layer_type: LayerType,
        args: dict[str, Any],
        path: tuple[str, ...],
        prefixes: tuple[str, ...],
        ancestors: tuple[str, ...],
        at: str,
    ) -> None:
        """torch's TransformerEncoder/Decoder: a prototype layer built once (its draws, named as copy 0's) and
        deep-copied, so every copy starts with copy 0's values; Transformer then redraws every matrix."""
        assert layer_type.stack is not None
        module = self._module_name(call, index, layer_type.name, at)
        inner_path, inner = (*path, module), self._prefixes(prefixes, module, at)
        inner_ancestors = (*ancestors, layer_type.name)
        first = len(self.specs)
        for part in layer_type.stack(args):
            where = f"{at}.{part.arg}"
            if part.copies is None:
                self._item(part.layer, 0, part.name, inner_path, inner, inner_ancestors, where)
                continue
            copies_path, copies = (*inner_path, part.name), self._prefixes(inner, part.name, where)
            prototype = len(self.specs)
            self._item(part.layer, 0, "0", copies_path, copies, inner_ancestors, where)
            originals = list(self.specs)[prototype:]
            copying, self.copying = self.copying, True  # a copy draws nothing while it is built
            for copy in range(1, part.copies):
                made = len(self.specs)
                self._item(part.layer, copy, str(copy), copies_path, copies, inner_ancestors, where)
                for original, name in zip(originals, list(self.specs)[made:], strict=True):
                    if name not in self.ruled:  # a rule draws into the copy after construction: its own key
                        self.specs[name] = replace(self.specs[name], copy_of=original)
                    if not copying:
                        self.constructed.append(Copy(name, original))
            self.copying = copying
        if layer_type.redraw_matrices and not self.copying:
            # nn.Transformer._reset_parameters: xavier_uniform_ on every parameter of 2 or more dims, in order.
            for name in list(self.specs)[first:]:
                spec = self.specs[name]
                if len(spec.shape) < 2:
                    continue
                redrawn = replace(
                    spec, scheme="xavier_uniform", params={}, fan_in=None, fan_out=None, fill_rows=(), copy_of=None
                )
                if name not in self.ruled:
                    self.specs[name] = redrawn
                self.constructed.append((name, replace(redrawn, origin={})))

    def _layer(
        self,
        call: LayerCall,
        index: int,
        layer_type: LayerType,
        args: dict[str, Any],
        path: tuple[str, ...],
        prefixes: tuple[str, ...],
        ancestors: tuple[str, ...],
        at: str,
    ) -> None:
        builder = self._builder(layer_type)
        if layer_type.children and builder is None:  # a composite: named sub-layers of real types
            name = self._module_name(call, index, layer_type.name, at)
            inner = self._prefixes(prefixes, name, at)
            for child_name, child_type, child_args in layer_type.children(args):
                child = get_layer(child_type)
                child_builder = self._builder(child)
                bound = bind(child.name, child.args, [], child_args)
                weights = child_builder(bound) if child_builder else []
                child_path, child_prefixes = (*path, name, child_name), self._prefixes(inner, child_name, at)
                child_layer = _Layer(child, child_path, child_prefixes, (*ancestors, layer_type.name), at)
                self._params(child_layer, weights, self._steps(child, bound, weights))
            return
        if builder is None:
            raise InitError(f"{at}.type", f"{at}: {layer_type.name} has no {self.framework} equivalent")
        try:
            weights = builder(args)
        except InitError as error:
            raise _relocated(at, error, f" ({layer_type.name})") from None
        # Keras: Bidirectional(LSTM(...)) names the LSTM (created first) and then the wrapper, for every unit
        wrapper = layer_type.keras_wrapper(args) if self.framework == "keras" and layer_type.keras_wrapper else None
        stem = wrapper or layer_type.keras_stem
        wrapped = self._keras_name(layer_type.keras_stem) if wrapper else ""
        base = self._module_name(call, index, stem, at)
        for unit in sorted({w.unit for w in weights}):  # a stacked Keras RNN is one Keras layer per unit
            if unit == 0:
                name = base
            else:
                wrapped = self._keras_name(layer_type.keras_stem) if wrapper else ""
                name = f"{call.name}_{unit}" if call.name is not None else self._module_name(call, index, stem, at)
            unit_weights = [
                replace(w, name=w.name.format(wrapped)) if wrapper else w for w in weights if w.unit == unit
            ]
            layer = _Layer(layer_type, (*path, name), self._prefixes(prefixes, name, at), ancestors, at)
            self._params(layer, unit_weights, self._steps(layer_type, args, unit_weights))

    def _builder(self, layer_type: LayerType) -> Callable[[Mapping[str, Any]], list[Weight]] | None:
        return layer_type.torch if self.framework == "torch" else layer_type.keras

    def _steps(self, layer_type: LayerType, args: Mapping[str, Any], weights: list[Weight]) -> list[Step]:
        if self.framework == "torch" and layer_type.torch_steps:
            return layer_type.torch_steps(args)
        return [(weight.name, weight.default) for weight in weights]

    def _name(self, layer: _Layer, weight_name: str) -> str:
        return self.separator.join(part for part in (*layer.path, weight_name) if part)

    def _params(self, layer: _Layer, weights: list[Weight], steps: list[Step]) -> None:
        for weight in weights:
            name = self._name(layer, weight.name)
            if len(name) > MAX_NAME:
                raise InitError(f"{layer.where}.name", f"{layer.where}: tensor name exceeds {MAX_NAME} characters")
            if name in self.specs:
                raise InitError(
                    f"{layer.where}.name",
                    f"{layer.where}: tensor {name!r} is also produced by {self.owners[name]}; name the layers apart",
                )
            if len(self.specs) >= MAX_TENSORS:
                raise TooLargeError(layer.where, f"a recipe expands to at most {MAX_TENSORS} tensors")
            self.specs[name] = self._spec(layer, weight)
            self.owners[name] = layer.where
        if self.framework == "torch" and not self.copying:
            by_name = {weight.name: weight for weight in weights}
            for weight_name, init in steps:
                spec = self._default(layer, by_name[weight_name], init)
                self.constructed.append((self._name(layer, weight_name), spec))

    def order(self) -> tuple[DrawStep, ...] | None:
        """PyTorch: the draws of `torch.manual_seed(s); model = Model()` and then, as `for name, t in
        model.state_dict().items(): init(t)` for the tensors a rule matches, the rules' draws in the state dict's
        order; every draw into a tensor but its last is overwritten. Keras: None (each tensor is drawn once, by the
        initializer its layer is constructed with, in the state dict's order)."""
        if self.framework != "torch":
            return None
        names = [entry.name if isinstance(entry, Copy) else entry[0] for entry in self.constructed]
        last = {name: index for index, name in enumerate(names)}
        steps: list[DrawStep] = []
        for index, (name, entry) in enumerate(zip(names, self.constructed, strict=True)):
            final = index == last[name] and name not in self.ruled
            if isinstance(entry, Copy):
                if final:  # a copy later drawn into (a rule, Transformer's redraw) is no step at all
                    steps.append(entry)
            else:
                steps.append(name if final else Overwritten(name, entry[1]))
        return (*steps, *(name for name in self.specs if name in self.ruled))

    # ---- rules and defaults ----

    def _rule(self, layer: _Layer, weight: Weight) -> Rule | None:
        """The last rule whose layer pattern names this layer (*, its type, a group, an enclosing container or
        composite type, or a module path prefix) and whose param pattern names this parameter (* for every
        parameter but buffers, like iterating model.parameters(), or its role, key, name or the name's last part)."""
        params = {weight.role, weight.key, weight.name, re.split(r"[./]", weight.name)[-1]}
        if weight.role != "buffer":
            params.add("*")
        layers = {"*", layer.type.name, *layer.type.groups, *layer.ancestors, *layer.prefixes}
        return find_rule(self.rule_index, params, layers)

    def _spec(self, layer: _Layer, weight: Weight) -> TensorSpec:
        rule = self._rule(layer, weight)
        origin = {
            "layer": layer.type.name,
            "module": self.separator.join(p for p in layer.path if p),
            "param": weight.key,
            "init": "default" if rule is None else f"rules[{rule.index}]",
        }
        if rule is None:
            return self._default(layer, weight, weight.default, origin)
        self.ruled.add(self._name(layer, weight.name))
        fan_in, fan_out = weight.fans if rule.fans == "layer" and weight.fans else (None, None)
        axes = self._keras_axes(weight.default)
        if rule.fans == "framework" and axes and rule.scheme in KERAS_VARIANCE_SCALING:
            # Keras 3.15's EinsumDense gives a variance-scaling kernel initializer its kernel's axes.
            fan_in, fan_out = (math.prod(weight.shape[axis] for axis in side) for side in axes)
        return TensorSpec(
            shape=weight.shape,
            scheme=rule.scheme,
            params=dict(rule.params),
            dtype=weight.dtype or rule.dtype or self.dtype,
            layout=self.framework,
            fan_in=fan_in,
            fan_out=fan_out,
            fill_rows=weight.default.fill_rows,  # structural (padding row, unit forget bias): kept under rules
            origin=origin,
        )

    def _keras_axes(self, init: Init) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """The kernel's (input_axes, output_axes) where this Keras version initialises over them (3.15 on)."""
        return init.keras_axes if self.framework == "keras" and self.keras_version >= "3.15" else None

    def _default(
        self, layer: _Layer, weight: Weight, init: Init, origin: Mapping[str, Any] | None = None
    ) -> TensorSpec:
        """`weight` initialised by the framework's own `init` (its default, or a step of PyTorch's construction)."""
        scheme, params = init.scheme, dict(init.params)
        axes = self._keras_axes(init)
        if axes:
            input_axes, output_axes = axes
            scheme = f"keras.{scheme}"
            params.update(input_axes=list(input_axes), output_axes=list(output_axes))
        return TensorSpec(
            shape=weight.shape,
            scheme=scheme,
            params=params,
            dtype=weight.dtype or self.dtype,
            layout=self.framework,
            fan_in=init.fan_in,
            fill_rows=init.fill_rows,
            origin=origin or {},
        )


def expand(
    layers: Sequence[Any],
    framework: str = "torch",
    rules: Sequence[Mapping[str, Any]] = (),
    dtype: str = "float32",
    keras_version: str | None = None,
) -> dict[str, TensorSpec]:
    """The state dict of `layers` in `framework`, name -> spec, in the framework's order (Keras: that of
    `keras_version`, default DEFAULT_KERAS_VERSION)."""
    return expand_ordered(layers, framework, rules, dtype, keras_version)[0]


def expand_ordered(
    layers: Sequence[Any],
    framework: str = "torch",
    rules: Sequence[Mapping[str, Any]] = (),
    dtype: str = "float32",
    keras_version: str | None = None,
) -> tuple[dict[str, TensorSpec], tuple[DrawStep, ...] | None]:
    """`expand`, and the order a request-keyed rng draws the tensors in (`_Expander.order`)."""
    keras_version = keras_version or DEFAULT_KERAS_VERSION
    if keras_version not in KERAS_VERSIONS:
        raise InitError("keras_version", f"keras_version must be one of {list(KERAS_VERSIONS)}, got {keras_version!r}")
    if framework not in FRAMEWORKS:
        raise InitError("model.framework", f"framework must be one of {list(FRAMEWORKS)}, got {framework!r}")
    if dtype not in DTYPES:
        raise InitError("model.dtype", f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    if not isinstance(layers, Sequence) or isinstance(layers, str) or not layers:
        raise InitError("model.layers", "model.layers must be a non-empty list of layers")
    expander = _Expander(framework, parse_rules(rules), dtype, keras_version)  # type: ignore[arg-type]
    expander.walk(layers, (), (), (), "model.layers")
    if not expander.specs:
        raise InitError("model.layers", "the layers have no parameters")
    return expander.specs, expander.order()

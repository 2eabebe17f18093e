"""The one table of weight names and layouts: canonical (HF PyTorch) names against every other format.

Each :class:`Rule` is one canonical tensor, e.g. ``model.encoder.layers.{i}.self_attn.q_proj.weight``,
with its layout kind, its shape in terms of the config, and its name in each foreign format (one
column per format). Adding a format is adding a column (a keyword in the rows below) and, if its
layouts differ from PyTorch's, an entry in :data:`LAYOUTS`; the engine in :mod:`weights_bridge.engine`
does the rest and checks coverage. A foreign name is either

- a plain string: the tensor is stored on its own (after the format's permutation for the kind);
- a :class:`Part`: the tensor is one equal slice, along axis 0, of a fused foreign tensor
  (CTranslate2 fuses q,k,v and cross-attention k,v); slices no rule claims hold zeros, because
  Whisper's k projections have no bias;
- a :class:`Computed`: the format does not store this tensor because its runtime computes it (mlx-whisper's
  sinusoidal encoder positions); the reader computes it and the writer checks the canonical tensor equals it;
- ``None``: the format does not store this tensor (only for ``tied`` rules).

Layout kinds (canonical layout in brackets): ``linear`` [out, in], ``bias`` [out], ``conv1d``
[out, in, k], ``conv_bias`` [out] (whisper.cpp stores a convolution's bias as a column [out, 1]),
``norm_weight`` / ``norm_bias`` [d] (gamma/beta, scale/bias), ``embedding`` [vocab, d], ``positions``
[n, d], ``vector`` [n] (a classification head's layer weights), and ``tied``: not stored, it is the
tensor named by ``tied_to``.

Live models name their parameters by one column too (:class:`Naming`, :func:`parameter_names`): the
backends assign and read their weights through it and never rename anything themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Formats with a column in the table: CTranslate2, openai-whisper's ``.pt``, HF's TensorFlow
# (``tf_model.h5``) and Flax (``flax_model.msgpack``) files, whisper.cpp's ``ggml-*.bin`` and
# mlx-whisper's ``weights.safetensors``. whisper.cpp names its tensors exactly as openai-whisper does;
# mlx-whisper does too, except that its MLP layers are ``mlp1``/``mlp2`` rather than ``mlp.0``/``mlp.2``.
FORMATS: tuple[str, ...] = ("ct2", "openai", "hf_tf", "hf_flax", "ggml", "mlx")

KINDS: tuple[str, ...] = (
    "linear", "bias", "conv1d", "conv_bias", "norm_weight", "norm_bias", "embedding", "positions", "tied", "vector"
)  # fmt: skip

# Fused layouts: how many equal slices along axis 0 the foreign tensor holds.
FUSED_LAYOUTS: dict[str, int] = {"fused_qkv": 3, "fused_kv": 2}

# Per format, the axis permutation taking a canonical tensor of each kind to the foreign layout;
# kinds not listed are stored as they are.
_KERAS_AND_FLAX_LAYOUT = {
    "linear": (1, 0),  # PyTorch [out, in] -> Dense kernel [in, out]
    "conv1d": (2, 1, 0),  # PyTorch [out, in, k] -> Conv1D / Conv kernel [k, in, out]
}
LAYOUTS: dict[str, dict[str, tuple[int, ...]]] = {
    "ct2": {},  # CTranslate2 keeps PyTorch's [out, in] and [out, in, k]
    "openai": {},  # openai-whisper is PyTorch
    "hf_tf": _KERAS_AND_FLAX_LAYOUT,
    "hf_flax": _KERAS_AND_FLAX_LAYOUT,
    "ggml": {},  # whisper.cpp lists dimensions innermost first, but the bytes are PyTorch's C-order tensors
    "mlx": {"conv1d": (0, 2, 1)},  # MLX's Conv1d kernel is [out, k, in] (channels last)
}

# whisper.cpp's loader fixes each kind's storage type: "float32" always, "half" (float16, or float32 in
# an all-float32 file: the convolutions), or "weights" (the file's own type: float32, float16 or q8_0).
GGML_STORAGE: dict[str, str] = {
    "linear": "weights", "embedding": "weights", "conv1d": "half",
    "bias": "float32", "conv_bias": "float32", "norm_weight": "float32", "norm_bias": "float32", "positions": "float32",
}  # fmt: skip

# HF's TF and Flax models mirror the PyTorch module tree, so their names come from one module path
# per format plus the tensor's role inside its module. Role -> leaf name, per format (PyTorch first):
LEAVES: dict[str, dict[str, str]] = {
    "hf": {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias", "tokens": "weight", "positions": "weight"},
    # Keras variables carry a ":0" suffix; TFWhisperPositionalEmbedding names its table "weight".
    "hf_tf": {"kernel": "kernel:0", "bias": "bias:0", "gamma": "gamma:0", "beta": "beta:0", "tokens": "embeddings:0", "positions": "weight:0"},
    "hf_flax": {"kernel": "kernel", "bias": "bias", "gamma": "scale", "beta": "bias", "tokens": "embedding", "positions": "embedding"},
}  # fmt: skip


@dataclass(frozen=True)
class Part:
    """Slice ``index`` of ``FUSED_LAYOUTS[layout]`` equal slices along axis 0 of the foreign tensor ``name``."""

    name: str
    layout: str
    index: int

    def __post_init__(self) -> None:
        if self.layout not in FUSED_LAYOUTS or not 0 <= self.index < FUSED_LAYOUTS[self.layout]:
            raise ValueError(f"bad fused part {self}")


COMPUTED_FUNCTIONS: tuple[str, ...] = ("sinusoids",)


@dataclass(frozen=True)
class Computed:
    """A tensor the format does not store because its runtime computes it: ``function`` names how
    (``"sinusoids"``: Whisper's fixed sinusoidal encoder positions, :func:`whisper_core.modeling_rules.sinusoids`)."""

    function: str

    def __post_init__(self) -> None:
        if self.function not in COMPUTED_FUNCTIONS:
            raise ValueError(f"unknown computed tensor {self.function!r}; known: {COMPUTED_FUNCTIONS}")


@dataclass(frozen=True)
class Rule:
    """One canonical tensor: ``{i}`` in names stands for the layer index of ``stack``."""

    canonical: str
    kind: str
    shape: tuple[str | int, ...]  # symbols resolved by :func:`resolve_shape`
    names: dict[str, str | Part | Computed | None] = field(default_factory=dict)
    stack: str | None = None  # "encoder" or "decoder" for per-layer rules
    tied_to: str | None = None  # for kind "tied": the canonical tensor this one is

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown layout kind {self.kind!r} for {self.canonical}")
        if (self.kind == "tied") != (self.tied_to is not None):
            raise ValueError(f"{self.canonical}: tied_to is required for, and only for, kind 'tied'")
        unknown = set(self.names) - set(FORMATS)
        if unknown:
            raise ValueError(f"{self.canonical}: unknown formats {sorted(unknown)}")


@dataclass(frozen=True)
class Module:
    """One module's path in the formats that follow HF's module tree: PyTorch, TF (Keras) and Flax.

    TF names are relative to the Keras model (transformers drops the model's own name, the first
    path component, when it loads an h5 file); TF numbers layers ``layers.{i}``, Flax ``layers/{i}``.
    """

    hf: str  # model.encoder.layers.{i}.self_attn
    tf: str  # model/encoder/layers.{i}/self_attn
    flax: str  # model/encoder/layers/{i}/self_attn

    def child(self, name: str) -> Module:
        return Module(f"{self.hf}.{name}", f"{self.tf}/{name}", f"{self.flax}/{name}")

    def layers(self) -> Module:
        return Module(f"{self.hf}.layers.{{i}}", f"{self.tf}/layers.{{i}}", f"{self.flax}/layers/{{i}}")


ROOT = Module("model", "model", "model")


def _rule(
    module: Module,
    role: str,
    kind: str,
    shape: tuple[str | int, ...],
    stack: str | None = None,
    **names: Any,
) -> Rule:
    """The rule for tensor ``role`` of ``module``: HF PyTorch, TF and Flax names follow from the module path;
    whisper.cpp's are openai-whisper's, and so are mlx-whisper's unless ``mlx`` is given."""
    tree_names = {
        "hf_tf": f"{module.tf}/{LEAVES['hf_tf'][role]}",
        "hf_flax": f"{module.flax}/{LEAVES['hf_flax'][role]}",
    }
    openai_names = {"ggml": names["openai"], "mlx": names.get("mlx", names["openai"])}
    return Rule(f"{module.hf}.{LEAVES['hf'][role]}", kind, shape, {**openai_names, **names, **tree_names}, stack)


def _projection(
    module: Module,
    stack: str,
    shape: tuple[str, str],
    weight: str | Part,
    bias: str | Part | None,
    openai: str,
    mlx: str | None = None,
) -> list[Rule]:
    """A linear layer [out, in] and its bias [out] (``bias=None``: no bias, as in Whisper's k projections);
    ``mlx`` is mlx-whisper's module name where it differs from openai-whisper's."""
    mlx_module = mlx or openai
    rules = [
        _rule(
            module, "kernel", "linear", shape, stack, ct2=weight, openai=f"{openai}.weight", mlx=f"{mlx_module}.weight"
        )
    ]
    if bias is not None:
        rules.append(
            _rule(module, "bias", "bias", shape[:1], stack, ct2=bias, openai=f"{openai}.bias", mlx=f"{mlx_module}.bias")
        )
    return rules


def _attention(stack: str, module: Module, ct2: str, openai: str, cross: bool) -> list[Rule]:
    """q, k, v and out projections of one attention block.

    CTranslate2 fuses self-attention q,k,v into ``linear_0`` ([3·d, d]; the k bias slice is zero)
    with the output in ``linear_1``; cross-attention keeps q in ``linear_0``, fuses k,v into
    ``linear_1`` ([2·d, d]) and puts the output in ``linear_2``.
    """
    if cross:
        q_name, kv_name, out_name = f"{ct2}/linear_0", f"{ct2}/linear_1", f"{ct2}/linear_2"

        def fused(suffix: str, index: int) -> Part:
            return Part(f"{kv_name}/{suffix}", "fused_kv", index - 1)

        q_weight, q_bias = f"{q_name}/weight", f"{q_name}/bias"
    else:
        qkv_name, out_name = f"{ct2}/linear_0", f"{ct2}/linear_1"

        def fused(suffix: str, index: int) -> Part:
            return Part(f"{qkv_name}/{suffix}", "fused_qkv", index)

        q_weight, q_bias = fused("weight", 0), fused("bias", 0)
    d = ("d", "d")
    return [
        *_projection(module.child("q_proj"), stack, d, q_weight, q_bias, f"{openai}.query"),
        *_projection(module.child("k_proj"), stack, d, fused("weight", 1), None, f"{openai}.key"),
        *_projection(module.child("v_proj"), stack, d, fused("weight", 2), fused("bias", 2), f"{openai}.value"),
        *_projection(module.child("out_proj"), stack, d, f"{out_name}/weight", f"{out_name}/bias", f"{openai}.out"),
    ]


def _norm(module: Module, ct2: str, openai: str, stack: str | None = None) -> list[Rule]:
    return [
        _rule(module, "gamma", "norm_weight", ("d",), stack, ct2=f"{ct2}/gamma", openai=f"{openai}.weight"),
        _rule(module, "beta", "norm_bias", ("d",), stack, ct2=f"{ct2}/beta", openai=f"{openai}.bias"),
    ]


def _layer(stack: str) -> list[Rule]:
    """One pre-norm transformer layer of ``stack``; the decoder adds cross-attention."""
    hf, ct2, openai = ROOT.child(stack).layers(), f"{stack}/layer_{{i}}", f"{stack}.blocks.{{i}}"
    rules = [
        *_attention(stack, hf.child("self_attn"), f"{ct2}/self_attention", f"{openai}.attn", cross=False),
        *_norm(hf.child("self_attn_layer_norm"), f"{ct2}/self_attention/layer_norm", f"{openai}.attn_ln", stack),
    ]
    if stack == "decoder":
        rules += [
            *_attention(stack, hf.child("encoder_attn"), f"{ct2}/attention", f"{openai}.cross_attn", cross=True),
            *_norm(
                hf.child("encoder_attn_layer_norm"), f"{ct2}/attention/layer_norm", f"{openai}.cross_attn_ln", stack
            ),
        ]
    rules += [
        *_projection(hf.child("fc1"), stack, ("ffn", "d"), f"{ct2}/ffn/linear_0/weight", f"{ct2}/ffn/linear_0/bias", f"{openai}.mlp.0", f"{openai}.mlp1"),
        *_projection(hf.child("fc2"), stack, ("d", "ffn"), f"{ct2}/ffn/linear_1/weight", f"{ct2}/ffn/linear_1/bias", f"{openai}.mlp.2", f"{openai}.mlp2"),
        *_norm(hf.child("final_layer_norm"), f"{ct2}/ffn/layer_norm", f"{openai}.mlp_ln", stack),
    ]  # fmt: skip
    return rules


_ENCODER, _DECODER = ROOT.child("encoder"), ROOT.child("decoder")

# fmt: off
RULES: tuple[Rule, ...] = (
    # Encoder stem: two convolutions over the log-mel frames, then learned (CT2) / sinusoidal positions.
    _rule(_ENCODER.child("conv1"), "kernel", "conv1d", ("d", "mels", 3), ct2="encoder/conv1/weight", openai="encoder.conv1.weight"),
    _rule(_ENCODER.child("conv1"), "bias", "conv_bias", ("d",), ct2="encoder/conv1/bias", openai="encoder.conv1.bias"),
    _rule(_ENCODER.child("conv2"), "kernel", "conv1d", ("d", "d", 3), ct2="encoder/conv2/weight", openai="encoder.conv2.weight"),
    _rule(_ENCODER.child("conv2"), "bias", "conv_bias", ("d",), ct2="encoder/conv2/bias", openai="encoder.conv2.bias"),
    _rule(_ENCODER.child("embed_positions"), "positions", "positions", ("source", "d"),
          ct2="encoder/position_encodings/encodings", openai="encoder.positional_embedding", mlx=Computed("sinusoids")),
    *_layer("encoder"),
    *_norm(_ENCODER.child("layer_norm"), "encoder/layer_norm", "encoder.ln_post"),
    # Decoder.
    _rule(_DECODER.child("embed_tokens"), "tokens", "embedding", ("vocab", "d"),
          ct2="decoder/embeddings/weight", openai="decoder.token_embedding.weight"),
    _rule(_DECODER.child("embed_positions"), "positions", "positions", ("target", "d"),
          ct2="decoder/position_encodings/encodings", openai="decoder.positional_embedding"),
    *_layer("decoder"),
    *_norm(_DECODER.child("layer_norm"), "decoder/layer_norm", "decoder.ln"),
    # The output projection is the token embedding: CT2 records an alias, openai-whisper multiplies
    # by token_embedding directly, HF's save_pretrained stores only embed_tokens (in every framework:
    # TF and Flax multiply by the embedding matrix and have no proj_out variable).
    Rule("proj_out.weight", "tied", ("vocab", "d"),
         {"ct2": "decoder/projection/weight", "openai": None, "hf_tf": None, "hf_flax": None, "ggml": None, "mlx": None},
         tied_to="model.decoder.embed_tokens.weight"),
)
# fmt: on

# transformers' TFWhisperForConditionalGeneration, as Keras saves it: one top-level layer ("model",
# the TFWhisperMainLayer) whose variable names start with the Keras model's name.
TF_MODEL_NAME = "tf_whisper_for_conditional_generation"
TF_LAYER_NAME = "model"


def ct2_gelu(config: Any) -> int:
    """CTranslate2's id of exact GELU (``ctranslate2.specs.Activation.GELU``), the only activation its
    Whisper encoder and decoder run; a config with another one cannot be written as CT2."""
    if config.activation_function != "gelu":
        raise ValueError(
            f"CTranslate2's Whisper runs GELU only; this model uses {config.activation_function!r}: "
            "it cannot be converted to ct2"
        )
    return 3


# CTranslate2 stores some of the spec's settings as rank-0 integer variables beside the weights:
# name -> (NumPy dtype, value for a Whisper config). The reader checks every one of them and the
# writer emits them, so a CT2 file round-trips through the canonical checkpoint byte for byte.
CT2_SCALARS: dict[str, tuple[str, Any]] = {
    "encoder/num_heads": ("int16", lambda config: config.encoder_attention_heads),
    "decoder/num_heads": ("int16", lambda config: config.decoder_attention_heads),
    "decoder/activation": ("int8", lambda config: ct2_gelu(config)),
    "decoder/alibi": ("int8", lambda config: 0),
    "decoder/alignment_heads": ("int16", lambda config: 1),  # CT2's own default; Whisper's heads are in config.json
    "decoder/alignment_layer": ("int16", lambda config: -1),
    "decoder/pre_norm": ("int8", lambda config: 1),
    "decoder/scale_embeddings": ("int8", lambda config: int(config.scale_embedding)),
    "decoder/start_from_zero_embedding": ("int8", lambda config: 0),
}


# Settings newer CTranslate2 converters (4.7+) add, same spec revision: accepted when present with these
# values (ALiBi off), never written, so files match what faster-whisper's published models hold.
CT2_OPTIONAL_SCALARS: dict[str, tuple[str, int]] = {
    "decoder/alibi_use_positive_positions": ("int8", 0),
    "decoder/scale_alibi": ("int8", 0),
}


def resolve_shape(rule: Rule, config: Any) -> tuple[int, ...]:
    """The canonical shape of ``rule``'s tensor for ``config`` (a :class:`whisper_core.WhisperConfig`)."""
    ffn = config.decoder_ffn_dim if rule.stack == "decoder" else config.encoder_ffn_dim
    symbols = {
        "d": config.d_model,
        "ffn": ffn,
        "mels": config.num_mel_bins,
        "vocab": config.vocab_size,
        "source": config.max_source_positions,
        "target": config.max_target_positions,
    }
    return tuple(symbols[s] if isinstance(s, str) else s for s in rule.shape)


def layer_count(stack: str | None, config: Any) -> int:
    """How many times a rule of ``stack`` repeats (1 for the stems)."""
    if stack is None:
        return 1
    return config.encoder_layers if stack == "encoder" else config.decoder_layers


def expand(config: Any) -> list[tuple[Rule, int | None]]:
    """Every (rule, layer index) pair for ``config``, in table order (the index is None for stems)."""
    pairs: list[tuple[Rule, int | None]] = []
    for rule in RULES:
        if rule.stack is None:
            pairs.append((rule, None))
        else:
            pairs.extend((rule, i) for i in range(layer_count(rule.stack, config)))
    return pairs


def concrete(template: str, index: int | None) -> str:
    """``template`` with ``{i}`` replaced by the layer index."""
    return template if index is None else template.replace("{i}", str(index))


RULES_BY_CANONICAL: dict[str, Rule] = {rule.canonical: rule for rule in RULES}


# -- live models ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Naming:
    """How a live model names its parameters: by ``column`` of the table (``None``: the canonical names)
    without ``suffix``; models that lack the top ``model`` level (``WhisperModel`` in PyTorch and Flax, the
    classification encoders) also drop ``prefix``."""

    column: str | None
    prefix: str
    suffix: str = ""


# PyTorch's state dict: the canonical names (with the tied ``proj_out.weight``). Keras 3 variables, by path
# below the model's own name: the hf_tf names without Keras 2's ":0" (transformers' TF models have the
# ``model/`` level in WhisperModel too). Flax params: the hf_flax names.
STATE_DICT = Naming(None, "model.")
KERAS_VARIABLES = Naming("hf_tf", "model/", ":0")
FLAX_PARAMS = Naming("hf_flax", "model/")

# The classification heads of ``*ForAudioClassification``: not in :data:`RULES`, which describe the
# seq2seq checkpoint. Canonical name -> (layout kind, name in the Keras and Flax trees); the layout
# facts are the table's (a Linear [out, in] is a Dense kernel [in, out]), the names the heads' own.
HEADS: dict[str, tuple[str, str]] = {
    "projector.weight": ("linear", "projector/kernel"),
    "projector.bias": ("bias", "projector/bias"),
    "classifier.weight": ("linear", "classifier/kernel"),
    "classifier.bias": ("bias", "classifier/bias"),
    "layer_weights": ("vector", "layer_weights"),
}


def parameter_names(
    naming: Naming, config: Any, with_prefix: bool = True
) -> dict[str, tuple[str, tuple[int, ...] | None]]:
    """Canonical name -> (the live model's parameter name, permutation from the canonical layout), for
    ``config``: every rule the column names (tied tensors only where it names them) plus :data:`HEADS`.
    ``with_prefix=False``: for a model without the top ``model`` level."""
    layouts = LAYOUTS.get(naming.column, {}) if naming.column else {}
    names: dict[str, tuple[str, tuple[int, ...] | None]] = {}
    for rule, index in expand(config):
        name = rule.canonical if naming.column is None else rule.names[naming.column]
        if name is None:  # a tied tensor the column does not store
            continue
        name = concrete(name, index).removesuffix(naming.suffix)
        names[concrete(rule.canonical, index)] = (
            name if with_prefix else name.removeprefix(naming.prefix),
            layouts.get(rule.kind),
        )
    for canonical, (kind, path) in HEADS.items():
        names[canonical] = (canonical if naming.column is None else path, layouts.get(kind))
    return names

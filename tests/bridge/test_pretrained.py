"""What the backends' from_pretrained/save_pretrained share (weights_bridge.pretrained) and the live
parameter names of the rule table (weights_bridge.rules.parameter_names), without any framework."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from weights_bridge import canonical, pretrained, rules
from weights_bridge.engine import canonical_shapes

from .helpers import assert_bit_identical, random_weights, small_config

CONFIG = small_config()


def test_each_live_naming_is_a_column_of_the_table():
    keras = rules.parameter_names(rules.KERAS_VARIABLES, CONFIG)
    assert keras["model.encoder.conv1.weight"] == ("model/encoder/conv1/kernel", (2, 1, 0))
    assert keras["model.decoder.layers.1.self_attn.k_proj.weight"] == (
        "model/decoder/layers.1/self_attn/k_proj/kernel",
        (1, 0),
    )
    assert keras["model.encoder.layer_norm.weight"] == ("model/encoder/layer_norm/gamma", None)
    assert "proj_out.weight" not in keras  # tied: no Keras variable
    flax = rules.parameter_names(rules.FLAX_PARAMS, CONFIG, with_prefix=False)
    assert flax["model.decoder.embed_tokens.weight"] == ("decoder/embed_tokens/embedding", None)
    assert flax["classifier.weight"] == ("classifier/kernel", (1, 0))
    assert flax["layer_weights"] == ("layer_weights", None)
    state_dict = rules.parameter_names(rules.STATE_DICT, CONFIG, with_prefix=False)
    assert state_dict["model.encoder.conv1.weight"] == ("encoder.conv1.weight", None)
    assert state_dict["proj_out.weight"] == ("proj_out.weight", None)  # PyTorch lists the tied head
    assert state_dict["projector.bias"] == ("projector.bias", None)
    for names in (keras, flax, state_dict):  # one parameter per tensor
        assert len({path for path, _ in names.values()}) == len(names)


def _model_shapes(naming: rules.Naming, with_prefix: bool = True, heads: bool = False) -> dict[str, tuple]:
    """The parameter shapes of a live model named by ``naming``: a seq2seq model, or (``heads``) an encoder
    with a classifier [3, 3] of its own."""
    stored = {
        **canonical_shapes(CONFIG),
        "proj_out.weight": canonical_shapes(CONFIG)["model.decoder.embed_tokens.weight"],
    }
    shapes = {}
    for name, (path, permutation) in rules.parameter_names(naming, CONFIG, with_prefix).items():
        if name in stored and (not heads or name.startswith("model.encoder.")):
            shape = stored[name]
            shapes[path] = shape if permutation is None else tuple(shape[i] for i in permutation)
        elif heads and name == "classifier.weight":
            shapes[path] = (3, 3)
    return shapes


@pytest.mark.parametrize("naming", [rules.STATE_DICT, rules.KERAS_VARIABLES, rules.FLAX_PARAMS])
def test_match_parameters_and_back_is_bit_identical(naming):
    tensors = random_weights(CONFIG)
    shapes = _model_shapes(naming)
    arrays = pretrained.match_parameters(tensors, naming, shapes, CONFIG, source="x", model="M")
    assert set(arrays) == set(shapes) - {"proj_out.weight"}  # the tied head is the embedding (PyTorch)
    assert_bit_identical(pretrained.canonical_tensors(arrays, naming, CONFIG), tensors)


def test_match_parameters_names_each_problem():
    tensors = random_weights(CONFIG)
    shapes = _model_shapes(rules.KERAS_VARIABLES)
    match = lambda tensors, shapes=shapes: pretrained.match_parameters(  # noqa: E731
        tensors, rules.KERAS_VARIABLES, shapes, CONFIG, source="ckpt", model="M"
    )
    with pytest.raises(ValueError, match=r"ckpt has tensors M does not know: \['wibble'\]"):
        match({**tensors, "wibble": np.zeros(1)})
    with pytest.raises(ValueError, match=r"does not know: \['classifier.bias'\]"):  # heads into a seq2seq model
        match({**tensors, "classifier.bias": np.zeros(3, np.float16)})
    with pytest.raises(ValueError, match=r"lacks 1 tensors of M: \['model/decoder/layer_norm/beta'\]"):
        match({k: v for k, v in tensors.items() if k != "model.decoder.layer_norm.bias"})
    bad = {**tensors, "model.encoder.conv1.weight": np.zeros((3, 3, 3), np.float16)}
    with pytest.raises(ValueError, match=r"ckpt: model.encoder.conv1.weight \(model/encoder/conv1/kernel\) has shape"):
        match(bad)


def test_a_classification_model_skips_the_decoder_and_keeps_new_heads(caplog):
    tensors = random_weights(CONFIG)
    shapes = _model_shapes(rules.FLAX_PARAMS, with_prefix=False, heads=True)
    with caplog.at_level(logging.WARNING, logger="weights_bridge.pretrained"):
        arrays = pretrained.match_parameters(tensors, rules.FLAX_PARAMS, shapes, CONFIG, source="x", model="M")
    assert set(arrays) == set(shapes) - {"classifier/kernel"}
    assert "newly initialised" in caplog.text and "classifier/kernel" in caplog.text


def test_dtype_auto_is_what_the_checkpoint_stores(tmp_path):
    def checkpoint(**extra):
        stored = small_config()
        stored.extra.update(extra)
        return pretrained.Pretrained(tmp_path, {}, CONFIG, stored, None)

    assert checkpoint().dtype(None) == "float32"
    assert checkpoint().dtype("auto") == "float32"
    assert checkpoint(torch_dtype="float16").dtype("auto") == "float16"
    assert checkpoint(dtype="bfloat16").dtype("auto") == "bfloat16"
    assert checkpoint(torch_dtype="float16").dtype("bfloat16") == "bfloat16"
    sentinel = object()  # a framework's dtype object goes back to the backend as it is
    assert checkpoint().dtype(sentinel) is sentinel


def test_load_reads_the_directory_and_refuses_an_empty_one(tmp_path):
    tensors = random_weights(CONFIG)
    canonical.save_checkpoint(tmp_path / "c", tensors, CONFIG)
    loaded = pretrained.load(tmp_path / "c", has_heads=False, dropout=0.25)
    assert loaded.config.dropout == 0.25 and loaded.stored_config.dropout == CONFIG.dropout
    assert loaded.generation_config is None and sorted(loaded.tensors) == sorted(tensors)
    assert loaded.model_arguments["source"] == str(tmp_path / "c")
    (tmp_path / "empty").mkdir()
    CONFIG.save_pretrained(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="holds no weights"):
        pretrained.load(tmp_path / "empty", has_heads=False, native="hf_flax")

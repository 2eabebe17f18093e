"""whisper_core.outputs: the output classes every backend re-exports, against transformers' ModelOutput."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from whisper_core import outputs


def test_imports_no_framework():
    frameworks = "{'torch', 'tensorflow', 'jax', 'flax', 'keras'}"
    check = f"import sys, whisper_core.outputs, whisper_core.modeling_rules; assert not {frameworks} & set(sys.modules)"
    assert subprocess.run([sys.executable, "-c", check]).returncode == 0


@pytest.mark.parametrize(
    "name",
    [
        "BaseModelOutput",
        "BaseModelOutputWithPastAndCrossAttentions",
        "Seq2SeqModelOutput",
        "Seq2SeqLMOutput",
        "SequenceClassifierOutput",
    ],
)
def test_fields_are_transformers(name):
    from transformers import modeling_outputs

    ours, theirs = getattr(outputs, name), getattr(modeling_outputs, name)
    assert [f.name for f in dataclasses.fields(ours)] == [f.name for f in dataclasses.fields(theirs)]


def test_access_reads_like_transformers():
    from transformers.modeling_outputs import Seq2SeqLMOutput as Reference

    logits, states = np.ones((1, 2, 3)), (np.zeros((1, 2, 4)), np.ones((1, 2, 4)))
    ours = outputs.Seq2SeqLMOutput(logits=logits, encoder_hidden_states=states)
    theirs = Reference(logits=logits, encoder_hidden_states=states)
    assert list(ours) == list(theirs) == ["logits", "encoder_hidden_states"]
    assert list(ours.keys()) == list(theirs.keys()) and len(ours) == len(theirs) == 2
    assert ours[0] is theirs[0] is logits and ours["encoder_hidden_states"] is states
    assert ours[1:] == theirs[1:] == (states,)
    assert ours.to_tuple() == theirs.to_tuple() and list(ours.items()) == list(theirs.items())
    assert "logits" in ours and "loss" not in ours and ours.loss is None
    with pytest.raises(KeyError):
        ours["loss"]


def test_every_output_class_is_listed():
    assert {cls.__name__ for cls in outputs.OUTPUT_CLASSES} == {
        "BaseModelOutput",
        "BaseModelOutputWithPastAndCrossAttentions",
        "CausalLMOutputWithCrossAttentions",
        "Seq2SeqModelOutput",
        "Seq2SeqLMOutput",
        "SequenceClassifierOutput",
    }


def test_kv_cache_is_a_named_tuple():
    cache = outputs.KVCache(layers=((1, 2, 3, 4),), index=0)
    assert isinstance(cache, tuple) and cache == (((1, 2, 3, 4),), 0) and cache._replace(index=5).index == 5


def test_as_encoder_output_takes_transformers_forms():
    state, hidden, weights = np.ones((1, 3, 2)), (np.zeros((1, 3, 2)),), (np.zeros((1, 1, 3, 3)),)
    out = outputs.BaseModelOutput(state, hidden, weights)
    assert outputs.as_encoder_output(out) is out
    for given in ((state, hidden, weights), [state, hidden, weights, "extra"]):
        converted = outputs.as_encoder_output(given)
        assert converted.to_tuple() == (state, hidden, weights)
    assert outputs.as_encoder_output((state,)).to_tuple() == (state,)
    bare = outputs.as_encoder_output(state, lambda array: 2 * array)  # a bare array, converted by the backend
    assert np.array_equal(bare.last_hidden_state, 2 * state) and bare.keys() == ["last_hidden_state"]
    assert outputs.as_encoder_output(state).last_hidden_state is state


def test_as_encoder_output_reads_other_output_objects_by_name():
    """transformers' own ``BaseModelOutput`` (and any object with the three fields) is read by field name,
    so an absent ``hidden_states`` does not shift ``attentions`` into its place."""
    from transformers.modeling_outputs import BaseModelOutput as TransformersOutput

    state, weights = np.ones((1, 3, 2)), (np.zeros((1, 1, 3, 3)),)
    converted = outputs.as_encoder_output(TransformersOutput(last_hidden_state=state, attentions=weights))
    assert converted.last_hidden_state is state and converted.hidden_states is None
    assert converted.attentions is weights

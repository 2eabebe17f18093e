"""Prefix passes shared by the decodings of one window at several temperatures.

openai-whisper's temperature fallback decodes a window again at each temperature, from the same encoder
states and the same prompt, so every call's prefix pass (the prompt's tokens through the decoder and the
cross-attention keys/values of every encoder frame; base, a 224-token prompt: about 0.2 s on two cores)
gives what the first one gave. Inside :func:`sharing_prefix_passes` a backend keeps its last prefix pass and
hands it to the next call whose inputs are equal. Only inside it: between two ``generate`` calls in general
the weights may change (a fine-tuning loop that evaluates), and nothing is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

Result = TypeVar("Result")

_KEPT: ContextVar[list[tuple[Any, Sequence[Any], Any]] | None] = ContextVar("kept_prefix_passes", default=None)


@contextmanager
def sharing_prefix_passes() -> Iterator[None]:
    """Within this block, :func:`shared_prefix_pass` keeps each model's last prefix pass for its next call with
    equal inputs (a window's next temperature)."""
    token = _KEPT.set([])
    try:
        yield
    finally:
        _KEPT.reset(token)


def shared_prefix_pass(
    owner: Any, inputs: Sequence[Any], same: Callable[[Any, Any], bool], run: Callable[[], Result]
) -> Result:
    """``run()``, the prefix pass of ``owner`` (a model) over ``inputs`` (its arrays: encoder states, prefix
    tokens, padding); inside :func:`sharing_prefix_passes`, the kept result when the last pass of ``owner`` had
    inputs that ``same(kept, given)`` finds equal one by one. Only the last pass is kept: a window's
    temperatures are decoded one after another."""
    kept = _KEPT.get()
    if kept is None:
        return run()
    for kept_owner, kept_inputs, result in kept:
        mine = kept_owner is owner and len(kept_inputs) == len(inputs)
        if mine and all(map(same, kept_inputs, inputs)):
            return result
    result = run()
    kept[:] = [entry for entry in kept if entry[0] is not owner] + [(owner, tuple(inputs), result)]
    return result

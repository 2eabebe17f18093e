"""The int8 Linear of ``compute_type="int8"``: CTranslate2's CPU arithmetic in torch's integer product.

CTranslate2 (faster-whisper) multiplies an int8 weight by quantizing each input row on the fly: one
symmetric factor per row, ``127 / max|row|``, the row rounded to int8, the product summed in int32 and
scaled back by both factors. This module does the same with ``torch._int_mm`` (oneDNN's int8 kernels), so
our int8 model computes what faster-whisper's does, at integer speed. torch's dynamic quantized Linear
(fbgemm), which it replaces, quantizes the whole input with one scale and zero point in 7 bits: on base
(2026-12-06, a 127 s file) it transcribed no faster than float32, and its fifth window ran into a
221-token repetition at temperature 0 where float32 decoded 33 tokens; with this module the file takes
a third of the time and decodes every window at temperature 0.
"""

from __future__ import annotations

import torch
from torch import nn


class Int8Linear(nn.Module):
    """``y = x W^T + b`` with ``W = values * scales[:, None]`` held as int8 ``values [out, in]`` and float32
    ``scales [out]`` (the bridge's :class:`~weights_bridge.quantization.Int8Weight`); inputs and outputs
    float32. CPU only, as ``torch._int_mm`` on integers is."""

    # The buffers that hold the weight (a checkpoint's ``weight`` comes as these, never loaded by name).
    WEIGHT_BUFFERS = ("weight_values", "weight_scales")

    def __init__(self, values: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        if values.dtype != torch.int8 or values.dim() != 2 or scales.shape != values.shape[:1]:
            raise ValueError(f"int8 values [out, in] and scales [out] expected, got {values.shape} {values.dtype}")
        self.out_features, self.in_features = values.shape
        self.register_buffer("weight_values", values)
        self.register_buffer("weight_scales", scales.float())
        self.register_buffer("bias", None if bias is None else bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Written in few ATen calls: at one row (a decode step) each call costs more than the product
        # (base, 512 x 512: 29 us a call against 38 us as eleven calls, 2026-12-06). At 1500 rows (the
        # encoder) the elementwise passes cost more than the product: the peak as ``abs().amax`` (0.06-0.33
        # ms, where ``vector_norm(inf)`` took 1.0-4.0) and both scales applied in place to the product
        # (no [rows, out] table of scales): base's ``fc1`` / ``fc2`` 7.4 / 9.4 -> 5.5 / 5.5 ms (2026-12-07).
        rows = x.reshape(-1, self.in_features).float()
        peak = rows.abs().amax(dim=1, keepdim=True)
        factors = 127.0 / peak.clamp_min_(1e-30)  # finite; an all-zero row stays zero
        quantized = rows.mul(factors).round_().to(torch.int8)  # |value| <= 127 by construction
        product = torch._int_mm(quantized, self.weight_values.t())  # exact int32 sums
        out = product.to(torch.float32).mul_(self.weight_scales).div_(factors)
        if self.bias is not None:
            out = out.add_(self.bias)
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

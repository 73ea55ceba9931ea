"""Qwen2: the LLaMA block with biases on Q/K/V and RoPE in NeoX mode (the
mode comes from the file's architecture through HParams.rope_type)."""
from __future__ import annotations

from . import llama
from .common import GraphInputs


def build_graph(model, cache, inp: GraphInputs, *, flash_attn: bool = True, norm=None):
    return llama.build_graph(model, cache, inp, flash_attn=flash_attn, biases=True, norm=norm)

"""Shared by the tokenizer and chat tests: the SmolLM2 GGUF's metadata, and vocab-only GGUF files."""

import functools
from pathlib import Path

def smollm2_path() -> Path:
    from ggraph.model_files import resolve_model
    return Path(resolve_model("smollm2"))


@functools.lru_cache(maxsize=1)
def smollm2_metadata() -> dict:
    from ggraph.gguf_model import load_gguf
    return load_gguf(smollm2_path()).metadata


def write_vocab_gguf(metadata: dict, path, arch: str = "llama", pre: str | None = None):
    """A GGUF with no tensors, holding the tokenizer keys of metadata (pre replaced if given)."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_tokenizer_model(metadata["tokenizer.ggml.model"])
    w.add_tokenizer_pre(pre or metadata["tokenizer.ggml.pre"])
    w.add_token_list(metadata["tokenizer.ggml.tokens"])
    w.add_token_types(metadata["tokenizer.ggml.token_type"])
    w.add_token_merges(metadata["tokenizer.ggml.merges"])
    w.add_bos_token_id(metadata["tokenizer.ggml.bos_token_id"])
    w.add_eos_token_id(metadata["tokenizer.ggml.eos_token_id"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path

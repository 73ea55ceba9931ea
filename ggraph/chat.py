"""Chat templates from GGUF metadata (tokenizer.chat_template), rendered with jinja2.

The template is a Jinja program written for Hugging Face's apply_chat_template, so it is rendered
the way transformers does: a sandboxed environment with trim_blocks and lstrip_blocks, the loop
controls extension, `raise_exception(msg)`, `strftime_now(fmt)`, a `tojson` that keeps non-ASCII
text, and the variables `messages`, `add_generation_prompt`, `bos_token`, `eos_token`.
"""

from __future__ import annotations

import json
from datetime import datetime

from .errors import GGraphError

__all__ = ["ChatTemplate"]


class _TemplateRaised(Exception):
    pass


def _raise_exception(message):
    raise _TemplateRaised(str(message))


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class ChatTemplate:
    """A compiled chat template. render(messages) -> the prompt text (special tokens as text)."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = ""):
        if not isinstance(source, str) or not source.strip():
            raise GGraphError("chat template: empty or not a string")
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=["jinja2.ext.loopcontrols"])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            self._template = env.from_string(source)
        except TemplateError as e:
            raise GGraphError(f"chat template: syntax error: {e}") from None
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token

    @classmethod
    def from_gguf(cls, metadata: dict) -> "ChatTemplate | None":
        """The template of a GGUF's metadata, or None if the file has none."""
        source = metadata.get("tokenizer.chat_template")
        if source is None:
            return None
        tokens = metadata.get("tokenizer.ggml.tokens") or []

        def text_of(key):
            i = metadata.get(key)
            return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else ""

        return cls(source, bos_token=text_of("tokenizer.ggml.bos_token_id"),
                   eos_token=text_of("tokenizer.ggml.eos_token_id"))

    def render(self, messages: list[dict], add_generation_prompt: bool = True, **extra) -> str:
        """The conversation as prompt text. messages: [{"role": "system"|"user"|"assistant", "content": str}, ...].
        extra variables (tools=..., etc.) are passed to the template as is."""
        if not isinstance(messages, (list, tuple)):
            raise GGraphError(f"chat template: messages must be a list of dicts, got {type(messages).__name__}")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise GGraphError(f"chat template: message {i} must be a dict with a 'role' string, got {m!r}")
        from jinja2 import TemplateError
        try:
            return self._template.render(messages=list(messages), add_generation_prompt=bool(add_generation_prompt),
                                         bos_token=self.bos_token, eos_token=self.eos_token, **extra)
        except _TemplateRaised as e:
            raise GGraphError(f"chat template: {e}") from None
        except (TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            raise GGraphError(f"chat template: rendering failed: {type(e).__name__}: {e}") from None

    def __repr__(self) -> str:
        return f"ChatTemplate({len(self.source)} chars)"

"""Chat templates from GGUF metadata: SmolLM2's real template, against transformers' rendering."""

import pytest

import ggraph as gg
from ggraph.chat import ChatTemplate
from ggraph.tokenizer import Tokenizer
from tok_helpers import smollm2_metadata, smollm2_path

SYSTEM_DEFAULT = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"

CONVERSATIONS = [
    [{"role": "user", "content": "Hi!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke\nwith  two lines."}],
    [{"role": "user", "content": "日本語 🤖 <b>tags</b> {{ not jinja }}"}],
]


@pytest.fixture(scope="module")
def smol_chat():
    return ChatTemplate.from_gguf(smollm2_metadata())


def test_smollm2_template(smol_chat):
    assert smol_chat.bos_token == "<|im_start|>" and smol_chat.eos_token == "<|im_end|>"
    text = smol_chat.render([{"role": "user", "content": "Hi!"}])
    assert text == SYSTEM_DEFAULT + "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    # a system message replaces the default one; no generation prompt when not asked
    text = smol_chat.render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q"},
                             {"role": "assistant", "content": "A"}], add_generation_prompt=False)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"
                    "<|im_start|>assistant\nA<|im_end|>\n")


def test_matches_transformers_apply_chat_template(smol_chat):
    from transformers import AutoTokenizer
    path = smollm2_path()
    ref = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for conv in CONVERSATIONS:
        for gen in (True, False):
            assert smol_chat.render(conv, add_generation_prompt=gen) == \
                ref.apply_chat_template(conv, add_generation_prompt=gen, tokenize=False)


def test_rendered_prompt_tokenizes_with_special_tokens(smol_chat):
    tok = Tokenizer.from_gguf(smollm2_metadata())
    ids = tok.encode(smol_chat.render([{"role": "user", "content": "Hi"}]))
    assert ids.count(1) == 3 and ids.count(2) == 2      # <|im_start|> x3, <|im_end|> x2


def test_template_features():
    src = ("{% for m in messages %}{% if m['role'] == 'bad' %}{{ raise_exception('no bad roles') }}{% endif %}"
           "{{ bos_token }}{{ m['content'] | tojson }}{% if loop.last %}{% break %}{% endif %}{% endfor %}"
           "{{ strftime_now('%Y')[:2] }}{{ eos_token }}")
    t = ChatTemplate(src, bos_token="<s>", eos_token="</s>")
    assert t.render([{"role": "user", "content": "é"}]) == '<s>"é"20</s>'
    with pytest.raises(gg.GGraphError, match="chat template: no bad roles"):
        t.render([{"role": "bad", "content": "x"}])


def test_trim_and_lstrip_blocks():
    t = ChatTemplate("  {% for m in messages %}\n{{ m.content }}\n  {% endfor %}\nend")
    assert t.render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]) == "a\nb\nend"


def test_errors():
    assert ChatTemplate.from_gguf({"tokenizer.ggml.model": "gpt2"}) is None
    with pytest.raises(gg.GGraphError, match="syntax error"):
        ChatTemplate("{% for m in messages %}")
    with pytest.raises(gg.GGraphError, match="empty"):
        ChatTemplate("")
    t = ChatTemplate("{{ messages[0]['content'] + 1 }}")
    with pytest.raises(gg.GGraphError, match="rendering failed"):
        t.render([{"role": "user", "content": "x"}])
    with pytest.raises(gg.GGraphError, match="must be a list"):
        t.render("hello")
    with pytest.raises(gg.GGraphError, match="'role' string"):
        t.render([{"content": "x"}])
    # the sandbox refuses attribute games
    with pytest.raises(gg.GGraphError):
        ChatTemplate("{{ messages.__class__.__mro__[1].__subclasses__() }}").render([])

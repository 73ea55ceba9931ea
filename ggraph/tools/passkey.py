"""`ggraph passkey`: the passkey retrieval task. A random 5-digit key is hidden at a
depth of a long run of filler sentences; the model is then asked for it and answers
greedily. Accuracy by context length and depth, with the decode speed at each length.
"""
from __future__ import annotations

import dataclasses
import json
import re
import sys
import time

import numpy as np

from ..errors import GGraphError

INTRO = ("There is a pass key hidden somewhere in the long text below. Find it and remember it: "
         "you will be asked for it at the end.\n\n")
FILLER = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NEEDLE = " The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "\n\nWhat is the pass key?"
ANSWER_LEAD = " The pass key is"
N_ANSWER = 8          # tokens generated: enough for " 12345."


def _parse_list(text: str, conv, what: str) -> list:
    try:
        vals = [conv(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise GGraphError(f"{what} must be a comma-separated list, got {text!r}") from None
    if not vals:
        raise GGraphError(f"{what} is empty")
    return vals


class PasskeyPrompt:
    """Token pieces of the prompt, assembled for a length and a depth without
    re-tokenizing the whole text."""

    def __init__(self, tokenizer, chat_template=None):
        self.tok = tokenizer
        enc = lambda t: tokenizer.encode(t, add_special=False)     # noqa: E731
        if chat_template is not None:
            marker = "\x00FILL\x00"
            text = chat_template.render([{"role": "user", "content": INTRO + marker + QUESTION}],
                                        add_generation_prompt=True)
            head, tail = text.split(marker)
            self.head = enc(head)
            self.tail = enc(tail + ANSWER_LEAD.lstrip())
        else:
            bos = [tokenizer.bos_id] if tokenizer.add_bos and tokenizer.bos_id is not None else []
            self.head = bos + enc(INTRO.rstrip("\n") + "\n\n")
            self.tail = enc(QUESTION + ANSWER_LEAD)
        self.filler = enc(FILLER)
        self._enc = enc

    def build(self, n_tokens: int, depth: float, key: int, with_position: bool = False):
        """The prompt's ids (and where the key sentence starts, with with_position)."""
        needle = self._enc(NEEDLE.format(key=key))
        room = n_tokens - len(self.head) - len(self.tail) - len(needle) - N_ANSWER
        n_fill = room // len(self.filler)
        if n_fill < 1:
            raise GGraphError(f"a context of {n_tokens} tokens is too short for the passkey prompt")
        before = int(round(depth * n_fill))
        ids = self.head + self.filler * before + needle + self.filler * (n_fill - before) + self.tail
        return (ids, len(self.head) + len(self.filler) * before) if with_position else ids


def run_passkey(session_for, ctxs, depths, trials: int, seed: int, chat: bool, log=None):
    """Rows {ctx, depth, correct, trials, answers}, plus per ctx the prefill and decode speed.
    session_for(ctx) returns a Session able to hold ctx tokens.

    The filler before a key is the same for every key at that depth and for every
    deeper key, so it is evaluated once: the session's state is saved after it (cut
    at a multiple of the prefill chunk, so the pieces are evaluated exactly as one
    long prompt would be) and loaded for each trial."""
    from ..sampling import Sampler
    log = log or (lambda *a: None)
    rng = np.random.default_rng(seed)
    rows, speeds = [], []
    for ctx in ctxs:
        s = session_for(ctx)
        chunk = s.attn.chunk if s.attn.mode != "full" else s.n_batch
        prompt = PasskeyPrompt(s.tokenizer, s.chat_template if chat else None)
        s.timings = type(s.timings)()
        keys = [[int(rng.integers(10000, 100000)) for _ in range(trials)] for _ in depths]
        snap, snap_ids = None, []
        results = {}
        for di in sorted(range(len(depths)), key=lambda i: depths[i]):
            depth = depths[di]
            for key in keys[di]:
                ids, needle_at = prompt.build(ctx, depth, key, with_position=True)
                cut = needle_at // chunk * chunk
                if snap is not None and len(snap_ids) <= cut and ids[:len(snap_ids)] == snap_ids:
                    s.state_load(snap)
                    have = len(snap_ids)
                else:
                    s.reset()
                    have = 0
                if cut > have:
                    if s._long is not None:
                        s._long.split_last = False      # a prefix: evaluated as part of the whole prompt
                    s.eval(ids[have:cut])
                    if s._long is not None:
                        s._long.split_last = True
                    snap, snap_ids = s.state_save(), ids[:cut]
                t0 = time.perf_counter()
                out = s.generate(ids[cut:], N_ANSWER, Sampler(temp=0.0))
                text = s.tokenizer.decode([t for t in out if t not in s.tokenizer.eog_ids])
                m = re.search(r"\d+", text)
                got = m.group(0) if m else ""
                results.setdefault(di, []).append(got == str(key))
                results.setdefault((di, "answers"), []).append(got)
                log(f"ctx {ctx} depth {depth:.2f}: key {key}, answer {text.strip()!r} "
                    f"({'ok' if got == str(key) else 'WRONG'}; prompt {len(ids)} tokens, the last "
                    f"{len(ids) - cut} evaluated for this key, {time.perf_counter() - t0:.1f} s)")
        for di, depth in enumerate(depths):
            rows.append({"ctx": ctx, "depth": depth, "correct": int(sum(results[di])), "trials": trials,
                         "answers": results[(di, "answers")]})
        tm = s.timings
        speeds.append({"ctx": ctx, "decode_t_s": tm.n_gen / tm.t_gen if tm.t_gen else float("nan"),
                       "prefill_t_s": tm.n_prompt / tm.t_prompt if tm.t_prompt else float("nan")})
        del s, snap
    return rows, speeds


def format_table(rows, speeds, depths) -> str:
    head = "| ctx | " + " | ".join(f"depth {d:g}" for d in depths) + " | all | decode t/s | prefill t/s |"
    lines = [head, "|" + "---:|" * (len(depths) + 4)]
    for sp in speeds:
        ctx = sp["ctx"]
        mine = [r for r in rows if r["ctx"] == ctx]
        cells = [f"{r['correct']}/{r['trials']}" for r in mine]
        tot = sum(r["correct"] for r in mine) / max(1, sum(r["trials"] for r in mine))
        lines.append(f"| {ctx} | " + " | ".join(cells) + f" | {100 * tot:.0f}% | {sp['decode_t_s']:.1f} | "
                     f"{sp['prefill_t_s']:.0f} |")
    return "\n".join(lines)


def cmd_passkey(args) -> int:
    from ..model_files import open_model
    from ..session import Session
    from ..types import as_type
    from .run import attn_config, log
    ctxs = _parse_list(args.ctx, int, "--ctx")
    depths = _parse_list(args.depths, float, "--depths")
    if any(c < 64 for c in ctxs):
        raise GGraphError(f"--ctx values must be >= 64, got {args.ctx}")
    if any(not 0.0 <= d <= 1.0 for d in depths):
        raise GGraphError(f"--depths must lie in [0, 1], got {args.depths}")
    if args.trials < 1:
        raise GGraphError(f"--trials must be >= 1, got {args.trials}")
    if args.threads is not None and args.threads < 1:
        raise GGraphError(f"-t must be >= 1, got {args.threads}")
    attn = attn_config(args)
    model = open_model(args.model)
    has_template = model.metadata.get("tokenizer.chat_template") is not None
    chat = args.prompt_style == "chat" or (args.prompt_style == "auto" and has_template)
    if chat and not has_template:
        raise GGraphError(f"{args.model} has no chat template: use --prompt-style plain")

    def session_for(ctx):
        s = Session(model, n_ctx=ctx, n_threads=args.threads, n_batch=args.batch_size,
                    flash_attn=args.flash_attn == "on", kv_type=as_type(args.kv_type), attn=attn)
        s.progress = True if args.progress else None
        return s

    log(f"passkey: {model.path}, attention {attn.mode}, contexts {ctxs}, depths {depths}, {args.trials} trials")
    t0 = time.perf_counter()
    rows, speeds = run_passkey(session_for, ctxs, depths, args.trials, args.seed, chat, log=log)
    log(f"passkey: {time.perf_counter() - t0:.0f} s")
    if args.json:
        print(json.dumps({"model": str(model.path), "attn": dataclasses.asdict(attn),
                          "rows": rows, "speeds": speeds}, indent=2, default=str))
    else:
        print(format_table(rows, speeds, depths))
    sys.stdout.flush()
    return 0


def add_command(sub) -> None:
    from .run import add_common
    p = sub.add_parser("passkey", help="passkey retrieval accuracy by context length and depth",
                       description="Hides a random 5-digit pass key at each depth of a filler text of each "
                                   "length, asks for it, and prints accuracy and decode speed "
                                   "(docs/long-context.md).")
    add_common(p, ctx_default=1024)
    p.set_defaults(ctx_size=None)
    p.add_argument("--ctx", default="1024", help="prompt lengths in tokens, comma-separated (default 1024)")
    p.add_argument("--depths", default="0,0.25,0.5,0.75,1", help="key depths in [0, 1] (default 0,0.25,0.5,0.75,1)")
    p.add_argument("--trials", type=int, default=3, help="keys per length and depth (default 3)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed for the keys (default 0)")
    p.add_argument("--prompt-style", choices=("auto", "plain", "chat"), default="auto",
                   help="the model's chat template (auto: when it has one) or a plain completion prompt")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(fn=cmd_passkey)

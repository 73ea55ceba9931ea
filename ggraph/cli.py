"""The `ggraph` command line. Model commands (generate, chat, bench, ...) join later.

    ggraph info        build and machine facts: SIMD paths, threads, op count
    ggraph ops         every op with its C kernel, params struct and traits
"""
from __future__ import annotations

import argparse
import sys

from .errors import GGraphError


def _cmd_info(args) -> int:
    import ggraph as gg
    from .backend.ffi import OP_IDS
    print(f"ggraph {gg.__version__}")
    print(f"simd: {'AVX2+FMA+F16C' if gg.simd_available() else 'scalar only'}"
          f" ({'on' if gg.get_use_simd() else 'off'})")
    print(f"threads available: {gg.default_threads()}")
    print(f"ops: {len(OP_IDS) - 1}")
    return 0


def _cmd_ops(args) -> int:
    from .backend.ffi import OP_IDS, has_kernel
    from .ops.registry import OPS
    print(f"{'op':16s} {'id':>3s} {'kernel':6s} {'params':22s} traits")
    for name, od in sorted(OPS.items(), key=lambda kv: OP_IDS.get(kv[0], 999)):
        traits = [t for t, on in (("view", od.view), ("inplace", od.inplace),
                                   ("writes-src", od.writes_src is not None),
                                   ("scratch", od.work_size is not None)) if on]
        print(f"{name:16s} {OP_IDS.get(name, -1):3d} {'yes' if has_kernel(name) else 'NO':6s} "
              f"{od.params or '-':22s} {' '.join(traits)}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="ggraph", description="ggml-style computation graphs on the CPU")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="build and machine facts").set_defaults(fn=_cmd_info)
    sub.add_parser("ops", help="list the ops and their kernels").set_defaults(fn=_cmd_ops)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except GGraphError as e:
        print(f"ggraph: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

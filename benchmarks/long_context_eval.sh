#!/bin/sh
# The passkey and decode-speed runs behind docs/long-context.md. Each lane runs its
# commands one after the other, single-threaded (-t 1: on a loaded 2-core machine two
# threads lose more at every barrier than they gain); run the lanes side by side.
#     sh benchmarks/long_context_eval.sh A OUTDIR     (and B, C, D)
set -u
lane=$1
out=${2:-/tmp/infllm-eval}
mkdir -p "$out"
pk() {  # name, then passkey arguments
    name=$1; shift
    python -m ggraph.cli passkey -t 1 --json "$@" > "$out/$name.json" 2> "$out/$name.log"
}
case $lane in
A)
    # --mem-distance 256: SmolLM2 does not read memory keys placed at InfLLM's distance (n_local = 1024)
    pk smollm2_infllm_16k -m smollm2 --ctx 16384 --depths 0.25,0.5,0.75,1 --trials 1 --attn infllm --n-local 1024 \
        --topk 4 --mem-distance 256
    ;;
D)
    pk smollm2_infllm_32k -m smollm2 --ctx 32768 --depths 0.25,0.75 --trials 1 --attn infllm --n-local 1024 \
        --topk 4 --mem-distance 256
    ;;
B)
    pk smollm2_full_1k -m smollm2 --ctx 1024 --depths 0,0.25,0.5,0.75,1 --trials 4
    pk smollm2_window_16k -m smollm2 --ctx 16384 --depths 0.25,0.5,0.75,1 --trials 1 --attn window --n-local 1024
    pk smollm2_full_16k -m smollm2 --ctx 16384 --depths 0.5 --trials 1
    pk smollm2_infllm_16k_scoreweighted -m smollm2 --ctx 16384 --depths 0.25,0.5,0.75,1 --trials 1 --attn infllm \
        --n-local 1024 --topk 4 --mem-distance 256 --repr-weighting score
    ;;
C)
    python benchmarks/long_decode.py -m smollm2 --ctx 4096,16384,32768 -t 1 --json "$out/decode_smollm2.json" \
        > "$out/decode_smollm2.md" 2> "$out/decode_smollm2.log"
    python benchmarks/long_decode.py -m qwen2.5-coder-0.5b --ctx 4096,16384,32768 -t 1 --steps 8 \
        --json "$out/decode_qwen.json" > "$out/decode_qwen.md" 2> "$out/decode_qwen.log"
    ;;
esac
# then, with the machine quieter: more keys (other seeds), Qwen, decode speed again
#   smollm2_infllm_16k_seed1, smollm2_infllm_16k_scoreweighted_seed1: the A / B lines with --seed 1
#   smollm2_infllm_32k_seed1: the D line with --depths 0.5 --seed 1
#   qwen_infllm_8k:  passkey -t 1 -m qwen2.5-coder-0.5b --ctx 8192 --depths 0.5 --trials 1 --attn infllm --n-local 1024
#   qwen_full_8k:    passkey -t 1 -m qwen2.5-coder-0.5b --ctx 8192 --depths 0.5 --trials 1
#   qwen_infllm_16k: passkey -t 1 -m qwen2.5-coder-0.5b --ctx 16384 --depths 0.5 --trials 1 --attn infllm --n-local 1024

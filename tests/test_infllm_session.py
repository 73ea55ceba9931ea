"""window / infllm attention in a Session on the real SmolLM2 file (cut to 2 layers
where the model's answers do not matter): bookkeeping of the window, the initial
tokens and the blocks, graph reuse, state, the spill files, bad knobs, and a short
passkey run with the whole model."""
import copy
import dataclasses
import itertools
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ggraph as gg
from ggraph.cli import main
from ggraph.infllm import AttnConfig
from ggraph.model_files import open_model
from ggraph.session import Session


@pytest.fixture(scope="module")
def full_model():
    return open_model("smollm2")


@pytest.fixture(scope="module")
def model(full_model):
    m = copy.copy(full_model)
    m.hparams = dataclasses.replace(m.hparams, n_layer=2)
    return m


def tokens(n, seed=0):
    return np.random.default_rng(seed).integers(100, 20000, n).tolist()


SMALL = dict(n_init=5, n_local=32, block_size=8, topk=2, repr_topk=3, chunk=16)


def layer0_raw_kv(model, toks):
    """(n, hkv, d) keys (before RoPE) and values of layer 0: they depend on the token only."""
    hp, w = model.hparams, model.tensors
    ctx = gg.Context()
    ids = ctx.from_numpy(np.asarray(toks, np.int32))
    x = gg.mul(gg.rms_norm(gg.get_rows(w["token_embd.weight"], ids), hp.rms_eps), w["blk.0.attn_norm.weight"])
    k = gg.mul_mat(w["blk.0.attn_k.weight"], x).set_output()
    v = gg.mul_mat(w["blk.0.attn_v.weight"], x).set_output()
    gg.Graph().build_forward_expand(k).build_forward_expand(v).compute(2)
    shape = (len(toks), hp.n_head_kv, hp.head_dim)
    return k.numpy().reshape(shape), v.numpy().reshape(shape)


def test_window_without_eviction_equals_full_attention(model):
    toks = tokens(150)
    ref = Session(model, n_ctx=256, flash_attn=False).eval(toks, all_logits=True)
    s = Session(model, n_ctx=256, attn=AttnConfig(mode="window", n_init=4, n_local=192, block_size=64, chunk=40))
    got = s.eval(toks, all_logits=True)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["infllm", "window"])
def test_eviction_moves_whole_blocks_of_the_oldest_tokens(model, mode):
    cfg = AttnConfig(mode=mode, **SMALL)
    s = Session(model, n_ctx=512, attn=cfg)
    toks = tokens(150, seed=1)
    s.eval(toks[:100])
    for t in toks[100:]:
        s.eval([t])
    lc = s.cache
    assert lc.n_past == 150 and lc.init_count == cfg.n_init
    assert cfg.n_local - cfg.block_size < lc.local_count() <= cfg.n_local + 1
    in_window = np.sort(lc.slot_pos[lc.slot_pos >= 0])
    np.testing.assert_array_equal(in_window, np.arange(150 - len(in_window), 150))    # the newest, no gap
    moved = 150 - len(in_window) - cfg.n_init
    assert moved % cfg.block_size == 0
    keys, values = layer0_raw_kv(model, toks)
    m = lc.mem
    np.testing.assert_allclose(m.ring(m.init_k[0])[:cfg.n_init], keys[:cfg.n_init], atol=2e-2, rtol=2e-3)
    init_v = m.ring_t(m.init_vt[0])[:, :cfg.n_init].T.reshape(cfg.n_init, *values.shape[1:])
    np.testing.assert_allclose(init_v, values[:cfg.n_init], atol=2e-2, rtol=2e-3)
    if mode == "window":
        assert lc.n_blocks == 0
        return
    assert lc.n_blocks == moved // cfg.block_size
    for b in range(lc.n_blocks):
        first = cfg.n_init + b * cfg.block_size
        blk = keys[first:first + cfg.block_size]                                    # (bs, hkv, d)
        np.testing.assert_allclose(m.blocks(m.mem_k[0])[b], blk.transpose(1, 0, 2), atol=2e-2, rtol=2e-3,
                                   err_msg=f"block {b} keys")
        np.testing.assert_allclose(m.blocks(m.mem_v[0])[b], values[first:first + cfg.block_size].transpose(1, 0, 2),
                                   atol=2e-2, rtol=2e-3, err_msg=f"block {b} values")
        # uniform weighting: the representative is the mean of repr_topk of the block's keys
        rep = m.reprs(0)[b]
        for h in range(model.hparams.n_head_kv):
            best = min(np.abs(blk[list(c), h].astype(np.float32).mean(0) - rep[h]).max()
                       for c in itertools.combinations(range(cfg.block_size), cfg.repr_topk))
            assert best < 1e-2, f"block {b} head {h}: representative is no mean of {cfg.repr_topk} of its keys"


def test_decode_reuses_one_graph(model):
    s = Session(model, n_ctx=512, attn=AttnConfig(mode="infllm", **SMALL))
    s.eval(tokens(60))
    s.eval([7])
    builds = s.timings.n_graph_builds
    for t in tokens(40, seed=2):           # blocks move out of the window on the way
        s.eval([t])
    assert s.cache.n_blocks > 3
    assert s.timings.n_graph_builds == builds, "a decode step rebuilt its graph"


def test_memory_growth_keeps_the_blocks(model, tmp_path):
    cfg = dict(SMALL, block_size=4, n_local=16, chunk=8)
    ram = Session(model, n_ctx=1024, attn=AttnConfig(mode="infllm", **cfg))
    spill = Session(model, n_ctx=1024, attn=AttnConfig(mode="infllm", spill_dir=str(tmp_path), **cfg))
    toks = tokens(220, seed=3)
    ram.eval(toks[:120])
    m = ram.cache.mem
    cap0 = m.cap
    before = m.blocks(m.mem_k[1])[:ram.cache.n_blocks].copy()
    out_ram = ram.eval(toks[120:], all_logits=True)
    assert m.cap > cap0, "the test should cross a growth step"
    np.testing.assert_array_equal(m.blocks(m.mem_k[1])[:len(before)], before)
    spill.eval(toks[:120])
    out_spill = spill.eval(toks[120:], all_logits=True)
    np.testing.assert_array_equal(out_spill, out_ram)
    files = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path) for f in fs]
    assert len(files) == 2 * model.hparams.n_layer
    assert all(os.path.getsize(f) == spill.cache.mem.cap * spill.cache.mem._block_bytes() for f in files)
    del spill
    import gc
    gc.collect()
    assert not any(fs for _, _, fs in os.walk(tmp_path)), "spill files outlive the session"


def test_state_round_trip(model):
    cfg = AttnConfig(mode="infllm", **SMALL)
    a = Session(model, n_ctx=512, attn=cfg)
    a.eval(tokens(90, seed=4))
    state = a.state_save()
    n_blocks = a.cache.n_blocks
    follow = tokens(12, seed=5)
    want = [a.eval([t]) for t in follow]
    b = Session(model, n_ctx=512, attn=cfg)
    b.eval(tokens(30, seed=6))              # something else in it first
    b.state_load(state)
    assert (b.cache.n_past, b.cache.n_blocks) == (90, n_blocks) and n_blocks > 0
    got = [b.eval([t]) for t in follow]
    np.testing.assert_array_equal(np.array(got), np.array(want))


def test_state_from_another_mode_or_config_is_refused(model):
    cfg = AttnConfig(mode="infllm", **SMALL)
    a = Session(model, n_ctx=512, attn=cfg)
    a.eval(tokens(40))
    state = a.state_save()
    other = Session(model, n_ctx=512, attn=dataclasses.replace(cfg, topk=3))
    with pytest.raises(gg.GGraphError, match="another attention config: topk 2"):
        other.state_load(state)
    full = Session(model, n_ctx=512)
    with pytest.raises(gg.GGraphError, match="window/infllm attention"):
        full.state_load(state)
    full.eval(tokens(10))
    with pytest.raises(gg.GGraphError, match="saved with full attention"):
        a.state_load(full.state_save())
    bad = bytearray(state)
    bad[-1] ^= 0xFF
    with pytest.raises(gg.GGraphError, match="checksum"):
        a.state_load(bytes(bad))
    with pytest.raises(gg.GGraphError, match="truncated"):
        a.state_load(state[:-5])


def test_remove_from_only_inside_the_window(model):
    s = Session(model, n_ctx=512, attn=AttnConfig(mode="infllm", **SMALL))
    s.eval(tokens(100))
    s.cache.remove_from(0, 95)
    assert s.cache.n_used() == 95 and s.cache.local_count() <= SMALL["n_local"]
    s.eval([5])                              # goes on from position 95
    assert int(s.cache.slot_pos.max()) == 95
    with pytest.raises(gg.GGraphError, match="left the local window"):
        s.cache.remove_from(0, 10)
    with pytest.raises(gg.GGraphError, match="one sequence"):
        s.eval([5], seq_id=1)


@pytest.mark.parametrize("kw,message", [
    (dict(mode="sparse"), "mode must be one of full, window, infllm"),
    (dict(n_local=100, block_size=64), "multiple of block_size"),
    (dict(topk=0), "topk must be an integer >= 1"),
    (dict(n_init=-1), "n_init must be an integer >= 0"),
    (dict(repr_topk=200, block_size=128), "repr_topk must be <= block_size"),
    (dict(chunk=1.5), "chunk must be an integer"),
    (dict(score="max"), "score must be one of"),
    (dict(spill_dir="/no/such/dir"), "an existing directory"),
    (dict(mem_distance=-1), "mem_distance must be None or an integer >= 0"),
])
def test_bad_knobs(kw, message):
    with pytest.raises(gg.GGraphError, match=message):
        AttnConfig(**kw)


def test_session_wants_an_attn_config(model):
    with pytest.raises(gg.GGraphError, match="AttnConfig"):
        Session(model, attn="infllm")


@pytest.mark.parametrize("argv,message", [
    (("generate", "-p", "hi", "--attn", "infllm", "--n-local", "100", "--block-size", "64"), "multiple of block_size"),
    (("passkey", "--attn", "infllm", "--topk", "0"), "topk must be an integer >= 1"),
    (("passkey", "--ctx", "1024,x"), "--ctx must be a comma-separated list"),
    (("passkey", "--depths", "0,2"), "--depths must lie in [0, 1]"),
    (("bench", "--attn", "window", "--infllm-spill", "/no/such/dir"), "an existing directory"),
    (("bench", "--attn", "infllm", "--profile"), "--profile reads the full-attention KV cache"),
])
def test_cli_errors_are_one_line(capsys, argv, message):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc != 0
    lines = [ln for ln in err.splitlines() if ln.startswith("ggraph: error:")]
    assert len(lines) == 1 and message in lines[0], err


def test_generate_with_infllm_cli(capsys):
    rc = main(["generate", "-p", "The capital of France is", "-n", "6", "--temp", "0", "--attn", "infllm",
               "--n-init", "4", "--n-local", "64", "--block-size", "16", "--topk", "2", "--chunk", "32"])
    out, err = capsys.readouterr()
    assert rc == 0 and "Paris" in out, (out, err)


def test_passkey_short_run_retrieves_from_block_memory(capsys):
    """1.5k tokens, a 256-token window: the key sits ~1000 tokens back, in block memory."""
    argv = ["passkey", "--ctx", "1536", "--depths", "0.3", "--trials", "1", "--seed", "1", "--json",
            "--attn", "infllm", "--n-init", "32", "--n-local", "256", "--block-size", "32", "--topk", "8",
            "--chunk", "256"]
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, err
    import json
    res = json.loads(out)
    row = res["rows"][0]
    assert row["correct"] == 1, (row, err)
    import re
    n_prompt = int(re.search(r"prompt (\d+) tokens", err).group(1))
    assert 1400 < n_prompt <= 1536


@pytest.mark.slow
def test_passkey_window_baseline_fails_where_infllm_retrieves(capsys):
    """The contrast behind the CI run: the same prompt with the window alone loses the key."""
    argv = ["passkey", "--ctx", "1536", "--depths", "0.3", "--trials", "1", "--seed", "1", "--json",
            "--attn", "window", "--n-init", "32", "--n-local", "256", "--block-size", "32", "--chunk", "256"]
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, err
    import json
    assert json.loads(out)["rows"][0]["correct"] == 0, err


@pytest.fixture(scope="module")
def one_layer(full_model):
    m = copy.copy(full_model)
    m.hparams = dataclasses.replace(m.hparams, n_layer=1)
    return m


@settings(max_examples=15, deadline=None)
@given(mode=st.sampled_from(["infllm", "window"]), n_init=st.integers(0, 5), bs=st.sampled_from([2, 4]),
       blocks_in_window=st.integers(1, 3), sizes=st.lists(st.integers(1, 12), min_size=1, max_size=8))
def test_window_bookkeeping_holds_for_any_batching(one_layer, mode, n_init, bs, blocks_in_window, sizes):
    """Whatever the batch sizes: every position is in exactly one place (initial tokens,
    a block, or the window), the window holds the newest tokens in order in its first
    slots, and no query is further than n_local + chunk from a window key."""
    cfg = AttnConfig(mode=mode, n_init=n_init, n_local=bs * blocks_in_window, block_size=bs, topk=2,
                     repr_topk=1, chunk=6)
    s = Session(one_layer, n_ctx=256, attn=cfg)
    lc = s.cache
    n = 0
    for k, size in enumerate(sizes):
        s.eval(tokens(size, seed=k))
        n += size
        local = lc.slot_pos[lc.slot_pos >= 0]
        what = f"{cfg} after {sizes[:k + 1]}"
        np.testing.assert_array_equal(lc.slot_pos[:len(local)], np.arange(n - len(local), n), err_msg=what)
        assert lc.n_past == n, what
        assert lc.init_count == min(n_init, n - len(local)), what
        in_blocks = lc.n_blocks * bs
        if mode == "infllm":
            assert lc.init_count + in_blocks + len(local) == n, what
        else:
            assert lc.n_blocks == 0, what
        assert len(local) <= cfg.n_local + cfg.chunk, what

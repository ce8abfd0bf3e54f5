"""Batched textual inversion, generation from learned tokens, semantic sensitivity maps.

A random, tiny SD-shaped pipeline (VAE 16->32, 16 px images, 8x8 latents, 1-layer CLIP text
encoder of width 32, UNet 32/64 with cross-attention) is built once and saved; each test loads
it fresh, because training installs tokens into its tokenizer and text encoder.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
MASKS = np.zeros((3, 16, 16), bool)
MASKS[:, 4:12, 3:10] = True
OPT = {"lr": 5e-4, "weight_decay": 1e-2}  # the paper's lr and the diffusers example's weight decay


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from diffsec.models import t2i
    from diffsec.models.tokenizer import clip_tokenizer

    root = tmp_path_factory.mktemp("ti")
    torch.manual_seed(0)
    pipe = t2i.make_pipeline(
        t2i.build_vae([16, 32], size=16), t2i.build_text_encoder(32, 1, 2), clip_tokenizer(root / "tok"),
        t2i.build_unet([32, 64], [False, True], sample_size=8, cross_dim=32, head_dim=16),
        t2i.build_scheduler())
    return t2i.save_pipeline(pipe, root / "pipe")


def load(model_dir):
    from diffsec.models.t2i import load_pipeline

    return load_pipeline(str(model_dir))


def run(name, objective="nominal", sampler="uniform", seed=0, n=3, **kw):
    from diffsec.personalize.runs import SPEC_DEFAULTS, TIRun

    return TIRun(name, IMAGES[:n], kw.pop("noun", "dog"), MASKS[:n], sampler, objective,
                 kw.pop("dilation", 16), seed, kw.pop("norm", SPEC_DEFAULTS["norm"]),
                 kw.pop("flip_p", SPEC_DEFAULTS["flip_p"]), **kw)


def train(model_dir, runs, steps):
    from diffsec.personalize.textual_inversion import BatchedTextualInversion, TIConfig

    tr = BatchedTextualInversion(load(model_dir), runs, TIConfig(steps, **OPT))
    for _ in range(steps):
        tr.step()
    return tr


def test_row_adamw_is_torch_adamw_per_row():
    from diffsec.personalize.optim import RowAdamW

    torch.manual_seed(0)
    grads = torch.randn(6, 3, 8)
    p = torch.randn(3, 8, requires_grad=True)
    ref = p.detach()[1:2].clone().requires_grad_(True)
    opt, torch_opt = RowAdamW(p, 5e-4), torch.optim.AdamW([ref], 5e-4, weight_decay=1e-2)
    for i, g in enumerate(grads):
        p.grad, ref.grad = g.clone(), g[1:2].clone()
        frozen = p.detach()[2].clone()
        opt.step(rows=torch.tensor([True, True, i % 2 == 0]))  # row 2 sits out odd steps
        torch_opt.step()
        torch.testing.assert_close(p.detach()[1:2], ref.detach(), rtol=0, atol=1e-7)
        if i % 2:
            assert torch.equal(p.detach()[2], frozen)
    assert opt.steps.tolist() == [6, 6, 3]
    # Row 1 does not feel row 0's gradients.
    q = p.detach().clone().requires_grad_(True)
    o2 = RowAdamW(q, 5e-4)
    o2.load_state_dict(opt.state_dict())
    q.grad = torch.randn(3, 8)
    q.grad[0] *= 1e3
    r = p.detach().clone().requires_grad_(True)
    o3 = RowAdamW(r, 5e-4)
    o3.load_state_dict(opt.state_dict())
    r.grad = q.grad.clone()
    r.grad[0] = 0
    o2.step(), o3.step()
    assert torch.equal(q.detach()[1:], r.detach()[1:])


def test_only_new_rows_train(model_dir):
    base = load(model_dir)
    before = {k: {n: t.clone() for n, t in getattr(base, k).state_dict().items()}
              for k in ("text_encoder", "unet", "vae")}
    from diffsec.personalize.textual_inversion import BatchedTextualInversion, TIConfig

    pipe = load(model_dir)
    tr = BatchedTextualInversion(pipe, [run("a"), run("b", "lm", "high:600", seed=1)], TIConfig(3, **OPT))
    for _ in range(3):
        tr.step()
    trainable = [n for m in (pipe.text_encoder, pipe.unet, pipe.vae)
                 for n, p in m.named_parameters() if p.requires_grad]
    assert len(trainable) == 1 and trainable[0].endswith("token_embedding.extra"), trainable
    assert pipe.text_encoder.get_input_embeddings().base.weight.grad is None
    for k in before:
        after = getattr(pipe, k).state_dict()
        for n, t in before[k].items():
            key = n if n in after else n.replace("token_embedding.weight", "token_embedding.base.weight")
            assert torch.equal(after[key], t), f"{k}.{n} changed"
    moved = (tr.table.extra.detach() - tr.init).abs().amax(1)
    assert (moved > 1e-4).all()
    # Init is the class noun's embedding.
    ids = pipe.tokenizer("dog", add_special_tokens=False).input_ids
    torch.testing.assert_close(tr.init[0], before["text_encoder"][
        [n for n in before["text_encoder"] if n.endswith("token_embedding.weight")][0]][ids].mean(0))


def test_batched_equals_solo_across_defenses(model_dir):
    mixed = [run("a", "nominal", "uniform", 1), run("b", "lm", "high:600", 2, n=2, noun="stuffed animal"),
             run("c", "im", "power:2", 3, dilation=24), run("d", "lim", "tanh:5", 4, norm="masked"),
             run("e", "zm", "low:500", 5)]
    batch = train(model_dir, mixed, 4)
    for k in (0, 1, 3):
        solo = train(model_dir, [mixed[k]], 4)
        name = mixed[k].name
        torch.testing.assert_close(solo.embeddings()[name], batch.embeddings()[name], rtol=0, atol=1e-6)
        np.testing.assert_allclose(solo.losses[0], batch.losses[k], rtol=1e-5)
    # The runs really differ (own draws, own objectives).
    assert len({round(v[0], 6) for v in batch.losses}) == len(mixed)


def test_lower_precision_frozen_model_tracks_float32_and_keeps_learned_rows_float32(model_dir):
    """--dtype bfloat16 (float16's CPU stand-in: same code path) casts only the VAE and UNet: the
    learned rows, AdamW and the losses stay float32, and a few steps land near the float32 run."""
    from diffsec.errors import DiffsecError
    from diffsec.personalize.textual_inversion import BatchedTextualInversion, TIConfig

    runs = [run("a", "nominal", "uniform", 1), run("b", "lm", "high:600", 2)]
    ref = train(model_dir, runs, 3)
    low = BatchedTextualInversion(load(model_dir), runs, TIConfig(3, **OPT, dtype="bfloat16"))
    for _ in range(3):
        low.step()
    assert low.unet.dtype == low.vae.dtype == torch.bfloat16
    assert low.text.dtype == low.table.extra.dtype == torch.float32
    assert low.cfg.describe()["frozen_dtype"] == "bfloat16"
    # bfloat16 keeps 8 bits of mantissa: the losses agree to ~1e-2, the rows (after 3 Adam steps of
    # ~lr each from the same start) to a small fraction of how far they moved
    np.testing.assert_allclose(np.array(low.losses), np.array(ref.losses), rtol=5e-2, atol=1e-3)
    for name, e in ref.embeddings().items():
        moved = (e - ref.init[[r.name for r in runs].index(name)]).abs().max()
        assert (low.embeddings()[name] - e).abs().max() < moved
    with pytest.raises(DiffsecError, match="dtype 'int8'"):
        TIConfig(3, **OPT, dtype="int8")


def test_step_descends(model_dir):
    from diffsec.personalize.textual_inversion import BatchedTextualInversion, TIConfig

    # A fixed sample (same draws every step): the loss is a deterministic function of e.
    tr = BatchedTextualInversion(load(model_dir), [run("a", n=1, flip_p=0.0)], TIConfig(12, **OPT))
    state = tr.gens[0].get_state()
    losses = []
    for i in range(12):
        e0 = tr.table.extra.detach().clone()
        tr.gens[0].set_state(state)
        losses.append(float(tr.step()[0]))
        if i == 0:  # Adam's first step: -lr * g / (|g| + eps), after decoupled weight decay
            g = tr.table.extra.grad
            d = tr.table.extra.detach() - e0 * (1 - 5e-4 * 1e-2)
            big = g.abs() > 1e-6
            assert (torch.sign(d[big]) == -torch.sign(g[big])).all()
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses


def test_resume_after_kill(model_dir, tmp_path):
    from diffsec.personalize.textual_inversion import TIConfig, train_textual_inversion
    from diffsec.resume import Checkpoint

    def runs():
        return [run("a", "lm", "high:500", 1), run("b", "nominal", "uniform", 2)]

    cfg = TIConfig(5, **OPT)
    whole = train_textual_inversion(load(model_dir), runs(), cfg)

    class Kill(Exception):
        pass

    def die(step, losses):
        if step == 3:
            raise Kill

    def ckpt(key):
        return Checkpoint(tmp_path / "ckpt", key, every=2)

    with pytest.raises(Kill):
        train_textual_inversion(load(model_dir), runs(), cfg, ckpt=ckpt("a"), on_step=die)
    again = train_textual_inversion(load(model_dir), runs(), cfg, ckpt=ckpt("a"))
    assert again.resumed_from == 2
    for k in whole.embeddings:
        assert torch.equal(again.embeddings[k], whole.embeddings[k])
    assert np.array_equal(again.losses, whole.losses)
    # A checkpoint of other settings (another key) is not resumed.
    assert (tmp_path / "ckpt").is_dir()
    other = train_textual_inversion(load(model_dir), runs(), TIConfig(5, 1e-3, 1e-2), ckpt=ckpt("b"))
    assert other.resumed_from == 0


def test_generate_from_tokens(model_dir, tmp_path):
    from diffsec.personalize.generate import GenerateConfig, generate_ti, load_templates
    from diffsec.personalize.tokens import load_embeddings, save_embeddings
    from diffsec.resume import Checkpoint

    torch.manual_seed(1)
    vecs = {"x": torch.randn(32) * 0.02, "y": torch.randn(32) * 0.02}
    meta = {"x": {"token": "<x>", "class": "dog"}, "y": {"token": "<y>", "class": "stuffed animal"}}
    save_embeddings(tmp_path / "e.safetensors", vecs, meta)
    vecs2, meta2 = load_embeddings(tmp_path / "e.safetensors")
    assert meta2 == meta and all(torch.equal(vecs[k], vecs2[k]) for k in vecs)
    (tmp_path / "prompts.json").write_text(json.dumps(
        {"object_prompts": ["a {0} {1} in the jungle", "a {0} {1} on the beach", "a red {0} {1}"]}))
    templates = load_templates(tmp_path / "prompts.json")
    cfg = GenerateConfig(per_prompt=2, steps=2, guidance=3.0, sampler="dpm", batch=5, with_class=True)
    out = generate_ti(load(model_dir), vecs2, meta2, templates, cfg, 0, Checkpoint(tmp_path / "ck", "a", every=1))
    assert out["images"].shape == (12, 16, 16, 3) and out["images"].dtype == np.uint8
    assert out["run"].tolist() == ["x"] * 6 + ["y"] * 6
    assert out["template"].tolist() == [0, 0, 1, 1, 2, 2] * 2
    assert out["class_name"].tolist() == ["dog"] * 6 + ["stuffed animal"] * 6
    assert out["prompt"][0] == "a <x> dog in the jungle" and out["prompt"][-1] == "a red <y> stuffed animal"
    # A run's images do not depend on its batch companions.
    alone = generate_ti(load(model_dir), {"y": vecs2["y"]}, meta2, templates, cfg, 0)
    assert np.abs(alone["images"].astype(int) - out["images"][6:].astype(int)).max() <= 1
    # Finished batches (all but the last: 10 of 12 images) are reused by a run of the same key,
    # even with other steps; under another key the checkpoint is discarded.
    steps3 = GenerateConfig(**{**vars(cfg), "steps": 3})
    again = generate_ti(load(model_dir), vecs2, meta2, templates, steps3, 0, Checkpoint(tmp_path / "ck", "a", every=1))
    assert np.array_equal(again["images"][:10], out["images"][:10])
    assert not np.array_equal(again["images"][10:], out["images"][10:])
    fresh = generate_ti(load(model_dir), vecs2, meta2, templates, steps3, 0, Checkpoint(tmp_path / "ck", "b", every=1))
    assert not np.array_equal(fresh["images"][:10], out["images"][:10])


def test_semantic_sensitivity_maps(model_dir, tmp_path):
    from diffsec.personalize.ssm import semantic_sensitivity_maps, sensitivity_figure, token_position
    from diffsec.personalize.tokens import install_tokens

    pipe = load(model_dir)
    install_tokens(pipe.text_encoder, pipe.tokenizer, ["<c>"], torch.randn(1, 32) * 0.02)
    prompt = "a <c> laying on top of a grass covered field"
    n = token_position(pipe.tokenizer, prompt, "<c>")
    assert n == 2
    own = pipe.text_encoder.get_input_embeddings()(torch.tensor([[pipe.tokenizer.convert_tokens_to_ids("<c>")]]))[0]
    same = semantic_sensitivity_maps(pipe, IMAGES[0], prompt, n, [200, 600], replacements=own.repeat(3, 1))
    rand = semantic_sensitivity_maps(pipe, IMAGES[0], prompt, n, [200, 600], draws=4,
                                     generator=torch.Generator().manual_seed(0), upsample=True)
    assert same.shape == (2, 8, 8) and rand.shape == (2, 16, 16)
    assert same.abs().max() == 0
    assert (rand > 0).all()
    maps = sensitivity_figure(tmp_path / "fig3.png", pipe, {"clean": IMAGES[0], "poisoned": IMAGES[1]},
                              {"before": torch.zeros(32), "after": own[0]}, "<c>", prompt, (300, 700), 2)
    assert set(maps) == {(i, e) for i in ("clean", "poisoned") for e in ("before", "after")}
    assert (tmp_path / "fig3.png").stat().st_size > 0


def test_run_spec_errors(tmp_path):
    from diffsec.errors import DiffsecError
    from diffsec.imageset import save_imageset
    from diffsec.personalize.runs import parse_runs

    npz = save_imageset(tmp_path / "c.npz", IMAGES, masks=MASKS.astype(np.uint8),
                        concept=np.array(["dog", "dog", "can"]), class_name=np.array(["dog", "dog", "can"]))
    nomask = save_imageset(tmp_path / "n.npz", IMAGES)
    runs, files = parse_runs([{"name": "d", "images": str(npz), "concept": "dog", "objective": "lm"},
                              {"name": "c", "images": str(nomask), "indices": [2], "class": "can",
                               "objective": "lim", "masks_from": str(npz)}])
    assert [len(r.images) for r in runs] == [2, 1] and runs[0].class_noun == "dog"
    assert runs[1].masks.shape == (1, 16, 16) and runs[0].token == "<d>" and len(files) == 2
    bad = [({"objective": "xx"}, "objective"), ({"sampler": "mid:3"}, "sampler"),
           ({"images": str(tmp_path / "none.npz")}, "does not exist"), ({"indices": [7]}, "indices"),
           ({"images": str(nomask), "objective": "lm"}, "masks"), ({"colour": 1}, "unknown fields"),
           ({"name": "a b"}, "names"), ({"concept": "cat"}, "no images")]
    for change, msg in bad:
        spec = {"name": "r", "images": str(npz), "class": "dog", **change}
        with pytest.raises(DiffsecError, match=msg):
            parse_runs([spec])
    with pytest.raises(DiffsecError, match="duplicate"):
        parse_runs([{"name": "r", "images": str(npz), "class": "dog"},
                    {"name": "R", "images": str(npz), "class": "dog"}])


def test_cli_end_to_end(model_dir, tmp_path):
    from safetensors.torch import load_file

    from diffsec.cli.main import main
    from diffsec.imageset import load_imageset, save_imageset
    from diffsec.training import read_curves

    npz = save_imageset(tmp_path / "concepts.npz", IMAGES, masks=MASKS.astype(np.uint8),
                        concept=np.array(["dog", "dog", "can"]), class_name=np.array(["dog", "dog", "can"]))
    specs = [{"name": "dog-szt", "images": str(npz), "concept": "dog", "sampler": "high:500",
              "objective": "lm", "dilation": 16, "seed": 3},
             {"name": "can-ti", "images": str(npz), "concept": "can"}]
    (tmp_path / "runs.json").write_text(json.dumps(specs))
    out = tmp_path / "ti"
    common = ["--threads", "1", "--device", "cpu"]
    assert main(["train-ti", "--model", str(model_dir), "--runs", str(tmp_path / "runs.json"),
                 "--steps", "3", "--ckpt-every", "2", "--out", str(out), *common]) == 0
    emb = load_file(str(out / "embeddings.safetensors"))
    assert set(emb) == {"dog-szt", "can-ti"} and emb["dog-szt"].shape == (32,)
    assert (out / "loss.png").is_file() and (out / "manifest.json").is_file()
    assert (out / "loss.csv").read_text().count("\n") == 1 + 2 * 3
    curves = read_curves(out / "loss.csv")
    assert set(curves) == {"dog-szt", "can-ti"} and curves["dog-szt"][0] == [1, 2, 3]
    assert not (tmp_path / "ti.ckpt").exists()
    (tmp_path / "prompts.json").write_text(json.dumps({"object_prompts": ["a {0} {1}", "a {0} {1} in snow"]}))
    gen = tmp_path / "gen"
    assert main(["generate-ti", "--model", str(model_dir), "--embeddings", str(out), "--prompts",
                 str(tmp_path / "prompts.json"), "--per-prompt", "2", "--steps", "2", "--guidance", "2",
                 "--sampler", "ddim", "--out", str(gen), *common]) == 0
    d = load_imageset(gen / "images.npz")
    assert len(d["images"]) == 8 and sorted(set(d["run"])) == ["can-ti", "dog-szt"]
    assert "a <can-ti> can in snow" in d["prompt"].tolist()
    assert not (tmp_path / "gen.ckpt").exists()
    assert main(["ssm-ti", "--model", str(model_dir), "--embeddings", str(out), "--run", "dog-szt",
                 "--clean", str(npz), "--poisoned", str(npz), "--index", "1", "--draws", "2",
                 "--timesteps", "[300, 700]", "--out", str(tmp_path / "ssm"), *common]) == 0
    with np.load(tmp_path / "ssm" / "maps.npz") as z:
        assert z["maps"].shape == (2, 2, 2, 8, 8)  # images x (before, after) x timesteps x h x w
    # Bad input: exit 2 and nothing written (no artifact, no checkpoint, no temp dirs).
    specs[1]["objective"] = "bogus"
    (tmp_path / "bad.json").write_text(json.dumps(specs))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["train-ti", "--model", str(model_dir), "--runs", str(tmp_path / "bad.json"),
                 "--steps", "2", "--out", str(tmp_path / "bad"), *common]) == 2
    specs[1].update(objective="nominal", images=str(tmp_path / "missing.npz"))
    (tmp_path / "bad.json").write_text(json.dumps(specs))
    assert main(["train-ti", "--model", str(model_dir), "--runs", str(tmp_path / "bad.json"),
                 "--steps", "2", "--out", str(tmp_path / "bad"), *common]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_sets_grid_train_and_eval(model_dir, tmp_path):
    """train-ti --sets: one run per (concept, set), tagged; eval-ti reads the tags back."""
    from safetensors.torch import load_file

    from diffsec.cli.main import main
    from diffsec.imageset import save_imageset

    meta = dict(masks=MASKS.astype(np.uint8), concept=np.array(["dog", "dog", "can"]),
                class_name=np.array(["dog", "dog", "can"]))
    clean = save_imageset(tmp_path / "clean.npz", IMAGES, **meta)
    shifted = save_imageset(tmp_path / "adm.npz", (IMAGES.astype(int) + 8).clip(0, 255).astype(np.uint8), **meta)
    out, common = tmp_path / "ti", ["--threads", "1", "--device", "cpu"]
    assert main(["train-ti", "--model", str(model_dir), "--sets", f"clean={clean}", f"adm+={shifted}",
                 "--concepts", "dog", "--masks-from", str(clean), "--sampler", "high:500",
                 "--objective", "lm", "--dilation", "16", "--steps", "2", "--out", str(out), *common]) == 0
    assert set(load_file(str(out / "embeddings.safetensors"))) == {"dog-clean", "dog-adm+"}
    runs = {r["name"]: r for r in json.loads((out / "runs.json").read_text())}
    assert runs["dog-adm+"]["tags"] == {"concept": "dog", "set": "adm+"}
    assert runs["dog-adm+"]["indices"] == [0, 1] and runs["dog-clean"]["objective"] == "lm"
    # neither or both of --runs / --sets, and a malformed set: one-line errors, nothing written
    assert main(["train-ti", "--model", str(model_dir), "--steps", "2", "--out", str(tmp_path / "x"), *common]) == 2
    assert main(["train-ti", "--model", str(model_dir), "--sets", "clean", "--steps", "2",
                 "--out", str(tmp_path / "x"), *common]) == 2
    assert not (tmp_path / "x").exists()


def test_bench_ti_rows_resize_and_out_of_memory(model_dir):
    """bench-ti's helpers: the concept set resized to the benchmark's resolution (masks stay
    binary and cover the same region), one timed row per R, and an R that runs out of memory
    ends the sweep with a marked row instead of a crash."""
    from diffsec.personalize.bench import resize_concepts, ti_throughput

    data = {"images": IMAGES, "masks": MASKS, "concept": np.array(["dog"] * 3),
            "class_name": np.array(["dog"] * 3)}
    big = resize_concepts(data, 32)
    assert big["images"].shape == (3, 32, 32, 3) and big["images"].dtype == np.uint8
    assert big["masks"].dtype == bool and big["masks"].sum() == 4 * MASKS.sum()
    assert np.array_equal(big["masks"][:, ::2, ::2], MASKS)
    small = resize_concepts(big, 16)
    assert np.array_equal(small["masks"], MASKS)

    calls = []

    def load_pipe():
        calls.append(1)
        if len(calls) == 3:
            raise torch.OutOfMemoryError("simulated")
        return load(model_dir)

    rows = ti_throughput(load_pipe, data, [1, 2, 4, 8], steps=2, warmup=1)
    assert [r["runs"] for r in rows] == [1, 2, 4] and rows[-1] == {"runs": 4, "out_of_memory": True}
    assert rows[0]["speedup_vs_one_at_a_time"] == 1.0
    assert rows[1]["run_steps_per_s"] == pytest.approx(2 / rows[1]["seconds_per_step"])
    assert rows[1]["speedup_vs_one_at_a_time"] == pytest.approx(rows[1]["run_steps_per_s"] / rows[0]["run_steps_per_s"])

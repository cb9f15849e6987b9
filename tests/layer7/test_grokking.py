"""The grokking task, model and recipe: the split is a partition of the p² pairs with the right
answers, the forward pass equals an independent numpy computation of the paper's equations, and
a tiny run (p = 11) memorises its training set through layer 3's Trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layer7_research.grokking import (
    Curves,
    GrokkingTransformer,
    Recipe,
    all_pairs,
    eval_steps,
    split_pairs,
    train_grokking,
)


@pytest.mark.parametrize(("p", "fraction"), [(11, 0.3), (97, 0.4), (113, 0.5)])
def test_split_is_disjoint_and_covers_every_pair(p, fraction):
    s = split_pairs(p, fraction, seed=3)
    train = {tuple(r) for r in s.train_x[:, :2].tolist()}
    test = {tuple(r) for r in s.test_x[:, :2].tolist()}
    assert not train & test
    assert train | test == {(a, b) for a in range(p) for b in range(p)}
    assert len(s.train_y) == int(fraction * p * p) and len(s.train_y) + len(s.test_y) == p * p
    for x, y in ((s.train_x, s.train_y), (s.test_x, s.test_y)):
        assert (x[:, 2] == p).all()  # the "=" token
        assert [(a + b) % p for a, b, _ in x.tolist()] == y.tolist()


def test_split_is_seeded():
    a, b, c = split_pairs(11, 0.5, 0), split_pairs(11, 0.5, 0), split_pairs(11, 0.5, 1)
    assert torch.equal(a.train_x, b.train_x)
    assert not torch.equal(a.train_x, c.train_x)


def test_all_pairs_rows_are_a_times_p_plus_b():
    x, y = all_pairs(7)
    assert x.shape == (49, 3) and x[7 * 3 + 5].tolist() == [3, 5, 7] and y[7 * 3 + 5] == 1


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: split_pairs(12, 0.3, 0), "p=12 is not prime"),
        (lambda: split_pairs(2, 0.3, 0), "prime >= 3"),
        (lambda: split_pairs(11, 1.0, 0), r"train_fraction must be in \(0, 1\), got 1.0"),
        (lambda: split_pairs(11, 0.001, 0), "leaves an empty side"),
        (lambda: GrokkingTransformer(11, d_model=30, n_head=4), "divisible by n_head=4"),
        (lambda: GrokkingTransformer(11)(torch.zeros(2, 4, dtype=torch.long)), r"\(B, 3\)"),
        (lambda: Recipe(steps=0), "steps, n_evals and warmup_steps must be >= 1"),
    ],
)
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _reference_logits(model: GrokkingTransformer, x: np.ndarray) -> np.ndarray:
    """The module docstring's equations in float64 numpy, with the MLP at every position (the
    model runs it at "=" only) and attention as an explicit masked softmax."""
    w = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    cfg = model.config
    heads, dh = cfg.n_head, cfg.d_model // cfg.n_head
    resid = w["embed.weight"][x] + w["pos"]  # (B, 3, d)
    wq, wk, wv = np.split(w["attn.qkv.weight"], 3, axis=0)
    b, t, _ = resid.shape

    def split(m):  # (B, T, d) -> (B, H, T, dh)
        return (resid @ m.T).reshape(b, t, heads, dh).transpose(0, 2, 1, 3)

    q, k, v = split(wq), split(wk), split(wv)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh)  # (B, H, T, T)
    scores = np.where(np.tril(np.ones((t, t), dtype=bool)), scores, -np.inf)
    attn = np.exp(scores - scores.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    z = (attn @ v).transpose(0, 2, 1, 3).reshape(b, t, cfg.d_model)  # (B, T, d)
    resid = resid + z @ w["attn.out_proj.weight"].T
    hidden = np.maximum(resid @ w["mlp_in.weight"].T + w["mlp_in.bias"], 0.0)  # (B, T, d_mlp)
    resid = resid + hidden @ w["mlp_out.weight"].T + w["mlp_out.bias"]
    return resid[:, -1] @ w["unembed.weight"].T  # (B, p)


def test_forward_matches_an_independent_numpy_computation():
    torch.manual_seed(0)
    model = GrokkingTransformer(p=13, d_model=32, n_head=4, d_mlp=64)
    with torch.no_grad():  # non-zero biases, so a dropped bias would show
        model.mlp_in.bias.normal_()
        model.mlp_out.bias.normal_()
    x, _ = all_pairs(13)
    ours = model(x).detach().double().numpy()
    ref = _reference_logits(model, x.numpy())
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_init_is_nandas_scale():
    model = GrokkingTransformer(p=97, d_model=128)
    std = model.embed.weight.std().item()
    assert abs(std - 128**-0.5) < 0.005, std
    assert model.mlp_in.bias.abs().sum() == 0


def test_eval_steps_are_log_spaced_and_end_at_total():
    steps = eval_steps(10_000, 20)
    assert steps[0] == 1 and steps[-1] == 10_000 and steps == sorted(set(steps))
    ratios = np.diff(np.log(steps[5:]))
    assert np.allclose(ratios, ratios.mean(), rtol=0.1)  # even on a log axis


def test_curves_first_step_and_at_step():
    c = Curves(steps=[1, 10, 100], train_accuracy=[0.1, 1.0, 1.0], test_accuracy=[0.0, 0.2, 0.995])
    assert c.first_step("train_accuracy", 0.99) == 10
    assert c.first_step("test_accuracy", 0.99) == 100
    assert c.first_step("test_accuracy", 0.999) is None
    assert c.at_step("test_accuracy", 99) == 0.2
    with pytest.raises(ValueError, match="no evaluation at or before step 0"):
        c.at_step("test_accuracy", 0)


@pytest.fixture
def one_thread():
    """A tiny model gains nothing from a second thread and, on a busy machine, waits for it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_tiny_run_memorises_its_training_set(one_thread):
    recipe = Recipe(p=11, train_fraction=0.5, d_model=32, d_mlp=128, lr=1e-2, steps=100, n_evals=8)
    res = train_grokking(recipe, progress=False)
    c = res.curves
    assert c.steps[-1] == 100 and c.train_accuracy[-1] == 1.0, c.train_accuracy
    # the recorded figure is the model's accuracy, computed here independently
    split = split_pairs(11, 0.5, 0)
    with torch.no_grad():
        acc = (res.model(split.train_x).argmax(-1) == split.train_y).double().mean().item()
    assert acc == c.train_accuracy[-1]
    assert c.train_loss[-1] < c.train_loss[0] / 10
    assert len(c.freq_norms[-1]) == 6  # frequencies 0 … (11 − 1)/2
    # weight decay shrinks the weights: the same run without it ends with a larger embedding
    no_decay = train_grokking(
        Recipe(**{**recipe.__dict__, "weight_decay": 0.0}), progress=False
    ).model
    assert res.model.embed.weight.norm() < no_decay.embed.weight.norm()


def test_paper_grokking_runs_end_to_end_on_tiny_settings(one_thread):
    from layer0_math.lab import run_deliverable, runs_root
    from layer7_research.deliverables.paper_grokking import paper_grokking

    tiny = {"p": 11, "d_model": 16, "d_mlp": 32, "lr": 1e-2, "steps": 40, "n_evals": 6}
    m = run_deliverable(paper_grokking, overrides={**tiny, "n_key_frequencies": 2})
    assert m["steps"] == 40 and m["train_size"] + m["test_size"] == 121
    assert len(m["key_frequencies"]) == 2 and 0 < m["key_frequency_share"] <= 1
    run = runs_root() / "layer7_research" / "paper_grokking" / "latest"
    for name in ("grokking_curves.png", "fourier_spectrum.png", "fourier_share.png"):
        assert (run / name).stat().st_size > 0, name
    table = (run / "table.md").read_text()
    assert table.count("| yes |") + table.count("| no |") == 5

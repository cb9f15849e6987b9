"""The synthetic tasks of the attention study and the induction probe: the generators' properties,
the probe against naive references and closed forms on hand-built attention patterns, and the
deliverable on a tiny config."""

import json

import pytest
import torch

from layer4_architectures.sequence.tasks import (
    IGNORE,
    induction_scores,
    lag_copy_batch,
    previous_occurrence,
    previous_token_scores,
    repeat_batch,
    uniform_induction_chance,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_lag_copy_targets_are_the_token_lag_places_back():
    x, y = lag_copy_batch(8, 20, 7, 3, gen())
    assert x.shape == y.shape == (8, 20) and x.min() >= 0 and x.max() < 7
    assert torch.equal(y[:, 3:], x[:, :-3])
    assert (y[:, :3] == IGNORE).all()
    again, _ = lag_copy_batch(8, 20, 7, 3, gen())
    other, _ = lag_copy_batch(8, 20, 7, 3, gen(1))
    assert torch.equal(x, again) and not torch.equal(x, other)


def test_repeat_batch_repeats_distinct_tokens_with_a_per_row_period():
    x, y = repeat_batch(64, 30, 12, gen(), min_period=3, max_period=9)
    assert x.shape == y.shape == (64, 30)
    seq = torch.cat([x, y[:, -1:]], dim=1)  # the full T + 1 tokens
    periods = set()
    for row, target in zip(seq, y, strict=True):
        p = next(q for q in range(1, 31) if row[q] == row[0])  # where a_1 comes back
        assert len(set(row[:p].tolist())) == p, "the repeated block has a duplicate"
        assert torch.equal(row[p:], row[: 31 - p]), "the sequence is not periodic"
        assert (target[:p] == IGNORE).all() and torch.equal(target[p:], row[p + 1 :])
        periods.add(p)
    assert periods <= set(range(3, 10)) and len(periods) > 3  # the period varies by row
    again, _ = repeat_batch(64, 30, 12, gen(), min_period=3, max_period=9)
    assert torch.equal(x, again)
    with pytest.raises(ValueError, match="max_period=13"):
        repeat_batch(2, 30, 12, gen(), min_period=3, max_period=13)


def test_previous_occurrence_matches_a_naive_scan():
    ids = torch.randint(0, 4, (3, 12), generator=gen())
    got = previous_occurrence(ids)
    for b in range(3):
        for t in range(12):
            earlier = [s for s in range(t) if ids[b, s] == ids[b, t]]
            assert got[b, t] == (max(earlier) if earlier else -1)


def _repeat_ids(batch: int, half: int) -> torch.Tensor:
    """a_1..a_L a_1..a_{L-1}: one period L, length 2L - 1."""
    x, _ = repeat_batch(batch, 2 * half - 1, 3 * half, gen(2), min_period=half, max_period=half)
    return x


def test_perfect_induction_head_scores_one_and_others_less():
    half = 5
    ids = _repeat_ids(2, half)
    b, t = ids.shape
    prev = previous_occurrence(ids)
    attn = torch.zeros(b, 2, t, t)
    for i in range(b):
        for q in range(t):
            attn[i, 0, q, prev[i, q] + 1 if prev[i, q] >= 0 else q] = 1.0  # head 0: induction
            attn[i, 1, q, q] = 1.0  # head 1: attends to itself
    scores = induction_scores(attn, ids, start=half)
    assert scores[0].item() == pytest.approx(1.0)
    assert scores[1].item() == pytest.approx(0.0)


def test_uniform_attention_scores_the_closed_form_chance():
    half = 7
    ids = _repeat_ids(3, half)
    t = ids.shape[1]
    uniform = torch.ones(t, t).tril()
    uniform = (uniform / uniform.sum(-1, keepdim=True)).expand(3, 4, t, t)
    # queries t = half .. 2·half - 2 (0-based) each spread 1/(t+1) over their keys
    chance = sum(1 / (q + 1) for q in range(half, 2 * half - 1)) / (half - 1)
    got = induction_scores(uniform, ids, start=half)
    assert torch.allclose(got, torch.full((4,), chance, dtype=got.dtype), atol=1e-6)
    assert uniform_induction_chance(ids, start=half) == pytest.approx(chance)


def test_previous_token_head_scores_one():
    t = 9
    attn = torch.zeros(1, 2, t, t)
    attn[0, 0, 0, 0] = 1.0
    attn[0, 0, torch.arange(1, t), torch.arange(t - 1)] = 1.0  # head 0: previous token
    attn[0, 1] = torch.eye(t)  # head 1: itself
    scores = previous_token_scores(attn)
    assert scores.tolist() == pytest.approx([1.0, 0.0])


def test_probe_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(B, H, T, T\)"):
        induction_scores(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="ids must be"):
        induction_scores(torch.zeros(2, 1, 4, 4), torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="lag must be < seq_len"):
        lag_copy_batch(2, 4, 5, 4, gen())


@pytest.mark.slow
def test_attention_study_deliverable_on_a_tiny_config(tmp_path):
    from layer0_math.lab import run_deliverable
    from layer4_architectures.deliverables import attention_study

    tiny = {
        "encodings": ["none", "rope"],
        "lag_steps": 40,
        "lag_n_embd": 32,
        "induction_steps": 40,
        "induction_len": 16,
        "induction_min_period": 3,
        "induction_max_period": 8,
        "induction_n_embd": 32,
        "eval_batches": 1,
    }
    m = run_deliverable(attention_study, overrides=tiny, runs_dir=tmp_path)
    for enc in ("none", "rope"):
        for key in (f"accuracy_64_{enc}", f"accuracy_128_{enc}", f"accuracy_unseen_{enc}"):
            assert 0.0 <= m[key] <= 1.0
    assert 0.0 <= m["induction_score"] <= 1.0 and 0.0 < m["induction_chance"] < 1.0
    run = next(tmp_path.rglob("positional_encodings.png")).parent
    assert (run / "induction_heads.png").is_file()
    table = json.loads((run / "positional_table.json").read_text())
    assert [row["encoding"] for row in table] == ["none", "rope"]

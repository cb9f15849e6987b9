"""BERT: the 80/10/10 masking statistics, the MLM loss against a direct computation, that the
encoder is bidirectional and built of GPT's blocks, the padding-blind sentence embedding, the
task's masks (reproducible, checkpointed) and the deliverable on a tiny config."""

import math

import pytest
import torch
import torch.nn.functional as F

from layer4_architectures.sequence.bert import BERT, IGNORE, MaskedLM, mask_tokens, mlm_loss
from layer4_architectures.sequence.gpt import GPT, Block

V, MASK, PAD, CLS = 40, 39, 38, 37
SPECIALS = [PAD, MASK, CLS]


def tiny_bert(**kw) -> BERT:
    torch.manual_seed(0)
    cfg = {"block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 32, **kw}
    return BERT(V, mask_id=MASK, pad_id=PAD, special_ids=[CLS], **cfg)


def within_binomial(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_masking_selects_15_percent_then_80_10_10_and_never_a_special():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 37, (400, 500), generator=g)  # 200k ordinary tokens
    ids[:, 0], ids[:, -1], ids[::3, 10] = CLS, PAD, MASK  # specials sprinkled in
    special = torch.isin(ids, torch.tensor(SPECIALS))
    inputs, labels = mask_tokens(ids, mask_id=MASK, vocab_size=V, special_ids=SPECIALS, generator=g)
    selected = labels != IGNORE
    assert not (selected & special).any(), "a special token was selected"
    assert torch.equal(labels[selected], ids[selected]) and (labels[~selected] == IGNORE).all()
    assert torch.equal(inputs[~selected], ids[~selected]), "an unselected token changed"
    n_ok, n_sel = int((~special).sum()), int(selected.sum())
    assert within_binomial(n_sel, n_ok, 0.15)
    to_mask = int((inputs[selected] == MASK).sum())
    changed = int(((inputs != ids) & (inputs != MASK) & selected).sum())
    same = int((inputs[selected] == ids[selected]).sum())
    # a random replacement is uniform over the 37 ordinary ids, so it equals the original 1/37
    assert within_binomial(to_mask, n_sel, 0.8)
    assert within_binomial(changed, n_sel, 0.1 * (1 - 1 / 37))
    assert within_binomial(same, n_sel, 0.1 + 0.1 / 37)
    replaced = inputs[(inputs != ids) & (inputs != MASK)]
    assert not torch.isin(replaced, torch.tensor(SPECIALS)).any()


def test_masking_is_reproducible_from_the_generator_and_checks_its_arguments():
    ids = torch.randint(0, 37, (4, 50))
    a = mask_tokens(ids, mask_id=MASK, vocab_size=V, special_ids=SPECIALS,
                    generator=torch.Generator().manual_seed(3))  # fmt: skip
    b = mask_tokens(ids, mask_id=MASK, vocab_size=V, special_ids=SPECIALS,
                    generator=torch.Generator().manual_seed(3))  # fmt: skip
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="mask_id=40"):
        mask_tokens(ids, mask_id=40, vocab_size=V, special_ids=[])
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\), got 1.5"):
        mask_tokens(ids, mask_id=MASK, vocab_size=V, special_ids=[], p=1.5)


def test_mlm_loss_is_the_mean_cross_entropy_over_selected_positions_only():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 7, V, generator=g, dtype=torch.float64)
    labels = torch.full((3, 7), IGNORE)
    where = [(0, 1), (0, 5), (1, 0), (2, 6)]
    for b, t in where:
        labels[b, t] = int(torch.randint(0, V, (), generator=g))
    direct = -sum(float(logits[b, t].log_softmax(-1)[labels[b, t]]) for b, t in where) / 4
    assert float(mlm_loss(logits, labels)) == pytest.approx(direct, rel=1e-6)
    assert float(mlm_loss(logits, torch.full((3, 7), IGNORE))) == 0.0


def test_encoder_is_bidirectional_and_gpt_is_not():
    x = torch.randint(0, 37, (1, 12))
    later = x.clone()
    later[0, 8] = (later[0, 8] + 1) % 37
    bert = tiny_bert().eval()
    assert not torch.allclose(bert(x)[0, 0], bert(later)[0, 0])
    torch.manual_seed(0)
    gpt = GPT(V, block_size=32, n_layer=2, n_head=2, n_embd=32).eval()
    assert torch.equal(gpt(x)[0, 0], gpt(later)[0, 0])


def test_blocks_are_gpts_blocks_without_the_causal_mask_and_the_head_is_tied():
    bert = tiny_bert()
    blocks = list(bert.encoder.blocks)
    assert len(blocks) == 2 and all(type(b) is Block and not b.attn.causal for b in blocks)
    assert bert.encoder.lm_head.weight is bert.encoder.tok_emb.weight
    with pytest.raises(ValueError, match="causal must be False"):
        BERT(V, mask_id=MASK, causal=True)


@pytest.mark.parametrize("pos", ["rope", "learned"])
def test_sentence_embedding_ignores_padding(pos):
    bert = tiny_bert(pos=pos).eval()
    a, b = torch.randint(0, 37, (5,)), torch.randint(0, 37, (9,))
    ids = torch.full((2, 9), PAD)
    mask = torch.zeros(2, 9, dtype=torch.long)
    ids[0, :5], ids[1], mask[0, :5], mask[1] = a, b, 1, 1
    with torch.no_grad():
        batched = bert.sentence_embedding(ids, mask)
        alone = [bert.sentence_embedding(s[None])[0] for s in (a, b)]
        unmasked = bert.sentence_embedding(ids)
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched[1], alone[1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(unmasked[0], alone[0], atol=1e-3)  # padding would leak otherwise


def test_bad_inputs_are_named():
    bert = tiny_bert()
    with pytest.raises(ValueError, match="exceeds block_size=32"):
        bert(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match=r"rows \[1\] mask every token"):
        bert(torch.zeros(2, 4, dtype=torch.long), torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="mask_id=45"):
        BERT(V, mask_id=45)


def test_task_validation_is_deterministic_and_matches_a_direct_count():
    task = MaskedLM(tiny_bert(), seed=0).eval()
    x = torch.randint(0, 37, (6, 20))
    with torch.no_grad():
        one, two = task.validation_step((x, x)), task.validation_step((x, x))
    assert all(float(one[k][0]) == float(two[k][0]) for k in one)
    n = int(one["loss"][1])
    assert n > 0 and one["loss"][0].dtype == torch.float64
    inputs, labels = task.eval_corrupt(x)  # the same masks, scored by hand
    with torch.no_grad():
        logits = task.model(inputs)
    sel = labels != IGNORE
    ce = F.cross_entropy(logits[sel].double(), labels[sel], reduction="sum")
    assert int(sel.sum()) == n and float(one["loss"][0]) == pytest.approx(float(ce), rel=1e-5)
    correct = int((logits[sel].argmax(-1) == labels[sel]).sum())
    assert float(one["accuracy"][0]) == correct


def test_task_generator_travels_in_the_state_dict():
    task = MaskedLM(tiny_bert(), seed=5)
    x = torch.randint(0, 37, (4, 16))
    state = task.state_dict()
    first = task.corrupt(x)
    fresh = MaskedLM(tiny_bert(), seed=99)
    fresh.load_state_dict(state)
    again = fresh.corrupt(x)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


@pytest.mark.slow
def test_bert_mlm_deliverable_on_a_tiny_config(tmp_path, monkeypatch):
    from layer0_math.lab import run_deliverable
    from layer3_framework.train import load_model
    from layer4_architectures.deliverables import bert_mlm

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tiny = {
        "data_source": "synthetic", "steps": 4, "seq_len": 16, "vocab_size": 300,
        "n_layer": 1, "n_head": 2, "n_embd": 16, "batch_size": 8, "eval_batches": 2,
        "n_examples": 2, "n_triplets": 10,
    }  # fmt: skip
    m = run_deliverable(bert_mlm, overrides=tiny, runs_dir=tmp_path)
    for key in ("masked_accuracy", "unigram_masked_accuracy", "retrieval_win_rate"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["mlm_loss"] > 0 and m["params"] > 0 and m["masked_positions"] > 0
    assert len(m["fill_in_examples"]) == 2 and all(
        len(e["top5"]) == 5 for e in m["fill_in_examples"]
    )
    run = next(tmp_path.rglob("mlm.png")).parent
    assert (run / "fill_in.txt").read_text().count("[MASK]") == 2
    # the checkpoint rebuilds with no dataset, sentence embedding included
    monkeypatch.setenv("DLSTACK_DATA", str(tmp_path / "empty"))
    model = load_model(run / "train")
    assert isinstance(model, BERT)
    assert model.sentence_embedding(torch.tensor([[1, 2, 3]])).shape == (1, 16)


def test_masked_text_trains_the_specials_into_its_tokenizer(tmp_path, monkeypatch):
    from layer4_architectures.sequence.mlm_data import MaskedText

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    data = MaskedText(name="tinystories", source="synthetic", vocab_size=300, seq_len=8)
    data.setup(0)
    tok, sizes = data.tokenizer_object(), data.model_kwargs()
    assert tok.encode("a [MASK] b [PAD]").count(sizes["mask_id"]) == 1
    assert sizes["pad_id"] in tok.encode("[PAD]") and sizes["vocab_size"] == tok.vocab_size
    assert set(sizes["special_ids"]) == set(tok.special_tokens.values())
    assert {sizes["mask_id"], sizes["pad_id"]} <= set(sizes["special_ids"])
    with pytest.raises(ValueError, match=r"lacks \['\[MASK\]'\]"):
        MaskedText(name="tinystories", special_tokens=["[PAD]"])

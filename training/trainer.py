"""The training task: contrastive two-tower training over 1 or N processes, with validation, progress,
resumable checkpoints and the best model saved."""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.types import ShardingPlan
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from tqdm import tqdm

from tandemrec.data.content import ItemContent
from tandemrec.data.errors import DataError
from tandemrec.data.examples import Examples
from tandemrec.data.prepared import PreparedData
from tandemrec.io.atomic import atomic_write_json, atomic_write_text
from tandemrec.io.run_folder import RunFolder
from tandemrec.towers.inference import embed
from tandemrec.towers.two_tower import TwoTower
from tandemrec.training import distributed
from tandemrec.training.checkpoint import CheckpointError, Checkpoints, TrainState
from tandemrec.training.table_init import TableInit
from tandemrec.training.config import TrainConfig
from tandemrec.training.dense_optimizer import dense_adamw, schedule
from tandemrec.training.frozen_features import cache_frozen_backbones
from tandemrec.training.global_batch import gather_with_grad, total
from tandemrec.training.loss import InBatchSoftmax
from tandemrec.training.new_items import NewItemPlacement, fit_new_item_placement
from tandemrec.training.negatives import HardNegativeMiner, candidate_log_q
from tandemrec.training.sparse_prefetch import SparseInputPrefetch
from tandemrec.training.step_inputs import EpochSteps, StepInputBuilder, StepInputs, step_loader
from tandemrec.training.validation import user_recall_at_k

log = logging.getLogger(__name__)


@dataclass
class _Loop:
    """What the training loop's steps share: the process group, the sharded model and its optimizers."""

    env: distributed.Env
    dmp: DistributedModelParallel
    optimizer: CombinedOptimizer
    adamw: KeyedOptimizerWrapper
    rates: list[float]  # AdamW's groups' base learning rates, which the schedule scales
    steps: int  # per epoch
    prefetch: SparseInputPrefetch | None  # sends the next step's table inputs while a step computes


@dataclass
class TrainResult:
    best_epoch: int
    best_recall: float
    epochs_run: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    placement: NewItemPlacement | None = None  # of the saved model's new items


class Trainer:
    """Runs on CUDA with bf16 autocast when present, else on CPU in float32, on as many processes as
    torchrun started (one otherwise).

    `config.batch_size` is the global batch: each process takes its slice, and the item vectors of all
    slices are gathered so that every row has the whole global batch as negatives. Embedding tables get
    TorchRec's fused row-wise Adagrad (applied inside the backward pass); everything else AdamW, with a
    smaller learning rate for the pretrained backbones.
    """

    def __init__(
        self,
        model: TwoTower,
        data: PreparedData,
        content: ItemContent,
        config: TrainConfig,
        run: RunFolder,
        tokenizer=None,
        progress: bool = True,
        fingerprint: dict[str, Any] | None = None,
        resume: bool = False,
        table_init: TableInit | None = None,
    ) -> None:
        """`fingerprint`: the settings a checkpoint must have been made with to be resumed (see
        training/checkpoint.py); `resume`: continue from the run's latest checkpoint; `table_init`: how tables
        built on the meta device get their first rows (default: drawn from `config.seed`)."""
        self.model = model
        self.data = data
        self.content = content
        self.config = config
        self.run = run
        self.tokenizer = tokenizer
        self.progress = progress
        self.checkpoints = Checkpoints(run.checkpoints, fingerprint or {}, config.keep_checkpoints)
        self.resume = resume
        self.table_init = table_init or TableInit(config.seed)
        self.loss_fn = InBatchSoftmax()
        self.train, self.source, self.target = self._examples()
        # Mixed negatives are drawn from the items that have training events (cold items stay unseen).
        self.mixed_pool = np.flatnonzero(data.item_frequencies() > 0)
        self.log_q = None
        if config.logq:
            log_q = candidate_log_q(data.item_frequencies(), self.mixed_pool, config.batch_size, config.mixed_negatives)
            self.log_q = torch.from_numpy(config.logq_weight * log_q).float()
        self.miner = HardNegativeMiner(len(data.vocabs.users), config.hard_negative_depth) if config.hard_negatives else None
        self.inputs = StepInputBuilder(
            config, self.train, self.source, self.target, data.features, content, self.mixed_pool, self.miner
        )

    def fit(self) -> TrainResult:
        env = distributed.init(self.config.device, self.config.cpu_threads)
        try:
            return self._fit(env)
        finally:
            distributed.shutdown(env)

    def _fit(self, env: distributed.Env) -> TrainResult:
        cfg = self.config
        distributed.move_dense(self.model, env.device)
        if cfg.cache_frozen_backbones:
            cache_frozen_backbones(
                self.model.item_tower, self.content, cfg.encode_batch_size, env.device, self.progress and env.rank == 0
            )
        dmp, plan = distributed.shard(
            self.model, env, cfg.embedding_lr, cfg.sharding, cfg.table_sharding, cfg.embedding_optimizer,
            self.table_init, cfg.max_memory_bytes(),
        )
        self._record_plan(plan, dmp, env)
        adamw, rates = dense_adamw(dmp, self.model, self.config)
        optimizer = CombinedOptimizer([dmp.fused_optimizer, adamw])
        prefetch = SparseInputPrefetch(dmp, env.device) if cfg.prefetch_table_inputs else None
        loop = _Loop(env, dmp, optimizer, adamw, rates, self._steps(len(self.train), env.world_size), prefetch)
        state = self._resume(dmp, optimizer, adamw) if self.resume else TrainState()
        result = TrainResult(state.best_epoch, state.best_recall, len(state.history), 0.0, list(state.history))
        self._write_history(state.history, env)
        start = time.perf_counter()
        for epoch in range(state.epoch, cfg.epochs + 1):
            first = state.step if epoch == state.epoch else 0
            loss_sum = state.loss_sum if epoch == state.epoch else 0.0
            loss_sum, timing = self._train_epoch(loop, epoch, first, loss_sum, state.stale, result)
            state = self._end_epoch(loop, epoch, loss_sum / loop.steps, timing, state.stale, result, start)
            if state.stale >= cfg.patience:
                break
        result.placement = self._save_best(dmp, result.best_epoch, result.epochs_run, env.device)
        result.seconds = time.perf_counter() - start
        return result

    def _save_best(self, dmp: DistributedModelParallel, epoch: int, last: int, device: torch.device) -> NewItemPlacement:
        """The best epoch's checkpoint (kept for this) loaded back into the sharded model, unless that epoch
        is the `last` one finished, whose weights the model still holds; its new items placed
        (training/new_items.py), then written as the run's model by every process together, each streaming
        its own shards: no table is gathered, and every process does the same in step."""
        if epoch != last:
            self.checkpoints.restore_model(self.checkpoints.best(epoch), dmp)
        cfg = self.config
        placement = fit_new_item_placement(self.model, self.content, self.data, cfg.new_item_exposure, cfg.encode_batch_size, device)
        self.model.item_tower.new_item_offset.copy_(placement.offset)
        self.model.save_pretrained(self.run.model, dmp.state_dict(), self.tokenizer)
        return placement

    def _train_epoch(
        self, loop: _Loop, epoch: int, first: int, loss_sum: float, stale: int, result: TrainResult
    ) -> tuple[float, dict[str, float | None]]:
        """Steps `first`.. of an epoch (checkpointing every `checkpoint_every`); the loss sum, samples/s (the
        global batches' examples over this process's seconds of training steps) and the share of those
        seconds it waited for its steps' inputs (built them, without loader workers; started sending their
        table inputs, with the prefetch).

        `loss_sum` is the global loss of the steps before `first`; each rank sums its own parts of the later
        ones, added up over ranks only when the sum is needed (a checkpoint, the epoch's end), not every step."""
        cfg, env, steps = self.config, loop.env, loop.steps
        loop.dmp.train()
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(self.train))
        epoch_steps = EpochSteps(self.inputs, order, epoch, first, steps, env.rank, env.world_size)
        pending = iter(step_loader(epoch_steps, cfg.loader_workers, env.device))
        upcoming = self._next_inputs(pending, loop)
        examples, busy, waiting = 0, 0.0, 0.0  # the training steps' examples and seconds, and their waits for inputs
        local_sum = 0.0
        if env.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(env.device)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=env.device.type == "cuda")
        bar = tqdm(
            range(first, steps),
            desc=f"epoch {epoch}/{cfg.epochs}",
            total=steps,
            initial=first,
            disable=not self.progress or env.rank != 0,
        )
        for step in bar:
            began = time.perf_counter()
            torch.manual_seed(int(np.random.SeedSequence([cfg.seed, epoch, step, env.rank]).generate_state(1)[0]))
            schedule(loop.adamw, loop.rates, (epoch - 1) * steps + step, cfg.epochs * steps, cfg)
            asked = time.perf_counter()
            inputs, upcoming = upcoming, self._next_inputs(pending, loop)
            waited = time.perf_counter() - asked
            with autocast:
                loss = self.step_loss(loop.dmp, env, inputs)
            if loop.prefetch is not None:
                loop.prefetch.advance()
            loss.backward()
            loop.optimizer.step()
            loop.optimizer.zero_grad()
            local_sum += loss.item()  # this rank's rows' estimate of the global loss
            bar.set_postfix(loss=f"{(loss_sum + local_sum) / (step + 1):.4f}")
            if step > first:  # the first step of a process pays one-off set-up (kernels, buffers)
                examples, busy = examples + sum(inputs.sizes), busy + time.perf_counter() - began
                waiting += waited
            done = step + 1
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < steps:
                so_far = loss_sum + total(local_sum, env.device) / env.world_size
                self._checkpoint(loop, TrainState(epoch, done, so_far, result.best_epoch, result.best_recall, stale, result.history))
        timing = {
            "samples_per_second": round(examples / busy, 1) if busy else None,
            "input_wait_share": round(waiting / busy, 3) if busy else None,
        }
        return loss_sum + total(local_sum, env.device) / env.world_size, timing

    def _end_epoch(
        self,
        loop: _Loop,
        epoch: int,
        loss: float,
        timing: dict[str, float | None],
        stale: int,
        result: TrainResult,
        start: float,
    ) -> TrainState:
        """Validate, log, keep the best model, re-mine hard negatives and checkpoint; the state to go on from."""
        env = loop.env
        items, recall = self._validate(loop.dmp, env.device)
        row = {
            "epoch": epoch,
            "train_loss": loss,
            f"valid_recall@{self.config.eval_k}": recall,
            "temperature": self.model.temperature.item(),
            **timing,
            "seconds": round(time.perf_counter() - start, 2),
            "peak_host_memory_gib": round(distributed.peak_host_memory(env.device) / 2**30, 2),
        }
        if env.device.type == "cuda":
            row["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(env.device) / 2**30, 2)
        result.history.append(row)
        result.epochs_run = epoch
        self._write_history(result.history, env)
        if self.progress and env.rank == 0:
            shown = (f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if k != "epoch")
            log.info("epoch %d: %s", epoch, ", ".join(shown))
        if recall > result.best_recall:  # its checkpoint, below, is the best model (see `_save_best`)
            result.best_epoch, result.best_recall, stale = epoch, recall, 0
        else:
            stale += 1
        if self.miner is not None and epoch % self.config.hard_negatives_every == 0:
            self._mine(env.device, items)
        state = TrainState(epoch + 1, 0, 0.0, result.best_epoch, result.best_recall, stale, result.history)
        self._checkpoint(loop, state)
        return state

    def _checkpoint(self, loop: _Loop, state: TrainState) -> None:
        position = (state.epoch - 1) * loop.steps + state.step
        self.checkpoints.save(state, loop.dmp, loop.optimizer, {"step": position}, self._extra_state())

    def step_loss(self, dmp: DistributedModelParallel, env: distributed.Env, inputs: StepInputs) -> torch.Tensor:
        """This process's part of the loss of a step's global batch (`inputs`: its StepInputs): its rows
        against the gathered global batch and any extra negatives, times the world size.

        DDP (dense parameters) and TorchRec (tables) average gradients over ranks; with each rank's part
        scaled by the world size, that average is the gradient one process computes on the whole global
        batch, and the mean of the parts over ranks is its loss."""
        cfg, rows, log_q = self.config, inputs.rows, self.log_q
        user_vec, item_vec = dmp(inputs.users, inputs.items)
        n = len(inputs.items) - inputs.content_rows
        candidates = torch.cat([gather_with_grad(item_vec[:rows].float(), inputs.sizes), item_vec[rows:n].float()])
        log_q = None if log_q is None else log_q.to(env.device)
        ids, weights, offset, temperature = inputs.ids, inputs.weights, inputs.offset, self.model.temperature
        loss = self.loss_fn(user_vec.float(), candidates, ids, temperature, None if log_q is None else log_q[ids], weights, offset)
        if inputs.content_rows:
            content = gather_with_grad(item_vec[n:].float(), inputs.sizes)
            content_ids = ids[: sum(inputs.sizes)]
            content_q = None if log_q is None else log_q[content_ids]
            loss = loss + cfg.content_loss_weight * self.loss_fn(
                user_vec.float(), content, content_ids, temperature, content_q, weights, offset
            )
        return loss * env.world_size

    @staticmethod
    def _next_inputs(pending: Iterator[StepInputs], loop: _Loop) -> StepInputs | None:
        """The next step's inputs on the device, their table inputs on their way to the shards; None after
        the epoch's last step."""
        inputs = next(pending, None)
        if inputs is None:
            return None
        inputs = inputs.to(loop.env.device)
        if loop.prefetch is not None:
            loop.prefetch.start(inputs)
        return inputs

    def _steps(self, n: int, world_size: int) -> int:
        """Steps per epoch. The last global batch is cut to a multiple of the process count, and left out
        when that leaves nothing."""
        steps = math.ceil(n / self.config.batch_size)
        if 0 < n % self.config.batch_size < world_size:
            steps -= 1
        if steps == 0:
            raise DataError(f"{n} training examples cannot be spread over {world_size} processes")
        return steps

    def _examples(self) -> tuple[Examples, np.ndarray | None, np.ndarray | None]:
        """The training examples and, in joint training over two domains, their domain masks."""
        train, mode = self.data.train, self.config.domains
        if train.target is None or not train.target.any():
            if mode == "target":
                raise DataError("train.domains='target' but the data has no target-domain training events")
            return train, None, None
        source = train.source if train.source is not None else np.ones(len(train), dtype=bool)
        if mode == "joint":
            return train, source, train.target
        keep = np.flatnonzero(source if mode == "source" else train.target)
        return Examples(train.users[keep], train.items[keep], train.times[keep]), None, None

    def _resume(self, dmp: DistributedModelParallel, optimizer: CombinedOptimizer, adamw: KeyedOptimizerWrapper) -> TrainState:
        latest = self.checkpoints.latest()
        if latest is None:
            raise CheckpointError(f"cannot resume: no complete checkpoint in '{self.checkpoints.folder}'")
        adamw.init_state()  # AdamW's state is created lazily; DCP loads into existing tensors
        state, _ = self.checkpoints.load(latest, dmp, optimizer, self._extra_state())
        if torch.distributed.get_rank() == 0:
            log.info("resumed from %s (epoch %d, step %d)", latest, state.epoch, state.step)
        return state

    def _extra_state(self) -> dict[str, torch.Tensor]:
        """Training state outside the model and optimizers, checkpointed with them (loaded in place)."""
        return {} if self.miner is None else {"hard_negatives": torch.from_numpy(self.miner.lists)}

    def _mine(self, device: torch.device, items: torch.Tensor | None = None) -> None:
        """Re-mine every training user's hard negatives with the current towers, each user seen as at their
        last training event."""
        self.model.eval()
        train = self.data.train
        users = np.unique(train.users)
        last = np.full(len(self.data.vocabs.users), np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(last, train.users, train.times)
        times = last[users] + 1
        size, shown = self.config.encode_batch_size, self._shows_progress()
        if items is None:
            items = embed(self.model.item_tower, self.content.batches(size), device, shown, len(self.content), "items", shared=True)
        batches = self.data.features.batches(users, times, size)
        vectors = embed(self.model.user_tower, batches, device, shown, len(users), "users", shared=True)
        self.miner.refresh(users, vectors.numpy(), items.numpy(), self.data.log.items_before(users, times), shown)

    def _record_plan(self, plan: ShardingPlan, dmp: DistributedModelParallel, env: distributed.Env) -> None:
        """sharding_plan.json: the plan, and the table rows and columns each rank really holds."""
        held = distributed.held_shards(dmp)
        if env.rank != 0:
            return
        tables = distributed.plan_tables(plan)
        atomic_write_json(
            self.run.sharding_plan,
            {"world_size": env.world_size, "device": env.device.type, "tables": tables, "held": held},
        )
        if self.progress:
            for t in tables:
                shards = ", ".join(f"rank {s['rank']} rows {s['offsets'][0]}+{s['sizes'][0]} cols {s['offsets'][1]}+{s['sizes'][1]}" for s in t["shards"])
                log.info("sharding %s: %s (%s) %s", t["table"], t["sharding_type"], t["compute_kernel"], shards or "replicated")

    def _write_history(self, history: list[dict], env: distributed.Env) -> None:
        if env.rank == 0:
            atomic_write_text(self.run.train_metrics, "".join(json.dumps(row) + "\n" for row in history))

    def _shows_progress(self) -> bool:
        """Bars on rank 0 only: the other ranks do the same work in step."""
        return self.progress and torch.distributed.get_rank() == 0

    def _validate(self, dmp: DistributedModelParallel, device: torch.device) -> tuple[torch.Tensor, float]:
        """The ranks embed the catalogue and the users together, each a share (`embed(..., shared=True)`),
        and every rank computes the same recall; the item vectors serve hard-negative mining too."""
        dmp.eval()
        model, valid, size, shown = self.model, self.data.valid, self.config.encode_batch_size, self._shows_progress()
        items = embed(model.item_tower, self.content.batches(size), device, shown, len(self.content), "valid items", shared=True)
        batches = self.data.features.batches(valid.users, valid.times, size)
        users = embed(model.user_tower, batches, device, shown, len(valid.users), "valid users", shared=True)
        seen = self.data.log.items_before(valid.users, valid.times)
        return items, user_recall_at_k(users, items, valid.targets, seen, self.config.eval_k)


"""The next step's table inputs sent to their shards while this step computes.

A sharded table's forward is three collectives: the KJT's splits, then its values, go to the processes
that hold the rows (TorchRec's input dist), and the pooled vectors come back. Waited for inside the step,
the first two stop every process at each table until the slowest arrives. TorchRec's
`TrainPipelineSparseDist` overlaps them with the step before, but it needs the loss inside `model(batch)`
and traces the model to find the tables' inputs; ours are named fields of `StepInputs`, and the loss
gathers item vectors over the processes outside the model. So this does the same for those fields:
`start` sends the next step's splits before this step's forward, `advance` sends its values after that
forward (they travel during the backward), and the tables' forward takes what arrived. On CUDA the sends
run on a stream of their own, as in TorchRec's pipeline.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch
from torchrec.distributed.embeddingbag import ShardedEmbeddingBagCollection
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from tandemrec.training.step_inputs import StepInputs


class SparseInputPrefetch:
    """Overlaps the input dist of step i+1's sharded user and item tables with step i.

    Every process calls `start`, its forward and `advance` in the same order, so their collectives pair
    up. A table called with a KJT that was not started (validation, mining) runs its usual forward."""

    def __init__(self, dmp: DistributedModelParallel, device: torch.device):
        model = dmp.module
        inputs_of = ((model.user_tower.ebc, lambda i: i.users.features), (model.item_tower.ebc, lambda i: i.items.ids))
        self._tables = [(m, field) for m, field in inputs_of if isinstance(m, ShardedEmbeddingBagCollection)]
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._pending: list[_Request] = []  # this step's and the next step's, in the order started
        for module, _ in self._tables:
            module.forward = self._forward(module)

    def start(self, inputs: StepInputs) -> None:
        """Send `inputs`' table splits to the processes that hold the rows."""
        if self._stream is not None:  # the inputs were copied to the device on the current stream
            self._stream.wait_stream(torch.cuda.current_stream())
        for module, field in self._tables:
            self._pending.append(_Request(module, field(inputs), self._stream))

    def advance(self) -> None:
        """Send the started inputs' values (their splits have arrived), to travel during the backward.
        Called after a step's forward, which must have taken that step's table inputs."""
        if len(self._pending) > len(self._tables):
            raise RuntimeError("a step's forward did not take its tables' prefetched inputs (the tables got other KJTs)")
        for request in self._pending:
            request.advance()

    def _forward(self, module: ShardedEmbeddingBagCollection):
        usual = module.forward

        def forward(features: KeyedJaggedTensor, *args, **kwargs):
            request = next((r for r in self._pending if r.features is features), None)
            if request is None:
                return usual(features, *args, **kwargs)
            self._pending.remove(request)
            return module.compute_and_output_dist(request.context, request.result())

        return forward


class _Request:
    """One table's input dist in flight: the KJT it was started for, its context and what to wait for next."""

    def __init__(self, module: ShardedEmbeddingBagCollection, features: KeyedJaggedTensor, stream: torch.cuda.Stream | None):
        self.features, self.stream = features, stream
        self.context = module.create_context()
        with self._on_stream():
            self.awaitable: Any = module.input_dist(self.context, features)  # the splits' all-to-all
        self.sent = False  # whether the values' all-to-all has been started

    def advance(self) -> None:
        if not self.sent:
            with self._on_stream():
                self.awaitable = self.awaitable.wait()
            self.sent = True

    def result(self) -> Any:
        """The table's input as its shards' processes received it."""
        self.advance()
        with self._on_stream():
            received = self.awaitable.wait()
        if self.stream is not None:
            current = torch.cuda.current_stream()
            current.wait_stream(self.stream)
            received.record_stream(current)
            self.context.record_stream(current)
        return received

    def _on_stream(self):
        return contextlib.nullcontext() if self.stream is None else torch.cuda.stream(self.stream)

"""A step's table inputs sent to their shards ahead of its forward give the step it would have had, and a
forward that leaves them unused is caught instead of leaking collectives. Two processes: test_distributed."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dist_worker
from tandemrec.training import distributed
from tandemrec.training.sparse_prefetch import SparseInputPrefetch


def test_prefetched_table_inputs_give_the_same_step_and_unused_ones_are_an_error(trained_run: Path, tmp_path: Path) -> None:
    env, trainer, dmp, batch = dist_worker.step_setup(str(trained_run / "dataset"), tmp_path, "table_wise")
    try:
        dmp.train()
        usual = trainer.step_loss(dmp, env, trainer.inputs.build(batch, 1, 0, 0, 1))
        prefetch = SparseInputPrefetch(dmp, env.device)
        inputs = trainer.inputs.build(batch, 1, 0, 0, 1)
        prefetch.start(inputs)
        assert torch.equal(trainer.step_loss(dmp, env, inputs), usual)
        prefetch.advance()  # nothing left over: the forward took what was sent

        later = trainer.inputs.build(batch[::-1].copy(), 1, 1, 0, 1)
        prefetch.start(inputs)
        prefetch.start(later)
        trainer.step_loss(dmp, env, trainer.inputs.build(batch, 1, 0, 0, 1))  # equal rows, other tensors
        with pytest.raises(RuntimeError, match="did not take its tables' prefetched inputs"):
            prefetch.advance()
    finally:
        distributed.shutdown(env)

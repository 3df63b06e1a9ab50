"""Each training process on CPU takes its share of the host's cores: N processes that each take every
core oversubscribe them (one step took 4x longer so)."""
import os

import pytest
import torch

from tandemrec.config import load_config
from tandemrec.errors import ConfigError
from tandemrec.training import distributed


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)


def test_the_cores_are_shared_among_this_hosts_processes(four_cores, monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert distributed.cpu_threads() == 4  # one process: every core
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert distributed.cpu_threads() == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert distributed.cpu_threads() == 1  # never none


def test_a_lower_thread_count_already_set_is_kept_and_an_explicit_one_wins(four_cores, monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # e.g. OMP_NUM_THREADS=1, torchrun's default
    assert distributed.cpu_threads() == 1
    assert distributed.cpu_threads(3) == 3


def test_cpu_threads_is_a_checked_setting():
    assert load_config(None, ["train.cpu_threads=2"]).train.cpu_threads == 2
    with pytest.raises(ConfigError, match="train.cpu_threads"):
        load_config(None, ["train.cpu_threads=-1"])

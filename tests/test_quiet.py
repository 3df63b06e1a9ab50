"""Quiet and visible: `tandemrec` shows our own output and progress, not other libraries' warnings (`-v` shows
them again); a load that leaves weights random says so in our words."""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from conftest import TINY_OVERRIDES
from tandemrec.quiet import ThirdPartyBelowError, install
from tandemrec.towers.config import TextEncoderConfig
from tandemrec.towers.inference import embed
from tandemrec.towers.text_encoder import TextEncoder
from tandemrec.training.negatives import HardNegativeMiner

pytestmark = pytest.mark.slow  # runs the demo in subprocesses

# The tiny run, but with the demo's pretrained MiniLM text encoder (whose load printed transformers' LOAD
# REPORT): the random text model's settings are left out, so the embedded demo config's text section holds.
RANDOM_TEXT = ("model.item.text.model_config", "model.item.text.pretrained", "model.item.text.trainable_layers")
QUIET_RUN = [override for override in TINY_OVERRIDES if not override.startswith(RANDOM_TEXT)]

# What `tandemrec demo` printed before any result, by the message that gave each away.
TODAYS_NOISE = {
    "random init (open_clip)": "Model initialized randomly",
    "transformers LOAD REPORT": "LOAD REPORT",
    "transformers weight-loading bar": "Loading weights",
    "NumPy non-writable array": "is not writable",
    "torch.fx deprecation": "is_fx_tracing",
    "TorchRec planner: topology": "TopologyFactory",
    "TorchRec planner: storage reservation": "HeuristicalStorageReservation",
    "TorchRec planner: dense tensor estimate": "dense_tensor_estimate",
    "DDP broadcast_buffers": "broadcast_buffers",
    "ShardedTensor deprecation": "ShardedTensor",
}
GLOG_LINE = re.compile(r"\]:[WE]\d{4} ")  # torch._logging's `[rank0]:W1130 12:00:00.0 123 path:57] message`


def cli(*args: str) -> subprocess.CompletedProcess:
    """`tandemrec ARGS` in a fresh interpreter, so that warnings raised while importing are seen too."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "TRANSFORMERS_VERBOSITY", "TORCH_LOGS")}
    command = [sys.executable, "-c", "import sys; from tandemrec.cli import main; sys.exit(main())", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


def settings(overrides: list[str]) -> list[str]:
    return [arg for override in overrides for arg in ("--set", override)]


def lines(stream: str) -> list[str]:
    """Lines as a terminal shows them in the end: progress bars redraw with carriage returns."""
    return [part for line in stream.splitlines() for part in line.split("\r") if part.strip()]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess:
    run = tmp_path_factory.mktemp("quiet") / "demo"
    return cli("demo", "--run", str(run), *settings([*QUIET_RUN, "eval.examples=1"]))


def test_the_demo_prints_no_third_party_warning(demo: subprocess.CompletedProcess) -> None:
    assert demo.returncode == 0, demo.stderr[-3000:]
    found = {name: message for name, message in TODAYS_NOISE.items() if message in demo.stderr + demo.stdout}
    assert not found, found
    shown = lines(demo.stderr)
    assert not [line for line in shown if "Warning" in line or "warn(" in line or GLOG_LINE.search(line)]
    for line in shown:
        level = re.match(r"(WARNING|ERROR|CRITICAL) (\S+):", line)
        assert level is None or level[2].startswith("tandemrec"), line


def test_the_demo_starts_with_our_own_output_and_keeps_its_report_on_stdout(demo: subprocess.CompletedProcess) -> None:
    assert lines(demo.stderr)[0].startswith("INFO tandemrec.")
    out = demo.stdout
    assert out.startswith("trained 2 epochs, best epoch ")
    assert "\n\n" + " " * 28 + "tandemrec popularity" in out  # the table after one blank line, as before
    assert re.search(r"\nuser \S+: recently \[", out) and "run folder: " in out
    # The trainer's epoch rows and sharding lines are log records now, on stderr.
    assert "sharding " not in out and '"epoch"' not in out
    epochs = [line for line in lines(demo.stderr) if line.startswith("INFO tandemrec.training.trainer: epoch ")]
    assert [line.split()[3] for line in epochs] == ["1:", "2:"] and all("valid_recall@10 0." in line for line in epochs)


def test_the_demo_shows_the_embedding_progress_with_a_rate(demo: subprocess.CompletedProcess) -> None:
    # The index step embeds the 120 items and 300 users of the tiny shop with bars.
    assert re.search(r"(?m)(^|\r)items: 100%\S* *\| *120/120 \[[^]]*row/s\]", demo.stderr), demo.stderr[-3000:]
    assert re.search(r"(?m)(^|\r)users: 100%\S* *\| *300/300 \[[^]]*row/s\]", demo.stderr)


def test_verbose_shows_the_third_party_warnings_again(tmp_path: Path) -> None:
    run = tmp_path / "verbose"
    done = cli("-v", "train", "demo", "--run", str(run), *settings([*TINY_OVERRIDES, "train.epochs=1"]))
    assert done.returncode == 0, done.stderr[-3000:]
    shown = [name for name, message in TODAYS_NOISE.items() if message in done.stderr]
    assert {"TorchRec planner: topology", "DDP broadcast_buffers", "torch.fx deprecation"} <= set(shown), shown


def test_the_filters_pass_our_warnings_and_drop_other_libraries() -> None:
    keep = ThirdPartyBelowError()

    def record(name: str, level: int) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, "message", None, None)

    assert keep.filter(record("tandemrec.jobs", logging.WARNING))
    assert keep.filter(record("tandemrec", logging.INFO))
    assert keep.filter(record("torchrec.distributed.planner.types", logging.ERROR))
    assert not keep.filter(record("torchrec.distributed.planner.types", logging.WARNING))
    assert not keep.filter(record("root", logging.WARNING))  # open_clip logs through the root logger
    assert not keep.filter(record("tandemrecord", logging.WARNING))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        install()
        for module, category in (("tandemrec.jobs", UserWarning), ("tandemrec.jobs", RuntimeWarning),
                                 ("torchrec.distributed.planners", UserWarning),
                                 ("tandemrec.training.distributed", FutureWarning)):
            warnings.warn_explicit(f"{module} {category.__name__}", category, "x.py", 1, module=module)
    assert [str(w.message) for w in caught] == ["tandemrec.jobs UserWarning", "tandemrec.jobs RuntimeWarning"]


def test_embedding_shows_a_bar_with_a_rate_only_when_asked(capsys: pytest.CaptureFixture) -> None:
    batches = [torch.ones(4, 3), torch.ones(2, 3)]
    vectors = embed(lambda batch: 2 * batch, batches, torch.device("cpu"), progress=True, total=6, desc="items")
    assert vectors.shape == (6, 3) and float(vectors.sum()) == 36.0
    assert re.search(r"items: 100%\S* *\| *6/6 \[[^]]*row/s\]", capsys.readouterr().err)
    embed(lambda batch: batch, batches, torch.device("cpu"), total=6, desc="items")
    assert capsys.readouterr().err == ""


def test_hard_negative_mining_shows_a_bar_when_asked(capsys: pytest.CaptureFixture) -> None:
    miner = HardNegativeMiner(n_users=4, depth=2)
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(3, 8)), rng.normal(size=(6, 8))
    miner.refresh(np.arange(1, 4), users, items, [np.array([1])] * 3, progress=True)
    assert re.search(r"hard negatives: 100%\S* *\| *3/3 \[[^]]*user/s\]", capsys.readouterr().err)
    assert (miner.lists[1:] != 0).all() and not (miner.lists[1:] == 1).any()


def test_a_text_checkpoint_missing_weights_is_reported_in_our_words_without_the_load_report(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A one-layer BERT checkpoint loaded as two layers: the second starts random. transformers' LOAD
    REPORT table (and its pooler rows, which every load has) stays out; our one-line warning says it."""
    small = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    transformers.BertModel(small).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 2}))
    transformers_records: list[logging.LogRecord] = []
    collector = logging.Handler()
    collector.emit = transformers_records.append
    logging.getLogger("transformers").addHandler(collector)
    try:
        with caplog.at_level(logging.WARNING, logger="tandemrec"):
            encoder = TextEncoder(TextEncoderConfig(name_or_path=str(tmp_path)))
    finally:
        logging.getLogger("transformers").removeHandler(collector)
    assert len(encoder.blocks) == 2
    assert not [r for r in transformers_records if "LOAD REPORT" in r.getMessage()]
    ours = [r.getMessage() for r in caplog.records if r.name == "tandemrec.towers.text_encoder"]
    assert len(ours) == 1 and "weights are not in the checkpoint and start random" in ours[0]
    assert "encoder.layer.1." in ours[0]
    assert transformers.logging.get_verbosity() == transformers.logging.WARNING  # put back after the load

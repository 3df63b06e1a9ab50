"""Third-party noise kept off the command line's screen: the one place it is filtered.

Deprecation notices and advice from torch, TorchRec, transformers and the rest speak to the developers
who call those libraries, not to a person running `tandemrec`: nothing there can be acted on from the
command line. The CLI installs these filters unless given `-v`, which shows everything again. Our own
warnings and every error pass untouched; warnings our code causes in a library are fixed where we cause
them (e.g. the text encoder's load, towers/text_encoder.py), not hidden here.
"""
from __future__ import annotations

import logging
import sys
import warnings

OURS = "tandemrec"
DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)

# Loggers that do not propagate to the root handler: torch._logging gives the `torch` logger a handler of
# its own (glog-style `[rank0]:W1130 ... torch/fx/_symbolic_trace.py:57] is_fx_tracing will return true
# ...`). These children are unregistered with torch._logging, so the levels set here survive its resets.
NON_PROPAGATING = ("torch.fx._symbolic_trace",)


def install(verbose: bool = False) -> None:
    """Hide third-party warnings below ERROR, from Python's warnings and from logging, for this process;
    `verbose` installs nothing. An explicit `python -W` or PYTHONWARNINGS keeps precedence over the
    warnings part."""
    if verbose:
        return
    if not sys.warnoptions:
        # Attributed to a frame outside tandemrec: a library warning about itself.
        warnings.filterwarnings("ignore", module=rf"(?!{OURS}(\.|$))")
        # Attributed to our frame (stacklevel points at the caller): a library API we call is deprecated.
        for category in DEPRECATIONS:
            warnings.filterwarnings("ignore", category=category)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ThirdPartyBelowError) for f in handler.filters):
            handler.addFilter(ThirdPartyBelowError())
    for name in NON_PROPAGATING:
        logging.getLogger(name).setLevel(logging.ERROR)


class ThirdPartyBelowError(logging.Filter):
    """Passes every tandemrec record and other libraries' errors; drops other libraries' warnings and
    below (TorchRec's planner advice, open_clip's root-logger messages)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or record.name == OURS or record.name.startswith(OURS + ".")

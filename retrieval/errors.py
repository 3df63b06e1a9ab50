"""The one error type of retrieval, so that callers can tell bad input from a bug."""

from tandemrec.errors import TandemrecError


class RetrievalError(TandemrecError, ValueError):
    """Bad input to retrieval: k <= 0, unknown ids, a dimension mismatch, a corrupt index file...

    Messages name the argument or file and what was expected.
    """

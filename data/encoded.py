"""Events in index space, built out of core: what training and evaluation read, without string ids.

A lazy plan over the interactions (a Parquet scan, or a frame) encodes user and item ids through the
vocabularies, labels the domains, sorts by (user, time, item) and tags each event with its part of the
split, and only then is collected: a few integer and boolean columns per event (25 bytes), never the
string tables, never a Python object per row. 50 million events take about 1.3 GB.
"""

from __future__ import annotations

import polars as pl

from tandemrec.data.dataset import Frame
from tandemrec.data.domains import SOURCE, TARGET, DomainConfig, label_domains, target_sparse
from tandemrec.data.split import ORDER, PARTS, SplitConfig, part_of
from tandemrec.data.vocabularies import Vocabularies

PART = "part"
PART_TYPE = pl.Enum(PARTS)


def encode_events(
    interactions: Frame, vocabs: Vocabularies, split: SplitConfig, domains: DomainConfig | None = None
) -> pl.DataFrame:
    """`user_id`, `item_id` (Int64 indices), `timestamp`, `part` and, with domains, `source` and `target`,
    sorted by (user_id, timestamp, item_id); events in neither domain are left out.

    Item indices sort as the item ids do (the vocabulary is sorted), so ties at one time are broken as
    `temporal_split` breaks them. With `domains.train_target_fraction` below 1, the training part is made
    target-sparse (`target_sparse`), its dropped events leaving the log too.
    """
    plan = interactions.lazy()
    flags: list[str] = []
    if domains is not None:
        plan = label_domains(plan, domains)
        flags = [SOURCE, TARGET]
    encoded = (
        plan.select(
            vocabs.users.expr("user_id").alias("user_id"),
            vocabs.items.expr("item_id").alias("item_id"),
            "timestamp",
            *flags,
            *([split.column] if split.given else []),  # a given split: its parts, as they are
        )
        .sort(ORDER)
        .with_columns(part_of(split).cast(PART_TYPE).alias(PART))
        .drop([split.column] if split.given else [])
        .collect(engine="streaming")
    )
    if domains is None or domains.train_target_fraction == 1.0:
        return encoded
    in_train = pl.col(PART) == "train"
    sparse = target_sparse(encoded.filter(in_train), domains.train_target_fraction, domains.seed)
    return pl.concat([sparse, encoded.filter(~in_train)]).sort(ORDER, maintain_order=True)

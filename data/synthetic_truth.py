"""The best ranking any recommender can give on the synthetic shop, computed from the generator's own truth.

The shop's events are drawn independently given a user's main class a and second class b (synthetic.py):

    P(item i | a, b) = MAIN_SHARE * within_i [class_i = a] + SECOND_SHARE * within_i [class_i = b]
                       + rest * anywhere_i

where within_i is item i's draw weight over its class's total, and anywhere_i its share of the "anywhere"
draws. Ranking a user's unseen items by this probability maximises the expected hits of a held-out event, so
it bounds what a recommender can reach on a split of the shop. Two such rankings:
- **known classes**: the user's true a and b. No system knows them; an upper bound only.
- **posterior**: a and b inferred by Bayes' rule from what a system sees too (the user's earlier items, with
  repeats, and attributes), with the generator's true weights: the Bayes-optimal ranking. A system learns the
  weights from the same events, so its expected recall is below this one's.
`benchmarks/synthetic_bound.py` sets both beside the systems of benchmark runs on the shop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tandemrec.data.synthetic import (
    ATTRIBUTE_AGREEMENT,
    ATTRIBUTES,
    MAIN_SHARE,
    SECOND_SHARE,
    ShopDraw,
    SyntheticShopConfig,
    draw_shop,
    implied_attributes,
)

REST_SHARE = 1 - MAIN_SHARE - SECOND_SHARE


class ShopTruth:
    """The event distribution of one synthetic shop. Items and users are indexed as the generator drew them
    (item_ids[i], user_ids[u])."""

    def __init__(self, shop: ShopDraw, long_tail: bool) -> None:
        self.item_ids: list[str] = shop.items["item_id"].to_list()
        self.user_ids: list[str] = shop.users["user_id"].to_list()
        self.item_class = shop.item_class
        self.main, self.second = shop.main, shop.second
        self.n_classes = int(shop.item_class.max()) + 1
        weights = shop.popularity
        self.within = weights / np.bincount(shop.item_class, weights=weights, minlength=self.n_classes)[shop.item_class]
        # "Anywhere" draws follow the catalogue's popularity in a long-tail shop, else are uniform.
        n = len(weights)
        self.anywhere = weights / weights.sum() if long_tail else np.full(n, 1.0 / n)
        self._attributes = {name: shop.users[name].to_list() for name in ATTRIBUTES}

    @classmethod
    def of(cls, config: SyntheticShopConfig) -> ShopTruth:
        """The truth of the shop that `make_synthetic_shop(dest, config)` writes (drawn again; no file read)."""
        return cls(draw_shop(config), config.long_tail)

    def probabilities(self, main: np.ndarray, second: np.ndarray) -> np.ndarray:
        """P(item | user) for users given as class shares: `main[u, c]` the probability that user u's main
        class is c, `second[u, c]` the same for the second class (one-hot rows: known classes). Shape
        (users, items); each row sums to 1."""
        by_class = MAIN_SHARE * main[:, self.item_class] + SECOND_SHARE * second[:, self.item_class]
        return by_class * self.within + REST_SHARE * self.anywhere

    def known_classes(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One-hot main and second class shares of `users` (generator indices)."""
        eye = np.eye(self.n_classes)
        return eye[self.main[users]], eye[self.second[users]]

    def posterior(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The main and second class shares of `users` given each one's earlier items (`histories[k]`:
        generator item indices, repeats counted) and stored attributes, by Bayes' rule over every (main,
        second) pair, main uniform and second uniform over the other classes, as the generator draws them."""
        classes = np.arange(self.n_classes)
        implied = implied_attributes(classes)
        same = classes[:, None] == classes[None, :]
        main_shares, second_shares = [], []
        for user, items in zip(users, histories):
            # Each event's likelihood is rest * anywhere unless its class is the pair's main or second one:
            # the log of the factor gained over that, summed per class.
            base = REST_SHARE * self.anywhere[items]
            cls = self.item_class[items]
            gain_main = np.bincount(cls, np.log1p(MAIN_SHARE * self.within[items] / base), self.n_classes)
            gain_second = np.bincount(cls, np.log1p(SECOND_SHARE * self.within[items] / base), self.n_classes)
            log_main = gain_main + _attribute_log_likelihood(self._user_attributes(user), implied)
            log_pair = log_main[:, None] + gain_second[None, :]
            log_pair[same] = -np.inf
            pair = np.exp(log_pair - log_pair.max())
            pair /= pair.sum()
            main_shares.append(pair.sum(axis=1))
            second_shares.append(pair.sum(axis=0))
        return np.array(main_shares), np.array(second_shares)

    def _user_attributes(self, user: int) -> dict[str, str]:
        return {name: values[user] for name, values in self._attributes.items()}


def _attribute_log_likelihood(values: Mapping[str, str], implied: Mapping[str, np.ndarray]) -> np.ndarray:
    """log P(the user's attribute values | main class c) for every class c: each attribute takes its implied
    value with probability ATTRIBUTE_AGREEMENT, else a uniformly drawn one."""
    total = np.zeros(len(next(iter(implied.values()))))
    for name, choices in ATTRIBUTES.items():
        agrees = implied[name] == choices.index(values[name])
        total += np.log(ATTRIBUTE_AGREEMENT * agrees + (1 - ATTRIBUTE_AGREEMENT) / len(choices))
    return total

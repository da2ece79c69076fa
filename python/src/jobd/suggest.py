""""Did you mean …?" for a misspelt task name, as jobd suggests one."""

from __future__ import annotations

from collections.abc import Iterable

# Nothing a person mistyped is this long, and the distance costs the product of the
# lengths.
_MAX_WORD = 100


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to `word` when it is a plausible typo of it: at most a
    third of its length in edits (at least one), or the same first four letters."""
    if len(word) > _MAX_WORD:
        return None
    lower = word.lower()
    limit = max(len(word) // 3, 1)
    best: tuple[int, str] | None = None
    for candidate in candidates:
        other = candidate.lower()
        shared = 0
        for a, b in zip(lower, other):
            if a != b:
                break
            shared += 1
        d = _distance(lower, other)
        if (d <= limit or shared >= 4) and (best is None or d < best[0]):
            best = (d, candidate)
    return best[1] if best else None


def _distance(a: str, b: str) -> int:
    """Optimal string alignment distance: Levenshtein plus adjacent transpositions,
    the commonest typing slip."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            best = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                best = min(best, d[i - 2][j - 2] + 1)
            d[i][j] = best
    return d[len(a)][len(b)]

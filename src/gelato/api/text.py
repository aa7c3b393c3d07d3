"""Token ids to text as they are committed: incremental detokenisation and stop strings across chunks.

:class:`IncrementalDetokenizer` emits, per new token, the text of all ids so far minus the text already
emitted, holding back an incomplete multi-byte character (a trailing U+FFFD) until it completes. It
decodes a short window (a few ids of context) rather than everything, so the cost per token is constant.

:class:`StopStringMatcher` holds back text that could be the start of a stop string, so a stop string
split across rounds is found and never partly sent.
"""

from __future__ import annotations

from collections.abc import Sequence

_CONTEXT_IDS = 5  # ids of left context kept for decoding (spaces that depend on the previous token)


class IncrementalDetokenizer:
    def __init__(self, tokenizer, context_ids: Sequence[int] = ()) -> None:
        """``context_ids``: the last few prompt ids, so the first generated token decodes as it would in place."""
        self.tokenizer = tokenizer
        self.ids: list[int] = list(context_ids)[-_CONTEXT_IDS:]
        self.prefix = 0  # window start
        self.read = len(self.ids)  # ids up to here are already emitted

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, token: int) -> str:
        """Append one id; return the text it completes (possibly empty)."""
        self.ids.append(int(token))
        before = self._decode(self.ids[self.prefix:self.read])
        after = self._decode(self.ids[self.prefix:])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = max(self.prefix, self.read - _CONTEXT_IDS), len(self.ids)
            return after[len(before):]
        return ""


class StopStringMatcher:
    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add text; return what can be sent now. After a stop string, ``stopped`` is set and the text
        before it is returned (the stop string itself is never sent)."""
        if self.stopped:
            return ""
        pending = self.held + text
        hits = [i for i in (pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            self.held = ""
            return pending[: min(hits)]
        keep = self._longest_partial(pending)
        self.held = pending[len(pending) - keep:] if keep else ""
        return pending[: len(pending) - keep]

    def flush(self) -> str:
        """The held-back text, at the end of generation (it did not become a stop string)."""
        out, self.held = ("" if self.stopped else self.held), ""
        return out

    def _longest_partial(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of some stop string."""
        best = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best

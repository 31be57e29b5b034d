"""Request and response header modifiers (Gateway API RequestHeaderModifier /
ResponseHeaderModifier), on a rule and on a backendRef.

A modifier is constant per rule, so it never runs per request: it is folded
into `HeaderEdits`, the names to drop from what arrived and the header lines
to append, which the proxy applies while it joins the head it already builds.
`set` replaces every value of a name, `add` appends one, `remove` drops the
name; names compare case-insensitively. A backendRef's modifier applies after
the rule's (`HeaderEdits.then`): its `set` and `remove` win over the rule's
lines of the same name.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.model import HeaderModifier


@dataclass(frozen=True, slots=True)
class HeaderEdits:
    """A header modifier as the proxy applies it."""

    drop: frozenset[bytes] = frozenset()
    """Lowercased names removed from the message before `lines` are appended (remove ∪ set)."""
    lines: bytes = b""
    """The `set` and `add` headers as `name: value\\r\\n` lines."""
    pairs: tuple[tuple[bytes, bytes], ...] = ()
    """The same lines as lowercased-name/value pairs (for `then`)."""

    @staticmethod
    def of(modifier: HeaderModifier | None) -> HeaderEdits:
        if modifier is None:
            return NO_EDITS
        set_ = tuple((_name(h.name), h.value.encode("latin-1")) for h in modifier.set)
        add = tuple((_name(h.name), h.value.encode("latin-1")) for h in modifier.add)
        drop = frozenset(_name(n) for n in modifier.remove) | {n for n, _ in set_}
        return HeaderEdits(drop, _lines(set_ + add), set_ + add)

    def then(self, later: HeaderEdits) -> HeaderEdits:
        """These edits followed by `later`'s (a backendRef's after its rule's)."""
        if not later.drop and not later.pairs:
            return self
        kept = tuple((n, v) for n, v in self.pairs if n not in later.drop)
        pairs = kept + later.pairs
        return HeaderEdits(self.drop | later.drop, _lines(pairs), pairs)

    def apply(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The edited header list (for tests and slow paths; the proxy joins bytes)."""
        out = [(n, v) for n, v in headers if n.lower() not in self.drop]
        return out + list(self.pairs)


NO_EDITS = HeaderEdits()


def _name(name: str) -> bytes:
    return name.lower().encode("latin-1")


def _lines(pairs: tuple[tuple[bytes, bytes], ...]) -> bytes:
    return b"".join(n + b": " + v + b"\r\n" for n, v in pairs)

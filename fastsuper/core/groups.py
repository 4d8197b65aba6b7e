"""Grouped input laws (THEORY §8): correlated and anticorrelated features.

Features are partitioned into groups, independent of each other and of the
ungrouped features.  Inside a group ``G`` a gate opens with probability
``q_G``; then

- ``"correlated"``: every member is active;
- ``"partial"``: member ``i`` is active independently with probability ``r_i``
  (``r_i = 1`` for every member is ``"correlated"``);
- ``"exclusive"`` (anticorrelated): exactly one member, chosen with weights
  ``w_i`` (normalised to sum 1 within the group), is active.

Active members take iid values of the value law, as ungrouped features do.
:func:`parse_groups` checks a group specification and returns a
:class:`GroupSpec`; :func:`units` lays the law out for the compiled sampler
(:func:`fastsuper.core.laws.draw_grouped`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from fastsuper.core import validation as v

__all__ = [
    "ALL",
    "EXCLUSIVE",
    "EXCLUSIVE_EQUAL",
    "GROUP_KEYS",
    "KINDS",
    "PARTIAL",
    "GroupSpec",
    "Units",
    "check_group_kwargs",
    "parse_groups",
    "units",
]

#: sampler codes of a unit: every member active, each member with its own probability
#: (a partial group with some ``r_i < 1``), or exactly one member (by weight, or uniformly)
ALL, PARTIAL, EXCLUSIVE, EXCLUSIVE_EQUAL = range(4)
#: accepted kind names and their canonical names
KINDS = {
    "correlated": "correlated",
    "partial": "partial",
    "exclusive": "exclusive",
    "anticorrelated": "exclusive",
}


@dataclass(frozen=True, eq=False)
class GroupSpec:
    """A checked group specification of ``n`` features (see :mod:`fastsuper.core.groups`).

    Attributes
    ----------
    members : tuple of ndarray
        Sorted int64 feature indices of each group, in group order.
    kinds : tuple of str
        ``"correlated"``, ``"partial"`` or ``"exclusive"`` for each group.
    q : ndarray of shape (n_groups,)
        Gate probability ``q_G`` of each group.
    r : ndarray of shape (n,)
        In-group activation probability of each member of a partial group
        (1 for every other feature).
    weights : ndarray of shape (n,)
        Weight of each member of an exclusive group, normalised to sum 1 in
        its group (0 for every other feature).
    label : ndarray of shape (n,)
        Group number of each feature, ``-1`` for an ungrouped feature.
    """

    members: tuple
    kinds: tuple
    q: np.ndarray
    r: np.ndarray
    weights: np.ndarray
    label: np.ndarray

    @property
    def n_groups(self) -> int:
        """Number of groups."""
        return len(self.members)

    def marginals(self, p: np.ndarray) -> np.ndarray:
        """Per-feature activation probabilities; ``p`` gives those of the ungrouped features."""
        out = np.array(p, dtype=np.float64, copy=True)
        for g, mem in enumerate(self.members):
            if self.kinds[g] == "exclusive":
                out[mem] = self.q[g] * self.weights[mem]
            else:
                out[mem] = self.q[g] * self.r[mem]
        return out

    def to_kwargs(self) -> dict:
        """The spec as JSON-serialisable keyword arguments of :class:`fastsuper.SparseInputs`."""
        out = {
            "groups": [mem.tolist() for mem in self.members],
            "kind": list(self.kinds),
            "q": self.q.tolist(),
        }
        if "exclusive" in self.kinds:
            out["weights"] = np.where(self.weights > 0, self.weights, 1.0).tolist()
        if "partial" in self.kinds:
            out["r"] = self.r.tolist()
        return out

    def describe(self, limit: int = 4) -> str:
        """Short text naming the groups (for reprs and errors)."""
        parts = []
        for g in range(min(self.n_groups, limit)):
            mem = self.members[g].tolist()
            shown = mem if len(mem) <= 6 else mem[:5] + ["..."]
            parts.append(f"{self.kinds[g]} {shown} q={self.q[g]:g}".replace("'...'", "..."))
        more = f", ... ({self.n_groups} groups)" if self.n_groups > limit else ""
        return "[" + ", ".join(parts) + more + "]"


def _members_from_labels(n: int, arr: np.ndarray, func) -> list[np.ndarray]:
    pre = v.prefix(func)
    if arr.shape != (n,):
        raise ValueError(
            f"{pre}groups as labels must have shape ({n},) (one integer per feature, negative "
            f"for an ungrouped feature), got shape {arr.shape}"
        )
    labels = np.unique(arr[arr >= 0])
    return [np.flatnonzero(arr == lab).astype(np.int64) for lab in labels]


def _members_from_lists(n: int, groups, func) -> list[np.ndarray]:
    pre = v.prefix(func)
    seen = np.full(n, -1, dtype=np.int64)
    members = []
    for g, idx in enumerate(groups):
        a = np.asarray(idx)
        if a.ndim != 1 or a.size == 0 or (a.dtype.kind not in "iu"):
            raise ValueError(
                f"{pre}groups[{g}] must be a non-empty 1-d array of feature indices, got "
                f"{v.show(idx)}"
            )
        bad = (a < 0) | (a >= n)
        if bad.any():
            raise ValueError(
                f"{pre}groups[{g}] holds feature index {int(a[bad][0])}, outside [0, n={n})"
            )
        a = np.sort(a.astype(np.int64))
        for i in a:
            if seen[i] >= 0:
                where = f"groups[{seen[i]}] and groups[{g}]" if seen[i] != g else f"groups[{g}]"
                raise ValueError(
                    f"{pre}feature {int(i)} appears twice ({where}); groups must be disjoint"
                )
            seen[i] = g
        members.append(a)
    return members


def _members(n: int, groups, func) -> list[np.ndarray]:
    """Sorted member arrays of the groups (labels or a list of index arrays)."""
    if isinstance(groups, (str, bytes, numbers.Number)) or groups is True or groups is False:
        raise TypeError(
            f"{v.prefix(func)}groups must be one integer label per feature or a list of index "
            f"arrays, got {v.show(groups)}"
        )
    if isinstance(groups, np.ndarray) and groups.dtype.kind in "iu":
        return _members_from_labels(n, groups, func)
    try:
        arr = np.asarray(groups)
    except ValueError:  # ragged lists
        arr = None
    if arr is not None and arr.ndim == 1 and arr.dtype.kind in "iu":
        if len(groups) and not isinstance(groups[0], (list, tuple, np.ndarray)):
            return _members_from_labels(n, arr, func)  # labels (of any length: checked there)
    if arr is not None and arr.ndim == 1 and arr.dtype.kind not in "iuO":
        raise TypeError(
            f"{v.prefix(func)}groups must hold integers (labels or feature indices), got "
            f"{v.show(groups)}"
        )
    return _members_from_lists(n, list(groups), func)


def _kinds(kind, n_groups: int, func) -> tuple:
    pre = v.prefix(func)
    names = [kind] * n_groups if isinstance(kind, str) else list(kind)
    if len(names) != n_groups:
        raise ValueError(f"{pre}kind must be one name or one per group ({n_groups}), got {kind!r}")
    for g, name in enumerate(names):
        if not isinstance(name, str) or name not in KINDS:
            raise ValueError(f"{pre}kind of group {g} must be one of {sorted(KINDS)}, got {name!r}")
    return tuple(KINDS[name] for name in names)


def _gates(q, p, n_groups: int, func) -> np.ndarray:
    pre = v.prefix(func)
    if q is None:
        if p is None or np.ndim(p) != 0:
            raise ValueError(
                f"{pre}give q (the gate probability of each group, a scalar or one per group): "
                f"q defaults to p only when p is one number, got p = {v.show(p)}"
            )
        q = p
    qa = v.check_probabilities("q", q, func=func)
    if qa.ndim == 0:
        qa = np.full(n_groups, float(qa))
    if qa.shape != (n_groups,):
        raise ValueError(
            f"{pre}q must be a scalar or have shape ({n_groups},) (one per group), got "
            f"shape {qa.shape}"
        )
    return qa


def _in_group_r(r, n: int, members, kinds, func) -> np.ndarray:
    pre = v.prefix(func)
    out = np.ones(n)
    if r is None:
        return out
    ra = v.check_probabilities("r", r, n, positive=True, func=func)
    for g, mem in enumerate(members):
        if kinds[g] == "partial":
            out[mem] = ra[mem]
        elif np.ndim(r) != 0 and np.any(ra[mem] != 1.0):
            i = int(mem[np.argmax(ra[mem] != 1.0)])
            raise ValueError(
                f"{pre}r[{i}] = {ra[i]} but feature {i} is in {kinds[g]} group {g}; r applies "
                "to partial groups only (kind='partial')"
            )
    return out


def _exclusive_weights(weights, n: int, members, kinds, func) -> np.ndarray:
    pre = v.prefix(func)
    out = np.zeros(n)
    wa = None
    if weights is not None:
        wa = v.as_float_array("weights", weights, ndim=1, dtype=np.float64, shape=(n,), func=func)
    for g, mem in enumerate(members):
        if kinds[g] != "exclusive":
            continue
        w = np.ones(mem.size) if wa is None else wa[mem]
        if wa is not None and not np.all(np.isfinite(w) & (w > 0)):
            i = int(mem[np.argmax(~(np.isfinite(w) & (w > 0)))])
            raise ValueError(
                f"{pre}weights must be > 0 on the members of exclusive groups; weights[{i}] = "
                f"{wa[i]} (group {g})"
            )
        out[mem] = w / w.sum()
    if wa is not None and not any(k == "exclusive" for k in kinds):
        raise ValueError(f"{pre}weights apply to exclusive groups only, and there are none")
    return out


def parse_groups(n: int, groups, kind, q, weights, r, p, *, func=None) -> GroupSpec:
    """Check a group specification (see :class:`fastsuper.SparseInputs`).

    Parameters
    ----------
    n : int
        Number of features.
    groups : array_like of int of shape (n,), or list of array_like of int
        One label per feature (features with the same label ``>= 0`` form a
        group, ordered by label; a negative label leaves a feature
        ungrouped), or a list of disjoint index arrays, one per group.
    kind : str or sequence of str
        ``"correlated"``, ``"partial"`` or ``"exclusive"`` (alias
        ``"anticorrelated"``), one for all groups or one per group.
    q : float or array_like of shape (n_groups,) or None
        Gate probabilities; ``None`` takes ``p`` when it is one number.
    weights : array_like of shape (n,) or None
        Positive weights of the members of exclusive groups (default equal).
    r : float or array_like of shape (n,) or None
        In-group probabilities of the members of partial groups (default 1).
    p : float or ndarray or None
        The ``p`` given to :class:`fastsuper.SparseInputs`.
    func : str, optional
        Name of the public function, for errors.

    Returns
    -------
    GroupSpec

    Examples
    --------
    >>> from fastsuper.core.groups import parse_groups
    >>> spec = parse_groups(4, [[0, 1], [2, 3]], ["correlated", "exclusive"], 0.1, None, None, None)
    >>> spec.marginals([0.0] * 4).tolist()
    [0.1, 0.1, 0.05, 0.05]
    """
    members = _members(n, groups, func)
    if not members:
        raise ValueError(f"{v.prefix(func)}groups holds no group, got {v.show(groups)}")
    kinds = _kinds(kind, len(members), func)
    qa = _gates(q, p, len(members), func)
    label = np.full(n, -1, dtype=np.int64)
    for g, mem in enumerate(members):
        label[mem] = g
    ra = _in_group_r(r, n, members, kinds, func)
    wa = _exclusive_weights(weights, n, members, kinds, func)
    return GroupSpec(tuple(members), kinds, qa, ra, wa, label)


@dataclass(frozen=True)
class Units:
    """The grouped law laid out for the sampler: every group and ungrouped feature is a unit.

    Units are ordered by their smallest feature; unit ``u`` has members
    ``mem[ptr[u]:ptr[u+1]]`` (sorted), gate probability ``q[u]``, sampler
    code ``kind[u]`` (:data:`ALL`, :data:`PARTIAL`, :data:`EXCLUSIVE` or
    :data:`EXCLUSIVE_EQUAL`) and per-member
    ``val``: the in-group probability (partial) or the cumulative weight
    (exclusive, last member exactly 1).  ``interleaved`` is True when the
    members of different units interleave, so a sample's active features
    must be sorted after they are drawn.
    """

    q: np.ndarray
    ptr: np.ndarray
    mem: np.ndarray
    kind: np.ndarray
    val: np.ndarray
    interleaved: bool


def units(spec: GroupSpec, p: np.ndarray) -> Units:
    """The :class:`Units` of a group spec; ``p`` holds the ungrouped features' probabilities."""
    n = spec.label.shape[0]
    blocks = [(int(mem[0]), g) for g, mem in enumerate(spec.members)]
    blocks += [(int(i), -1) for i in np.flatnonzero(spec.label < 0)]
    blocks.sort()
    q, ptr, kind = [], [0], []
    mem = np.empty(n, dtype=np.int64)
    val = np.ones(n)
    at = 0
    for first, g in blocks:
        if g < 0:
            mem[at] = first
            q.append(float(p[first]))
            kind.append(ALL)
            at += 1
        else:
            m = spec.members[g]
            mem[at : at + m.size] = m
            q.append(float(spec.q[g]))
            if spec.kinds[g] == "exclusive" and m.size == 1:  # its one member, no draw
                kind.append(ALL)
            elif spec.kinds[g] == "exclusive":
                cw = np.cumsum(spec.weights[m])
                cw[-1] = 1.0
                val[at : at + m.size] = cw
                w = spec.weights[m]
                kind.append(EXCLUSIVE_EQUAL if np.all(w == w[0]) else EXCLUSIVE)
            else:
                val[at : at + m.size] = spec.r[m]
                kind.append(PARTIAL if np.any(spec.r[m] < 1.0) else ALL)
            at += m.size
        ptr.append(at)
    ptr = np.array(ptr, dtype=np.int64)
    last = mem[ptr[1:] - 1]
    interleaved = bool(np.any(last[:-1] > mem[ptr[1:-1]]))
    return Units(np.array(q), ptr, mem, np.array(kind, dtype=np.int64), val, interleaved)


#: the keyword arguments of :class:`fastsuper.SparseInputs` that describe groups
GROUP_KEYS = ("groups", "kind", "q", "weights", "r")


def check_group_kwargs(groups, *, func=None) -> dict | None:
    """A dict of group keywords (``groups``, ``kind``, ``q``, ``weights``, ``r``), or ``None``.

    The form in which :func:`fastsuper.fit` and :func:`fastsuper.fit_exact`
    take a grouped law; the values are checked when the law is built.
    """
    if groups is None:
        return None
    if not isinstance(groups, dict) or "groups" not in groups:
        raise TypeError(
            f"{v.prefix(func)}groups must be a dict of SparseInputs keywords with at least "
            f"'groups' (and any of {list(GROUP_KEYS[1:])}), got {v.show(groups)}"
        )
    bad = sorted(set(groups) - set(GROUP_KEYS))
    if bad:
        raise ValueError(
            f"{v.prefix(func)}groups has unknown keys {bad}; allowed: {list(GROUP_KEYS)}"
        )
    return dict(groups)

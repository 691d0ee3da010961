"""RFC 9162 Merkle Tree Hash (SHA-256): streaming roots, proofs and their verification.

The tree over leaves ``D[0:n]`` follows RFC 9162 §2.1.1::

    MTH({})     = SHA-256()
    MTH({d0})   = SHA-256(0x00 || d0)                         leaf hash
    MTH(D[0:n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))  node hash, k = largest 2^i < n

Three layers, each usable alone:

- hashing: :func:`leaf_hash`, :func:`node_hash`, and :class:`MerkleAccumulator`, which keeps
  one pending subtree root per set bit of the size (a "compact range"), so a root over a
  million leaves needs about twenty hashes of memory;
- proof generation without holding the leaves: :func:`inclusion_proof_ranges` and
  :func:`consistency_proof_ranges` name the leaf ranges ``[a, b)`` whose tree hashes form the
  proof, and :class:`RangeHasher` computes those hashes from one pass over the leaf hashes;
- verification (RFC 9162 §2.1.3.2 and §2.1.4.2), modelled on transparency-dev/merkle's
  ``VerifyInclusion`` / ``VerifyConsistency``: pure functions with keyword arguments that
  check their preconditions first, compute a root, then compare, and raise
  :class:`ProofError` saying what was expected and what was found.

>>> acc = MerkleAccumulator()
>>> for data in (b"a", b"b", b"c"):
...     acc.append(data)
>>> acc.root() == root_of([leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")])
True
>>> inclusion_proof_ranges(2, 3)
[(0, 2)]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import sha256
from typing import Final

from pytest_rtgov.errors import IntegrityError, RtgovError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "ConsistencyProver",
    "MerkleAccumulator",
    "MerkleError",
    "ProofError",
    "RangeHasher",
    "TreeRangeError",
    "consistency_proof",
    "consistency_proof_ranges",
    "inclusion_proof",
    "inclusion_proof_ranges",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "root_of",
    "roots_from_consistency_proof",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
"""Bytes in every hash: leaf hashes, node hashes, roots and proof entries."""
LEAF_PREFIX: Final = b"\x00"
"""Domain-separation byte before a leaf's data (RFC 9162 §2.1.1)."""
NODE_PREFIX: Final = b"\x01"
"""Domain-separation byte before two child hashes (RFC 9162 §2.1.1)."""
EMPTY_ROOT: Final = sha256(b"").digest()
"""MTH of the empty tree: SHA-256 of the empty string."""


class MerkleError(RtgovError):
    """Root of the Merkle errors."""


class TreeRangeError(MerkleError, ValueError):
    """Arguments that name no proof: an index outside the tree, sizes out of order."""


class ProofError(MerkleError, IntegrityError):
    """A proof did not verify, or its inputs cannot form a valid proof."""


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one leaf."""
    return sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly less than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleAccumulator:
    """The root of a growing tree in O(log n) memory.

    ``_pending`` holds the roots of the perfect subtrees the leaves so far decompose into,
    largest (leftmost) first; there is one per set bit of :attr:`size`. Appending merges
    while the size's low bits are 1, like incrementing a binary counter, so each leaf costs
    one leaf hash and, on average, one node hash.
    """

    __slots__ = ("_pending", "_size")

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._size = 0

    @property
    def size(self) -> int:
        """Number of leaves appended."""
        return self._size

    def append(self, data: bytes) -> None:
        """Append a leaf given its data (hashed with :func:`leaf_hash`)."""
        h = sha256(b"\x00" + data).digest()
        # The merge loop is inlined in each append method: this is the hot path.
        size = self._size
        pending = self._pending
        while size & 1:
            h = sha256(b"\x01" + pending.pop() + h).digest()
            size >>= 1
        pending.append(h)
        self._size += 1

    def append_leaf_hash(self, leaf_hash: bytes) -> None:
        """Append a leaf given its 32-byte leaf hash."""
        if len(leaf_hash) != HASH_SIZE:
            raise TreeRangeError(
                f"expected a {HASH_SIZE}-byte leaf hash, got {len(leaf_hash)} bytes"
            )
        h = leaf_hash if type(leaf_hash) is bytes else bytes(leaf_hash)  # no copy: hot path
        size = self._size
        pending = self._pending
        while size & 1:
            h = sha256(b"\x01" + pending.pop() + h).digest()
            size >>= 1
        pending.append(h)
        self._size += 1

    def extend(self, items: Iterable[bytes]) -> None:
        """Append many leaves given their data; faster than calling :meth:`append` in a loop."""
        pending = self._pending
        pop = pending.pop
        push = pending.append
        count = self._size
        for data in items:
            h = sha256(b"\x00" + data).digest()
            size = count
            while size & 1:
                h = sha256(b"\x01" + pop() + h).digest()
                size >>= 1
            push(h)
            count += 1
        self._size = count

    def compact_range(self) -> list[bytes]:
        """A copy of the pending subtree roots, largest first: one per set bit of :attr:`size`.

        With :meth:`restore` this lets a caller run the append loop inline (the ledger
        scanner does, at a million leaves) and hand the state back.
        """
        return list(self._pending)

    def restore(self, size: int, pending: Iterable[bytes]) -> None:
        """Set the state to ``size`` leaves with the pending subtree roots ``pending``,
        as :meth:`compact_range` gives them."""
        roots = list(pending)
        if size < 0 or len(roots) != size.bit_count():
            raise TreeRangeError(
                f"expected one pending root per set bit of size {size}, got {len(roots)}"
            )
        self._pending = roots
        self._size = size

    def root(self) -> bytes:
        """MTH of the leaves so far; :data:`EMPTY_ROOT` when there are none."""
        pending = self._pending
        if not pending:
            return EMPTY_ROOT
        h = pending[-1]
        for left in reversed(pending[:-1]):
            h = sha256(b"\x01" + left + h).digest()
        return h


def _check_index(index: int, size: int) -> None:
    if not 0 <= index < size:
        raise TreeRangeError(f"expected a leaf index in [0, {size}), got {index}")


def _path_ranges(index: int, start: int, end: int, out: list[tuple[int, int]]) -> None:
    # RFC 9162 §2.1.3.1 PATH(m, D[start:end]); appends bottom-up, the order of the proof.
    n = end - start
    if n <= 1:
        return
    k = _split(n)
    if index < start + k:
        _path_ranges(index, start, start + k, out)
        out.append((start + k, end))
    else:
        _path_ranges(index, start + k, end, out)
        out.append((start, start + k))


def _subproof_ranges(
    m: int, start: int, end: int, complete: bool, out: list[tuple[int, int]]
) -> None:
    # RFC 9162 §2.1.4.1 SUBPROOF(m, D[start:end], b), with m counted from start.
    n = end - start
    if m == n:
        if not complete:
            out.append((start, end))
        return
    k = _split(n)
    if m <= k:
        _subproof_ranges(m, start, start + k, complete, out)
        out.append((start + k, end))
    else:
        _subproof_ranges(m - k, start + k, end, False, out)
        out.append((start, start + k))


def inclusion_proof_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges ``[a, b)`` whose tree hashes, in order, prove ``index`` in a tree of ``size``.

    >>> inclusion_proof_ranges(0, 8)
    [(1, 2), (2, 4), (4, 8)]
    """
    _check_index(index, size)
    out: list[tuple[int, int]] = []
    _path_ranges(index, 0, size, out)
    return out


def consistency_proof_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """Leaf ranges whose tree hashes, in order, prove tree ``size1`` a prefix of ``size2``.

    Empty when the sizes are equal. ``size1 == 0`` is refused, as in :func:`verify_consistency`:
    every tree extends the empty one, so such a proof proves nothing.

    >>> consistency_proof_ranges(3, 7)
    [(2, 3), (3, 4), (0, 2), (4, 7)]
    """
    if not 0 < size1 <= size2:
        raise TreeRangeError(f"expected 0 < size1 <= size2, got size1={size1}, size2={size2}")
    out: list[tuple[int, int]] = []
    _subproof_ranges(size1, 0, size2, True, out)
    return out


class RangeHasher:
    """Tree hashes of several leaf ranges from one in-order pass over the leaf hashes.

    Feed leaf hashes for indices 0, 1, 2, ... with :meth:`feed`; then :meth:`hashes` returns
    ``MTH(D[a:b])`` for each range in the order given. Memory is one
    :class:`MerkleAccumulator` per range. Ranges may overlap and come in any order.

    >>> leaves = [leaf_hash(bytes([i])) for i in range(5)]
    >>> hasher = RangeHasher(inclusion_proof_ranges(1, 5))
    >>> for h in leaves:
    ...     hasher.feed(h)
    >>> hasher.hashes() == inclusion_proof(leaves, 1, 5)
    True
    """

    __slots__ = (
        "_accumulators",
        "_active",
        "_boundaries",
        "_fed",
        "_needed",
        "_next_boundary",
        "_ranges",
    )

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        self._ranges = tuple((int(a), int(b)) for a, b in ranges)
        for a, b in self._ranges:
            if not 0 <= a < b:
                raise TreeRangeError(f"expected leaf ranges [a, b) with 0 <= a < b, got [{a}, {b})")
        self._accumulators = tuple(MerkleAccumulator() for _ in self._ranges)
        self._needed = max((b for _, b in self._ranges), default=0)
        # Indices where the set of ranges containing the next leaf changes, latest first.
        self._boundaries = sorted({i for r in self._ranges for i in r}, reverse=True)
        self._active: tuple[MerkleAccumulator, ...] = ()
        self._fed = 0
        self._next_boundary = self._boundaries.pop() if self._boundaries else -1

    @property
    def fed(self) -> int:
        """Number of leaf hashes fed so far."""
        return self._fed

    @property
    def needed(self) -> int:
        """Number of leaf hashes that must be fed before :meth:`hashes` can answer."""
        return self._needed

    def feed(self, leaf_hash: bytes) -> None:
        """Feed the leaf hash of the next index."""
        index = self._fed
        if index == self._next_boundary:
            self._active = tuple(
                acc
                for (a, b), acc in zip(self._ranges, self._accumulators, strict=True)
                if a <= index < b
            )
            self._next_boundary = self._boundaries.pop() if self._boundaries else -1
        for acc in self._active:
            acc.append_leaf_hash(leaf_hash)
        self._fed = index + 1

    def hashes(self) -> list[bytes]:
        """``MTH(D[a:b])`` for each range, in the order the ranges were given."""
        if self._fed < self._needed:
            raise TreeRangeError(
                f"expected at least {self._needed} leaf hashes fed, got {self._fed}"
            )
        return [acc.root() for acc in self._accumulators]


class ConsistencyProver:
    """The consistency proof from ``size1`` to ``size2`` alongside a streaming pass that
    already computes the tree, hashing only the leaves after ``size1`` once more.

    Every range of such a proof is either a node of the compact range of
    ``[0, size1)`` (the pending subtree roots of a :class:`MerkleAccumulator` at
    ``size1``, free to a pass that builds the tree) or lies inside ``[size1, size2)``.
    Hand the former over with :meth:`take_compact_range` when the pass reaches
    ``size1``; feed the leaf hashes of indices ``size1 .. size2 - 1`` to :meth:`feed`.

    >>> leaves = [leaf_hash(bytes([i])) for i in range(7)]
    >>> prover, tree = ConsistencyProver(3, 7), MerkleAccumulator()
    >>> for i, h in enumerate(leaves):
    ...     tree.append_leaf_hash(h)
    ...     if tree.size == 3:
    ...         prover.take_compact_range(tree.compact_range())
    ...     if i >= 3:
    ...         prover.feed(h)
    >>> prover.proof() == consistency_proof(leaves, 3, 7)
    True
    """

    __slots__ = ("_left", "_ranges", "_right", "size1", "size2")

    def __init__(self, size1: int, size2: int) -> None:
        self._ranges = consistency_proof_ranges(size1, size2)
        self.size1, self.size2 = size1, size2
        self._right = RangeHasher((a - size1, b - size1) for a, b in self._ranges if a >= size1)
        self._left: dict[tuple[int, int], bytes] | None = None

    @property
    def needed(self) -> int:
        """How many leaf hashes, from index ``size1`` on, :meth:`feed` must get."""
        return self._right.needed

    def feed(self, leaf_hash: bytes) -> None:
        """Feed the leaf hash of the next index from ``size1`` on."""
        self._right.feed(leaf_hash)

    def take_compact_range(self, pending: Sequence[bytes]) -> None:
        """The pending roots at ``size1``, as :meth:`MerkleAccumulator.compact_range` gives."""
        sizes = [
            1 << bit for bit in range(self.size1.bit_length() - 1, -1, -1) if self.size1 >> bit & 1
        ]
        if len(pending) != len(sizes):
            raise TreeRangeError(
                f"expected {len(sizes)} pending roots for size {self.size1}, got {len(pending)}"
            )
        self._left, start = {}, 0
        for size, root in zip(sizes, pending, strict=True):
            self._left[(start, start + size)] = root
            start += size

    def proof(self) -> list[bytes]:
        """The proof's hashes, in RFC 9162 order."""
        if self._left is None:
            raise TreeRangeError(f"the compact range at size {self.size1} was not taken")
        right = iter(self._right.hashes())
        return [self._left[(a, b)] if b <= self.size1 else next(right) for a, b in self._ranges]


def _hash_ranges(leaf_hashes: Sequence[bytes], ranges: list[tuple[int, int]]) -> list[bytes]:
    hasher = RangeHasher(ranges)
    for i in range(hasher.needed):
        hasher.feed(leaf_hashes[i])
    return hasher.hashes()


def _check_available(leaf_hashes: Sequence[bytes], size: int) -> None:
    if size > len(leaf_hashes):
        raise TreeRangeError(f"expected at least {size} leaf hashes, got {len(leaf_hashes)}")


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH of a tree given all its leaf hashes."""
    acc = MerkleAccumulator()
    for h in leaf_hashes:
        acc.append_leaf_hash(h)
    return acc.root()


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """RFC 9162 inclusion proof for ``index`` in the tree of the first ``size`` leaf hashes."""
    _check_available(leaf_hashes, size)
    return _hash_ranges(leaf_hashes, inclusion_proof_ranges(index, size))


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int, size2: int) -> list[bytes]:
    """RFC 9162 consistency proof between the trees of the first ``size1`` and ``size2`` leaves."""
    _check_available(leaf_hashes, size2)
    return _hash_ranges(leaf_hashes, consistency_proof_ranges(size1, size2))


# -- verification ---------------------------------------------------------------------------


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"expected {what} of {HASH_SIZE} bytes, got {len(value)} bytes")


def _check_proof_entries(proof: Sequence[bytes]) -> None:
    for i, entry in enumerate(proof):
        _check_hash(entry, f"proof[{i}]")


def _inclusion_proof_size(index: int, size: int) -> int:
    # The path splits into the levels where index and the last leaf still differ (inner)
    # and, above them, one entry per left sibling on the right border (border).
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner + border


def root_from_inclusion_proof(
    *, index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root that ``proof`` gives for ``leaf_hash`` at ``index`` in a tree of ``size``.

    Checks the preconditions (index in range, 32-byte hashes, exact proof length) and
    raises :class:`ProofError` when they fail; compares nothing.
    """
    if not 0 <= index < size:
        raise ProofError(f"expected a leaf index in [0, {size}), got {index}")
    _check_hash(leaf_hash, "a leaf hash")
    _check_proof_entries(proof)
    want = _inclusion_proof_size(index, size)
    if len(proof) != want:
        raise ProofError(
            f"expected an inclusion proof of {want} hashes for index {index} in size {size}, "
            f"got {len(proof)}"
        )
    # RFC 9162 §2.1.3.2.
    fn, sn, r = index, size - 1, bytes(leaf_hash)
    for p in proof:
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # unreachable once the length matched; kept as the RFC's final check
        raise ProofError(f"inclusion proof too short for index {index} in size {size}")
    return r


def verify_inclusion(
    *, index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``proof`` shows ``leaf_hash`` at ``index`` in the tree of ``size`` with ``root``.

    Raises :class:`ProofError` on any failure; returns ``None`` when the proof holds.
    """
    _check_hash(root, "a root")
    computed = root_from_inclusion_proof(index=index, size=size, leaf_hash=leaf_hash, proof=proof)
    if computed != root:
        raise ProofError(
            f"inclusion proof for index {index} in size {size} gives root {computed.hex()}, "
            f"expected {bytes(root).hex()}"
        )


def _consistency_proof_size(size1: int, size2: int) -> int:
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    shift = (size1 & -size1).bit_length() - 1  # trailing zeros of size1
    start = 0 if size1 == 1 << shift else 1  # a power-of-two size1 is its own seed
    return start + inner - shift + border


def roots_from_consistency_proof(
    *, size1: int, size2: int, proof: Sequence[bytes], root1: bytes
) -> tuple[bytes, bytes]:
    """The roots ``(root1, root2)`` that ``proof`` gives for sizes ``0 < size1 < size2``.

    Checks the preconditions and raises :class:`ProofError` when they fail; compares nothing.
    ``root1`` is needed as the seed when ``size1`` is a power of two.
    """
    if not 0 < size1 < size2:
        raise ProofError(
            f"expected 0 < size1 < size2 for a non-empty proof, got size1={size1}, size2={size2}"
        )
    _check_hash(root1, "root1")
    _check_proof_entries(proof)
    want = _consistency_proof_size(size1, size2)
    if len(proof) != want:
        raise ProofError(
            f"expected a consistency proof of {want} hashes from size {size1} to {size2}, "
            f"got {len(proof)}"
        )
    # RFC 9162 §2.1.4.2.
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, bytes(root1))
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # unreachable once the length matched; kept as the RFC's final check
        raise ProofError(f"consistency proof too short from size {size1} to {size2}")
    return fr, sr


def verify_consistency(
    *, size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size1`` with ``root1`` is a prefix of ``size2`` with ``root2``.

    Raises :class:`ProofError` on any failure; returns ``None`` when the proof holds.

    Choices beyond RFC 9162, each pinned by a transparency-dev vector:

    - ``size1 == 0`` is refused, even with an empty proof and ``size2 == 0``: every tree
      extends the empty tree, so such a check proves nothing and is more likely a caller's
      bug (vectors ``consistency/additional/size1-is-zero-*``, ``sizes-are-equal-zero-*``);
    - ``size1 == size2`` needs an empty proof and ``root1 == root2``. No hash is computed
      then, so the roots are compared as opaque bytes without the 32-byte check
      (vector ``sizes-are-equal-one-and-proof-is-empty`` accepts 12-byte roots);
    - otherwise both roots and every proof entry must be 32 bytes and the proof must have
      exactly the length RFC 9162 gives for the two sizes.
    """
    if size1 == 0:
        raise ProofError(
            f"expected size1 > 0 (every tree extends the empty one), got size1=0, size2={size2}"
        )
    if size1 > size2:
        raise ProofError(f"expected size1 <= size2, got size1={size1}, size2={size2}")
    if size1 == size2:
        if len(proof) != 0:
            raise ProofError(
                f"expected an empty proof for equal sizes {size1}, got {len(proof)} hashes"
            )
        if root1 != root2:
            raise ProofError(
                f"expected equal roots for equal sizes {size1}, "
                f"got {bytes(root1).hex()} and {bytes(root2).hex()}"
            )
        return
    _check_hash(root2, "root2")
    computed1, computed2 = roots_from_consistency_proof(
        size1=size1, size2=size2, proof=proof, root1=root1
    )
    if computed1 != root1:
        raise ProofError(
            f"consistency proof from size {size1} gives root1 {computed1.hex()}, "
            f"expected {bytes(root1).hex()}"
        )
    if computed2 != root2:
        raise ProofError(
            f"consistency proof to size {size2} gives root2 {computed2.hex()}, "
            f"expected {bytes(root2).hex()}"
        )

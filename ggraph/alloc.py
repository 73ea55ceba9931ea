"""The graph allocator: one buffer for every intermediate, reused by liveness.

Like ggml-alloc (ggml_gallocr): walk the nodes in execution order; give each
node that owns memory a block of one arena (best fit in a free list, else the
arena grows); when the last reader of a tensor has run, its block goes back
to the free list. A node whose op works in place takes over its first
source's block when that source is read by nobody else and has the same
layout. Views take their source's memory; leafs keep their own.

Never freed: tensors flagged output and nodes nobody reads (the results).
Every decision is logged in Allocation.log, so "why is this not reused?" has
an answer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .tensor import ALIGNMENT, Tensor


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


@dataclass
class _Block:
    offset: int
    size: int
    dead: list = field(default_factory=list)   # tensors that lived here, for clobber marking


@dataclass
class Allocation:
    offsets: dict[int, int]          # tensor id -> arena offset
    size: int                        # peak bytes of the arena
    naive_size: int                  # bytes if nothing were reused
    clobbered: dict[int, str]        # tensor id -> name of the node that reused its memory
    log: list[str]


class _FreeList:
    """Best-fit free list below `top`; above `top` the arena can always grow."""

    def __init__(self):
        self.blocks: list[_Block] = []      # sorted by offset, never adjacent
        self.top = 0

    def alloc(self, size: int) -> tuple[int, list]:
        """Returns (offset, tensors that lived in the block it came from)."""
        best = None
        for b in self.blocks:
            if b.size >= size and (best is None or b.size < best.size):
                best = b
        if best is None:
            last = self.blocks[-1] if self.blocks else None
            if last is not None and last.offset + last.size == self.top:
                # grow the arena by what the free tail block lacks
                self.blocks.pop()
                self.top = last.offset + size
                return last.offset, last.dead
            offset = self.top
            self.top += size
            return offset, []
        offset = best.offset
        if best.size == size:
            self.blocks.remove(best)
        else:
            best.offset += size
            best.size -= size
        return offset, best.dead

    def free(self, offset: int, size: int, who: Tensor) -> None:
        bl = self.blocks
        i = 0
        while i < len(bl) and bl[i].offset < offset:
            i += 1
        nb = _Block(offset, size, [who])
        bl.insert(i, nb)
        if i + 1 < len(bl) and nb.offset + nb.size == bl[i + 1].offset:
            nb.size += bl[i + 1].size
            nb.dead += bl[i + 1].dead
            del bl[i + 1]
        if i > 0 and bl[i - 1].offset + bl[i - 1].size == nb.offset:
            bl[i - 1].size += nb.size
            bl[i - 1].dead += nb.dead
            del bl[i]


def _same_layout(a: Tensor, b: Tensor) -> bool:
    return a.type is b.type and a.ne == b.ne and a.nb == b.nb


def allocate(nodes: list[Tensor], needs_memory, inplace_ok) -> Allocation:
    """Plans arena offsets for the tensors among `nodes` for which needs_memory(t).

    inplace_ok(node) says whether node's op may write over its src[0].
    """
    log: list[str] = []
    readers: dict[int, int] = {}
    for n in nodes:
        for s in n.src:
            if s is not None:
                b = s.base()
                readers[b.id] = readers.get(b.id, 0) + 1

    fl = _FreeList()
    offsets: dict[int, int] = {}
    sizes: dict[int, int] = {}
    owner_of_block: dict[int, Tensor] = {}      # tensor id -> tensor that holds the block now
    clobbered: dict[int, str] = {}
    naive = 0

    def mark_dead(dead, start, size, by: Tensor):
        for t in dead:
            o, s = offsets[t.id], sizes[t.id]
            if o < start + size and start < o + s:
                clobbered[t.id] = by.name or f"{by.op}#{by.id}"

    for n in nodes:
        if needs_memory(n):
            size = _align(n.nbytes())
            naive += size
            placed = False
            s0 = n.src[0] if n.src else None
            if s0 is not None and inplace_ok(n):
                p = s0.base()
                why = None
                if p.id not in owner_of_block:
                    why = "it is not in the arena (leaf or output of another graph)"
                elif p.is_output:
                    why = "it is an output"
                elif readers.get(p.id, 0) != 1:
                    why = f"it has {readers.get(p.id, 0)} readers"
                elif s0 is not p or not _same_layout(n, p):
                    why = "the layouts differ"
                if why is None:
                    offsets[n.id] = offsets[p.id]
                    sizes[n.id] = sizes[p.id]
                    owner_of_block[n.id] = n
                    del owner_of_block[p.id]
                    clobbered[p.id] = n.name or f"{n.op}#{n.id}"
                    readers[p.id] = 0
                    log.append(f"{_nm(n)}: in place over {_nm(p)}")
                    placed = True
                else:
                    log.append(f"{_nm(n)}: not reusing {_nm(p)} in place: {why}")
            if not placed:
                off, dead = fl.alloc(size)
                offsets[n.id] = off
                sizes[n.id] = size
                owner_of_block[n.id] = n
                mark_dead(dead, off, size, n)
                log.append(f"{_nm(n)}: {size} bytes at offset {off}")
        for s in n.src:
            if s is None:
                continue
            p = s.base()
            readers[p.id] = readers.get(p.id, 0) - 1
            if readers[p.id] == 0 and p.id in owner_of_block and not p.is_output:
                fl.free(offsets[p.id], sizes[p.id], p)
                del owner_of_block[p.id]
                log.append(f"{_nm(p)}: freed after {_nm(n)}")

    return Allocation(offsets, fl.top, naive, clobbered, log)


def _nm(t: Tensor) -> str:
    return t.name or f"{t.op or 'leaf'}#{t.id}"

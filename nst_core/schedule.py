"""The coarse-to-fine schedule: the size of each level and the evaluations spent there (no torch here,
so the server's cost model can use it)."""

from __future__ import annotations

from .settings import Settings


def scale_sizes(settings: Settings) -> list[int]:
    """Longest side at each coarse-to-fine level, smallest first; the last is settings.size."""
    sizes = [settings.size]
    while len(sizes) < settings.scales and sizes[0] // 2 >= settings.min_scale_size:
        sizes.insert(0, sizes[0] // 2)
    return sizes


def split_iterations(total: int, levels: int) -> list[int]:
    """Iterations per level, smallest level first: shares 2^(n-1) : ... : 2 : 1.

    Most of the work happens at low resolution where an evaluation is 4x cheaper per halving; the
    full-size level only refines detail starting from an already stylised, upsampled image.
    """
    shares = [2 ** (levels - 1 - i) for i in range(levels)]
    counts = [total * s // sum(shares) for s in shares]
    counts[-1] += total - sum(counts)
    # Every level gets at least one step when there are enough steps to go round.
    for i in range(levels):
        if counts[i] == 0:
            donor = max(range(levels), key=lambda j: counts[j])
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] += 1
    return counts


def schedule(settings: Settings) -> list[tuple[int, int]]:
    """(longest side, evaluations) per level, smallest first; levels without evaluations are left out."""
    sizes = scale_sizes(settings)
    counts = split_iterations(settings.iterations, len(sizes))
    return [(size, n) for size, n in zip(sizes, counts, strict=True) if n > 0]

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


# The top level's share of the evaluations; the levels below share the rest, each getting 2/3 of the level
# below it. For the default three levels and 160 evaluations: 57, 38, 65.
TOP_SHARE = 2 / 5
UPWARD = 2 / 3


def split_iterations(total: int, levels: int) -> list[int]:
    """Evaluations per level, smallest first: the top level gets 2/5, the levels below split the rest 3:2.

    Upsampling undoes much of a level's work (the top level's loss starts well above where the level below
    ended), so the picture a user downloads is made at the top, and L-BFGS needs many evaluations there
    before its loss levels off. The coarse levels are cheap per evaluation but gain little from more of them:
    an evaluation spent at the top lowers the final loss more than one spent below. The figures behind this
    split are in docs/benchmarks.md ("The optimiser", bench_schedule).
    """
    if levels == 1:
        return [total]
    below = [UPWARD**i for i in range(levels - 1)]
    shares = [(1 - TOP_SHARE) * w / sum(below) for w in below] + [TOP_SHARE]
    counts = [int(total * share) for share in shares]
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


def pixel_evals(settings: Settings, aspect: float = 1.0) -> float:
    """The work of a run: the sum over its levels of (pixels there) x (evaluations there); aspect = short side /
    long side. A run's time is nearly proportional to it (the server's cost model)."""
    return sum(size * size * aspect * n for size, n in schedule(settings))


def later_evaluations(settings: Settings) -> int:
    """Evaluations for each frame of a clip after the first (nst_core.video): about a quarter of the first frame's
    work (its coarse-to-fine pixel-evaluations, pixel_evals), spent at the top level. The first frame has to find a
    painting from the photo; a later one starts from the previous painting moved into place and only has to mend
    what moved."""
    return max(1, round(pixel_evals(settings) / (4 * settings.size**2)))

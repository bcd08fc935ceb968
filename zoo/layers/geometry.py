"""Output sizes and the paddings that make a downsampling site reach a target size (pure arithmetic)."""
from __future__ import annotations

from zoo.errors import ZooError


def out_size(size: int | None, kernel: int, stride: int, pad: int | str) -> int | None:
    """Output length of a window op: ``pad`` is a symmetric int or ``"ceil"`` (PyTorch ceil_mode)."""
    if size is None:
        return None
    if pad == "ceil":
        return -(-(size - kernel) // stride) + 1
    return (size + 2 * int(pad) - kernel) // stride + 1


def pads_for(size: int | None, kernel: int, stride: int, target: int | None,
             prefer: int | str | None = None) -> tuple[int, int]:
    """Padding (before, after) so a ``kernel``/``stride`` window op yields ``target``.

    ``prefer`` is the published padding: a symmetric int, or ``"ceil"`` (PyTorch ceil_mode: nothing
    before, the rest after). It is used when it reaches the target; otherwise (a replacement op of
    another kernel size) symmetric ``(k-1)//2`` if that reaches it, else the extra row goes after.
    """
    sym = (kernel - 1) // 2 if prefer is None or prefer == "ceil" else int(prefer)
    if size is None or target is None:
        return (0, 0) if prefer == "ceil" else (sym, sym)
    total = (target - 1) * stride + kernel - size
    if prefer == "ceil" and total >= 0 and out_size(size, kernel, stride, "ceil") == target:
        return 0, total
    if out_size(size, kernel, stride, sym) == target:
        return sym, sym
    if total < 0:
        if out_size(size, kernel, stride, 0) != target:
            raise ZooError(f"cannot downsample {size} px to {target} px with a {kernel}x{kernel}/{stride} window.")
        return 0, 0
    before = min(total // 2, (kernel - 1) // 2)
    return before, total - before

"""What a small upload costs the server (run by hand; prints figures, asserts nothing).

1. A 16-bit grey PNG of about 100 kB that decodes to 30 million pixels, and an 8-bit one of the same size, through
   load_image with a working size, against the conversion before (float64 arrays), side by side.
2. Per picture slot (what a session keeps of an upload): a small PNG carrying 20 MB of compressed text, decoded as
   before (its text kept in the image's info) and now (its pixels alone): resident memory held per slot, and what
   one task pickles.
3. The brush's canvas value at the largest size the page accepts (480 px wide, as tall as the working size lets a
   portrait photo be: 768 px on a CPU server, 2048 on a GPU), through canvas_masks as the page calls it, against
   the float conversion before; and a hostile value whose header says 12000x7000.

4. With --decode, only this: the resident peak of decoding one upload, each in a fresh process (the modules
   imported first): a 7300x5470 RGBA PNG and JPEG kept at 768 px, a 6144x4608 RGBA mask for a 768x576 photo, and
   a small PNG and a canvas value carrying 60 MB of compressed text.

Memory: the process's resident peak above where it started (Linux's VmHWM, reset before each case: all of it,
Pillow's own buffers included), what Python allocates (tracemalloc: numpy's arrays and Python's byte strings,
not Pillow's image memory), and what stays resident while the slots hold their pictures; time is the wall clock.

    .venv/bin/python -m benchmarks.bench_upload [--side 5500] [--slots 10] [--decode]
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import gc
import io
import os
import pickle
import struct
import time
import tracemalloc
import zlib

import numpy as np
from PIL import Image

from benchmarks.common import machine, mem_mb
from nst_core.errors import ImageLoadError
from nst_core.images import load_image, to_rgb


def before(im: Image.Image) -> Image.Image:
    """The conversion of 16-bit pictures before (commit 2c191f2's images.to_rgb), and no working size."""
    a = np.asarray(im, dtype=np.float64)
    hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
    return Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")


def resident(key: str) -> float:
    """MB of this process's resident memory: VmRSS (now) or VmHWM (the peak since the last reset)."""
    return mem_mb(os.getpid(), key)


def trim() -> None:
    """Collect, and hand the C heap's free memory back to the system: what a case leaves behind is then not
    reused silently by the next (which would show it a smaller peak than its own)."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure(fn) -> tuple[float, float, float]:
    """(resident peak above the start in MB, tracemalloc's peak in MB, seconds) of fn()."""
    trim()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    start = resident("VmRSS")
    tracemalloc.start()
    t = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return resident("VmHWM") - start, peak / 1e6, seconds


def metadata_png() -> bytes:
    """A 64x48 PNG with 20 zTXt chunks of 1 MB of text each (compressed to about 1 kB each)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for i in range(20):
        info.add_text(f"note{i}", "A" * 1_000_000, zip=True)
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def load_before(data: bytes) -> Image.Image:
    """load_image before: the same decoding, the file's metadata kept in the image's info."""
    im = Image.open(io.BytesIO(data))
    im.load()
    return to_rgb(im)


def held_per_slot(make, slots: int) -> tuple[float, float]:
    """(MB resident per slot while `slots` pictures from make() are held, MB peak above the start while making)."""
    trim()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start = resident("VmRSS")
    held = [make() for _ in range(slots)]
    trim()
    per_slot = (resident("VmRSS") - start) / slots
    peak = resident("VmHWM") - start
    del held
    gc.collect()
    return per_slot, peak


def metadata_slots(slots: int) -> None:
    data = metadata_png()
    print(f"A {len(data) / 1e3:.0f} kB 64x48 PNG carrying 20 MB of compressed text, {slots} picture slots held:")
    for name, fn in (("before (info kept)", load_before), ("load_image now", load_image)):
        per_slot, peak = held_per_slot(lambda fn=fn: fn(data), slots)
        pickled = len(pickle.dumps(fn(data)))
        print(
            f"  {name}: {per_slot:.1f} MB resident per slot (peak +{peak:.0f} MB for {slots}); "
            f"one task pickles {pickled / 1e6:.2f} MB"
        )


def old_strokes_to_masks(rgba: np.ndarray, paintings: int) -> list[Image.Image]:
    """strokes_to_masks before: float32 copies and an (H, W, 3, 3) array of distances."""
    from ui.masks import ALPHA, BRUSHES

    rgb, alpha = rgba[..., :3].astype(np.float32), rgba[..., 3].astype(np.float32) / 255.0
    colours = np.array(list(BRUSHES.values()), dtype=np.float32)
    nearest = np.argmin(((rgb[..., None, :] - colours) ** 2).sum(-1), axis=-1)
    strength = np.clip(alpha / ALPHA, 0, 1)
    return [Image.fromarray(np.round(255 * strength * (nearest == i)).astype(np.uint8), "L") for i in range(paintings)]


def canvas_value(w: int, h: int) -> str:
    """A drawn canvas as the component sends it: translucent strokes of both brushes over a transparent canvas,
    with noise so that its PNG is as large as a real one can get."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a, "RGBA").save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def hostile_value(w: int, h: int) -> str:
    """A PNG whose header says w x h, with its pixels (all zero) compressed: a few hundred kB."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = b"\0" * (4 * w + 1)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(png).decode()


def canvas_cases(slots: int) -> None:
    from ui.masks import canvas_masks

    before_bpp = 0.0
    for device, h in (("CPU", 768), ("GPU", 2048)):
        w = 480
        value = canvas_value(w, h)
        print(
            f"The brush's largest canvas on a {device} server, {w}x{h}, a {len(value) / 1e6:.1f} MB value, 2 paintings:"
        )

        def before(value=value):
            data = base64.b64decode(value.split(";base64,", 1)[1])
            with Image.open(io.BytesIO(data)) as im:
                return old_strokes_to_masks(np.asarray(im.convert("RGBA")), 2)

        for name, fn in (("before (float)", before), ("canvas_masks now", lambda: canvas_masks(value, (w, h), 2))):
            peak, allocated, seconds = measure(fn)
            per_slot, _ = held_per_slot(fn, slots)
            if fn is before:
                before_bpp = peak * 1e6 / (w * h)
            print(
                f"  {name}: resident peak +{peak:.0f} MB ({peak * 1e6 / (w * h):.0f} bytes a pixel), "
                f"{allocated:.0f} MB allocated by Python, {seconds:.2f} s; kept {per_slot:.2f} MB per slot"
            )
    value = hostile_value(12000, 7000)

    def refused():
        try:
            canvas_masks(value, (480, 320), 2)
        except ImageLoadError as e:
            return str(e)

    peak, allocated, seconds = measure(refused)
    print(
        f"A hostile canvas value of {len(value) / 1e3:.0f} kB whose PNG says 12000x7000: now refused "
        f"({refused()!r}), resident peak +{peak:.0f} MB, {seconds * 1e3:.1f} ms; before, it was decoded and "
        f"converted at {before_bpp:.0f} bytes a pixel as above: {before_bpp * 84e6 / 1e9:.1f} GB (not run)"
    )


def _peak_in_fresh_process(call: str, data: bytes) -> float:
    """MB of resident peak above the start of `call` (Python, with `data` the file's bytes) in a new process, the
    modules already imported: what one decode costs a server, Pillow's own buffers included."""
    import subprocess
    import sys
    import tempfile

    code = f"""
import base64, sys
from benchmarks.common import mem_mb
from nst_core.images import load_image, load_mask
from ui.masks import canvas_masks
data = open(sys.argv[1], "rb").read()
open("/proc/self/clear_refs", "w").write("5")
start = mem_mb(__import__("os").getpid(), "VmRSS")
try:
    {call}
except Exception as e:
    print(type(e).__name__, e, file=sys.stderr)
print(mem_mb(__import__("os").getpid(), "VmHWM") - start)
"""
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(data)
        f.flush()
        out = subprocess.run([sys.executable, "-c", code, f.name], capture_output=True, text=True, check=True)
    refused = [line for line in out.stderr.splitlines() if "Error" in line.split(" ", 1)[0]]
    if refused:
        print("    refused:", refused[-1])
    return float(out.stdout.strip().splitlines()[-1])


def encoded(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def decode_peaks() -> None:
    """The resident peak of decoding one upload, each in a fresh process: a large photo kept at 768 px, a mask
    drawn on a phone's original for a 768x576 photo, and small PNGs carrying 60 MB of compressed text."""
    from PIL import ImageDraw, PngImagePlugin

    def drawn(size, mode="RGBA"):
        im = Image.new(mode, size, (0, 0, 0, 0) if mode == "RGBA" else 0)
        d = ImageDraw.Draw(im)
        for i in range(0, size[0], size[0] // 12):
            d.rectangle((i, i // 2, i + size[0] // 24, size[1]), fill=(200, 40, 40, 255) if mode == "RGBA" else 255)
        return im

    text = PngImagePlugin.PngInfo()
    for i in range(60):
        text.add_text(f"note{i}", "A" * 1_000_000, zip=True)
    photo = encoded(drawn((7300, 5470)), "PNG")
    jpeg = encoded(drawn((7300, 5470)).convert("RGB"), "JPEG", quality=90)
    mask = encoded(drawn((6144, 4608)), "PNG")
    texty = encoded(Image.new("RGB", (64, 48), "teal"), "PNG", pnginfo=text)
    canvas = "data:image/png;base64," + base64.b64encode(
        encoded(Image.new("RGBA", (480, 320), (0, 0, 0, 0)), "PNG", pnginfo=text)
    ).decode("ascii")
    cases = [
        (
            f"a {len(photo) / 1e6:.1f} MB 7300x5470 RGBA PNG, load_image(max_side=768)",
            photo,
            "load_image(data, max_side=768)",
        ),
        (
            f"a {len(jpeg) / 1e6:.1f} MB 7300x5470 JPEG, load_image(max_side=768)",
            jpeg,
            "load_image(data, max_side=768)",
        ),
        (
            f"a {len(mask) / 1e6:.1f} MB 6144x4608 RGBA PNG mask, load_mask for a 768x576 photo",
            mask,
            "load_mask(data, (768, 576))",
        ),
        (f"a {len(texty) / 1e3:.0f} kB 64x48 PNG with 60 MB of zTXt, load_image", texty, "load_image(data)"),
        ("the same as a mask, load_mask for a 64x48 photo", texty, "load_mask(data, (64, 48))"),
        (
            f"a {len(canvas) / 1e3:.0f} kB canvas value (480x320) with 60 MB of zTXt, canvas_masks",
            canvas.encode(),
            "canvas_masks(data.decode(), (480, 320), 2)",
        ),
    ]
    print("The resident peak of one decode, each in a fresh process:")
    for name, data, call in cases:
        print(f"  {name}: +{_peak_in_fresh_process(call, data):.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=5500)
    ap.add_argument("--slots", type=int, default=10)
    ap.add_argument("--decode", action="store_true", help="only the resident peaks of decoding one upload")
    a = ap.parse_args()
    print(machine())
    if a.decode:
        decode_peaks()
        return
    metadata_slots(a.slots)
    canvas_cases(a.slots)
    n = a.side
    grey16 = np.full((n, n), 40000, dtype=np.uint16)
    grey16[: n // 2] = 12000
    for name, array in (("16-bit", grey16), ("8-bit", (grey16 >> 8).astype(np.uint8))):
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, "PNG", optimize=True)
        data = buf.getvalue()
        print(f"{machine()}; a {len(data) / 1e3:.0f} kB {name} PNG of {n}x{n} ({n * n / 1e6:.0f} megapixels)")
        if name == "16-bit":
            old = measure(lambda: before(Image.open(io.BytesIO(data))))
            print(
                f"  before (float64, full size kept): resident peak +{old[0]:.0f} MB, {old[1]:.0f} MB allocated by "
                f"Python, {old[2]:.2f} s"
            )
        new = measure(lambda: load_image(data, max_side=1536))
        print(
            f"  load_image(max_side=1536): resident peak +{new[0]:.0f} MB, {new[1]:.0f} MB allocated by Python, "
            f"{new[2]:.2f} s; kept 1536 px"
        )


if __name__ == "__main__":
    main()

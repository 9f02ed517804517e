"""Command line: python -m nst_core CONTENT STYLE [STYLE ...] --output OUT.png [options]."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .errors import NSTError
from .settings import PRECISIONS, PRESETS, Settings, preset

D = Settings()


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _layers(text: str) -> tuple[str, ...]:
    return tuple(v for v in text.replace(",", " ").split() if v)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse would print the whole usage)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m nst_core", description="Neural style transfer (Gatys et al.) on a photo.")
    p.add_argument("content", help="the photo")
    p.add_argument("styles", nargs="+", metavar="STYLE", help="one or more paintings")
    p.add_argument("--output", "-o", required=True, help="result PNG (settings embedded in its metadata)")
    p.add_argument("--gif", help="also write an animated GIF of the optimisation")
    p.add_argument(
        "--animation",
        action="append",
        default=[],
        metavar="PATH",
        help="also write an animation, by extension: .gif, .mp4 (H.264) or .webp (repeatable)",
    )
    p.add_argument("--intro", action="store_true", help="open animations with the photo and the painting")
    p.add_argument("--metrics", help="write losses, timings and settings as JSON")
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a named preset; other options override it")
    p.add_argument("--size", type=int, help=f"longest side of the output (default {D.size})")
    p.add_argument("--iterations", type=int, help=f"objective evaluations in total (default {D.iterations})")
    p.add_argument("--content-weight", type=float, help=f"default {D.content_weight}")
    p.add_argument("--style-weight", type=float, help=f"default {D.style_weight}")
    p.add_argument("--tv-weight", type=float, help=f"default {D.tv_weight}")
    p.add_argument("--content-layers", type=_layers, help=f"default {','.join(D.content_layers)}")
    p.add_argument("--style-layers", type=_layers, help=f"default {','.join(D.style_layers)}")
    p.add_argument("--style-layer-weights", type=_floats, help="one per style layer (default: equal)")
    p.add_argument("--style-blend", type=_floats, help="one per style image (default: equal)")
    p.add_argument(
        "--style-scale", type=float, help=f"style image size relative to the output (default {D.style_scale})"
    )
    p.add_argument("--optimizer", choices=("lbfgs", "adam"))
    p.add_argument("--lr", type=float, help=f"step size (default {D.lr}; about 0.02 for adam)")
    p.add_argument("--init", choices=("content", "noise", "style"))
    p.add_argument("--seed", type=int)
    p.add_argument("--pooling", choices=("max", "avg"))
    p.add_argument("--scales", type=int, help=f"coarse-to-fine levels (default {D.scales}; 1 = single scale)")
    p.add_argument("--weights", help="original (default, offline) | torchvision | PATH to a state dict")
    p.add_argument("--device", help="auto (default) | cpu | cuda | mps")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="arithmetic of the VGG19 passes (default auto: bfloat16 where the hardware has it)",
    )
    p.add_argument("--preserve-colors", action="store_true", default=None, help="keep the photo's colours")
    p.add_argument("--preview-every", type=int, help="GIF frame every N steps")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    return p


FIELDS = [
    "size",
    "iterations",
    "content_weight",
    "style_weight",
    "tv_weight",
    "content_layers",
    "style_layers",
    "style_layer_weights",
    "style_blend",
    "style_scale",
    "optimizer",
    "lr",
    "init",
    "seed",
    "pooling",
    "scales",
    "weights",
    "device",
    "precision",
    "preserve_colors",
    "preview_every",
]


def settings_from_args(args: argparse.Namespace) -> Settings:
    base = preset(args.preset) if args.preset else Settings()
    changes = {f: getattr(args, f) for f in FIELDS if getattr(args, f) is not None}
    if args.optimizer == "adam" and args.lr is None:
        changes["lr"] = 0.02
    return base.replace(**changes)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .animation import KINDS, intro_card, make_animation

    for path in args.animation:
        if Path(path).suffix.lower().lstrip(".") not in KINDS:
            parser.error(f"--animation {path}: the extension must be .gif, .mp4 or .webp")
    # Imported after parsing: --help and usage errors do not wait for torch.
    from .backbone import describe_device, load_backbone
    from .images import load_image, png_bytes
    from .transfer import stylize

    try:
        settings = settings_from_args(args)
        content = load_image(args.content)
        styles = [load_image(s) for s in args.styles]
        backbone = load_backbone(settings.weights, settings.device, seed=settings.seed)
        history, gif_frames, last = [], [], None
        t0 = time.perf_counter()
        for frame in stylize(content, styles, settings, backbone):
            history.append(
                {"step": frame.step, "size": list(frame.size), "elapsed": round(frame.elapsed, 3), **frame.losses}
            )
            if frame.image is not None:
                last = frame.image
                if args.gif or args.animation:
                    gif_frames.append(frame.image)
            if not args.quiet:
                print(
                    f"\rstep {frame.step}/{frame.total}  {frame.size[0]}x{frame.size[1]}  "
                    f"loss {frame.losses['total']:.4g}  {frame.elapsed:.1f}s",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
        seconds = time.perf_counter() - t0
        if not args.quiet:
            print(file=sys.stderr)
        meta = {
            "settings": settings.to_dict(),
            "weights": backbone.source,
            "device": describe_device(backbone.device, backbone.uses_bf16(settings.precision)),
        }
        Path(args.output).write_bytes(png_bytes(last, meta))
        intro = intro_card(content, styles[0], last.size) if args.intro else None
        for path in ([args.gif] if args.gif else []) + args.animation:
            Path(path).write_bytes(make_animation(Path(path).suffix, gif_frames, intro))
        if args.metrics:
            metrics = {
                "losses": history,
                "evaluations": len(history),
                "seconds": round(seconds, 3),
                "device": meta["device"],
                "weights": backbone.source,
                "settings": settings.to_dict(),
            }
            Path(args.metrics).write_text(json.dumps(metrics, indent=2))
    except (NSTError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: python -m nst_core CONTENT STYLE [STYLE ...] --output OUT.png [options]."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .errors import NSTError
from .settings import CHOICES, HELP, PRESETS, TYPES, Settings, parse_list, preset, run_record, step_size

D = Settings()


def _floats(text: str) -> tuple[float, ...]:
    try:
        return parse_list(text, float)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse would print the whole usage)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def add_settings_options(p: argparse.ArgumentParser) -> None:
    """One option per Settings field (--content-weight for content_weight), with its type, choices, help and
    default from settings.py. Unset options stay None: the preset, or Settings(), fills them in."""
    for name in D.to_dict():
        if name == "masks":  # files, not text: --mask (build_parser)
            continue
        flag, default, kind = "--" + name.replace("_", "-"), getattr(D, name), TYPES[name]
        shown = f" (default {_shown(default)})" if default != () else ""
        if kind in ("bool", bool):
            p.add_argument(flag, action="store_true", default=None, help=HELP[name])
        elif name in CHOICES:
            p.add_argument(flag, choices=CHOICES[name], help=HELP[name] + shown)
        elif isinstance(default, tuple):
            parse = _floats if "float" in str(kind) else parse_list
            p.add_argument(flag, type=parse, metavar="A,B,...", help=HELP[name] + shown)
        else:
            p.add_argument(flag, type=type(default), help=HELP[name] + shown)


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
    add_settings_options(p)
    p.add_argument(
        "--mask",
        action="append",
        default=[],
        metavar="PATH",
        help="where the painting goes (white), where the photo stays (black), grey in between; the photo's shape, any "
        "size; with several paintings, one --mask per painting, in order",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    v = p.add_argument_group(
        "clips",
        "a clip as the content (MP4, MOV, WebM, animated GIF or WebP, detected from the file) is painted "
        "frame by frame, consistently (Ruder et al.); --output then ends in .mp4, .gif or .webp",
    )
    v.add_argument("--video-frames", type=int, default=48, metavar="N", help="paint at most N frames (default 48)")
    v.add_argument(
        "--video-fps", type=float, metavar="FPS", help="frames a second to read and write (default: the clip's)"
    )
    v.add_argument(
        "--temporal-weight",
        type=float,
        metavar="W",
        help="how strongly each frame keeps to the one before, moved along the flow (0: no temporal term; "
        "default from nst_core.video)",
    )
    v.add_argument(
        "--later-iterations",
        type=int,
        metavar="N",
        help="evaluations for each frame after the first (default: a quarter of the first frame's work)",
    )
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    base = preset(args.preset) if args.preset else Settings()
    changes = {f: getattr(args, f) for f in D.to_dict() if getattr(args, f, None) is not None}
    if "optimizer" in changes and "lr" not in changes:
        changes["lr"] = step_size(changes["optimizer"])
    return base.replace(**changes)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .animation import KINDS

    for path in args.animation:
        if Path(path).suffix.lower().lstrip(".") not in KINDS:
            parser.error(f"--animation {path}: the extension must be .gif, .mp4 or .webp")
    from .clips import is_clip

    run = (lambda: _main_clip(args, parser)) if is_clip(args.content) else (lambda: _main_still(args))
    # Imported when run: --help and usage errors do not wait for torch.
    try:
        run()
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


def _main_still(args: argparse.Namespace) -> None:
    """A photo: paint it and write the picture (and its animations, its metrics)."""
    from .animation import intro_card, make_animation
    from .backbone import configure_cuda, describe_device, load_backbone
    from .images import load_image, png_bytes
    from .transfer import stylize

    settings = settings_from_args(args)
    content = load_image(args.content)
    styles = [load_image(s) for s in args.styles]
    if args.mask:
        if len(args.mask) != len(styles):
            raise ValueError(f"{len(args.mask)} --mask for {len(styles)} paintings: give one per painting, in order")
        from .images import encode_mask, load_mask

        settings = settings.replace(masks=tuple(encode_mask(load_mask(m, content.size)) for m in args.mask))
    backbone = load_backbone(settings.weights, settings.device, seed=settings.seed)
    if backbone.device.type == "cuda":
        configure_cuda()  # this process's CUDA flags, as a worker sets them: float32 means float32 (no TF32)
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
    meta = run_record(
        settings, backbone.source, describe_device(backbone.device, backbone.uses_bf16(settings.precision))
    )
    Path(args.output).write_bytes(png_bytes(last, meta))
    intro = intro_card(content, styles[0], last.size) if args.intro else None
    for path in ([args.gif] if args.gif else []) + args.animation:
        Path(path).write_bytes(make_animation(Path(path).suffix, gif_frames, intro))
    if args.metrics:
        metrics = {
            "losses": history,
            "evaluations": len(history),
            **run_record(settings, backbone.source, meta["device"], seconds=round(seconds, 3)),
        }
        Path(args.metrics).write_text(json.dumps(metrics, indent=2))


def _main_clip(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """A clip as the content: paint it (video.stylize_clip) and write the painted clip to --output."""
    from . import clips

    kind = Path(args.output).suffix.lower().lstrip(".")
    if kind not in clips.WRITERS:
        parser.error(f"--output {args.output}: a painted clip is written as .mp4, .gif or .webp")
    if args.video_frames < 1:
        parser.error("--video-frames must be at least 1")
    if args.video_fps is not None and not 0 < args.video_fps <= clips.MAX_FPS:
        parser.error(f"--video-fps must be between 0 and {clips.MAX_FPS:g}")
    if args.mask:
        parser.error("--mask is for a photo, not a clip")
    from .animation import make_animation
    from .backbone import configure_cuda, describe_device, load_backbone
    from .images import load_image
    from .video import TEMPORAL_WEIGHT, ClipStats, later_evaluations, stylize_clip

    painted: list = []
    settings = settings_from_args(args)
    info = clips.probe(args.content)
    rate = clips.steady_rate(info, args.video_fps)
    count = clips.frame_count(args.video_frames, info, args.video_fps)
    styles = [load_image(s) for s in args.styles]
    weight = TEMPORAL_WEIGHT if args.temporal_weight is None else args.temporal_weight
    later = args.later_iterations or later_evaluations(settings)
    if weight < 0:
        raise ValueError("--temporal-weight must be >= 0")
    backbone = load_backbone(settings.weights, settings.device, seed=settings.seed)
    if backbone.device.type == "cuda":
        configure_cuda()
    frames = clips.read_frames(args.content, count, settings.size, args.video_fps)
    stats = ClipStats()
    history, first_frames, per_frame = [], [], []
    t0 = time.perf_counter()
    try:
        for frame in stylize_clip(
            frames,
            styles,
            settings,
            backbone,
            frames_total=count,
            temporal_weight=weight,
            later_iterations=later,
            stats=stats,
        ):
            k, n = frame.part
            history.append(
                {
                    "frame": k,
                    "step": frame.step,
                    "size": list(frame.size),
                    "elapsed": round(frame.elapsed, 3),
                    **frame.losses,
                }
            )
            if k == 1 and frame.image is not None and (args.gif or args.animation):
                first_frames.append(frame.image)
            if frame.output:
                painted.append(frame.image)
                per_frame.append({"frame": k, "seconds": round(stats.seconds[-1], 3), **frame.losses})
            if not args.quiet:
                print(
                    f"\rframe {k}/{n}  step {frame.step}/{frame.total}  {frame.size[0]}x{frame.size[1]}  "
                    f"loss {frame.losses['total']:.4g}  {frame.elapsed:.1f}s",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
    except KeyboardInterrupt:
        if not painted:
            raise
        print(f"\ninterrupted: writing the {len(painted)} frames painted", file=sys.stderr)
    seconds = time.perf_counter() - t0
    if not args.quiet:
        print(file=sys.stderr)
    Path(args.output).write_bytes(
        clips.write_mp4(painted, rate, audio_from=args.content, seconds=len(painted) / rate)
        if kind == "mp4"
        else clips.write_clip(kind, painted, rate)
    )
    for path in ([args.gif] if args.gif else []) + args.animation:
        Path(path).write_bytes(make_animation(Path(path).suffix, first_frames))
    if args.metrics:
        device = describe_device(backbone.device, backbone.uses_bf16(settings.precision))
        metrics = {
            "clip": {
                "source_fps": info.fps,
                "fps": rate,
                "frames": len(painted),
                "rotation": info.rotation,
                "has_audio": info.has_audio,
            },
            "temporal_weight": weight,
            "later_iterations": later,
            "frames": per_frame,
            "warping_error": stats.mean_warping,
            "input_warping_error": stats.mean_floor,
            "warping_errors": stats.warping,
            "input_warping_errors": stats.floor,
            "losses": history,
            "evaluations": len(history),
            **run_record(settings, backbone.source, device, seconds=round(seconds, 3)),
        }
        Path(args.metrics).write_text(json.dumps(metrics, indent=2))


def cli() -> None:
    """The `nst` command (pyproject.toml), the same as python -m nst_core."""
    sys.exit(main())


if __name__ == "__main__":
    cli()

"""Settings' derived rules, each written once in nst_core/settings.py: every front end reads a list, picks a step
size and spaces its pictures the same way, and the Studio's task fits its pictures by the rule the method uses."""

import pytest
from PIL import Image

from nst_core.__main__ import build_parser, settings_from_args
from nst_core.errors import ImageLoadError
from nst_core.images import MIN_SIDE
from nst_core.serve.results import Results
from nst_core.settings import HELP, LR, PREVIEWS, Settings, preview_spacing, step_size
from nst_core.tasks.still import StyleTask
from nst_core.transfer import level_targets
from ui.fields import FIELDS, from_address


def cli_settings(*options: str) -> Settings:
    return settings_from_args(build_parser().parse_args(["photo.png", "painting.jpg", "-o", "out.png", *options]))


@pytest.mark.parametrize("text", ["relu1_1,relu2_1,relu3_1", "relu1_1, relu2_1 relu3_1", " relu1_1,,relu2_1 ,relu3_1 "])
def test_a_list_reads_the_same_from_the_cli_the_address_and_settings(text):
    layers, weights = ("relu1_1", "relu2_1", "relu3_1"), (1.0, 2.0, 0.5)
    weights_text = text.replace("relu1_1", "1").replace("relu2_1", "2").replace("relu3_1", "0.5")
    from_cli = cli_settings("--style-layers", text, "--style-blend", weights_text)
    from_page, notes = from_address({"style_layers": text, "style_blend": weights_text})
    direct = Settings(style_layers=text, style_blend=weights_text)
    assert notes == []
    for s in (from_cli, from_page, direct):
        assert (s.style_layers, s.style_blend) == (layers, weights)


def test_the_step_size_follows_the_optimiser_unless_it_is_given():
    assert step_size("adam") == LR["adam"] != Settings().lr
    assert cli_settings("--optimizer", "adam").lr == step_size("adam")
    assert cli_settings("--optimizer", "adam", "--lr", "0.5").lr == 0.5
    assert f"{LR['adam']:g}" in HELP["lr"]  # the help quotes the table, not a copy of it


def test_preview_spacing_gives_about_the_same_number_of_pictures_for_any_length():
    for n in (1, 7, 39, 40, 41, 160, 1001, 100_000):
        every = preview_spacing(n)
        assert every >= 1
        assert min(n, PREVIEWS) <= n // every < 2 * PREVIEWS, n


def test_the_field_table_takes_its_tooltips_from_settings():
    for f in FIELDS:
        tip, help = f.tooltip(), HELP[f.name]
        assert tip.startswith(help[0].upper() + help[1:] + "."), f.name
    assert "logarithmic" in next(f for f in FIELDS if f.name == "style_weight").tooltip()


def test_the_studio_task_fits_its_own_pictures_by_the_rule_the_method_uses():
    photo, painting = Image.new("RGB", (600, 400), "red"), Image.new("RGB", (900, 1200), "blue")
    for s in (Settings(size=96), Settings(size=96, style_scale=0.5), Settings(size=96, style_scale=0.1)):
        task = StyleTask.of(photo, [painting], s)
        assert task.content.size == (96, 64)
        assert max(task.styles[0].size) == s.style_side() >= 2 * MIN_SIDE
        # The worker's own fitting at the top level gives the painting the same side, so the task sent no less.
        _, styles, _ = level_targets(task.content, task.styles, s, s.size)
        assert max(styles[0].shape[-2:]) == s.style_side()
    assert Settings(size=96, style_scale=0.1).style_side() == 2 * MIN_SIDE  # 10 px would leave VGG19 nothing


def test_the_same_pictures_and_settings_make_the_same_task_digest():
    photo, painting = Image.new("RGB", (600, 400), "red"), Image.new("RGB", (900, 1200), "blue")
    results, s = Results(mb=16), Settings(size=64)
    a = results.key(StyleTask.of(photo, [painting], s))
    assert a is not None and a == results.key(StyleTask.of(photo.copy(), [painting.copy()], Settings(size=64)))
    assert a != results.key(StyleTask.of(photo, [painting], s.replace(style_scale=0.5)))


def test_a_photo_too_elongated_for_the_size_is_one_clear_error():
    with pytest.raises(ImageLoadError, match="short side must be at least"):
        StyleTask.of(Image.new("RGB", (2000, 20), "red"), [Image.new("RGB", (64, 64), "blue")], Settings(size=64))

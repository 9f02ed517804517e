"""docs/deploying.md's table of settings names every setting and limit the server reads, with the default it
really has."""

import dataclasses
import re

from nst_core.serve.config import Config
from nst_core.serve.limits import Limits
from tests.conftest import ROOT


def settings_rows() -> dict[str, str]:
    text = (ROOT / "docs" / "deploying.md").read_text()
    return dict(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \| ([^|]+) \|", text, re.M))


def test_every_limit_has_a_row_with_its_default():
    rows = settings_rows()
    for f in dataclasses.fields(Limits):
        name = f"NST_{f.name.upper()}"
        assert name in rows, f"{name} has no row in docs/deploying.md's settings"
        shown = rows[name].strip()
        assert shown == "(empty)" if f.default == "" else float(shown) == float(f.default), (name, shown, f.default)


def test_every_setting_of_the_configuration_has_a_row_with_its_default():
    rows = settings_rows()
    fields = [f for f in dataclasses.fields(Config) if f.name != "limits"]  # (the limits: the test above)
    for f in fields:
        name = f.metadata["env"]  # every other field is read from one variable
        assert name in rows, f"{name} has no row in docs/deploying.md's settings"
        shown = rows[name].strip()
        if f.default is None or f.default is False:
            expected = "(none)"
        elif f.name == "data_dir":
            expected = f"`{f.default.relative_to(ROOT)}/`"
        else:
            expected = f"`{f.default}`"
        assert shown == expected, (name, shown, expected)
    assert set(rows) == {f"NST_{f.name.upper()}" for f in dataclasses.fields(Limits)} | {
        f.metadata["env"] for f in fields
    }  # and no row for a variable the server does not read

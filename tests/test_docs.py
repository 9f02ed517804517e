"""docs/deploying.md's table of settings names every limit the server reads, with the default it really has."""

import dataclasses
import re

from nst_core.serve.limits import Limits
from tests.conftest import ROOT


def test_every_limit_has_a_row_with_its_default():
    text = (ROOT / "docs" / "deploying.md").read_text()
    rows = dict(re.findall(r"^\| `(NST_[A-Z0-9_]+)` \| ([^|]+) \|", text, re.M))
    for f in dataclasses.fields(Limits):
        name = f"NST_{f.name.upper()}"
        assert name in rows, f"{name} has no row in docs/deploying.md's settings"
        shown = rows[name].strip()
        assert shown == "(empty)" if f.default == "" else float(shown) == float(f.default), (name, shown, f.default)

"""One table between Settings and the Studio's widgets: each row names a Settings field, its widget and how a
value crosses between them. The form, the presets and the address prefill (?size=256&iterations=80) all read
it, so a field the app shows is one row here.

Every value that reaches a widget is first brought into the widget's range: from an address, a value outside
it is clamped (or, for a choice the widget does not offer, replaced by the default) with a one-line warning,
never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from nst_core.layers import RELU_LAYERS
from nst_core.settings import CHOICES, HELP, PRESETS, Settings, parse_list, preview_spacing, step_size

from .common import STYLE_SCALE_MAX, md

D = Settings()
W = "w_"  # prefix of the session keys of the widgets that mirror Settings fields


def _same(v):
    return v


@dataclass(frozen=True)
class Field:
    name: str  # the Settings field
    label: str
    widget: str  # slider | number | select | radio | multiselect | checkbox
    note: str = ""  # what the widget adds to Settings' help in its tooltip (its scale, where the page shows more)
    lo: float | None = None
    hi: float | None = None  # None: the server's cap for this field (caps[name])
    step: float | None = None
    options: tuple = ()  # for select, radio and multiselect; CHOICES[name] if empty
    fmt: str | None = None
    advanced: bool = False
    show: Callable = _same  # Settings value -> widget value
    read: Callable = _same  # widget value -> Settings value

    def choices(self) -> tuple:
        return self.options or CHOICES.get(self.name, ())

    def tooltip(self) -> str:
        """Settings' help for the field (the CLI's --help says the same), as a sentence, and the widget's note."""
        text = HELP[self.name]
        return " ".join(filter(None, (text[:1].upper() + text[1:] + ".", self.note)))


FIELDS = (
    Field(
        "style_weight",
        "Style strength",
        "slider",
        # The slider's own scale, which Settings' help (a plain number) cannot know.
        note="The slider is logarithmic: each step of 1 is 10x.",
        lo=-1.0,
        hi=4.0,
        step=0.1,
        fmt="10^%.1f",
        show=lambda w: round(math.log10(max(w, 1e-3)), 1),
        read=lambda v: float(f"{10**v:.4g}"),
    ),
    Field(
        "content_weight",
        "Content weight",
        "slider",
        lo=0.0,
        hi=5.0,
        step=0.1,
    ),
    Field(
        "tv_weight",
        "Smoothness",
        "slider",
        lo=0.0,
        hi=20.0,
        step=0.5,
    ),
    Field(
        "iterations",
        "Iterations",
        "slider",
        lo=10,
        step=10,
    ),
    Field(
        "size",
        "Output size (longest side, px)",
        "slider",
        lo=64,
        step=32,
    ),
    Field(
        "content_layers",
        "Content layer",
        "select",
        options=RELU_LAYERS,
        advanced=True,
        show=lambda layers: layers[0] if layers else None,
        read=lambda layer: (layer,),
    ),
    Field(
        "style_layers",
        "Style layers",
        "multiselect",
        options=RELU_LAYERS,
        advanced=True,
        show=list,
        read=tuple,
    ),
    Field(
        "optimizer",
        "Optimiser",
        "radio",
        advanced=True,
    ),
    Field("lr", "Step size", "number", lo=0.001, hi=10.0, fmt="%.3f", advanced=True),
    Field(
        "init",
        "Start from",
        "select",
        advanced=True,
    ),
    Field(
        "seed",
        "Seed",
        "number",
        lo=0,
        hi=2**31 - 1,
        step=1,
        advanced=True,
    ),
    Field(
        "pooling",
        "Pooling",
        "radio",
        advanced=True,
    ),
    Field(
        "precision",
        "Arithmetic",
        "radio",
        note="The sidebar says which this server uses.",  # where on this page to look: the CLI has no sidebar
        advanced=True,
    ),
    Field(
        "preserve_colors",
        "Keep the photo's colours",
        "checkbox",
        advanced=True,
    ),
    Field(
        "style_scale",
        "Style scale",
        "slider",
        lo=0.25,
        hi=STYLE_SCALE_MAX,
        step=0.05,
        advanced=True,
    ),
    Field(
        "scales",
        "Coarse-to-fine levels",
        "slider",
        lo=1,
        hi=4,
        advanced=True,
    ),
)
BY_NAME = {f.name: f for f in FIELDS}
LAYER_WEIGHT = "lw_"  # the widget of each style layer's weight: W + LAYER_WEIGHT + layer


def bounds(field: Field, caps: dict) -> tuple:
    return field.lo, caps[field.name] if field.hi is None else field.hi


def widget_values(s: Settings, caps: dict, notes: list[str] | None = None) -> dict:
    """The widgets' states for `s`, each brought into its widget's range; what had to change is described in
    `notes`, if given (one line each)."""

    def note(text: str) -> None:
        if notes is not None:
            notes.append(text)

    values = {}
    for f in FIELDS:
        raw = getattr(s, f.name)
        v = f.show(raw)
        if f.widget in ("slider", "number"):
            lo, hi = bounds(f, caps)
            if not lo <= v <= hi:
                v = min(max(v, lo), hi)
                note(f"{f.name}={raw:g} is outside what this page offers; using {f.read(v):g}.")
        elif f.widget == "multiselect":
            kept = [x for x in v if x in f.choices()]
            if kept != v:
                note(f"{f.name}: {', '.join(x for x in v if x not in kept)} not offered here; left out.")
            v = kept or f.show(getattr(D, f.name))
        elif f.widget in ("select", "radio") and v not in f.choices():
            note(f"{f.name}={raw!r} is not offered here; using {getattr(D, f.name)!r}.")
            v = f.show(getattr(D, f.name))
        values[f.name] = v
    weights = dict(zip(s.style_layers, s.style_layer_weights or [1.0] * len(s.style_layers)))
    values.update({LAYER_WEIGHT + layer: float(weights.get(layer, 1.0)) for layer in RELU_LAYERS})
    values["preset"] = next((k for k, v in PRESETS.items() if v == s), "balanced")
    return values


def from_address(params: dict, base: Settings = D) -> tuple[Settings, list[str]]:
    """`base` with any field given in the address (?size=256&iterations=40), and a line per value it ignored."""
    fields, changes, notes = base.to_dict(), {}, []
    for key, raw in params.items():
        if key not in fields:
            continue
        default = fields[key]
        try:
            if isinstance(default, bool):
                value = raw.lower() in ("1", "true", "yes")
            elif isinstance(default, list):
                value = parse_list(raw)
            else:
                value = type(default)(raw)
            base.replace(**{key: value})  # each value on its own: one bad value costs only itself
            changes[key] = value
        except (ValueError, OverflowError) as e:
            why = str(e) if isinstance(e, ValueError) and str(e).startswith(key) else "not a valid value"
            notes.append(f"Ignoring {key}={raw!r} from the address: {why}.")
    try:
        return base.replace(**changes), notes
    except ValueError as e:  # values that are fine alone but not together (layer weights for other layers)
        return base, notes + [f"Ignoring the settings in the address: {e}"]


def apply(values: dict) -> None:
    for k, v in values.items():
        st.session_state[W + k] = v


def _on_preset(caps: dict) -> None:
    apply({k: v for k, v in widget_values(PRESETS[st.session_state[W + "preset"]], caps).items() if k != "preset"})


def _on_optimizer() -> None:
    st.session_state[W + "lr"] = step_size(st.session_state[W + "optimizer"])


def _widget(f: Field, caps: dict) -> None:
    key, help = W + f.name, f.tooltip()
    if f.widget == "slider":
        lo, hi = bounds(f, caps)
        if hi <= lo:  # a room's limit at the widget's lowest value: nothing to choose (a slider needs two)
            st.session_state[key] = hi
            st.caption(f"{f.label}: {hi} (this room's limit)")
            return
        st.slider(f.label, lo, hi, step=f.step, key=key, format=f.fmt, help=help)
    elif f.widget == "number":
        st.number_input(f.label, f.lo, f.hi, step=f.step, key=key, format=f.fmt, help=help)
    elif f.widget == "select":
        st.selectbox(f.label, f.choices(), key=key, help=help)
    elif f.widget == "radio":
        on_change = _on_optimizer if f.name == "optimizer" else None
        st.radio(f.label, f.choices(), key=key, horizontal=True, help=help, on_change=on_change)
    elif f.widget == "multiselect":
        st.multiselect(f.label, f.choices(), key=key, help=help)
    else:
        st.checkbox(f.label, key=key, help=help)


def _layer_weights() -> None:
    layers = st.session_state[W + "style_layers"]
    if layers:
        st.caption("Weight of each style layer")
        cols = st.columns(min(3, len(layers)))
        for i, layer in enumerate(layers):
            cols[i % len(cols)].number_input(
                layer, 0.0, 10.0, step=0.1, key=W + LAYER_WEIGHT + layer, help=f"Relative weight of {layer}."
            )


def settings_form(caps: dict, address: dict, base: Settings = D) -> Settings | None:
    """The sidebar's controls, first filled from `base` and the settings in the address (with a warning for each
    value they could not take); returns the Settings they describe (or None, with the reason shown). `caps`: the
    largest size and iterations this server allows."""
    if W + "size" not in st.session_state:
        prefill, notes = from_address(address, base)
        apply(widget_values(prefill, caps, notes))
        for note in notes:
            st.warning(md(note))
    st.selectbox(
        "Preset",
        list(PRESETS),
        key=W + "preset",
        on_change=_on_preset,
        args=(caps,),
        help="Named starting points. Pick one, then adjust the sliders below.",
    )
    for f in FIELDS:
        if not f.advanced:
            _widget(f, caps)
    with st.expander("Advanced"):
        for f in FIELDS:
            if f.advanced:
                _widget(f, caps)
                if f.name == "style_layers":
                    _layer_weights()
    state = st.session_state
    values = {f.name: f.read(state[W + f.name]) for f in FIELDS}
    layers = values["style_layers"]
    try:
        return Settings(
            **values,
            style_layer_weights=tuple(float(state[W + LAYER_WEIGHT + layer]) for layer in layers),
            preview_every=preview_spacing(int(values["iterations"])),
        )
    except ValueError as e:
        st.error(f"These settings cannot run: {md(e)}")
        return None

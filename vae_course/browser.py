"""The widgets without a kernel: what a web page needs to redraw them in the browser.

The course's website (``scripts/build_site.py``) shows the latent sliders (notebooks 04, 05) and
the KL explorer (03) live, with no Python running: the build writes each widget's *spec* - the
trained decoder's weights and the sliders' ranges - into a small JavaScript file, and
``scripts/site/vae_widgets.js`` decodes every slider position itself (a real decode: matrix
products, ReLU, sigmoid), not a lookup of precomputed images.

``decode`` below is that same computation in PyTorch (float32, layer by layer, as the browser does
it); the build checks it against the model's own ``decode`` before writing a spec, and the browser
test checks the page's pixels against it.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vae_course import validate

# Activation layers the browser knows, by their name in the spec.
_ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.ELU: "elu"}
# How the decoder's output becomes pixels in [0, 1] (``model.to_pixels``), by likelihood.
_PIXELS = {"bernoulli": "sigmoid", "continuous_bernoulli": "sigmoid", "gaussian": "clamp"}


def _floats(t: torch.Tensor) -> str:
    """A tensor's values as base64 of little-endian float32 (4 bytes a number: a 784-400-2
    decoder is 1.3 MB of weights, about 1.7 MB of text)."""
    return base64.b64encode(t.detach().cpu().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()).decode()


def decoder_spec(model: nn.Module) -> dict:
    """The decoder of an MLP ``VAE`` or ``CVAE`` as plain numbers: its layers (weight ``(out, in)``,
    bias ``(out,)``, activation after it), the label's one-hot width (0 without labels: the input
    is ``[z, one_hot(y)]``), the image shape and the pixel map.

    Raises:
        TypeError: ``model`` has no ``decoder`` made of ``nn.Linear`` and ReLU/tanh/ELU layers (a
            convolutional decoder is not exported; its page shows the widget's last picture).
    """
    layers = []
    for module in getattr(model, "decoder", []):
        if isinstance(module, nn.Linear):
            layers.append({"rows": module.out_features, "cols": module.in_features,
                           "weight": _floats(module.weight), "bias": _floats(module.bias), "activation": "none"})
        elif type(module) in _ACTIVATIONS and layers:
            layers[-1]["activation"] = _ACTIVATIONS[type(module)]
        else:
            raise TypeError(f"model: expected an MLP decoder (Linear and ReLU/tanh/ELU layers), "
                            f"got a {type(module).__name__} in {type(model).__name__}.decoder")
    if not layers:
        raise TypeError(f"model: expected a model with an MLP decoder, got {type(model).__name__}")
    return {"layers": layers, "latent_dim": model.latent_dim, "num_classes": int(getattr(model, "num_classes", 0) or 0),
            "image_shape": list(model.image_shape), "pixels": _PIXELS[model.likelihood]}


def _unpack(text: str, shape) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype="<f4").copy()).reshape(shape)


def decode(spec: dict, z, label: int | None = None) -> torch.Tensor:
    """Decode one latent ``z`` ``(latent_dim,)`` (and a class ``label`` when the spec has classes)
    with the spec's weights, in float32 PyTorch, layer by layer as the browser does: returns the
    pixels, shape ``image_shape``, in [0, 1]. Raises ``ValueError`` naming ``z`` or ``label``."""
    z = torch.as_tensor(z, dtype=torch.float32).reshape(-1)
    if z.shape[0] != spec["latent_dim"]:
        raise ValueError(f"z: expected {spec['latent_dim']} numbers, got {z.shape[0]}")
    h = z
    if spec["num_classes"]:
        label = validate.integer(label, "label", low=0, high=spec["num_classes"] - 1)
        h = torch.cat([z, nn.functional.one_hot(torch.tensor(label), spec["num_classes"]).float()])
    activations = {"relu": torch.relu, "tanh": torch.tanh, "elu": nn.functional.elu, "none": lambda t: t}
    for layer in spec["layers"]:
        weight = _unpack(layer["weight"], (layer["rows"], layer["cols"]))
        h = activations[layer["activation"]](nn.functional.linear(h, weight, _unpack(layer["bias"], (layer["rows"],))))
    pixels = torch.sigmoid(h) if spec["pixels"] == "sigmoid" else h.clamp(0.0, 1.0)
    return pixels.reshape(spec["image_shape"])


def _check_against_model(spec: dict, model: nn.Module, n: int = 5) -> float:
    """The largest pixel difference between ``decode(spec, ...)`` and the model's own decode on
    ``n`` latents (seeded) and every class; raises ``AssertionError`` above 1e-4."""
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    labels = range(spec["num_classes"]) if spec["num_classes"] else [None]
    model_was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for _ in range(n):
                z = 2.0 * torch.randn(spec["latent_dim"], generator=generator)
                for label in labels:
                    zz = z.unsqueeze(0).to(model.device)
                    if label is None:
                        out = model.decode(zz)
                    else:
                        out = model.decode(zz, torch.tensor([label], device=model.device))
                    expected = model.to_pixels(out)[0].cpu().double().reshape(spec["image_shape"])
                    worst = max(worst, float((decode(spec, z, label).double() - expected).abs().max()))
    finally:
        model.train(model_was_training)
    assert worst < 1e-4, f"the exported decoder differs from {type(model).__name__}.decode by {worst:.2e}"
    return worst


def widget_spec(widget) -> dict | None:
    """A ``LatentSliders`` or ``KLExplorer`` as the browser redraws it (None for other widgets, or
    sliders over a decoder that is not an MLP)."""
    from vae_course import widgets  # here: widgets imports matplotlib and ipywidgets

    if isinstance(widget, widgets.LatentSliders):
        try:
            spec = decoder_spec(widget.model)
        except TypeError:
            return None
        _check_against_model(spec, widget.model)
        first = widget.sliders[0]
        spec.update(kind="latent", dims=list(widget.dims), limit=float(first.max), step=float(first.step),
                    scale=int(widget.scale), z=[float(v) for v in widget.z.tolist()],
                    label=int(widget.digit.value) if widget.digit is not None else None)
        return spec
    if isinstance(widget, widgets.KLExplorer):
        return {"kind": "kl", "mu": float(widget.mu.value), "sigma": float(widget.sigma.value),
                "mu_range": [float(widget.mu.min), float(widget.mu.max)],
                "sigma_range": [float(widget.sigma.min), float(widget.sigma.max)], "step": float(widget.mu.step)}
    return None


def _live_widgets() -> dict:
    """Every ipywidget alive in this kernel, by its model id (ipywidgets' own registry)."""
    from ipywidgets.widgets import widget as ipw

    registry = getattr(ipw, "_instances", None)
    if registry is None:  # ipywidgets 7
        registry = ipw.Widget.widgets
    return dict(registry)


def read_exported(path) -> dict:
    """The spec that ``export_widgets`` wrote to ``path`` (a ``<model id>.js`` file)."""
    text = Path(validate.path(path, "path")).read_text(encoding="utf-8")
    return json.loads(text.split(" = ", 2)[2].rstrip(";\n"))


def export_widgets(folder) -> list[str]:
    """Write ``folder/<model id>.js`` for every live latent-slider and KL-explorer widget of this
    kernel (run by the build at the end of a notebook). Each file sets
    ``window.VAE_WIDGETS["<model id>"]`` to the widget's spec (a script tag works from file://,
    where fetch() of a JSON file does not). Returns the model ids written."""
    folder = Path(validate.path(folder, "folder"))
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for model_id, widget in _live_widgets().items():
        spec = widget_spec(widget)
        if spec is None:
            continue
        text = ("window.VAE_WIDGETS = window.VAE_WIDGETS || {};\n"
                f"window.VAE_WIDGETS[{json.dumps(model_id)}] = {json.dumps(spec)};\n")
        (folder / f"{model_id}.js").write_text(text, encoding="utf-8")
        written.append(model_id)
    return written


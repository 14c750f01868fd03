"""Small helpers shared by the unit tests."""
import os
from pathlib import Path

import torch


def gen(seed: int) -> torch.Generator:
    """A CPU random generator with a fixed seed (tests draw their data from it)."""
    return torch.Generator().manual_seed(seed)


def uniform(g: torch.Generator, shape, low: float, high: float) -> torch.Tensor:
    """float64 values drawn uniformly from [low, high) with the generator ``g``."""
    return low + (high - low) * torch.rand(shape, generator=g, dtype=torch.float64)


def assert_finite_with_finite_grads(value: torch.Tensor, *leaves: torch.Tensor) -> None:
    """``value`` is finite, and so are the gradients of its sum with respect to ``leaves``."""
    assert torch.isfinite(value).all(), value
    value.sum().backward()
    for leaf in leaves:
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all(), leaf.grad


# A tiny data set and model for tests that train (tests/test_train_objectives.py, tests/test_evaluate_latents.py).
TINY_SHAPE = (1, 4, 4)


def tiny_dataset(n: int = 64, seed: int = 0):
    """Binary 4x4 images: noisy copies of two prototypes (learnable), labels = prototype."""
    g = gen(seed)
    protos = torch.tensor([[1.0] * 8 + [0.0] * 8, [0.0, 1.0] * 8]).view(2, *TINY_SHAPE)
    y = torch.randint(0, 2, (n,), generator=g)
    flip = torch.rand(n, *TINY_SHAPE, generator=g) < 0.05
    return torch.where(flip, 1 - protos[y], protos[y]), y


def tiny_vae(cls=None, seed: int = 0, **kw):
    """A small model (default ``models.VAE``) for 4x4 images: hidden 16, latent 3."""
    from vae_course import models

    torch.manual_seed(seed)
    return (cls or models.VAE)(**{"image_shape": TINY_SHAPE, "hidden_dims": (16,), "latent_dim": 3, **kw})


def quick_fit(model, x, y=None, **kw):
    """``train.fit`` for 12 optimizer steps of batch 16 (3 passes over 64 images) on the CPU,
    without a progress bar."""
    from vae_course import train

    kw = {"steps": 12, "batch_size": 16, "lr": 1e-2, "device": "cpu", "progress": False, **kw}
    return train.fit(model, x, y, **kw)


def raises_naming(exc, name, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` raises ``exc`` with ``name`` (the argument) in its message."""
    import pytest

    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert name in str(info.value), str(info.value)


def kill_when(proc, condition, timeout_s: float = 180.0) -> None:
    """SIGKILL the child process ``proc`` as soon as ``condition()`` holds (a fault-injection test:
    the process dies mid-write). Fails if the child exits first or ``timeout_s`` passes (a guard
    against a hung test only: generous, so a machine 3x slower than this one passes too)."""
    import signal
    import time

    deadline = time.monotonic() + timeout_s
    try:
        while not condition():
            assert proc.poll() is None, f"the child exited (code {proc.returncode}) before the condition held"
            assert time.monotonic() < deadline, "timed out waiting for the child"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL


# Debian's Chromium, driven by Playwright (scripts/setup_browser.sh installs both; Playwright never
# downloads a browser). The flags keep it from calling Google's hosts on this closed network.
CHROMIUM = os.environ.get("VAE_COURSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def launch_chromium(playwright):
    """Start headless Chromium from ``CHROMIUM``; fail (not skip) with the fix when it is missing."""
    import pytest

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup_browser.sh (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# The live widgets of scripts/site/vae_widgets.js, checked in a page (the website or a slide deck).
def widget_spec(page, root) -> dict:
    return page.evaluate("(el) => window.VAE_WIDGETS[el.dataset.widget]", root.element_handle())


def set_control(page, root, name: str, value) -> None:
    """Move a slider (or choose a digit) as a user does: the value, then the input/change event."""
    page.evaluate("""([el, name, value]) => { const c = el.querySelector(`[name="${name}"]`); c.value = String(value);
        c.dispatchEvent(new Event(c.tagName === 'SELECT' ? 'change' : 'input')); }""", [root.element_handle(), name, value])


def canvas_pixels(page, root, shape) -> torch.Tensor:
    """The canvas's pixels as the decoder's values in [0, 1] (the page draws ink = 1 - grey/255)."""
    rgba = page.evaluate("""(el) => { const c = el.querySelector('canvas');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }""", root.element_handle())
    grey = torch.tensor(rgba, dtype=torch.float64).view(-1, 4)[:, 0]
    return (1.0 - grey / 255.0).view(shape)


def check_latent_sliders(page, root, where: str) -> None:
    """Move every slider (and the digit, for a CVAE) through several positions: each picture
    changes, and the browser's pixels equal vae_course.browser.decode (PyTorch) within 1/255."""
    from vae_course import browser

    spec = widget_spec(page, root)
    assert spec["kind"] == "latent", f"{where}: expected latent sliders, got {spec['kind']}"
    shape = spec["image_shape"][-2:]
    labels = [spec["label"]] if not spec["num_classes"] else [0, 3, 7]
    positions = [[0.0] * len(spec["dims"]), [1.5, -0.5], [-2.0, 2.5], [spec["limit"], -spec["limit"]]]
    pictures = []
    for label in labels:
        if spec["num_classes"]:
            set_control(page, root, "digit", label)
        for position in positions:
            z = list(spec["z"])
            for d, value in zip(spec["dims"], position):
                set_control(page, root, f"z{d + 1}", value)
                z[d] = value
            got = canvas_pixels(page, root, shape)
            expected = browser.decode(spec, z, label).double().view(shape)
            worst = float((got - expected).abs().max())
            assert worst <= 1 / 255 + 1e-9, f"{where}: z={z}, label={label}: the browser's pixels differ by {worst * 255:.2f}/255"
            pictures.append(got)
    changes = [float((a - b).abs().sum()) for a, b in zip(pictures, pictures[1:])]
    assert min(changes) > 1.0, f"{where}: moving a slider (or the digit) left the picture unchanged: {changes}"


def check_kl_readout(page, root, where: str) -> None:
    """Set (mu, sigma) on the KL explorer: its readout equals vae_course.gaussian.kl, in nats."""
    from vae_course import gaussian

    assert widget_spec(page, root)["kind"] == "kl", f"{where}: expected the KL explorer"
    readouts = []
    for mu, sigma in [(0.0, 1.0), (1.5, 0.5), (-2.0, 2.0), (0.75, 0.25), (3.0, 3.0)]:
        set_control(page, root, "mu", mu)
        set_control(page, root, "sigma", sigma)
        shown = float(root.get_attribute("data-kl"))
        expected = float(gaussian.kl(torch.tensor([[mu]], dtype=torch.float64),
                                     torch.tensor([[2 * torch.log(torch.tensor(sigma, dtype=torch.float64))]])))
        assert abs(shown - expected) < 1e-9, (where, mu, sigma, shown, expected)
        assert f"{expected:.4f} nats" in root.inner_text()
        readouts.append(shown)
    assert readouts[0] == 0.0 and len(set(readouts)) == len(readouts), f"{where}: the readout did not follow the sliders"


# A page in the browser with the network off, and a folder served on 127.0.0.1 (the reading pages' and
# the website's browser tests).
LOCAL_URLS = ("file:", "data:", "blob:", "about:")


class Opened:
    """A page open in the browser, waiting until the JavaScript condition ``ready`` holds, with what it
    asked the network for (``remote``: recorded and aborted), which local files failed (``failed``) and
    the page's JavaScript errors (``errors``)."""

    def __init__(self, browser, url: str, ready: str, allowed: tuple[str, ...] = LOCAL_URLS, width: int = 1200):
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.remote, self.failed, self.errors = [], [], []

        def route(r):
            if r.request.url.startswith(allowed):
                r.continue_()
            else:  # the network is off for the page: record and abort
                self.remote.append(r.request.url)
                r.abort()

        self.context.route("**/*", route)
        self.page = self.context.new_page()
        # (MathJax probes a font at about:blank, which fails harmlessly; aborted remote requests are in .remote)
        self.page.on("requestfailed", lambda r: None if r.url.startswith("about:") or r.url in self.remote
                     else self.failed.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)
        self.page.wait_for_function(ready, timeout=180_000)

    def close(self):
        self.context.close()


class static_server:
    """``with static_server(folder) as origin:`` - ``python -m http.server`` on a free port of
    127.0.0.1, serving ``folder``; ``origin`` is its URL ending in ``/``."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __enter__(self) -> str:
        import socket
        import subprocess
        import sys
        import time

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                        "--directory", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):  # wait for the server to listen (a hang guard, not a timing)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        return f"http://127.0.0.1:{port}/"

    def __exit__(self, *exc) -> None:
        self.server.terminate()
        self.server.wait(30)

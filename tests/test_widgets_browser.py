"""The course's widgets in a real browser: JupyterLab on 127.0.0.1 (with a token), headless
Chromium (Debian's, driven by Playwright; scripts/setup_browser.sh installs both).

For notebooks 04, 05 and 03 the test opens the course notebook, runs its cells in fast mode up to
and including the one that makes the widget (nbval runs the whole notebook),
moves the widget's control the way a learner does (keys on a slider handle, a click on a class
button) and checks, in the page and in the kernel, that the picture changed:

* the image the browser shows is byte for byte the widget's new PNG in the kernel, and differs
  from the one before the move;
* a pixel screenshot of the image differs from the one before the move.

Screenshots before and after each move go to build/screenshots/lab_*.png; the round trip of each
key press (key down in the page to the new image in the page) and the kernel's redraw times go
to build/screenshots/lab_timings.json.

One JupyterLab serves all three notebooks (a temporary copy of notebooks/, so nothing is saved
into the repository); each notebook's kernel is shut down after its test, and the server and
everything it started are stopped at the end.
"""
from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from helpers import launch_chromium

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "build" / "screenshots"
RUN_ALL_TIMEOUT_S = 300  # one fast-mode notebook takes 10-30 s on 2 busy cores (a hang guard)
TIMINGS: dict[str, dict] = {}

# JupyterLab user settings for the test server: every cell rendered (no windowing, so widgets in
# cells far down the page exist in the page) and no news or update checks (no network).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A running JupyterLab server: its address, token and process."""

    def __init__(self, root: Path, log: Path):
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        for name, values in LAB_SETTINGS.items():
            path = root / "settings" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = {**os.environ, "VAE_COURSE_MODE": "fast", "VAE_COURSE_OFFLINE": "1",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               # Everything Jupyter writes goes to the temporary folder, nothing to ~/.jupyter.
               "JUPYTER_CONFIG_DIR": str(root / "config"), "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
               "JUPYTERLAB_SETTINGS_DIR": str(root / "settings"),
               "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"), "IPYTHONDIR": str(root / "ipython")}
        command = [str(Path(sys.executable).parent / "jupyter-lab"), "--no-browser",
                   "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                   f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root / 'notebooks'}",
                   "--ServerApp.terminals_enabled=False", "--LabApp.extension_manager=readonly",
                   "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                   # window.jupyterapp: the test runs commands (run all cells) as the menu would.
                   "--LabApp.expose_app_in_browser=True"]
        if os.geteuid() == 0:  # CI containers run as root; Jupyter refuses that unless told
            command.append("--allow-root")
        self.log = log
        with open(log, "wb") as out:
            # Its own process group, so the end of the test can stop it and nothing else.
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def wait_until_up(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                self.api("/api/status")
                return
            except OSError:
                time.sleep(0.2)  # the server is not listening yet: nothing to wait on but the clock
        raise TimeoutError(f"jupyter lab did not answer on {self.url} within {timeout_s:.0f} s:\n"
                           f"{self.log.read_text()[-3000:]}")

    def shut_down_kernels(self) -> None:
        for session in self.api("/api/sessions"):
            self.api(f"/api/sessions/{session['id']}", method="DELETE")
        for kernel in self.api("/api/kernels"):
            self.api(f"/api/kernels/{kernel['id']}", method="DELETE")

    def stop(self) -> None:
        """Stop the server and every process it started (kernels run in their own sessions)."""
        try:
            started = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            started = []
        try:
            self.api("/api/shutdown", method="POST")
            self.process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=10)
        for child in started:
            if child.is_running():
                child.kill()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    server = Lab(root, root / "jupyter.log")
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()


# ------------------------------------------------------------------ driving the notebook

NOTEBOOK_READY = """(name) => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = panel && panel.context && panel.context.path === name && panel.sessionContext.session
        && panel.sessionContext.session.kernel;
    return !!kernel && panel.context.isReady && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""

KERNEL_IDLE = "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'"

# Runs every cell up to and including the widget's (the one marked by MARK_CELL): the cells after it
# do not touch the widget, and nbval runs the whole notebook anyway.
RUN_TO_WIDGET = """() => {
    window.labRunAll = {done: false};
    const notebook = window.jupyterapp.shell.currentWidget.content;
    const widget = notebook.widgets.findIndex(cell => cell.node.getAttribute('data-test-widget') === 'yes');
    const last = widget + 1 >= notebook.widgets.length;
    if (!last) notebook.activeCellIndex = widget + 1;
    window.jupyterapp.commands.execute(last ? 'notebook:run-all-cells' : 'notebook:run-all-above').then(
        ok => { window.labRunAll = {done: true, ok: ok}; },
        error => { window.labRunAll = {done: true, ok: false, error: String(error)}; });
}"""

CELL_ERRORS = """() => {
    const errors = [];
    for (const cell of window.jupyterapp.shell.currentWidget.content.widgets) {
        if (cell.model.type !== 'code') continue;
        for (const out of cell.model.outputs.toJSON())
            if (out.output_type === 'error') errors.push(out.ename + ': ' + out.evalue);
    }
    return errors;
}"""

MARK_CELL = """(call) => {
    for (const cell of window.jupyterapp.shell.currentWidget.content.widgets) {
        if (cell.model.type === 'code' && cell.model.sharedModel.getSource().includes(call)) {
            cell.node.setAttribute('data-test-widget', 'yes');
            return true;
        }
    }
    return false;
}"""

KERNEL_VALUE = """async (expression) => {
    const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    const reply = await kernel.requestExecute({code: '', store_history: false, user_expressions: {v: expression}}).done;
    const v = reply.content.user_expressions.v;
    if (v.status !== 'ok') throw new Error(expression + ' -> ' + v.ename + ': ' + v.evalue);
    return v.data['text/plain'];
}"""

IMAGE_SHA256 = """async (img) => {
    const bytes = await (await fetch(img.src)).arrayBuffer();
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    return Array.from(digest, b => b.toString(16).padStart(2, '0')).join('');
}"""

# Times of key presses in the page and of each new image source: a key's round trip is the
# time from its keydown to the next image, after the kernel redrew it.
WATCH_IMAGE = """(img) => {
    window.labTimes = {keys: [], images: []};
    document.addEventListener('keydown', () => window.labTimes.keys.push(performance.now()), true);
    new MutationObserver(() => window.labTimes.images.push(performance.now()))
        .observe(img, {attributes: true, attributeFilter: ['src']});
}"""


@contextmanager
def notebook(browser, lab, name: str, call: str):
    """Open notebook ``name`` in JupyterLab, run its cells up to and including the one that contains
    ``call``, and yield (page, that cell's widget output); close the page and shut the kernel down afterwards."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}")
        page.wait_for_function(NOTEBOOK_READY, arg=name, timeout=120_000)
        assert page.evaluate(MARK_CELL, call), f"{name}: no code cell calls {call}"
        start = time.perf_counter()
        page.evaluate(RUN_TO_WIDGET)
        try:
            page.wait_for_function("window.labRunAll.done", timeout=RUN_ALL_TIMEOUT_S * 1000, polling=250)
        except Exception as error:
            raise AssertionError(f"{name}: running the cells up to {call} did not finish within {RUN_ALL_TIMEOUT_S} s") from error
        run = page.evaluate("window.labRunAll")
        errors = page.evaluate(CELL_ERRORS)
        assert run["ok"] and not errors, f"{name}: running the cells up to {call} failed: {run} {errors}"
        TIMINGS.setdefault(name, {})["run_to_widget_s"] = round(time.perf_counter() - start, 1)
        output = page.locator("[data-test-widget=yes] .jp-OutputArea-output").filter(has=page.locator("img.widget-image"))
        image = output.locator("img.widget-image")
        try:
            image.wait_for(state="visible", timeout=60_000)
            image.evaluate("img => img.complete && img.naturalWidth > 0 || new Promise(r => img.onload = r)")
        except Exception as error:
            raise AssertionError(f"{name}: the widget made by {call} did not render its image") from error
        yield page, output
    finally:
        context.close()
        lab.shut_down_kernels()


def kernel_value(page, expression: str) -> str:
    """``expression`` evaluated in the notebook's kernel, as the kernel's text repr."""
    return page.evaluate(KERNEL_VALUE, expression)


def shown_image(page, output) -> dict:
    """What the widget shows now: the SHA-256 of the image's bytes, its pixels and a screenshot."""
    image = output.locator("img.widget-image")
    image.evaluate("img => img.decode()")  # the new picture is decoded before it is photographed
    pixels = np.asarray(Image.open(io.BytesIO(image.screenshot())).convert("L"), dtype=float)
    return {"sha256": image.evaluate(IMAGE_SHA256), "pixels": pixels}


def kernel_png_sha256(page, widget: str) -> str:
    return kernel_value(page, f"__import__('hashlib').sha256({widget}.image.value).hexdigest()").strip("'")


def press_and_time(page, handle, key: str, times: int) -> list[float]:
    """Press ``key`` on a slider handle ``times`` times, each time waiting for the new image;
    returns each press's round trip in ms (keydown to the new image in the page)."""
    handle.focus()
    round_trips = []
    for i in range(times):
        page.keyboard.press(key)
        page.wait_for_function("(n) => window.labTimes.images.length > n", arg=i, polling="raf")
        t = page.evaluate("window.labTimes")
        round_trips.append(t["images"][i] - t["keys"][i])
    return round_trips


def check_move(page, output, widget: str, before: dict, label: str) -> dict:
    """The picture after a move: the kernel's new PNG is what the page shows, and both the bytes
    and the pixels differ from ``before``. Saves the after screenshot."""
    page.wait_for_function(KERNEL_IDLE)
    after = shown_image(page, output)
    output.screenshot(path=str(SCREENSHOTS / f"lab_{label}_after.png"))
    assert after["sha256"] == kernel_png_sha256(page, widget), f"{label}: the page does not show the kernel's image"
    assert after["sha256"] != before["sha256"], f"{label}: the image bytes did not change after the move"
    assert after["pixels"].shape == before["pixels"].shape
    changed = np.mean(np.abs(after["pixels"] - before["pixels"]) > 32)
    assert changed > 0.01, f"{label}: only {changed:.2%} of the image's pixels changed"
    return after


def before_move(page, output, label: str) -> dict:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    output.screenshot(path=str(SCREENSHOTS / f"lab_{label}_before.png"))
    return shown_image(page, output)


def record_times(name: str, round_trips: list[float], page, widget: str) -> None:
    redraw_ms = float(kernel_value(page, f"{widget}.last_update_ms"))
    TIMINGS.setdefault(name, {}).update(
        presses=len(round_trips), round_trip_ms_median=round(statistics.median(round_trips), 1),
        round_trip_ms_p90=round(float(np.percentile(round_trips, 90)), 1), last_kernel_redraw_ms=round(redraw_ms, 1))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "lab_timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")


# ------------------------------------------------------------------ the tests


def kernel_float(page, expression: str) -> float:
    return float(kernel_value(page, expression))


def shown_readout(output, index: int) -> float:
    """The number shown next to slider ``index`` in the page."""
    return float(output.locator(".widget-readout").nth(index).inner_text())


# The notebooks move their widgets in a checking cell after showing them, so the tests start from
# whatever the kernel holds after Run All, not from the widgets' defaults, and move towards the
# far end of the slider (every press then changes the value: none is lost at a limit).


def towards_far_end(value: float, distance: float) -> tuple[str, float]:
    """The arrow key that moves a slider at ``value`` away from its nearer end, and the value
    after ``distance`` worth of presses."""
    return ("ArrowLeft", value - distance) if value > 0 else ("ArrowRight", value + distance)


def test_latent_slider_changes_the_decoded_digit(browser, lab):
    name = "04_reparameterization_and_training.ipynb"
    with notebook(browser, lab, name, "widgets.latent_sliders(") as (page, output):
        before = before_move(page, output, "04_latent")
        assert before["sha256"] == kernel_png_sha256(page, "sliders")
        z1 = kernel_float(page, "sliders.sliders[0].value")
        page.evaluate(WATCH_IMAGE, output.locator("img.widget-image").element_handle())
        # 30 presses of an arrow key on z1's handle: z1 moves by 30 steps of 0.05 (the sliders span ±3).
        key, expected = towards_far_end(z1, 1.5)
        round_trips = press_and_time(page, output.locator(".noUi-handle").first, key, 30)
        check_move(page, output, "sliders", before, "04_latent")
        assert kernel_float(page, "sliders.sliders[0].value") == pytest.approx(expected), "z1 in the kernel"
        assert kernel_float(page, "sliders.z[0].item()") == pytest.approx(expected, abs=1e-6), "the decoded z"
        assert shown_readout(output, 0) == pytest.approx(expected), "z1's readout in the page"
        record_times(name, round_trips, page, "sliders")


def test_cvae_class_buttons_change_the_digit(browser, lab):
    name = "05_conditional_vae.ipynb"
    with notebook(browser, lab, name, "widgets.cvae_sliders(") as (page, output):
        digit = int(kernel_value(page, "sliders.digit.value"))
        new_digit = (digit + 7) % 10
        before = before_move(page, output, "05_cvae_class")
        image = output.locator("img.widget-image")
        src = image.get_attribute("src")
        output.locator(".widget-toggle-buttons button", has_text=str(new_digit)).click()
        page.wait_for_function("([img, src]) => img.src !== src", arg=[image.element_handle(), src])
        check_move(page, output, "sliders", before, "05_cvae_class")
        assert int(kernel_value(page, "sliders.digit.value")) == new_digit
        assert f"digit {new_digit}," in output.locator(".widget-html").last.inner_text()
        # Then a latent slider: the style of the same digit changes.
        z1 = kernel_float(page, "sliders.sliders[0].value")
        before = before_move(page, output, "05_cvae_style")
        page.evaluate(WATCH_IMAGE, output.locator("img.widget-image").element_handle())
        key, expected = towards_far_end(z1, 1.5)
        round_trips = press_and_time(page, output.locator(".noUi-handle").first, key, 30)
        check_move(page, output, "sliders", before, "05_cvae_style")
        assert kernel_float(page, "sliders.sliders[0].value") == pytest.approx(expected), "z1 in the kernel"
        assert shown_readout(output, 0) == pytest.approx(expected), "z1's readout in the page"
        record_times(name, round_trips, page, "sliders")


def test_kl_explorer_plot_and_readout_follow_mu(browser, lab):
    name = "03_kl_divergence.ipynb"
    with notebook(browser, lab, name, "widgets.kl_explorer(") as (page, output):
        readout = output.locator(".widget-html").first
        mu = kernel_float(page, "w.mu.value")
        before_text = readout.inner_text()
        before = before_move(page, output, "03_kl_mu")
        page.evaluate(WATCH_IMAGE, output.locator("img.widget-image").element_handle())
        # 20 steps of 0.05 on μ's handle: μ moves by 1 (the slider spans ±3).
        key, expected_mu = towards_far_end(mu, 1.0)
        round_trips = press_and_time(page, output.locator(".noUi-handle").first, key, 20)
        check_move(page, output, "w", before, "03_kl_mu")
        mu, sigma = kernel_float(page, "w.mu.value"), kernel_float(page, "w.sigma.value")
        assert mu == pytest.approx(expected_mu), "μ in the kernel"
        assert shown_readout(output, 0) == pytest.approx(mu) and shown_readout(output, 1) == pytest.approx(sigma)
        # The readout shows the closed form of KL(N(μ, σ²) || N(0, 1)) at the page's μ and σ.
        expected_kl = 0.5 * (sigma ** 2 - np.log(sigma ** 2) - 1 + mu ** 2)
        assert readout.inner_text() != before_text
        assert readout.inner_text().endswith(f"= {expected_kl:.3f} nats"), f"readout: {readout.inner_text()!r}"
        record_times(name, round_trips, page, "w")

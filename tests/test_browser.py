"""Notebook 04 in a real browser: JupyterLab on localhost, Debian's headless Chromium through Selenium.

Runs all cells, moves the app's frame slider, and checks that the frame panel's picture changed;
saves a screenshot (to $MNADLIB_SCREENSHOT when set, e.g. docs/browser_localization.png; with
$MNADLIB_BROWSER_CHECKPOINT a trained synthped model replaces the untrained tiny one). Runs
only where /usr/bin/chromium, chromedriver, jupyterlab and selenium are installed
(``apt-get install chromium chromium-driver``; ``pip install jupyterlab selenium``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mnadlib import synth
from mnadlib.checkpoint import save_checkpoint
from mnadlib.config import ModelConfig
from mnadlib.memory import init_items
from mnadlib.model import MNAD

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "04_interactive_localization.ipynb"
CHROMIUM = Path(os.environ.get("MNADLIB_CHROMIUM", "/usr/bin/chromium"))
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHECKPOINT = os.environ.get("MNADLIB_BROWSER_CHECKPOINT", "")  # empty: an untrained tiny model
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--window-size=1400,2200"]

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.is_file() and Path(DRIVER).is_file()) and not os.environ.get("MNADLIB_REQUIRE_BROWSER"),
    reason=f"needs Chromium at {CHROMIUM} and chromedriver (apt-get install chromium chromium-driver)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare(tmp: Path) -> Path:
    """The notebook with test parameters injected (papermill --prepare-only), a tiny dataset and model."""
    import papermill as pm

    if CHECKPOINT:  # a trained synthped model, for a screenshot worth showing
        data, ckpt = synth.generate(tmp / "data", seed=0), Path(CHECKPOINT)
    else:
        data = synth.generate(tmp / "data", preset=synth.SynthPreset(
            size=(48, 64), train_lengths=(12, 12), test_lengths=(24, 20), normal_test_videos=0, max_events=1), seed=0)
        torch.manual_seed(0)
        cfg = ModelConfig(width=0.0625)
        ckpt = save_checkpoint(tmp / "model.pt", MNAD(cfg).eval(), init_items(cfg.msize, cfg.fdim),
                               train_config={"size": [32, 32]})
    out = tmp / "nb" / "04.ipynb"
    out.parent.mkdir()
    pm.execute_notebook(str(NOTEBOOK), str(out), prepare_only=True, parameters=dict(
        checkpoint=str(ckpt), data_root=str(data.parent), out_dir=str(tmp / "run"), metrics=False))
    return out


def _wait(condition, timeout: float, what: str):
    """Poll condition() until it returns something truthy."""
    end = time.time() + timeout
    while time.time() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_notebook_runs_in_chromium_and_slider_changes_the_frame(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    nb = _prepare(tmp_path)
    port, token = _free_port(), secrets.token_hex(16)
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={nb.parent}", "--LabApp.expose_app_in_browser=True",
         "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    driver = None
    try:
        _wait(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 60, "JupyterLab to listen")
        driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
        driver.get(f"http://127.0.0.1:{port}/lab/tree/{nb.name}?token={token}")
        _wait(lambda: driver.execute_script(
            "const a = window.jupyterapp; const w = a && a.shell.currentWidget;"
            "return !!(w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
            " && w.sessionContext.session.kernel.connectionStatus === 'connected');"), 90, "the notebook's kernel")
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")

        def frame_slider():
            for box in driver.find_elements(By.CSS_SELECTOR, ".widget-slider"):
                label = box.find_elements(By.CSS_SELECTOR, ".widget-label")
                if label and label[0].text.strip() == "frame" and box.find_elements(By.CSS_SELECTOR, ".noUi-handle"):
                    return box
            return None

        slider = _wait(frame_slider, 180, "the app's frame slider")
        image = _wait(lambda: [i for i in driver.find_elements(By.CSS_SELECTOR, ".widget-image")
                               if i.size["height"] > 10], 60, "the frame panel")[0]
        _wait(lambda: driver.execute_script(
            "return window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'"
            " && document.querySelectorAll('.jp-OutputArea-output img').length >= 2"), 180, "all cells to finish")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", image)
        before = image.screenshot_as_png
        readout = slider.find_element(By.CSS_SELECTOR, ".widget-readout")
        start = readout.text.strip()
        handle = slider.find_element(By.CSS_SELECTOR, ".noUi-handle")
        handle.click()
        handle.send_keys(Keys.PAGE_UP, Keys.PAGE_UP, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
        _wait(lambda: readout.text.strip() not in ("", start), 30, f"the slider to move from {start}")
        after = _wait(lambda: (png := image.screenshot_as_png) != before and png, 60, "the frame panel to change")
        assert after != before
        errors = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type="
                                                                          "'application/vnd.jupyter.stderr']")
                  if "Traceback" in e.text]
        assert not errors, errors
        shot = Path(os.environ.get("MNADLIB_SCREENSHOT", tmp_path / "browser_localization.png"))
        top = driver.find_element(By.CSS_SELECTOR, ".jp-OutputArea-output .widget-dropdown")
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", top)
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)

# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The Gradio demo (examples/app.py), driven as its users drive it: through gradio_client against a server on
127.0.0.1, and once in a real headless Chromium (Debian's chromium + chromium-driver, through Selenium)."""

from __future__ import annotations

import csv
import os
import shutil
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import free_port, load_script

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

REPO_ROOT = Path(__file__).resolve().parents[1]
APP = REPO_ROOT / "examples" / "app.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TIMEOUT = 120  # seconds for any one request or browser wait


@pytest.fixture(scope="module")
def app():
    module = load_script(APP, "faprompt_demo_app")
    yield module
    sys.modules.pop(module.__name__, None)


def launch(demo, **kwargs) -> str:
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **kwargs)
    return f"http://127.0.0.1:{port}/"


def call(client, *args, api_name: str):
    """One request, bounded in time."""
    return client.submit(*args, api_name=api_name).result(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def parts(tmp_path_factory, app):
    """Two synthetic parts (an anomalous capsule, a normal one) as PNG files."""
    folder = tmp_path_factory.mktemp("parts")
    return app.write_examples(folder, size=64)[:2]


@pytest.fixture(scope="module")
def served(app, model_dir, tmp_path_factory):
    """The app over the tiny test model on 127.0.0.1, with small limits, and a count of the model's forward passes."""
    detector = app.load_detector(model_dir, device="cpu")
    forward_calls = []
    hook = detector.model.register_forward_hook(lambda *_: forward_calls.append(1))
    limits = app.Limits(max_file_mb=1.0, max_megapixels=0.5, max_images=4, max_calibration_images=40)
    demo_app = app.DemoApp(detector, str(model_dir), limits=limits, output_root=tmp_path_factory.mktemp("downloads"))
    demo = demo_app.build()
    url = launch(demo)
    yield Served((url, detector, forward_calls), demo_app)
    hook.remove()
    demo.close()


class Served(tuple):
    """``(url, detector, forward_calls)``, with the ``DemoApp`` as ``.app``."""

    def __new__(cls, values, demo_app):
        served = super().__new__(cls, values)
        served.app = demo_app
        return served


@pytest.fixture
def client(served, tmp_path):
    from gradio_client import Client

    return Client(served[0], verbose=False, download_files=str(tmp_path / "client"))


def upload(*paths):
    from gradio_client import handle_file

    return [handle_file(str(path)) for path in paths]


def test_upload_gives_scores_verdicts_overlays_masks_and_downloads(served, client, parts, app):
    _, detector, _ = served
    overlays, masks, table, downloads, summary = call(client, upload(*parts), 0.5, 0.4, 0.6, api_name="/detect")

    expected = detector([str(path) for path in parts], threshold=0.5, return_overlay=False)
    assert [row[0] for row in table["data"]] == [path.name for path in parts]
    for row, result in zip(table["data"], expected, strict=True):
        file, score, verdict, threshold, pixel_share, pixel_threshold = row
        assert score == pytest.approx(result["score"], abs=1e-5)
        assert verdict == ("yes" if score >= 0.5 else "no") and threshold == 0.5 and pixel_threshold == 0.4
        assert pixel_share == pytest.approx(100 * (result["anomaly_map"] >= 0.4).mean(), abs=1e-3)
    flagged = sum(row[2] == "yes" for row in table["data"])
    assert f"{flagged} of 2 image(s) anomalous" in summary

    # Overlays and masks: one per image, at the image's size; the mask is the map thresholded at 0.4.
    assert len(overlays) == len(masks) == 2
    assert overlays[0]["caption"].startswith(parts[0].name) and "0.500" in overlays[0]["caption"]
    with Image.open(overlays[0]["image"]) as overlay, Image.open(masks[0]["image"]) as mask:
        assert overlay.size == (64, 64) and mask.size == (64, 64)
        np.testing.assert_array_equal(np.asarray(mask.convert("L")) > 127, expected[0]["anomaly_map"] >= 0.4)

    # Downloads: the scores CSV (same rows as the table) and each map as exact .npy and 8-bit PNG.
    by_name = {Path(path).name: path for path in downloads}
    assert set(by_name) == {"scores.csv"} | {
        f"{path.stem}_anomaly_map.{ext}" for path in parts for ext in ("png", "npy")
    }
    with open(by_name["scores.csv"], newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == app.RESULT_HEADERS
    assert [[row[0], float(row[1]), row[2]] for row in rows[1:]] == [row[:3] for row in table["data"]]
    exported = np.load(by_name[f"{parts[0].stem}_anomaly_map.npy"])
    np.testing.assert_allclose(exported, expected[0]["anomaly_map"], atol=1e-6)
    with Image.open(by_name[f"{parts[0].stem}_anomaly_map.png"]) as png:
        np.testing.assert_array_equal(np.asarray(png), np.round(np.clip(exported, 0, 1) * 255).astype(np.uint8))


def _normal_capsules(folder: Path, seed: int, count: int = 2) -> list[Path]:
    """Write ``count`` normal synthetic capsules (64 px) as PNGs, to upload as normal references."""
    from faprompt_hf.data.synthetic import generate_sample

    paths = []
    for index in range(count):
        image, _ = generate_sample("capsule", None, image_size=64, seed=seed + index)
        paths.append(folder / f"normal_{seed + index}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def _with_references(detector, references: list[Path]):
    """A copy of the detector's model holding ``references`` as its bank, set through the processor (independent of
    the app's own path)."""
    import copy

    model = copy.deepcopy(detector.model)
    pixels = detector.image_processor(
        images=[Image.open(path).convert("RGB") for path in references], return_tensors="pt"
    )
    model.set_normal_references(pixels["pixel_values"])
    return model


def test_normal_references_rescore_with_the_fused_outputs_computed_once_per_upload(served, client, parts, tmp_path):
    from helpers import fresh_pipeline

    _, detector, _ = served
    references = _normal_capsules(tmp_path, seed=300)
    zero_shot = call(client, upload(*parts), 0.5, 0.5, 0.5, api_name="/detect")[2]
    before = served.app.reference_banks.computed
    overlays, _, table, downloads, summary = call(
        client, upload(*parts), 0.5, 0.5, 0.5, upload(*references), api_name="/detect"
    )
    assert "With 2 normal reference image(s)" in summary
    assert served.app.reference_banks.computed == before + 1

    # The same as the model with these references set through the processor and set_normal_references.
    model = _with_references(detector, references)
    expected = fresh_pipeline(model)([str(path) for path in parts], threshold=0.5, return_overlay=False)
    assert [row[1] for row in table["data"]] == pytest.approx([result["score"] for result in expected], abs=1e-5)
    assert [row[1] for row in table["data"]] != [row[1] for row in zero_shot["data"]]
    exported = np.load(next(path for path in downloads if path.endswith(f"{parts[0].stem}_anomaly_map.npy")))
    np.testing.assert_allclose(exported, expected[0]["anomaly_map"], atol=1e-5)

    # The same upload again is not recomputed; the shared model keeps no references; without them: zero-shot.
    again = call(client, upload(*parts), 0.5, 0.5, 0.5, upload(*references), api_name="/detect")[2]
    assert served.app.reference_banks.computed == before + 1 and again["data"] == table["data"]
    assert detector.model.normal_reference_classes == [] and detector.model.normal_references.features is None
    assert call(client, upload(*parts), 0.5, 0.5, 0.5, [], api_name="/detect")[2]["data"] == zero_shot["data"]


def test_calibration_with_normal_references_thresholds_the_fused_scores(served, client, parts, tmp_path):
    from faprompt_hf.pipeline_faprompt import calibrate_threshold
    from helpers import fresh_pipeline

    _, detector, _ = served
    references = _normal_capsules(tmp_path, seed=400)
    zero_shot, _ = call(client, "", upload(*parts), [], 0.9, api_name="/calibrate")
    threshold, message = call(client, "", upload(*parts), [], 0.9, upload(*references), api_name="/calibrate")
    model = _with_references(detector, references)
    images = [Image.open(path).convert("RGB") for path in parts]
    expected = calibrate_threshold(fresh_pipeline(model), images, quantile=0.9, store=False)
    assert threshold == pytest.approx(expected, abs=1e-5) and threshold != pytest.approx(zero_shot, abs=1e-5)
    assert "with 2 normal reference image(s)" in message
    assert detector.model.normal_reference_classes == []


def test_same_named_uploads_keep_separate_downloads(client, parts):
    downloads = call(client, upload(parts[0], parts[0]), 0.5, 0.5, 0.5, api_name="/detect")[3]
    stem = parts[0].stem
    assert sorted(Path(path).name for path in downloads if path.endswith(".npy")) == [
        f"{stem}_1_anomaly_map.npy",
        f"{stem}_anomaly_map.npy",
    ]


def test_threshold_sliders_redecide_without_running_the_model(served, client, parts):
    _, _, forward_calls = served
    table = call(client, upload(*parts), 0.5, 0.5, 0.5, api_name="/detect")[2]
    scores = sorted(row[1] for row in table["data"])
    assert scores[0] < scores[1], "the two parts should score differently"
    between = (scores[0] + scores[1]) / 2
    passes = len(forward_calls)

    _, masks, table, _, summary = call(client, between, 0.0, 0.3, api_name="/rethreshold")
    assert {row[1]: row[2] for row in table["data"]} == {scores[0]: "no", scores[1]: "yes"}
    assert all(row[3] == round(between, 6) for row in table["data"]) and "1 of 2 image(s) anomalous" in summary
    assert all(row[4] == 100.0 for row in table["data"])  # pixel threshold 0: every pixel is anomalous
    with Image.open(masks[0]["image"]) as mask:
        assert np.asarray(mask.convert("L")).min() == 255

    table = call(client, 1.0, 1.0, 0.3, api_name="/rethreshold")[2]
    assert all(row[2] == "no" for row in table["data"])
    assert len(forward_calls) == passes, "re-thresholding must not run the model"


def test_calibration_from_normal_uploads_and_from_a_labelled_folder(served, client, app, tmp_path):
    from faprompt_hf.data.synthetic import write_synthetic_mvtec
    from faprompt_hf.pipeline_faprompt import calibrate_threshold, threshold_from_f1

    _, detector, _ = served
    stored_before = detector.model.config.anomaly_threshold
    root = write_synthetic_mvtec(
        tmp_path / "mvtec", domains=["nut"], n_train=1, n_normal=4, n_anomalous=4, image_size=64
    )
    test_folder = root / "nut" / "test"
    normal = sorted((test_folder / "good").glob("*.png"))

    threshold, message = call(client, "", upload(*normal), [], 0.9, api_name="/calibrate")
    images = [Image.open(path).convert("RGB") for path in normal]
    assert threshold == pytest.approx(calibrate_threshold(detector, images, quantile=0.9, store=False), abs=1e-6)
    assert "0.9 quantile of 4 normal images" in message

    threshold, message = call(client, str(test_folder), [], [], 0.99, api_name="/calibrate")
    normal_paths, anomalous_paths = app.labelled_images_in_folder(test_folder)
    assert len(normal_paths) == 4 and len(anomalous_paths) == 4  # ground_truth/ masks are not images to score
    scores = [result["score"] for result in detector(normal_paths + anomalous_paths, threshold=0.5)]
    assert threshold == pytest.approx(threshold_from_f1(scores, [0] * 4 + [1] * 4), abs=1e-6)
    assert "best-F1 threshold on 4 normal and 4 anomalous images" in message
    # A visitor's calibration is theirs: the shared model's stored threshold is unchanged.
    assert detector.model.config.anomaly_threshold == stored_before

    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="needs known-normal images"):
        call(client, "", [], upload(*normal[:1]), 0.99, api_name="/calibrate")
    with pytest.raises(AppError, match="does not exist"):
        call(client, str(tmp_path / "nowhere"), [], [], 0.99, api_name="/calibrate")


def test_bad_files_get_a_message_that_names_them(served, client, parts, tmp_path):
    from gradio_client.exceptions import AppError

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a PNG")
    with pytest.raises(AppError, match=r"broken\.png is not an image that can be decoded: upload a PNG"):
        call(client, upload(broken), 0.5, 0.5, 0.5, api_name="/detect")

    # In a batch, the readable images are scored and the page says which file was skipped and why.
    table, _, summary = call(client, upload(parts[0], broken), 0.5, 0.5, 0.5, api_name="/detect")[2:]
    assert [row[0] for row in table["data"]] == [parts[0].name]
    assert "Skipped" in summary and "broken.png" in summary

    huge = tmp_path / "huge.png"
    Image.new("RGB", (1000, 600)).save(huge)  # 0.6 megapixels > the server's 0.5
    with pytest.raises(AppError, match=r"huge\.png is 1000 x 600 pixels.*up to 0.5 megapixels"):
        call(client, upload(huge), 0.5, 0.5, 0.5, api_name="/detect")

    heavy = tmp_path / "heavy.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)).save(heavy)
    assert heavy.stat().st_size > 2**20
    with pytest.raises(AppError, match=r"heavy\.png is 1\.\d MB; this app accepts files up to 1 MB"):
        call(client, upload(heavy), 0.5, 0.5, 0.5, api_name="/detect")

    with pytest.raises(AppError, match="at most 4 at a time"):
        call(client, upload(*[parts[0]] * 5), 0.5, 0.5, 0.5, api_name="/detect")


def test_a_model_that_cannot_be_loaded_is_explained_in_the_page(app, tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    missing = tmp_path / "no-such-model"
    with pytest.raises(RuntimeError, match="Cannot load the model") as caught:
        app.load_detector(missing)
    assert str(missing) in str(caught.value) and "save_pretrained" in str(caught.value)
    assert "no such folder" in str(caught.value)  # faprompt_hf.pipeline's check, not a hub id error

    demo = app.DemoApp(None, str(missing), load_error=str(caught.value)).build()
    url = launch(demo)
    try:
        with urllib.request.urlopen(url + "config", timeout=TIMEOUT) as response:
            assert "Cannot load the model" in response.read().decode()  # the banner at the top of the page
        client = Client(url, verbose=False, download_files=str(tmp_path / "client"))
        with pytest.raises(AppError, match="Cannot load the model"):
            call(client, upload(app.write_examples(tmp_path, size=64)[0]), 0.5, 0.5, 0.5, api_name="/detect")
    finally:
        demo.close()


def test_offline_demo_model_is_trained_once_then_cached(app, tmp_path, monkeypatch):
    folder = app.build_demo_model(tmp_path, steps=2, image_size=64)
    from faprompt_hf import FAPromptModel

    model = FAPromptModel.from_pretrained(folder)
    assert model.config.image_size == 64 and 0.0 <= model.config.anomaly_threshold <= 1.0

    monkeypatch.setattr(app, "train", lambda *args, **kwargs: pytest.fail("the cached model was trained again"))
    assert app.build_demo_model(tmp_path, steps=2, image_size=64) == folder


def test_command_line_flags(app, monkeypatch):
    args = app.parse_args(["--server_name", "0.0.0.0", "--server_port", "8080", "--share", "--model", "me/model"])
    assert (args.server_name, args.server_port, args.share, args.model) == ("0.0.0.0", 8080, True, "me/model")
    defaults = app.parse_args([])
    assert defaults.server_name is None and defaults.server_port is None and not defaults.share  # Gradio's defaults
    monkeypatch.setenv(app.MODEL_ENV, "space/model")
    assert app.parse_args([]).model == "space/model"
    with pytest.raises(SystemExit):
        app.parse_args(["--max_images", "0"])
    # Calibration from a server folder is offered only where no other machine can reach the app, unless asked for.
    assert app.parse_args([]).folder_calibration
    assert not app.parse_args(["--share"]).folder_calibration
    assert not app.parse_args(["--server_name", "0.0.0.0"]).folder_calibration
    assert app.parse_args(["--server_name", "0.0.0.0", "--folder_calibration"]).folder_calibration
    assert not app.parse_args(["--no_folder_calibration"]).folder_calibration
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")  # as on a hub Space
    assert not app.parse_args([]).folder_calibration


@pytest.mark.integration
def test_in_a_headless_browser(app, model_dir, tmp_path):
    """Load the page in Chromium, upload an example, wait for its overlay, save a screenshot.

    Set FAPROMPT_APP_SCREENSHOT=docs/images/app.png to keep the screenshot (docs/inference.md shows it) and
    FAPROMPT_APP_TEST_MODEL to a model folder to show another model (default: the tiny test model).
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    assert not missing, f"{missing} not found: install the Debian packages: apt-get install -y chromium chromium-driver"

    port = free_port()
    model = os.environ.get("FAPROMPT_APP_TEST_MODEL", str(model_dir))
    demo = app.main(
        [
            "--model",
            model,
            "--server_name",
            "127.0.0.1",
            "--server_port",
            str(port),
            "--cache_dir",
            str(tmp_path / "cache"),
        ],
        block=False,
    )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1120",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    # An explicit driver path: Selenium Manager (which could download a browser) is never used.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(TIMEOUT)
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, TIMEOUT)
        file_input = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#images input[type=file]"))
        example = tmp_path / "cache" / "examples-256" / "capsule_crack.png"
        file_input.send_keys(str(example))

        def overlay_shown(d):
            images = d.find_elements(By.CSS_SELECTOR, "#overlays img")
            return images and d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", images[0])

        assert wait.until(overlay_shown) == 256
        assert "image(s) anomalous" in driver.find_element(By.ID, "summary").text
        screenshot = tmp_path / "app.png"
        driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
        demo.close()
    with Image.open(screenshot) as picture:
        assert picture.size[0] >= 1000 and len(picture.convert("RGB").getcolors(2**24)) > 100  # not a blank page
    if os.environ.get("FAPROMPT_APP_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["FAPROMPT_APP_SCREENSHOT"])


# ---------------------------------------------------------------------------------------------------- API inputs


@pytest.mark.integration
@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("abc", r"image threshold \(threshold\) must be a number in \[0, 1\], got 'abc' \(str\)"),
        (None, r"image threshold \(threshold\) is missing: send a number in \[0, 1\]"),
        ("0.3", r"image threshold \(threshold\) must be a number in \[0, 1\], got '0.3' \(str\)"),
        ([0.5], r"image threshold \(threshold\) must be a number in \[0, 1\], got \[0.5\] \(list\)"),
        (1.5, r"image threshold \(threshold\) must be a finite number in \[0, 1\], got 1.5"),
    ],
)
def test_api_thresholds_that_are_not_numbers_get_the_apps_own_error(served, client, parts, value, pattern):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=pattern):
        call(client, upload(parts[0]), value, 0.5, 0.5, api_name="/detect")
    with pytest.raises(AppError, match=pattern):
        call(client, value, 0.5, 0.5, api_name="/rethreshold")


@pytest.mark.integration
def test_api_calibration_quantile_that_is_not_a_number(served, client, parts):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=r"calibration quantile \(quantile\) must be a number in \(0, 1\], got 'x'"):
        call(client, "", upload(parts[1]), [], "x", api_name="/calibrate")


def _raw_call(url: str, api_name: str, data: list) -> str:
    """POST ``data`` to the app's HTTP API as a raw client would (NaN written as JSON's NaN) and read the events."""
    import json

    request = urllib.request.Request(
        f"{url}gradio_api/call/{api_name}",
        data=json.dumps({"data": data}).encode(),  # json.dumps writes NaN as NaN, as such clients do
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{api_name}/{event_id}", timeout=TIMEOUT) as response:
        return response.read().decode()


@pytest.mark.integration
def test_raw_http_nan_or_missing_inputs_get_the_apps_own_error(served):
    url = served[0]
    events = _raw_call(url, "detect", [[], 0.5, 0.5, float("nan")])
    assert "event: error" in events and "overlay opacity (opacity) must be a finite number in [0, 1], got nan" in events
    events = _raw_call(url, "detect", [[], float("nan"), 0.5, 0.5])
    assert "event: error" in events and "image threshold (threshold) must be a finite number" in events
    events = _raw_call(url, "detect", [[], 0.5, float("nan"), 0.5])
    assert "pixel threshold (pixel_threshold) must be a finite number" in events
    events = _raw_call(url, "detect", [[]])
    assert "event: error" in events and "missing 'Image threshold', 'Pixel threshold'" in events, events
